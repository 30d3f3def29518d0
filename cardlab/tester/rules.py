"""The certification catalogue: named rules with a description, a reference
and a severity. :mod:`cardlab.tester.certify` evaluates them; each evaluation is a
:class:`Result` (pass / fail / not applicable) with evidence, expected vs
found, PANs masked, never a key or a PIN.

``python -m cardlab.tester.rules`` prints the catalogue as the Markdown table of
docs/rules.md.
"""

from __future__ import annotations

from dataclasses import dataclass

PASS, FAIL, NA = "pass", "fail", "not applicable"
#: a rule that applies to the card but could not be evaluated (a key missing from the key store,
#: an option not given, a command the tester did not send to protect the card): never a pass
NOT_RUN = "not run"
#: the card's verdict when a critical rule could not run and nothing failed
INCOMPLETE = "incomplete"
CRITICAL, MAJOR, MINOR = "critical", "major", "minor"


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    reference: str
    severity: str
    category: str


@dataclass(frozen=True)
class Result:
    rule: str
    verdict: str
    evidence: str = ""
    expected: str = ""
    found: str = ""
    app: str = ""  # AID hex of the application, "" for card-level rules


B1, B2, B3 = "EMV 4.4 Book 1", "EMV 4.4 Book 2", "EMV 4.4 Book 3"
CPS = "EMV CPS 1.1"

#: data-object value rules: tag → (id, name, reference)
DATA_TAGS: dict[int, tuple[str, str, str]] = {
    0x84: ("DATA-DFNAME-001", "DF name (84) in the FCI equals the profile AID", f"{B1} §11.3.4"),
    0x50: ("DATA-LABEL-001", "Application label (50) equals the profile label", f"{B1} §11.3.4, {B3} Annex A"),
    0x87: ("DATA-PRIO-001", "Application priority indicator (87) equals the profile priority", f"{B1} §12.2.3"),
    0x9F38: ("DATA-PDOL-001", "PDOL (9F38) equals the profile PDOL", f"{B3} §5.4, §10.1"),
    0x5F2D: ("DATA-LANG-001", "Language preference (5F2D) as the profile and record give it", f"{B1} §11.3.4"),
    0x9F12: ("DATA-PREF-001", "Application preferred name (9F12) equals the profile", f"{B1} §12.2.3"),
    0x9F11: ("DATA-CTI-001", "Issuer code table index (9F11) equals the profile", f"{B1} §12.2.3"),
    0x9F4D: ("DATA-LOG-001", "Log entry (9F4D) equals the profile log SFI and record count", f"{B3} Annex D"),
    0x82: ("DATA-AIP-001", "AIP (82) equals the profile AIP (derived from ODA, CVM list, TRM, issuer auth)", f"{B3} §10.1, Annex C1"),
    0x94: ("DATA-AFL-001", "AFL (94) equals the AFL the profile record layout gives", f"{B3} §10.2"),
    0x57: ("DATA-TRK2-001", "Track 2 equivalent data (57) equals PAN ‖ D ‖ YYMM ‖ service code ‖ discretionary (the record's, default 00000000), F-padded", f"{B3} Annex A; ISO/IEC 7813"),
    0x9F1F: ("DATA-TRK1DD-001", "Track 1 discretionary data (9F1F) equals the record's discretionary digits (default 00000000) in ASCII", f"{B3} Annex A; ISO/IEC 7813"),
    0x9F20: ("DATA-TRK2DD-001", "Track 2 discretionary data (9F20) equals the record's discretionary digits (default 00000000), BCD F-padded", f"{B3} Annex A; ISO/IEC 7813"),
    0x5A: ("DATA-PAN-001", "PAN (5A) equals the record PAN, F-padded", f"{B3} Annex A"),
    0x5F20: ("DATA-NAME-001", "Cardholder name (5F20) equals the record name", f"{B3} Annex A"),
    0x5F24: ("DATA-EXP-001", "Application expiration date (5F24) equals the record expiry, last day, YYMMDD BCD", f"{B3} §10.4.3"),
    0x5F25: ("DATA-EFF-001", "Application effective date (5F25) equals the record effective date, first day", f"{B3} §10.4.3"),
    0x5F34: ("DATA-PSN-001", "PAN sequence number (5F34) equals the record PSN", f"{B3} Annex A"),
    0x5F30: ("DATA-SVC-001", "Service code (5F30) equals the record (or profile default) service code", "ISO/IEC 7813; EMV Book 3 Annex A"),
    0x8C: ("DATA-CDOL1-001", "CDOL1 (8C) equals the profile CDOL1", f"{B3} §5.4, §9.3"),
    0x8D: ("DATA-CDOL2-001", "CDOL2 (8D) equals the profile CDOL2", f"{B3} §5.4, §9.3"),
    0x9F49: ("DATA-DDOL-001", "DDOL (9F49) equals the profile DDOL", f"{B3} §5.4; {B2} §6.5"),
    0x97: ("DATA-TDOL-001", "TDOL (97) equals the profile TDOL", f"{B3} §5.4"),
    0x8E: ("DATA-CVM-001", "CVM list (8E) equals the profile's amounts and rules", f"{B3} §10.5, Annex C3"),
    0x9F07: ("DATA-AUC-001", "Application usage control (9F07) equals the profile", f"{B3} §10.4.2, Annex C2"),
    0x9F08: ("DATA-VER-001", "Application version number (9F08) equals the profile", f"{B3} §10.4.1"),
    0x9F0D: ("DATA-IAC-001", "IAC default (9F0D) equals the profile", f"{B3} §10.7"),
    0x9F0E: ("DATA-IAC-002", "IAC denial (9F0E) equals the profile", f"{B3} §10.7"),
    0x9F0F: ("DATA-IAC-003", "IAC online (9F0F) equals the profile", f"{B3} §10.7"),
    0x5F28: ("DATA-CNTRY-001", "Issuer country code (5F28) equals the profile, n3 BCD", f"{B3} §10.4.2"),
    0x9F42: ("DATA-CURR-001", "Application currency code (9F42) equals the profile, n3 BCD", f"{B3} Annex A"),
    0x9F44: ("DATA-CURREXP-001", "Application currency exponent (9F44) equals the profile", f"{B3} Annex A"),
    0x9F14: ("DATA-LIMIT-001", "Lower consecutive offline limit (9F14) equals the profile", f"{B3} §10.6.3"),
    0x9F23: ("DATA-LIMIT-002", "Upper consecutive offline limit (9F23) equals the profile", f"{B3} §10.6.3"),
    0x9F4A: ("DATA-SDATL-001", "Static data authentication tag list (9F4A) equals the profile", f"{B3} §10.3"),
    0x8F: ("DATA-CAIDX-001", "CA public key index (8F) equals the profile", f"{B2} §5.2, §6.2"),
    0x9F47: ("DATA-ICCEXP-001", "ICC public key exponent (9F47) equals the profile", f"{B2} §6.1"),
}
#: tags whose rule is DATA-OTHER-001 (profile ``data`` and anything else placed)
OTHER_DATA = ("DATA-OTHER-001", "Other profile data objects (profile `data`) hold the profile value", f"{CPS} §5.3")

_RULES: list[tuple[str, str, str, str]] = [
    # id, description, reference, severity — category is the id's prefix
    *[(rid, desc, ref, CRITICAL if t in (0x5A, 0x57, 0x5F24, 0x82, 0x94, 0x8C, 0x8E, 0x5F34) else MAJOR) for t, (rid, desc, ref) in DATA_TAGS.items()],
    (OTHER_DATA[0], OTHER_DATA[1], OTHER_DATA[2], MAJOR),
    ("DATA-PLACE-001", "Every expected data object is where the profile puts it (FCI, GPO response, the named record)", f"{CPS} §5.3–5.4; {B3} §10.2", MAJOR),
    ("DATA-UNEXP-001", "No data object the profile and record do not determine (unexpected objects)", f"{CPS} §5.3", MINOR),
    ("DATA-DUP-001", "No data object appears twice in the records read per the AFL", f"{B3} §10.2", MAJOR),
    ("FCI-001", "SELECT answers an FCI template 6F with DF name 84 and proprietary template A5", f"{B1} §11.3.4", CRITICAL),
    ("GPO-001", "GET PROCESSING OPTIONS answers in the profile's response format (80 / 77)", f"{B3} §6.5.8.4", MAJOR),
    ("GPO-002", "GPO response format 2 holds exactly AIP (82) and AFL (94)", f"{B3} §6.5.8.4", MINOR),
    ("AFL-001", "AFL is a non-empty multiple of 4 bytes", f"{B3} §10.2", CRITICAL),
    ("AFL-002", "AFL entries: SFI 1–30, first record ≥ 1, last ≥ first", f"{B3} §10.2", CRITICAL),
    ("AFL-003", "AFL entries: number of ODA records ≤ records in the entry", f"{B3} §10.2", CRITICAL),
    ("AFL-004", "Every record the AFL names exists (READ RECORD 9000)", f"{B3} §10.2, §6.5.11", CRITICAL),
    ("AFL-005", "Every record is one template 70 with well-formed BER-TLV and nothing after it", f"{B3} §10.2, Annex B; {CPS} §5.3", CRITICAL),
    ("AFL-006", "No record is named twice by the AFL", f"{B3} §10.2", MAJOR),
    ("AFL-007", "Mandatory record data present: 5A, 5F24, 8C, 8D", f"{B3} §7.2", CRITICAL),
    ("AIP-001", "AIP announces SDA ⇒ 8F, 90, 9F32 and 93 present", f"{B3} §10.3; {B2} §5", CRITICAL),
    ("AIP-002", "AIP announces DDA ⇒ 8F, 90, 9F32, 9F46, 9F47 present", f"{B3} §10.3; {B2} §6", CRITICAL),
    ("AIP-003", "AIP announces CDA ⇒ 8F, 90, 9F32, 9F46, 9F47 present", f"{B3} §10.3; {B2} §6.6", CRITICAL),
    ("AIP-004", "AIP announces cardholder verification ⇔ CVM list (8E) present", f"{B3} §10.5, Annex C1", MAJOR),
    ("AIP-005", "Certificates present only with an ODA method announced in the AIP", f"{B3} §10.3", MINOR),
    ("TRK2-001", "Track 2 equivalent PAN equals 5A", f"{B3} Annex A", CRITICAL),
    ("TRK2-002", "Track 2 equivalent expiry (YYMM) equals 5F24", f"{B3} Annex A", CRITICAL),
    ("TRK2-003", "Track 2 equivalent service code equals 5F30", f"{B3} Annex A", MAJOR),
    ("TRK2-004", "Track 2 equivalent: separator D, digits only, F padding only at the end, ≤ 19 bytes", "ISO/IEC 7813; EMV Book 3 Annex A", MAJOR),
    ("PAN-001", "PAN (5A) passes the Luhn check and has 12–19 digits", "ISO/IEC 7812-1", CRITICAL),
    ("DATE-001", "5F24 / 5F25 are valid YYMMDD BCD dates", f"{B3} Annex A", CRITICAL),
    ("DATE-002", "Effective date (5F25) is before the expiration date (5F24)", f"{B3} §10.4.3", MAJOR),
    ("DATE-003", "Application not expired (5F24 ≥ today)", f"{B3} §10.4.3", MAJOR),
    ("CVM-001", "CVM list structure: amount X ‖ amount Y ‖ one or more 2-byte rules", f"{B3} §10.5, Annex C3", CRITICAL),
    ("CVM-002", "Every CVM code and condition code is defined (or proprietary-range flagged)", f"{B3} Annex C3", MAJOR),
    ("CVM-003", "Amount X / Y are set only when a condition uses them, and used ones are set", f"{B3} Annex C3", MINOR),
    ("CVM-004", "At least one CV rule the terminal supports (or a no-CVM / signature fallback) exists", f"{B3} §10.5", MAJOR),
    ("CVM-005", "Enciphered offline PIN ⇒ ICC key or ICC PIN encipherment key on the card", f"{B2} §7; {B3} §10.5.1", CRITICAL),
    ("CVM-006", "Offline PIN CVM ⇒ PIN try counter (9F17) readable by GET DATA", f"{B3} §10.5.1", MAJOR),
    ("CDOL-001", "CDOL1 contains what the cryptogram version needs (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37)", f"{B2} §8.1.1; VIS 1.5 / M/Chip 4", CRITICAL),
    ("CDOL-002", "CDOL2 contains the authorisation response code (8A)", f"{B3} §9.3, §6.5.5", CRITICAL),
    ("CDOL-003", "CDOL1 / CDOL2 / PDOL well formed, no tag twice", f"{B3} §5.4", MAJOR),
    ("DDOL-001", "DDOL (card or terminal default) contains the unpredictable number 9F37", f"{B2} §6.5.1", CRITICAL),
    ("CERT-ISS-001", "CA public key (RID, 8F) known to the key store / terminal", f"{B2} §5.2, §6.2", CRITICAL),
    ("CERT-ISS-002", "Issuer certificate (90) length equals the CA modulus length", f"{B2} §5.3 step 1", CRITICAL),
    ("CERT-ISS-003", "Recovered issuer certificate: header 6A, trailer BC, format 02", f"{B2} §5.3 steps 2–4", CRITICAL),
    ("CERT-ISS-004", "Issuer certificate hash (SHA-1) verifies", f"{B2} §5.3 steps 5–7", CRITICAL),
    ("CERT-ISS-005", "Issuer identifier matches the leftmost PAN digits", f"{B2} §5.3 step 8", CRITICAL),
    ("CERT-ISS-006", "Issuer certificate not expired", f"{B2} §5.3 step 9", MAJOR),
    ("CERT-ISS-007", "Issuer public key remainder (92) present exactly when needed and of the right length", f"{B2} §5.3 Table 13", CRITICAL),
    ("CERT-ISS-008", "Issuer certificate algorithm indicators: hash 01 (SHA-1), public key 01 (RSA)", f"{B2} §5.3 step 11", MAJOR),
    ("CERT-ISS-009", "Issuer public key in the certificate equals the key store's issuer key", f"{B2} §5.3; {CPS}", CRITICAL),
    ("CERT-ICC-001", "ICC certificate (9F46) length equals the issuer modulus length", f"{B2} §6.4 step 1", CRITICAL),
    ("CERT-ICC-002", "Recovered ICC certificate: header 6A, trailer BC, format 04", f"{B2} §6.4 steps 2–4", CRITICAL),
    ("CERT-ICC-003", "ICC certificate hash over the static data to be authenticated verifies", f"{B2} §6.4 steps 5–7; {B3} §10.3", CRITICAL),
    ("CERT-ICC-PAN-001", "PAN in the ICC certificate equals 5A", f"{B2} §6.4 step 8", CRITICAL),
    ("CERT-ICC-005", "ICC certificate not expired, and not before the application expiry month", f"{B2} §6.4 step 9", MAJOR),
    ("CERT-ICC-006", "ICC public key remainder (9F48) present exactly when needed and of the right length", f"{B2} §6.4 Table 14", CRITICAL),
    ("CERT-ICC-007", "ICC key size and exponent as the profile's icc_key", f"{B2} §6.1; {CPS}", MAJOR),
    ("SDA-001", "Signed static application data (93) verifies under the issuer key (format 03, hash)", f"{B2} §5.4", CRITICAL),
    ("SDA-002", "Static data authentication tag list names only the AIP (82)", f"{B3} §10.3", MAJOR),
    ("DDA-001", "INTERNAL AUTHENTICATE signature verifies under the ICC key (format 05, hash)", f"{B2} §6.5", CRITICAL),
    ("CDA-001", "GENERATE AC with CDA: signed dynamic data verifies, carries the cryptogram and the transaction data hash", f"{B2} §6.6", CRITICAL),
    ("KEY-AC-001", "ARQC verifies under the ICC master key derived from the IMK (proves the ICC AC key)", f"{B2} §8.1, Annex A1.4", CRITICAL),
    ("KEY-AC-002", "Issuer application data carries the profile's CVN and DKI", "VIS 1.5 / M/Chip 4 IAD", MAJOR),
    ("KEY-SMI-001", "Issuer script MAC under the SMI key accepted (destructive: PUT DATA)", f"{B2} §9.2", CRITICAL),
    ("KEY-PIN-001", "Offline plaintext PIN verifies with the record's PIN", f"{B3} §6.5.12", CRITICAL),
    ("KEY-PIN-002", "PIN try counter equals the profile limit after the verification", f"{B3} §6.5.12; {CPS} DGI 9010", CRITICAL),
    ("KEY-PIN-003", "A wrong PIN is refused with 63Cx and the correct one resets the counter (destructive)", f"{B3} §6.5.12", MAJOR),
    ("KEY-SMC-001", "PIN CHANGE/UNBLOCK by issuer script (the record's own PIN enciphered under the SMC session key, MAC under SMI) is accepted, resets the PIN try counter, and the record's PIN then verifies offline (destructive)",
     f"{B3} §6.5.10, §10.10; {B2} §9.2, §9.3; VIS 1.5 / M/Chip 4 PIN block", CRITICAL),
    ("KEY-SMI-002", "APPLICATION BLOCK by issuer script takes effect: the next SELECT answers 6283 and GENERATE AC an AAC where an ARQC was asked (destructive)",
     f"{B3} §6.5.1, §10.10; {B1} §12.4; {B2} §9.2", CRITICAL),
    ("KEY-SMI-003", "APPLICATION UNBLOCK by issuer script (over the blocked application's AAC) restores it: SELECT 9000 and an ARQC again (destructive)",
     f"{B3} §6.5.2, §10.10; {B2} §9.2", MAJOR),
    ("STATE-ATC-001", "ATC (9F36) consistent with the card's history: not exhausted (below FFFF) and not below the last online ATC register; a card certified as fresh from perso (card.certify_as: fresh): small (at most 10)", f"{B3} Annex A, §10.6.3; {CPS}", MAJOR),
    ("STATE-ATC-002", "Last online ATC register (9F13) consistent with the card's history: at most the ATC; fresh from perso (card.certify_as: fresh): 0", f"{B3} §10.6.3", MINOR),
    ("STATE-PTC-001", "PIN try counter (9F17) on arrival: between 1 and the profile's limit (0: the PIN is blocked); fresh from perso (card.certify_as: fresh): equal to the limit", f"{CPS} DGI 9010; {B3} §10.5.1", CRITICAL),
    ("LOG-001", "Log format (9F4F, GET DATA) equals the profile's log format", f"{B3} Annex D", MAJOR),
    ("LOG-002", "Log SFI is not an AFL file, and the log file answers READ RECORD (9000 or 6A83 when empty)", f"{B3} Annex D", MAJOR),
    ("LOG-003", "Log records have the length the log format gives", f"{B3} Annex D", MINOR),
    ("LIFE-APP-001", "Application selectable and not blocked (SELECT 9000, not 6283)", f"{B1} §12.4; GP 2.3 §5.3", CRITICAL),
    ("LIFE-APP-002", "Application personalized: transaction commands work (GPO not 6985)", f"{CPS} §2; GP 2.3 §5.3", CRITICAL),
    ("LIFE-CARD-001", "Card life cycle equals the profile's target (GET STATUS over SCP03)", "GP 2.3 §11.4", MAJOR),
    ("GENAC-001", "First GENERATE AC (ARQC requested) answers a cryptogram with CID, ATC, AC and IAD", f"{B3} §6.5.5", CRITICAL),
    ("GENAC-002", "GENERATE AC answers in the profile's response format", f"{B3} §6.5.5.4", MAJOR),
    ("GENAC-003", "ATC in GENERATE AC equals the ATC read before plus one", f"{B3} §6.5.5", MAJOR),
    ("DIR-001", "PSE directory (when present) lists the application with its label and priority", f"{B1} §12.2.2–12.2.3", MINOR),
]

# -- GP life cycles over SCP03 (cardlab.tester.certify.life) and file-system profiles (cardlab.tester.certify.fs) --
GP, I4 = "GP Card Spec 2.3", "ISO/IEC 7816-4:2020"
_RULES += [
    ("LIFE-CARD-002", "SCP03 opens with the card keys diversified from the key store's KMC by the card's KDD (card cryptogram verifies)", f"{GP} Amendment D §6.2.2, §7.1.1; {GP} §7.2", CRITICAL),
    ("LIFE-APP-003", "Every profile application instance is PERSONALIZED (0F), not LOCKED (GET STATUS P1=40), and selectable", f"{GP} §5.3.1, §11.4, §11.9", CRITICAL),
    ("PRIV-001", "Privileges (C5, GET STATUS P1=40 over SCP03) of every profile application instance and of the PSE / PPSE equal the profile's (00: no privileges)", f"{GP} §11.4, table 11-38; §11.1.2", MAJOR),
]
# -- payment system directories, card level (cardlab.tester.certify.directories) --
_RULES += [
    ("DIR-002", "PPSE 2PAY.SYS.DDF01 selectable; its FCI (6F {84, A5 {BF0C}}) lists exactly the profile's applications: AID 4F, label 50, priority 87", f"{B1} §12.3; EMV Contactless Book B §3.3", MAJOR),
    ("DIR-003", "PSE 1PAY.SYS.DDF01 (when present): its directory records list exactly the profile's applications: AID 4F, label 50, priority 87", f"{B1} §12.2.2–12.3.2", MAJOR),
]
_FS_RULES: list[tuple[str, str, str, str]] = [
    ("FS-DF-001", "The profile's DF is selectable by DF name and by path, and its FCP says DF (82 = 38) with the profile's DF name (84)", f"{I4} §11.1.1, §7.4.3, §7.4.5", CRITICAL),
    ("FS-SEL-001", "Every file the profile defines is selectable by path from the MF (SELECT P1=08)", f"{I4} §11.1.1, §7.2", CRITICAL),
    ("FS-TYPE-001", "File type from the FCP file descriptor (82): transparent 01 / linear fixed 02 as the profile defines", f"{I4} §7.4.5 table 12", CRITICAL),
    ("FS-SIZE-001", "File size (80) of transparent EFs, record length and number of records (82) of record EFs as the profile defines", f"{I4} §7.4.3, §7.4.5", MAJOR),
    ("FS-SFI-001", "Short EF identifier (88) as the profile defines; READ by SFI reaches the same file", f"{I4} §7.4.3, §11.2.3", MINOR),
    ("FS-DATA-001", "Transparent EF contents (READ BINARY) equal the record's value padded to the file size", f"{I4} §11.2.3", CRITICAL),
    ("FS-REC-001", "Record EF: one record per record value, in order, each padded to the record length, and no record after the last (6A83)", f"{I4} §11.3.3, §7.3", CRITICAL),
    ("FS-AC-001", "Security attributes (8C compact) as the profile defines: read / update / write-append conditions", f"{I4} §7.4.3 (compact format), §5.4", CRITICAL),
    ("FS-AC-002", "What must not be readable is refused (READ 6982) and what must be readable reads without security", f"{I4} §5.4, §11.2.3", CRITICAL),
    ("FS-AC-003", "Updates outside the secure channel are refused (6982)", f"{I4} §5.4, §11.2.4; {GP} Amendment D §6.2", MAJOR),
]
_RULES += _FS_RULES
_ATR_RULES: list[tuple[str, str, str, str]] = [
    ("ATR-STRUCT-001", "The ATR is well formed: TS 3B/3F, the TA/TB/TC/TD chain T0 and each TDi announce, K historical bytes, TCK present (unless only T=0 is announced) and the XOR of T0 … TCK is 00", "ISO/IEC 7816-3 §8.2", CRITICAL),
    ("ATR-EMV-001", "The ATR is one EMV terminals accept for the protocols it announces (basic ATR): TB1 = 00, TC1 = 00, T=0 or T=1 first, after T=0 only T=15; for T=1 TD2 with T=1, TA3 IFSC 10-FE, TB3 BWI 0-4 / CWI 0-5", f"{B1} §8.3", CRITICAL),
    ("ATR-HIST-001", "The historical bytes are well formed: category 00 ends with a status indicator that is a valid SW, category 80 holds compact-TLV (a status indicator 8x is LCS / SW / LCS SW), 10 one DIR reference byte, 81-8F unused", "ISO/IEC 7816-4 §8.1.1", MAJOR),
    ("ATR-PROFILE-001", "The ATR equals the profile's card.atr, or offers card.protocol first with card.historical_bytes (not applicable when the profile names none)", "ISO/IEC 7816-3 §8.2; cardlab profile (docs/profile.md)", MAJOR),
]
_RULES += _ATR_RULES
_MATCH_RULES: list[tuple[str, str, str, str]] = [
    ("MATCH-001", "The card's PAN (5A) and PSN (5F34), read from its records, name exactly one record of the records file (and the record it was given as, if any)", f"{B3} Annex A; {B1} §12", CRITICAL),
    ("MATCH-002", "No other card of the run holds the same PAN and PSN", f"{B3} Annex A", CRITICAL),
    ("MATCH-003", "Every record of the records file has a card (a whole batch certified, no --sample)", "cardlab certification (docs/certification-report.md)", MAJOR),
]
_RULES += _MATCH_RULES
CLB, CL2, CL3 = "EMV Contactless Book B", "EMV Contactless Book C-2", "EMV Contactless Book C-3"
_CL_RULES: list[tuple[str, str, str, str]] = [
    ("CL-PPSE-001", "The PPSE lists the application with the kernel identifier (9F2A) of the profile's contactless kernel", f"{CLB} §3.3.2.5, Table 3-6", MAJOR),
    ("CL-PDOL-001", "SELECT on the contactless interface gives the profile's contactless PDOL (9F38); kernel 3: it asks for the TTQ (9F66) and, with fDDA, for 9F37, 9F02 and 5F2A", f"{CL3} §5.2, Annex C; {CL2} §5.2", CRITICAL),
    ("CL-OBJ-001", "The objects the kernel needs are present: kernel 3 a format 2 GPO answer with 82, 9F36, 9F26, 9F10, 57 (fDDA: 9F69, 9F4B); kernel 2 an AIP announcing EMV mode (byte 2 b8), an AFL and records with 5A, 5F24, 8C, 8D", f"{CL3} §5.4; {CL2} §3.2", CRITICAL),
    ("CL-CTQ-001", "Kernel 3: the Card Transaction Qualifiers (9F6C) equal the profile's ctq", f"{CL3} Annex A.2", MAJOR),
    ("CL-CTQ-002", "Kernel 3: the card follows the TTQ (an online cryptogram required ⇒ no TC) and the CTQ signed in 9F69 equals 9F6C", f"{CL3} §5.2, Annex C", MAJOR),
    ("CL-LIMIT-001", "The terminal profile's contactless limits hold: above the reader contactless floor limit the outcome is Online Request, and at or above the CVM required limit it carries a CVM", f"{CLB} §3.1.1; {CL3} §5.7; {CL2} (CVM capability)", MAJOR),
    ("CL-ODA-001", "Offline data authentication on contactless succeeds: kernel 3 fDDA version 01 on every answer carrying 9F4B (and on a TC), kernel 2 CDA on the GENERATE AC answer; same CA keys as contact", f"{CL3} Annex C; {B2} §6.6", CRITICAL),
    ("CL-AC-001", "The contactless ARQC verifies at the issuer host under the IMK-AC (pyemv)", f"{B2} §8.1; {CL3} §5.8", CRITICAL),
    ("CL-ATC-001", "One ATC for both interfaces: the contactless transactions continue the contact ATC by one each, and the contact interface then reads the last contactless ATC", f"{B3} Annex A (9F36); cardlab issue 16", CRITICAL),
    ("CL-OUT-001", "A contactless transaction at the certification amount ends Approved or Online Request (not End Application or Try Another Interface)", "EMV Contactless Book A §6", MAJOR),
]
_RULES += _CL_RULES
#: contactless rules (cardlab.tester.certify.contactless): not applicable without a contactless interface
CL_RULE_IDS = [r[0] for r in _CL_RULES]
#: rules evaluated once per card by cardlab.tester.certify.atr (power-on)
ATR_RULE_IDS = [r[0] for r in _ATR_RULES]
#: rules of the run, evaluated by cardlab.tester.certify.match before each card is certified
MATCH_RULE_IDS = [r[0] for r in _MATCH_RULES]
#: rules evaluated once per card by cardlab.tester.certify.life
LIFE_RULE_IDS = ["LIFE-CARD-001", "LIFE-CARD-002", "LIFE-APP-003"]
#: rule evaluated once per card by cardlab.tester.certify.life over SCP03, opt-in like the life cycles
PRIV_RULE_IDS = ["PRIV-001"]
#: rules evaluated once per card by cardlab.tester.certify.directories
DIR_RULE_IDS = ["DIR-002", "DIR-003"]
#: rules of file-system profiles only (cardlab.tester.certify.fs)
FS_RULE_IDS = [r[0] for r in _FS_RULES]

RULES: dict[str, Rule] = {r[0]: Rule(r[0], r[1], r[2], r[3], r[0].split("-")[0]) for r in _RULES}
#: tag → rule id for value checks
TAG_RULE: dict[int, str] = {t: v[0] for t, v in DATA_TAGS.items()}


def rule_for_tag(tag: int) -> str:
    return TAG_RULE.get(tag, OTHER_DATA[0])


def markdown_table() -> str:
    lines = [
        "| id | severity | description | reference |",
        "|---|---|---|---|",
    ]
    for r in RULES.values():
        lines.append(f"| `{r.id}` | {r.severity} | {r.description} | {r.reference} |")
    return "\n".join(lines)


_PROSE = """\
# Certification rules

Generated by `python -m cardlab.tester.rules > docs/rules.md` from `cardlab/tester/rules.py` ({n} rules). \
Each rule gives, per application (card-level rules: once per card), **pass**, **fail**, **not applicable** \
(nothing on the card or in its source data for the rule to check) or **not run** (the rule applies but could \
not be evaluated: a key missing from the key store, `--no-gp-status`, a VERIFY not sent to protect the PIN — the \
evidence names what was missing), with evidence (expected vs found, PANs masked 6+4, never keys or PINs). \
Data-object rules compare against values the tester derives itself from the issuer profile, the cardholder \
record and the key store (`cardlab/tester/sources/`).

A card **passes** only when every critical rule ran and passed. A card with a failed rule **fails** (exit code 1); \
a card where no rule failed but a critical rule could not run is **incomplete** (exit code 4, \
`cardlab/exitcodes.py`) — never a pass.

Cards are matched to records by what they hold (`MATCH-001`..`003`, `cardlab/tester/certify/match.py`): the PAN \
(5A) and PSN (5F34) read from the card's records by SELECT and READ RECORD before the certification transaction. \
A batch's job database or `--record` is only a hint compared with it. A card with no record, two cards with one \
record and a record with no card (a whole batch certified, no `--sample`) are each one finding, never a cascade \
of data rules.

PIN safety (`cardlab/tester/certify/pin.py`): the PIN try counter is read before any VERIFY; VERIFY with the \
record's PIN is sent only when the counter is at the profile's limit, at most once per card and run; after a \
refusal no further VERIFY is sent to that card. `--restore-pin-counter` resets a lowered counter by a PIN UNBLOCK \
issuer script (IMK-AC and IMK-SMI needed; the PIN is not changed) and reads it again. `KEY-PIN-002` shows the \
counter before and after. A command the tester did not send is reported as "not sent: <reason>", never with a \
status word the card did not send.

The issuer profile has no field for the payment system directories: by cardlab's convention (the EMV CPS script \
`vectors/scripts/emv-cps.yaml`) every EMV profile's card carries the PPSE `2PAY.SYS.DDF01` listing exactly the \
profile's applications (DIR-002, always checked), and may carry the contact PSE `1PAY.SYS.DDF01` (DIR-003, not \
applicable without one). The profile has no privileges field either: payment applications and the PSE / PPSE are \
installed without privileges (`00`), which PRIV-001 checks in the GP registry. PRIV-001 and the LIFE-CARD / \
LIFE-APP-003 rules read GET STATUS over the tester's own SCP03 (keys diversified from the key store's KMC), by \
default; `--no-gp-status` (`certify_card(gp_status=False)`) skips them and they are then not run.

Power-on is certified once per card from the ATR the transport got (through PC/SC: what the reader read): \
`ATR-STRUCT-001` (structure and TCK), `ATR-EMV-001` (EMV's basic-ATR rules for the protocols announced), \
`ATR-HIST-001` (historical bytes) and `ATR-PROFILE-001` (the profile's `card.atr`, or `card.protocol` / \
`card.historical_bytes`; not applicable when the profile names none). The evidence names the byte, e.g. \
`TD2 (byte 3) = 01: after T=0 only T=15 may follow` for cardlab's ATR before issue 10 (`3B8880010000000000718100F9`).

Contactless (`CL-*`, `cardlab/tester/certify/contactless.py`, issue 16) is certified per application whose profile \
has a `contactless` section, through the card's contactless interface (not applicable when the certification was \
given none). The tester runs its own Entry Point and kernel (`cardlab/tester/contactless/`) with the terminal \
profile's `contactless:` reader configuration (or, without one, a reader with a 50.00 floor and CVM limit and a \
1,000.00 transaction limit): one transaction at the certification amount and one above the floor limit, then \
reads the ATC on the contact interface again.
"""


def document() -> str:
    """docs/rules.md: how rules are judged, then the catalogue."""
    return _PROSE.format(n=len(RULES)) + "\n" + markdown_table() + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(document(), end="")

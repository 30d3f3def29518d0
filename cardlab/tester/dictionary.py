"""The tester's own EMV data element dictionary: tag → name, format, source
(EMV 4.4 Book 3 Annex A, Table 33; Book 4 for the terminal's objects; EMV CPS
and the GlobalPlatform card specification for the few personalization tags).
Proprietary and payment-system-specific tags used by cardlab's cards and
profiles are listed with their source marked accordingly.

Formats follow Book 1 §4.3: ``a``, ``an``, ``ans``, ``b``, ``cn``, ``n``,
``var.``; a DOL pads or truncates a value by its format (Book 3 §5.4), which
:func:`dol_value` does.

>>> name(0x9F26)
'Application Cryptogram'
>>> name(0xDF7F)
'Unknown data object DF7F'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataElement:
    tag: int
    name: str
    format: str  # "b", "n", "an", "ans", "cn", "a", "var"
    source: str  # "ICC", "Terminal", "Issuer", "ICC/Terminal", "Proprietary"
    length: str = ""  # as Annex A gives it, e.g. "8", "1–16", "var."
    template: str = ""  # where it lives, e.g. "70 or 77"

    @property
    def constructed(self) -> bool:
        first = self.tag.to_bytes(max(1, (self.tag.bit_length() + 7) // 8), "big")[0]
        return bool(first & 0x20)


_E = DataElement

_TABLE: list[DataElement] = [
    # -- ICC: application selection and FCI (Book 1 §11–12, Book 3 Annex A) --------------
    _E(0x4F, "Application Identifier (AID) – card", "b", "ICC", "5–16", "61"),
    _E(0x50, "Application Label", "ans", "ICC", "1–16", "61 or A5"),
    _E(0x57, "Track 2 Equivalent Data", "b", "ICC", "var. up to 19", "70 or 77"),
    _E(0x5A, "Application Primary Account Number (PAN)", "cn", "ICC", "var. up to 10", "70 or 77"),
    _E(0x61, "Application Template", "b", "ICC", "var. up to 252", "70"),
    _E(0x6F, "File Control Information (FCI) Template", "var", "ICC", "var. up to 252"),
    _E(0x70, "READ RECORD Response Message Template", "var", "ICC", "var. up to 253"),
    _E(0x71, "Issuer Script Template 1", "b", "Issuer", "var."),
    _E(0x72, "Issuer Script Template 2", "b", "Issuer", "var."),
    _E(0x73, "Directory Discretionary Template", "var", "ICC", "var. up to 252", "70"),
    _E(0x77, "Response Message Template Format 2", "var", "ICC", "var."),
    _E(0x80, "Response Message Template Format 1", "var", "ICC", "var."),
    _E(0x81, "Amount, Authorised (Binary)", "b", "Terminal", "4"),
    _E(0x82, "Application Interchange Profile", "b", "ICC", "2", "77 or 80"),
    _E(0x83, "Command Template", "b", "Terminal", "var."),
    _E(0x84, "Dedicated File (DF) Name", "b", "ICC", "5–16", "6F"),
    _E(0x86, "Issuer Script Command", "b", "Issuer", "var. up to 261", "71 or 72"),
    _E(0x87, "Application Priority Indicator", "b", "ICC", "1", "61 or A5"),
    _E(0x88, "Short File Identifier (SFI)", "b", "ICC", "1", "A5"),
    _E(0x89, "Authorisation Code", "an", "Issuer", "6"),
    _E(0x8A, "Authorisation Response Code", "an", "Issuer/Terminal", "2"),
    _E(0x8C, "Card Risk Management Data Object List 1 (CDOL1)", "b", "ICC", "var. up to 252", "70 or 77"),
    _E(0x8D, "Card Risk Management Data Object List 2 (CDOL2)", "b", "ICC", "var. up to 252", "70 or 77"),
    _E(0x8E, "Cardholder Verification Method (CVM) List", "b", "ICC", "10–252", "70 or 77"),
    _E(0x8F, "Certification Authority Public Key Index", "b", "ICC", "1", "70 or 77"),
    _E(0x90, "Issuer Public Key Certificate", "b", "ICC", "NCA", "70 or 77"),
    _E(0x91, "Issuer Authentication Data", "b", "Issuer", "8–16"),
    _E(0x92, "Issuer Public Key Remainder", "b", "ICC", "NI – NCA + 36", "70 or 77"),
    _E(0x93, "Signed Static Application Data", "b", "ICC", "NI", "70 or 77"),
    _E(0x94, "Application File Locator (AFL)", "var", "ICC", "var. up to 252", "77 or 80"),
    _E(0x95, "Terminal Verification Results", "b", "Terminal", "5"),
    _E(0x97, "Transaction Certificate Data Object List (TDOL)", "b", "ICC", "var. up to 252", "70 or 77"),
    _E(0x98, "Transaction Certificate (TC) Hash Value", "b", "Terminal", "20"),
    _E(0x99, "Transaction Personal Identification Number (PIN) Data", "b", "Terminal", "var."),
    _E(0x9A, "Transaction Date", "n", "Terminal", "3"),
    _E(0x9B, "Transaction Status Information", "b", "Terminal", "2"),
    _E(0x9C, "Transaction Type", "n", "Terminal", "1"),
    _E(0x9D, "Directory Definition File (DDF) Name", "b", "ICC", "5–16", "61"),
    _E(0xA5, "File Control Information (FCI) Proprietary Template", "var", "ICC", "var.", "6F"),
    _E(0x5F20, "Cardholder Name", "ans", "ICC", "2–26", "70 or 77"),
    _E(0x5F24, "Application Expiration Date", "n", "ICC", "3", "70 or 77"),
    _E(0x5F25, "Application Effective Date", "n", "ICC", "3", "70 or 77"),
    _E(0x5F28, "Issuer Country Code", "n", "ICC", "2", "70 or 77"),
    _E(0x5F2A, "Transaction Currency Code", "n", "Terminal", "2"),
    _E(0x5F2D, "Language Preference", "an", "ICC", "2–8", "A5"),
    _E(0x5F30, "Service Code", "n", "ICC", "2", "70 or 77"),
    _E(0x5F34, "Application Primary Account Number (PAN) Sequence Number", "n", "ICC", "1", "70 or 77"),
    _E(0x5F36, "Transaction Currency Exponent", "n", "Terminal", "1"),
    _E(0x5F50, "Issuer URL", "ans", "ICC", "var.", "BF0C or 73"),
    _E(0x5F53, "International Bank Account Number (IBAN)", "var", "ICC", "var. up to 34", "BF0C or 73"),
    _E(0x5F54, "Bank Identifier Code (BIC)", "var", "ICC", "8 or 11", "BF0C or 73"),
    _E(0x5F55, "Issuer Country Code (alpha2 format)", "a", "ICC", "2", "BF0C or 73"),
    _E(0x5F56, "Issuer Country Code (alpha3 format)", "a", "ICC", "3", "BF0C or 73"),
    _E(0x5F57, "Account Type", "n", "Terminal", "1"),
    _E(0x9F01, "Acquirer Identifier", "n", "Terminal", "6"),
    _E(0x9F02, "Amount, Authorised (Numeric)", "n", "Terminal", "6"),
    _E(0x9F03, "Amount, Other (Numeric)", "n", "Terminal", "6"),
    _E(0x9F04, "Amount, Other (Binary)", "b", "Terminal", "4"),
    _E(0x9F05, "Application Discretionary Data", "b", "ICC", "1–32", "70 or 77"),
    _E(0x9F06, "Application Identifier (AID) – terminal", "b", "Terminal", "5–16"),
    _E(0x9F07, "Application Usage Control", "b", "ICC", "2", "70 or 77"),
    _E(0x9F08, "Application Version Number", "b", "ICC", "2", "70 or 77"),
    _E(0x9F09, "Application Version Number", "b", "Terminal", "2"),
    _E(0x9F0B, "Cardholder Name Extended", "ans", "ICC", "27–45", "70 or 77"),
    _E(0x9F0D, "Issuer Action Code – Default", "b", "ICC", "5", "70 or 77"),
    _E(0x9F0E, "Issuer Action Code – Denial", "b", "ICC", "5", "70 or 77"),
    _E(0x9F0F, "Issuer Action Code – Online", "b", "ICC", "5", "70 or 77"),
    _E(0x9F10, "Issuer Application Data", "b", "ICC", "var. up to 32", "77 or 80"),
    _E(0x9F11, "Issuer Code Table Index", "n", "ICC", "1", "A5"),
    _E(0x9F12, "Application Preferred Name", "ans", "ICC", "1–16", "61 or A5"),
    _E(0x9F13, "Last Online Application Transaction Counter (ATC) Register", "b", "ICC", "2"),
    _E(0x9F14, "Lower Consecutive Offline Limit", "b", "ICC", "1", "70 or 77"),
    _E(0x9F15, "Merchant Category Code", "n", "Terminal", "2"),
    _E(0x9F16, "Merchant Identifier", "ans", "Terminal", "15"),
    _E(0x9F17, "Personal Identification Number (PIN) Try Counter", "b", "ICC", "1"),
    _E(0x9F18, "Issuer Script Identifier", "b", "Issuer", "4", "71 or 72"),
    _E(0x9F19, "Token Requestor ID", "n", "ICC", "6", "70 or 77"),
    _E(0x9F1A, "Terminal Country Code", "n", "Terminal", "2"),
    _E(0x9F1B, "Terminal Floor Limit", "b", "Terminal", "4"),
    _E(0x9F1C, "Terminal Identification", "an", "Terminal", "8"),
    _E(0x9F1D, "Terminal Risk Management Data", "b", "Terminal", "1–8"),
    _E(0x9F1E, "Interface Device (IFD) Serial Number", "an", "Terminal", "8"),
    _E(0x9F1F, "Track 1 Discretionary Data", "ans", "ICC", "var.", "70 or 77"),
    _E(0x9F20, "Track 2 Discretionary Data", "cn", "ICC", "var.", "70 or 77"),
    _E(0x9F21, "Transaction Time", "n", "Terminal", "3"),
    _E(0x9F22, "Certification Authority Public Key Index", "b", "Terminal", "1"),
    _E(0x9F23, "Upper Consecutive Offline Limit", "b", "ICC", "1", "70 or 77"),
    _E(0x9F24, "Payment Account Reference (PAR)", "an", "ICC", "29", "70 or 77"),
    _E(0x9F25, "Last 4 Digits of PAN", "n", "ICC", "2", "70 or 77"),
    _E(0x9F26, "Application Cryptogram", "b", "ICC", "8", "77 or 80"),
    _E(0x9F27, "Cryptogram Information Data", "b", "ICC", "1", "77 or 80"),
    _E(0x9F2D, "ICC PIN Encipherment Public Key Certificate", "b", "ICC", "NI", "70 or 77"),
    _E(0x9F2E, "ICC PIN Encipherment Public Key Exponent", "b", "ICC", "1 or 3", "70 or 77"),
    _E(0x9F2F, "ICC PIN Encipherment Public Key Remainder", "b", "ICC", "NPE – NI + 42", "70 or 77"),
    _E(0x9F32, "Issuer Public Key Exponent", "b", "ICC", "1 or 3", "70 or 77"),
    _E(0x9F33, "Terminal Capabilities", "b", "Terminal", "3"),
    _E(0x9F34, "Cardholder Verification Method (CVM) Results", "b", "Terminal", "3"),
    _E(0x9F35, "Terminal Type", "n", "Terminal", "1"),
    _E(0x9F36, "Application Transaction Counter (ATC)", "b", "ICC", "2", "77 or 80"),
    _E(0x9F37, "Unpredictable Number", "b", "Terminal", "4"),
    _E(0x9F38, "Processing Options Data Object List (PDOL)", "b", "ICC", "var.", "A5"),
    _E(0x9F39, "Point-of-Service (POS) Entry Mode", "n", "Terminal", "1"),
    _E(0x9F3A, "Amount, Reference Currency", "b", "Terminal", "4"),
    _E(0x9F3B, "Application Reference Currency", "n", "ICC", "2–8", "70 or 77"),
    _E(0x9F3C, "Transaction Reference Currency Code", "n", "Terminal", "2"),
    _E(0x9F3D, "Transaction Reference Currency Exponent", "n", "Terminal", "1"),
    _E(0x9F40, "Additional Terminal Capabilities", "b", "Terminal", "5"),
    _E(0x9F41, "Transaction Sequence Counter", "n", "Terminal", "2–4"),
    _E(0x9F42, "Application Currency Code", "n", "ICC", "2", "70 or 77"),
    _E(0x9F43, "Application Reference Currency Exponent", "n", "ICC", "1–4", "70 or 77"),
    _E(0x9F44, "Application Currency Exponent", "n", "ICC", "1", "70 or 77"),
    _E(0x9F45, "Data Authentication Code", "b", "ICC", "2"),
    _E(0x9F46, "ICC Public Key Certificate", "b", "ICC", "NI", "70 or 77"),
    _E(0x9F47, "ICC Public Key Exponent", "b", "ICC", "1 or 3", "70 or 77"),
    _E(0x9F48, "ICC Public Key Remainder", "b", "ICC", "NIC – NI + 42", "70 or 77"),
    _E(0x9F49, "Dynamic Data Authentication Data Object List (DDOL)", "b", "ICC", "up to 252", "70 or 77"),
    _E(0x9F4A, "Static Data Authentication Tag List", "var", "ICC", "var.", "70 or 77"),
    _E(0x9F4B, "Signed Dynamic Application Data", "b", "ICC", "NIC", "77 or 80"),
    _E(0x9F4C, "ICC Dynamic Number", "b", "ICC", "2–8"),
    _E(0x9F4D, "Log Entry", "b", "ICC", "2", "BF0C or 73"),
    _E(0x9F4E, "Merchant Name and Location", "ans", "Terminal", "var."),
    _E(0x9F4F, "Log Format", "b", "ICC", "var."),
    _E(0x9F52, "Application Default Action (ADA)", "b", "ICC", "2", "payment system (CCD/M/Chip/VIS)"),
    _E(0x9F53, "Consecutive Transaction Limit (International) / Transaction Category Code", "b", "ICC",
       "1", "payment system"),
    _E(0x9F54, "Cumulative Total Transaction Amount Limit", "n", "ICC", "6", "payment system"),
    _E(0x9F56, "Issuer Authentication Indicator", "b", "ICC", "1", "payment system"),
    _E(0x9F58, "Lower Consecutive Offline Limit (Card Check)", "b", "ICC", "1", "payment system"),
    _E(0x9F59, "Upper Consecutive Offline Limit (Card Check)", "b", "ICC", "1", "payment system"),
    _E(0x9F5A, "Application Program Identifier", "b", "ICC", "1–16", "payment system"),
    _E(0x9F5B, "Issuer Script Results", "b", "Terminal", "var."),
    _E(0x9F66, "Terminal Transaction Qualifiers (TTQ)", "b", "Terminal", "4", "contactless"),
    _E(0x9F6C, "Card Transaction Qualifiers (CTQ)", "b", "ICC", "2", "contactless"),
    _E(0x9F6E, "Form Factor Indicator / Third Party Data", "b", "ICC", "var.", "contactless"),
    _E(0x9F7C, "Customer Exclusive Data", "b", "ICC", "var. up to 32", "payment system"),
    _E(0xBF0C, "File Control Information (FCI) Issuer Discretionary Data", "var", "ICC", "var. up to 222", "A5"),
    # -- GlobalPlatform / ISO 7816 objects a trace may show --------------------------------
    _E(0x62, "File Control Parameters (FCP) Template", "var", "ICC", "var.", "ISO/IEC 7816-4"),
    _E(0x64, "File Management Data (FMD) Template", "var", "ICC", "var.", "ISO/IEC 7816-4"),
    _E(0x66, "Card Data", "var", "ICC", "var.", "GlobalPlatform"),
    _E(0xC1, "Security Domain Management Data", "var", "ICC", "var.", "GlobalPlatform"),
    _E(0xCF, "Key Derivation Data", "b", "ICC", "10", "GlobalPlatform"),
    _E(0x9F65, "Maximum Length of Commands", "b", "ICC", "1–2", "GlobalPlatform"),
    _E(0x9F7F, "Card Production Life Cycle (CPLC) Data", "b", "ICC", "42", "GlobalPlatform GET DATA"),
    _E(0x42, "Issuer Identification Number (IIN)", "n", "ICC", "3–4", "GlobalPlatform GET DATA"),
    _E(0x45, "Card Image Number (CIN)", "b", "ICC", "var.", "GlobalPlatform GET DATA"),
    _E(0xE3, "GlobalPlatform Registry Entry", "var", "ICC", "var.", "GlobalPlatform GET STATUS"),
    _E(0xC5, "Privileges", "b", "ICC", "3", "GlobalPlatform GET STATUS"),
    _E(0x9F70, "Life Cycle State", "b", "ICC", "1", "GlobalPlatform GET STATUS"),
    _E(0xC4, "Executable Load File AID", "b", "ICC", "5–16", "GlobalPlatform GET STATUS"),
    _E(0xCC, "Associated Security Domain AID", "b", "ICC", "5–16", "GlobalPlatform GET STATUS"),
    # -- cardlab's proprietary card risk data (personalization DGI 0D01, docs/dgi-map.md) -----
    _E(0xDF01, "Cryptogram Version Number (cardlab)", "b", "Proprietary", "1"),
    _E(0xDF02, "Derivation Key Index (cardlab)", "b", "Proprietary", "1"),
    _E(0xDF11, "Lower Cumulative Offline Amount (cardlab)", "n", "Proprietary", "6"),
    _E(0xDF12, "Upper Cumulative Offline Amount (cardlab)", "n", "Proprietary", "6"),
    _E(0xDF13, "Issuer Authentication Required (cardlab)", "b", "Proprietary", "1"),
    _E(0xDF14, "ARPC Method (cardlab)", "b", "Proprietary", "1"),
    _E(0xDF15, "Maximum ATC (cardlab)", "b", "Proprietary", "2"),
    _E(0xDF16, "Response Format (cardlab)", "b", "Proprietary", "1"),
    _E(0xDF17, "Application Currency Exponent for Limits (cardlab)", "b", "Proprietary", "1"),
]

#: tag → data element
TABLE: dict[int, DataElement] = {el.tag: el for el in _TABLE}

#: templates whose content is itself TLV (Book 3 Annex B)
TEMPLATES = frozenset(t for t, el in TABLE.items() if el.constructed)


def lookup(tag: int) -> DataElement | None:
    return TABLE.get(tag)


def name(tag: int) -> str:
    """The name of a tag, or ``Unknown data object XXXX``."""
    el = TABLE.get(tag)
    return el.name if el is not None else f"Unknown data object {tag:02X}"


def format_of(tag: int) -> str:
    el = TABLE.get(tag)
    return el.format if el is not None else "b"


def dol_value(tag: int, value: bytes | None, length: int) -> bytes:
    """A value fitted to a DOL entry's length (Book 3 §5.4): a missing value is
    ``length`` zero bytes; numeric (n) values are padded/truncated on the left,
    compressed numeric (cn) padded with FF on the right, others padded with
    zeros and truncated on the right."""
    if value is None:
        return bytes(length)
    fmt = format_of(tag)
    if len(value) == length:
        return value
    if fmt == "n":
        return value[-length:] if len(value) > length else bytes(length - len(value)) + value
    if fmt == "cn":
        return value[:length] if len(value) > length else value + b"\xff" * (length - len(value))
    return value[:length] if len(value) > length else value + bytes(length - len(value))

"""Issuer profile: what every card of a product holds, independent of the cardholder.

An issuer profile is a YAML file (format in ``docs/profile.md``) describing the
card's GlobalPlatform details and one or more EMV application templates: AID,
labels, DOLs, AIP, the AFL layout (which data objects go in which SFI/record
and which records are signed for offline data authentication), IACs, CVM list,
card risk management parameters (cardlab DGI 0D01, ``docs/dgi-map.md``),
cryptogram version, ODA method, ICC key, PIN try limit, log settings and the
names of the keys in the key store.

``load_profile(path)`` parses and validates it and returns a frozen
:class:`Profile`, or raises :class:`ProfileError` listing *every* problem with
its path in the document, e.g. ``applications[1].cdol1[2]: unknown tag 9F99``.

Encodings follow EMV 4.4 Book 3: DOLs (§5.4), AFL (§10.2), AIP (Annex C1),
CVM list (Annex C3, §10.5).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import yaml

from cardlab.personalizer.profile_atr import KEYS as ATR_KEYS
from cardlab.personalizer.profile_atr import read_card_atr

__all__ = [
    "ISSUER_CERTIFICATE_FORMAT",
    "TAGS",
    "Application",
    "ConversionRate",
    "CvmList",
    "CvmRule",
    "DolEntry",
    "GpDetails",
    "Iacs",
    "IccKey",
    "IssuerCertificateRef",
    "KeyRefs",
    "LogSettings",
    "Profile",
    "ProfileError",
    "RecordLayout",
    "RiskManagement",
    "TagInfo",
    "encode_dol",
    "load_profile",
    "parse_profile",
]


class ProfileError(ValueError):
    """The profile is invalid; ``problems`` lists each one as ``path: message``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))


# --------------------------------------------------------------------------- data element table


@dataclass(frozen=True)
class TagInfo:
    """One EMV data element as the profile knows it (EMV 4.4 Book 3 Annex A).

    ``source`` says where its value comes from: ``terminal`` (may appear in a
    DOL), ``card`` (ICC dynamic data a DOL may also name), ``record`` (the
    cardholder record), ``profile`` (this file), ``keys`` (certificates and
    signatures made at data preparation) or ``internal`` (not placed in records).
    """

    name: str
    source: str
    length: int | None = None  # fixed length in bytes, None when variable


def _t(name: str, source: str, length: int | None = None) -> TagInfo:
    return TagInfo(name, source, length)


TAGS: Final[Mapping[int, TagInfo]] = {
    # terminal data (Book 3 Annex A), may be requested in PDOL/CDOL/DDOL/TDOL/log format
    0x9F01: _t("Acquirer Identifier", "terminal", 6),
    0x9F40: _t("Additional Terminal Capabilities", "terminal", 5),
    0x81: _t("Amount, Authorised (Binary)", "terminal", 4),
    0x9F02: _t("Amount, Authorised (Numeric)", "terminal", 6),
    0x9F04: _t("Amount, Other (Binary)", "terminal", 4),
    0x9F03: _t("Amount, Other (Numeric)", "terminal", 6),
    0x9F3A: _t("Amount, Reference Currency", "terminal", 4),
    0x9F09: _t("Application Version Number (terminal)", "terminal", 2),
    0x8A: _t("Authorisation Response Code", "terminal", 2),
    0x9F34: _t("CVM Results", "terminal", 3),
    0x9F22: _t("CA Public Key Index (terminal)", "terminal", 1),
    0x9F1E: _t("Interface Device Serial Number", "terminal", 8),
    0x91: _t("Issuer Authentication Data", "terminal"),
    0x9F15: _t("Merchant Category Code", "terminal", 2),
    0x9F16: _t("Merchant Identifier", "terminal", 15),
    0x9F4E: _t("Merchant Name and Location", "terminal"),
    0x9F39: _t("POS Entry Mode", "terminal", 1),
    0x9F33: _t("Terminal Capabilities", "terminal", 3),
    0x9F1A: _t("Terminal Country Code", "terminal", 2),
    0x9F1B: _t("Terminal Floor Limit", "terminal", 4),
    0x9F1C: _t("Terminal Identification", "terminal", 8),
    0x9F35: _t("Terminal Type", "terminal", 1),
    0x95: _t("Terminal Verification Results", "terminal", 5),
    0x9B: _t("Transaction Status Information", "terminal", 2),
    0x98: _t("Transaction Certificate Hash Value", "terminal", 20),
    0x5F2A: _t("Transaction Currency Code", "terminal", 2),
    0x5F36: _t("Transaction Currency Exponent", "terminal", 1),
    0x9A: _t("Transaction Date", "terminal", 3),
    0x9F21: _t("Transaction Time", "terminal", 3),
    0x9C: _t("Transaction Type", "terminal", 1),
    0x9F41: _t("Transaction Sequence Counter", "terminal"),
    0x9F3C: _t("Transaction Reference Currency Code", "terminal", 2),
    0x9F3D: _t("Transaction Reference Currency Exponent", "terminal", 1),
    0x9F37: _t("Unpredictable Number", "terminal", 4),
    0x9F66: _t("Terminal Transaction Qualifiers", "terminal", 4),
    # card dynamic data a DOL may name (M/Chip CDOL1 carries 9F45 and 9F4C)
    0x9F45: _t("Data Authentication Code", "card", 2),
    0x9F4C: _t("ICC Dynamic Number", "card"),
    0x9F36: _t("Application Transaction Counter", "card", 2),
    0x9F26: _t("Application Cryptogram", "card", 8),
    0x9F27: _t("Cryptogram Information Data", "card", 1),
    0x9F10: _t("Issuer Application Data", "card"),
    0x9F13: _t("Last Online ATC Register", "card", 2),
    0x9F17: _t("PIN Try Counter", "card", 1),
    # from the cardholder record
    0x57: _t("Track 2 Equivalent Data", "record"),
    0x5A: _t("Application PAN", "record"),
    0x5F20: _t("Cardholder Name", "record"),
    0x9F0B: _t("Cardholder Name Extended", "record"),
    0x5F24: _t("Application Expiration Date", "record", 3),
    0x5F25: _t("Application Effective Date", "record", 3),
    0x5F34: _t("Application PAN Sequence Number", "record", 1),
    0x5F30: _t("Service Code", "record", 2),
    0x9F1F: _t("Track 1 Discretionary Data", "record"),
    0x9F20: _t("Track 2 Discretionary Data", "record"),
    # from the profile
    0x4F: _t("Application Identifier (AID)", "profile"),
    0x50: _t("Application Label", "profile"),
    0x87: _t("Application Priority Indicator", "profile", 1),
    0x9F38: _t("PDOL", "profile"),
    0x5F2D: _t("Language Preference", "profile"),
    0x9F11: _t("Issuer Code Table Index", "profile", 1),
    0x9F12: _t("Application Preferred Name", "profile"),
    0x82: _t("Application Interchange Profile", "profile", 2),
    0x94: _t("Application File Locator", "profile"),
    0x8C: _t("CDOL1", "profile"),
    0x8D: _t("CDOL2", "profile"),
    0x8E: _t("CVM List", "profile"),
    0x9F07: _t("Application Usage Control", "profile", 2),
    0x9F08: _t("Application Version Number", "profile", 2),
    0x9F0D: _t("Issuer Action Code - Default", "profile", 5),
    0x9F0E: _t("Issuer Action Code - Denial", "profile", 5),
    0x9F0F: _t("Issuer Action Code - Online", "profile", 5),
    0x5F28: _t("Issuer Country Code", "profile", 2),
    0x9F42: _t("Application Currency Code", "profile", 2),
    0x9F44: _t("Application Currency Exponent", "profile", 1),
    0x9F49: _t("DDOL", "profile"),
    0x97: _t("TDOL", "profile"),
    0x9F14: _t("Lower Consecutive Offline Limit", "profile", 1),
    0x9F23: _t("Upper Consecutive Offline Limit", "profile", 1),
    0x9F4A: _t("Static Data Authentication Tag List", "profile"),
    0x9F4D: _t("Log Entry", "profile", 2),
    0x9F4F: _t("Log Format", "profile"),
    0x5F50: _t("Issuer URL", "profile"),
    0x42: _t("Issuer Identification Number", "profile", 3),
    # made at data preparation from the key store (90, 92, 9F32 may come from the profile's
    # keys.issuer_certificate: the certificate the scheme returned)
    0x8F: _t("Certification Authority Public Key Index", "keys", 1),
    0x90: _t("Issuer Public Key Certificate", "keys"),
    0x92: _t("Issuer Public Key Remainder", "keys"),
    0x9F32: _t("Issuer Public Key Exponent", "keys"),
    0x93: _t("Signed Static Application Data", "keys"),
    0x9F46: _t("ICC Public Key Certificate", "keys"),
    0x9F47: _t("ICC Public Key Exponent", "keys"),
    0x9F48: _t("ICC Public Key Remainder", "keys"),
}

#: data objects a READ RECORD may return (placed by the AFL layout)
_RECORD_SOURCES = ("record", "profile", "keys")
#: profile tags that are not record data (FCI, GPO response, GET DATA)
_NOT_IN_RECORDS = {0x4F, 0x50, 0x87, 0x9F38, 0x5F2D, 0x9F11, 0x9F12, 0x82, 0x94, 0x9F4D, 0x9F4F}
#: data objects that must be in the records (Book 3 §7.2: mandatory data objects)
_MANDATORY_RECORD_TAGS = (0x5A, 0x5F24, 0x8C, 0x8D)
#: what any cryptogram version needs from CDOL1 (VIS CVN 10/18 and M/Chip CVN 16 all cover them)
_CDOL1_REQUIRED = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)

CVNS: Final[Mapping[int, str]] = {10: "Visa CVN 10", 18: "Visa CVN 18", 16: "Mastercard CVN 16"}
#: value of DGI 0D01 tag DF01 for each CVN (docs/dgi-map.md)
CVN_CODES: Final[Mapping[int, int]] = {10: 0x0A, 18: 0x12, 16: 0x10}
ODA_METHODS = ("SDA", "DDA", "CDA")
DIVERSIFICATIONS = ("emv", "visa2", "kdf3", "none")
LIFE_CYCLES = ("OP_READY", "INITIALIZED", "SECURED")

#: CVM codes, EMV Book 3 Annex C3 Table 39 (b6–b1 of the first byte)
CVM_METHODS: Final[Mapping[str, int]] = {
    "fail": 0x00,
    "offline_plaintext_pin": 0x01,
    "online_pin": 0x02,
    "offline_plaintext_pin_and_signature": 0x03,
    "offline_enciphered_pin": 0x04,
    "offline_enciphered_pin_and_signature": 0x05,
    "signature": 0x1E,
    "no_cvm": 0x1F,
}
#: CVM condition codes, EMV Book 3 Annex C3 Table 40
CVM_CONDITIONS: Final[Mapping[str, int]] = {
    "always": 0x00,
    "unattended_cash": 0x01,
    "not_cash_or_cashback": 0x02,
    "terminal_supports": 0x03,
    "manual_cash": 0x04,
    "purchase_with_cashback": 0x05,
    "under_x": 0x06,
    "over_x": 0x07,
    "under_y": 0x08,
    "over_y": 0x09,
}
_OFFLINE_PIN_METHODS = {0x01, 0x03, 0x04, 0x05}
_ENCIPHERED_PIN_METHODS = {0x04, 0x05}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class DolEntry:
    """One entry of a Data Object List: the tag and the length the card asks for."""

    tag: int
    length: int


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")


def encode_dol(dol: Sequence[DolEntry]) -> bytes:
    """DOL bytes (Book 3 §5.4): tag ‖ one-byte length for each entry.

    >>> encode_dol((DolEntry(0x9F02, 6), DolEntry(0x95, 5))).hex().upper()
    '9F02069505'
    """
    return b"".join(_tag_bytes(e.tag) + bytes((e.length,)) for e in dol)


@dataclass(frozen=True)
class CvmRule:
    """One Cardholder Verification Rule (Book 3 Annex C3)."""

    method: str  # a key of CVM_METHODS
    condition: str  # a key of CVM_CONDITIONS
    next_on_fail: bool  # b7: apply the succeeding rule if this one fails

    def encode(self) -> bytes:
        return bytes(
            (CVM_METHODS[self.method] | (0x40 if self.next_on_fail else 0), CVM_CONDITIONS[self.condition])
        )


@dataclass(frozen=True)
class CvmList:
    """The CVM List (8E): amounts X and Y (in the application currency) and the rules."""

    amount_x: int
    amount_y: int
    rules: tuple[CvmRule, ...]

    def encode(self) -> bytes:
        """Value of tag 8E.

        >>> CvmList(0, 0, (CvmRule("offline_plaintext_pin", "terminal_supports", True),
        ...                CvmRule("signature", "always", False))).encode().hex().upper()
        '000000000000000041031E00'
        """
        return (
            self.amount_x.to_bytes(4, "big")
            + self.amount_y.to_bytes(4, "big")
            + b"".join(r.encode() for r in self.rules)
        )

    @property
    def offline_pin(self) -> bool:
        """Whether some rule asks for an offline PIN (so DGIs 8010/9010 are needed)."""
        return any(CVM_METHODS[r.method] in _OFFLINE_PIN_METHODS for r in self.rules)

    @property
    def enciphered_pin(self) -> bool:
        return any(CVM_METHODS[r.method] in _ENCIPHERED_PIN_METHODS for r in self.rules)


@dataclass(frozen=True)
class RecordLayout:
    """One record of the application's files: its place and the data objects it holds, in order."""

    sfi: int
    number: int
    tags: tuple[int, ...]
    oda: bool  # included in the static data signed for offline data authentication

    @property
    def dgi(self) -> int:
        """The CPS record DGI ``SSRR`` (docs/dgi-map.md)."""
        return (self.sfi << 8) | self.number


@dataclass(frozen=True)
class Iacs:
    """Issuer Action Codes, 5 bytes each (9F0E denial, 9F0F online, 9F0D default)."""

    denial: bytes
    online: bytes
    default: bytes


@dataclass(frozen=True)
class ConversionRate:
    """One entry of the currency conversion table, cardlab DGI 0D02 (docs/dgi-map.md):
    ``mantissa / 10**exponent`` application-currency minor units per minor unit of ``currency``."""

    currency: int  # ISO 4217 numeric
    mantissa: int  # 1..99 999 999 (n 8)
    exponent: int  # 0..12


@dataclass(frozen=True)
class RiskManagement:
    """Card risk management parameters: cardlab DGI 0D01 (docs/dgi-map.md)."""

    lcol: int = 0  # 9F14
    ucol: int = 0  # 9F23
    lower_cumulative: int = 0  # DF11, minor units
    upper_cumulative: int = 0  # DF12, minor units
    default_action: bytes = b"\x00\x00"  # 9F52
    issuer_auth_required: bool = False  # DF13
    arpc_method: int = 1  # DF14
    max_atc: int = 0xFFFF  # DF15
    dki: int = 1  # DF02
    #: DGI 0D02 (optional): foreign amounts converted for the cumulative amounts DF11/DF12
    currency_conversion: tuple[ConversionRate, ...] = ()


@dataclass(frozen=True)
class LogSettings:
    """Transaction log: 9F4D (SFI ‖ number of records) and 9F4F (log format DOL)."""

    sfi: int
    records: int
    format: tuple[DolEntry, ...]

    @property
    def log_entry(self) -> bytes:
        return bytes((self.sfi, self.records))


@dataclass(frozen=True)
class IccKey:
    """The per-card ICC RSA key pair generated at data preparation (DDA/CDA)."""

    size: int  # modulus bits
    exponent: int  # 3 or 65537


@dataclass(frozen=True)
class IssuerCertificateRef:
    """An Issuer Public Key Certificate the payment scheme's CA returned for the
    issuer key (EMV Book 2 §5.3, Table 13), given with the profile
    (``keys.issuer_certificate``): placed on the cards as it is, after data
    preparation has verified it (``cardlab.personalizer.prepare``)."""

    #: the certificate's issuer identifier: 3–8 leading PAN digits (F padding removed)
    issuer_identifier: str
    certificate: bytes  # 90
    remainder: bytes  # 92, empty when the issuer modulus fits the certificate
    exponent: bytes  # 9F32
    #: the profile field it comes from, for error messages
    where: str = ""


@dataclass(frozen=True)
class KeyRefs:
    """Names of keys in the key store (never key values), and the issuer
    certificates the scheme returned (public data)."""

    imk_ac: str
    imk_smi: str
    imk_smc: str
    issuer_rsa: str | None  # issuer key pair + certificate, needed for any ODA
    ca_index: int | None  # 8F: index of the CA public key that certified the issuer key
    #: ``keys.issuer_certificate``: certificates of the issuer key, one per issuer identifier
    issuer_certificates: tuple[IssuerCertificateRef, ...] = ()
    #: the certificate document ``keys.issuer_certificate`` names (as written), when a file
    issuer_certificate_file: str | None = None

    def issuer_certificate_for(self, pan: str) -> IssuerCertificateRef | None:
        """The certificate whose issuer identifier is the longest prefix of ``pan``."""
        best: IssuerCertificateRef | None = None
        for c in self.issuer_certificates:
            if pan.startswith(c.issuer_identifier) and (
                best is None or len(c.issuer_identifier) > len(best.issuer_identifier)
            ):
                best = c
        return best


@dataclass(frozen=True)
class Application:
    """One EMV application template on the card."""

    name: str
    aid: bytes
    label: str
    preferred_name: str | None
    issuer_code_table_index: int | None
    priority: int
    languages: tuple[str, ...]
    pdol: tuple[DolEntry, ...]
    oda: tuple[str, ...]  # subset of ODA_METHODS, empty for none
    aip: bytes
    cvn: int
    records: tuple[RecordLayout, ...]
    cdol1: tuple[DolEntry, ...]
    cdol2: tuple[DolEntry, ...]
    ddol: tuple[DolEntry, ...]
    tdol: tuple[DolEntry, ...]
    iac: Iacs
    cvm_list: CvmList | None
    auc: bytes
    country: int
    currency: int
    currency_exponent: int
    version: bytes
    risk: RiskManagement
    pin_try_limit: int
    log: LogSettings | None
    response_format: int
    icc_key: IccKey | None
    keys: KeyRefs
    service_code: str
    sda_tag_list: tuple[int, ...]
    extra_data: tuple[tuple[int, bytes], ...] = field(default=())

    @property
    def language_preference(self) -> bytes:
        """Value of 5F2D."""
        return "".join(self.languages).encode("ascii")

    @property
    def offline_pin(self) -> bool:
        return self.cvm_list is not None and self.cvm_list.offline_pin

    def afl(self) -> bytes:
        """Value of 94 (Book 3 §10.2): SFI<<3 ‖ first ‖ last ‖ number signed, per entry.

        Consecutive records of an SFI share an entry; since the signed records
        of an entry must come first, a signed record after an unsigned one
        starts a new entry.
        """
        out = bytearray()
        entries: list[list[RecordLayout]] = []
        for rec in sorted(self.records, key=lambda r: (r.sfi, r.number)):
            last = entries[-1][-1] if entries else None
            if (
                last is not None
                and last.sfi == rec.sfi
                and last.number + 1 == rec.number
                and not (rec.oda and not last.oda)
            ):
                entries[-1].append(rec)
            else:
                entries.append([rec])
        for entry in entries:
            signed = sum(1 for r in entry if r.oda)
            out += bytes((entry[0].sfi << 3, entry[0].number, entry[-1].number, signed))
        return bytes(out)

    def oda_records(self) -> tuple[RecordLayout, ...]:
        """The records whose contents are signed, in AFL order."""
        return tuple(r for r in sorted(self.records, key=lambda r: (r.sfi, r.number)) if r.oda)

    def record_tags(self) -> Iterator[int]:
        for rec in self.records:
            yield from rec.tags

    def extra(self, tag: int) -> bytes | None:
        for t, v in self.extra_data:
            if t == tag:
                return v
        return None


@dataclass(frozen=True)
class GpDetails:
    """The card's GlobalPlatform details for the perso engine."""

    isd_aid: bytes
    kmc: str  # key store name of the KMC
    diversification: str  # one of DIVERSIFICATIONS
    key_version: int
    target_life_cycle: str  # one of LIFE_CYCLES
    #: the card stock's ATR (cardlab.personalizer.profile_atr); None: the default
    atr: bytes | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    card: GpDetails
    applications: tuple[Application, ...]
    #: issuer BINs (6–8 leading PAN digits) the cards of this profile are on; empty: any PAN
    bins: tuple[str, ...] = ()

    def pan_on_bin(self, pan: str) -> bool:
        """Whether ``pan`` starts with one of :attr:`bins` (always true without ``bins``)."""
        return not self.bins or any(pan.startswith(b) for b in self.bins)

    def application(self, name: str) -> Application:
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(name)


# --------------------------------------------------------------------------- parsing helpers

_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,63}$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})*$")
_DOL_ITEM = re.compile(r"^\s*([0-9A-Fa-f]{2,4})\s*[:/ ]\s*(\d{1,3})\s*$")


def _fmt_tag(tag: int) -> str:
    return _tag_bytes(tag).hex().upper()


class _Checker:
    """Collects problems while a profile is read, so all of them are reported at once."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.problems: list[str] = []
        #: the profile's directory: files the profile names are relative to it
        self.base_dir = base_dir

    def err(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    # -- typed accessors (return a default after recording a problem) --

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        self.err(path, f"expected a mapping, got {_kind(value)}")
        return {}

    def known_keys(self, m: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
        for key in m:
            if key not in allowed:
                self.err(_join(path, str(key)), f"unknown field (expected one of: {', '.join(allowed)})")

    def string(self, m: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        p = _join(path, key)
        if key not in m or m[key] is None:
            if default is None:
                self.err(p, "missing")
                return ""
            return default
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            self.err(p, f"expected a string, got {_kind(v)}")
            return ""
        return str(v)

    def opt_string(self, m: Mapping[str, Any], key: str, path: str) -> str | None:
        if m.get(key) is None:
            return None
        return self.string(m, key, path)

    def integer(
        self, m: Mapping[str, Any], key: str, path: str, lo: int, hi: int, default: int | None = None
    ) -> int:
        p = _join(path, key)
        if key not in m or m[key] is None:
            if default is None:
                self.err(p, "missing")
                return lo
            return default
        v = m[key]
        if isinstance(v, str) and re.fullmatch(r"0[xX][0-9A-Fa-f]+", v.strip()):
            v = int(v, 16)
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(p, f"expected an integer, got {_kind(v)}")
            return lo
        if not lo <= v <= hi:
            self.err(p, f"{v} is out of range {lo}..{hi}")
            return lo
        return v

    def boolean(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in m or m[key] is None:
            return default
        v = m[key]
        if not isinstance(v, bool):
            self.err(_join(path, key), f"expected true or false, got {_kind(v)}")
            return default
        return v

    def hexbytes(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        lengths: range | tuple[int, ...],
        default: bytes | None = None,
    ) -> bytes:
        p = _join(path, key)
        if key not in m or m[key] is None:
            if default is None:
                self.err(p, "missing")
                return b""
            return default
        return self.hexvalue(m[key], p, lengths)

    def hexvalue(self, v: object, p: str, lengths: range | tuple[int, ...]) -> bytes:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # YAML read an all-digit hex string as a number; quote it to keep leading zeros
        if not isinstance(v, str):
            self.err(p, f"expected a hex string, got {_kind(v)}")
            return b""
        compact = re.sub(r"\s", "", v)
        if not _HEX.match(compact):
            self.err(p, f"{v!r} is not hex (pairs of 0-9 A-F)")
            return b""
        b = bytes.fromhex(compact)
        if len(b) not in lengths:
            self.err(p, f"{len(b)} bytes, expected {_describe_lengths(lengths)}")
        return b

    def key_name(self, m: Mapping[str, Any], key: str, path: str, required: bool) -> str | None:
        p = _join(path, key)
        if m.get(key) is None:
            if required:
                self.err(p, "missing (name of a key in the key store)")
            return None
        v = m[key]
        if not isinstance(v, str) or not _KEY_NAME.match(v):
            self.err(p, f"{v!r} is not a key name (letters, digits, . _ / : -)")
            return None
        return v

    def tag(self, v: object, p: str) -> int | None:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not re.fullmatch(r"[0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}", v.strip()):
            self.err(p, f"{v!r} is not a tag (2 or 4 hex digits)")
            return None
        tag = int(v, 16)
        if tag not in TAGS:
            self.err(p, f"unknown tag {_fmt_tag(tag)}")
            return None
        return tag

    def dol(self, value: object, p: str, *, allow_profile: bool = False) -> tuple[DolEntry, ...]:
        """A DOL written as hex (``9F0206 9F3704``) or a list of ``TAG:LENGTH`` items."""
        items: list[tuple[str, object]] = []
        if value is None:
            return ()
        if isinstance(value, str) and (":" in value or "/" in value):
            value = [v for v in re.split(r"[\s,]+", value) if v]
        if isinstance(value, str):
            compact = re.sub(r"\s", "", value)
            if not _HEX.match(compact):
                self.err(p, f"{value!r} is neither DOL hex nor a list of TAG:LENGTH")
                return ()
            raw = bytes.fromhex(compact)
            i = 0
            while i < len(raw):
                t = raw[i]
                j = i + 1
                if t & 0x1F == 0x1F:
                    if j >= len(raw):
                        self.err(p, "DOL ends inside a tag")
                        return ()
                    t = (t << 8) | raw[j]
                    j += 1
                if j >= len(raw):
                    self.err(p, f"DOL entry {_fmt_tag(t)} has no length")
                    return ()
                items.append((_fmt_tag(t), raw[j]))
                i = j + 1
        elif isinstance(value, list):
            for k, item in enumerate(value):
                m = _DOL_ITEM.match(str(item)) if isinstance(item, (str, int)) else None
                if isinstance(item, Mapping) and len(item) == 1:
                    ((t, ln),) = item.items()
                    items.append((str(t), ln))
                elif m:
                    items.append((m.group(1), int(m.group(2))))
                else:
                    self.err(f"{p}[{k}]", f"{item!r} is not TAG:LENGTH (e.g. '9F02:6')")
                    items.append(("", 0))
        else:
            self.err(p, f"expected a DOL (hex string or list of TAG:LENGTH), got {_kind(value)}")
            return ()
        out: list[DolEntry] = []
        seen: set[int] = set()
        for k, (tag_text, length) in enumerate(items):
            ip = f"{p}[{k}]"
            if tag_text == "":
                continue
            tag = self.tag(tag_text, ip)
            if tag is None:
                continue
            info = TAGS[tag]
            if info.source not in ("terminal", "card") and not allow_profile:
                self.err(
                    ip,
                    f"tag {_fmt_tag(tag)} ({info.name}) is card data from the {info.source}; "
                    "a DOL asks the terminal for data",
                )
            if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 255:
                self.err(ip, f"length {length!r} of {_fmt_tag(tag)} is not 1..255")
                continue
            if info.length is not None and length != info.length:
                self.err(ip, f"tag {_fmt_tag(tag)} ({info.name}) is {info.length} bytes, not {length}")
            if tag in seen:
                self.err(ip, f"tag {_fmt_tag(tag)} appears twice")
            seen.add(tag)
            out.append(DolEntry(tag, length))
        if sum(e.length for e in out) > 252:
            self.err(p, "the data it asks for exceeds 252 bytes")
        return tuple(out)


def _kind(v: object) -> str:
    if v is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "a number",
        bool: "a boolean",
        float: "a number",
    }.get(type(v), type(v).__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe_lengths(lengths: range | tuple[int, ...]) -> str:
    if isinstance(lengths, range):
        if len(lengths) == 1:
            return str(lengths.start)
        return f"{lengths.start}..{lengths.stop - 1}"
    return " or ".join(str(n) for n in lengths)


def _seq(ck: _Checker, m: Mapping[str, Any], key: str, path: str) -> list[Any]:
    v = m.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        ck.err(_join(path, key), f"expected a list, got {_kind(v)}")
        return []
    return v


# --------------------------------------------------------------------------- sections

_TOP_KEYS = ("profile", "description", "bins", "card", "applications")
_BIN = re.compile(r"^[0-9]{6,8}$")
_CARD_KEYS = ("isd_aid", "kmc", "diversification", "key_version", "target_life_cycle", *ATR_KEYS)
_APP_KEYS = (
    "name", "aid", "label", "preferred_name", "issuer_code_table_index", "priority", "languages",
    "pdol", "oda", "aip", "cvn", "afl", "cdol1", "cdol2", "ddol", "tdol", "iac", "cvm_list", "auc",
    "country", "currency", "currency_exponent", "version", "risk", "pin_try_limit", "log",
    "response_format", "icc_key", "keys", "service_code", "sda_tag_list", "data",
    "terminal_risk_management", "issuer_authentication",
)  # fmt: skip
_RISK_KEYS = (
    "lcol", "ucol", "lower_cumulative", "upper_cumulative", "default_action", "issuer_auth_required",
    "arpc_method", "max_atc", "dki", "currency_conversion",
)  # fmt: skip
#: DGI 0D02 limits (docs/dgi-map.md): entries, n 8 mantissa, decimal exponent
_CONVERSION_ENTRIES = 8
_CONVERSION_MANTISSA = 99_999_999
_CONVERSION_EXPONENT = 12
_RATE = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
#: records whose DGI number is a card-internal DGI (0D01, 0D02, 0E01; docs/dgi-map.md)
_INTERNAL_RECORDS = {(13, 1): "0D01", (13, 2): "0D02", (14, 1): "0E01"}
_KEYS_KEYS = ("imk_ac", "imk_smi", "imk_smc", "issuer_rsa", "ca_index", "issuer_certificate")
#: ``format`` of an issuer certificate document (docs/profile.md)
ISSUER_CERTIFICATE_FORMAT: Final = "cardlab-issuer-certificate"
_CERT_DOC_KEYS = ("format", "version", "note", "rid", "ca_index", "certificates")
_CERT_KEYS = ("issuer_identifier", "certificate_90", "remainder_92", "exponent_9F32", "note")
#: N_CA: CA keys of 512..1984 bits (Book 2 §5.1 allows up to 1984; cardlab's test keys start lower)
_CERT_LENGTHS = range(64, 249)
#: N_I ≤ N_CA, so at most N_CA − (N_CA − 36) = 36 bytes of the issuer modulus are left over
_REMAINDER_LENGTHS = range(37)
_ISSUER_ID = re.compile(r"^([0-9]{3,8})F*$")
_LABEL = re.compile(r"^[\x20-\x7E]{1,16}$")


def _card(ck: _Checker, raw: object) -> GpDetails:
    p = "card"
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, _CARD_KEYS)
    isd = ck.hexbytes(m, "isd_aid", p, range(5, 17))
    kmc = ck.key_name(m, "kmc", p, required=True) or ""
    div = ck.string(m, "diversification", p, default="kdf3").lower()
    if div not in DIVERSIFICATIONS:
        ck.err(f"{p}.diversification", f"{div!r} is not one of {', '.join(DIVERSIFICATIONS)}")
    kv = ck.integer(m, "key_version", p, 1, 0x7F, default=0x30)
    lc = ck.string(m, "target_life_cycle", p, default="SECURED").upper()
    if lc not in LIFE_CYCLES:
        ck.err(f"{p}.target_life_cycle", f"{lc!r} is not one of {', '.join(LIFE_CYCLES)}")
    atr = read_card_atr(m, ck.err, p)  # card.atr / card.protocol (cardlab.personalizer.profile_atr)
    return GpDetails(isd, kmc, div, kv, lc, atr)


def _records(
    ck: _Checker, m: Mapping[str, Any], p: str, extra: Mapping[int, bytes]
) -> tuple[RecordLayout, ...]:
    out: list[RecordLayout] = []
    seen_place: dict[tuple[int, int], str] = {}
    seen_tag: dict[int, str] = {}
    afl = _seq(ck, m, "afl", p)
    if not afl:
        ck.err(_join(p, "afl"), "missing: at least one file with records")
    for i, f in enumerate(afl):
        fp = f"{p}.afl[{i}]"
        fm = ck.mapping(f, fp)
        ck.known_keys(fm, fp, ("sfi", "records"))
        sfi = ck.integer(fm, "sfi", fp, 1, 30)
        recs = _seq(ck, fm, "records", fp)
        if not recs:
            ck.err(_join(fp, "records"), "missing: at least one record")
        for j, r in enumerate(recs):
            rp = f"{fp}.records[{j}]"
            rm = ck.mapping(r, rp)
            ck.known_keys(rm, rp, ("number", "oda", "data"))
            number = ck.integer(rm, "number", rp, 1, 254, default=j + 1)
            oda = ck.boolean(rm, "oda", rp, default=False)
            place = (sfi, number)
            if place in _INTERNAL_RECORDS:
                ck.err(
                    rp,
                    f"SFI {sfi} record {number} cannot be personalized: its DGI {_INTERNAL_RECORDS[place]} "
                    "is card-internal data (docs/dgi-map.md)",
                )
            if place in seen_place:
                ck.err(rp, f"SFI {sfi} record {number} is already defined at {seen_place[place]}")
            seen_place[place] = rp
            tags: list[int] = []
            data = _seq(ck, rm, "data", rp)
            if not data:
                ck.err(_join(rp, "data"), "missing: the data objects of the record")
            for k, t in enumerate(data):
                tp = f"{rp}.data[{k}]"
                tag = ck.tag(t, tp)
                if tag is None:
                    continue
                info = TAGS[tag]
                if (info.source not in _RECORD_SOURCES or tag in _NOT_IN_RECORDS) and tag not in extra:
                    ck.err(
                        tp,
                        f"tag {_fmt_tag(tag)} ({info.name}) is not record data "
                        f"(it comes from the {info.source})",
                    )
                    continue
                if tag in seen_tag:
                    ck.err(tp, f"tag {_fmt_tag(tag)} is already placed at {seen_tag[tag]}")
                    continue
                seen_tag[tag] = tp
                tags.append(tag)
            out.append(RecordLayout(sfi, number, tuple(tags), oda))
    return tuple(out)


def _conversion(
    ck: _Checker, rm: Mapping[str, Any], rp: str, currency: int, cexp: int
) -> tuple[ConversionRate, ...]:
    """``risk.currency_conversion``: ``[{currency: 978, rate: "1.0850", exponent: 2}]``.

    ``rate`` is how many units of the application currency one unit of ``currency``
    is worth (a quoted decimal, kept exact); ``exponent`` is that currency's minor
    unit exponent (ISO 4217, default 2). The card's factor works on minor units:
    rate · 10^(application exponent − exponent), written as an n 8 mantissa and a
    decimal exponent 0..12 (DGI 0D02) without rounding.
    """
    p = f"{rp}.currency_conversion"
    entries = _seq(ck, rm, "currency_conversion", rp)
    if len(entries) > _CONVERSION_ENTRIES:
        ck.err(p, f"{len(entries)} entries, at most {_CONVERSION_ENTRIES} (DGI 0D02)")
    out: list[ConversionRate] = []
    seen: dict[int, str] = {}
    for i, raw in enumerate(entries):
        ep = f"{p}[{i}]"
        em = ck.mapping(raw, ep)
        ck.known_keys(em, ep, ("currency", "rate", "exponent"))
        code = ck.integer(em, "currency", ep, 1, 999)
        exponent = ck.integer(em, "exponent", ep, 0, 9, default=2)
        if code == currency:
            ck.err(f"{ep}.currency", f"{code} is the application currency: it needs no conversion")
        elif code in seen:
            ck.err(f"{ep}.currency", f"{code} is already converted at {seen[code]}")
        seen.setdefault(code, ep)
        rate = _rate(ck, em.get("rate"), f"{ep}.rate")
        if rate is None:
            continue
        factor = rate * Fraction(10) ** (cexp - exponent)  # minor units per minor unit
        places = next((e for e in range(_CONVERSION_EXPONENT + 1) if (factor * 10**e).denominator == 1), None)
        if places is None:
            ck.err(
                f"{ep}.rate",
                f"{em['rate']} needs more than {_CONVERSION_EXPONENT} decimal places per minor unit "
                "(DGI 0D02 exponent 0..12)",
            )
            continue
        mantissa = int(factor * 10**places)
        if mantissa > _CONVERSION_MANTISSA:
            ck.err(
                f"{ep}.rate",
                f"{em['rate']} is {mantissa}/10^{places} per minor unit: more than 8 digits (DGI 0D02 n 8)",
            )
            continue
        out.append(ConversionRate(code, mantissa, places))
    return tuple(out)


def _rate(ck: _Checker, v: object, p: str) -> Fraction | None:
    """A positive decimal written as a string (``"1.0850"``) or an integer, kept exact."""
    if v is None:
        ck.err(p, 'missing (units of the application currency per unit of the currency, e.g. "1.0850")')
        return None
    if isinstance(v, float):
        ck.err(p, f'{v!r} is a YAML number: quote the rate (e.g. "1.0850") to keep it exact')
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)) or not _RATE.match(str(v).strip()):
        ck.err(p, f'{v!r} is not a decimal rate (digits with an optional decimal point, e.g. "1.0850")')
        return None
    rate = Fraction(str(v).strip())
    if rate == 0:
        ck.err(p, "0: a rate must be above zero")
        return None
    return rate


def _cvm(ck: _Checker, raw: object, p: str) -> CvmList | None:
    if raw is None:
        return None
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, ("amount_x", "amount_y", "rules"))
    x = ck.integer(m, "amount_x", p, 0, 0xFFFFFFFF, default=0)
    y = ck.integer(m, "amount_y", p, 0, 0xFFFFFFFF, default=0)
    rules: list[CvmRule] = []
    raw_rules = _seq(ck, m, "rules", p)
    if not raw_rules:
        ck.err(_join(p, "rules"), "missing: at least one rule")
    for i, r in enumerate(raw_rules):
        rp = f"{p}.rules[{i}]"
        rm = ck.mapping(r, rp)
        ck.known_keys(rm, rp, ("method", "condition", "on_fail"))
        method = ck.string(rm, "method", rp)
        cond = ck.string(rm, "condition", rp, default="always")
        on_fail = ck.string(rm, "on_fail", rp, default="next")
        ok = True
        if method and method not in CVM_METHODS:
            ck.err(f"{rp}.method", f"{method!r} is not one of {', '.join(CVM_METHODS)}")
            ok = False
        if cond not in CVM_CONDITIONS:
            ck.err(f"{rp}.condition", f"{cond!r} is not one of {', '.join(CVM_CONDITIONS)}")
            ok = False
        if on_fail not in ("next", "fail"):
            ck.err(f"{rp}.on_fail", f"{on_fail!r} is not 'next' or 'fail'")
            ok = False
        if ok and method:
            rules.append(CvmRule(method, cond, on_fail == "next"))
    if len(rules) > 30:
        ck.err(_join(p, "rules"), f"{len(rules)} rules do not fit in a CVM list (at most 30)")
    return CvmList(x, y, tuple(rules))


def _derive_aip(oda: Sequence[str], cvm: CvmList | None, trm: bool, issuer_auth: bool) -> bytes:
    """AIP byte 1 (Book 3 Annex C1): b7 SDA, b6 DDA, b5 cardholder verification, b4 terminal risk
    management, b3 issuer authentication, b1 CDA. Byte 2 is RFU for contact (00)."""
    b1 = 0
    b1 |= 0x40 if "SDA" in oda else 0
    b1 |= 0x20 if "DDA" in oda else 0
    b1 |= 0x10 if cvm is not None else 0
    b1 |= 0x08 if trm else 0
    b1 |= 0x04 if issuer_auth else 0
    b1 |= 0x01 if "CDA" in oda else 0
    return bytes((b1, 0))


def _application(ck: _Checker, raw: object, p: str) -> Application:
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, _APP_KEYS)
    name = ck.string(m, "name", p)
    aid = ck.hexbytes(m, "aid", p, range(5, 17))
    label = ck.string(m, "label", p)
    if label and not _LABEL.match(label):
        ck.err(f"{p}.label", "1 to 16 printable ASCII characters (an 16)")
    preferred = ck.opt_string(m, "preferred_name", p)
    if preferred is not None and not _LABEL.match(preferred):
        ck.err(f"{p}.preferred_name", "1 to 16 printable characters")
    cti = None
    if m.get("issuer_code_table_index") is not None:
        cti = ck.integer(m, "issuer_code_table_index", p, 1, 10)
    elif preferred is not None:
        ck.err(
            f"{p}.issuer_code_table_index", "missing: needed with preferred_name (ISO/IEC 8859 part 1..10)"
        )
    priority = ck.integer(m, "priority", p, 0, 0xFF, default=1)
    if priority & 0x70:
        ck.err(f"{p}.priority", f"{priority:#04x} sets RFU bits b7..b5 (b8: ask cardholder, b4..b1: order)")

    languages: list[str] = []
    for i, lang in enumerate(_seq(ck, m, "languages", p)):
        if not isinstance(lang, str) or not re.fullmatch(r"[a-z]{2}", lang):
            ck.err(f"{p}.languages[{i}]", f"{lang!r} is not an ISO 639-1 code (two lowercase letters)")
        else:
            languages.append(lang)
    if len(languages) > 4:
        ck.err(f"{p}.languages", "at most 4 languages (5F2D is 2..8 characters)")

    pdol = ck.dol(m.get("pdol"), f"{p}.pdol")
    cdol1 = ck.dol(m.get("cdol1"), f"{p}.cdol1")
    cdol2 = ck.dol(m.get("cdol2"), f"{p}.cdol2")
    ddol = ck.dol(m.get("ddol"), f"{p}.ddol")
    tdol = ck.dol(m.get("tdol"), f"{p}.tdol")
    if m.get("cdol1") is None:
        ck.err(f"{p}.cdol1", "missing")
    if m.get("cdol2") is None:
        ck.err(f"{p}.cdol2", "missing")
    cdol1_tags = {e.tag for e in cdol1}
    if cdol1:
        missing = [t for t in _CDOL1_REQUIRED if t not in cdol1_tags]
        if missing:
            ck.err(
                f"{p}.cdol1",
                "lacks "
                + ", ".join(f"{_fmt_tag(t)} ({TAGS[t].name})" for t in missing)
                + " that the application cryptogram covers",
            )

    # ODA method
    oda_raw = m.get("oda", "none")
    oda_list = [oda_raw] if isinstance(oda_raw, str) else oda_raw
    oda: list[str] = []
    if not isinstance(oda_list, list):
        ck.err(f"{p}.oda", f"expected SDA, DDA, CDA, none or a list of them, got {_kind(oda_raw)}")
        oda_list = []
    for i, o in enumerate(oda_list):
        up = str(o).upper()
        if up == "NONE":
            if len(oda_list) > 1:
                ck.err(f"{p}.oda", "'none' cannot be combined with other methods")
            continue
        if up not in ODA_METHODS:
            ck.err(
                f"{p}.oda" + (f"[{i}]" if not isinstance(oda_raw, str) else ""),
                f"{o!r} is not one of SDA, DDA, CDA, none",
            )
        elif up in oda:
            ck.err(f"{p}.oda", f"{up} listed twice")
        else:
            oda.append(up)
    oda_t = tuple(m for m in ODA_METHODS if m in oda)
    dynamic = "DDA" in oda_t or "CDA" in oda_t

    cvm = _cvm(ck, m.get("cvm_list"), f"{p}.cvm_list")
    trm = ck.boolean(m, "terminal_risk_management", p, default=True)
    issuer_auth = ck.boolean(m, "issuer_authentication", p, default=True)
    derived = _derive_aip(oda_t, cvm, trm, issuer_auth)
    aip = ck.hexbytes(m, "aip", p, (2,), default=derived)
    if m.get("aip") is not None and len(aip) == 2:
        for bit, meth in ((0x40, "SDA"), (0x20, "DDA"), (0x01, "CDA")):
            if bool(aip[0] & bit) != (meth in oda_t):
                ck.err(
                    f"{p}.aip",
                    f"{aip.hex().upper()} {'announces' if aip[0] & bit else 'lacks'} {meth} "
                    f"but oda is {', '.join(oda_t) or 'none'} (derived AIP would be {derived.hex().upper()})",
                )
        if bool(aip[0] & 0x10) != (cvm is not None):
            ck.err(f"{p}.aip", "cardholder verification bit (b5) disagrees with the presence of cvm_list")

    cvn = ck.integer(m, "cvn", p, 0, 255)
    if cvn and cvn not in CVNS:
        ck.err(f"{p}.cvn", f"{cvn} is not a supported cryptogram version ({', '.join(map(str, CVNS))})")

    # iacs
    iac_m = ck.mapping(m.get("iac", {}), f"{p}.iac")
    ck.known_keys(iac_m, f"{p}.iac", ("denial", "online", "default"))
    iac = Iacs(
        ck.hexbytes(iac_m, "denial", f"{p}.iac", (5,), default=bytes(5)),
        ck.hexbytes(iac_m, "online", f"{p}.iac", (5,), default=bytes(5)),
        ck.hexbytes(iac_m, "default", f"{p}.iac", (5,), default=bytes(5)),
    )
    auc = ck.hexbytes(m, "auc", p, (2,), default=b"\xff\x00")
    country = ck.integer(m, "country", p, 1, 999)
    currency = ck.integer(m, "currency", p, 1, 999)
    cexp = ck.integer(m, "currency_exponent", p, 0, 9, default=2)
    version = ck.hexbytes(m, "version", p, (2,))

    # risk management
    rp = f"{p}.risk"
    rm = ck.mapping(m.get("risk", {}), rp)
    ck.known_keys(rm, rp, _RISK_KEYS)
    risk = RiskManagement(
        lcol=ck.integer(rm, "lcol", rp, 0, 255, default=0),
        ucol=ck.integer(rm, "ucol", rp, 0, 255, default=0),
        lower_cumulative=ck.integer(rm, "lower_cumulative", rp, 0, 999_999_999_999, default=0),
        upper_cumulative=ck.integer(rm, "upper_cumulative", rp, 0, 999_999_999_999, default=0),
        default_action=ck.hexbytes(rm, "default_action", rp, (2,), default=b"\x00\x00"),
        issuer_auth_required=ck.boolean(rm, "issuer_auth_required", rp, default=False),
        arpc_method=ck.integer(rm, "arpc_method", rp, 1, 2, default=1),
        max_atc=ck.integer(rm, "max_atc", rp, 1, 0xFFFF, default=0xFFFF),
        dki=ck.integer(rm, "dki", rp, 0, 255, default=1),
        currency_conversion=_conversion(ck, rm, rp, currency, cexp),
    )
    if risk.ucol < risk.lcol:
        ck.err(f"{rp}.ucol", f"{risk.ucol} is below lcol {risk.lcol}")
    if risk.upper_cumulative < risk.lower_cumulative:
        ck.err(
            f"{rp}.upper_cumulative",
            f"{risk.upper_cumulative} is below lower_cumulative {risk.lower_cumulative}",
        )
    if risk.issuer_auth_required and not issuer_auth:
        ck.err(f"{rp}.issuer_auth_required", "true, but issuer_authentication is false (AIP b3)")

    pin_try_limit = ck.integer(m, "pin_try_limit", p, 1, 15, default=3)
    response_format = ck.integer(m, "response_format", p, 1, 2, default=2)

    # log
    log: LogSettings | None = None
    if m.get("log") is not None:
        lp = f"{p}.log"
        lm = ck.mapping(m["log"], lp)
        ck.known_keys(lm, lp, ("sfi", "records", "format"))
        fmt = ck.dol(lm.get("format"), f"{lp}.format")
        if not fmt:
            ck.err(f"{lp}.format", "missing: the data each log record holds")
        log = LogSettings(ck.integer(lm, "sfi", lp, 11, 30), ck.integer(lm, "records", lp, 1, 255), fmt)

    # ICC key
    icc: IccKey | None = None
    if m.get("icc_key") is not None:
        kp = f"{p}.icc_key"
        km = ck.mapping(m["icc_key"], kp)
        ck.known_keys(km, kp, ("size", "exponent"))
        size = ck.integer(km, "size", kp, 512, 1984)
        if size % 8:
            ck.err(f"{kp}.size", f"{size} is not a whole number of bytes")
        exp = ck.integer(km, "exponent", kp, 3, 65537, default=65537)
        if exp not in (3, 65537):
            ck.err(f"{kp}.exponent", f"{exp}: EMV allows 3 or 65537 (Book 2 §5.1)")
        icc = IccKey(size, exp)
        if not dynamic:
            ck.err(kp, "given, but oda has neither DDA nor CDA")
    elif dynamic:
        ck.err(f"{p}.icc_key", "missing: DDA/CDA need an ICC key (size, exponent)")

    # keys
    kp = f"{p}.keys"
    km = ck.mapping(m.get("keys"), kp)
    ck.known_keys(km, kp, _KEYS_KEYS)
    issuer_rsa = ck.key_name(km, "issuer_rsa", kp, required=bool(oda_t))
    ca_index = None
    if km.get("ca_index") is not None:
        ci = ck.hexvalue(km["ca_index"], f"{kp}.ca_index", (1,))
        ca_index = ci[0] if len(ci) == 1 else None
    elif oda_t:
        ck.err(f"{kp}.ca_index", "missing: ODA needs the CA public key index (8F), one hex byte")
    certs, cert_file = _issuer_certificates(ck, km.get("issuer_certificate"), f"{kp}.issuer_certificate",
                                            aid, ca_index)  # fmt: skip
    if km.get("issuer_certificate") is not None and not oda_t:
        ck.err(f"{kp}.issuer_certificate", "given, but oda is none")
    keys = KeyRefs(
        ck.key_name(km, "imk_ac", kp, required=True) or "",
        ck.key_name(km, "imk_smi", kp, required=True) or "",
        ck.key_name(km, "imk_smc", kp, required=True) or "",
        issuer_rsa,
        ca_index,
        certs,
        cert_file,
    )

    service_code = ck.string(m, "service_code", p, default="201")
    if not re.fullmatch(r"[125679]\d\d", service_code):
        ck.err(f"{p}.service_code", f"{service_code!r} is not 3 digits starting with 1, 2, 5, 6, 7 or 9")

    sda_tag_list: list[int] = []
    for i, t in enumerate(_seq(ck, m, "sda_tag_list", p)):
        tag = ck.tag(t, f"{p}.sda_tag_list[{i}]")
        if tag is not None and tag != 0x82:
            ck.err(f"{p}.sda_tag_list[{i}]", "only 82 (AIP) may be listed (Book 3 §10.3)")
        elif tag is not None:
            sda_tag_list.append(tag)

    # constant data objects ("data": {tag: hex}) that records may place
    extra: dict[int, bytes] = {}
    dm = ck.mapping(m.get("data", {}), f"{p}.data")
    for t, v in dm.items():
        tp = f"{p}.data.{t}"
        tag = ck.tag(t, tp)
        if tag is None:
            continue
        info = TAGS[tag]
        if info.source != "profile" or tag in _NOT_IN_RECORDS:
            hint = " (give the scheme's certificate as keys.issuer_certificate)" if tag in (0x90, 0x92, 0x9F32) else ""
            ck.err(tp, f"tag {_fmt_tag(tag)} ({info.name}) is not a constant the profile may set here{hint}")
            continue
        extra[tag] = ck.hexvalue(v, tp, (info.length,) if info.length else range(1, 253))

    records = _records(ck, m, p, extra)

    app = Application(
        name=name, aid=aid, label=label, preferred_name=preferred, issuer_code_table_index=cti,
        priority=priority, languages=tuple(languages), pdol=pdol, oda=oda_t, aip=aip, cvn=cvn,
        records=records, cdol1=cdol1, cdol2=cdol2, ddol=ddol, tdol=tdol, iac=iac, cvm_list=cvm, auc=auc,
        country=country, currency=currency, currency_exponent=cexp, version=version, risk=risk,
        pin_try_limit=pin_try_limit, log=log, response_format=response_format, icc_key=icc, keys=keys,
        service_code=service_code, sda_tag_list=tuple(sda_tag_list), extra_data=tuple(sorted(extra.items())),
    )  # fmt: skip
    _cross_check(ck, app, p)
    return app


def _issuer_certificates(
    ck: _Checker, raw: object, p: str, aid: bytes, ca_index: int | None
) -> tuple[tuple[IssuerCertificateRef, ...], str | None]:
    """``keys.issuer_certificate``: the Issuer Public Key Certificate(s) the scheme returned
    (Book 2 §5.3), as a file path (relative to the profile) of a certificate document, the
    document inline (a mapping with ``certificates``), one certificate inline (a mapping
    with ``certificate_90``) or a list of certificates. Returns (certificates, file)."""
    if raw is None:
        return (), None
    file: str | None = None
    items: list[tuple[object, str]] = []
    if isinstance(raw, str):
        file = raw
        if ck.base_dir is None:  # parse_profile without the profile's directory: not read
            return (), file
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else ck.base_dir / path
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            ck.err(p, f"cannot read the certificate document {file}: {e.strerror or type(e).__name__}")
            return (), file
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            ck.err(p, f"{file} is not a JSON/YAML certificate document ({type(e).__name__})")
            return (), file
        p = f"{p} ({file})"
        doc = ck.mapping(raw, p)
        if not doc:
            return (), file
        if doc.get("format") != ISSUER_CERTIFICATE_FORMAT:
            ck.err(f"{p}.format", f"{doc.get('format')!r}, expected {ISSUER_CERTIFICATE_FORMAT!r}")
    if isinstance(raw, list):
        items = [(c, f"{p}[{i}]") for i, c in enumerate(raw)]
    elif isinstance(raw, Mapping) and ("certificates" in raw or file is not None):
        ck.known_keys(raw, p, _CERT_DOC_KEYS)
        if raw.get("version", 1) != 1:
            ck.err(f"{p}.version", f"{raw.get('version')!r}, expected 1")
        if raw.get("rid") is not None:
            rid = ck.hexvalue(raw["rid"], f"{p}.rid", (5,))
            if len(rid) == 5 and len(aid) >= 5 and rid != aid[:5]:
                ck.err(f"{p}.rid", f"{rid.hex().upper()}, but the application's RID is {aid[:5].hex().upper()}")
        if raw.get("ca_index") is not None:
            ci = ck.hexvalue(raw["ca_index"], f"{p}.ca_index", (1,))
            if len(ci) == 1 and ca_index is not None and ci[0] != ca_index:
                ck.err(f"{p}.ca_index", f"{ci.hex().upper()}, but keys.ca_index is {ca_index:02X}")
        items = [(c, f"{p}.certificates[{i}]") for i, c in enumerate(_seq(ck, raw, "certificates", p))]
        if not items:
            ck.err(f"{p}.certificates", "missing: at least one certificate")
    elif isinstance(raw, Mapping):
        items = [(raw, p)]
    else:
        ck.err(p, f"expected a file name, a certificate or a list of certificates, got {_kind(raw)}")
    out: list[IssuerCertificateRef] = []
    seen: dict[str, str] = {}
    for item, ip in items:
        if not isinstance(item, Mapping):
            ck.mapping(item, ip)
            continue
        m = item
        ck.known_keys(m, ip, _CERT_KEYS)
        ident = _issuer_id(ck, m.get("issuer_identifier"), f"{ip}.issuer_identifier")
        cert = ck.hexbytes(m, "certificate_90", ip, _CERT_LENGTHS)
        rem = ck.hexbytes(m, "remainder_92", ip, _REMAINDER_LENGTHS, default=b"")
        exp = ck.hexbytes(m, "exponent_9F32", ip, (1, 3))
        if exp and exp not in (b"\x03", b"\x01\x00\x01"):
            ck.err(f"{ip}.exponent_9F32", f"{exp.hex().upper()}: EMV allows 03 or 010001 (Book 2 §5.1)")
        if ident in seen:
            ck.err(f"{ip}.issuer_identifier", f"{ident} is also {seen[ident]}")
        elif ident:
            seen[ident] = ip
        if out and cert and len(cert) != len(out[0].certificate):
            ck.err(
                f"{ip}.certificate_90",
                f"{len(cert)} bytes, but {out[0].where} is {len(out[0].certificate)}: "
                "one CA key (keys.ca_index) certifies them all",
            )
        if ident and cert and exp:
            out.append(IssuerCertificateRef(ident, cert, rem, exp, ip))
    return tuple(out), file


def _issuer_id(ck: _Checker, v: object, p: str) -> str:
    """An issuer identifier: 3–8 PAN digits, optionally F-padded to 8 (``476173`` or ``476173FF``)."""
    if v is None:
        ck.err(p, "missing (the 3-8 leading PAN digits the certificate is for, e.g. \"476173\")")
        return ""
    text = str(v).strip().upper() if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    m = _ISSUER_ID.match(text) if text is not None and len(text) <= 8 else None
    if m is None:
        ck.err(p, f"{v!r} is not an issuer identifier (3-8 digits, optionally F-padded to 8)")
        return ""
    return m.group(1)


def _cross_check(ck: _Checker, app: Application, p: str) -> None:
    """Consistency between the AFL layout and the rest of the application."""
    placed: dict[int, RecordLayout] = {}
    for rec in app.records:
        for t in rec.tags:
            placed[t] = rec
    afl = f"{p}.afl"
    for t in _MANDATORY_RECORD_TAGS:
        if t not in placed:
            ck.err(afl, f"no record holds {_fmt_tag(t)} ({TAGS[t].name}), which is mandatory")
    # profile-sourced tags in records need their value in the profile
    providers: dict[int, tuple[str, bool]] = {
        0x8E: ("cvm_list", app.cvm_list is not None),
        0x9F49: ("ddol", bool(app.ddol)),
        0x97: ("tdol", bool(app.tdol)),
        0x9F4A: ("sda_tag_list", bool(app.sda_tag_list)),
        0x5F50: ("data.5F50", app.extra(0x5F50) is not None),
        0x42: ("data.42", app.extra(0x42) is not None),
    }
    for t, (what, present) in providers.items():
        if t in placed and not present:
            ck.err(afl, f"a record holds {_fmt_tag(t)} ({TAGS[t].name}) but the profile has no {what}")
        if present and t not in placed and t not in (0x97,):
            ck.err(f"{p}.{what}", f"given, but no record holds {_fmt_tag(t)}: add it to an afl record")
    # ODA
    oda_recs = [r for r in app.records if r.oda]
    if app.oda:
        for t in (0x8F, 0x90, 0x9F32):
            if t not in placed:
                ck.err(afl, f"ODA ({', '.join(app.oda)}) needs {_fmt_tag(t)} ({TAGS[t].name}) in a record")
        if not oda_recs:
            ck.err(afl, "ODA needs at least one record marked oda: true")
        if 0x82 not in app.sda_tag_list:
            ck.err(f"{p}.sda_tag_list", "ODA should sign the AIP: set sda_tag_list: ['82']")
    else:
        for t in (0x8F, 0x90, 0x92, 0x9F32, 0x93, 0x9F46, 0x9F47, 0x9F48):
            if t in placed:
                ck.err(afl, f"a record holds {_fmt_tag(t)} ({TAGS[t].name}) but oda is none")
        if oda_recs:
            ck.err(afl, "records are marked oda: true but oda is none")
    if "SDA" in app.oda and 0x93 not in placed:
        ck.err(afl, "SDA needs 93 (Signed Static Application Data) in a record")
    if "SDA" not in app.oda and 0x93 in placed:
        ck.err(afl, "a record holds 93 (Signed Static Application Data) but oda has no SDA")
    dynamic = "DDA" in app.oda or "CDA" in app.oda
    if dynamic:
        for t in (0x9F46, 0x9F47):
            if t not in placed:
                ck.err(afl, f"DDA/CDA needs {_fmt_tag(t)} ({TAGS[t].name}) in a record")
    else:
        for t in (0x9F46, 0x9F47, 0x9F48):
            if t in placed:
                ck.err(afl, f"a record holds {_fmt_tag(t)} ({TAGS[t].name}) but oda has neither DDA nor CDA")
    for t in (0x93, 0x9F46):
        holder = placed.get(t)
        if holder is not None and holder.oda:
            ck.err(
                afl,
                f"SFI {holder.sfi} record {holder.number} is signed (oda: true) but holds {_fmt_tag(t)}, "
                "which is computed over the signed records",
            )
    if "DDA" in app.oda:
        if not app.ddol:
            ck.err(f"{p}.ddol", "missing: DDA needs a DDOL (9F49) with 9F37")
        elif 0x9F37 not in {e.tag for e in app.ddol}:
            ck.err(f"{p}.ddol", "lacks 9F37 (Unpredictable Number), required by DDA")
    if app.cvm_list is not None and app.cvm_list.enciphered_pin and not dynamic:
        ck.err(f"{p}.cvm_list", "an offline enciphered PIN rule needs an ICC key (oda DDA or CDA)")
    if (
        app.cvm_list is not None
        and app.cvm_list.amount_x
        and not any(r.condition in ("under_x", "over_x") for r in app.cvm_list.rules)
    ):
        ck.err(f"{p}.cvm_list.amount_x", "set, but no rule uses under_x/over_x")
    # log SFI must not collide with the AFL files
    if app.log is not None and any(r.sfi == app.log.sfi for r in app.records):
        ck.err(f"{p}.log.sfi", f"SFI {app.log.sfi} is also an AFL file")
    # record size: a record's template 70 must fit a READ RECORD response
    for rec in app.records:
        fixed = sum((TAGS[t].length or 0) + len(_tag_bytes(t)) + 1 for t in rec.tags)
        if fixed > 254:
            ck.err(afl, f"SFI {rec.sfi} record {rec.number} holds at least {fixed} bytes (more than 254)")


def parse_profile(document: object, source: str = "<profile>", *, base_dir: Path | None = None) -> Profile:
    """Validate an already parsed YAML document (see :func:`load_profile`).

    ``base_dir`` is the profile's directory, which a certificate document named by
    ``keys.issuer_certificate`` is relative to; without it such a file is not read
    (``KeyRefs.issuer_certificate_file`` is set, ``issuer_certificates`` empty, and data
    preparation refuses the profile).
    """
    ck = _Checker(base_dir)
    top = ck.mapping(document, "(top)")
    ck.known_keys(top, "", _TOP_KEYS)
    name = ck.string(top, "profile", "")
    description = ck.string(top, "description", "", default="")
    bins = _bins(ck, top)
    card = _card(ck, top.get("card"))
    apps: list[Application] = []
    raw_apps = _seq(ck, top, "applications", "")
    if not raw_apps:
        ck.err("applications", "missing: at least one application")
    for i, a in enumerate(raw_apps):
        apps.append(_application(ck, a, f"applications[{i}]"))
    seen_aid: dict[bytes, int] = {}
    seen_name: dict[str, int] = {}
    for i, app in enumerate(apps):
        if app.aid and app.aid in seen_aid:
            ck.err(
                f"applications[{i}].aid", f"{app.aid.hex().upper()} is also applications[{seen_aid[app.aid]}]"
            )
        seen_aid.setdefault(app.aid, i)
        if app.name and app.name in seen_name:
            ck.err(f"applications[{i}].name", f"{app.name!r} is also applications[{seen_name[app.name]}]")
        seen_name.setdefault(app.name, i)
        if card.isd_aid and app.aid == card.isd_aid:
            ck.err(f"applications[{i}].aid", "equals the ISD AID")
        for c in app.keys.issuer_certificates:
            ident = c.issuer_identifier
            if bins and not any(b.startswith(ident) or ident.startswith(b) for b in bins):
                ck.err(f"{c.where}.issuer_identifier", f"{ident} covers none of the profile's bins ({', '.join(bins)})")
    if len(apps) > 1:
        prios = [a.priority & 0x0F for a in apps]
        if len(set(prios)) != len(prios) or 0 in prios:
            ck.err("applications", "with several applications each needs its own priority 1..15")
    if ck.problems:
        raise ProfileError(source, ck.problems)
    return Profile(name, description, card, tuple(apps), bins)


def _bins(ck: _Checker, top: Mapping[str, Any]) -> tuple[str, ...]:
    """``bins``: a list of 6–8 digit issuer BINs (quote them, or YAML may read numbers)."""
    out: list[str] = []
    raw = top.get("bins")
    if raw is not None and not isinstance(raw, list):
        raw = [raw]  # a single BIN written without a list
    for i, v in enumerate(raw or []):
        p = f"bins[{i}]"
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            ck.err(p, f"expected a BIN of 6-8 digits, got {_kind(v)}")
            continue
        b = str(v).strip()
        if not _BIN.fullmatch(b):
            ck.err(p, f"{b!r} is not a BIN of 6-8 digits")
        elif b in out:
            ck.err(p, f"{b} is listed twice")
        else:
            out.append(b)
    if raw is not None and not raw:
        ck.err("bins", "empty list: give at least one BIN or leave bins out")
    return tuple(out)


def load_card_details(path: str | Path) -> GpDetails:
    """The ``card`` section (ISD AID, KMC, diversification, key version, target
    life cycle) of a profile of any kind, EMV or badge: what its blank card
    stock must be made with. :class:`ProfileError` names the field."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ProfileError(str(p), [f"(file): cannot read: {e}"]) from e
    ck = _Checker(p.parent)
    card = _card(ck, ck.mapping(doc, "(top)").get("card"))
    if ck.problems:
        raise ProfileError(str(p), ck.problems)
    return card


def load_profile(path: str | Path) -> Profile:
    """Read and validate an issuer profile; :class:`ProfileError` lists every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(str(p), [f"(file): cannot read: {e}"]) from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(str(p), [f"(yaml): {e}"]) from e
    return parse_profile(doc, str(p), base_dir=p.parent)

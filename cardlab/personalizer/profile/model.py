"""The issuer profile as the code holds it: frozen dataclasses, one per section
of the YAML document (``docs/profile.md``), with the encodings of their values
(CVM list, Book 3 Annex C3; AFL, §10.2; log entry). :mod:`.parse` builds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .derive import encode_afl, record_dgi
from .keyrefs import KeyRefs
from .tables import CVM_CONDITIONS, CVM_METHODS, ENCIPHERED_PIN_METHODS, OFFLINE_PIN_METHODS

@dataclass(frozen=True)
class DolEntry:
    """One entry of a Data Object List: the tag and the length the card asks for."""

    tag: int
    length: int


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
        return any(CVM_METHODS[r.method] in OFFLINE_PIN_METHODS for r in self.rules)

    @property
    def enciphered_pin(self) -> bool:
        return any(CVM_METHODS[r.method] in ENCIPHERED_PIN_METHODS for r in self.rules)


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
        return record_dgi(self.sfi, self.number)


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
class Contactless:
    """The ``contactless`` section of an application: how it answers on the contactless
    interface (EMV Contactless Book C-3 qVSDC for kernel 3, Book C-2 EMV mode for kernel 2)."""

    kernel: int  # 9F2A kernel identifier: 3 (Visa-like) or 2 (Mastercard-like)
    pdol: tuple[DolEntry, ...]
    ctq: bytes | None = None  # kernel 3: 9F6C Card Transaction Qualifiers (2 bytes)
    fdda: bool = False  # kernel 3: fDDA version 01 (9F69, 9F4B in the GPO answer)
    #: AFL entries (SFI, first, last, #ODA) on the contactless interface; None: the contact AFL
    afl: tuple[tuple[int, int, int, int], ...] | None = None
    third_party_data: bytes | None = None  # kernel 2: 9F6E

    def afl_value(self, contact_afl: bytes) -> bytes:
        """Value of 94 on the contactless interface (Book 3 §10.2 encoding)."""
        if self.afl is None:
            return contact_afl
        return b"".join(bytes((sfi << 3, first, last, oda)) for sfi, first, last, oda in self.afl)


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
    #: the ``contactless`` section (None: a contact-only application)
    contactless: Contactless | None = None

    @property
    def language_preference(self) -> bytes:
        """Value of 5F2D."""
        return "".join(self.languages).encode("ascii")

    @property
    def offline_pin(self) -> bool:
        return self.cvm_list is not None and self.cvm_list.offline_pin

    def afl(self) -> bytes:
        """Value of 94 (Book 3 §10.2), see :func:`.derive.encode_afl`."""
        return encode_afl((r.sfi, r.number, r.oda) for r in self.records)

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
    #: the card stock's ATR (:mod:`.atr`); None: the card's default
    atr: bytes | None = None
    #: ``card.empty_psn``: what a record with an empty PSN becomes — None: refused (the default),
    #: "omit": no 5F34 on the card, "00": PSN 00. The ICC master keys are derived with PSN 00 either
    #: way (EMV Book 2 Annex A1.4.1: "if the PAN Sequence Number is not available, it is set to 00")
    empty_psn: str | None = None


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

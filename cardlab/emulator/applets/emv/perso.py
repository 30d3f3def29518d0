"""Personalization of the EMV application (EMV CPS 1.1 over GP STORE DATA).

The contract with the personalizer is ``docs/dgi-map.md``. Each STORE DATA
command is applied atomically: its DGIs are checked and applied to a copy of
the application data, which replaces the live data only when every DGI of the
command was accepted (a refused command leaves nothing behind).

Secret DGIs (``8xxx``) are accepted only from a block the ISD decrypted
(STORE DATA P1 b7b6 = 11, GP Card Spec 2.3 §11.11.2.1; CPS §4.3.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cardlab.cardspec import tlv
from cardlab.cardspec.keys import kcv

from ...apdu import SW, Command, StatusError
from ...applet import Context
from ...gp import lifecycle
from .records import index_records, record_tag
from .state import ConversionRate, EmvData, RiskParameters, RsaCrtKey

if TYPE_CHECKING:
    from .instance import EmvInstance

DGI_FCI = 0x9102
DGI_FCI_CONTACTLESS = 0x9103
DGI_GPO = 0x9104
DGI_GPO_CONTACTLESS = 0x9207
DGI_CONTACTLESS = 0x0D03
DGI_MASTER_KEYS = 0x8000
DGI_KCV = 0x9000
DGI_PIN_BLOCK = 0x8010
DGI_PIN_TRY = 0x9010
DGI_RISK = 0x0D01
DGI_CONVERSION = 0x0D02
DGI_DATA_OBJECTS = 0x0E01
#: card-internal DGIs in the record range: they take the place of records 13/1, 13/2, 13/3, 14/1
INTERNAL_DGIS = (DGI_RISK, DGI_CONVERSION, DGI_CONTACTLESS, DGI_DATA_OBJECTS)
#: contactless kernels (EMV Contactless Book B kernel identifiers): 2 Book C-2, 3 Book C-3
KERNELS = (2, 3)
#: DGI 0D02 (docs/dgi-map.md): BER-TLV, tag DF18 = entries of currency n3 (2 bytes BCD) ‖
#: mantissa n8 (4 bytes BCD) ‖ exponent (1 byte)
TAG_CONVERSION = 0xDF18
CONVERSION_ENTRY = 7
CONVERSION_MAX_ENTRIES = 8
CONVERSION_MAX_EXPONENT = 12
#: CRT components in DGI order 1..5 (CPS §5.5): q⁻¹ mod p, d mod (q−1), d mod (p−1), q, p
ICC_KEY_DGIS = range(0x8201, 0x8206)
PIN_KEY_DGIS = range(0x8101, 0x8106)
#: mandatory at the last block (docs/dgi-map.md)
MANDATORY = (DGI_FCI, DGI_GPO, DGI_MASTER_KEYS, DGI_KCV, DGI_RISK)

#: CVM codes (b6..b1 of a CV rule) performed by the ICC (EMV Book 3 Annex C3)
OFFLINE_PLAIN_PIN_CVMS = frozenset({0x01, 0x03})
OFFLINE_ENCIPHERED_PIN_CVMS = frozenset({0x04, 0x05})
AIP_DDA = 0x20  # AIP byte 1 b6 (EMV Book 3 Annex C1)
AIP_CDA = 0x01  # AIP byte 1 b1


@dataclass
class _Work:
    """What one STORE DATA command changes, applied only if it all succeeds."""

    data: EmvData
    #: CRT components and the 9000 check values received so far, DGI → value
    #: (transient, see EmvApplet.perso_parts)
    parts: dict[int, bytes] = field(default_factory=dict)


def _bad(message: str) -> StatusError:
    return StatusError(SW.WRONG_DATA, message)


def install(app: EmvInstance, params: bytes) -> None:
    """INSTALL [for install]: the application takes no install parameters
    (everything is personalization data); an empty C9 is required."""
    if params:
        raise _bad("the EMV application takes no install parameters")
    app.mark_dirty()


def is_secret(dgi: int) -> bool:
    """DGIs 8000–8FFF carry secrets and travel encrypted (CPS §5.5)."""
    return 0x8000 <= dgi <= 0x8FFF


def store_data(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """STORE DATA routed by the ISD after INSTALL [for personalization]."""
    if app.data.personalized:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "already personalized")
    if (cmd.p1 >> 3) & 0x03 != 0x01:
        raise _bad("personalization data is in DGI format")
    decrypted = (cmd.p1 >> 5) & 0x03 == 0x03
    try:
        dgis = tlv.parse_dgis(cmd.data)
    except tlv.TlvError as exc:
        raise _bad("malformed DGI") from exc
    work = _Work(app.data.copy(), dict(app.perso_parts))
    for dgi, value in dgis:
        if is_secret(dgi) and not decrypted:
            raise _bad(f"DGI {dgi:04X} must be encrypted")
        _apply(work, dgi, value)
        work.data.received.add(dgi)
    if any(dgi in (DGI_MASTER_KEYS, DGI_KCV) for dgi, _ in dgis):  # checked once both are in
        _check_master_keys(app, work)
    last = bool(cmd.p1 & 0x80)
    if last:
        # the records are final: the completeness checks' lookups (CVM list, exponents) share one pass
        index_records(work.data.records, work.data.tag_cache)
        try:
            _complete(work)
        except BaseException:
            work.data.tag_cache.clear()
            raise
        app.record.lifecycle = lifecycle.app_transition(
            app.record.lifecycle, app.PERSONALIZED_STATE, app.SPECIFIC_STATES
        )
        work.data.personalized = True
        work.parts.clear()
    app.data = work.data
    app.perso_parts = work.parts
    app.mark_dirty()
    return b""


# -- one DGI ---------------------------------------------------------------------


def _apply(work: _Work, dgi: int, value: bytes) -> None:
    data = work.data
    hi, lo = dgi >> 8, dgi & 0xFF
    if dgi in INTERNAL_DGIS:
        # these take the place of records 13/1, 13/2 and 14/1 (as in Visa's CPS profiles)
        _internal(data, dgi, value)
    elif 1 <= hi <= 30 and lo >= 1:
        data.records[(hi, lo)] = _record(value)
    elif dgi == DGI_FCI:
        data.fci_proprietary = _fci(value, "9102", "PDOL")
    elif dgi == DGI_FCI_CONTACTLESS:
        data.fci_proprietary_contactless = _fci(value, "9103", "contactless PDOL")
    elif dgi == DGI_GPO:
        data.aip, data.afl = _gpo_data(value)
    elif dgi == DGI_GPO_CONTACTLESS:
        data.aip_contactless, data.afl_contactless = _gpo_data(value, "9207")
    elif dgi == DGI_MASTER_KEYS:
        if len(value) != 48:
            raise _bad("DGI 8000 holds three 16-byte keys")
        data.mk_ac, data.mk_smi, data.mk_smc = value[:16], value[16:32], value[32:]
    elif dgi == DGI_KCV:
        if len(value) != 9:
            raise _bad("DGI 9000 holds three 3-byte check values")
        work.parts[DGI_KCV] = value
    elif dgi == DGI_PIN_BLOCK:
        if not valid_pin_block(value):
            raise _bad("DGI 8010 is not a format 2 PIN block")
        data.pin_block = value
    elif dgi == DGI_PIN_TRY:
        if len(value) != 2 or not 1 <= value[0] <= 15 or value[1] > value[0]:
            raise _bad("DGI 9010: PIN try limit 1..15, counter at most the limit")
        data.pin_try_limit, data.pin_try_counter = value[0], value[1]
    elif dgi in ICC_KEY_DGIS or dgi in PIN_KEY_DGIS:
        if not value:
            raise _bad("empty key component")
        work.parts[dgi] = value
        _assemble_key(work, ICC_KEY_DGIS)
        _assemble_key(work, PIN_KEY_DGIS)
    else:
        raise _bad(f"DGI {dgi:04X} is not in the DGI map")


def _internal(data: EmvData, dgi: int, value: bytes) -> None:
    if dgi == DGI_RISK:
        data.risk = risk_parameters(value)
        return
    if dgi == DGI_CONVERSION:
        data.currency_conversion = conversion_table(value)
        return
    if dgi == DGI_CONTACTLESS:
        _contactless(data, value)
        return
    try:
        data.data_objects.update({t.tag: t.value for t in tlv.iterate(value)})
    except tlv.TlvError as exc:
        raise _bad("DGI 0E01 is not BER-TLV") from exc


def _ber(value: bytes, name: str) -> bytes:
    try:
        tlv.parse(value)
    except tlv.TlvError as exc:
        raise _bad(f"DGI {name} is not BER-TLV") from exc
    return value


def _record(value: bytes) -> bytes:
    """A record DGI is one 70 template filling the whole value (CPS §5.3)."""
    try:
        items = tlv.parse(value)
        if len(items) != 1 or items[0].tag != 0x70 or items[0].encode() != value:
            raise _bad("a record DGI holds exactly one 70 template")
        tlv.parse(items[0].value)
    except tlv.TlvError as exc:
        raise _bad("malformed record template") from exc
    return value


def _contactless(data: EmvData, value: bytes) -> None:
    """DGI 0D03 (cardlab, docs/dgi-map.md): 9F2A kernel identifier (02 or 03, EMV Contactless
    Book B), 9F6C CTQ (2 bytes, kernel 3), DF22 fDDA version (01, kernel 3), 9F6E Third Party
    Data (5..32 bytes, kernel 2)."""
    try:
        items = tlv.parse(value)
    except tlv.TlvError as exc:
        raise _bad("DGI 0D03 is not BER-TLV") from exc
    found = {t.tag: t.value for t in items}
    if len(found) != len(items) or set(found) - {0x9F2A, 0x9F6C, 0xDF22, 0x9F6E}:
        raise _bad("DGI 0D03: only 9F2A, 9F6C, DF22, 9F6E, each once")
    kernel = found.get(0x9F2A, b"")
    if len(kernel) != 1 or kernel[0] not in KERNELS:
        raise _bad("DGI 0D03: 9F2A kernel identifier 02 or 03")
    k = kernel[0]
    ctq, fdda, third = found.get(0x9F6C), found.get(0xDF22), found.get(0x9F6E)
    if k == 2 and (ctq is not None or fdda is not None):
        raise _bad("DGI 0D03: 9F6C and DF22 are kernel 3 data")
    if k == 3 and third is not None:
        raise _bad("DGI 0D03: 9F6E is kernel 2 data")
    if ctq is not None and len(ctq) != 2:
        raise _bad("DGI 0D03: 9F6C is 2 bytes")
    if fdda is not None and fdda != b"\x01":
        raise _bad("DGI 0D03: DF22 fDDA version 01 only")
    if third is not None and not 5 <= len(third) <= 32:
        raise _bad("DGI 0D03: 9F6E is 5..32 bytes")
    data.kernel = k
    data.ctq = ctq or (b"\x00\x00" if k == 3 else b"")
    data.fdda_version = 1 if fdda else 0
    data.third_party_data = third or b""


def _gpo_data(value: bytes, name: str = "9104") -> tuple[bytes, bytes]:
    """DGI 9104 (9207 contactless): 82 AIP ‖ 94 AFL (EMV Book 3 §10.2: AFL entries of 4 bytes)."""
    try:
        items = tlv.to_dict(value)
    except tlv.TlvError as exc:
        raise _bad(f"DGI {name} is not BER-TLV") from exc
    aip, afl = items.get(0x82), items.get(0x94)
    if aip is None or afl is None or len(aip) != 2 or not afl or len(afl) % 4:
        raise _bad(f"DGI {name} needs 82 (2 bytes) and 94 (4n bytes)")
    for sfi, first, last in afl_entries(afl):
        if not 1 <= sfi <= 30 or first == 0 or last < first:
            raise _bad("invalid AFL entry")
    for i in range(0, len(afl), 4):
        if afl[i + 3] > afl[i + 2] - afl[i + 1] + 1:
            raise _bad("invalid AFL entry")
    return aip, afl


def afl_entries(afl: bytes) -> list[tuple[int, int, int]]:
    """(SFI, first record, last record) of each AFL entry (EMV Book 3 §10.2)."""
    return [(afl[i] >> 3, afl[i + 1], afl[i + 2]) for i in range(0, len(afl) - 3, 4)]


def dol_length(dol: bytes) -> int:
    """Total length of the data a DOL asks for (EMV Book 3 §5.4: tag, length
    pairs); :class:`ValueError` when malformed.

    >>> dol_length(bytes.fromhex("9F66049F02069F37045F2A02"))
    16
    """
    total, i, n = 0, 0, len(dol)
    while i < n:
        first = dol[i]
        i += 1
        if first & 0x1F == 0x1F:  # multi-byte tag (ISO 8825-1)
            while i < n and dol[i] & 0x80:
                i += 1
            i += 1
        if i >= n:
            raise ValueError("malformed DOL")
        total += dol[i]
        i += 1
    return total


def valid_pin_block(block: bytes) -> bool:
    """Plaintext offline PIN block (EMV Book 3 §6.5.12): C=2, N=4..12, PIN
    digits, F filler, 8 bytes."""
    if len(block) != 8:
        return False
    digits = block.hex().upper()
    n = int(digits[1], 16)
    return digits[0] == "2" and 4 <= n <= 12 and digits[2 : 2 + n].isdigit() and set(digits[2 + n :]) <= {"F"}


def _assemble_key(work: _Work, dgis: range) -> None:
    """Build the RSA CRT key once its five DGIs have arrived; check that the
    components belong together (q·q⁻¹ ≡ 1 mod p, exponents below p−1, q−1)."""
    parts = work.parts
    if not all(d in parts for d in dgis):
        return
    qinv, dq, dp, q, p = (int.from_bytes(parts.pop(d), "big") for d in dgis)
    if p < 3 or q < 3 or p == q or (qinv * q) % p != 1 or not 0 < dp < p - 1 or not 0 < dq < q - 1:
        raise _bad("inconsistent RSA key components")
    key = RsaCrtKey(p=p, q=q, dp=dp, dq=dq, qinv=qinv)
    if key.size < 64:
        raise _bad("RSA key too short")
    if dgis is ICC_KEY_DGIS:
        work.data.icc_key = key
    else:
        work.data.pin_key = key


def _check_master_keys(app: EmvInstance, work: _Work) -> None:
    """DGI 8000 against DGI 9000 (CPS §5.5: 3DES check values of zeros),
    whichever arrives first; on a mismatch both are forgotten (also when the
    other one came in an earlier command) and the command is refused."""
    data, kcvs = work.data, work.parts.get(DGI_KCV)
    if kcvs is None or DGI_MASTER_KEYS not in data.received:
        return
    if all(
        kcv("DES", key) == kcvs[3 * i : 3 * i + 3]
        for i, key in enumerate((data.mk_ac, data.mk_smi, data.mk_smc))
    ):
        return
    for live in (app.data, data):
        live.mk_ac = live.mk_smi = live.mk_smc = b""
        live.received -= {DGI_MASTER_KEYS, DGI_KCV}
    app.perso_parts.pop(DGI_KCV, None)
    app.mark_dirty()
    raise _bad("ICC master keys do not match their check values")


def risk_parameters(value: bytes) -> RiskParameters:
    """DGI 0D01 (cardlab card-internal data, see docs/dgi-map.md)."""
    try:
        items = tlv.parse(value)
    except tlv.TlvError as exc:
        raise _bad("DGI 0D01 is not BER-TLV") from exc
    r = RiskParameters()
    lengths = {
        0xDF01: 1,
        0xDF02: 1,
        0x9F14: 1,
        0x9F23: 1,
        0xDF11: 6,
        0xDF12: 6,
        0x9F42: 2,
        0xDF17: 1,
        0x9F52: 2,
        0xDF13: 1,
        0xDF14: 1,
        0xDF15: 2,
        0xDF16: 1,
        0x9F4D: 2,
    }
    for item in items:
        tag, v = item.tag, item.value
        if tag == 0x9F4F:
            r.log_format = v
            continue
        if lengths.get(tag) != len(v):
            raise _bad(f"DGI 0D01: unexpected tag {tag:X} or length")
        n = int.from_bytes(v, "big")
        if tag == 0xDF01:
            r.cvn = n
        elif tag == 0xDF02:
            r.dki = n
        elif tag == 0x9F14:
            r.lower_consecutive_offline = n
        elif tag == 0x9F23:
            r.upper_consecutive_offline = n
        elif tag in (0xDF11, 0xDF12):
            amount = _bcd(v)
            if tag == 0xDF11:
                r.lower_cumulative_offline = amount
            else:
                r.upper_cumulative_offline = amount
        elif tag == 0x9F42:
            r.currency = _bcd(v)
        elif tag == 0xDF17:
            r.currency_exponent = n
        elif tag == 0x9F52:
            r.default_action = v
        elif tag in (0xDF13, 0xDF14, 0xDF16):
            if tag == 0xDF13 and n in (0, 1):
                r.issuer_auth_required = bool(n)
            elif tag == 0xDF14 and n in (1, 2):
                r.arpc_method = n
            elif tag == 0xDF16 and n in (1, 2):
                r.response_format = n
            else:
                raise _bad(f"DGI 0D01: value of {tag:X} out of range")
        elif tag == 0xDF15:
            if n == 0:
                raise _bad("DGI 0D01: maximum ATC 0")
            r.max_atc = n
        elif tag == 0x9F4D:
            if not 1 <= v[0] <= 30 or v[1] == 0:
                raise _bad("DGI 0D01: log entry SFI 1..30 and at least one record")
            r.log_sfi, r.log_records = v[0], v[1]
    return r


def conversion_table(value: bytes) -> tuple[ConversionRate, ...]:
    """DGI 0D02: ``DF18`` holding 1–8 entries of currency n3 ‖ mantissa n8 ‖
    exponent (docs/dgi-map.md).

    >>> conversion_table(bytes.fromhex("DF18 07 0978 00010850 04"))
    (ConversionRate(currency=978, mantissa=10850, exponent=4),)
    """
    try:
        items = tlv.parse(value)
    except tlv.TlvError as exc:
        raise _bad("DGI 0D02 is not BER-TLV") from exc
    if len(items) != 1 or items[0].tag != TAG_CONVERSION:
        raise _bad("DGI 0D02 holds one DF18 (currency conversion table)")
    value = items[0].value
    if not value or len(value) % CONVERSION_ENTRY or len(value) > CONVERSION_MAX_ENTRIES * CONVERSION_ENTRY:
        raise _bad(f"DGI 0D02 holds 1..{CONVERSION_MAX_ENTRIES} entries of {CONVERSION_ENTRY} bytes")
    out: list[ConversionRate] = []
    for i in range(0, len(value), CONVERSION_ENTRY):
        code, mantissa = value[i : i + 2].hex(), value[i + 2 : i + 6].hex()
        exponent = value[i + 6]
        if not (code.isdigit() and mantissa.isdigit()):
            raise _bad("DGI 0D02: currency code or rate is not BCD")
        entry = ConversionRate(int(code), int(mantissa), exponent)
        if entry.currency == 0 or entry.mantissa == 0 or exponent > CONVERSION_MAX_EXPONENT:
            raise _bad("DGI 0D02: currency 000, rate 0 or exponent above 12")
        if any(e.currency == entry.currency for e in out):
            raise _bad(f"DGI 0D02: currency {entry.currency:03d} twice")
        out.append(entry)
    return tuple(out)


def _bcd(v: bytes) -> int:
    digits = v.hex()
    if not digits.isdigit():
        raise _bad("DGI 0D01: amount or code is not BCD")
    return int(digits)


# -- the last block -------------------------------------------------------------------


def _complete(work: _Work) -> None:
    """Completeness check at the last block (docs/dgi-map.md)."""
    data = work.data
    missing = [d for d in MANDATORY if d not in data.received]
    if missing:
        raise _bad("mandatory DGI missing: " + " ".join(f"{d:04X}" for d in missing))
    if any(e.currency == data.risk.currency for e in data.currency_conversion):
        raise _bad("DGI 0D02 converts the application currency (9F42) into itself")
    if any(d in work.parts for d in (*ICC_KEY_DGIS, *PIN_KEY_DGIS)):
        raise _bad("incomplete RSA key")
    for sfi, first, last in afl_entries(data.afl) + afl_entries(data.afl_contactless):
        for rec in range(first, last + 1):
            if (sfi, rec) not in data.records:
                raise _bad(f"record {sfi}/{rec} named by the AFL is missing")
    _complete_contactless(data)
    cvms = cvm_codes(data)
    offline_pin = cvms & (OFFLINE_PLAIN_PIN_CVMS | OFFLINE_ENCIPHERED_PIN_CVMS)
    if offline_pin and (not data.pin_block or DGI_PIN_TRY not in data.received):
        raise _bad("offline PIN in the CVM list without DGIs 8010 and 9010")
    if data.aip[0] & (AIP_DDA | AIP_CDA) and data.icc_key is None:
        raise _bad("DDA/CDA in the AIP without the ICC private key")
    if cvms & OFFLINE_ENCIPHERED_PIN_CVMS and data.pin_key is None and data.icc_key is None:
        raise _bad("enciphered PIN in the CVM list without a key to decipher it")
    _check_public_exponent(data)


def _complete_contactless(data: EmvData) -> None:
    """The contactless DGIs 9103, 9207, 0D03 come together; kernel 3 needs TTQ in its
    PDOL (Book C-3), fDDA an ICC key and DDA in the AIP, kernel 2 the AIP's EMV mode
    bit (byte 2 b8, Book C-2)."""
    parts = {DGI_FCI_CONTACTLESS, DGI_GPO_CONTACTLESS, DGI_CONTACTLESS}
    got = parts & data.received
    if got and got != parts:
        raise _bad("contactless DGIs 9103, 9207 and 0D03 go together: missing " +
                   " ".join(f"{d:04X}" for d in sorted(parts - got)))
    if not got:
        return
    pdol = tlv.find(data.fci_proprietary_contactless, 0x9F38)
    tags = {t for t, _ in parse_dol(pdol.value)} if pdol is not None else set()
    if data.kernel == 3:
        if 0x9F66 not in tags:
            raise _bad("kernel 3: the contactless PDOL (DGI 9103) must ask for 9F66 (TTQ)")
        if data.fdda_version:
            if data.icc_key is None or not data.aip_contactless[0] & AIP_DDA:
                raise _bad("fDDA without the ICC key or without DDA in the contactless AIP")
            if not {0x9F37, 0x9F02, 0x5F2A} <= tags:
                raise _bad("fDDA v01 needs 9F37, 9F02, 5F2A in the contactless PDOL")
    elif not data.aip_contactless[1] & 0x80:
        raise _bad("kernel 2: the contactless AIP (DGI 9207) lacks EMV mode (byte 2 b8)")


def _fci(value: bytes, dgi: str, what: str) -> bytes:
    """An A5 template's contents (DGI 9102 / 9103) whose PDOL, if any, is well formed."""
    out = _ber(value, dgi)
    found = tlv.find(value, 0x9F38)
    if found is not None:
        try:
            dol_length(found.value)
        except ValueError as exc:
            raise _bad(f"malformed {what}") from exc
    return out


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """Tag and length pairs of a DOL (Book 3 §5.4).

    >>> [(hex(t), n) for t, n in parse_dol(bytes.fromhex("9F02069A03"))]
    [('0x9f02', 6), ('0x9a', 3)]
    """
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(dol):
        start = i
        first = dol[i]
        i += 1
        if first & 0x1F == 0x1F:
            while i < len(dol) and dol[i] & 0x80:
                i += 1
            i += 1
        if i >= len(dol):
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "malformed DOL")
        tag = int.from_bytes(dol[start:i], "big")
        length = dol[i]
        i += 1
        out.append((tag, length))
    return out


def cvm_codes(data: EmvData) -> set[int]:
    """CVM codes (b6..b1) of the CVM list 8E (EMV Book 3 Annex C3): 8 bytes of
    amounts, then 2-byte CV rules."""
    cvm_list = record_tag(data, 0x8E)
    if cvm_list is None:
        return set()
    return {cvm_list[i] & 0x3F for i in range(8, len(cvm_list) - 1, 2)}


def _check_public_exponent(data: EmvData) -> None:
    """With the public exponent in the records (9F47 ICC, 9F2E PIN key), the
    CRT exponents must be its inverses: e·dp ≡ 1 mod (p−1), e·dq ≡ 1 mod (q−1)."""
    for key, tag in ((data.icc_key, 0x9F47), (data.pin_key, 0x9F2E)):
        exponent = record_tag(data, tag)
        if key is None or exponent is None:
            continue
        e = int.from_bytes(exponent, "big")
        if (e * key.dp) % (key.p - 1) != 1 or (e * key.dq) % (key.q - 1) != 1:
            raise _bad("RSA private key does not match the public exponent in the records")

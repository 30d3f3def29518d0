"""CPS DGIs of the cardlab EMV application (``docs/dgi-map.md``, EMV CPS 1.1).

Pure builders, bytes in and bytes out, from the issuer profile
(:class:`cardlab.personalizer.profile.Application`) and card values. Data preparation
(``cardlab.personalizer.prepare``) calls them per card; secrets (8000, 8010, 8201–8205)
are built here in clear and sealed by the caller at once.

| DGI | builder |
|---|---|
| ``SSRR`` records | :func:`build_records` (template 70 per :class:`RecordLayout`) |
| ``9102`` | :func:`fci_9102` |
| ``9104`` | :func:`gpo_9104` |
| ``9103`` / ``9207`` / ``0D03`` | contactless: :func:`fci_9103`, :func:`gpo_9207`, :func:`contactless_0d03` |
| ``8000`` / ``9000`` | the three ICC master keys / :func:`kcv_9000` |
| ``8010`` / ``9010`` | :func:`pin_block_8010` / :func:`pin_try_9010` |
| ``8201``–``8205`` | :func:`crt_dgis` |
| ``0D01`` | :func:`internal_0d01` |
| ``0D02`` | :func:`conversion_0d02` (only with ``risk.currency_conversion``) |
| ``0E01`` | :func:`get_data_0e01` |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from cardlab.cardspec import tlv
from cardlab.personalizer.profile import CVN_CODES, Application, RecordLayout, encode_dol
from cardlab.personalizer.profile.model import DolEntry

__all__ = [
    "EMV_LOAD_FILE_AID",
    "EMV_MODULE_AID",
    "INSTALL_PARAMS",
    "PRIVILEGES",
    "SECRET_DGIS",
    "bcd",
    "build_record",
    "build_records",
    "contactless_0d03",
    "contactless_dgis",
    "conversion_0d02",
    "crt_dgis",
    "fci_9102",
    "fci_9103",
    "get_data_0e01",
    "gpo_9104",
    "gpo_9207",
    "internal_0d01",
    "kcv_9000",
    "pin_block_8010",
    "pin_try_9010",
    "profile_values",
    "record_dgis",
    "static_data",
]

#: the EMV applet's executable load file and module (copied from
#: emulator/applets/emv/applet.py EmvApplet.LOAD_FILE_AID / MODULE_AID)
EMV_LOAD_FILE_AID = bytes.fromhex("A0000006474D56")
EMV_MODULE_AID = bytes.fromhex("A0000006474D5601")
#: GP INSTALL [for install] privileges and parameters (C9: no application-specific parameters)
PRIVILEGES = b"\x00"
INSTALL_PARAMS = bytes.fromhex("C900")

#: DGIs that only travel encrypted (docs/dgi-map.md "secret")
SECRET_DGIS = frozenset({0x8000, 0x8010, *range(0x8101, 0x8106), *range(0x8201, 0x8206)})

#: tags that are left out of a record when their value is empty (optional objects)
_OPTIONAL_EMPTY = frozenset({0x92, 0x9F48, 0x5F25, 0x5F34, 0x9F0B, 0x9F1F, 0x9F20})  # 5F34: card.empty_psn: omit


def bcd(value: int, length: int) -> bytes:
    """``value`` as packed BCD in ``length`` bytes (EMV format n).

    >>> bcd(840, 2).hex()
    '0840'
    >>> bcd(50000, 6).hex()
    '000000050000'
    """
    digits = str(value)
    if value < 0 or len(digits) > 2 * length:
        raise ValueError(f"{value} does not fit n {2 * length}")
    return bytes.fromhex(digits.zfill(2 * length))


def profile_values(app: Application) -> dict[int, bytes]:
    """Values of the record data objects that come from the profile (same on every card)."""
    out: dict[int, bytes] = {
        0x8C: encode_dol(app.cdol1),
        0x8D: encode_dol(app.cdol2),
        0x9F07: app.auc,
        0x9F08: app.version,
        0x9F0D: app.iac.default,
        0x9F0E: app.iac.denial,
        0x9F0F: app.iac.online,
        0x5F28: bcd(app.country, 2),
        0x9F42: bcd(app.currency, 2),
        0x9F44: bytes((app.currency_exponent,)),
        0x9F14: bytes((app.risk.lcol,)),
        0x9F23: bytes((app.risk.ucol,)),
    }
    if app.cvm_list is not None:
        out[0x8E] = app.cvm_list.encode()
    if app.ddol:
        out[0x9F49] = encode_dol(app.ddol)
    if app.tdol:
        out[0x97] = encode_dol(app.tdol)
    if app.sda_tag_list:
        out[0x9F4A] = b"".join(tlv.tag_bytes(t) for t in app.sda_tag_list)
    out.update(app.extra_data)
    return out


def build_records(app: Application, values: Mapping[int, bytes]) -> dict[tuple[int, int], bytes]:
    """Every record of the AFL layout as a ``70`` template, tags in layout order.

    A tag without a value raises ``KeyError``; optional objects with an empty
    value (92, 9F48 without remainder; 5F25 without effective date; 5F34 of a record without PSN
    when the profile omits it) are left out.
    """
    return {(r.sfi, r.number): build_record(r, values) for r in app.records}


def build_record(layout: RecordLayout, values: Mapping[int, bytes]) -> bytes:
    """One record: ``70`` template of the layout's tags (see :func:`build_records`)."""
    body = bytearray()
    for t in layout.tags:
        v = values[t]
        if not v and t in _OPTIONAL_EMPTY:
            continue
        body += tlv.encode(t, v)
    if len(body) > 252:
        raise ValueError(f"SFI {layout.sfi} record {layout.number} holds {len(body)} bytes (more than 252)")
    return tlv.encode(0x70, bytes(body))


def record_dgis(records: Mapping[tuple[int, int], bytes]) -> list[tuple[int, bytes]]:
    """Record DGIs ``SSRR`` in SFI/record order."""
    return [((sfi << 8) | n, body) for (sfi, n), body in sorted(records.items())]


def static_data(
    app: Application, records: Mapping[tuple[int, int], bytes], aip: bytes | None = None
) -> bytes:
    """Static data to be authenticated (EMV 4.4 Book 3 §10.3): the records the AFL
    marks for ODA, in AFL order — SFI 1–10 without their ``70`` tag and length,
    SFI 11–30 whole — then the values of the SDA tag list (9F4A: only 82, the AIP).
    """
    out = bytearray()
    for r in app.oda_records():
        body = records[(r.sfi, r.number)]
        out += tlv.parse(body)[0].value if r.sfi <= 10 else body
    for t in app.sda_tag_list:
        if t == 0x82:
            out += app.aip if aip is None else aip
    return bytes(out)


def _fci_a5(app: Application, pdol: Sequence[DolEntry], languages: str | None, log: bool) -> bytes:
    """The A5 template's contents: 50, 87, 9F38 (``pdol``), 5F2D, 9F11, 9F12 and, with ``log``,
    BF0C {9F4D}."""
    items: list[tuple[int, bytes]] = [(0x50, app.label.encode("ascii")), (0x87, bytes((app.priority,)))]
    if pdol:
        items.append((0x9F38, encode_dol(pdol)))
    lang = languages.encode("ascii") if languages else app.language_preference
    if lang:
        items.append((0x5F2D, lang))
    if app.issuer_code_table_index is not None:
        items.append((0x9F11, bytes((app.issuer_code_table_index,))))
    if app.preferred_name:
        items.append((0x9F12, app.preferred_name.encode("ascii")))
    if log and app.log is not None:
        items.append((0xBF0C, tlv.encode(0x9F4D, app.log.log_entry)))
    return tlv.encode_all(items)


def fci_9102(app: Application, languages: str | None = None) -> bytes:
    """DGI 9102: the contents of the FCI proprietary template A5 (Book 1 §11.3.4):
    50, 87, 9F38, 5F2D, 9F11, 9F12, BF0C {9F4D}. ``languages`` (e.g. ``"fren"``)
    replaces the profile's language preference."""
    return _fci_a5(app, app.pdol, languages, log=True)


def fci_9103(app: Application, languages: str | None = None) -> bytes:
    """DGI 9103: the A5 template on the contactless interface (CPS §5.4): as 9102 with the
    contactless PDOL (which carries 9F66 TTQ for kernel 3, EMV Contactless Book C-3, the PDOL)
    and no log entry; empty for a contact-only application (the DGI is then not sent)."""
    if app.contactless is None:
        return b""
    return _fci_a5(app, app.contactless.pdol, languages, log=False)


def gpo_9207(app: Application) -> bytes:
    """DGI 9207: ``82`` AIP ‖ ``94`` AFL on the contactless interface (the DGI Visa's
    contactless perso profiles give the qVSDC AIP/AFL). The AIP is the application's one AIP
    (the signed static data covers it, Book 2 §5.4), the AFL the section's or the contact one."""
    cl = app.contactless
    if cl is None:
        return b""
    return tlv.encode(0x82, app.aip) + tlv.encode(0x94, cl.afl_value(app.afl()))


def contactless_0d03(app: Application) -> bytes:
    """DGI 0D03 (cardlab card-internal contactless data, docs/dgi-map.md): ``9F2A`` kernel
    identifier, then for kernel 3 ``9F6C`` CTQ and ``DF22`` fDDA version (01) when fDDA is on,
    for kernel 2 ``9F6E`` Third Party Data when given."""
    cl = app.contactless
    if cl is None:
        return b""
    items: list[tuple[int, bytes]] = [(0x9F2A, bytes((cl.kernel,)))]
    if cl.ctq is not None:
        items.append((0x9F6C, cl.ctq))
    if cl.fdda:
        items.append((0xDF22, b"\x01"))
    if cl.third_party_data is not None:
        items.append((0x9F6E, cl.third_party_data))
    return tlv.encode_all(items)


def contactless_dgis(app: Application, languages: str | None = None) -> list[tuple[int, bytes]]:
    """The contactless DGIs 9103, 9207, 0D03 of an application (none without a section)."""
    if app.contactless is None:
        return []
    return [(0x9103, fci_9103(app, languages)), (0x9207, gpo_9207(app)), (0x0D03, contactless_0d03(app))]


def gpo_9104(app: Application) -> bytes:
    """DGI 9104: ``82`` AIP ‖ ``94`` AFL (the GET PROCESSING OPTIONS answer)."""
    return tlv.encode(0x82, app.aip) + tlv.encode(0x94, app.afl())


def internal_0d01(app: Application) -> bytes:
    """DGI 0D01: card-internal risk management data (docs/dgi-map.md table)."""
    r = app.risk
    items: list[tuple[int, bytes]] = [
        (0xDF01, bytes((CVN_CODES[app.cvn],))),
        (0xDF02, bytes((r.dki,))),
        (0x9F14, bytes((r.lcol,))),
        (0x9F23, bytes((r.ucol,))),
        (0xDF11, bcd(r.lower_cumulative, 6)),
        (0xDF12, bcd(r.upper_cumulative, 6)),
        (0x9F42, bcd(app.currency, 2)),
        (0xDF17, bytes((app.currency_exponent,))),
        (0x9F52, r.default_action),
        (0xDF13, b"\x01" if r.issuer_auth_required else b"\x00"),
        (0xDF14, bytes((r.arpc_method,))),
        (0xDF15, r.max_atc.to_bytes(2, "big")),
        (0xDF16, bytes((app.response_format,))),
    ]
    if app.log is not None:
        items += [(0x9F4D, app.log.log_entry), (0x9F4F, encode_dol(app.log.format))]
    return tlv.encode_all(items)


def conversion_0d02(app: Application) -> bytes:
    """DGI 0D02: ``DF18`` {the currency conversion table}, per entry currency n 3 ‖
    rate mantissa n 8 ‖ decimal exponent (docs/dgi-map.md); empty without entries
    (the DGI is then not sent): 1 EUR = 1.0850 USD is the entry ``0978 00001085 03``."""
    rates = app.risk.currency_conversion
    if not rates:
        return b""
    entries = b"".join(bcd(c.currency, 2) + bcd(c.mantissa, 4) + bytes((c.exponent,)) for c in rates)
    return tlv.encode(0xDF18, entries)


def get_data_0e01(app: Application) -> bytes:
    """DGI 0E01: data objects for GET DATA: 9F14, 9F23, 9F42, 5F28 (and 9F4F with a log)."""
    items: list[tuple[int, bytes]] = [
        (0x9F14, bytes((app.risk.lcol,))),
        (0x9F23, bytes((app.risk.ucol,))),
        (0x9F42, bcd(app.currency, 2)),
        (0x5F28, bcd(app.country, 2)),
    ]
    if app.log is not None:
        items.append((0x9F4F, encode_dol(app.log.format)))
    return tlv.encode_all(items)


def kcv_9000(kcvs: Iterable[bytes]) -> bytes:
    """DGI 9000: the 3-byte check values of MK-AC, MK-SMI, MK-SMC."""
    out = b"".join(kcvs)
    if len(out) != 9:
        raise ValueError("DGI 9000 holds three 3-byte check values")
    return out


def pin_block_8010(pin: str) -> bytes:
    """DGI 8010: plaintext offline PIN block ``2 ‖ N ‖ PIN ‖ F…`` (Book 3 §6.5.12).

    >>> pin_block_8010("1234").hex().upper()
    '241234FFFFFFFFFF'
    """
    if not (pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError("PIN must be 4-12 digits")
    return bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))


def pin_try_9010(limit: int) -> bytes:
    """DGI 9010: PIN try limit ‖ PIN try counter (a new card: counter = limit).

    >>> pin_try_9010(3).hex()
    '0303'
    """
    if not 1 <= limit <= 15:
        raise ValueError("PIN try limit 1..15")
    return bytes((limit, limit))


def crt_dgis(p: int, q: int, d: int, modulus_length: int, base: int = 0x8201) -> list[tuple[int, bytes]]:
    """DGIs 8201–8205 (or 8101–8105): q⁻¹ mod p, d mod (q−1), d mod (p−1), q, p,
    each big-endian in half the modulus length.

    >>> [(hex(g), v.hex()) for g, v in crt_dgis(11, 7, 29, 2)]
    [('0x8201', '08'), ('0x8202', '05'), ('0x8203', '09'), ('0x8204', '07'), ('0x8205', '0b')]
    """
    half = (modulus_length + 1) // 2
    parts: Sequence[int] = (pow(q, -1, p), d % (q - 1), d % (p - 1), q, p)
    return [(base + i, v.to_bytes(half, "big")) for i, v in enumerate(parts)]

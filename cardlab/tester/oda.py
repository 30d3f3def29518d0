"""Offline data authentication, the terminal's side (EMV 4.4 Book 3 §10.3,
Book 2 §5 SDA, §6.5 DDA, §6.6 CDA), with the tester's own RSA (``cardlab.tester.rsa``).

:func:`authenticate` is the kernel step after READ APPLICATION DATA: it
chooses CDA > DDA > SDA from the AIP and the terminal capabilities, recovers
the issuer key (and the ICC key), checks the signed data and sets the TVR
("SDA failed", "DDA failed", "CDA failed", "ICC data missing", "offline data
authentication was not performed") and the TSI ("offline data authentication
was performed"). For CDA it only recovers the ICC key: the kernel calls
:func:`verify_cda` with the GENERATE AC response, which checks the signature
and the transaction data hash (Book 2 §6.6.2).

Every check appends a :class:`~tester.state.TraceEvent` saying what was
recovered or which field failed. The recovered objects are kept in
``state.extras["oda"]`` (``"ca_key"``, ``"issuer"``, ``"icc"``, ``"ssad"``,
``"sdad"``, ``"cda"``, ``"static_data"``) for certification rules.

Outcomes: ``state.oda_method`` is "SDA", "DDA", "CDA" or "" and
``state.oda_ok`` True/False, or None when ODA was not performed or a CDA
signature is still to come.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from . import dictionary
from .capk import CaKeyList, CaPublicKey
from .channel import CardChannel
from .exchange import case4, event, mask_pan, send
from .rsa import (
    IccCertificate,
    IssuerCertificate,
    SignedDynamicData,
    recover_icc_certificate,
    recover_issuer_certificate,
    recover_sdad,
    recover_ssad,
)
from .state import TransactionState
from .tlv import Tlv, TlvError, encode, parse, parse_dol

STEP = "Offline data authentication"
REF = "EMV Book 3 §10.3"
REF_SDA = "EMV Book 2 §5"
REF_ISSUER = "EMV Book 2 §5.3"
REF_SSAD = "EMV Book 2 §5.4"
REF_ICC = "EMV Book 2 §6.4"
REF_DDA = "EMV Book 2 §6.5"
REF_CDA = "EMV Book 2 §6.6"

#: AIP byte 1 (Book 3 Annex C1)
AIP_SDA, AIP_DDA, AIP_CDA = 0x40, 0x20, 0x01
#: Terminal capabilities 9F33 byte 3 (Book 4 Annex A2)
CAP_SDA, CAP_DDA, CAP_CDA = 0x80, 0x40, 0x08

FAILED = {"SDA": "SDA failed", "DDA": "DDA failed", "CDA": "CDA failed"}
NOT_PERFORMED = "offline data authentication was not performed"
PERFORMED = "offline data authentication was performed"
MISSING = "ICC data missing"

#: default DDOL when neither the card nor the terminal profile has one (Book 3 §10.3: UN only)
DEFAULT_DDOL = bytes.fromhex("9F3704")


class OdaError(Exception):
    """A failed check; ``missing`` when mandatory ICC data is absent."""

    def __init__(self, text: str, *, missing: bool = False) -> None:
        super().__init__(text)
        self.missing = missing


# -- inputs ---------------------------------------------------------------------------


def _oda(state: TransactionState) -> dict[str, Any]:
    store = state.extras.setdefault("oda", {})
    assert isinstance(store, dict)
    return store


def terminal_capabilities(state: TransactionState) -> bytes | None:
    """9F33 of the terminal, None when there is no terminal profile."""
    t = state.terminal
    if t is None:
        return None
    caps = getattr(t, "capabilities", None)
    if isinstance(caps, bytes | bytearray) and len(caps) >= 3:
        return bytes(caps)
    return None


def choose_method(state: TransactionState) -> str:
    """CDA if both support it, else DDA, else SDA, else "" (Book 3 §10.3)."""
    aip = state.aip or state.card_data.get(0x82, b"")
    if not aip:
        return ""
    caps = terminal_capabilities(state)
    can = caps[2] if caps is not None else CAP_SDA | CAP_DDA | CAP_CDA
    if aip[0] & AIP_CDA and can & CAP_CDA:
        return "CDA"
    if aip[0] & AIP_DDA and can & CAP_DDA:
        return "DDA"
    if aip[0] & AIP_SDA and can & CAP_SDA:
        return "SDA"
    return ""


def _today(state: TransactionState, today: date | None) -> date:
    if today is not None:
        return today
    raw = terminal_values(state).get(0x9A)
    if raw is not None and len(raw) == 3 and raw.hex().isdigit():
        y, m, d = (int(raw[i : i + 1].hex()) for i in range(3))
        try:
            return date(2000 + y, m, d)
        except ValueError:
            pass
    return date.today()


def terminal_values(state: TransactionState) -> dict[int, bytes]:
    """Values a DOL may ask for: the card's data, the terminal profile's data,
    the kernel's terminal data (``extras["terminal_data"]``) and the state."""
    values: dict[int, bytes] = dict(state.card_data)
    t = state.terminal
    data = getattr(t, "data", None) if t is not None else None
    if callable(data):
        got = data()
        if isinstance(got, Mapping):
            values.update(got)
    for key in ("terminal_data", "terminal_values", "values"):
        extra = state.extras.get(key)
        if isinstance(extra, Mapping):
            values.update({k: v for k, v in extra.items() if isinstance(k, int) and isinstance(v, bytes)})
    values.setdefault(0x9F02, bytes.fromhex(f"{state.amount:012d}"))
    values.setdefault(0x9F03, bytes.fromhex(f"{state.amount_other:012d}"))
    values.setdefault(0x9C, bytes.fromhex(f"{state.transaction_type:02d}"))
    values[0x95] = bytes(state.tvr)
    values[0x9B] = bytes(state.tsi)
    values[0x9F34] = state.cvm_result
    if state.unpredictable_number:
        values[0x9F37] = state.unpredictable_number
    return values


def build_dol(dol: bytes, values: Mapping[int, bytes]) -> bytes:
    """DOL-related data (Book 3 §5.4): each entry's value fitted to its
    length; constructed tags and unknown values give zeros."""
    out = b""
    for tag, n in parse_dol(dol):
        first = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")[0]
        out += bytes(n) if first & 0x20 else dictionary.dol_value(tag, values.get(tag), n)
    return out


def static_data_to_authenticate(state: TransactionState) -> bytes:
    """Book 3 §10.3: the records the AFL names for ODA (SFI 1–10 without the
    70 tag and length, SFI 11–30 whole), then the values of the tags in the
    Static Data Authentication Tag List (9F4A; only 82 is allowed).
    ``state.oda_data`` holds the record part when the kernel built it;
    otherwise it is built here from ``state.afl`` and ``state.records``."""
    records = state.oda_data
    if not records and state.afl:
        afl = state.afl
        out = b""
        for i in range(0, len(afl) - 3, 4):
            sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for rec in range(first, min(first + n_oda, last + 1)):
                body = state.records.get((sfi, rec))
                if body is None:
                    raise OdaError(f"record {rec} of SFI {sfi} named for ODA by the AFL was not read",
                                   missing=True)
                if sfi <= 10:
                    try:
                        items = parse(body)
                    except TlvError as exc:
                        raise OdaError(f"record {rec} of SFI {sfi}: {exc}") from None
                    if len(items) != 1 or items[0].tag != 0x70:
                        raise OdaError(f"record {rec} of SFI {sfi} for ODA is not a single 70 template "
                                       "(Book 3 §10.3)")
                    out += items[0].value
                else:
                    out += body
        records = out
    tag_list = state.card_data.get(0x9F4A)
    if tag_list is None:
        return records
    try:
        tags = _tag_list(tag_list)
    except TlvError as exc:
        raise OdaError(f"Static Data Authentication Tag List 9F4A: {exc}") from None
    extra = b""
    for tag in tags:
        if tag != 0x82:
            raise OdaError(f"Static Data Authentication Tag List 9F4A names {tag:X}: only 82 (AIP) is allowed "
                           "(Book 3 §10.3)")
        extra += state.aip or state.card_data.get(0x82, b"")
    return records + extra


def _tag_list(data: bytes) -> list[int]:
    """A tag list (tags only, Book 3 §5.4)."""
    tags: list[int] = []
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= len(data):
                    raise TlvError("truncated tag in tag list")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        tags.append(tag)
    return tags


def _ca_list(state: TransactionState, ca_keys: CaKeyList | None) -> CaKeyList:
    if ca_keys is not None:
        return ca_keys
    out = CaKeyList()
    for k in getattr(state.terminal, "ca_keys", None) or []:
        n, e = int(k.modulus), int(k.exponent)
        expiry = str(getattr(k, "expiry", "") or "")
        out.add(CaPublicKey(bytes(k.rid), int(k.index), n.to_bytes((n.bit_length() + 7) // 8, "big"),
                            e.to_bytes((e.bit_length() + 7) // 8, "big"),
                            date.fromisoformat(expiry) if expiry else None))
    return out


def _pan(state: TransactionState) -> str:
    return state.card_data.get(0x5A, b"").hex().upper().rstrip("F")


def _require(state: TransactionState, tags: Sequence[int]) -> None:
    absent = [t for t in tags if t not in state.card_data]
    if absent:
        names = ", ".join(f"{t:X} ({dictionary.name(t)})" for t in absent)
        raise OdaError(f"mandatory data for ODA missing: {names}", missing=True)


def _check(state: TransactionState, reference: str, text: str) -> None:
    event(state, STEP, reference, "check", text)


# -- the key chain ------------------------------------------------------------------


def issuer_public_key(state: TransactionState, ca_keys: CaKeyList | None, today: date) -> IssuerCertificate:
    """CA key lookup and Book 2 §5.3 recovery; raises :class:`OdaError`."""
    _require(state, (0x8F, 0x90, 0x9F32))
    rid = (state.aid or state.card_data.get(0x84, b"") or state.card_data.get(0x4F, b""))[:5]
    index = state.card_data[0x8F][0] if state.card_data[0x8F] else -1
    keys = _ca_list(state, ca_keys)
    ca = keys.find(rid, index)
    if ca is None:
        raise OdaError(f"no CA public key {rid.hex().upper()}/{index:02X} in the terminal's list "
                       f"({len(keys)} keys) (Book 2 §5.2)")
    if ca.expired(today):
        raise OdaError(f"CA public key {ca.label()} expired on {ca.expiry} (Book 2 §5.2)")
    _oda(state)["ca_key"] = ca
    _check(state, "EMV Book 2 §5.2", f"CA public key {ca.label()} found: {len(ca.modulus) * 8} bits, "
           f"exponent {ca.exponent.hex().upper()}")
    cert = recover_issuer_certificate(
        state.card_data[0x90], ca.n, ca.e, state.card_data.get(0x92, b""), state.card_data[0x9F32],
        pan=_pan(state), today=today,
    )
    _oda(state)["issuer"] = cert
    if cert.frame_ok:
        _check(state, REF_ISSUER,
               f"issuer public key certificate recovered: issuer identifier {cert.issuer_id_digits}, expiry "
               f"{cert.expiry.hex()[:2]}/{cert.expiry.hex()[2:]}, serial {cert.serial.hex().upper()}, key "
               f"{cert.pk_length * 8} bits, exponent length {cert.exponent_length}, remainder "
               f"{'used (' + str(len(cert.remainder)) + ' bytes)' if cert.remainder_needed else 'not needed'}")
    if not cert.ok:
        raise OdaError("; ".join(cert.problems), missing=cert.failure == "remainder" and 0x92 not in state.card_data)
    _check(state, REF_ISSUER, "issuer certificate hash, issuer identifier, expiry and algorithms check out")
    state.issuer_public_key = cert.public_key
    return cert


def icc_public_key(state: TransactionState, issuer: IssuerCertificate, static: bytes,
                   today: date) -> IccCertificate:
    """Book 2 §6.4 recovery with the issuer key; raises :class:`OdaError`."""
    _require(state, (0x9F46, 0x9F47))
    n, e = issuer.public_key
    cert = recover_icc_certificate(
        state.card_data[0x9F46], n, e, state.card_data.get(0x9F48, b""), state.card_data[0x9F47], static,
        pan=_pan(state), today=today,
    )
    _oda(state)["icc"] = cert
    if cert.frame_ok:
        _check(state, REF_ICC,
               f"ICC public key certificate recovered: PAN {mask_pan(cert.pan_digits)}, expiry "
               f"{cert.expiry.hex()[:2]}/{cert.expiry.hex()[2:]}, serial {cert.serial.hex().upper()}, key "
               f"{cert.pk_length * 8} bits, remainder "
               f"{'used (' + str(len(cert.remainder)) + ' bytes)' if cert.remainder_needed else 'not needed'}")
    if not cert.ok:
        raise OdaError("; ".join(cert.problems),
                       missing=cert.failure == "remainder" and 0x9F48 not in state.card_data)
    _check(state, REF_ICC, f"ICC certificate hash over the certificate and {len(static)} bytes of static data, "
           "PAN, expiry and algorithms check out")
    state.icc_public_key = cert.public_key
    return cert


def icc_pin_key(state: TransactionState, ca_keys: CaKeyList | None = None,
                today: date | None = None) -> tuple[int, int]:
    """Book 2 §7.1: the ICC PIN Encipherment Public Key from its certificate
    (9F2D, exponent 9F2E, remainder 9F2F), recovered with the issuer public key
    (the one ODA recovered, else recovered here) like an ICC public key
    certificate, except that the hash covers no static data. Raises
    :class:`OdaError`; the key is kept in ``state.extras["icc_pin_key"]``."""
    _require(state, (0x9F2D, 0x9F2E))
    when = _today(state, today)
    issuer = _oda(state).get("issuer")
    if issuer is None or not issuer.ok:
        issuer = issuer_public_key(state, ca_keys, when)
    n, e = issuer.public_key
    cert = recover_icc_certificate(
        state.card_data[0x9F2D], n, e, state.card_data.get(0x9F2F, b""), state.card_data[0x9F2E], b"",
        pan=_pan(state), today=when,
    )
    _oda(state)["pin_key"] = cert
    what = "ICC PIN encipherment public key certificate"
    if not cert.ok:
        raise OdaError(what + ": " + "; ".join(cert.problems),
                       missing=cert.failure == "remainder" and 0x9F2F not in state.card_data)
    _check(state, "EMV Book 2 §7.1",
           f"{what} recovered: PAN {mask_pan(cert.pan_digits)}, expiry {cert.expiry.hex()[:2]}/{cert.expiry.hex()[2:]}, "
           f"key {cert.pk_length * 8} bits; hash, PAN, expiry and algorithms check out")
    state.extras["icc_pin_key"] = cert.public_key
    return cert.public_key


# -- the methods --------------------------------------------------------------------


def _sda(state: TransactionState, ca_keys: CaKeyList | None, today: date) -> None:
    _require(state, (0x8F, 0x90, 0x9F32, 0x93))
    static = static_data_to_authenticate(state)
    _oda(state)["static_data"] = static
    issuer = issuer_public_key(state, ca_keys, today)
    n, e = issuer.public_key
    s = recover_ssad(state.card_data[0x93], n, e, static)
    _oda(state)["ssad"] = s
    if s.frame_ok:
        _check(state, REF_SSAD, f"signed static application data recovered: data authentication code "
               f"{s.data_authentication_code.hex().upper()}, hash algorithm {s.hash_algorithm:02X}")
    if not s.ok:
        raise OdaError("; ".join(s.problems))
    state.card_data[0x9F45] = s.data_authentication_code
    _check(state, REF_SSAD, f"hash over {len(static)} bytes of static data matches the signed hash")


def _ddol(state: TransactionState) -> bytes:
    ddol = state.card_data.get(0x9F49)
    if ddol is not None:
        return ddol
    default = getattr(state.terminal, "default_ddol", None) if state.terminal is not None else None
    if isinstance(default, bytes) and default:
        _check(state, REF, f"card has no DDOL: the terminal's default DDOL {default.hex().upper()} is used")
        return default
    if state.terminal is not None and getattr(state.terminal, "default_ddol", None) is not None:
        raise OdaError("the card has no DDOL (9F49) and the terminal no default DDOL", missing=True)
    _check(state, REF, f"card has no DDOL: the default DDOL {DEFAULT_DDOL.hex().upper()} is used")
    return DEFAULT_DDOL


def _sdad_from(data: bytes) -> bytes:
    items = parse(data)
    if len(items) == 1 and items[0].tag == 0x80:
        return items[0].value
    if len(items) == 1 and items[0].tag == 0x77:
        for child in items[0].children():
            if child.tag == 0x9F4B:
                return child.value
        raise OdaError("INTERNAL AUTHENTICATE response template 77 without 9F4B", missing=True)
    raise OdaError("INTERNAL AUTHENTICATE response is neither template 80 nor 77")


def _dda(state: TransactionState, channel: CardChannel, ca_keys: CaKeyList | None, today: date) -> None:
    _require(state, (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47))
    static = static_data_to_authenticate(state)
    _oda(state)["static_data"] = static
    issuer = issuer_public_key(state, ca_keys, today)
    icc = icc_public_key(state, issuer, static, today)
    ddol = _ddol(state)
    if 0x9F37 not in [t for t, _ in parse_dol(ddol)]:
        raise OdaError(f"DDOL {ddol.hex().upper()} does not ask for the unpredictable number 9F37 (Book 2 §6.5.1)")
    if not state.unpredictable_number:
        state.unpredictable_number = os.urandom(4)
    ddol_data = build_dol(ddol, terminal_values(state))
    data, sw = send(state, channel, case4(b"\x00\x88\x00\x00", ddol_data), STEP, "EMV Book 3 §6.5.9",
                    f"INTERNAL AUTHENTICATE with the DDOL data {ddol_data.hex().upper()}")
    if sw != 0x9000:
        raise OdaError(f"INTERNAL AUTHENTICATE answered SW {sw:04X}")
    try:
        sdad = _sdad_from(data)
    except TlvError as exc:
        raise OdaError(f"INTERNAL AUTHENTICATE response: {exc}") from None
    n, e = icc.public_key
    s = recover_sdad(sdad, n, e, ddol_data)
    _oda(state)["sdad"] = s
    if s.frame_ok:
        _check(state, REF_DDA, f"signed dynamic application data recovered: ICC dynamic number "
               f"{s.icc_dynamic_number.hex().upper()}, hash algorithm {s.hash_algorithm:02X}")
    if not s.ok:
        raise OdaError("; ".join(s.problems))
    state.card_data[0x9F4C] = s.icc_dynamic_number
    _check(state, REF_DDA, "hash over the dynamic data and the DDOL data matches the signed hash")


def _cda_keys(state: TransactionState, ca_keys: CaKeyList | None, today: date) -> None:
    _require(state, (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47))
    static = static_data_to_authenticate(state)
    _oda(state)["static_data"] = static
    issuer = issuer_public_key(state, ca_keys, today)
    icc_public_key(state, issuer, static, today)
    _check(state, REF_CDA, "ICC public key ready: the signature follows in the GENERATE AC response")


def authenticate(state: TransactionState, channel: CardChannel, ca_keys: CaKeyList | None = None,
                 *, today: date | None = None, method: str | None = None) -> TransactionState:
    """The ODA step (Book 3 §10.3). ``ca_keys`` None → the terminal profile's
    keys; ``today`` None → 9A from the terminal data, else the system date.
    ``method`` ("SDA", "DDA", "CDA") overrides the choice from AIP and
    capabilities (certification checks every method the card announces)."""
    method = method or choose_method(state)
    state.oda_method = method
    if not method:
        aip = (state.aip or state.card_data.get(0x82, b"")).hex().upper() or "absent"
        caps = terminal_capabilities(state)
        event(state, STEP, REF, "decision",
              f"no ODA method supported by both the card (AIP {aip}) and the terminal "
              f"(9F33 {caps.hex().upper() if caps else 'all'}): offline data authentication not performed",
              tvr=[NOT_PERFORMED])
        state.oda_ok = None
        return state
    event(state, STEP, REF, "decision",
          f"{method} chosen: AIP {(state.aip or state.card_data.get(0x82, b'')).hex().upper()}, terminal "
          f"capabilities {(terminal_capabilities(state) or b'').hex().upper() or 'all'} (CDA > DDA > SDA)",
          tvr=["SDA selected"] if method == "SDA" else ())  # Book 3 §10.3: set when SDA is selected
    when = _today(state, today)
    try:
        if method == "SDA":
            _sda(state, ca_keys, when)
        elif method == "DDA":
            _dda(state, channel, ca_keys, when)
        else:
            _cda_keys(state, ca_keys, when)
    except OdaError as exc:
        bits = ([MISSING] if exc.missing else []) + [FAILED[method]]
        state.oda_ok = False
        event(state, STEP, _ref(method), "decision", f"{method} failed: {exc}", tvr=bits, tsi=[PERFORMED])
        return state
    if method == "CDA":
        state.oda_ok = None
        event(state, STEP, REF_CDA, "decision", "CDA keys recovered; the signature is checked after GENERATE AC",
              tsi=[PERFORMED])
    else:
        state.oda_ok = True
        event(state, STEP, _ref(method), "decision", f"{method} successful", tsi=[PERFORMED])
    return state


def _ref(method: str) -> str:
    return {"SDA": REF_SDA, "DDA": REF_DDA, "CDA": REF_CDA}.get(method, REF)


# -- CDA after GENERATE AC ----------------------------------------------------------


def _response_items(response: Mapping[int, bytes] | bytes | Sequence[Tlv]) -> list[tuple[int, bytes, bytes]]:
    """(tag, value, encoding) of each data object of the response, in order."""
    if isinstance(response, bytes | bytearray):
        items = parse(bytes(response))
        if len(items) == 1 and items[0].tag == 0x77:
            items = items[0].children()
        return [(t.tag, t.value, t.raw) for t in items]
    if isinstance(response, Mapping):
        return [(tag, value, encode(tag, value)) for tag, value in response.items()]
    return [(t.tag, t.value, t.raw) for t in response]


def _un_from_dol(dol: bytes | None, data: bytes) -> bytes | None:
    if not dol:
        return None
    offset = 0
    try:
        entries = parse_dol(dol)
    except TlvError:
        return None
    for tag, n in entries:
        if tag == 0x9F37:
            return data[offset : offset + n] if offset + n <= len(data) else None
        offset += n
    return None


def verify_cda(
    state: TransactionState,
    response_tlvs: Mapping[int, bytes] | bytes | Sequence[Tlv],
    pdol_data: bytes | None = None,
    cdol_data: bytes | None = None,
    *,
    cdol2_data: bytes | None = None,
    unpredictable_number: bytes | None = None,
) -> bool:
    """Book 2 §6.6.2 on a GENERATE AC response: recover the SDAD (9F4B) with
    the ICC key, check its hash over the unpredictable number, that its CID
    equals 9F27 and that the transaction data hash code is SHA-1(PDOL data ‖
    CDOL1 data [‖ CDOL2 data for the second GENERATE AC] ‖ every response
    data object except 9F4B, in order, with tags and lengths).

    ``response_tlvs`` is the response (its bytes, the 77 template's objects as
    :class:`~tester.tlv.Tlv` or a tag → value dict in the card's order).
    ``pdol_data``/``cdol_data`` default to ``state.pdol_data``/``state.cdol1_data``.
    On success the recovered application cryptogram is added to a dict
    response as 9F26. A response with an AAC and no 9F4B is not a CDA
    failure (the card does not sign declines): it returns False, no TVR bit.
    """
    pdol = state.pdol_data if pdol_data is None else pdol_data
    cdol1 = state.cdol1_data if cdol_data is None else cdol_data
    second = cdol2_data is not None
    items = _response_items(response_tlvs)
    values = {tag: value for tag, value, _ in items}
    cid = values.get(0x9F27, b"")
    store = _oda(state)

    def fail(text: str) -> bool:
        state.oda_ok = False
        store["cda"] = {"ok": False, "reason": text}
        event(state, STEP, REF_CDA, "decision", f"CDA failed: {text}", tvr=[FAILED["CDA"]], tsi=[PERFORMED])
        return False

    if 0x9F4B not in values:
        if cid and cid[0] & 0xC0 == 0x00:
            event(state, STEP, REF_CDA, "note", "the card answered an AAC without a signature: nothing to verify")
            return False
        return fail("the GENERATE AC response has no Signed Dynamic Application Data (9F4B)")
    if state.icc_public_key is None:
        return fail("no ICC public key was recovered")
    un = unpredictable_number
    if un is None and second:
        un = _un_from_dol(state.card_data.get(0x8D), cdol2_data or b"")
    if un is None:
        un = _un_from_dol(state.card_data.get(0x8C), cdol1)
    if un is None:
        un = state.unpredictable_number
    if not un:
        return fail("no unpredictable number to check the signature against")
    n, e = state.icc_public_key
    s: SignedDynamicData = recover_sdad(values[0x9F4B], n, e, un, cda=True)
    store["sdad"] = s
    if not s.ok:
        return fail("; ".join(s.problems))
    _check(state, REF_CDA, f"signed dynamic application data recovered: ICC dynamic number "
           f"{s.icc_dynamic_number.hex().upper()}, CID {s.cid.hex().upper()}, cryptogram "
           f"{s.cryptogram.hex().upper()}; hash over the unpredictable number {un.hex().upper()} matches")
    if s.cid != cid:
        return fail(f"CID {s.cid.hex().upper()} in the signature differs from 9F27 {cid.hex().upper() or 'absent'}")
    rest = b"".join(raw for tag, _, raw in items if tag != 0x9F4B)
    hashed = pdol + cdol1 + (cdol2_data or b"") + rest
    digest = hashlib.sha1(hashed).digest()
    if digest != s.transaction_data_hash:
        return fail(f"transaction data hash code {s.transaction_data_hash.hex().upper()} differs from SHA-1 of "
                    f"PDOL data ‖ CDOL{'1 ‖ CDOL2' if second else '1'} data ‖ response ({len(hashed)} bytes) = "
                    f"{digest.hex().upper()}")
    state.card_data[0x9F4C] = s.icc_dynamic_number
    if isinstance(response_tlvs, dict) and 0x9F26 not in response_tlvs:
        response_tlvs[0x9F26] = s.cryptogram
    store["cda"] = {"ok": True, "cryptogram": s.cryptogram, "cid": s.cid}
    state.oda_ok = True
    event(state, STEP, REF_CDA, "decision",
          f"CDA successful: transaction data hash over {len(hashed)} bytes matches; cryptogram "
          f"{s.cryptogram.hex().upper()}", tsi=[PERFORMED])
    return True

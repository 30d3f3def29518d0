"""GENERATE AC (EMV 4.4 Book 3 §6.5.5), card risk management, CDA and the
transaction log.

Card risk management follows the VIS / M/Chip pattern that EMV Book 3
Annex C leaves to the issuer: the card checks its own counters and flags,
fills :class:`~.cvn.CvrFacts`, and may *downgrade* the cryptogram the terminal
asked for (TC → ARQC → AAC) but never upgrade it (Book 3 §6.5.5.4, Table 12).

Issuer choices are personalized (DGI 0D01, ``docs/dgi-map.md``):

* LCOL/UCOL (9F14/9F23) and the lower/upper cumulative offline amounts
  (DF11/DF12) always apply: a limit of 0 means "no offline approval".
  Exceeding a *lower* limit sends the transaction online (ARQC); exceeding an
  *upper* limit declines (AAC) when the terminal then cannot go online
  (second GENERATE AC with ARC ``Y3``/``Z3``, Book 4 §A6).
* The Application Default Action (9F52, two bytes, cardlab layout after VIS
  1.5 Appendix A) switches the other checks on; see :class:`Ada`.
* The cumulative amounts count in the application currency (9F42). A
  transaction in another currency (5F2A) counts at its converted amount when
  the currency conversion table (DGI 0D02, after M/Chip 4's Currency
  Conversion Table and VIS 1.5's secondary currency) has an entry for it,
  rounded *up* to a whole minor unit (:func:`convert_amount`: never below the
  exact value, so the limits are never reached later than they should be).
  Without an entry the currency is *not convertible*: the amount is not
  counted, and the transaction goes online if the ADA says so
  (:attr:`Ada.ONLINE_IF_OTHER_CURRENCY`) — the behaviour of a card without a
  table.

Counters and flags (EmvData) change before the answer is returned
(ARCHITECTURE.md: counters that protect value):

* offline approval (TC without an online response): consecutive_offline += 1,
  cumulative_offline += amount (9F02 in the application currency, converted
  by DGI 0D02 when 5F2A is another; nothing when it is not convertible);
* ARQC: online_not_completed = True, cleared by the second GENERATE AC;
* online response with successful issuer authentication (or, when the AIP
  does not announce issuer authentication, any online response): last online
  ATC = ATC; with a TC the offline counters are also reset;
* issuer authentication failed (or required and missing): issuer_auth_failed,
  kept until a later issuer authentication succeeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntFlag
from typing import TYPE_CHECKING

from cardlab.cardspec import tlv
from cardlab.cardspec.signed_data import CDA_DYNAMIC_DATA

from ...apdu import SW, Command, StatusError
from . import core, cvn
from .perso import parse_dol
from .records import record_tag
from .cvn import CvrFacts
from .state import ConversionRate

if TYPE_CHECKING:
    from ...applet import Context
    from .instance import EmvInstance

AAC = 0x00
TC = 0x40
ARQC = 0x80
TYPE_MASK = 0xC0
#: Book 3 §6.5.5.2 Table 12: P1 b5 asks for CDA; b6 and b4..b1 are RFU
P1_CDA = 0x10
#: CID (9F27) b4: advice required; b3..b1 reason code (Book 3 Table 15)
CID_ADVICE = 0x08
REASON_SERVICE_NOT_ALLOWED = 0x01
REASON_PIN_TRY_LIMIT_EXCEEDED = 0x02
REASON_ISSUER_AUTH_FAILED = 0x03

#: AIP byte 1 (Book 3 Annex C1): b3 issuer authentication supported, b1 CDA supported
AIP_ISSUER_AUTH = 0x04
AIP_CDA = 0x01

#: Authorisation Response Codes meaning "unable to go online" (Book 4 §A6)
UNABLE_ONLINE_ARC = (b"Y3", b"Z3")

#: "n" format data elements: numeric values are right-justified and padded
#: with leading zeros when a DOL asks for a different length (Book 3 §5.4)
NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x5F2A, 0x9F1A, 0x9A, 0x9C, 0x9F21, 0x9F42, 0x5F28, 0x5F36, 0x9F44})


class Ada(IntFlag):
    """Application Default Action (9F52), cardlab layout (2 bytes, b8 of byte 1 first).

    VIS 1.5 Appendix A defines an ADA with the same intent; the bit positions
    here are cardlab's own and documented in ``docs/dgi-map.md``.
    """

    DECLINE_IF_ISSUER_AUTH_FAILS = 0x8000  # 2nd GENERATE AC: AAC when issuer authentication failed
    ONLINE_IF_ISSUER_AUTH_FAILED_LAST = 0x4000
    ONLINE_IF_NEW_CARD = 0x2000  # new card: no online transaction yet (last online ATC = 0)
    DECLINE_IF_NEW_CARD_OFFLINE = 0x1000  # new card and unable to go online: AAC
    DECLINE_IF_PIN_TRY_LIMIT_EXCEEDED = 0x0800
    ONLINE_IF_PIN_TRY_LIMIT_EXCEEDED = 0x0400
    ONLINE_IF_SCRIPT_FAILED_LAST = 0x0200
    ONLINE_IF_LAST_ONLINE_NOT_COMPLETED = 0x0100
    ONLINE_IF_OFFLINE_PIN_FAILED = 0x0080  # offline PIN failed in this transaction
    #: 5F2A is neither the application currency (9F42) nor in the conversion table (DGI 0D02)
    ONLINE_IF_OTHER_CURRENCY = 0x0040


# -- Data Object Lists (Book 3 §5.4) -------------------------------------------------


def split_dol(dol: list[tuple[int, int]], data: bytes) -> dict[int, bytes]:
    """Values of the DOL's data elements in ``data`` (whose length was checked)."""
    out: dict[int, bytes] = {}
    i = 0
    for tag, length in dol:
        out.setdefault(tag, data[i : i + length])
        i += length
    return out


def build_dol(dol: list[tuple[int, int]], values: Mapping[int, bytes]) -> bytes:
    """Concatenate values for a DOL; absent elements are zeros; lengths are
    adjusted as Book 3 §5.4 says (numeric: left, others: right).

    >>> build_dol([(0x9F02, 6), (0x9F27, 1), (0x9F10, 2)], {0x9F02: b"\x01", 0x9F10: b"ABC"}).hex()
    '000000000001004142'
    """
    out = bytearray()
    for tag, length in dol:
        v = values.get(tag, b"")
        if tag in NUMERIC_TAGS:
            v = v[-length:] if len(v) >= length else bytes(length - len(v)) + v
        else:
            v = v[:length] if len(v) >= length else v + bytes(length - len(v))
        out += v[:length] if length else b""
    return bytes(out)


def _bcd_int(value: bytes) -> int:
    digits = value.hex()
    return int(digits) if digits.isdigit() else 0


def convert_amount(amount: int, rate: ConversionRate) -> int:
    """``amount`` (minor units of the rate's currency) in minor units of the
    application currency: amount · mantissa / 10^exponent in integers, rounded
    up (card risk management counts a fraction of a minor unit as a whole one).

    >>> convert_amount(1000, ConversionRate(978, 10850, 4))  # 10.00 EUR at 1.0850 → 10.85
    1085
    >>> convert_amount(1, ConversionRate(978, 10850, 4))  # 0.01 EUR → 0.010850 → 0.02
    2
    """
    scale: int = 10**rate.exponent
    return -(-amount * rate.mantissa // scale)


def _counted_amount(app: EmvInstance, tx_currency: bytes | None, amount: int) -> int | None:
    """What the transaction adds to the cumulative offline amount, in minor units
    of the application currency; ``None`` when its currency is not convertible."""
    if tx_currency is None:
        return amount  # the CDOL does not carry the currency: amounts count as local
    digits = tx_currency.hex()
    code = int(digits) if digits.isdigit() else -1
    if code == app.data.risk.currency:
        return amount
    for rate in app.data.currency_conversion:
        if rate.currency == code:
            return convert_amount(amount, rate)
    return None


# -- risk management -----------------------------------------------------------------


@dataclass
class _Checks:
    """What card risk management found for this command (beyond CvrFacts)."""

    online: bool = False  # a reason to go online
    decline: bool = False  # a reason to decline whatever was asked
    reason: int = 0  # CID reason code when declining
    decline_offline: bool = False  # decline when the terminal cannot go online
    amount: int = 0  # 9F02, in the transaction currency
    #: the amount in the application currency (converted by DGI 0D02); None: not convertible
    counted: int | None = 0


def _risk(app: EmvInstance, values: Mapping[int, bytes], facts: CvrFacts) -> _Checks:
    """Card risk management (Book 3 Annex C; VIS 1.5 card risk management)."""
    d, tx, r = app.data, app.tx, app.data.risk
    ada = Ada(int.from_bytes(r.default_action[:2].rjust(2, b"\x00"), "big") & 0xFFC0)
    c = _Checks()
    c.amount = _bcd_int(values.get(0x9F02, b""))
    c.counted = _counted_amount(app, values.get(0x5F2A), c.amount)

    facts.new_card = d.last_online_atc == 0
    facts.last_online_not_completed = d.online_not_completed
    facts.issuer_auth_failed_last = d.issuer_auth_failed
    facts.script_failed_last = d.script_failed
    facts.offline_pin_performed = tx.pin_verified or tx.pin_failed
    facts.offline_pin_failed = tx.pin_failed and not tx.pin_verified
    facts.pin_try_limit_exceeded = tx.pin_try_limit_exceeded or (bool(d.pin_block) and d.pin_try_counter == 0)
    facts.dda_performed = tx.dda_performed
    facts.pin_try_counter = d.pin_try_counter
    country, issuer_country = values.get(0x9F1A), d.data_objects.get(0x5F28)
    if country is not None and issuer_country is not None:
        facts.domestic = country == issuer_country
        facts.international = not facts.domestic
    # velocity checks: at most LCOL / UCOL consecutive offline approvals
    facts.lower_consecutive_exceeded = d.consecutive_offline >= r.lower_consecutive_offline
    facts.upper_consecutive_exceeded = d.consecutive_offline >= r.upper_consecutive_offline
    pending = d.cumulative_offline + (c.counted or 0)
    facts.lower_cumulative_exceeded = pending > r.lower_cumulative_offline
    facts.upper_cumulative_exceeded = pending > r.upper_cumulative_offline

    c.online = (
        facts.lower_consecutive_exceeded
        or facts.upper_consecutive_exceeded
        or facts.lower_cumulative_exceeded
        or facts.upper_cumulative_exceeded
        or (facts.new_card and Ada.ONLINE_IF_NEW_CARD in ada)
        or (facts.last_online_not_completed and Ada.ONLINE_IF_LAST_ONLINE_NOT_COMPLETED in ada)
        or (facts.issuer_auth_failed_last and Ada.ONLINE_IF_ISSUER_AUTH_FAILED_LAST in ada)
        or (facts.script_failed_last and Ada.ONLINE_IF_SCRIPT_FAILED_LAST in ada)
        or (facts.pin_try_limit_exceeded and Ada.ONLINE_IF_PIN_TRY_LIMIT_EXCEEDED in ada)
        or (facts.offline_pin_failed and Ada.ONLINE_IF_OFFLINE_PIN_FAILED in ada)
        or (c.counted is None and Ada.ONLINE_IF_OTHER_CURRENCY in ada)
    )
    c.decline_offline = (
        facts.upper_consecutive_exceeded
        or facts.upper_cumulative_exceeded
        or (facts.new_card and Ada.DECLINE_IF_NEW_CARD_OFFLINE in ada)
    )
    if d.blocked:
        c.decline, c.reason = True, REASON_SERVICE_NOT_ALLOWED
    elif facts.pin_try_limit_exceeded and Ada.DECLINE_IF_PIN_TRY_LIMIT_EXCEEDED in ada:
        c.decline, c.reason = True, REASON_PIN_TRY_LIMIT_EXCEEDED
    return c


def _downgrade(requested: int, allowed: int) -> int:
    """The weaker of two cryptogram types: AAC < ARQC < TC (never upgrade)."""
    rank = {AAC: 0, ARQC: 1, TC: 2}
    return requested if rank[requested] <= rank[allowed] else allowed


# -- the command ----------------------------------------------------------------------


def generate_ac(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """GENERATE AC (Book 3 §6.5.5)."""
    d, tx = app.data, app.tx
    if cmd.p2 != 0x00 or cmd.p1 & 0x2F or cmd.p1 & TYPE_MASK == 0xC0:
        raise StatusError(SW.INCORRECT_P1P2)
    if not d.personalized or not tx.gpo_done or tx.ac_count >= 2:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED)
    second = tx.ac_count == 1
    if second and (tx.first_cid is None or tx.first_cid & TYPE_MASK != ARQC):
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "second GENERATE AC without an ARQC")
    if d.atc > d.risk.max_atc or d.atc == 0:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "ATC exhausted")
    dol_value = record_tag(app.data, 0x8D if second else 0x8C)
    if dol_value is None:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no CDOL")
    dol = parse_dol(dol_value)
    if len(cmd.data) != sum(n for _, n in dol):
        raise StatusError(SW.WRONG_LENGTH)
    values = split_dol(dol, cmd.data)
    requested = cmd.p1 & TYPE_MASK
    if second:
        return _second(app, ctx, cmd, requested, values)
    return _first(app, ctx, cmd, requested, values)


def _cdol1_values(app: EmvInstance) -> dict[int, bytes]:
    dol_value = record_tag(app.data, 0x8C)
    return split_dol(parse_dol(dol_value or b""), app.tx.cdol1_data)


def _first(app: EmvInstance, ctx: Context, cmd: Command, requested: int, values: dict[int, bytes]) -> bytes:
    d, tx = app.data, app.tx
    facts = CvrFacts()
    checks = _risk(app, values, facts)
    cid = requested
    if checks.decline:
        cid = AAC | CID_ADVICE | checks.reason
    elif checks.online:
        cid = _downgrade(requested, ARQC)
    facts.first_ac = cid & TYPE_MASK
    answer = _answer(app, ctx, cmd, values, facts, cid, cmd.data)

    # -- state changes, before the response leaves the card --------------------------
    tx.ac_count = 1
    tx.first_cid = cid
    tx.cdol1_data = cmd.data
    tx.unpredictable_number = values.get(0x9F37, b"")
    tx.amount = checks.amount
    kind = cid & TYPE_MASK
    if kind == TC:
        _count_offline(app, checks)
    elif kind == ARQC:
        tx.arqc = answer.ac
        d.online_not_completed = True
        d.script_failed = False  # the flag describes the last online transaction: this one now
    elif d.blocked and requested == ARQC:
        # a blocked application declines, but the terminal goes online with the
        # AAC and the issuer may answer with scripts (APPLICATION UNBLOCK) whose
        # session keys and MACs use that AAC (VIS 1.5 application blocking)
        tx.arqc = answer.ac
    _log(app, values, cid, answer.ac, answer.iad)
    app.mark_dirty()
    return answer.data


def _second(app: EmvInstance, ctx: Context, cmd: Command, requested: int, values: dict[int, bytes]) -> bytes:
    d, tx = app.data, app.tx
    merged = {**_cdol1_values(app), **values}
    arc = values.get(0x8A, b"")
    unable = arc in UNABLE_ONLINE_ARC
    issuer_data = values.get(0x91)
    if issuer_data and any(issuer_data) and not tx.issuer_auth_performed and tx.arqc is not None:
        # ARPC delivered in the CDOL2 data (method 2: ARPC ‖ CSU ‖ prop, Book 2 §8.2.2)
        from . import issuer

        issuer.authenticate(app, issuer_data)
    facts = CvrFacts()
    checks = _risk(app, merged, facts)
    facts.first_ac = (tx.first_cid or 0) & TYPE_MASK
    facts.issuer_auth_performed = tx.issuer_auth_performed
    facts.issuer_auth_failed = tx.issuer_auth_performed and not tx.issuer_auth_ok
    facts.unable_to_go_online = unable
    facts.script_count = tx.scripts_run
    facts.cda_performed = False
    ada = Ada(int.from_bytes(d.risk.default_action[:2].rjust(2, b"\x00"), "big") & 0xFFC0)
    aip_ia = bool(d.aip[:1] and d.aip[0] & AIP_ISSUER_AUTH)
    auth_failed = not unable and (
        facts.issuer_auth_failed or (d.risk.issuer_auth_required and not tx.issuer_auth_ok)
    )

    allowed = TC
    reason = 0
    if checks.decline:
        allowed, reason = AAC, checks.reason
    elif unable and checks.decline_offline:
        allowed = AAC
    elif auth_failed and (d.risk.issuer_auth_required or Ada.DECLINE_IF_ISSUER_AUTH_FAILS in ada):
        allowed, reason = AAC, REASON_ISSUER_AUTH_FAILED
    kind = _downgrade(AAC if requested == ARQC else requested, allowed)
    cid = kind | (CID_ADVICE | reason if kind == AAC and reason else 0)
    facts.second_ac = kind
    answer = _answer(app, ctx, cmd, merged, facts, cid, tx.cdol1_data + cmd.data)

    # -- state changes, before the response leaves the card --------------------------
    tx.ac_count = 2
    d.online_not_completed = False
    if unable:
        if kind == TC:
            _count_offline(app, checks)
    else:
        if auth_failed:
            d.issuer_auth_failed = True
        trusted = tx.issuer_auth_ok or (not aip_ia and not d.risk.issuer_auth_required)
        if trusted:
            d.last_online_atc = d.atc
            if kind == TC:
                d.consecutive_offline = 0
                d.cumulative_offline = 0
    _log(app, merged, cid, answer.ac, answer.iad)
    app.mark_dirty()
    return answer.data


def _count_offline(app: EmvInstance, checks: _Checks) -> None:
    """An offline approval: velocity counters (VIS 1.5 card risk management)."""
    d = app.data
    d.consecutive_offline = min(d.consecutive_offline + 1, 0xFF)
    if checks.counted is not None:
        d.cumulative_offline = min(d.cumulative_offline + checks.counted, 999_999_999_999)


# -- response --------------------------------------------------------------------------


@dataclass
class _Answer:
    data: bytes
    ac: bytes
    iad: bytes


def _answer(
    app: EmvInstance,
    ctx: Context,
    cmd: Command,
    values: Mapping[int, bytes],
    facts: CvrFacts,
    cid: int,
    cdol_data: bytes,
) -> _Answer:
    """Cryptogram, IAD and the response (Book 3 §6.5.5.4), with CDA (Book 2 §6.6)."""
    d, tx = app.data, app.tx
    kind = cid & TYPE_MASK
    aip = tx.aip or d.aip  # the AIP of this interface's GPO (contactless: DGI 9207)
    cda = bool(cmd.p1 & P1_CDA) and kind != AAC and bool(aip[:1] and aip[0] & AIP_CDA)
    facts.cda_performed = cda
    prof = cvn_profile(app)
    atc = d.atc.to_bytes(2, "big")
    cvr = prof.encode_cvr(facts)
    iad = prof.issuer_application_data(cvr, d.risk.dki, _iad_counters(app))
    un = values.get(0x9F37, tx.unpredictable_number)
    ac = prof.application_cryptogram(d.mk_ac, atc, un, prof.ac_input(dict(values), aip, atc, iad, cvr))
    if cda:
        if d.icc_key is None:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "CDA without an ICC key")
        items = [(0x9F27, bytes([cid])), (0x9F36, atc), (0x9F10, iad)]
        digest = hashlib.sha1(tx.pdol_data + cdol_data + tlv.encode_all(items)).digest()
        number = ctx.card.random(8)
        dynamic = CDA_DYNAMIC_DATA.build({"number": number, "cid": cid, "cryptogram": ac,
                                          "transaction_data_hash": digest})  # Book 2 §6.6.1, Table 19
        sdad = core.sign_dynamic_data(app, dynamic, un)
        body = tlv.encode_all([items[0], items[1], (0x9F4B, sdad), items[2]])
        return _Answer(tlv.encode(0x77, body), ac, iad)
    if d.risk.response_format == 1:
        return _Answer(tlv.encode(0x80, bytes([cid]) + atc + ac + iad), ac, iad)
    body = tlv.encode_all([(0x9F27, bytes([cid])), (0x9F36, atc), (0x9F26, ac), (0x9F10, iad)])
    return _Answer(tlv.encode(0x77, body), ac, iad)


def cvn_profile(app: EmvInstance) -> cvn.CvnProfile:
    """The application's cryptogram version (CVN), or 6985 for one the card does not implement."""
    try:
        return cvn.profile(app.data.risk.cvn)
    except KeyError:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "unsupported cryptogram version") from None


def _iad_counters(app: EmvInstance) -> dict[str, int]:
    """Card counters some IADs carry (M/Chip 4: offline counters)."""
    d = app.data
    return {"consecutive_offline": d.consecutive_offline, "cumulative_offline": d.cumulative_offline}


# -- transaction log (Book 3 Annex D) ----------------------------------------------------


def _log(app: EmvInstance, values: Mapping[int, bytes], cid: int, ac: bytes, iad: bytes) -> None:
    """Append the log entry of this GENERATE AC (cyclic, newest first)."""
    r = app.data.risk
    if not r.log_sfi or not r.log_records or not r.log_format:
        return
    d = app.data
    source: dict[int, bytes] = dict(d.data_objects)
    source.update(values)
    source.update(
        {
            0x9F36: d.atc.to_bytes(2, "big"),
            0x9F27: bytes([cid]),
            0x9F26: ac,
            0x9F10: iad,
            0x82: d.aip,
            0x9F13: d.last_online_atc.to_bytes(2, "big"),
            0x9F17: bytes([d.pin_try_counter]),
        }
    )
    entry = build_dol(parse_dol(r.log_format), source)
    d.log.insert(0, entry)  # core.read_record serves the log SFI from here: newest = record 1
    del d.log[r.log_records :]

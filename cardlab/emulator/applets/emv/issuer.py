"""Issuer authentication and issuer script commands (EMV 4.4 Book 3 §6.5.4,
§6.5.1–§6.5.3, §6.5.10, Book 2 §8 and §9).

* EXTERNAL AUTHENTICATE carries the Issuer Authentication Data (91): ARPC
  method 1 (ARPC 8 ‖ ARC 2) or method 2 (ARPC 4 ‖ CSU 4 ‖ proprietary data),
  as personalized (DF14). The same data may arrive in the CDOL2 data of the
  second GENERATE AC (:mod:`.ac` calls :func:`authenticate`).
* Issuer script commands are valid only after the first GENERATE AC answered
  an ARQC in this transaction (the session keys depend on that ARQC). Each
  carries a MAC (Book 2 §9.2, format 2: the last 8 bytes of the data field)
  computed with the SMI session key over header ‖ ATC ‖ ARQC ‖ data as the
  cryptogram version says; PIN data is enciphered under the SMC session key
  (Book 2 §9.3). A wrong MAC answers 6988 and changes nothing but the
  "script failed" flags (CVR, next transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cardlab.cardspec import emv, tlv

from ...apdu import SW, Command, StatusError
from ...gp import lifecycle
from . import cvn

if TYPE_CHECKING:
    from ...applet import Context
    from .instance import EmvInstance

MAC_LENGTH = 8  # Book 2 §9.2.3: 4..8 bytes; cardlab cryptogram versions use 8
ARQC = 0x80

#: data objects PUT DATA may not change: counters, structure, cryptography
PROTECTED_TAGS = frozenset({0x9F36, 0x9F13, 0x9F17, 0x9F4F, 0x9F4D, 0xDF01, 0xDF02, 0xDF14, 0xDF15, 0xDF16})


# -- issuer authentication ----------------------------------------------------------


def _online(app: EmvInstance) -> bytes:
    """The cryptogram the script session keys use, or 6985: this transaction's
    ARQC, or — for a blocked application, which answers an online request with
    an AAC — that AAC, so that the issuer can still unblock it (ac.py)."""
    tx = app.tx
    if tx.arqc is None or tx.first_cid is None:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no online request in this transaction")
    return tx.arqc


def _arqc(app: EmvInstance) -> bytes:
    """Issuer authentication needs a real ARQC from the first GENERATE AC."""
    arqc = _online(app)
    first = app.tx.first_cid
    if first is None or first & 0xC0 != ARQC:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no ARQC in this transaction")
    return arqc


def _profile(app: EmvInstance) -> cvn.CvnProfile:
    try:
        return cvn.profile(app.data.risk.cvn)
    except KeyError:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "unsupported cryptogram version") from None


def authenticate(app: EmvInstance, issuer_data: bytes) -> bool:
    """Check Issuer Authentication Data (Book 2 §8.2) once per transaction;
    record the outcome (transaction and persistent flag) before returning."""
    d, tx = app.data, app.tx
    arqc = _arqc(app)
    prof = _profile(app)
    un = tx.unpredictable_number
    ok = False
    if d.risk.arpc_method == 1 and len(issuer_data) >= 10:
        # Book 2 §8.2.1: ARPC (8) ‖ ARC (2) (‖ proprietary data, not covered)
        ok = prof.check_arpc(d.mk_ac, d.atc, un, arqc, issuer_data[:8], arc=issuer_data[8:10])
    elif d.risk.arpc_method == 2 and 8 <= len(issuer_data) <= 16:
        # Book 2 §8.2.2: ARPC (4) ‖ CSU (4) ‖ proprietary authentication data (0-8)
        ok = prof.check_arpc(
            d.mk_ac, d.atc, un, arqc, issuer_data[:4], csu=issuer_data[4:8], prop=issuer_data[8:]
        )
    tx.issuer_auth_performed = True
    tx.issuer_auth_ok = ok
    d.issuer_auth_failed = not ok  # cleared only by a later successful issuer authentication
    app.mark_dirty()
    return ok


def external_authenticate(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """EXTERNAL AUTHENTICATE (Book 3 §6.5.4): once, between the first (ARQC)
    and the second GENERATE AC; a wrong ARPC answers 6300."""
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)
    if not 8 <= len(cmd.data) <= 16:
        raise StatusError(SW.WRONG_LENGTH)
    tx = app.tx
    if not app.data.personalized or tx.ac_count != 1 or tx.issuer_auth_performed:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED)
    if not authenticate(app, cmd.data):
        raise StatusError(0x6300, "issuer authentication failed")
    return b""


# -- secure messaging -----------------------------------------------------------------


def _script(app: EmvInstance, cmd: Command) -> bytes:
    """Check the command MAC (Book 2 §9.2); return the data field without it.

    Counts the command (tx.scripts_run; Mastercard derives each command's
    keys from ARQC + its position) and flags failures persistently."""
    d, tx = app.data, app.tx
    if not d.personalized:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED)
    arqc = _online(app)
    if not cmd.cla & 0x0C:
        _failed(app)
        raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "secure messaging required")
    if not MAC_LENGTH <= len(cmd.data) <= 0xFF:
        _failed(app)
        raise StatusError(SW.SM_DATA_OBJECTS_MISSING if len(cmd.data) < MAC_LENGTH else SW.WRONG_LENGTH)
    body, mac = cmd.data[:-MAC_LENGTH], cmd.data[-MAC_LENGTH:]
    header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data)])
    prof = _profile(app)
    position = tx.scripts_run
    tx.scripts_run += 1
    mac_arqc = script_arqc(prof, arqc, position)
    key = prof.script_mac_key(d.mk_smi, d.atc, mac_arqc)
    if not prof.verify_script_mac(key, header, body, d.atc, mac_arqc, mac):
        _failed(app)
        raise StatusError(SW.SM_DATA_OBJECTS_INCORRECT, "script MAC")
    return body


def script_arqc(prof: cvn.CvnProfile, arqc: bytes, position: int) -> bytes:
    """The AC the session keys and MAC of the n-th script command (0-based) use:
    the ARQC for ATC-based keys (Visa); ARQC + n for AC-based keys (M/Chip,
    Book 2 §9.2.3 / pyemv ``MasterCardCVN16``)."""
    if prof.sm_key == "visa":
        return arqc
    return ((int.from_bytes(arqc, "big") + position) % (1 << 64)).to_bytes(8, "big")


def _failed(app: EmvInstance) -> None:
    app.tx.script_failed = True
    app.data.script_failed = True
    app.mark_dirty()


def _run(app: EmvInstance, cmd: Command, action: Callable[[bytes], None]) -> bytes:
    """MAC first, then the action; an error of the action also counts as a
    failed script command (Book 3 §10.10: the CVR reports it)."""
    body = _script(app, cmd)
    try:
        action(body)
    except StatusError:
        _failed(app)
        raise
    app.mark_dirty()
    return b""


def _no_parameters(cmd: Command) -> None:
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)


def _no_data(body: bytes) -> None:
    if body:
        raise StatusError(SW.WRONG_LENGTH)


# -- the commands ---------------------------------------------------------------------


def application_block(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """APPLICATION BLOCK (Book 3 §6.5.1): SELECT then answers 6283 and
    GENERATE AC only AAC."""
    _no_parameters(cmd)

    def act(body: bytes) -> None:
        _no_data(body)
        app.data.blocked = True

    return _run(app, cmd, act)


def application_unblock(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """APPLICATION UNBLOCK (Book 3 §6.5.2)."""
    _no_parameters(cmd)

    def act(body: bytes) -> None:
        _no_data(body)
        app.data.blocked = False

    return _run(app, cmd, act)


def card_block(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """CARD BLOCK (Book 3 §6.5.3): the card moves to CARD_LOCKED (GP §5.1.1),
    where only the ISD can be selected; 6985 if the GP life cycle does not
    allow it (a card not yet SECURED)."""
    _no_parameters(cmd)

    def act(body: bytes) -> None:
        _no_data(body)
        state = ctx.card.state
        new = lifecycle.card_transition(state.lifecycle, lifecycle.CardLife.CARD_LOCKED)
        state.lifecycle = int(new)
        isd = state.instance(state.isd_aid)
        if isd is not None:
            isd.lifecycle = int(new)  # the ISD's entry mirrors the card (GP §5.1), as SET STATUS does
        ctx.card.mark_dirty()

    return _run(app, cmd, act)


def pin_change_unblock(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """PIN CHANGE/UNBLOCK (Book 3 §6.5.10): P2 00 resets the PIN try counter;
    P2 01 (with the current PIN) and 02 (without) also set a new PIN from the
    enciphered PIN data, which resets the counter too."""
    if cmd.p1 or cmd.p2 not in (0x00, 0x01, 0x02):
        raise StatusError(SW.INCORRECT_P1P2)
    d = app.data

    def act(body: bytes) -> None:
        if not d.pin_block:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no offline PIN")
        if cmd.p2 == 0x00:
            _no_data(body)
        else:
            if not body:
                raise StatusError(SW.WRONG_LENGTH)
            prof = _profile(app)
            arqc = script_arqc(prof, _online(app), app.tx.scripts_run - 1)
            key = prof.script_enc_key(d.mk_smc, d.atc, arqc)
            try:
                current = emv.parse_plaintext_pin_block(d.pin_block) if cmd.p2 == 0x01 else None
                pin = prof.decipher_pin_data(key, body, mk_ac=d.mk_ac, current_pin=current)
                block = emv.plaintext_pin_block(pin)
            except ValueError:
                raise StatusError(SW.WRONG_DATA, "PIN data") from None  # no PIN in messages
            d.pin_block = block
        d.pin_try_counter = d.pin_try_limit

    return _run(app, cmd, act)


def put_data(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """PUT DATA (Book 3 §6.5.x, issuer script): P1P2 = tag; the value replaces
    the data object (GET DATA answers it) and, for card risk management
    parameters, the parameter itself (9F14, 9F23, DF11, DF12, 9F52, DF13)."""
    tag = (cmd.p1 << 8) | cmd.p2 if cmd.p1 else cmd.p2
    d = app.data

    def act(value: bytes) -> None:
        if tag in PROTECTED_TAGS or tag == 0:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "data object cannot be changed")
        r = d.risk
        if tag in (0x9F14, 0x9F23, 0xDF13):
            if len(value) != 1:
                raise StatusError(SW.WRONG_DATA)
            if tag == 0x9F14:
                r.lower_consecutive_offline = value[0]
            elif tag == 0x9F23:
                r.upper_consecutive_offline = value[0]
            else:
                if value[0] not in (0, 1):
                    raise StatusError(SW.WRONG_DATA)
                r.issuer_auth_required = bool(value[0])
        elif tag in (0xDF11, 0xDF12):
            if len(value) != 6 or not value.hex().isdigit():
                raise StatusError(SW.WRONG_DATA)
            if tag == 0xDF11:
                r.lower_cumulative_offline = int(value.hex())
            else:
                r.upper_cumulative_offline = int(value.hex())
        elif tag == 0x9F52:
            if len(value) != 2:
                raise StatusError(SW.WRONG_DATA)
            r.default_action = value
        d.data_objects[tag] = value

    return _run(app, cmd, act)


def update_record(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """UPDATE RECORD (ISO 7816-4 §11.3.5, issuer script): P1 record, P2 =
    SFI << 3 | 100; replaces an existing record with a 70 template."""
    if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0 or not 1 <= cmd.p2 >> 3 <= 30:
        raise StatusError(SW.INCORRECT_P1P2)
    key = (cmd.p2 >> 3, cmd.p1)
    d = app.data

    def act(record: bytes) -> None:
        if d.risk.log_sfi and key[0] == d.risk.log_sfi:
            raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_EF, "the log is written by the card")
        if key not in d.records:
            raise StatusError(SW.RECORD_NOT_FOUND)
        try:
            items = tlv.parse(record)
        except tlv.TlvError:
            raise StatusError(SW.WRONG_DATA, "not a record template") from None
        if len(items) != 1 or items[0].tag != 0x70 or items[0].encode() != record:
            raise StatusError(SW.WRONG_DATA, "not a record template")
        d.records[key] = record
        d.tag_cache.clear()

    return _run(app, cmd, act)

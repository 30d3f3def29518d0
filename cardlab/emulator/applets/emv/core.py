"""EMV application: SELECT, GET PROCESSING OPTIONS, READ RECORD, GET DATA,
GET CHALLENGE, VERIFY and INTERNAL AUTHENTICATE (EMV 4.4 Book 3 §6.5,
Book 2 §6.5 and §7.2), plus helpers shared with GENERATE AC (CDA).

Counters that protect value (ATC, PIN try counter) change in the
application's data and the instance is marked dirty before the response is
built, so the image the card saves never gives a second try
(ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from cardlab.cardspec import tlv
from cardlab.cardspec.signed_data import HASH_SHA1, SIGNED_DYNAMIC_DATA, build_with_hash

from ...apdu import SW, Command, StatusError
from ...applet import Context
from .perso import dol_length, valid_pin_block
from .state import RsaCrtKey

if TYPE_CHECKING:
    from .instance import EmvInstance

BLOCKED_SW = 0x6283  # SELECT of a blocked application (EMV Book 1 §12.3.3, Book 3 §6.5.11.4)
ICC_DYNAMIC_NUMBER_LENGTH = 8


def require_personalized(app: EmvInstance) -> None:
    """Transaction commands before the last personalization block: 6985."""
    if not app.data.personalized:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "not personalized")


def fci_proprietary(app: EmvInstance, *, contactless: bool = False) -> bytes:
    """The value of A5 (DGI 9102, or 9103 for the contactless interface when present)."""
    if contactless and app.data.fci_proprietary_contactless:
        return app.data.fci_proprietary_contactless
    return app.data.fci_proprietary


def pdol(app: EmvInstance, *, contactless: bool = False) -> bytes:
    """The PDOL (9F38) of the FCI proprietary template of the interface, empty without one."""
    fci = fci_proprietary(app, contactless=contactless)
    found = tlv.find(fci, 0x9F38) if fci else None
    return found.value if found is not None else b""


def on_contactless(ctx: Context) -> bool:
    """Whether the command came over the contactless interface (the card's session says)."""
    return ctx.card.interface == "contactless"


# -- SELECT ------------------------------------------------------------------------


def select(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """FCI 6F {84 DF name, A5 {DGI 9102}} (EMV Book 1 §11.3.4, Book 3 §6.5.11).

    P2 b3b4 = 00 returns the FCI, 0C nothing (ISO 7816-4); FCP/FMD are not
    offered (6A86). SELECT works before personalization (the A5 template is
    then empty); the transaction commands refuse. A blocked application
    answers its FCI with 6283.

    On the contactless interface the A5 is DGI 9103's (the contactless PDOL); a
    personalized application without a contactless section is not there (6A82).
    """
    answer = cmd.p2 & 0x0C
    if answer not in (0x00, 0x0C):
        raise StatusError(SW.INCORRECT_P1P2, "only FCI or no response data")
    contactless = on_contactless(ctx)
    if contactless and app.data.personalized and not app.data.kernel:
        raise StatusError(SW.FILE_NOT_FOUND, "no contactless interface")
    if app.data.blocked:
        ctx.notes["sw"] = BLOCKED_SW
    if answer == 0x0C:
        return b""
    return tlv.encode(0x6F, tlv.encode(0x84, app.aid) + tlv.encode(0xA5, fci_proprietary(app, contactless=contactless)))


# -- GET PROCESSING OPTIONS ---------------------------------------------------------


def get_processing_options(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """GPO on the contact interface (EMV Book 3 §6.5.8): answer 80 {AIP ‖ AFL} or
    77 {82, 94} (DGI 9104). The contactless GPO is :func:`.qvsdc.get_processing_options`."""
    pdol_data = gpo_data(app, ctx, cmd)
    data = app.data
    start_transaction(app, pdol_data, data.aip)
    if data.risk.response_format == 1:
        return tlv.encode(0x80, data.aip + data.afl)
    return tlv.encode(0x77, tlv.encode(0x82, data.aip) + tlv.encode(0x94, data.afl))


def gpo_data(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """The checks of a GPO command (EMV Book 3 §6.5.8) on either interface: its PDOL data,
    the value of 83, with exactly the length the interface's PDOL asks for (else 6700)."""
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)
    require_personalized(app)
    # a blocked application still transacts, but GENERATE AC answers only AAC
    # (ac.py), so that an issuer script can unblock it (EMV Book 3 §6.5.8, VIS)
    if app.tx.gpo_done:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "GPO already done in this transaction")
    try:
        items = tlv.parse(cmd.data)
    except tlv.TlvError as exc:
        raise StatusError(SW.WRONG_LENGTH, "GPO data is not a 83 template") from exc
    if len(items) != 1 or items[0].tag != 0x83 or items[0].encode() != cmd.data:
        raise StatusError(SW.WRONG_LENGTH, "GPO data is not a 83 template")
    pdol_data = items[0].value
    if len(pdol_data) != dol_length(pdol(app, contactless=on_contactless(ctx))):  # checked at perso
        raise StatusError(SW.WRONG_LENGTH, "PDOL data length")
    return pdol_data


def start_transaction(app: EmvInstance, pdol_data: bytes, aip: bytes) -> None:
    """The ATC goes up, once per transaction and never wrapping (Book 3 §7.1): one ATC
    for both interfaces (issue 16); 6985 at the maximum ATC."""
    data = app.data
    if data.atc >= data.risk.max_atc:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "ATC at its maximum")
    data.atc += 1
    app.mark_dirty()
    app.tx.gpo_done = True
    app.tx.pdol_data = pdol_data
    app.tx.aip = aip


# -- READ RECORD -------------------------------------------------------------------


def read_record(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """READ RECORD (EMV Book 3 §6.5.11; Book 1 §11.2): P2 = SFI << 3 | 4.

    The transaction log SFI (9F4D) answers the log entries, newest first
    (Book 3 Annex D), as :mod:`.ac` stores them; other SFIs answer the
    personalized 70 templates. Unknown SFI 6A82, missing record 6A83.
    """
    if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
        raise StatusError(SW.INCORRECT_P1P2)
    sfi = cmd.p2 >> 3
    if not 1 <= sfi <= 30:
        raise StatusError(SW.INCORRECT_P1P2)
    require_personalized(app)
    data = app.data
    if data.risk.log_sfi and sfi == data.risk.log_sfi:
        if cmd.p1 > len(data.log):
            raise StatusError(SW.RECORD_NOT_FOUND)
        return data.log[cmd.p1 - 1]
    record = data.records.get((sfi, cmd.p1))
    if record is None:
        if not any(s == sfi for s, _ in data.records):
            raise StatusError(SW.FILE_NOT_FOUND, "no such SFI")
        raise StatusError(SW.RECORD_NOT_FOUND)
    return record


# -- GET DATA ----------------------------------------------------------------------


def get_data(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """GET DATA (EMV Book 3 §6.5.7): P1P2 = tag; answers the TLV."""
    require_personalized(app)
    tag = (cmd.p1 << 8) | cmd.p2 if cmd.p1 else cmd.p2
    data = app.data
    if tag == 0x9F36:
        value = data.atc.to_bytes(2, "big")
    elif tag == 0x9F13:
        value = data.last_online_atc.to_bytes(2, "big")
    elif tag == 0x9F17:
        value = bytes([data.pin_try_counter])
    elif tag == 0x9F4F and data.risk.log_format:
        value = data.risk.log_format
    elif tag in data.data_objects:
        value = data.data_objects[tag]
    else:
        raise StatusError(SW.REFERENCED_DATA_NOT_FOUND)
    return tlv.encode(tag, value)


# -- GET CHALLENGE -----------------------------------------------------------------


def get_challenge(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """GET CHALLENGE (EMV Book 3 §6.5.6): 8 unpredictable bytes, kept for one
    enciphered PIN VERIFY."""
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)
    if cmd.data:
        raise StatusError(SW.WRONG_LENGTH)
    require_personalized(app)
    challenge = ctx.card.random(8)
    app.tx.challenge = challenge
    return challenge


# -- VERIFY ------------------------------------------------------------------------


def verify(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """VERIFY (EMV Book 3 §6.5.12): P2 80 plaintext PIN block, P2 88
    enciphered PIN (Book 2 §7.2), no data: the number of tries left (63Cx).

    The try counter is decremented and saved before the comparison and
    restored to the limit only after a match, so a power cut never yields a
    free try.
    """
    if cmd.p1 != 0x00 or cmd.p2 not in (0x80, 0x88):
        raise StatusError(SW.INCORRECT_P1P2)
    require_personalized(app)
    data, tx = app.data, app.tx
    if not data.pin_block:
        raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no offline PIN")
    if not cmd.data:
        if data.pin_try_counter == 0:
            raise StatusError(SW.AUTH_METHOD_BLOCKED)
        if tx.pin_verified:
            return b""
        raise StatusError(SW.VERIFY_FAILED | data.pin_try_counter)
    if cmd.p2 == 0x80:
        if not valid_pin_block(cmd.data):
            raise StatusError(SW.WRONG_DATA, "not a format 2 PIN block")
        if data.pin_try_counter == 0:
            tx.pin_try_limit_exceeded = True
            raise StatusError(SW.AUTH_METHOD_BLOCKED)
        block: bytes | None = cmd.data
    else:
        key = data.pin_key or data.icc_key
        if key is None:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no PIN encipherment key")
        if len(cmd.data) != key.size:
            raise StatusError(SW.WRONG_LENGTH)
        if data.pin_try_counter == 0:
            tx.pin_try_limit_exceeded = True
            raise StatusError(SW.AUTH_METHOD_BLOCKED)
        block = _decipher_pin(key, cmd.data, tx.challenge)
        tx.challenge = None  # one challenge serves one VERIFY
    data.pin_try_counter -= 1
    app.mark_dirty()
    if block is not None and _same(block, data.pin_block):
        data.pin_try_counter = data.pin_try_limit
        tx.pin_verified = True
        tx.pin_failed = False
        return b""
    tx.pin_verified = False
    tx.pin_failed = True
    if data.pin_try_counter == 0:
        tx.pin_try_limit_exceeded = True
    raise StatusError(SW.VERIFY_FAILED | data.pin_try_counter)


def _decipher_pin(key: RsaCrtKey, enciphered: bytes, challenge: bytes | None) -> bytes | None:
    """Recover 7F ‖ PIN block (8) ‖ ICC challenge (8) ‖ random pad (EMV Book 2
    §7.2); None when anything is wrong (counted as a wrong PIN)."""
    m = int.from_bytes(enciphered, "big")
    if challenge is None or m >= key.modulus:
        return None
    plain = key.private(m).to_bytes(key.size, "big")
    if plain[0] != 0x7F or not _same(plain[9:17], challenge) or not valid_pin_block(plain[1:9]):
        return None
    return plain[1:9]


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


# -- INTERNAL AUTHENTICATE and signed dynamic data --------------------------------------


def icc_dynamic_number(ctx: Context) -> bytes:
    """ICC Dynamic Number (9F4C) for DDA and CDA: 8 bytes from the card's
    random source (EMV Book 2 §6.5.1 allows 2..8 bytes, time-variant)."""
    return ctx.card.random(ICC_DYNAMIC_NUMBER_LENGTH)


def sign_dynamic_data(app: EmvInstance, icc_dynamic_data: bytes, terminal_data: bytes) -> bytes:
    """Signed Dynamic Application Data (EMV Book 2 §6.5.1 table 17, §6.6.1):

    ``6A ‖ 05 ‖ 01 ‖ L_DD ‖ ICC dynamic data ‖ BB… ‖ SHA-1(05 ‖ 01 ‖ L_DD ‖
    ICC dynamic data ‖ BB… ‖ terminal data) ‖ BC``, signed (RSA private
    operation) with the ICC private key; N_IC bytes.

    ``icc_dynamic_data`` is the whole ICC Dynamic Data field: for DDA
    ``len(IDN) ‖ IDN``; for CDA ``len(IDN) ‖ IDN ‖ CID ‖ AC ‖ transaction
    data hash`` (table 19). ``terminal_data`` is the DDOL data for DDA, the
    unpredictable number (9F37) for CDA. 6985 without an ICC key.
    """
    key = app.data.icc_key
    if key is None:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no ICC private key")
    n = key.size
    ldd = len(icc_dynamic_data)
    if ldd > n - 25:
        raise StatusError(SW.UNKNOWN, "ICC dynamic data too long for the key")
    block = build_with_hash(
        SIGNED_DYNAMIC_DATA, {"hash_algorithm": HASH_SHA1, "dynamic_data": icc_dynamic_data}, terminal_data, n_ic=n
    )
    message = int.from_bytes(block, "big")
    if message >= key.modulus:
        raise StatusError(SW.UNKNOWN, "message representative out of range")
    return key.private(message).to_bytes(n, "big")


def internal_authenticate(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """INTERNAL AUTHENTICATE for DDA (EMV Book 3 §6.5.9, Book 2 §6.5.1): data =
    DDOL-related data; ICC dynamic data = L ‖ ICC Dynamic Number (8 random bytes).
    Answer 80 {SDAD} (format 1) or 77 {9F4B SDAD} (format 2)."""
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)
    if not cmd.data:
        raise StatusError(SW.WRONG_LENGTH)
    require_personalized(app)
    if app.data.icc_key is None:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no ICC private key")
    number = icc_dynamic_number(ctx)
    sdad = sign_dynamic_data(app, bytes([len(number)]) + number, cmd.data)
    app.tx.dda_performed = True
    if app.data.risk.response_format == 1:
        return tlv.encode(0x80, sdad)
    return tlv.encode(0x77, tlv.encode(0x9F4B, sdad))

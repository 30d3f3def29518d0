"""APDU fuzzing of the emulated card, with figures.

Cards: a blank card and a "full" card (loyalty instance personalized and not,
two personalized EMV instances (CDA; SDA with transaction log), one installed
but unpersonalized EMV instance, PSE and PPSE, the ISO file system), each in
every card life-cycle state (GP §5.1.1), and the full card with its EMV
application LOCKED.  Each sequence starts from a copy of one of them and sends:

* random bytes and random headers with random bodies (short and extended),
* valid commands of every application, unchanged or mutated (byte, bit,
  truncation, extension, Lc/Le changes, CLA channel bits),
* EMV transaction bursts (PPSE/PSE, SELECT, GPO, READ RECORD, GET DATA,
  VERIFY with the right and wrong PIN, INTERNAL AUTHENTICATE, GENERATE AC,
  EXTERNAL AUTHENTICATE, issuer script commands), commands mutated at random,
* SCP03 sessions opened with :class:`cardlab.cardspec.scp03.HostSession` at a random
  security level, carrying mutated GP commands wrapped by the host (and
  sometimes changed after wrapping),
* power cycles, and image save/load round trips (the card continues on the
  reloaded image).

Figures (each must be 0 except the count and rate): uncaught exceptions (an
exception the card turned into 6F00 is counted: the card's logger is hooked
and every 6F00 answer counts), replies without a valid status word, state
invariants violated:

* the ATC of every EMV instance never decreases;
* its PIN try counter stays within 0..limit and increases only on a 9000
  answer to VERIFY / PIN CHANGE/UNBLOCK / STORE DATA / PUT DATA;
* the SCP03 sequence counter never decreases;
* the card life cycle changes only along GP's transition table, an
  application's only along :func:`cardlab.emulator.gp.lifecycle.app_transition`;
* saving and loading the image gives back an equal image;
* a 9000 answer to a host-wrapped command carries a valid R-MAC.

``python -m robustness.fuzz_apdus [--count N] [--seed S] [--quick]``; exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from robustness.common import figures  # sets sys.path for the test kits

from cardlab.cardspec.scp03 import HostSession, ScpError, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator import image as card_image
from cardlab.emulator.gp.lifecycle import CARD_TRANSITIONS, CardLife, app_transition
from cardlab.emulator.state import CardState

GP_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
GP_KEYS = StaticKeys(GP_KEY, GP_KEY, GP_KEY, 0x30)
ISD = bytes.fromhex("A000000151000000")
LOYALTY_LF = bytes.fromhex("A0000006474C59")
LOYALTY_MOD = bytes.fromhex("A0000006474C5901")
LOYALTY_1 = bytes.fromhex("A0000006474C590101")
LOYALTY_2 = bytes.fromhex("A0000006474C590102")
EMV_CDA = bytes.fromhex("F0000000011010")
EMV_SDA = bytes.fromhex("F0000000012020")
EMV_BLANK = bytes.fromhex("F0000000013030")
PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
LEVELS = (0x01, 0x03, 0x11, 0x13, 0x33)
#: INS whose 9000 answer may raise a PIN try counter (correct PIN, PIN change/unblock, perso, PUT DATA)
#: answers after which the card has no session any more (or never had one)
_SESSION_ENDERS = frozenset(bytes.fromhex(x) for x in ("6982", "6882", "6E00", "6881", "6700", "6A86"))
PIN_RAISERS = frozenset({0x20, 0x24, 0x2C, 0xE2, 0xDA, 0xDC})


def _lv(b: bytes) -> bytes:
    return bytes((len(b),)) + b


def _case3(header: str, data: bytes, le: bool = True) -> bytes:
    return bytes.fromhex(header) + _lv(data) + (b"\x00" if le else b"")


def _select(aid: bytes) -> bytes:
    return _case3("00A40400", aid)


# -- the cards -------------------------------------------------------------------------


def _gp_session(card: Card, level: int = 0x33) -> HostSession:
    card.transmit(_select(ISD))
    hs = HostSession(card.transmit, GP_KEYS)
    hs.open(level)
    return hs


def _ok(resp: bytes, what: str) -> None:
    if resp[-2:] != b"\x90\x00":
        raise RuntimeError(f"building the fuzz cards: {what}: SW {resp[-2:].hex()}")


def build_full_card() -> Card:
    """Loyalty (personalized + not), EMV CDA + SDA personalized, EMV unpersonalized, PSE/PPSE."""
    import cardmaker  # type: ignore[import-not-found]
    from cardlab.cardspec import tlv

    p1 = cardmaker.Profile()
    p2 = cardmaker.Profile(pan="4761739001010119", oda="SDA", aid=EMV_SDA, log=True, pin="98765",
                           issuer_auth_required=True, label="CARDLAB SDA", priority=2, pdol=b"")
    card = Card.create()
    for p in (p1, p2):
        cardmaker.personalize(card, cardmaker.build(p))
    hs = _gp_session(card)
    params = _lv(tlv.encode(0xC9, bytes.fromhex("00002710")))
    for aid in (LOYALTY_1, LOYALTY_2):
        _ok(hs.send(_case3("80E60C00", _lv(LOYALTY_LF) + _lv(LOYALTY_MOD) + _lv(aid) + _lv(b"\x00") + params + b"\x00")),
            "INSTALL loyalty")
    _ok(hs.send(_case3("80E62000", b"\x00\x00" + _lv(LOYALTY_1) + b"\x00\x00\x00")), "INSTALL perso")
    perso = tlv.encode_dgi(0x0101, b"MEMBER-0001") + tlv.encode_dgi(0x0102, (500).to_bytes(4, "big"))
    _ok(hs.send(_case3("80E28800", perso, le=False)), "STORE DATA loyalty")
    emv = cardmaker.emv_classes()["emv"]
    install = _lv(emv.LOAD_FILE_AID) + _lv(emv.MODULE_AID) + _lv(EMV_BLANK) + _lv(b"\x00") + _lv(bytes.fromhex("C900")) + b"\x00"
    _ok(hs.send(_case3("80E60C00", install)), "INSTALL blank EMV")
    card.power_on()
    return card


@dataclass
class Scenario:
    name: str
    image: str  # the card image (JSON text)


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    blank = Card.create()
    full = build_full_card()
    full.sync_state()
    for base_name, base in (("blank", blank), ("full", full)):
        text = card_image.dumps(base.state)
        for life in CardLife:
            state = card_image.loads(text)
            state.lifecycle = life
            out.append(Scenario(f"{base_name}/{life.name}", card_image.dumps(state)))
    state = card_image.loads(card_image.dumps(full.state))
    rec = state.instance(EMV_CDA)
    assert rec is not None
    rec.lifecycle |= 0x80
    out.append(Scenario("full/OP_READY/EMV LOCKED", card_image.dumps(state)))
    return out


# -- command material ----------------------------------------------------------------------

CDOL1_DATA = bytes.fromhex("000000001000" "000000000000" "0250" "0000000000" "0978" "260115" "00" "11223344")


def _verify(pin: str) -> bytes:
    block = bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))
    return _case3("00200080", block, le=False)


PLAIN: list[bytes] = [
    # selection and ISO 7816-4 file system
    _select(ISD), _select(LOYALTY_1), _select(LOYALTY_2), _select(EMV_CDA), _select(EMV_SDA), _select(EMV_BLANK),
    _select(PSE), _select(PPSE), _select(b"\xf0CARDLAB.DEMO"), _select(bytes.fromhex("F00000000110")),
    bytes.fromhex("00A4040200"), bytes.fromhex("00A40400"),
    bytes.fromhex("00A40000023F00"), bytes.fromhex("00A4000C022F00"), bytes.fromhex("00A40004023F0000"),
    bytes.fromhex("00A40800043F002F0000"), bytes.fromhex("00A4020C022F01"),
    bytes.fromhex("00B0000000"), bytes.fromhex("00B0800000"), bytes.fromhex("00B2010400"), bytes.fromhex("00B2010C00"),
    bytes.fromhex("00D6000004DEADBEEF"), bytes.fromhex("00DC010404CAFEBABE"), bytes.fromhex("00E2000004A1A2A3A4"),
    bytes.fromhex("00E000000F620D8202010183021234800200208A0105"), bytes.fromhex("00E40000021234"),
    bytes.fromhex("0020000104313233343536FFFF"), bytes.fromhex("00200001"), bytes.fromhex("0024000108313233343132333400"),
    bytes.fromhex("002C0001"),
    # manage channel
    bytes.fromhex("0070000001"), bytes.fromhex("0070000100"), bytes.fromhex("00708001"), bytes.fromhex("00708000"),
    bytes.fromhex("01A4040008A000000151000000"), bytes.fromhex("41B2010C00"),
    # GP
    bytes.fromhex("80CA9F7F00"), bytes.fromhex("80CA006600"), bytes.fromhex("80CA00E000"), bytes.fromhex("80CA00CF00"),
    bytes.fromhex("80CA004200"), bytes.fromhex("80CA004500"), bytes.fromhex("00CA00C100"),
    bytes.fromhex("80F28002024F0000"), bytes.fromhex("80F24002024F0000"), bytes.fromhex("80F21002024F0000"),
    bytes.fromhex("80F24003024F0000"), bytes.fromhex("8050000008111111111111111100"),
    bytes.fromhex("8050300008111111111111111100"),
    bytes.fromhex("80E60C00"), bytes.fromhex("80E2800003010203"), bytes.fromhex("80D8000000"), bytes.fromhex("80F0800700"),
    bytes.fromhex("80F0800F00"), bytes.fromhex("80F0807F00"), bytes.fromhex("80F080FF00"),
    _case3("80F04080", LOYALTY_1, le=False), _case3("80F04000", LOYALTY_1, le=False),
    _case3("80E40000", b"\x4f" + _lv(LOYALTY_2)), _case3("80E40080", b"\x4f" + _lv(LOYALTY_LF)),
    # loyalty
    bytes.fromhex("8030000004000000FA00"), bytes.fromhex("80320000040000006400"), bytes.fromhex("8034000000"),
    bytes.fromhex("8032000004FFFFFFFF00"),
    # EMV
    bytes.fromhex("80A8000004830202500000"), bytes.fromhex("80A80000028300" "00"),
    _case3("80AE8000", CDOL1_DATA), _case3("80AE4000", CDOL1_DATA), _case3("80AE9000", CDOL1_DATA),
    _case3("80AE0000", CDOL1_DATA), _case3("80AE4000", bytes.fromhex("3030") + CDOL1_DATA),
    bytes.fromhex("80CA9F3600"), bytes.fromhex("80CA9F1700"), bytes.fromhex("80CA9F1300"), bytes.fromhex("80CA9F4F00"),
    bytes.fromhex("0084000000"), bytes.fromhex("008800000411223344" "00"), _verify("1234"), _verify("98765"),
    _verify("0000"), bytes.fromhex("0082000010" "00112233445566778899AABBCCDDEEFF"),
    bytes.fromhex("841E000008" "0011223344556677"), bytes.fromhex("8418000008" "0011223344556677"),
    bytes.fromhex("8416000008" "0011223344556677"), bytes.fromhex("8424000008" "0011223344556677"),
    bytes.fromhex("04DA9F580D" "01" "0011223344556677" "00000000"), bytes.fromhex("04DC0C1C0C" "7001AA" "0011223344556677"),
    bytes.fromhex("00B2015C00"), bytes.fromhex("00B2011400"), bytes.fromhex("00B2021400"), bytes.fromhex("00B2011C00"),
]

#: GP commands for inside a secure channel
SECURED: list[bytes] = [
    bytes.fromhex("80F28002024F0000"), bytes.fromhex("80F24002024F0000"), bytes.fromhex("80F21002024F0000"),
    bytes.fromhex("80CA006600"), bytes.fromhex("80CA00E000"),
    bytes.fromhex("80F0800700"), bytes.fromhex("80F0800F00"), bytes.fromhex("80F0807F00"), bytes.fromhex("80F0800F00"),
    _case3("80F04080", LOYALTY_1, le=False), _case3("80F04000", LOYALTY_1, le=False),
    _case3("80F0400F", LOYALTY_2, le=False), _case3("80F04007", EMV_BLANK, le=False),
    _case3("80E40000", b"\x4f" + _lv(LOYALTY_2)), _case3("80E40000", b"\x4f" + _lv(EMV_BLANK)),
    _case3("80E60C00", _lv(LOYALTY_LF) + _lv(LOYALTY_MOD) + _lv(bytes.fromhex("A0000006474C590103")) + _lv(b"\x00")
           + _lv(bytes.fromhex("C90400001000")) + b"\x00"),
    _case3("80E62000", b"\x00\x00" + _lv(LOYALTY_2) + b"\x00\x00\x00"),
    _case3("80E62000", b"\x00\x00" + _lv(EMV_BLANK) + b"\x00\x00\x00"),
    _case3("80E28800", bytes.fromhex("01010548454C4C4F01020400000064"), le=False),
    _case3("80E20800", bytes.fromhex("9010020303"), le=False),
    _case3("80E28000", bytes.fromhex("4203999999"), le=False),
    _case3("80D83181", bytes.fromhex("31") + bytes.fromhex("8810") + bytes(16) + bytes.fromhex("03112233")),
    bytes.fromhex("80CA00CF00"), bytes.fromhex("80CA9F7F00"),
]

#: an EMV transaction, for the burst generator (the AID slot is filled per burst)
def emv_flow(rng: random.Random) -> list[bytes]:
    aid = rng.choice((EMV_CDA, EMV_SDA, EMV_BLANK))
    pin = "1234" if aid == EMV_CDA else "98765"
    flow = [_select(rng.choice((PPSE, PSE))), bytes.fromhex("00B2010C00"), _select(aid),
            bytes.fromhex("80A8000004830202500000") if aid != EMV_SDA else bytes.fromhex("80A80000028300" "00"),
            bytes.fromhex("00B2010C00"), bytes.fromhex("00B2011400"), bytes.fromhex("00B2021400"),
            bytes.fromhex("00B2011C00"), bytes.fromhex("00B2021C00"), bytes.fromhex("80CA9F1700"),
            bytes.fromhex("80CA9F3600")]
    if rng.random() < 0.5:
        flow.append(_verify(pin if rng.random() < 0.6 else "4321"))
    if rng.random() < 0.5:
        flow.append(bytes.fromhex("008800000411223344" "00"))
    first = rng.choice(("80AE8000", "80AE4000", "80AE0000", "80AE9000"))
    flow.append(_case3(first, CDOL1_DATA))
    if rng.random() < 0.5:
        flow.append(bytes.fromhex("0082000010") + rng.randbytes(16))
    if rng.random() < 0.6:
        flow.append(_case3(rng.choice(("80AE4000", "80AE0000")), bytes.fromhex("3030") + rng.randbytes(8) + CDOL1_DATA))
    if rng.random() < 0.3:
        flow.append(bytes.fromhex(rng.choice(("841E", "8418", "8416", "8424", "04DA", "04DC")) + "0000")
                    + _lv(rng.randbytes(rng.choice((8, 12, 16)))))
    if rng.random() < 0.2:
        flow.append(bytes.fromhex("00B2015C00"))
    return flow


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """One to three mutations of a command."""
    b = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2 and b:
            del b[rng.randrange(len(b)):]
        elif op == 3:
            b += rng.randbytes(rng.randint(1, 8))
        elif op == 4 and len(b) > 4:
            b[4] = rng.choice((0, 1, 0xFF, len(b) - 5, len(b) - 4, len(b) - 6, rng.randrange(256))) & 0xFF
        elif op == 5 and len(b) > 5:
            del b[-1]
        elif op == 6 and b:
            b[0] = rng.choice((0x00, 0x01, 0x03, 0x04, 0x0C, 0x40, 0x4F, 0x60, 0x80, 0x84, 0x8C, 0xC0, 0xE0, 0xFF))
        elif op == 7 and len(b) >= 4:
            b[2 + rng.randrange(2)] = rng.randrange(256)
        elif op == 8 and len(b) >= 4:
            body = b[5:] if len(b) > 5 else b""
            b = b[:4] + b"\x00" + len(body).to_bytes(2, "big") + body + rng.choice((b"", b"\x00\x00", b"\x01\x00"))
    return bytes(b)


def random_apdu(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return rng.randbytes(rng.choice((0, 1, 2, 3, 4, 5, 6, rng.randint(0, 40), rng.randint(0, 300))))
    cla = rng.choice((0x00, 0x01, 0x04, 0x0C, 0x41, 0x60, 0x80, 0x84, 0x8C, 0xC0, 0xE4, rng.randrange(256)))
    ins = rng.randrange(256)
    data = rng.randbytes(rng.choice((0, 0, 1, 4, 8, 16, rng.randint(0, 300))))
    le = rng.choice((b"", b"\x00", bytes((rng.randrange(256),))))
    head = bytes((cla, ins, rng.randrange(256), rng.randrange(256)))
    if data and len(data) < 256 and rng.random() < 0.8:
        return head + _lv(data) + le
    if data:
        return head + b"\x00" + len(data).to_bytes(2, "big") + data + (b"\x00\x00" if le else b"")
    return head + (b"\x00" + le * 2 if le and rng.random() < 0.2 else le)


# -- the measurement --------------------------------------------------------------------------


@dataclass
class Result:
    apdus: int = 0
    seconds: float = 0.0
    sequences: int = 0
    sessions_opened: int = 0
    secured_sent: int = 0
    reloads: int = 0
    uncaught: int = 0
    bad_sw: int = 0
    violations: int = 0
    ok_answers: int = 0
    outcomes: set[tuple[int, bytes]] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.uncaught == 0 and self.bad_sw == 0 and self.violations == 0

    def note(self, kind: str, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {text}")


class _Catch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def valid_sw(resp: bytes) -> bool:
    """ISO 7816-4 §5.6: 9000 or 61xx–6Fxx (60xx is not a status word)."""
    if len(resp) < 2:
        return False
    sw1 = resp[-2]
    return sw1 == 0x90 and resp[-1] == 0x00 or 0x61 <= sw1 <= 0x6F


@dataclass
class _Seen:
    lifecycle: int
    sequence: int
    apps: dict[bytes, int]
    emv: dict[bytes, tuple[int, int, int]]  # aid → (atc, ptc, limit)


def _snapshot(card: Card) -> _Seen:
    apps = {rec.aid: rec.lifecycle for rec in card.state.instances}
    emv: dict[bytes, tuple[int, int, int]] = {}
    for aid, applet in card.applets.items():
        data = getattr(applet, "data", None)
        if data is not None and hasattr(data, "atc"):
            emv[aid] = (data.atc, data.pin_try_counter, data.pin_try_limit)
    return _Seen(card.state.lifecycle, card.state.sequence_counter, apps, emv)


class Fuzzer:
    def __init__(self, seed: int, result: Result) -> None:
        self.rng = random.Random(seed)
        self.result = result
        self.catch = _Catch()
        self.scenarios = scenarios()

    # invariants after one APDU
    def check(self, card: Card, before: _Seen, raw: bytes, resp: bytes) -> _Seen:
        r = self.result
        after = _snapshot(card)
        sw = resp[-2:]
        ok9000 = sw == b"\x90\x00"
        ins = raw[1] if len(raw) > 1 else -1
        if after.lifecycle != before.lifecycle:
            try:
                legal = CardLife(after.lifecycle) in CARD_TRANSITIONS[CardLife(before.lifecycle)]
            except ValueError:
                legal = False
            if not legal:
                r.violations += 1
                r.note("card life cycle", f"{before.lifecycle:02X} -> {after.lifecycle:02X} on {raw.hex()}")
        if after.sequence < before.sequence:
            r.violations += 1
            r.note("sequence counter", f"{before.sequence} -> {after.sequence} on {raw.hex()}")
        for aid, life in after.apps.items():
            old = before.apps.get(aid)
            if old is None or old == life:
                continue
            applet = card.applets.get(aid)
            specific = dict(getattr(applet, "SPECIFIC_STATES", {}) or {})
            if aid == card.state.isd_aid:
                continue  # the ISD follows the card life cycle
            try:
                app_transition(old, life, specific)
            except Exception:  # noqa: BLE001 - StatusError: not a legal transition
                r.violations += 1
                r.note("application life cycle", f"{aid.hex()} {old:02X} -> {life:02X} on {raw.hex()}")
        for aid, (atc, ptc, limit) in after.emv.items():
            if not 0 <= ptc <= limit:
                r.violations += 1
                r.note("PIN try counter range", f"{aid.hex()} {ptc}/{limit} on {raw.hex()}")
            old_emv = before.emv.get(aid)
            if old_emv is None:
                continue
            if atc < old_emv[0]:
                r.violations += 1
                r.note("ATC decreased", f"{aid.hex()} {old_emv[0]} -> {atc} on {raw.hex()}")
            if ptc > old_emv[1] and not (ok9000 and ins in PIN_RAISERS):
                r.violations += 1
                r.note("PIN try counter increased", f"{aid.hex()} {old_emv[1]} -> {ptc} on {raw.hex()} -> {resp.hex()}")
        return after

    def send(self, card: Card, raw: bytes, before: _Seen) -> tuple[bytes, _Seen]:
        r = self.result
        n_logged = len(self.catch.records)
        try:
            resp = card.transmit(raw)
        except Exception as exc:  # noqa: BLE001 - an exception that left the card
            r.uncaught += 1
            r.note("exception", f"{raw.hex()}: {exc!r}")
            resp = b""
        r.apdus += 1
        if len(self.catch.records) > n_logged or resp[-2:] == b"\x6f\x00":
            r.uncaught += 1
            rec = self.catch.records[-1] if len(self.catch.records) > n_logged else None
            detail = ""
            if rec is not None and rec.exc_info and rec.exc_info[1] is not None:
                detail = f" ({rec.exc_info[1]!r})"
            r.note("6F00/internal error", f"{raw.hex()}{detail}")
        if resp and not valid_sw(resp):
            r.bad_sw += 1
            r.note("invalid SW", f"{raw.hex()} -> {resp.hex()}")
        elif not resp:
            r.bad_sw += 1
        return resp, self.check(card, before, raw, resp)

    def round_trip(self, card: Card) -> Card:
        """Save and load the image; the loaded image must be equal; go on with it."""
        self.result.reloads += 1
        card.sync_state()
        text = card_image.dumps(card.state)
        loaded = card_image.loads(text)
        if card_image.dumps(loaded) != text or loaded != card.state:
            self.result.violations += 1
            self.result.note("image round trip", "loaded image differs from the saved one")
        return Card(loaded)

    def sequence(self, scenario: Scenario, budget: int) -> None:
        rng, r = self.rng, self.result
        card = Card(card_image.loads(scenario.image))
        card.power_on()
        seen = _snapshot(card)
        hs: HostSession | None = None
        sent = 0
        session_left = 0  # wrapped commands still to send in a row in the open session
        while sent < budget:
            roll = 0.8 if hs is not None and session_left > 0 else rng.random()
            batch: list[tuple[bytes, bool]] = []  # (apdu, wrapped by hs and not altered after)
            if roll < 0.12:
                batch = [(random_apdu(rng), False)]
            elif roll < 0.55:
                cmd = rng.choice(PLAIN)
                batch = [(cmd if rng.random() < 0.4 else mutate(rng, cmd), False)]
            elif roll < 0.72:
                batch = [(c if rng.random() < 0.85 else mutate(rng, c), False) for c in emv_flow(rng)]
            elif roll < 0.96:
                if hs is None or not hs.authenticated or rng.random() < 0.03:
                    hs = None
                    level = rng.choice(LEVELS)
                    try:
                        card.transmit(_select(ISD))  # not counted: a helper step (its SW is checked below)
                        session = HostSession(card.transmit, GP_KEYS, channel=0)
                        session.open(level)
                        hs = session
                        r.sessions_opened += 1
                        session_left = rng.randint(1, 16)
                    except ScpError:
                        pass
                    seen = _snapshot(card)
                if hs is not None:
                    session_left -= 1
                    plain = rng.choice(SECURED)
                    if rng.random() < 0.35:
                        plain = mutate(rng, plain)
                    try:
                        wrapped = hs.wrap(plain)
                    except (ScpError, ValueError):
                        wrapped = plain
                        batch = [(wrapped, False)]
                    else:
                        r.secured_sent += 1
                        intact = rng.random() >= 0.08
                        batch = [(wrapped if intact else mutate(rng, wrapped), intact)]
            elif roll < 0.985:
                card.power_on()
                hs = None
                continue
            else:
                card = self.round_trip(card)
                card.power_on()
                hs = None
                seen = _snapshot(card)
                continue
            for raw, intact in batch:
                resp, seen = self.send(card, raw, seen)
                sent += 1
                if hs is not None and intact and resp[-2:] == b"\x90\x00":
                    try:
                        hs.unwrap(resp)
                    except ScpError as exc:
                        r.violations += 1
                        r.note("R-MAC", f"{raw.hex()} -> {resp.hex()}: {exc}")
                        hs = None
                elif hs is not None and (not intact or resp[-2:] in _SESSION_ENDERS):
                    hs = None  # the card closed the session (or will, on the altered command)
                if resp[-2:] == b"\x90\x00":
                    r.ok_answers += 1
                if len(raw) > 1 and len(resp) >= 2:
                    r.outcomes.add((raw[1], resp[-2:]))
        # the image at the end of the sequence must survive a round trip too
        self.round_trip(card)
        r.sequences += 1

    def run(self, count: int, on_progress: Callable[[Result], None] | None = None) -> Result:
        logger = logging.getLogger("emulator")
        logger.addHandler(self.catch)
        started = time.perf_counter()
        try:
            i = 0
            while self.result.apdus < count:
                scenario = self.scenarios[i % len(self.scenarios)]
                i += 1
                self.sequence(scenario, min(self.rng.randint(100, 400), count - self.result.apdus))
                if on_progress is not None and i % 50 == 0:
                    self.result.seconds = time.perf_counter() - started
                    on_progress(self.result)
        finally:
            logger.removeHandler(self.catch)
        self.result.seconds = time.perf_counter() - started
        return self.result


def run(count: int, seed: int = 1) -> Result:
    return Fuzzer(seed, Result()).run(count)


def report(r: Result, seed: int, n_scenarios: int) -> str:
    rate = r.apdus / r.seconds if r.seconds else 0.0
    text = figures("APDU fuzzing (robustness/fuzz_apdus.py)", [
        ("seed", seed),
        ("cards (scenarios)", n_scenarios),
        ("APDUs sent", r.apdus),
        ("APDU/s", f"{rate:,.0f}"),
        ("sequences", r.sequences),
        ("SCP03 sessions opened", r.sessions_opened),
        ("wrapped commands sent", r.secured_sent),
        ("image save/load round trips", r.reloads),
        ("9000 answers", r.ok_answers),
        ("distinct (INS, SW) outcomes", len(r.outcomes)),
        ("uncaught exceptions (incl. 6F00)", r.uncaught),
        ("replies without a valid SW", r.bad_sw),
        ("state invariants violated", r.violations),
    ])
    if r.examples:
        text += "\nfirst problems:\n" + "\n".join("  " + e for e in r.examples)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000, help="APDUs to send (default 1,000,000)")
    ap.add_argument("--quick", action="store_true", help="10,000 APDUs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--progress", action="store_true", help="print a line every 50 sequences")
    args = ap.parse_args(argv)
    count = 10_000 if args.quick else args.count
    fz = Fuzzer(args.seed, Result())

    def progress(r: Result) -> None:
        print(f"  ... {r.apdus} APDUs, {r.apdus / max(r.seconds, 1e-9):,.0f}/s, "
              f"uncaught {r.uncaught}, bad SW {r.bad_sw}, violations {r.violations}", file=sys.stderr)

    r = fz.run(count, progress if args.progress else None)
    print(report(r, args.seed, len(fz.scenarios)))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())

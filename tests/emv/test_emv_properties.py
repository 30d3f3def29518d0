"""hypothesis properties of the EMV application: the ATC never repeats, the PIN
try counter follows a simple model, random transaction commands never crash."""

from __future__ import annotations

import copy
import tempfile
from functools import lru_cache
from pathlib import Path

from cardmaker import CDOL1, IMK_AC, IMK_SMC, IMK_SMI, CardData, Profile, make_card
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from terminal import CID_AAC, CID_ARQC, Issuer, Terminal, build_dol

from cardlab.emulator import Card
from cardlab.emulator.state import CardState

PROFILE = Profile(cvn=0x12, oda="DDA", lcol=2, ucol=4, lower_cumulative=50_000, upper_cumulative=100_000)
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=1)
def template() -> tuple[CardState, CardData]:
    card, (cd,) = make_card(PROFILE)
    card.sync_state()
    return card.state, cd


def fresh() -> tuple[Card, CardData]:
    state, cd = template()
    return Card(copy.deepcopy(state)), cd


def reload(card: Card) -> Card:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "card.json"
        card.save(path)
        return Card.load(path)


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


# -- ATC ----------------------------------------------------------------------------------


@SLOW
@given(st.lists(st.sampled_from(["tx", "gpo", "power", "reload", "select"]), min_size=1, max_size=12))
def test_atc_strictly_increases_across_power_cycles_and_reloads(steps: list[str]) -> None:
    card, cd = fresh()
    seen: list[int] = []
    for step in steps:
        if step == "power":
            card.power_on()
        elif step == "reload":
            card = reload(card)
        else:
            t = Terminal(card.transmit)
            t.select(cd.profile.aid)
            if step == "select":
                continue
            t.gpo()
            if step == "tx":
                t.read_records()
                resp = t.generate_ac(CID_AAC)
                seen.append(int.from_bytes(resp[0x9F36], "big"))
            else:
                data, status = t.get_data(0x9F36)
                assert status == 0x9000
                seen.append(int.from_bytes(data[-2:], "big"))
    assert all(a < b for a, b in zip(seen, seen[1:])), seen
    assert len(set(seen)) == len(seen)


# -- PIN try counter against a model ------------------------------------------------------------


class PinMachine(RuleBasedStateMachine):
    """Model: counter in 0..limit; wrong PIN decrements (not below 0), the right
    PIN resets it only while it is above 0; PIN UNBLOCK by a valid script
    resets it; nothing else (power, reload, new transaction, bad script) does."""

    def __init__(self) -> None:
        super().__init__()
        self.card, self.cd = fresh()
        self.limit = PROFILE.pin_try_limit
        self.model = self.limit
        self.term: Terminal | None = None

    def tx(self) -> Terminal:
        if self.term is None:
            self.term = Terminal(self.card.transmit)
            self.term.start(self.cd.profile.aid)
        return self.term

    @rule()
    def wrong_pin(self) -> None:
        status = self.tx().verify_pin("0000")
        if self.model == 0:
            assert status == 0x6983
        else:
            self.model -= 1
            assert status == 0x63C0 | self.model

    @rule()
    def right_pin(self) -> None:
        status = self.tx().verify_pin(PROFILE.pin)
        if self.model == 0:
            assert status == 0x6983
        else:
            self.model = self.limit
            assert status == 0x9000

    @rule()
    def power_cycle(self) -> None:
        self.card.power_on()
        self.term = None

    @rule()
    def image_reload(self) -> None:
        self.card = reload(self.card)
        self.term = None

    @rule()
    def new_transaction(self) -> None:
        self.term = None

    @precondition(lambda self: self.term is None)
    @rule(valid=st.booleans())
    def script_pin_unblock(self, valid: bool) -> None:
        t = self.tx()
        resp = t.generate_ac(CID_ARQC)
        issuer = Issuer(PROFILE.cvn, IMK_AC, IMK_SMI, IMK_SMC, PROFILE.pan, PROFILE.psn)
        if resp[0x9F27][0] & 0xC0 != CID_ARQC:
            return
        cmd = bytearray(issuer.script(0x24, resp[0x9F26], resp[0x9F36]))
        if not valid:
            cmd[-2] ^= 0x40
        status = t.send(bytes(cmd))[1]
        if valid:
            assert status == 0x9000
            self.model = self.limit
        else:
            assert status == 0x6988
        self.term = None

    @invariant()
    def counter_matches(self) -> None:
        data, status = self.tx().get_data(0x9F17)
        assert status == 0x9000
        assert data[-1] == self.model
        assert 0 <= data[-1] <= self.limit


PinMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
TestPinTryCounter = PinMachine.TestCase


# -- random transaction commands ------------------------------------------------------------------

VALID_SW1 = {0x61, 0x62, 0x63, 0x64, 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x90}


def _cdol_data(draw: st.DrawFn) -> bytes:
    values = {0x9F02: bytes.fromhex("000000001000"), 0x9F1A: b"\x02\x50", 0x5F2A: b"\x09\x78",
              0x9A: bytes.fromhex("250601"), 0x9F37: b"\x12\x34\x56\x78"}
    base = bytearray(build_dol(CDOL1, values))  # a valid CDOL1, then a few bytes mutated
    for _ in range(draw(st.integers(0, 4))):
        base[draw(st.integers(0, len(base) - 1))] = draw(st.integers(0, 255))
    return bytes(base)


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["gpo", "read", "verify", "genac", "getdata", "extauth", "challenge",
                                 "intauth", "script", "raw"]))
    data = draw(st.binary(max_size=40))
    if kind == "gpo":
        body = draw(st.sampled_from([b"\x83\x02\x02\x50", b"\x83\x00", data]))
        return bytes.fromhex("80A80000") + bytes((len(body),)) + body + b"\x00"
    if kind == "read":
        return bytes((0x00, 0xB2, draw(st.integers(0, 255)), draw(st.integers(0, 255)), 0))
    if kind == "verify":
        body = draw(st.sampled_from([bytes.fromhex("241234FFFFFFFFFF"), data]))
        return bytes((0x00, 0x20, 0x00, draw(st.sampled_from([0x80, 0x88, 0x00, 0x81])), len(body))) + body
    if kind == "genac":
        body = _cdol_data(draw) if draw(st.booleans()) else draw(st.binary(max_size=60))
        p1 = draw(st.sampled_from([0x00, 0x40, 0x80, 0x90, 0x50, 0xC0, 0x20, draw(st.integers(0, 255))]))
        return bytes((0x80, 0xAE, p1, 0x00, len(body))) + body + b"\x00"
    if kind == "getdata":
        tag = draw(st.sampled_from([0x9F36, 0x9F13, 0x9F17, 0x9F4F, 0x9F14, 0x5F28, draw(st.integers(0, 0xFFFF))]))
        return bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0))
    if kind == "extauth":
        body = draw(st.binary(min_size=0, max_size=16))
        return bytes((0x00, 0x82, 0x00, 0x00, len(body))) + body if body else bytes.fromhex("00820000")
    if kind == "challenge":
        return bytes.fromhex("0084000000")
    if kind == "intauth":
        return bytes((0x00, 0x88, 0x00, 0x00, len(data))) + data + b"\x00" if data else bytes.fromhex("0088000000")
    if kind == "script":
        ins = draw(st.sampled_from([0x1E, 0x18, 0x16, 0x24, 0xDA, 0xDC]))
        return bytes((0x84, ins, draw(st.integers(0, 255)), draw(st.integers(0, 255)), len(data))) + data
    return bytes(draw(st.binary(min_size=4, max_size=4))) + (bytes((len(data),)) + data if data else b"")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands(), min_size=1, max_size=15), st.booleans())
def test_random_transaction_commands_end_in_a_valid_sw(cmds: list[bytes], gpo_first: bool) -> None:
    card, cd = fresh()
    t = Terminal(card.transmit)
    assert t.select(cd.profile.aid)[1] == 0x9000
    if gpo_first:
        t.gpo()
    for cmd in cmds:
        resp = card.transmit(cmd)
        assert len(resp) >= 2
        assert sw(resp) != 0x6F00, f"6F00 on {cmd[:4].hex()}"
        assert resp[-2] in VALID_SW1, f"SW {resp[-2:].hex()} on {cmd[:4].hex()}"

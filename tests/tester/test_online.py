"""Online processing through completion against emulated cards: ARPC method 1
(EXTERNAL AUTHENTICATE) and 2 (91 in CDOL2), approve → TC, decline → AAC,
issuer scripts before/after the final GENERATE AC with their results and the
TVR/TSI bits, and the unable-to-go-online completion."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emv"))

from cardmaker import IMK_SMC, IMK_SMI, Profile, make_card
from kernelkit import shows_pin
from test_issuer_host import WRONG_IMK, host, ok, start

from cardlab.emulator import Card
from cardlab.tester import online
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.issuer_host import (
    AuthorizationRequest,
    IssuerHost,
    Policy,
    Script,
    application_block,
    application_unblock,
    pin_change,
    put_data,
    update_record,
)
from cardlab.tester.state import TransactionState

CVNS = [0x0A, 0x12, 0x10]
OFFLINE = {"lcol": 3, "ucol": 5, "lower_cumulative": 50_000, "upper_cumulative": 100_000}


def card_for(cvn: int, **kw: object) -> tuple[Card, Profile]:
    p = Profile(cvn=cvn, oda="SDA", **kw)  # type: ignore[arg-type]
    card, _ = make_card(p)
    return card, p


def cid(d: dict[int, bytes]) -> int:
    return d[0x9F27][0] & 0xC0


def run(card: Card, p: Profile, h: IssuerHost | None = None, **kw: object) -> TransactionState:
    state, channel = start(card, p.aid, amount=int(kw.pop("amount", 1000)))  # type: ignore[call-overload]
    return online.process(state, channel, h or host(), **kw)  # type: ignore[arg-type]


def steps(state: TransactionState) -> list[str]:
    return [e.text for e in state.events]


# -- approve / decline ----------------------------------------------------------------------------


@pytest.mark.parametrize("cvn", CVNS)
def test_online_approval_arpc_accepted_tc(cvn: int) -> None:
    card, p = card_for(cvn, issuer_auth_required=True)
    state = run(card, p)
    assert state.outcome == "approved online", steps(state)
    assert cid(state.ac2) == 0x40
    assert state.online_response["arqc_valid"] is True
    assert "issuer authentication was performed" in state.tsi_names()
    assert not state.tvr_set("issuer authentication failed")
    assert state.cdol2_data[:2] == b"00"  # 8A first in the test cards' CDOL2
    if p.method == 1:
        assert any(e.command[:2] == b"\x00\x82" for e in state.events)
    else:
        assert not any(e.command[:2] == b"\x00\x82" for e in state.events)
        assert state.online_response["issuer_authentication_data"] in state.cdol2_data
    # the card's last online ATC register follows the transaction
    channel_data = card.transmit(bytes.fromhex("80CA9F1300"))
    assert channel_data[-2:] == b"\x90\x00" and channel_data[-4:-2] == state.ac2[0x9F36]


@pytest.mark.parametrize("cvn", CVNS)
def test_online_decline_aac(cvn: int) -> None:
    card, p = card_for(cvn)
    state = run(card, p, host(decide=Policy(amount_limit=500)), amount=1000)
    assert state.outcome == "declined online" and cid(state.ac2) == 0x00
    assert state.online_response["arc"] == b"05"
    assert any("above the limit" in t for t in steps(state))


@pytest.mark.parametrize("cvn", CVNS)
def test_wrong_issuer_keys_fail_issuer_authentication(cvn: int) -> None:
    """A host with the wrong IMK that approves anyway: the card refuses its
    ARPC; with issuer authentication required it declines."""
    card, p = card_for(cvn, issuer_auth_required=True)
    rogue = IssuerHost(WRONG_IMK, IMK_SMI, IMK_SMC, decide=Policy(force="approve"))
    state = run(card, p, rogue)
    assert state.online_response["arqc_valid"] is False
    assert state.tvr_set("issuer authentication failed"), steps(state)
    assert cid(state.ac2) == 0x00
    assert state.outcome == "declined by the card after online approval"
    # the CDOL2 TVR carried the failure (95 follows 8A [and 91] in the test CDOL2)
    if p.method == 1:  # (method 2: the card finds out inside the second GENERATE AC)
        tvr = state.cdol2_data[2 + 6 + 6 + 2 : 2 + 6 + 6 + 2 + 5]
        assert tvr[4] & 0x40


def test_no_online_processing_after_a_tc() -> None:
    card, p = card_for(0x12, **OFFLINE)
    state, channel = start(card, p.aid, first=0x40)
    online.process(state, channel, host())
    assert not state.ac2 and "no online processing" in state.events[-1].text


# -- scripts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cvn", CVNS)
def test_block_then_only_aac_then_unblock(cvn: int) -> None:
    card, p = card_for(cvn, **OFFLINE)
    state = run(card, p, host(decide=Policy(force="decline")), scripts=[application_block()])
    assert state.script_results and state.script_results[0][1] == 0x9000
    assert state.card_data[0x9F5B] == bytes.fromhex("2000000000")
    assert "script processing was performed" in state.tsi_names()
    assert not state.tvr_set("script processing failed after final GENERATE AC")
    # the next SELECT answers 6283 and the card gives only AACs
    resp = card.transmit(b"\x00\xA4\x04\x00" + bytes((len(p.aid),)) + p.aid + b"\x00")
    assert resp[-2:] == b"\x62\x83"
    blocked, channel = start(card, p.aid, first=0x40)
    assert cid(blocked.ac1) == 0x00
    blocked, channel = start(card, p.aid)
    assert cid(blocked.ac1) == 0x00
    # the issuer unblocks over the AAC of that transaction
    online.process(blocked, channel, host(), scripts=[application_unblock()], send_aac_online=True)
    assert blocked.script_results[-1][1] == 0x9000, steps(blocked)
    assert not blocked.ac2
    after, _ = start(card, p.aid)
    assert cid(after.ac1) == 0x80


@pytest.mark.parametrize("cvn", CVNS)
def test_pin_change_then_verify_new_pin(cvn: int) -> None:
    card, p = card_for(cvn)
    state = run(card, p, scripts=[pin_change("4321")])
    assert state.script_results[-1][1] == 0x9000, steps(state)
    assert not shows_pin(" ".join(steps(state)), "4321")
    _, channel = start(card, p.aid)

    def block(pin: str) -> bytes:
        return bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))

    assert channel.transmit(bytes.fromhex("0020008008") + block("1234"))[-2:] == b"\x63\xC2"
    assert channel.transmit(bytes.fromhex("0020008008") + block("4321"))[-2:] == b"\x90\x00"


@pytest.mark.parametrize("cvn", CVNS)
def test_put_data_before_and_after(cvn: int) -> None:
    """Two commands in one transaction: Mastercard keys the second with ARQC + 1."""
    card, p = card_for(cvn)
    state = run(card, p, scripts=[put_data(0x9F14, b"\x07", when="before", script_id=b"\x00\x00\x00\x01"),
                                  put_data(0x9F23, b"\x09")])
    assert [sw for _, sw in state.script_results] == [0x9000, 0x9000], steps(state)
    assert state.outcome == "approved online"
    assert state.card_data[0x9F5B] == bytes.fromhex("2000000001" "2000000000")
    assert not state.tvr_set("script processing failed before final GENERATE AC")
    assert card.transmit(bytes.fromhex("80CA9F1400"))[:-2].endswith(b"\x07")
    assert card.transmit(bytes.fromhex("80CA9F2300"))[:-2].endswith(b"\x09")


def test_update_record() -> None:
    card, p = card_for(0x12)
    new = bytes.fromhex("7009") + bytes.fromhex("5F2006") + b"NEW/NM"
    state = run(card, p, scripts=[update_record(1, 1, new)])
    assert state.script_results[-1][1] == 0x9000, steps(state)
    _, channel = start(card, p.aid)
    assert ok(channel, bytes.fromhex("00B2010C00")) == new


@pytest.mark.parametrize("cvn", CVNS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_bad_mac_is_refused_and_reported(cvn: int, when: str) -> None:
    card, p = card_for(cvn)
    state = run(card, p, scripts=[Script("application block", when, bad_mac=True),  # type: ignore[arg-type]
                                  Script("application block", when)])  # type: ignore[arg-type]
    assert state.script_results[0][1] == 0x6988
    bit = f"script processing failed {when} final GENERATE AC"
    assert state.tvr_set(bit) and state.tvr_names() == [bit]
    assert state.card_data[0x9F5B] == bytes.fromhex("1100000000" "2000000000") or \
        state.card_data[0x9F5B][:1] == b"\x11"
    assert any(bit in e.bits_set for e in state.events)
    refused = [e for e in state.events if "refused by the card" in e.text]
    assert refused and "6988" in refused[0].text


def test_script_failure_stops_that_script_only() -> None:
    """Two commands in one template: the second is not sent after the first fails."""
    from cardlab.tester import tlv

    card, p = card_for(0x0A)
    state, channel = start(card, p.aid)
    h = host()
    resp = h.authorize(AuthorizationRequest.from_state(state),
                       [Script("application block", bad_mac=True), put_data(0x9F14, b"\x02")])
    # the network joins both commands into one 72 template
    commands = resp.scripts_after
    merged = tlv.encode(0x72, tlv.encode(0x86, commands[0]) + tlv.encode(0x86, commands[1]))
    state.online_response = {}
    results = online._scripts(state, channel, merged, 0x72)
    assert results == bytes.fromhex("1100000000") and len(state.script_results) == 1


# -- unable to go online ------------------------------------------------------------------------------


def test_complete_offline_declines_z3_with_default_iac() -> None:
    card, p = card_for(0x12)
    state, channel = start(card, p.aid)
    state.set_tvr("transaction exceeds floor limit")  # IAC-default F040AC9800 has 9F0D byte 4 b8
    online.complete_offline(state, channel)
    assert state.outcome == "declined offline (unable to go online)"
    assert state.cdol2_data[:2] == b"Z3" and cid(state.ac2) == 0x00


def test_complete_offline_approves_y3() -> None:
    card, p = card_for(0x12, **OFFLINE)
    state, channel = start(card, p.aid)
    state.card_data[0x9F0D] = bytes(5)
    online.complete_offline(state, channel, tac_default=bytes(5))
    assert state.cdol2_data[:2] == b"Y3"
    assert cid(state.ac2) in (0x40, 0x00)
    assert state.outcome.endswith("(unable to go online)")


# -- through the kernel (once every kernel step exists) ------------------------------------------------


@pytest.mark.parametrize("oda", ["SDA", "DDA", "CDA"])
def test_kernel_online_transaction_with_script(oda: str) -> None:
    pytest.importorskip("cardlab.tester.risk")
    pytest.importorskip("cardlab.tester.cvm")
    from cardmaker import load_test_ca

    from cardlab.tester import kernel
    from cardlab.tester.terminal import CaKey, TerminalAid, TerminalProfile

    rid, index, ca, _ = load_test_ca()
    terminal = TerminalProfile(ca_keys=[CaKey(rid, index, ca.n, ca.e)], aids=[TerminalAid(bytes.fromhex("F0000000011010"))],
                               selection="aids", floor_limit=0, tac_online=bytes.fromhex("DC4004F800"))
    p = Profile(cvn=0x12, oda=oda)
    card, _ = make_card(p)
    h = host()
    h.queue_scripts(put_data(0x9F14, b"\x04"))
    state = kernel.run_transaction(RecordingChannel(card.transmit), terminal, amount=1000, pin="1234",
                                   online_host=h, force_online=True, seed=1)
    assert state.outcome == "approved online", [e.text for e in state.events]
    assert state.online_response["arqc_valid"] is True and cid(state.ac2) == 0x40
    assert state.script_results and state.script_results[-1][1] == 0x9000

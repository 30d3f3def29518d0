"""The terminal kernel against emulated cards built by the test card maker."""

from __future__ import annotations

import dataclasses

import pytest
from kernelkit import OFFLINE, WHEN, P, Profile, card_for, make_card, terminal, transact

from cardlab.tester.kernel import build_dol, fit, run_transaction
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.terminal import TerminalAid, TerminalProfileError, load_terminal, parse_terminal

AID1 = bytes.fromhex("F0000000011010")
AID2 = bytes.fromhex("F0000000012010")


@pytest.mark.parametrize("oda", ["SDA", "DDA", "CDA"])
def test_offline_approval_with_each_oda(oda: str) -> None:
    card, _ = card_for(P(oda=oda))
    state, _ = transact(card, pin="1234")
    assert state.outcome == "approved offline", state.outcome
    assert state.oda_method == oda and state.oda_ok
    # only "SDA selected" (byte 1 b2, EMV 4.3 Book 3 Annex C5 since the Nov 2013 bulletin) for SDA
    assert bytes(state.tvr) == (bytes.fromhex("0200000000") if oda == "SDA" else bytes(5))
    assert state.tvr_set("SDA selected") == (oda == "SDA")
    assert state.tsi_names() == ["offline data authentication was performed", "cardholder verification was performed",
                                 "card risk management was performed", "terminal risk management was performed"]
    assert state.ac1[0x9F27][0] & 0xC0 == 0x40


def test_duplicate_record_data_terminates() -> None:
    # the card maker's no-ODA card repeats 9F4A in two records: Book 3 §10.2 ends the transaction
    card, _ = card_for(Profile(oda=""))
    state, _ = transact(card, pin="1234")
    assert state.outcome == "aborted: data object 9F4A appears twice in the records (Book 3 §10.2)"


def test_no_oda_goes_online_and_declines_without_host() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, terminal(capabilities=bytes.fromhex("E0F800")), pin="1234")
    assert state.tvr_set("offline data authentication was not performed")
    assert state.ac1[0x9F27][0] & 0xC0 == 0x80  # the TAC-online asks for an ARQC
    assert state.outcome == "declined offline (unable to go online)"
    assert state.online_response.get("unable_to_go_online")


def test_iac_denial_declines() -> None:
    card, _ = card_for(P(oda="SDA"))
    term = terminal(tac_denial=bytes.fromhex("0000000800"))  # "merchant forced transaction online" → deny
    state, _ = transact(card, term, pin="1234", force_online=True)
    assert state.tvr_set("merchant forced transaction online")
    assert state.extras["ask"] == 0x00
    assert state.outcome == "declined offline"


def test_floor_limit_goes_online() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, pin="1234", amount=20000)
    assert state.tvr_set("transaction exceeds floor limit")
    assert state.extras["ask"] == 0x80


def test_velocity_limits_and_new_card() -> None:
    card, _ = card_for(P(oda="SDA"), velocity=(1, 2))
    outcomes = []
    for _ in range(3):
        state, ch = transact(card, pin="1234")
        outcomes.append((state.tvr_set("lower consecutive offline limit exceeded"),
                         state.tvr_set("upper consecutive offline limit exceeded")))
        assert state.tvr_set("new card")
        assert any(e.command[:4] == bytes.fromhex("80CA9F36") for e in ch.log)
        assert any(e.command[:4] == bytes.fromhex("80CA9F13") for e in ch.log)
    # ATC 1, 2, 3 with last online ATC 0: offline count 1, 2, 3 against LCOL 1 / UCOL 2
    assert outcomes == [(False, False), (True, False), (True, True)]


def test_random_selection_is_seeded() -> None:
    term = terminal(random_threshold=0, random_target_percent=99, random_max_percent=99)
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, term, pin="1234")
    assert state.tvr_set("transaction selected randomly for online processing")


@pytest.mark.parametrize(("changes", "bit"), [
    ({"expiry": "250531"}, "expired application"),
    ({"effective": "250602"}, "application not yet effective"),
])
def test_dates(changes: dict[str, str], bit: str) -> None:
    card, _ = card_for(P(oda="SDA", **changes))
    state, _ = transact(card, pin="1234")
    assert state.tvr_set(bit)


def test_application_version_and_auc() -> None:
    card, _ = card_for(P(oda="SDA"))
    term = terminal(aids=[TerminalAid(AID1, True, b"\x00\x8C")])
    state, _ = transact(card, term, pin="1234")
    assert state.tvr_set("ICC and terminal have different application versions")
    # cash at an attended terminal: the card's AUC FF00 allows it; cashback is not allowed (byte 2 = 00)
    state, _ = transact(card, pin="1234", transaction_type=0x09, amount_other=500)
    assert state.tvr_set("requested service not allowed for card product")
    state, _ = transact(card, pin="1234", transaction_type=0x01)
    assert not state.tvr_set("requested service not allowed for card product")


def _two_apps(selection: str, *, priorities: tuple[int, int] = (2, 1)) -> tuple[object, object]:
    card, _ = make_card(P(oda="SDA", priority=priorities[0]),
                        P(oda="SDA", aid=AID2, label="CARDLAB CREDIT", priority=priorities[1]))
    return card, terminal(selection=selection)


@pytest.mark.parametrize("selection", ["pse", "ppse", "aids"])
def test_selection_methods_order_by_priority(selection: str) -> None:
    card, term = _two_apps(selection)
    state = run_transaction(RecordingChannel(card.transmit), term, amount=100, pin="1234", when=WHEN, seed=1)  # type: ignore[attr-defined,arg-type]
    assert [c[0x4F] for c in state.candidates] == [AID2, AID1]
    assert state.aid == AID2
    assert state.outcome == "approved offline"


def test_partial_selection_and_next_occurrence() -> None:
    card, term = _two_apps("aids")
    term.aids = [TerminalAid(bytes.fromhex("F000000001"), True)]  # type: ignore[attr-defined]
    ch = RecordingChannel(card.transmit)  # type: ignore[attr-defined]
    state = run_transaction(ch, term, amount=100, pin="1234", when=WHEN, seed=1)  # type: ignore[arg-type]
    assert sorted(c[0x4F] for c in state.candidates) == [AID1, AID2]
    assert any(e.command[:4] == bytes.fromhex("00A40402") for e in ch.log)  # next occurrence
    # without partial selection nothing matches
    term.aids = [TerminalAid(bytes.fromhex("F000000001"), False)]  # type: ignore[attr-defined]
    state = run_transaction(RecordingChannel(card.transmit), term, amount=100, when=WHEN)  # type: ignore[attr-defined,arg-type]
    assert state.outcome.startswith("aborted: no mutually supported application")


def test_dol_fitting() -> None:
    assert fit(0x9F02, bytes.fromhex("0123"), 6) == bytes.fromhex("000000000123")
    assert fit(0x9F02, bytes.fromhex("00000000000123"), 6) == bytes.fromhex("000000000123")
    assert fit(0x50, b"AB", 4) == b"AB\x00\x00"
    assert fit(0x5A, bytes.fromhex("1234"), 3) == bytes.fromhex("1234FF")
    assert build_dol(bytes.fromhex("9F0206DF2101"), {0x9F02: b"\x01"}) == bytes.fromhex("00000000000100")


def test_terminal_profiles_load_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("default", "visa-cvn18", "mastercard-cvn16"):
        t = load_terminal(f"vectors/terminals/{name}.yaml")
        assert t.ca_keys and t.aids
    with pytest.raises(TerminalProfileError, match="capabilities must be 3 bytes"):
        parse_terminal({"capabilities": "E0F8", "aids": ["F0000000011010"]})
    with pytest.raises(TerminalProfileError, match="unknown field"):
        parse_terminal({"colour": 1, "aids": ["F0000000011010"]})
    with pytest.raises(TerminalProfileError, match="no supported applications"):
        parse_terminal({})
    with pytest.raises(TerminalProfileError, match="cannot read"):
        load_terminal(tmp_path / "nope.yaml")
    t = load_terminal()
    assert dataclasses.replace(t).floor_limit == 10000

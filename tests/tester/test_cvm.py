"""Cardholder verification (Book 3 §10.5) against emulated cards, and the CV rule conditions."""

from __future__ import annotations

import pytest
from kernelkit import P, card_for, shows_pin, terminal, transact

from cardlab.tester.cvm import condition_met, parse_cvm_list, pin_block
from cardlab.tester.kernel import new_state
from cardlab.tester.state import TransactionState
from cardlab.tester.trace import render_text

NO_SIGNATURE = bytes.fromhex("E0D0C8")  # plaintext, online and enciphered PIN; no signature, no "no CVM"


def _verifies(state: TransactionState) -> list[bytes]:
    return [e.command for e in state.events if e.command[:2] == b"\x00\x20"]


def test_plaintext_pin_ok_reads_the_try_counter_first() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, ch = transact(card, pin="1234")
    assert state.cvm_result == bytes.fromhex("410302")
    assert state.pin_verified is True
    heads = [e.command[:4].hex().upper() for e in ch.log]
    assert heads.index("80CA9F17") < heads.index("00200080")
    assert all(len(c) == 5 for c in _verifies(state))  # the PIN block never reaches the trace
    assert not shows_pin(render_text(state), "1234")


def test_enciphered_pin_with_the_icc_key() -> None:
    for oda in ("DDA", "CDA"):
        card, _ = card_for(P(oda=oda))
        state, ch = transact(card, pin="1234")
        assert state.cvm_result == bytes.fromhex("440302"), oda
        assert any(e.command[:4] == bytes.fromhex("00840000") for e in ch.log)  # GET CHALLENGE
        verify = next(e for e in ch.log if e.command[:4] == bytes.fromhex("00200088"))
        assert verify.response[-2:] == b"\x90\x00"
        assert state.outcome == "approved offline"


def test_wrong_pin_falls_through_to_signature() -> None:
    card, _ = card_for(P(oda="DDA"))
    state, _ = transact(card, pin="9999")
    assert state.pin_verified is False
    assert state.cvm_result == bytes.fromhex("5E0300")  # signature, result unknown
    assert state.extras.get("signature_required")
    assert not state.tvr_set("cardholder verification was not successful")
    assert len(_verifies(state)) == 2  # enciphered, then plaintext


def test_wrong_pin_without_fallback_fails() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, terminal(capabilities=NO_SIGNATURE), pin="9999")
    assert state.tvr_set("cardholder verification was not successful")
    assert state.cvm_result == bytes.fromhex("410301")
    assert "cardholder verification was performed" in state.tsi_names()


def test_pin_blocked_after_three_wrong_tries() -> None:
    card, _ = card_for(P(oda="SDA", pin_try_limit=3))
    term = terminal(capabilities=NO_SIGNATURE)
    for _ in range(3):
        transact(card, term, pin="9999")
    state, ch = transact(card, term, pin="1234")
    assert state.tvr_set("PIN try limit exceeded")
    assert state.tvr_set("cardholder verification was not successful")
    assert not any(e.command[:2] == b"\x00\x20" for e in ch.log)  # counter 0: the PIN is not even asked
    assert state.card_data[0x9F17] == b"\x00"


def test_pin_not_entered() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, terminal(capabilities=NO_SIGNATURE), pin=None)
    assert state.tvr_set("PIN entry required, PIN pad present, but PIN was not entered")


def test_no_pin_pad() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, terminal(capabilities=bytes.fromhex("E028C8")), pin="1234")  # signature + no CVM
    assert state.cvm_result == bytes.fromhex("5E0300")


def test_parse_and_conditions() -> None:
    x, y, rules = parse_cvm_list(bytes.fromhex("000003E8" "00001388" "4106" "4207" "1E08" "1F09" "0100" "0203"))
    assert (x, y) == (1000, 5000)
    assert rules[0] == (0x41, 0x06)
    assert pin_block("1234") == bytes.fromhex("241234FFFFFFFFFF")
    term = terminal()
    s = new_state(term, amount=2000)
    s.card_data[0x9F42] = bytes.fromhex("0978")
    assert condition_met(s, 0x06, 0x01, x, y) is False  # 2000 not under X
    assert condition_met(s, 0x07, 0x01, x, y) is True
    assert condition_met(s, 0x08, 0x01, x, y) is True
    assert condition_met(s, 0x09, 0x01, x, y) is False
    s.card_data[0x9F42] = bytes.fromhex("0840")  # another currency: amount conditions never hold
    assert condition_met(s, 0x07, 0x01, x, y) is False
    assert condition_met(s, 0x03, 0x1E, x, y) is True
    assert condition_met(s, 0x01, 0x01, x, y) is False  # not unattended cash
    assert condition_met(s, 0x02, 0x01, x, y) is True
    assert condition_met(s, 0x0A, 0x01, x, y) is None  # unknown condition: skipped
    c = new_state(term, amount=2000, transaction_type=0x09, amount_other=100)
    assert condition_met(c, 0x05, 0x01, x, y) is True


@pytest.mark.parametrize("oda", ["SDA", "DDA"])
def test_enciphered_pin_with_a_distinct_pin_key(oda: str) -> None:
    # Book 2 §7.1: 9F2D/9F2E recovered with the issuer key (no static data in the hash); the card
    # deciphers with its PIN key (DGIs 8101-8105) when it has one, so the VERIFY succeeding proves the
    # tester enciphered under the PIN key and not under the ICC key
    card, _ = card_for(P(oda=oda, pin_key_bits=1024))
    state, ch = transact(card, pin="1234")
    assert state.cvm_result == bytes.fromhex("440302"), [e.text for e in state.events]
    verify = next(e for e in ch.log if e.command[:4] == bytes.fromhex("00200088"))
    assert verify.response[-2:] == b"\x90\x00"
    assert len(verify.command) == 5 + 128  # a 1024-bit block
    text = render_text(state)
    assert "ICC PIN encipherment public key certificate recovered" in text
    assert state.outcome == "approved offline"


def test_pin_key_certificate_for_another_pan_is_refused() -> None:
    card, _ = card_for(P(oda="SDA", pin_key_bits=1024, pin_key_cert_pan="4761739001010028"))
    state, ch = transact(card, pin="1234")
    assert not any(e.command[:4] == bytes.fromhex("00200088") for e in ch.log)  # never enciphered
    assert "the ICC PIN encipherment key cannot be recovered" in render_text(state)
    assert state.cvm_result == bytes.fromhex("410302")  # the next rule: plaintext PIN

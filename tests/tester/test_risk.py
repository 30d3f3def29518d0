"""Terminal risk management and terminal action analysis (Book 3 §10.6–§10.7)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cardlab.tester.risk import AAC, ARQC, TC, action_codes, decide, random_selection_percent
from cardlab.tester.terminal import TerminalProfile

five = st.binary(min_size=5, max_size=5)


def model(tvr: bytes, iac: tuple[bytes, bytes, bytes], tac: tuple[bytes, bytes, bytes], online: bool) -> int:
    """Book 3 §10.7 in its plainest words, bit by bit."""
    def hit(i: int) -> bool:
        return any(tvr[k] & (iac[i][k] | tac[i][k]) for k in range(5))
    if hit(0):
        return AAC
    if online:
        return ARQC if hit(1) else TC
    return AAC if hit(2) else TC


@given(five, five, five, five, five, five, five, st.booleans())
def test_action_analysis_matches_the_model(tvr: bytes, d: bytes, o: bytes, f: bytes, td: bytes, to: bytes,
                                           tf: bytes, online: bool) -> None:
    ask, which, bits = decide(tvr, (d, o, f), (td, to, tf), online)
    assert ask == model(tvr, (d, o, f), (td, to, tf), online)
    assert (which in ("denial", "online", "default")) == bool(bits) or which == "none"


@given(five)
def test_absent_iacs(tvr: bytes) -> None:
    iac = action_codes({})
    assert iac == (bytes(5), b"\xFF" * 5, b"\xFF" * 5)
    ask, _, _ = decide(tvr, iac, (bytes(5),) * 3, True)
    assert ask == (ARQC if any(tvr) else TC)  # absent IAC-online: any TVR bit goes online


def test_online_only_terminal_always_goes_online() -> None:
    assert decide(bytes(5), (bytes(5),) * 3, (bytes(5),) * 3, True, True)[0] == ARQC


@given(st.integers(0, 20_000))
def test_random_selection_percentage(amount: int) -> None:
    t = TerminalProfile(floor_limit=10_000, random_threshold=2_000, random_target_percent=10, random_max_percent=50)
    p = random_selection_percent(t, amount)
    if amount >= 10_000:
        assert p == 0
    elif amount < 2_000:
        assert p == 10
    else:
        assert 10 <= p <= 50
        assert abs(p - (10 + 40 * (amount - 2_000) / 8_000)) < 1e-9


def test_terminal_types() -> None:
    assert TerminalProfile(terminal_type=0x22).online_capable
    assert not TerminalProfile(terminal_type=0x23).online_capable
    assert TerminalProfile(terminal_type=0x21).online_only
    assert TerminalProfile(terminal_type=0x14, additional_capabilities=bytes.fromhex("8000000000")).is_atm


def test_an_rfu_bit_that_decides_is_named_by_its_place() -> None:
    """Found by the property above: a TVR bit the book leaves undefined (byte 5 b1) that meets the
    denial code decides the AAC, and the reason names it instead of naming nothing."""
    ask, which, bits = decide(b"\x00\x00\x00\x00\x01", (b"\x00\x00\x00\x00\x01", bytes(5), bytes(5)),
                              (bytes(5),) * 3, False)  # fmt: skip
    assert (ask, which, bits) == (AAC, "denial", ["TVR byte 5 b1 (RFU)"])

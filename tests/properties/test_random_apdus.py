"""Random APDUs and random mutations of valid ones, in every card life cycle
state outside a secure channel, and inside an SCP03 session in every state
that opens one (not TERMINATED): wrapped by a host session at a random
security level, the session reopened whenever the card ended it. The card
never raises, always answers with a valid status word (ISO 7816-4 §5.6), and
its protected answers verify on the host."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cardlab.cardspec.scp03 import SECURITY_LEVELS, HostSession, ScpError, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator.gp.lifecycle import CardLife
from cardlab.emulator.gp.manager import DEFAULT_KEY, new_card_state

KEYS = StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)

VALID = [
    "00A4040008A000000151000000",
    "00A40000023F00",
    "00A4000C022F00",
    "00B0000000",
    "00B2010400",
    "80CA9F7F00",
    "80CA006600",
    "80CA00E000",
    "80F28002024F0000",
    "80F24002024F0000",
    "8050000008111111111111111100",
    "0070000001",
    "00708001",
    "0020000104313233343536FFFF",
    "80E60C00",
    "80E2800003010203",
    "80D8000000",
    "80F0800007",
]

commands_like_valid = st.one_of(
    st.tuples(st.sampled_from(VALID), st.integers(0, 30), st.integers(0, 255)).map(
        lambda t: _mutate(bytes.fromhex(t[0]), t[1], t[2])
    ),
    st.tuples(st.sampled_from([0x00, 0x01, 0x80, 0x84, 0x0C, 0x41]), st.integers(0, 255),
              st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300),
              st.none() | st.integers(0, 255)).map(
        lambda t: bytes(t[:4]) + (bytes([len(t[4])]) + t[4] if 0 < len(t[4]) < 256 else b"")
        + (bytes([t[5]]) if t[5] is not None else b"")
    ),
)
apdus = st.one_of(st.binary(min_size=0, max_size=40), commands_like_valid)


def _mutate(raw: bytes, pos: int, value: int) -> bytes:
    if pos >= len(raw):
        return raw + bytes([value])
    return raw[:pos] + bytes([value]) + raw[pos + 1 :]


def _valid_sw(resp: bytes) -> bool:
    if len(resp) < 2:
        return False
    sw1 = resp[-2]
    return sw1 == 0x90 or 0x61 <= sw1 <= 0x6F and sw1 != 0x60


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(CardLife)), st.lists(apdus, min_size=1, max_size=25))
def test_random_apdus_never_crash(state: CardLife, commands: list[bytes]) -> None:
    card = Card(new_card_state(lifecycle=CardLife.OP_READY))
    card.state.lifecycle = state
    card.power_on()
    for raw in commands:
        resp = card.transmit(raw)
        assert _valid_sw(resp), (raw.hex(), resp.hex())
        assert resp[-2:] != b"\x6f\x00", f"internal error for {raw.hex()}"


def _open(card: Card, level: int) -> HostSession | None:
    """A session on the basic channel, or None when the card refuses one (a
    TERMINATED card, keys replaced by a fuzzed PUT KEY...)."""
    host = HostSession(card.transmit, KEYS)
    try:
        host.open(level)
    except ScpError as err:
        assert err.sw is None or err.sw != 0x6F00, "internal error opening a session"
        return None
    return host


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([s for s in CardLife if s != CardLife.TERMINATED]),  # TERMINATED: no session
       st.sampled_from(sorted(SECURITY_LEVELS - {0x00})),  # level 00 wraps nothing
       st.lists(st.one_of(commands_like_valid, apdus), min_size=1, max_size=15))
def test_random_wrapped_apdus_never_crash(state: CardLife, level: int, commands: list[bytes]) -> None:
    card = Card(new_card_state(lifecycle=CardLife.OP_READY))
    card.state.lifecycle = state
    card.power_on()
    host = _open(card, level)
    assert host is not None
    wrapped = 0
    for raw in commands:
        if host is not None and card.channels[0].session is None:
            host = _open(card, level)  # the card ended the session: open the next one
        try:
            command = host.wrap(raw) if host is not None else raw
        except (ScpError, ValueError):  # not a command the host can wrap (malformed, too long)
            command = raw
        before = card.channels[0].session
        resp = card.transmit(command)
        assert _valid_sw(resp), (command.hex(), resp.hex())
        assert resp[-2:] != b"\x6f\x00", f"internal error for {command.hex()}"
        if host is not None and command != raw:
            wrapped += 1
            try:
                host.unwrap(resp)
            except ScpError:
                # a protected answer verifies (R-MAC, R-ENC) unless the
                # command ended or replaced the session (SELECT, INITIALIZE UPDATE)
                assert card.channels[0].session is not before, (command.hex(), resp.hex())
    event(f"wrapped commands: {min(wrapped, 5)}{'+' if wrapped > 5 else ''}")

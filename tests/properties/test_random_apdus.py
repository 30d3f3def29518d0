"""Random APDUs and random mutations of valid ones, in every card life cycle
state, inside and outside a secure channel: the card never raises and always
answers with a valid status word (ISO 7816-4 §5.6)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import Card
from emulator.gp.lifecycle import CardLife
from emulator.gp.manager import new_card_state

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

apdus = st.one_of(
    st.binary(min_size=0, max_size=40),
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

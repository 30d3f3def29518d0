"""APDU parsing (ISO 7816-4 §5.2): every case, short and extended, and errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.emulator.apdu import SW, Command, StatusError, parse


@pytest.mark.parametrize(
    ("raw", "case", "data_len", "ne", "extended"),
    [
        ("00A40000", 1, 0, None, False),
        ("00B0000000", 2, 0, 256, False),
        ("00B0000010", 2, 0, 16, False),
        ("00B00000000000", 2, 0, 65536, True),
        ("00B00000000123", 2, 0, 0x123, True),
        ("00D6000002AABB", 3, 2, None, False),
        ("00D60000000002AABB", 3, 2, None, True),
        ("00A4040002AABB00", 4, 2, 256, False),
        ("00A40400000002AABB0000", 4, 2, 65536, True),
    ],
)
def test_cases(raw: str, case: int, data_len: int, ne: int | None, extended: bool) -> None:
    cmd = parse(bytes.fromhex(raw))
    assert (cmd.case, len(cmd.data), cmd.ne, cmd.extended) == (case, data_len, ne, extended)
    assert cmd.encode() == bytes.fromhex(raw)


@pytest.mark.parametrize(
    "raw",
    ["", "00", "00A400", "00A4040003AABB", "00A4040001AABB0000", "00B000000001", "00D60000000003AABB",
     "00D6000000000000"],
)
def test_malformed_lengths_are_6700(raw: str) -> None:
    with pytest.raises(StatusError) as err:
        parse(bytes.fromhex(raw))
    assert err.value.sw == SW.WRONG_LENGTH


def test_channel_and_sm_bits() -> None:
    assert parse(bytes.fromhex("03B00000")).channel == 3
    assert parse(bytes.fromhex("4FB00000")).channel == 19
    assert parse(bytes.fromhex("84820000")).secure_messaging
    assert parse(bytes.fromhex("60B00000")).secure_messaging
    assert not parse(bytes.fromhex("80CA9F7F")).secure_messaging
    assert parse(bytes.fromhex("10D60000")).chained


commands = st.builds(
    Command,
    cla=st.integers(0, 0xFE),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=600),
    ne=st.none() | st.integers(1, 65536),
    extended=st.booleans(),
)


@given(commands)
def test_encode_parse_round_trip(cmd: Command) -> None:
    again = parse(cmd.encode())
    assert (again.cla, again.ins, again.p1, again.p2, again.data) == (cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data)
    if cmd.ne is not None and not again.extended and cmd.ne > 256:
        pytest.fail("Ne above 256 must force the extended form")
    assert again.ne == cmd.ne
    assert parse(again.encode()) == again


@given(st.binary(max_size=300))
def test_parse_never_raises_anything_but_status_errors(raw: bytes) -> None:
    try:
        parse(raw)
    except StatusError as err:
        assert err.sw in (SW.WRONG_LENGTH, SW.CLA_NOT_SUPPORTED)

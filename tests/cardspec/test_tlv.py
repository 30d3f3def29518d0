"""BER-TLV and DGI structure round trips (ISO 7816-4 §6.3, GP §11.11.2.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlab.cardspec import tlv

# primitive tags as encoded ints (ISO 8825-1 §8.1.2): class bits, b6 = 0,
# a number below 31 in one byte, or 1F and a second byte for numbers 31-127
one_byte = st.tuples(st.integers(0, 3), st.integers(1, 30)).map(lambda t: (t[0] << 6) | t[1])
two_byte = st.tuples(st.integers(0, 3), st.integers(31, 127)).map(lambda t: (((t[0] << 6) | 0x1F) << 8) | t[1])
primitive_tags = st.one_of(one_byte, two_byte)


@given(st.lists(st.tuples(primitive_tags, st.binary(max_size=300)), max_size=8))
def test_primitive_round_trip(items: list[tuple[int, bytes]]) -> None:
    data = tlv.encode_all(items)
    parsed = tlv.parse(data)
    assert [(t.tag, t.value) for t in parsed] == items
    assert b"".join(t.encode() for t in parsed) == data


@given(st.lists(st.tuples(primitive_tags, st.binary(max_size=40)), max_size=5))
def test_constructed_round_trip(items: list[tuple[int, bytes]]) -> None:
    inner = tlv.encode_all(items)
    outer = tlv.encode(0xE3, inner)
    (top,) = tlv.parse(outer)
    assert top.constructed
    assert [(c.tag, c.value) for c in top.children] == items


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=600)), max_size=6))
def test_dgi_round_trip(items: list[tuple[int, bytes]]) -> None:
    data = b"".join(tlv.encode_dgi(d, v) for d, v in items)
    assert tlv.parse_dgis(data) == items


@pytest.mark.parametrize(("n", "encoded"), [(0, "00"), (127, "7F"), (128, "8180"), (255, "81FF"),
                                            (256, "820100"), (65535, "82FFFF"), (65536, "83010000")])
def test_length_forms(n: int, encoded: str) -> None:
    assert tlv.encode_length(n).hex().upper() == encoded


@pytest.mark.parametrize("bad", ["9F", "5A05", "5A8101", "5A80", "5A84000000010000", "9F7F0201"])
def test_malformed_is_tlv_error(bad: str) -> None:
    with pytest.raises(tlv.TlvError):
        tlv.parse(bytes.fromhex(bad))


@given(st.binary(max_size=64))
def test_parse_random_bytes_only_raises_tlv_error(raw: bytes) -> None:
    try:
        tlv.parse(raw)
    except tlv.TlvError:
        pass


def test_dgi_long_form() -> None:
    value = bytes(300)
    enc = tlv.encode_dgi(0x8201, value)
    assert enc[:5].hex().upper() == "8201FF012C"
    with pytest.raises(tlv.TlvError):
        tlv.parse_dgis(enc[:-1])


@given(st.binary(max_size=600))
@settings(max_examples=400)
def test_dgi_parsing_by_hand_agrees_with_the_construct(data: bytes) -> None:
    """parse_dgis reads well-formed DGIs by hand (the perso hot path): on any bytes it gives what the
    construct definition (cardlab.cardspec.dgi.DGI) gives, or the same error."""
    from cardlab.cardspec.tlv import _parse_dgis_construct

    try:
        expected: object = _parse_dgis_construct(data)
    except tlv.TlvError as exc:
        expected = str(exc)
    try:
        got: object = tlv.parse_dgis(data)
    except tlv.TlvError as exc:
        got = str(exc)
    assert got == expected


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=6))
def test_dgis_round_trip(items: list[tuple[int, bytes]]) -> None:
    assert tlv.parse_dgis(b"".join(tlv.encode_dgi(d, v) for d, v in items)) == items

"""The FCP template (ISO 7816-4 §7.4.3) as declared in emulator/filesystem/fcp.py and access.py:
every structure is a round trip (build → parse → same value, parse → build → same bytes)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.cardspec import tlv
from cardlab.emulator.apdu import SW, StatusError
from cardlab.emulator.filesystem import fcp
from cardlab.emulator.filesystem.access import COMPACT_ACL, SC_ALL, SC_PIN, SC_SM, compact_acl, parse_acl
from cardlab.emulator.filesystem.fcp import (
    FDB_CYCLIC,
    FDB_DF,
    FDB_LINEAR_FIXED,
    FDB_LINEAR_VARIABLE,
    FDB_TRANSPARENT,
    MAX_RECORD_LENGTH,
    MAX_RECORDS,
    MAX_TRANSPARENT_SIZE,
    FileSpec,
)

# -- known answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fcp_hex", "spec"), fcp.EXAMPLES, ids=[h[:12] for h, _ in fcp.EXAMPLES])
def test_known_answers_both_ways(fcp_hex: str, spec: FileSpec) -> None:
    assert spec.build().hex() == fcp_hex
    assert FileSpec.parse(bytes.fromhex(fcp_hex)) == spec


# -- strategies --------------------------------------------------------------------------------------

SC_BYTES = st.sampled_from([0x00, 0xFF, SC_SM, SC_PIN, SC_SM | SC_PIN, SC_ALL | SC_SM, SC_ALL | SC_SM | SC_PIN])
ACL_RULES = st.dictionaries(st.sampled_from([1 << b for b in range(7)]), SC_BYTES, min_size=1)


@st.composite
def file_specs(draw: st.DrawFn) -> FileSpec:
    """Any spec the card accepts (§7.4.3, §7.4.5 and the limits in fcp.py)."""
    fid = draw(st.integers(0x0000, 0xFFFE).filter(lambda f: f != 0x3FFF))
    fdb = draw(st.sampled_from([FDB_DF, FDB_TRANSPARENT, FDB_LINEAR_FIXED, FDB_LINEAR_VARIABLE, FDB_CYCLIC]))
    dcb = draw(st.integers(0, 255))
    acl = draw(st.none() | ACL_RULES.map(compact_acl))
    if fdb == FDB_DF:
        return FileSpec(fid, fdb, dcb, name=draw(st.binary(max_size=16)), acl=acl)
    sfi = draw(st.none() | st.integers(1, 30))
    if fdb == FDB_TRANSPARENT:
        return FileSpec(fid, fdb, dcb, size=draw(st.integers(0, MAX_TRANSPARENT_SIZE)), sfi=sfi, acl=acl)
    rec_len = draw(st.integers(1, MAX_RECORD_LENGTH))
    max_records = draw(st.integers(1, MAX_RECORDS))
    return FileSpec(fid, fdb, dcb, rec_len=rec_len, max_records=max_records, sfi=sfi, acl=acl)


# -- the template ------------------------------------------------------------------------------------


@given(file_specs())
def test_build_then_parse_gives_the_spec(spec: FileSpec) -> None:
    assert FileSpec.parse(spec.build()) == spec


@given(file_specs())
def test_parse_then_build_gives_the_bytes(spec: FileSpec) -> None:
    raw = spec.build()
    assert FileSpec.parse(raw).build() == raw


@given(st.lists(st.tuples(st.sampled_from(sorted(fcp.KNOWN_FCP_TAGS)), st.binary(max_size=6)), max_size=8))
def test_any_template_is_refused_with_6a80_or_rebuilds_stably(objects: list[tuple[int, bytes]]) -> None:
    """Arbitrary data objects: 6A80, or a spec whose canonical FCP parses back to itself."""
    raw = tlv.encode(0x62, tlv.encode_all(objects))
    try:
        spec = FileSpec.parse(raw)
    except StatusError as err:
        assert err.sw == SW.WRONG_DATA
        return
    assert FileSpec.parse(spec.build()) == spec


# -- the data objects' layouts ------------------------------------------------------------------------

DESCRIPTORS = st.one_of(
    st.builds(lambda fdb, dcb: {"fdb": fdb, "dcb": dcb, "record": None},
              st.sampled_from([FDB_DF, FDB_TRANSPARENT]), st.integers(0, 255)),
    st.builds(lambda fdb, dcb, n, c: {"fdb": fdb, "dcb": dcb, "record": {"length": n, "count": c}},
              st.sampled_from([FDB_LINEAR_FIXED, FDB_LINEAR_VARIABLE, FDB_CYCLIC]),
              st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 255)),
)


def _plain(value: Any) -> Any:
    """construct's Containers as plain dicts (without its private '_io' entries)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@given(DESCRIPTORS)
def test_file_descriptor_round_trip(value: dict[str, Any]) -> None:
    layout = fcp.FCP_OBJECTS[0x82]
    raw = layout.build(value)
    assert len(raw) == (5 if value["record"] else 2)
    assert _plain(layout.parse(raw)) == value
    assert layout.build(layout.parse(raw)) == raw


@pytest.mark.parametrize(
    ("tag", "values"),
    [
        (0x80, st.integers(0, 0xFFFFFF)),
        (0x83, st.integers(0, 0xFFFF)),
        (0x84, st.binary(min_size=1, max_size=16)),
        (0x88, st.none() | st.integers(0, 31).map(lambda s: {"sfi": s})),
        (0x8A, st.integers(0, 255)),
    ],
    ids=lambda v: f"{v:02X}" if isinstance(v, int) else "",
)
@given(data=st.data())
def test_data_object_round_trip(tag: int, values: st.SearchStrategy[Any], data: st.DataObject) -> None:
    layout = fcp.FCP_OBJECTS[tag]
    value = data.draw(values)
    raw = layout.build(value)
    assert _plain(layout.parse(raw)) == value
    assert layout.build(layout.parse(raw)) == raw


@given(ACL_RULES)
def test_compact_acl_round_trip(rules: dict[int, int]) -> None:
    raw = compact_acl(rules)
    assert parse_acl(raw) == rules
    assert compact_acl(parse_acl(raw)) == raw
    assert bytes(COMPACT_ACL.build(COMPACT_ACL.parse(raw))) == raw


@given(st.binary(min_size=1, max_size=9))
def test_compact_acl_refuses_a_wrong_number_of_sc_bytes(raw: bytes) -> None:
    expected = 1 + bin(raw[0] & 0x7F).count("1")
    if raw[0] & 0x80 or len(raw) != expected:
        with pytest.raises(StatusError) as info:
            parse_acl(raw)
        assert info.value.sw == SW.WRONG_DATA

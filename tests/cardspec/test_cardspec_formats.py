"""The card side's declarative formats (cardlab.cardspec: signed_data, cplc,
gp_keyinfo, dgi): every known answer next to a structure parses to its fields
and builds back to its bytes; hypothesis round trips parse(build(x)) == x and
build(parse(b)) == b; the public openemv blocks of vectors/oda_public.json,
recovered with plain pow, parse to the fields the vectors give."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.cardspec import cplc, dgi, gp_keyinfo, signed_data, tlv
from cardlab.cardspec.signed_data import (
    CDA_DYNAMIC_DATA,
    ICC_PK_CERTIFICATE,
    ISSUER_PK_CERTIFICATE,
    SIGNED_DYNAMIC_DATA,
    SIGNED_STATIC_DATA,
)

ROOT = Path(__file__).resolve().parents[2]

#: (structure, parameters, encoding, fields) of every example next to a structure
KNOWN = [
    *signed_data.EXAMPLES,
    *[(cplc.CPLC, {}, b, f) for b, f in cplc.EXAMPLES],
    *[(gp_keyinfo.KEY_INFORMATION_DATA, {}, b, f) for b, f in gp_keyinfo.EXAMPLES],
    *[(dgi.DGI, {}, b, f) for b, f in dgi.EXAMPLES],
]


@pytest.mark.parametrize("layout, sizes, encoding, fields", KNOWN, ids=lambda v: getattr(v, "hex", lambda: "")()[:16])
def test_known_answers(layout: Any, sizes: dict[str, int], encoding: bytes, fields: dict[str, Any]) -> None:
    assert layout.parse(encoding, **sizes) == fields
    assert layout.build(fields, **sizes) == encoding


# -- hypothesis: parse(build(x)) == x and build(parse(b)) == b -------------------------------

byte = st.integers(0, 0xFF)


def blob(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@st.composite
def certificate(draw: st.DrawFn, issuer: bool) -> tuple[Any, dict[str, int], dict[str, Any]]:
    """A recovered issuer (Table 13) or ICC (Table 14) certificate as fields, and its key length."""
    n = draw(st.integers(64, 248))
    head = {"issuer_id": draw(blob(4))} if issuer else {"pan": draw(blob(10))}
    room = n - (36 if issuer else 42)
    fields = {
        "header": b"\x6a", "format": b"\x02" if issuer else b"\x04", **head, "expiry": draw(blob(2)),
        "serial": draw(blob(3)), "hash_algorithm": draw(byte), "pk_algorithm": draw(byte),
        "pk_length": draw(byte), "exponent_length": draw(byte), "key_field": draw(blob(room)),
        "hash": draw(blob(20)), "trailer": b"\xbc",
    }  # fmt: skip
    return (ISSUER_PK_CERTIFICATE, {"n_ca": n}, fields) if issuer else (ICC_PK_CERTIFICATE, {"n_i": n}, fields)


@st.composite
def ssad(draw: st.DrawFn) -> tuple[Any, dict[str, int], dict[str, Any]]:
    n = draw(st.integers(64, 248))
    fields = {"header": b"\x6a", "format": b"\x03", "hash_algorithm": draw(byte), "dac": draw(blob(2)),
              "pad": draw(blob(n - 26)), "hash": draw(blob(20)), "trailer": b"\xbc"}
    return SIGNED_STATIC_DATA, {"n_i": n}, fields


@st.composite
def sdad(draw: st.DrawFn) -> tuple[Any, dict[str, int], dict[str, Any]]:
    n = draw(st.integers(64, 248))
    data = draw(st.binary(max_size=min(255, n - 25)))
    fields = {"header": b"\x6a", "format": b"\x05", "hash_algorithm": draw(byte), "dynamic_data_length": len(data),
              "dynamic_data": data, "pad": draw(blob(n - 25 - len(data))), "hash": draw(blob(20)),
              "trailer": b"\xbc"}
    return SIGNED_DYNAMIC_DATA, {"n_ic": n}, fields


@st.composite
def cda(draw: st.DrawFn) -> tuple[Any, dict[str, int], dict[str, Any]]:
    number = draw(st.binary(min_size=2, max_size=8))
    fields = {"number_length": len(number), "number": number, "cid": draw(byte), "cryptogram": draw(blob(8)),
              "transaction_data_hash": draw(blob(20))}
    return CDA_DYNAMIC_DATA, {}, fields


@st.composite
def cplc_data(draw: st.DrawFn) -> tuple[Any, dict[str, int], dict[str, Any]]:
    return cplc.CPLC, {}, {sc.name: draw(blob(sc.sizeof())) for sc in cplc.CPLC.subcons}


@st.composite
def key_information(draw: st.DrawFn) -> tuple[Any, dict[str, int], dict[str, Any]]:
    parts = draw(st.lists(st.fixed_dictionaries({"type": byte, "length": byte}), max_size=4))
    return gp_keyinfo.KEY_INFORMATION_DATA, {}, {"key_id": draw(byte), "version": draw(byte), "components": parts}


@st.composite
def dgi_item(draw: st.DrawFn) -> tuple[Any, dict[str, int], dict[str, Any]]:
    value = draw(st.binary(max_size=600))
    return dgi.DGI, {}, {"dgi": draw(st.integers(0, 0xFFFF)), "length": len(value), "value": value}


ANY_STRUCTURE = st.one_of(certificate(True), certificate(False), ssad(), sdad(), cda(), cplc_data(), key_information(),
                          dgi_item())


@given(ANY_STRUCTURE)
def test_round_trips(case: tuple[Any, dict[str, int], dict[str, Any]]) -> None:
    layout, sizes, fields = case
    encoding = layout.build(fields, **sizes)
    assert layout.parse(encoding, **sizes) == fields  # parse(build(x)) == x
    assert layout.build(layout.parse(encoding, **sizes), **sizes) == encoding  # build(parse(b)) == b


@given(st.integers(64, 248).flatmap(lambda n: st.tuples(st.just(n), blob(n - 3))))
def test_any_certificate_bytes_round_trip(case: tuple[int, bytes]) -> None:
    n, middle = case
    for layout, fmt, sizes in ((ISSUER_PK_CERTIFICATE, 2, {"n_ca": n}), (ICC_PK_CERTIFICATE, 4, {"n_i": n}),
                               (SIGNED_STATIC_DATA, 3, {"n_i": n})):
        block = bytes((0x6A, fmt)) + middle + b"\xbc"
        assert layout.build(layout.parse(block, **sizes), **sizes) == block


def test_dgi_long_form_of_a_short_length_parses_and_builds_short() -> None:
    fields = dgi.DGI.parse(bytes.fromhex("0101 FF0002 AAAA"))
    assert (fields.dgi, fields.value) == (0x0101, bytes.fromhex("AAAA"))
    assert dgi.DGI.build(fields) == bytes.fromhex("0101 02 AAAA")


def test_key_information_template_wraps_and_unwraps() -> None:
    keys = [f for _, f in gp_keyinfo.EXAMPLES]
    template = gp_keyinfo.key_information_template(keys)
    assert tlv.parse(template)[0].tag == 0xE0
    assert gp_keyinfo.parse_key_information_template(template) == keys


# -- the public openemv blocks (vectors/oda_public.json) -----------------------------------


def _public_blocks() -> Iterator[tuple[str, Any, dict[str, int], bytes, dict[str, Any]]]:
    doc = json.loads((ROOT / "vectors" / "oda_public.json").read_text())
    cases = {c["name"]: c for c in doc["cases"]}
    ca = {(k["rid"], k["index"]): (int(k["modulus"], 16), int(k["exponent"], 16)) for k in doc["ca_keys"]}

    def key_of(name: str) -> tuple[int, int]:
        c = cases[name]
        return int(c["expect"]["modulus"], 16), int(c["exponent"], 16)

    def recover(signed: str, key: tuple[int, int]) -> bytes:
        n, e = key
        size = (n.bit_length() + 7) // 8
        return pow(int(signed, 16), e, n).to_bytes(size, "big")

    for c in doc["cases"]:
        if c["expect"].get("ok") is False or c["expect"].get("ok_frame") is False or "modulus_differs" in c["expect"]:
            continue  # emv-utils' corruptions: no valid block to parse
        if c["kind"] == "issuer_certificate":
            block = recover(c["certificate"], ca[tuple(c["ca"])])
            yield c["name"], ISSUER_PK_CERTIFICATE, {"n_ca": len(block)}, block, c["expect"]
        elif c["kind"] == "icc_certificate":
            block = recover(c["certificate"], key_of(c["issuer"]))
            yield c["name"], ICC_PK_CERTIFICATE, {"n_i": len(block)}, block, c["expect"]
        elif c["kind"] == "ssad":
            block = recover(c["signed"], key_of(c["issuer"]))
            yield c["name"], SIGNED_STATIC_DATA, {"n_i": len(block)}, block, c["expect"]
        elif c["kind"] == "sdad":
            block = recover(c["signed"], key_of(c["icc"]))
            yield c["name"], SIGNED_DYNAMIC_DATA, {"n_ic": len(block)}, block, c["expect"]


PUBLIC = list(_public_blocks())


def test_public_vectors_cover_every_recovered_format() -> None:
    assert {layout for _, layout, *_ in PUBLIC} == {ISSUER_PK_CERTIFICATE, ICC_PK_CERTIFICATE, SIGNED_STATIC_DATA,
                                                     SIGNED_DYNAMIC_DATA}


@pytest.mark.parametrize("name, layout, sizes, block, expect", PUBLIC, ids=[p[0] for p in PUBLIC])
def test_public_vector_fields(name: str, layout: Any, sizes: dict[str, int], block: bytes,
                              expect: dict[str, Any]) -> None:
    f = layout.parse(block, **sizes)
    assert layout.build(f, **sizes) == block
    if "hash" in expect:
        assert f.hash.hex().upper() == expect["hash"]
    if "hash_algorithm" in expect:
        assert f.hash_algorithm == expect["hash_algorithm"]
    for key in ("issuer_id", "pan", "expiry", "serial"):
        if key in expect:
            assert f[key].hex().upper() == expect[key]
    for key in ("pk_algorithm", "pk_length", "exponent_length"):
        if key in expect:
            assert f[key] == expect[key]
    if "modulus" in expect and f.pk_length <= len(f.key_field):
        assert f.key_field[: f.pk_length].hex().upper() == expect["modulus"]
    if "dac" in expect:
        assert f.dac.hex().upper() == expect["dac"]
    if "cid" in expect:  # CDA: the ICC dynamic data is Table 19's
        d = CDA_DYNAMIC_DATA.parse(f.dynamic_data)
        assert (d.number.hex().upper(), bytes((d.cid,)).hex().upper(), d.cryptogram.hex().upper(),
                d.transaction_data_hash.hex().upper()) == (expect["idn"], expect["cid"], expect["ac"],
                                                           expect["transaction_data_hash"])


@given(st.integers(0, 0xFFFF), st.one_of(st.binary(max_size=300), st.integers(250, 260).map(bytes)))
def test_hand_built_dgi_is_the_construct_declaration(tag: int, value: bytes) -> None:
    """tlv.encode_dgi's fast path (the perso hot path) builds exactly what dgi.DGI declares,
    around the one-byte / FF-prefixed length boundary too."""
    assert tlv.encode_dgi(tag, value) == dgi.DGI.build({"dgi": tag, "value": value})

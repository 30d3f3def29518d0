"""The tester's own declarative formats (cardlab.tester.formats): the known
answers next to them, hypothesis round trips (parse(build(x)) == x,
build(parse(b)) == b, for any bytes: the structures validate nothing), and
the public openemv blocks of vectors/oda_public.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.tester import formats, gp, rsa
from cardlab.tester.capk import CaKeyList
from cardlab.tester.formats import (
    CDA_DYNAMIC_DATA,
    CPLC,
    ICC_CERTIFICATE,
    ISSUER_CERTIFICATE,
    SIGNED_DYNAMIC_DATA,
    SIGNED_STATIC_DATA,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("layout, sizes, encoding, fields", formats.EXAMPLES,
                         ids=[str(i) for i in range(len(formats.EXAMPLES))])
def test_known_answers(layout: Any, sizes: dict[str, int], encoding: bytes, fields: dict[str, Any]) -> None:
    assert layout.parse(encoding, **sizes) == fields
    assert layout.build(fields, **sizes) == encoding


def _blob(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


#: (structure, smallest block) of the blocks sized by the recovering key
SIZED = [(ISSUER_CERTIFICATE, 36), (ICC_CERTIFICATE, 42), (SIGNED_STATIC_DATA, 26)]


@given(st.sampled_from(SIZED).flatmap(
    lambda sized: st.tuples(st.just(sized[0]), st.integers(sized[1], 248).flatmap(_blob))))
def test_any_block_round_trips(case: tuple[Any, bytes]) -> None:
    layout, block = case
    fields = layout.parse(block, n=len(block))
    assert layout.build(fields, n=len(block)) == block  # build(parse(b)) == b
    assert layout.parse(layout.build(fields, n=len(block)), n=len(block)) == fields  # parse(build(x)) == x


@st.composite
def sdad_block(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(64, 248))
    ldd = draw(st.integers(0, min(255, n - 25)))
    return bytes(draw(_blob(3))) + bytes((ldd,)) + draw(_blob(n - 4))


@given(sdad_block())
def test_sdad_round_trips(block: bytes) -> None:
    fields = SIGNED_DYNAMIC_DATA.parse(block, n=len(block))
    assert SIGNED_DYNAMIC_DATA.build(fields, n=len(block)) == block
    assert SIGNED_DYNAMIC_DATA.parse(SIGNED_DYNAMIC_DATA.build(fields, n=len(block)), n=len(block)) == fields


@given(st.binary(min_size=2, max_size=8), _blob(1), _blob(8), _blob(20))
def test_cda_dynamic_data_round_trips(number: bytes, cid: bytes, ac: bytes, tdhc: bytes) -> None:
    fields = {"number_length": len(number), "number": number, "cid": cid, "cryptogram": ac,
              "transaction_data_hash": tdhc}
    encoding = CDA_DYNAMIC_DATA.build(fields)
    assert encoding == bytes((len(number),)) + number + cid + ac + tdhc
    assert CDA_DYNAMIC_DATA.parse(encoding) == fields


@given(_blob(42))
def test_cplc_round_trips_and_parse_cplc_reads_it(data: bytes) -> None:
    fields = CPLC.parse(data)
    assert CPLC.build(fields) == data
    assert CPLC.parse(CPLC.build(fields)) == fields
    assert gp.parse_cplc(bytes.fromhex("9F7F2A") + data) == {k: v.hex().upper() for k, v in fields.items()
                                                                if not k.startswith("_")}


def test_short_cplc_is_refused() -> None:
    with pytest.raises(gp.GpError, match="41 bytes, expected 42"):
        gp.parse_cplc(bytes(41))


# -- the public openemv blocks, recovered with the tester's own RSA ----------------------------

VECTORS = json.loads((ROOT / "vectors" / "oda_public.json").read_text())
CASES = {c["name"]: c for c in VECTORS["cases"]}
KEYS = CaKeyList.from_document(VECTORS["ca_keys"])


def _key(name: str) -> tuple[int, int]:
    return int(CASES[name]["expect"]["modulus"], 16), int(CASES[name]["exponent"], 16)


def test_public_issuer_certificate_fields() -> None:
    c = CASES["visa94-issuer-certificate"]
    ca = KEYS.find(bytes.fromhex(c["ca"][0]), int(c["ca"][1], 16))
    assert ca is not None
    block = rsa.recover(bytes.fromhex(c["certificate"]), ca.n, ca.e)
    f = ISSUER_CERTIFICATE.parse(block, n=len(block))
    assert (f.header, f.format, f.trailer) == (0x6A, 0x02, 0xBC)
    assert (f.issuer_id.hex().upper(), f.expiry.hex(), f.serial.hex().upper(), f.pk_length) == (
        c["expect"]["issuer_id"], c["expect"]["expiry"], c["expect"]["serial"], c["expect"]["pk_length"])
    assert f.key_field[: f.pk_length].hex().upper() == c["expect"]["modulus"]
    assert ISSUER_CERTIFICATE.build(f, n=len(block)) == block


def test_public_icc_certificate_ssad_and_sdad_fields() -> None:
    c = CASES["mcF1-icc-certificate"]
    block = rsa.recover(bytes.fromhex(c["certificate"]), *_key(c["issuer"]))
    f = ICC_CERTIFICATE.parse(block, n=len(block))
    assert (f.pan.hex().upper(), f.hash.hex().upper()) == (c["expect"]["pan"], c["expect"]["hash"])
    assert ICC_CERTIFICATE.build(f, n=len(block)) == block

    c = CASES["visa94-ssad"]
    block = rsa.recover(bytes.fromhex(c["signed"]), *_key(c["issuer"]))
    s = SIGNED_STATIC_DATA.parse(block, n=len(block))
    assert (s.dac.hex().upper(), s.hash.hex().upper()) == (c["expect"]["dac"], c["expect"]["hash"])
    assert set(s.pad) == {0xBB}

    c = CASES["mcF1-cda-sdad"]
    block = rsa.recover(bytes.fromhex(c["signed"]), *_key(c["icc"]))
    d = SIGNED_DYNAMIC_DATA.parse(block, n=len(block))
    assert d.hash.hex().upper() == c["expect"]["hash"]
    dd = CDA_DYNAMIC_DATA.parse(d.dynamic_data)
    assert (dd.number.hex().upper(), dd.cid.hex(), dd.cryptogram.hex().upper()) == (
        c["expect"]["idn"], c["expect"]["cid"], c["expect"]["ac"])
    assert next(e for e in formats.EXAMPLES if e[0] is SIGNED_DYNAMIC_DATA)[2] == block

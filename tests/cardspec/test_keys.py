"""GP key diversification against GlobalPlatformPro's known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cardlab.cardspec.keys import diversify, kcv

DOC = json.loads((Path(__file__).parents[2] / "vectors" / "diversification.json").read_text())


def test_vector_file_cites_its_source() -> None:
    assert "GlobalPlatformPro" in DOC["source"]


@pytest.mark.parametrize("vec", DOC["vectors"], ids=lambda v: v["name"])
def test_diversification_vectors(vec: dict[str, Any]) -> None:
    master, kdd = bytes.fromhex(vec["master"]), bytes.fromhex(vec["kdd"])
    keys = diversify(vec["scheme"], master, kdd)
    assert all(len(k) == len(master) for k in keys)
    assert len(set(keys)) == 3
    if "kcv" in vec:
        assert [kcv(vec["kcv_kind"], k).hex().upper() for k in keys] == vec["kcv"]
    if "enc" in vec:
        assert keys[0].hex().upper() == vec["enc"]
    # case-insensitive scheme names
    assert diversify(vec["scheme"].lower(), master, kdd) == keys


def test_bad_inputs() -> None:
    master = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
    with pytest.raises(ValueError):
        diversify("EMV", master, bytes(9))
    with pytest.raises(ValueError):
        diversify("NOPE", master, bytes(10))
    with pytest.raises(ValueError):
        diversify("EMV", bytes(32), bytes(10))
    with pytest.raises(ValueError):
        diversify("KDF3", bytes(8), bytes(10))

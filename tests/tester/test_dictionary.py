"""The tester's data dictionary (cardlab.tester.dictionary) names every tag that the
cards, the issuer profiles and the DGI map of this repository use."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from cardlab.tester import dictionary
from cardlab.tester.tlv import parse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "emv"))

from cardmaker import Profile, build

#: tags docs/dgi-map.md places in DGIs (read off the document)
DGI_MAP_TAGS = [0x4F, 0x50, 0x5F28, 0x5F2D, 0x61, 0x6F, 0x70, 0x77, 0x80, 0x82, 0x84, 0x87, 0x8E, 0x94, 0x9F11,
                0x9F12, 0x9F13, 0x9F14, 0x9F17, 0x9F23, 0x9F2E, 0x9F36, 0x9F38, 0x9F42, 0x9F47, 0x9F4D, 0x9F4F,
                0x9F52, 0xA5, 0xBF0C, 0xDF01, 0xDF02, 0xDF11, 0xDF12, 0xDF13, 0xDF14, 0xDF15, 0xDF16, 0xDF17]


def _walk(data: bytes, out: set[int]) -> None:
    for t in parse(data):
        out.add(t.tag)
        if t.constructed:
            _walk(t.value, out)


def card_tags() -> set[int]:
    tags: set[int] = set()
    for oda in ("SDA", "DDA", "CDA", ""):
        cd = build(Profile(oda=oda, log=True))
        for dgi, value in cd.dgis:
            if dgi < 0x8000 and dgi not in (0x9000, 0x9010):  # TLV DGIs (records, FCI, GPO, risk data)
                _walk(value, tags)
    return tags


def profile_tags() -> set[int]:
    tags: set[int] = set()
    for path in sorted((ROOT / "vectors" / "profiles").glob("*.yaml")):
        text = path.read_text()
        tags |= {int(t, 16) for t in re.findall(r"\b([0-9A-F]{2,4}):\d+", text)}  # DOL entries "9F37:4"
        for listed in re.findall(r"sda_tag_list:\s*\[([^\]]*)\]", text):
            tags |= {int(t, 16) for t in re.findall(r"[0-9A-F]{2,4}", listed)}
    return tags


def test_size_and_shape() -> None:
    assert len(dictionary.TABLE) >= 150
    for tag, el in dictionary.TABLE.items():
        assert el.tag == tag and el.name and el.format in ("a", "an", "ans", "b", "cn", "n", "var"), el
        assert el.source


@pytest.mark.parametrize("source", ["cards", "profiles", "dgi-map"])
def test_every_used_tag_has_a_name(source: str) -> None:
    tags = {"cards": card_tags, "profiles": profile_tags, "dgi-map": lambda: set(DGI_MAP_TAGS)}[source]()
    assert tags, source
    unknown = sorted(f"{t:X}" for t in tags if dictionary.lookup(t) is None)
    assert not unknown, f"{source}: no name for {unknown}"


def test_names_and_unknown() -> None:
    assert dictionary.name(0x9F4B) == "Signed Dynamic Application Data"
    assert dictionary.name(0x5A) == "Application Primary Account Number (PAN)"
    assert dictionary.name(0x9F99) == "Unknown data object 9F99"
    assert dictionary.format_of(0x9F02) == "n" and dictionary.format_of(0x9F99) == "b"
    assert 0x70 in dictionary.TEMPLATES and 0x9F4A not in dictionary.TEMPLATES


def test_dol_padding() -> None:
    """Book 3 §5.4: n left-padded/truncated, cn right-padded with F, b with 00."""
    assert dictionary.dol_value(0x9F02, b"\x10\x00", 6) == bytes.fromhex("000000001000")
    assert dictionary.dol_value(0x9F02, bytes.fromhex("000000001000"), 2) == bytes.fromhex("1000")
    assert dictionary.dol_value(0x5A, bytes.fromhex("4761"), 4) == bytes.fromhex("4761FFFF")
    assert dictionary.dol_value(0x9F4E, b"AB", 4) == b"AB\x00\x00"
    assert dictionary.dol_value(0x9F37, None, 4) == bytes(4)

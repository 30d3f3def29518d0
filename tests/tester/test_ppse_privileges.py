"""DIR-002 (PPSE), DIR-003 (PSE directory) and PRIV-001 (GP privileges over
SCP03): a card personalized by the EMV CPS script passes; each corruption of
the script fails on its rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardlab.pytest_plugin import PersonalizedCard, Personalizer, Terminal
from cardlab.tester import sources
from cardlab.tester.certify import directories
from cardlab.tester.rules import FAIL, NA, NOT_RUN, PASS, RULES
from cardlab.tester.tlv import encode

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "vectors" / "profiles" / "mastercard-cvn16.yaml"
KEYSTORE = ROOT / "vectors" / "test-keystore.json"
SCRIPT = ROOT / "vectors" / "scripts" / "emv-cps.yaml"
RECORD = {"pan": "5413339001010166", "psn": "01", "expiry": "2035-12", "name": "TEST/CARD", "pin": "1234"}
NEW_RULES = ("DIR-002", "DIR-003", "PRIV-001")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Personalizer:
    return Personalizer(tmp_path_factory.mktemp("kit"), today=date(2026, 1, 15))


def _step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["name"] == name)


def _card(kit: Personalizer, tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> PersonalizedCard:
    doc = yaml.safe_load(SCRIPT.read_text())
    if change is not None:
        change(doc)
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return kit(PROFILE, RECORD, KEYSTORE, script=path)


def _verdicts(card: PersonalizedCard, gp_status: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    rep = Terminal(card).certify(gp_status=gp_status)
    return {r.rule: r.verdict for r in rep.results if not r.app}, {r.rule: r.evidence for r in rep.results if not r.app}


def test_rules_in_catalogue() -> None:
    assert "Book 1 §12.3" in RULES["DIR-002"].reference and "Contactless Book B" in RULES["DIR-002"].reference
    assert "Book 1 §12" in RULES["DIR-003"].reference
    assert "GP Card Spec 2.3 §11.4" in RULES["PRIV-001"].reference
    doc = (ROOT / "docs" / "rules.md").read_text()
    assert all(f"`{rid}`" in doc for rid in NEW_RULES) and f"({len(RULES)} rules)" in doc


def test_clean_card_passes(kit: Personalizer, tmp_path: Path) -> None:
    card = _card(kit, tmp_path)
    rep = Terminal(card).certify(gp_status=True)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed]
    v, ev = _verdicts(card)
    assert {rid: v[rid] for rid in NEW_RULES} == {"DIR-002": PASS, "DIR-003": PASS, "PRIV-001": PASS}, ev
    assert "A0000000041010" in ev["PRIV-001"] and "325041592E5359532E4444463031" in ev["PRIV-001"]


def test_privileges_opt_in(kit: Personalizer, tmp_path: Path) -> None:
    v, ev = _verdicts(_card(kit, tmp_path), gp_status=False)
    assert v["PRIV-001"] == NOT_RUN and "--no-gp-status" in ev["PRIV-001"]
    assert v["DIR-002"] == PASS  # the directories need no GP keys


def test_missing_ppse_fails(kit: Personalizer, tmp_path: Path) -> None:
    def drop(doc: dict[str, Any]) -> None:
        doc["steps"].remove(_step(doc, "install PPSE"))

    v, ev = _verdicts(_card(kit, tmp_path, drop))
    assert v["DIR-002"] == FAIL and "6A82" in ev["DIR-002"]
    assert v["DIR-003"] == PASS and v["PRIV-001"] == PASS


def test_readdressed_ppse_fails(kit: Personalizer, tmp_path: Path) -> None:
    def move(doc: dict[str, Any]) -> None:
        _step(doc, "install PPSE")["install"]["aid"] = "325041592E5359532E4444463032"  # 2PAY.SYS.DDF02

    v, _ev = _verdicts(_card(kit, tmp_path, move))
    assert v["DIR-002"] == FAIL


def test_missing_pse_not_applicable(kit: Personalizer, tmp_path: Path) -> None:
    def drop(doc: dict[str, Any]) -> None:
        doc["steps"].remove(_step(doc, "install PSE"))

    v, _ev = _verdicts(_card(kit, tmp_path, drop))
    assert v["DIR-003"] == NA and v["DIR-002"] == PASS


@pytest.mark.parametrize("step", ["install PPSE", "install PSE"])
def test_changed_directory_privileges_fail(kit: Personalizer, tmp_path: Path, step: str) -> None:
    def priv(doc: dict[str, Any]) -> None:
        _step(doc, step)["install"]["privileges"] = "01"

    v, ev = _verdicts(_card(kit, tmp_path, priv))
    assert v["PRIV-001"] == FAIL and "privileges 010000" in ev["PRIV-001"]
    assert v["DIR-002"] == PASS


def test_changed_application_privileges_fail(kit: Personalizer, tmp_path: Path) -> None:
    def priv(doc: dict[str, Any]) -> None:
        _step(doc, "install application")["install"]["privileges"] = "01"

    v, ev = _verdicts(_card(kit, tmp_path, priv))
    assert v["PRIV-001"] == FAIL and "A0000000041010: privileges 010000" in ev["PRIV-001"]


class _FakeDirectories:
    """A card whose PSE directory and PPSE list what the test gives them."""

    def __init__(self, pse: list[bytes], ppse: list[bytes]) -> None:
        self.pse, self.ppse = pse, ppse

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[1] == 0xA4 and directories.PPSE in apdu:
            a5 = encode(0xBF0C, b"".join(self.ppse))
            return encode(0x6F, encode(0x84, directories.PPSE) + encode(0xA5, a5)) + b"\x90\x00"
        if apdu[1] == 0xA4 and directories.PSE in apdu:
            return encode(0x6F, encode(0x84, directories.PSE) + encode(0xA5, encode(0x88, b"\x01"))) + b"\x90\x00"
        if apdu[1] == 0xB2 and apdu[2] == 1 and self.pse:
            return encode(0x70, b"".join(self.pse)) + b"\x90\x00"
        return b"\x6a\x83"

    def atr(self) -> bytes:
        return b""


def _entry(aid: str, label: str, prio: int) -> bytes:
    return encode(0x61, encode(0x4F, bytes.fromhex(aid)) + encode(0x50, label.encode()) + encode(0x87, bytes((prio,))))


def test_directories_list_exactly_the_profile_applications() -> None:
    prof = sources.load_profile(PROFILE)
    mine = _entry("A0000000041010", "MASTERCARD", 1)
    other = _entry("A0000000043060", "MAESTRO", 2)
    ok = directories.directory_results(_FakeDirectories([mine], [mine]), prof)
    assert [(r.rule, r.verdict) for r in ok] == [("DIR-002", PASS), ("DIR-003", PASS)]
    extra = directories.directory_results(_FakeDirectories([mine, other], [mine, mine]), prof)
    assert [r.verdict for r in extra] == [FAIL, FAIL]
    assert "listed twice" in extra[0].evidence and "A0000000043060" in extra[1].evidence
    wrong = directories.directory_results(_FakeDirectories([_entry("A0000000041010", "MASTERCARD", 2)],
                                                           [_entry("A0000000041010", "OTHER", 1)]), prof)  # fmt: skip
    assert [r.verdict for r in wrong] == [FAIL, FAIL] and "missing or different" in wrong[0].evidence

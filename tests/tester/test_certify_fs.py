"""File-system certification of the access-control badge: emulated cards
personalized with the badge sample (as tests/personalizer/test_badge.py
does), certified clean, then single corruptions each caught by the FS rule
that names them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardlab.emulator import Card
from cardlab.personalizer.badge import prepare_badges
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.script import execute, load_script
from cardlab.tester import sources
from cardlab.tester.certify import fs
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.rules import FAIL, FS_RULE_IDS, NA, PASS, RULES, Result

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
PROFILE = VECTORS / "profiles" / "badge.yaml"
RECORDS = VECTORS / "records" / "badge.csv"


@pytest.fixture(scope="module")
def ks() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(VECTORS / "test-keystore.json")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return fs.load_fs_profile(PROFILE)


def badge_card(ks: SoftwareKeyStore, doc: dict[str, Any], n: int = 0) -> Card:
    data = list(prepare_badges(yaml.safe_load(PROFILE.read_text()), RECORDS, ks))[n]
    kdd = bytes.fromhex("AABBCCDDEE") + n.to_bytes(5, "big")
    k = ks.diversify_card_keys("KMC", "KDF3", kdd)
    card = Card.create(keys=(k.enc, k.mac, k.dek), kdd=kdd)
    card.power_on()
    execute(load_script(VECTORS / "scripts" / "badge.yaml"), data, card.transmit, ks, profile=doc)
    card.power_on()
    return card


def ef(card: Card, fid: int) -> Any:
    return next(node for node in card.fs.root.walk() if node.spec.fid == fid)


def certify(card: Card, doc: dict[str, Any], n: int = 0) -> list[Result]:
    rec = fs.read_badge_records(RECORDS)[n]
    return fs.certify_fs(RecordingChannel(card.transmit), fs.expected_badge(doc, rec))


def failed(results: list[Result]) -> set[str]:
    return {r.rule for r in results if r.verdict == FAIL}


def test_profile_detection() -> None:
    assert fs.is_fs_profile(PROFILE)
    assert not fs.is_fs_profile(VECTORS / "profiles" / "visa-cvn18.yaml")
    for rid in ("FS-DF-001", "FS-DATA-001", "FS-REC-001", "FS-AC-001", "FS-AC-002", "FS-TYPE-001"):
        assert rid in RULES and "7816-4" in RULES[rid].reference


@pytest.mark.parametrize("n", [0, 1, 2])
def test_badges_certify_clean(ks: SoftwareKeyStore, doc: dict[str, Any], n: int) -> None:
    card = badge_card(ks, doc, n)
    res = certify(card, doc, n)
    assert not failed(res), [(r.rule, r.evidence) for r in res if r.verdict == FAIL]
    assert {r.rule for r in res if r.verdict == PASS} == set(FS_RULE_IDS)
    key = bytes(ef(card, 0x4204).data).hex().upper()
    assert key not in " ".join(r.evidence + r.found for r in res).upper()


def test_corrupt_file_byte(ks: SoftwareKeyStore, doc: dict[str, Any]) -> None:
    card = badge_card(ks, doc)
    ef(card, 0x4202).data[0] ^= 0x01
    res = certify(card, doc)
    assert failed(res) == {"FS-DATA-001"}
    assert "4202" in next(r.evidence for r in res if r.rule == "FS-DATA-001")


def test_key_ef_made_readable(ks: SoftwareKeyStore, doc: dict[str, Any]) -> None:
    card = badge_card(ks, doc)
    node = ef(card, 0x4204)
    node.spec = dataclasses.replace(node.spec, acl=bytes.fromhex("07FF4000"))  # read: always
    res = certify(card, doc)
    assert failed(res) == {"FS-AC-001", "FS-AC-002"}
    ev = next(r for r in res if r.rule == "FS-AC-002")
    assert "4204" in ev.evidence and bytes(node.data).hex().upper() not in (ev.evidence + ev.found).upper()


def test_dropped_premises_record(ks: SoftwareKeyStore, doc: dict[str, Any]) -> None:
    card = badge_card(ks, doc)
    ef(card, 0x4203).records.pop()
    res = certify(card, doc)
    assert failed(res) == {"FS-REC-001"}
    assert "record 3 missing" in next(r.evidence for r in res if r.rule == "FS-REC-001")


def test_wrong_file_type_and_update_allowed(ks: SoftwareKeyStore, doc: dict[str, Any]) -> None:
    card = badge_card(ks, doc)
    node = ef(card, 0x4201)
    node.spec = dataclasses.replace(node.spec, acl=bytes.fromhex("07FF0000"))  # update: always
    assert failed(certify(card, doc)) == {"FS-AC-001", "FS-AC-003"}


def test_record_of_another_holder_fails(ks: SoftwareKeyStore, doc: dict[str, Any]) -> None:
    card = badge_card(ks, doc, 0)
    assert {"FS-DATA-001", "FS-REC-001"} <= failed(certify(card, doc, 1))


def test_command_line_and_life_cycles(ks: SoftwareKeyStore, doc: dict[str, Any], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from cardlab.cli import main

    cards = tmp_path / "cards"
    cards.mkdir()
    for n in range(2):
        badge_card(ks, doc, n).save(cards / f"card-{n + 1:02d}.json")
    base = ["test", "certify", "--profile", str(PROFILE), "--records", str(RECORDS),
            "--keys", str(VECTORS / "test-keystore.json")]  # fmt: skip
    rc = main([*base, "--cards", str(cards), "--gp-status", "--report-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "FS-REC-001" in out or (tmp_path / "r").exists()
    # the key check for the life cycle: the channel opened with the KMC's keys
    rep = fs.certify_fs_card(RecordingChannel(Card.load(cards / "card-01.json").transmit), doc,
                                     fs.read_badge_records(RECORDS)[0], keys=sources.load_keystore(VECTORS / "test-keystore.json"),
                                     gp_status=True)  # fmt: skip
    v = {r.rule: r.verdict for r in rep.results}
    assert v["LIFE-CARD-002"] == PASS and v["LIFE-APP-003"] == NA and rep.verdict == PASS
    assert rep.pan_masked == "****0001"
    rc = main([*base, "--card", str(cards / "card-01.json"), "--record", "2", "--report-dir", str(tmp_path / "r2")])
    assert rc == 1

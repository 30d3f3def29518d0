"""``cardlab perso stock``: blank cards as the profile's GP details expect them
(ISD AID, KMC, diversification, key version), and option errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from enginekit import KMC_NAME
from prepkit import VISA, make_keystore

from cardlab.cli import main
from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    ks = make_keystore([VISA])
    ks.add_symmetric(KMC_NAME, "AES", "KMC", ks.clear_value("KMC"))
    path = tmp_path / "keys.json"
    ks.save(path)
    return path


def _open(card: Card, isd: bytes, kvn: int, keys: Path) -> HostSession:
    from cardlab.personalizer.keys import open_keystore

    resp = card.transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(isd))) + isd)
    assert resp[-2:] == b"\x90\x00", resp.hex()
    kdd = tlv.find(card.transmit(bytes.fromhex("80CA00CF00"))[:-2], 0xCF)
    assert kdd is not None
    with open_keystore(str(keys)) as ks:
        k = ks.diversify_card_keys(KMC_NAME, "KDF3", kdd.value)
    hs = HostSession(card.transmit, StaticKeys(k.enc, k.mac, k.dek, kvn))
    hs.open(0x33)
    return hs


def test_stock_from_the_profile(tmp_path: Path, keys: Path) -> None:
    doc = yaml.safe_load(VISA.read_text())
    doc["card"].update(isd_aid="A000000003000000", key_version=0x32)
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["perso", "stock", str(tmp_path / "stock"), "--count", "2", "--keys", str(keys),
                 "--profile", str(profile)]) == 0  # fmt: skip
    images = sorted((tmp_path / "stock").glob("card-*.json"))
    assert len(images) == 2
    card = Card.load(images[0])
    card.power_on()
    hs = _open(card, bytes.fromhex("A000000003000000"), 0x32, keys)  # the profile's ISD, key version and KMC
    assert hs.send(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"


def test_explicit_options_win_over_the_profile(tmp_path: Path, keys: Path) -> None:
    assert main(["perso", "stock", str(tmp_path / "stock"), "--count", "1", "--keys", str(keys),
                 "--profile", str(VISA), "--key-version", "3A", "--isd-aid", "A000000151000001"]) == 0  # fmt: skip
    card = Card.load(next((tmp_path / "stock").glob("card-*.json")))
    card.power_on()
    _open(card, bytes.fromhex("A000000151000001"), 0x3A, keys)


@pytest.mark.parametrize("option", [["--key-version", "80"], ["--key-version", "zz"], ["--isd-aid", "A0"],
                                    ["--isd-aid", "nothex"]])
def test_bad_options_are_usage_errors(tmp_path: Path, keys: Path, option: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["perso", "stock", str(tmp_path / "stock"), "--count", "1", "--keys", str(keys), *option]) == 2
    assert not (tmp_path / "stock").exists()
    assert capsys.readouterr().err.startswith(f"cardlab perso stock: argument {option[0]}: ")


def test_stock_for_the_badge_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The badge profile has a card section too (no EMV applications): its stock is made from it."""
    badge = Path(__file__).resolve().parents[2] / "vectors" / "profiles" / "badge.yaml"
    keys = Path(__file__).resolve().parents[2] / "vectors" / "test-keystore.json"
    assert main(["perso", "stock", str(tmp_path / "stock"), "--count", "1", "--keys", str(keys),
                 "--profile", str(badge)]) == 0  # fmt: skip
    card = Card.load(next((tmp_path / "stock").glob("card-*.json")))
    card.power_on()
    from cardlab.personalizer.keys import open_keystore

    card.transmit(bytes.fromhex("00A4040008A000000151000000"))
    kdd = tlv.find(card.transmit(bytes.fromhex("80CA00CF00"))[:-2], 0xCF)
    assert kdd is not None
    with open_keystore(str(keys)) as ks:
        k = ks.diversify_card_keys("KMC", "KDF3", kdd.value)
    HostSession(card.transmit, StaticKeys(k.enc, k.mac, k.dek, 0x30)).open(0x33)
    bad = tmp_path / "bad.yaml"
    bad.write_text("card:\n  isd_aid: A0\n  kmc: KMC\n")
    assert main(["perso", "stock", str(tmp_path / "s2"), "--count", "1", "--keys", str(keys), "--profile", str(bad)]) == 2
    assert "card.isd_aid" in capsys.readouterr().err


def test_a_claim_marker_names_the_last_whole_record_noted(tmp_path: Path) -> None:
    """The perso engine appends the record it puts on a claimed stock card to the card's claim
    marker (a card freed after a fault that wrote nothing takes another record later): the last
    whole line names it; a line torn by a crash is not a record; another batch's marker is left alone."""
    from cardlab.personalizer.stock import claim_of, holder, note_record, reserve

    image = tmp_path / "card-000001.json"
    image.write_text("{}")
    assert reserve(image, "batch-A") and not reserve(image, "batch-B")
    assert claim_of(image) == ("batch-A", None)
    note_record(image, "batch-A", 3, "CARD-3")
    note_record(image, "batch-A", 7, "CARD-7")
    note_record(image, "batch-B", 9, "CARD-9")  # not its marker
    assert claim_of(image) == ("batch-A", 7) and holder(image) == "batch-A"
    marker = tmp_path / ".claims" / image.name
    marker.write_text(marker.read_text() + "record 11 CA")  # torn: no line feed
    assert claim_of(image) == ("batch-A", 7)
    assert marker.stat().st_mode & 0o777 == 0o600

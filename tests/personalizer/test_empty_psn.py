"""Records with an empty PAN sequence number (issue 12): the profile's ``card.empty_psn`` says what
an empty PSN means — ``omit`` (no 5F34 on the card) or ``"00"`` — and the personalizer and the
tester's own readers agree; the ICC master keys are derived with PSN 00 either way (EMV Book 2
Annex A1.4.1). Without the option an empty PSN is a clear per-record error and the rest goes on."""

from __future__ import annotations

import json
from pathlib import Path

import prepkit  # type: ignore[import-not-found]
import pytest
import yaml

from cardlab.cli import main
from cardlab.personalizer.profile import ProfileError, load_profile
from cardlab.tester import sources

HEADER = "pan,psn,expiry,effective,name,pin,service_code,language,discretionary"


def _profile(tmp: Path, empty_psn: object, name: str) -> Path:
    doc = yaml.safe_load(prepkit.VISA.read_text())
    if empty_psn is not None:
        doc["card"]["empty_psn"] = empty_psn
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _records(tmp: Path) -> Path:
    """Three sample records: two without a PSN, one with PSN 01."""
    rows = (prepkit.VECTORS / "records" / "sample.csv").read_text().splitlines()[1:4]
    out = []
    for n, row in enumerate(rows):
        f = row.split(",")
        f[1] = "" if n < 2 else "01"
        out.append(",".join(f))
    path = tmp / "records.csv"
    path.write_text(HEADER + "\n" + "\n".join(out) + "\n")
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    prepkit.make_keystore().save(path)
    return path


def _pipeline(tmp: Path, profile: Path, records: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """prepare → card stock → perso run → certify, as the README's commands; (certify exit code, its output)."""
    batch, stock = tmp / "batch", tmp / "stock"
    assert main(["perso", "prepare", "--profile", str(profile), "--records", str(records), "--keys", str(keys),
                 "--out", str(batch), "--quiet"]) == 0  # fmt: skip
    assert main(["perso", "stock", str(stock), "--count", "3", "--keys", str(keys), "--kmc", "TEST-KMC-VISA"]) == 0
    assert main(["perso", "run", str(batch), "--cards", str(stock), "--keys", str(keys), "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["test", "certify", "--profile", str(profile), "--records", str(records), "--keys", str(keys),
               "--cards", str(batch), "--report-dir", str(tmp / "reports"), "--quiet"])  # fmt: skip
    return rc, capsys.readouterr().out


def _on_card(batch: Path) -> list[bool]:
    """Per card image of the batch: whether any record of it holds 5F34."""
    from cardlab.emulator import Card
    from cardlab.tester.tlv import flatten

    out = []
    for img in sorted((batch.parent / "stock").glob("card-*.json")):
        card = Card.load(img)
        aid = bytes.fromhex("A0000000031010")
        assert card.transmit(bytes((0, 0xA4, 4, 0, len(aid))) + aid + b"\x00")[-2:] == b"\x90\x00"
        found = False
        for sfi in range(1, 4):
            for n in range(1, 5):
                r = card.transmit(bytes((0, 0xB2, n, sfi << 3 | 4, 0)))
                if r[-2:] == b"\x90\x00" and 0x5F34 in flatten(r[:-2]):
                    found = True
        out.append(found)
    return out


@pytest.mark.parametrize("setting", ["omit", "00"])
def test_empty_psn_prepared_personalized_and_certified(setting: str, tmp_path: Path, keys: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    profile = _profile(tmp_path, setting, setting)
    rc, out = _pipeline(tmp_path, profile, _records(tmp_path), keys, capsys)
    assert rc == 0, out
    assert "3 cards: 3 passed" in out
    holds = _on_card(tmp_path / "batch")
    assert holds == ([False, False, True] if setting == "omit" else [True, True, True])
    # the other setting's tester disagrees with these cards, naming 5F34 (never a silent pass)
    other = _profile(tmp_path, "00" if setting == "omit" else "omit", "other")
    capsys.readouterr()
    rc = main(["test", "certify", "--profile", str(other), "--records", str(tmp_path / "records.csv"), "--keys",
               str(keys), "--cards", str(tmp_path / "batch"), "--report-dir", str(tmp_path / "r-other"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "DATA-PSN-001" in out


def test_without_the_option_an_empty_psn_is_a_record_error(tmp_path: Path, keys: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    profile = _profile(tmp_path, None, "strict")
    rc = main(["perso", "prepare", "--profile", str(profile), "--records", str(_records(tmp_path)), "--keys",
               str(keys), "--out", str(tmp_path / "batch"), "--quiet"])
    capsys.readouterr()
    rejected = [json.loads(x) for x in (tmp_path / "batch" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["record_index"], r["field"]) for r in rejected] == [(1, "psn"), (2, "psn")]
    assert all("card.empty_psn" in r["message"] and "******" in r["record_id"] for r in rejected)
    cards = (tmp_path / "batch" / "cards.jsonl").read_text().splitlines()
    assert len(cards) == 1 and rc in (0, 1)  # the record with a PSN went on


def test_bad_psn_values_still_refused(tmp_path: Path) -> None:
    from datetime import date

    from cardlab.personalizer.records import Rejected, validate

    row = dict(zip(HEADER.split(","), (prepkit.VECTORS / "records" / "sample.csv").read_text().splitlines()[1].split(",")))
    for bad in ("A1", "123", "-1"):
        res = validate({**row, "psn": bad}, today=date(2026, 1, 15), empty_psn="omit")
        assert isinstance(res, Rejected) and res.field == "psn"
    with pytest.raises(ProfileError, match="empty_psn"):
        load_profile(_profile(tmp_path, "maybe", "bad"))
    with pytest.raises(sources.SourceError, match="empty_psn"):
        sources.load_profile(_profile(tmp_path, "maybe", "bad2"))
    # YAML's unquoted 00 is the number 0: read as "00" on both sides
    p = _profile(tmp_path, 0, "zero")
    assert load_profile(p).card.empty_psn == "00" and sources.load_profile(p).empty_psn == "00"

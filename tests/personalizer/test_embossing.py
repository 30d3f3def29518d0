"""``cardlab perso emboss-files`` (formerly ``stations``): the embossing and magnetic stripe data of a
batch, opened for the other stations — consistent with the chip data, mode 0600, never a full PAN on the terminal."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from enginekit import make_batch, make_cards, stand_in_execute

from cardlab.cli import main
from cardlab.cardspec import tlv
from cardlab.personalizer import engine
from cardlab.personalizer.batch import Sealed, iter_cards
from cardlab.personalizer.keys import SoftwareKeyStore, open_keystore
from cardlab.personalizer.embossing import EmbossingError, export, unseal


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("stations")
    b, keys = make_batch(tmp, count=5, bad=(3,))
    rep = engine.run(b, cards=make_cards(tmp, keys, 2), keys=str(keys), executor=stand_in_execute)
    assert rep.counts["done"] == 2  # two cards of stock for four good records: two stay pending
    return b, keys


def test_station_file_matches_the_chip(batch: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    b, keys = batch
    out = tmp_path / "stations.jsonl"
    assert main(["perso", "emboss-files", str(b), "--out", str(out), "--keys", str(keys)]) == 0
    printed = capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    header, *rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["format"] == "cardlab-station-data" and len(rows) == 4
    with open_keystore(str(keys)) as ks:
        for card, row in zip(iter_cards(b), rows, strict=True):
            assert row["card_id"] == card.card_id and row["pan"] not in printed
            assert row["pan"][:6] + "******" + row["pan"][-4:] in printed
            # the stripe's track 2 is the chip's track 2 equivalent data (57): same PAN, expiry,
            # service code and discretionary data (EMV Book 3 Annex A, ISO/IEC 7813)
            (g, value), = [(g, v) for g, v in card.apps[0].dgis if isinstance(v, Sealed) and g < 0x8000
                           and tlv.find(tlv.find(unseal(ks, v), 0x70).value, 0x57) is not None]  # type: ignore[union-attr]
            t57 = tlv.find(tlv.find(unseal(ks, value), 0x70).value, 0x57)  # type: ignore[union-attr]
            assert t57 is not None
            chip = t57.value.hex().upper().rstrip("F")
            track2 = row["track2"].strip(";?")
            assert track2.replace("=", "D") == chip, g
            assert row["track1"].startswith("%B" + row["pan"] + "^")
            assert row["embossing"] and row["service_code"] == chip.split("D")[1][4:7]


def test_only_done_names_the_card(batch: tuple[Path, Path], tmp_path: Path) -> None:
    b, keys = batch
    with open_keystore(str(keys)) as ks:
        export(b, ks, tmp_path / "done.jsonl", only_done=True)
    _header, *rows = [json.loads(line) for line in (tmp_path / "done.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(Path(r["card_location"]).exists() and r["cin"] for r in rows)


def test_wrong_transport_key_and_refusals(batch: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    b, keys = batch
    other = SoftwareKeyStore.load(keys)
    info = other.info("KEK")
    other.add_symmetric("KEK", info.type, info.usage, bytes(range(info.length)))  # another transport key
    assert other.kcv("KEK") != SoftwareKeyStore.load(keys).kcv("KEK")
    other.save(tmp_path / "other.json")
    out = tmp_path / "s.jsonl"
    assert main(["perso", "emboss-files", str(b), "--out", str(out), "--keys", str(tmp_path / "other.json")]) == 2  # a wrong key store is an input error (cardlab.exitcodes)
    assert "check value" in capsys.readouterr().err and not out.exists()
    with pytest.raises(EmbossingError, match="no job database"), open_keystore(str(keys)) as ks:
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        make_batch(fresh, count=2, bad=())
        export(fresh / "batch", ks, tmp_path / "x.jsonl", only_done=True)
    out.write_text("keep me")
    assert main(["perso", "emboss-files", str(b), "--out", str(out), "--keys", str(keys)]) == 2
    assert out.read_text() == "keep me"


def test_bad_key_store_and_damaged_job_db_are_one_line_errors(batch: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    b, keys = batch
    out = tmp_path / "s.jsonl"
    assert main(["perso", "emboss-files", str(b), "--out", str(out), "--keys", str(tmp_path / "absent.json")]) == 2
    assert main(["perso", "emboss-files", str(b), "--out", str(out), "--keys", "pkcs11:token=nothing;pin-env=NO_SUCH_VAR"]) == 2
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(b, damaged)
    (damaged / "jobs.sqlite").write_bytes(b"not a database" * 100)
    for name in ("jobs.sqlite-wal", "jobs.sqlite-shm"):
        (damaged / name).unlink(missing_ok=True)
    assert main(["perso", "emboss-files", str(damaged), "--out", str(out), "--keys", str(keys), "--only", "done"]) == 2
    err = capsys.readouterr().err
    assert err.count("cardlab perso emboss-files:") == 3 and "Traceback" not in err and not out.exists()


def test_stations_is_a_deprecated_alias(batch: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The former name still works, with a one-line notice on stderr naming the new one."""
    b, keys = batch
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    assert main(["perso", "emboss-files", str(b), "--out", str(new), "--keys", str(keys)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["perso", "stations", str(b), "--out", str(old), "--keys", str(keys)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deprecated" in err and "cardlab perso emboss-files" in err
    assert old.read_text() == new.read_text()
    out = tmp_path / "absent-keys.jsonl"
    assert main(["perso", "stations", str(b), "--out", str(out), "--keys", str(tmp_path / "absent.json")]) == 2
    assert "cardlab perso stations: " in capsys.readouterr().err  # errors name the command as typed

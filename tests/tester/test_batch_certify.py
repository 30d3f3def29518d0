"""End to end: the personalizer prepares a batch from the sample Visa profile,
records and test key store, the perso engine personalizes emulated cards from
a card stock, and ``cardlab test certify --cards BATCH`` certifies the whole
batch directory: every card passes (exit code 0)."""

from __future__ import annotations

import json
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"
PROFILE = VECTORS / "profiles" / "visa-cvn18.yaml"
KEYS = VECTORS / "test-keystore.json"
TODAY = date(2026, 1, 15)
RECORDS = 2  # DDA key generation per card is the slow part

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(batch directory, records file): RECORDS cards prepared and personalized on emulated cards."""
    from cardlab.personalizer.engine import run
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.prepare import prepare
    from cardlab.personalizer.stock import make_stock

    tmp_path = tmp_path_factory.mktemp("batch")
    lines = (VECTORS / "records" / "sample.csv").read_text().splitlines()
    records = tmp_path / "records.csv"
    records.write_text("\n".join(lines[: 1 + RECORDS]) + "\n")
    batch = tmp_path / "batch"
    prepare(PROFILE, records, str(KEYS), batch, today=TODAY)

    from cardlab.tester.sources import load_profile

    kmc = load_profile(PROFILE).kmc or "TEST-KMC-VISA"
    with open_keystore(str(KEYS)) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys(kmc, "KDF3", kdd)
            return k.enc, k.mac, k.dek

        make_stock(tmp_path / "stock", RECORDS, div, "kdf3")
    report = run(batch, cards=tmp_path / "stock", keys=str(KEYS))
    assert getattr(report, "failed", 0) in (0, [], ()), report
    return batch, records


def _certify(records: Path, *args: str) -> int:
    from cardlab.cli import main

    return main(["test", "certify", "--profile", str(PROFILE), "--records", str(records), "--keys", str(KEYS),
                 "--today", TODAY.isoformat(), *args])


def _cards(reports: Path) -> list[dict[str, Any]]:
    lines = [json.loads(ln) for ln in (reports / "certification.jsonl").read_text().splitlines()]
    return lines[1:-1]


def test_certify_a_personalized_batch_directory(batch: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc = _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / "reports"), "--details", "all")
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads((tmp_path / "reports" / "certification.json").read_text())
    assert doc["summary"]["cards"] == RECORDS and doc["summary"]["failed"] == 0, doc["summary"]
    cards = _cards(tmp_path / "reports")
    assert all(c["verdict"] == "pass" for c in cards)
    passed = {r["rule"] for c in cards for r in c["results"] if r["verdict"] == "pass"}
    assert {"DATA-PAN-001", "KEY-AC-001", "KEY-PIN-001", "CERT-ICC-PAN-001", "DDA-001"} <= passed


def test_provenance_reader_atr_and_one_row_per_passing_card(batch: tuple[Path, Path], tmp_path: Path) -> None:
    import hashlib

    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / "r"), "--quiet") == 0
    doc = json.loads((tmp_path / "r" / "certification.json").read_text())
    inputs = doc["provenance"]["inputs"]
    assert inputs["manifest"]["sha256"] == hashlib.sha256((batch[0] / "manifest.json").read_bytes()).hexdigest()
    assert inputs["records"]["sha256"] == hashlib.sha256(batch[1].read_bytes()).hexdigest()
    assert "test certify" in doc["provenance"]["command"]
    for c in _cards(tmp_path / "r"):
        assert "results" not in c and c["reader"].startswith("cardlab image") and c["atr"].startswith("3B")


def test_never_over_a_report_without_force(batch: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    r = tmp_path / "r"
    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(r), "--record", "1") == 0
    before = (r / "certification.json").read_bytes()
    capsys.readouterr()
    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(r)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--force" in err, err
    assert (r / "certification.json").read_bytes() == before
    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(r), "--force") == 0
    assert json.loads((r / "certification.json").read_text())["summary"]["cards"] == RECORDS


def test_sample_seeded_and_recorded(batch: tuple[Path, Path], tmp_path: Path) -> None:
    chosen = []
    for n in (1, 2):
        assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / f"r{n}"),
                        "--sample", "1", "--seed", "5") == 0
        doc = json.loads((tmp_path / f"r{n}" / "certification.json").read_text())
        assert doc["provenance"]["options"]["sample"] == {"size": 1, "of": RECORDS, "seed": 5}
        chosen.append([c["card_id"] for c in _cards(tmp_path / f"r{n}")])
    assert chosen[0] == chosen[1] and len(chosen[0]) == 1
    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / "r3"), "--sample", "1") == 0
    seed = json.loads((tmp_path / "r3" / "certification.json").read_text())["provenance"]["options"]["sample"]["seed"]
    assert isinstance(seed, int), "a random seed is recorded so that the draw can be repeated"


def test_several_readers_one_worker_each(batch: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from cardlab.emulator import Card
    from cardlab.emulator.transports import pyscard_reader
    from cardlab.tester.certify import batch as certify_batch_mod
    from cardlab.tester.certify import map_images

    images = {idx: img for img, idx, _cid in map_images(batch[0])}
    names = ["test reader A", "test reader B"]
    for name, idx in zip(names, (1, 2)):
        pyscard_reader.insert(Card.load(str(images[idx])), name=name)
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda msg="": prompts.append(msg) or "")
    threads: dict[str, str] = {}  # reader → the worker thread its card was certified on
    real = certify_batch_mod.certify_card

    def spy(*a: Any, **kw: Any) -> Any:
        threads[str(a[0].connection.getReader())] = threading.current_thread().name
        return real(*a, **kw)

    monkeypatch.setattr(certify_batch_mod, "certify_card", spy)
    try:
        rc = _certify(batch[1], "--reader", names[0], "--reader", names[1], "--report-dir", str(tmp_path / "r"))
    finally:
        for name in names:
            pyscard_reader.remove(name)
    assert rc == 0
    assert len(prompts) == 1 and all(n in prompts[0] for n in names), prompts
    cards = _cards(tmp_path / "r")
    assert sorted(c["reader"] for c in cards) == names and all(c["verdict"] == "pass" for c in cards)
    # each reader's card on that reader's own worker, however quickly the other card is done
    assert {r: t.split("_")[0] for r, t in threads.items()} == {names[0]: "reader0", names[1]: "reader1"}, threads


def test_progress_on_a_terminal_only(batch: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / "pipe")) == 0
    assert "cards/s" not in capsys.readouterr().err  # stderr is a pipe here

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stderr", tty)
    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / "tty")) == 0
    shown = tty.getvalue()
    assert f"certify {RECORDS}/{RECORDS} [" in shown and "cards/s" in shown and "left" in shown, shown
    tty2 = Tty()
    monkeypatch.setattr(sys, "stderr", tty2)
    assert _certify(batch[1], "--cards", str(batch[0]), "--report-dir", str(tmp_path / "q"), "--quiet") == 0
    assert tty2.getvalue() == ""

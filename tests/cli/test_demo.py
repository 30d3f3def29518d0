"""``cardlab demo`` (the main job) end to end on a few cards, and the record generator."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest

from cardlab import records_gen
from cardlab.cli import main
from cardlab.personalizer.records import Record, validate

REPORTS = ("certification.txt", "certification.json", "certification.html", "certification-junit.xml")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path, Path]:
    base = tmp_path_factory.mktemp("demo")
    out, reports = base / "tmp", base / "reports"
    capture = base / "stdout.txt"
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
        mp.setenv("COLUMNS", "200")  # rich: wide tables, one row a line
        rc = main(["demo", "--cards", "6", "--out", str(out), "--report-dir", str(reports)])
    capture.write_text(buf.getvalue())
    return rc, buf.getvalue(), out, reports


def test_demo_exits_0_and_writes_reports_and_batches(demo_run: tuple[int, str, Path, Path]) -> None:
    rc, text, out, reports = demo_run
    assert rc == 0, text[-3000:]
    for name in REPORTS:
        assert (reports / name).stat().st_size > 0, name
    for profile in records_gen.BINS:
        batch = out / profile / "batch"
        for name in ("manifest.json", "cards.jsonl", "profile.yaml", "script.yaml", "jobs.sqlite"):
            assert (batch / name).exists(), (profile, name)
        assert len(list((out / profile / "stock").glob("card-*.json"))) == 3
        assert (out / "records" / f"{profile}.csv").exists()
        assert (out / "profiles" / f"{profile}.yaml").exists()
    assert (out / "keys.json").exists() and (out / "trace-card.json").exists()
    ET.parse(reports / "certification-junit.xml")


def test_summary_counts_match_the_reports(demo_run: tuple[int, str, Path, Path]) -> None:
    _rc, text, out, reports = demo_run
    doc = json.loads((reports / "certification.json").read_text())
    s = doc["summary"]
    assert s["cards"] == 6 and s["passed"] == 6 and s["failed"] == 0
    checks = s["results"].get("pass", 0) + s["results"].get("fail", 0)

    def row(label: str) -> list[int]:
        line = next(ln for ln in text.splitlines() if ln.strip("│┃ ").startswith(label))
        return [int(n) for n in re.findall(r"\b\d+\b", line.split(label, 1)[1])]

    assert row("records") == [3, 3, 6]
    assert row("personalized") == [3, 3, 6]
    assert row("certified") == [3, 3, 6]
    assert row("pass ") == [3, 3, 6] and row("fail ") == [0, 0, 0]
    assert row("rule checks (pass + fail)")[-1] == checks
    assert row("rule checks not applicable")[-1] == s["results"].get("not applicable", 0)
    for stage in ("prepare", "personalize", "certify"):
        assert re.search(rf"│ {stage} +│ +6 │", text), stage
    assert "Outcome: approved online" in text
    assert "cardlab perso run" in text and "cardlab test certify" in text


def test_no_pin_key_or_full_pan_in_output(demo_run: tuple[int, str, Path, Path]) -> None:
    _rc, text, out, reports = demo_run
    blobs = [text] + [(reports / n).read_text() for n in REPORTS]
    with (out / "records" / "visa-cvn18.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (out / "records" / "mastercard-cvn16.csv").open() as f:
        rows += list(csv.DictReader(f))
    keys = json.loads((out / "keys.json").read_text())["keys"]
    secrets = [k["value"] for k in keys.values() if "value" in k and len(k["value"]) <= 64]
    for blob in blobs:
        for r in rows:
            assert r["pan"] not in blob
            assert f"PIN {r['pin']}" not in blob and f"pin {r['pin']}" not in blob
        for v in secrets:
            assert v.upper() not in blob.upper()


def test_bad_options_and_used_out_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--cards", "0", "--out", str(tmp_path / "a")]) == 2
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "something").write_text("x")
    assert main(["demo", "--cards", "2", "--out", str(tmp_path / "b")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_card_demo_is_still_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "demo"]) == 0
    assert "SET STATUS card → SECURED" in capsys.readouterr().out


def test_records_generator_is_valid_unique_and_deterministic(tmp_path: Path) -> None:
    today = date(2026, 3, 1)
    for bin_, languages in records_gen.BINS.values():
        rows = list(records_gen.generate(bin_, 300, seed=7, today=today, languages=languages))
        assert rows == list(records_gen.generate(bin_, 300, seed=7, today=today, languages=languages))
        assert rows != list(records_gen.generate(bin_, 300, seed=8, today=today, languages=languages))
        assert len({r["pan"] for r in rows}) == 300 and all(r["pan"].startswith(bin_) for r in rows)
        for i, r in enumerate(rows, 1):
            assert isinstance(validate(r, today=today, index=i), Record), r["name"]
    # the generator's BIN for each sample profile is the one the profile lists (else prepare rejects them all)
    from cardlab.demo import PROFILES
    from cardlab.personalizer.profile import load_profile

    for name, (bin_, _languages) in records_gen.BINS.items():
        assert load_profile(PROFILES[name][0]).bins == (bin_,), name
    path = records_gen.write_csv(tmp_path / "r.csv", "541333", 4, seed=1, today=today)
    assert path.read_text().splitlines()[0] == ",".join(records_gen.FIELDS)
    assert records_gen.luhn_digit("476173900000001") == "0" or len(records_gen.luhn_digit("4")) == 1


def test_demo_exits_1_when_a_card_fails_certification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data preparation defect (the FCI's application label one letter off the profile) reaches the
    cards; certification catches it, the demo says which rule failed and exits 1."""
    from cardlab.personalizer import cps

    real = cps.fci_9102

    def wrong_label(app, languages=None):  # type: ignore[no-untyped-def]
        label = app.label.encode("ascii")
        return real(app, languages).replace(label, label[:-1] + (b"X" if label[-1:] != b"X" else b"Y"), 1)

    monkeypatch.setattr(cps, "fci_9102", wrong_label)  # the worker processes are forked: they see it
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        monkeypatch.setenv("COLUMNS", "200")
        rc = main(["demo", "--cards", "2", "--out", str(tmp_path / "out"), "--report-dir", str(tmp_path / "reports")])
    text = buf.getvalue()
    assert rc == 1, text[-2000:]
    doc = json.loads((tmp_path / "reports" / "certification.json").read_text())
    assert doc["summary"]["failed"] == 2
    cards = [json.loads(ln) for ln in (tmp_path / "reports" / "certification.jsonl").read_text().splitlines()[1:-1]]
    failing = {r["rule"] for c in cards for r in c["results"] if r["verdict"] == "fail"}
    assert "DATA-LABEL-001" in failing, failing  # the label rule names the defect (the directories follow)
    assert "FAILED card 000001" in text and "DATA-LABEL-001" in text and "some cards failed" in text
    assert "all cards pass" not in text


def test_demo_never_over_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing report in --report-dir stops the demo before any work: one line, exit 2."""
    from cardlab.cli import main

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "certification.json").write_text("{}")
    rc = main(["demo", "--cards", "2", "--out", str(tmp_path / "out"), "--report-dir", str(reports)])
    err = capsys.readouterr().err
    assert rc == 2 and "--force" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert (reports / "certification.json").read_text() == "{}"

"""End to end: the personalizer prepares a batch from the sample Visa profile,
records and test key store, the perso engine personalizes emulated cards from
a card stock, and ``cardlab test certify --cards BATCH`` certifies the whole
batch directory: every card passes (exit code 0)."""

from __future__ import annotations

import json
import warnings
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"
PROFILE = VECTORS / "profiles" / "visa-cvn18.yaml"
KEYS = VECTORS / "test-keystore.json"
TODAY = date(2026, 1, 15)
RECORDS = 2  # DDA key generation per card is the slow part

warnings.filterwarnings("ignore", category=DeprecationWarning)


def test_certify_a_personalized_batch_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main
    from cardlab.personalizer.engine import run
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.prepare import prepare
    from cardlab.personalizer.stock import make_stock

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

    rc = main(["test", "certify", "--profile", str(PROFILE), "--records", str(records), "--keys", str(KEYS),
               "--cards", str(batch), "--today", TODAY.isoformat(), "--report-dir", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads((tmp_path / "reports" / "certification.json").read_text())
    assert doc["summary"]["cards"] == RECORDS and doc["summary"]["failed"] == 0, doc["summary"]
    assert all(c["verdict"] == "pass" for c in doc["cards"])
    passed = {r["rule"] for c in doc["cards"] for r in c["results"] if r["verdict"] == "pass"}
    assert {"DATA-PAN-001", "KEY-AC-001", "KEY-PIN-001", "CERT-ICC-PAN-001", "DDA-001"} <= passed

"""The testing kit validates records as the personalizer does for the profile it is given:
an empty PSN is accepted exactly when the profile's card.empty_psn says what it means."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cardlab.pytest_plugin import RecordRejected

ROOT = Path(__file__).resolve().parents[2]
VISA = ROOT / "vectors" / "profiles" / "visa-cvn18.yaml"
RECORD = {"pan": "4761739001010119", "psn": "", "expiry": "2031-02", "name": "DOE/JANE A", "pin": "2345"}


def test_empty_psn_follows_the_profile(personalized_card: object, tmp_path: Path) -> None:
    doc = yaml.safe_load(VISA.read_text())
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(doc))
    doc["card"]["empty_psn"] = "omit"
    omit = tmp_path / "omit.yaml"
    omit.write_text(yaml.safe_dump(doc))
    keys = ROOT / "vectors" / "test-keystore.json"
    with pytest.raises(RecordRejected, match="psn"):
        personalized_card.prepare(strict, RECORD, keys)  # type: ignore[attr-defined]
    data = personalized_card.prepare(omit, RECORD, keys)  # type: ignore[attr-defined]
    assert data.fields["psn"] == ""

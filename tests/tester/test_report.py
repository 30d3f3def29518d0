"""Reports: text, JSON (documented schema), self-contained HTML, JUnit XML."""

from __future__ import annotations

import csv
import json
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import certkit
from cardlab.tester import certify, report, rules
from cardlab.tester.rules import FAIL, PASS

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[certify.CardReport]:
    p = certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("visa"))
    prof, _rec, keys = certkit.sources_for(p)
    out = []
    for n, rec_n in ((0, 0), (1, 2)):  # the second card is checked against the wrong record
        card = certkit.card_from_dgis(p.clear(n))
        rec = certkit.sources.load_record(certkit.SAMPLE, p.cards[rec_n].record_index)
        out.append(certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, card_id=p.cards[n].card_id))
    return out


def _leaked_pan(text: str) -> str | None:
    """A sample record's full PAN found in ``text`` (bare or grouped by spaces).
    Checked against the real PANs: a pattern such as ``\\d{16}`` also matches
    all-digit runs of random hex (cryptograms, signatures) now and then."""
    flat = text.replace(" ", "")
    with certkit.SAMPLE.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["pan"] and row["pan"] in flat:
                return row["pan"][:6] + "…"
    return None


def test_verdicts(reports: list[certify.CardReport]) -> None:
    assert [r.verdict for r in reports] == [PASS, FAIL]


def test_files(reports: list[certify.CardReport], tmp_path: Path) -> None:
    paths = report.write_reports(reports, tmp_path / "out")
    assert {p.name for p in paths} == {"certification.txt", "certification.json", "certification.html", "certification-junit.xml"}
    text = (tmp_path / "out" / "certification.txt").read_text()
    assert "DATA-PAN-001" in text and "2 cards: 1 passed, 1 failed" in text


def test_json_schema(reports: list[certify.CardReport]) -> None:
    doc = json.loads(json.dumps(report.to_json(reports)))
    assert doc["format"] == "cardlab-certification-report" and doc["version"] == 1
    assert doc["summary"]["cards"] == 2 and doc["summary"]["failed"] == 1
    assert len(doc["rules"]) == len(rules.RULES)
    card = doc["cards"][1]
    assert set(card) >= {"card_id", "record_index", "pan", "verdict", "results", "counts"}
    res = card["results"][0]
    assert set(res) == {"rule", "app", "verdict", "severity", "evidence", "expected", "found"}
    assert all(r["verdict"] in ("pass", "fail", "not applicable") for c in doc["cards"] for r in c["results"])
    assert _leaked_pan(json.dumps(doc)) is None, "a full PAN leaked"


def test_junit_one_case_per_rule_per_card(reports: list[certify.CardReport]) -> None:
    root = ET.fromstring(report.junit(reports))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 2
    n_apps = 2
    per_card = (len(rules.RULES) - len(certify.CARD_RULES)) * n_apps + len(certify.CARD_RULES)
    for suite, rep in zip(suites, reports):
        cases = suite.findall("testcase")
        assert len(cases) == per_card == int(suite.get("tests", "0"))
        assert len({(c.get("classname"), c.get("name")) for c in cases}) == per_card
        assert int(suite.get("failures", "0")) == len(rep.failed) == len(suite.findall("testcase/failure"))
    assert int(root.get("failures", "0")) > 0


def test_html_self_contained(reports: list[certify.CardReport]) -> None:
    page = report.to_html(reports)
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert not re.search(r"""(src|href)\s*=\s*['"](https?:|//)""", page)
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    assert "Failing rules" in page and "DATA-PAN-001" in page
    assert _leaked_pan(page) is None, "a full PAN leaked"

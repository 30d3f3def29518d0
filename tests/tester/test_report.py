"""Reports: text, JSON + JSON Lines (documented schema), self-contained HTML,
JUnit XML — each with the provenance, differences decoded, evidence whole,
unique ids across profiles, one row per passing card, never over a report."""

from __future__ import annotations

import csv
import json
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

import certkit
from cardlab.tester import certify, report, rules
from cardlab.tester.report import differences as D
from cardlab.tester.rules import FAIL, PASS, Result

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("visa"))


@pytest.fixture(scope="module")
def reports(prepared: certkit.Prepared) -> list[certify.CardReport]:
    p = prepared
    prof, _rec, keys = certkit.sources_for(p)
    out = []
    for n, rec_n in ((0, 0), (1, 2)):  # the second card is checked against the wrong record
        card = certkit.card_from_dgis(p.clear(n))
        rec = certkit.sources.load_record(certkit.SAMPLE, p.cards[rec_n].record_index)
        rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, card_id=p.cards[n].card_id)
        rep.reader, rep.atr = "test reader 0", "3B6800000073C84013009000"
        out.append(rep)
    return out


@pytest.fixture
def prov(prepared: certkit.Prepared) -> dict[str, object]:
    prof, _rec, keys = certkit.sources_for(prepared)
    return report.provenance(inputs={"profile": prepared.profile_path, "records": certkit.SAMPLE, "key store": prepared.keys_path},
                             keys=keys, argv=["cardlab", "test", "certify", "--profile", str(prepared.profile_path)],
                             options={"sample": {"size": 2, "seed": 7, "of": 10}})


def _leaked_pan(text: str) -> str | None:
    """A sample record's full PAN found in ``text`` (bare or grouped by spaces)."""
    flat = text.replace(" ", "")
    with certkit.SAMPLE.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["pan"] and row["pan"] in flat:
                return row["pan"][:6] + "…"
    return None


def _cards(d: Path) -> list[dict[str, object]]:
    lines = [json.loads(ln) for ln in (d / "certification.jsonl").read_text().splitlines()]
    assert "provenance" in lines[0] and "summary" in lines[-1]
    return lines[1:-1]


def test_verdicts(reports: list[certify.CardReport]) -> None:
    assert [r.verdict for r in reports] == [PASS, FAIL]


def test_files(reports: list[certify.CardReport], tmp_path: Path) -> None:
    paths = report.write_reports(reports, tmp_path / "out")
    assert {p.name for p in paths} == set(report.FILES)
    text = (tmp_path / "out" / "certification.txt").read_text()
    assert "DATA-PAN-001" in text and "2 cards: 1 passed, 1 failed" in text


def test_provenance_in_every_format(reports: list[certify.CardReport], prov: dict[str, object], prepared: certkit.Prepared,
                                    tmp_path: Path) -> None:
    import hashlib

    report.write_reports(reports, tmp_path, provenance=prov)
    digest = hashlib.sha256(prepared.profile_path.read_bytes()).hexdigest()
    kcv = "08D7B4"  # IMK-AC of the test key store (3DES, 00×8)
    import cardlab

    doc = json.loads((tmp_path / "certification.json").read_text())
    p = doc["provenance"]
    assert p["cardlab"] == cardlab.__version__ and p["command"].startswith("cardlab test certify --profile")
    assert p["inputs"]["profile"]["sha256"] == digest and p["options"]["sample"]["seed"] == 7
    assert any(k["usage"] == "IMK-AC" and k["kcv"] for k in p["keys"])
    for name in ("certification.txt", "certification.html", "certification-junit.xml", "certification.jsonl"):
        body = (tmp_path / name).read_text()
        assert digest in body and cardlab.__version__ in body and "3B6800000073C84013009000" in body, name
        assert "test reader 0" in body, name
    # check values, never keys
    secret = {v.hex().upper() for _u, v in prepared.ks and certkit.sources_for(prepared)[2].symmetric.values()}
    for name in report.FILES:
        body = (tmp_path / name).read_text().upper()
        assert not any(s in body for s in secret), name
    suite = ET.parse(tmp_path / "certification-junit.xml").getroot().find("testsuite[@name='provenance']")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["profile"].endswith(digest) and "seed" in props["sample"]
    assert any(f"KCV {kcv}" in v for v in props.values())


def test_json_schema(reports: list[certify.CardReport], tmp_path: Path) -> None:
    report.write_reports(reports, tmp_path)
    doc = json.loads((tmp_path / "certification.json").read_text())
    assert doc["format"] == "cardlab-certification-report" and doc["version"] == 2 and doc["cards"] == "certification.jsonl"
    assert doc["summary"]["cards"] == 2 and doc["summary"]["failed"] == 1
    assert len(doc["rules"]) == len(rules.RULES)
    ok, bad = _cards(tmp_path)
    assert "results" not in ok, "a passing card is one row"
    assert set(bad) >= {"id", "card_id", "record_index", "pan", "verdict", "results", "counts", "reader", "atr", "profile"}
    assert set(bad["results"][0]) >= {"rule", "app", "verdict", "severity", "evidence", "expected", "found"}
    assert all(r["verdict"] in ("pass", "fail", "not applicable", "not run") for r in bad["results"])
    full = [r for r in reports[1].results if r.verdict != PASS]
    assert len(bad["results"]) == len(full), "a failing card: failures and not-applicable results in full"
    assert sum(len(v) for v in bad["passed"].values()) == len(reports[1].results) - len(full), "passes named"
    assert _leaked_pan((tmp_path / "certification.jsonl").read_text()) is None, "a full PAN leaked"


def test_details_all(reports: list[certify.CardReport], tmp_path: Path) -> None:
    report.write_reports(reports, tmp_path, details="all")
    ok, bad = _cards(tmp_path)
    assert len(ok["results"]) == len(reports[0].results) and len(bad["results"]) == len(reports[1].results)
    assert "passed" not in bad
    assert "DATA-PAN-001 · " in (tmp_path / "certification.txt").read_text().split("── card", 1)[1]


def test_junit(reports: list[certify.CardReport], tmp_path: Path) -> None:
    report.write_reports(reports, tmp_path)
    root = ET.parse(tmp_path / "certification-junit.xml").getroot()
    assert root.tag == "testsuites"
    by_name = {s.get("name", ""): s for s in root.findall("testsuite")}
    passing = next(s for n, s in by_name.items() if n.startswith("passing cards"))
    assert len(passing.findall("testcase")) == 1
    failing = next(s for n, s in by_name.items() if n.startswith("card "))
    n_apps = 2
    per_card = len(certify.APP_RULES) * n_apps + len(certify.CARD_RULES)
    cases = failing.findall("testcase")
    assert len(cases) == per_card == int(failing.get("tests", "0"))
    assert len({(c.get("classname"), c.get("name")) for c in cases}) == per_card
    assert int(failing.get("failures", "0")) == len(reports[1].failed) == len(failing.findall("testcase/failure"))
    assert int(root.get("failures", "0")) == len(reports[1].failed)
    assert int(root.get("tests", "0")) == per_card + 1


def test_html_self_contained(reports: list[certify.CardReport], tmp_path: Path) -> None:
    report.write_reports(reports, tmp_path)
    page = (tmp_path / "certification.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert not re.search(r"""(src|href)\s*=\s*['"](https?:|//)""", page)
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    assert "Failing rules" in page and "DATA-PAN-001" in page and "Provenance" in page
    assert _leaked_pan(page) is None, "a full PAN leaked"


def test_unique_ids_across_profiles(reports: list[certify.CardReport], tmp_path: Path) -> None:
    """Two profiles may both have card-000001: ids and links stay apart; the profile is a column."""
    a = replace(reports[1], card_id="card-000001", profile="visa-cvn18")
    b = replace(reports[1], card_id="card-000001", profile="mastercard-cvn16")
    c = replace(reports[1], card_id="card-000001", profile="mastercard-cvn16")  # the same card twice
    report.write_reports([a, b, c], tmp_path)
    ids = [card["id"] for card in _cards(tmp_path)]
    assert ids == ["visa-cvn18/card-000001", "mastercard-cvn16/card-000001", "mastercard-cvn16/card-000001#2"]
    page = (tmp_path / "certification.html").read_text()
    anchors = re.findall(r"id='(c\d+)'", page)
    links = re.findall(r"href='#(c\d+)'", page)
    assert len(set(anchors)) == 3 and set(links) == set(anchors)
    assert "<th>profile</th>" in page
    text = (tmp_path / "certification.txt").read_text()
    assert "mastercard-cvn16/card-000001#2" in text and re.search(r"^card +profile", text, re.M)
    classnames = {c.get("classname", "").split(".A")[0] for c in ET.parse(tmp_path / "certification-junit.xml").getroot().iter("testcase")}
    assert len(classnames) == 3


def test_evidence_never_cut(reports: list[certify.CardReport], tmp_path: Path) -> None:
    long_ev = "GENERATE AC ARQC " + "0123456789ABCDEF" * 20 + " ATC 0001 end-of-evidence"
    card = replace(reports[1], results=[Result("KEY-AC-001", FAIL, long_ev, "A" * 300, "B" * 300 + "Z", "A0000000031010")])
    report.write_reports([card], tmp_path)
    for name in set(report.FILES) - {"certification.json"}:  # the cards are in certification.jsonl
        body = (tmp_path / name).read_text()
        flat = re.sub(r"\s+", "", body)
        assert re.sub(r"\s+", "", long_ev) in flat, name
        assert "B" * 300 + "Z" in flat, name
    text = (tmp_path / "certification.txt").read_text()
    assert all(len(line) <= 140 for line in text.split("── card", 1)[1].splitlines()), "wrapped"


def test_never_over_a_report(reports: list[certify.CardReport], tmp_path: Path) -> None:
    report.write_reports(reports[:1], tmp_path)
    with pytest.raises(report.ReportExists, match="--force"):
        report.write_reports(reports, tmp_path)
    assert json.loads((tmp_path / "certification.json").read_text())["summary"]["cards"] == 1
    report.write_reports(reports, tmp_path, force=True)
    assert json.loads((tmp_path / "certification.json").read_text())["summary"]["cards"] == 2


def test_streamed_as_it_goes(reports: list[certify.CardReport], tmp_path: Path) -> None:
    """certification.jsonl holds each card as soon as it is added (not at close)."""
    w = report.ReportWriter(tmp_path, report.provenance(inputs={}))
    w.add(reports[1])
    w._jsonl.flush()
    assert len((tmp_path / "certification.jsonl").read_text().splitlines()) == 2
    w.close()


# -- differences decoded --------------------------------------------------------------------------


def test_difference_bits_named() -> None:
    # IAC default: byte 1 b8 (ODA not performed) expected, byte 4 b4 (merchant forced online) found
    diff = D.differences("DATA-IAC-001", "9F0D Issuer Action Code – Default", "8000000000", "0000000800")
    assert diff == ["byte 1 b8 offline data authentication was not performed: expected, not set on the card",
                    "byte 4 b4 merchant forced transaction online: set on the card, not expected"]
    assert D.differences("DATA-AIP-001", "", "1C00", "5C00") == ["byte 1 b7 SDA supported: set on the card, not expected"]
    auc = D.differences("DATA-AUC-001", "", "FF00", "7F00")
    assert len(auc) == 1 and "byte 1 b8" in auc[0]
    tvr = D.differences("RISK-X", "95 Terminal Verification Results", "0000000000", "0000008000")
    assert tvr == ["byte 4 b8 transaction exceeds floor limit: set on the card, not expected"]


def test_difference_text_cvm_cvr() -> None:
    assert D.differences("DATA-LABEL-001", "", "56495341", "56495358") == ['application label: expected "VISA", found "VISX"']
    cvm = D.differences("DATA-CVM-001", "", "000000000000000042031E031F00", "000000000000000041031E031F00")
    assert len(cvm) == 1 and cvm[0].startswith("rule 1: expected 4203 enciphered PIN verified online")
    assert "plaintext PIN verified by the ICC" in cvm[0]
    cvr = D.differences("X", "9F10 Issuer Application Data", "06011203A00000", "06011203A04000")
    assert cvr and all(d.startswith("CVR byte 3") for d in cvr), cvr
    assert D.differences("DATA-PAN-001", "5A", "4761", "4762") == []  # no decoder: nothing invented
    assert D.differences("DATA-LABEL-001", "", "absent", "56") == []


def test_report_shows_decoded_difference(reports: list[certify.CardReport], tmp_path: Path) -> None:
    card = replace(reports[1], results=[Result("DATA-IAC-001", FAIL, "9F0D Issuer Action Code – Default (profile)",
                                               "F040AC8000", "F040AC8800", "A0000000031010")])
    report.write_reports([card], tmp_path)
    want = "merchant forced transaction online: set on the card, not expected"
    for name in report.FILES:
        if name != "certification.json":
            assert want in (tmp_path / name).read_text(), name

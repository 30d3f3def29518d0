"""Verdicts that say what was checked (issue 11): a critical rule that could not run makes the
card *incomplete* — its own verdict, exit code 4 (cardlab/exitcodes.py) and report status —
never a pass; a failure still wins over it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import certkit  # type: ignore[import-not-found]
import pytest

from cardlab import exitcodes
from cardlab.tester import certify
from cardlab.tester.rules import FAIL, INCOMPLETE, NOT_RUN, PASS


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("incomplete"))


def test_key_store_without_imk_ac_is_incomplete_naming_the_key(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    no_imk = replace(keys, symmetric={n: k for n, k in keys.symmetric.items() if k[0] != "IMK-AC"})
    rep = certify.certify_card(certkit.channel(certkit.card_from_dgis(prepared.clear(0))), prof, rec, no_imk,
                               today=certkit.TODAY)
    assert not rep.failed, [(r.rule, r.evidence) for r in rep.failed]
    assert rep.verdict == INCOMPLETE
    missing = {r.rule: r.evidence for r in rep.not_run}
    assert "KEY-AC-001" in missing and "no IMK-AC" in missing["KEY-AC-001"]
    assert rep.counts()[NOT_RUN] >= 1


def test_without_gp_status_the_gp_rules_do_not_run(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    card = certkit.card_from_dgis(prepared.clear(0))
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, gp_status=False)
    assert rep.verdict == INCOMPLETE
    assert {r.rule for r in rep.not_run} == {"LIFE-CARD-002", "LIFE-APP-003"}
    # with it (the default) the same card passes
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed + rep.not_run]


def test_a_failure_wins_over_incomplete(prepared: certkit.Prepared) -> None:
    prof, _rec, keys = certkit.sources_for(prepared)
    other = certkit.sources.load_record(certkit.SAMPLE, prepared.cards[1].record_index)
    rep = certify.certify_card(certkit.channel(certkit.card_from_dgis(prepared.clear(0))), prof, other, keys,
                               today=certkit.TODAY, gp_status=False)
    assert rep.not_run and rep.failed and rep.verdict == FAIL


def test_command_line_exit_code_and_reports(prepared: certkit.Prepared, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main

    image = tmp_path / "card.json"
    certkit.card_from_dgis(prepared.clear(0)).save(image)
    base = ["test", "certify", "--profile", str(prepared.profile_path), "--records", str(certkit.SAMPLE),
            "--keys", str(prepared.keys_path), "--today", "2026-01-15", "--card", str(image), "--record",
            str(prepared.cards[0].record_index)]  # fmt: skip
    rc = main([*base, "--no-gp-status", "--report-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == exitcodes.INCOMPLETE == 4, out
    assert "1 incomplete" in out and "--no-gp-status given" in out
    card = json.loads((tmp_path / "r" / "certification.jsonl").read_text().splitlines()[1])
    assert card["verdict"] == INCOMPLETE
    assert {r["rule"] for r in card["results"] if r["verdict"] == NOT_RUN} >= {"LIFE-CARD-002", "LIFE-APP-003"}
    suites = ET.parse(tmp_path / "r" / "certification-junit.xml").getroot()
    assert int(suites.get("errors") or 0) >= 2  # a critical rule not run is an error, not a skip
    assert "Could not run" in (tmp_path / "r" / "certification.html").read_text()
    rc = main([*base, "--report-dir", str(tmp_path / "r2")])
    assert rc == exitcodes.OK, capsys.readouterr().out

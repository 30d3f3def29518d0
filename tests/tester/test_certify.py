"""Certification of cards personalized by the personalizer from the sample
profiles and records: every sample certifies clean; batch and command line."""

from __future__ import annotations

import json

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import certkit
from cardlab.tester import certify, rules, sources
from cardlab.tester.channel import CardChannel
from cardlab.tester.rules import FAIL, INCOMPLETE, NA, NOT_RUN, PASS

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module", params=sorted(certkit.PROFILES))
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample(request.param, tmp_path_factory.mktemp(request.param))


def test_catalogue_has_at_least_60_named_rules() -> None:
    assert len(rules.RULES) >= 60
    for r in rules.RULES.values():
        assert r.id and r.description and r.reference and r.severity in (rules.CRITICAL, rules.MAJOR, rules.MINOR)
    for rid in ("DATA-PAN-001", "AFL-002", "CERT-ICC-PAN-001", "KEY-AC-001", "DDOL-001"):
        assert rid in rules.RULES


def test_rules_md_is_the_generated_catalogue() -> None:
    """docs/rules.md is exactly ``python -m cardlab.tester.rules`` (regenerate it after a rule change)."""
    doc = (certkit.ROOT / "docs" / "rules.md").read_text()
    assert doc == rules.document()


def test_sources_match_the_sample_files() -> None:
    prof = sources.load_profile(certkit.PROFILES["visa-cvn18"])
    credit = prof.applications[0]
    assert credit.afl().hex().upper() == "080101001001020218010400"
    assert credit.aip.hex().upper() == "7C00"
    rec = sources.load_record(certkit.SAMPLE, 1)
    assert sources.track2(credit, rec).hex().upper() == "4761739001010101D3001201000000"
    # a record without discretionary data: the documented default 00000000 (docs/profile.md "Track data")
    plain = sources.load_record(certkit.SAMPLE, 4)
    assert plain.discretionary == "" and sources.discretionary(plain) == "00000000"
    assert sources.track2(credit, plain).hex().upper() == "4761739001010135D330420100000000"
    got = {e.tag: e.value for e in sources.expected_objects(credit, plain)}
    assert got[0x9F1F] == b"00000000" and 0x9F20 not in got  # (the sample profile places no 9F20)
    assert sources.yymmdd(rec.expiry, True).hex() == "300131"
    assert "4761739001010101" not in repr(rec) and rec.pin not in repr(rec)
    jsonl = list(sources.read_records(certkit.SAMPLE.with_suffix(".jsonl")))
    assert [r.pan for r in jsonl] == [r.pan for r in sources.read_records(certkit.SAMPLE)][: len(jsonl)]


def test_encrypted_keystore(tmp_path: Path) -> None:
    from cardlab.personalizer.keys import SoftwareKeyStore

    s = SoftwareKeyStore.load(certkit.prepkit.VECTORS / "test-keystore.json")
    s.test_only = False
    s.save(tmp_path / "enc.json", "secret phrase", scrypt_n=2**10)
    ks = sources.load_keystore(tmp_path / "enc.json", "secret phrase")
    assert ks.symmetric["IMK-AC"][1].hex().upper() == "0123456789ABCDEFFEDCBA9876543210"
    with pytest.raises(sources.SourceError, match="wrong passphrase"):
        sources.load_keystore(tmp_path / "enc.json", "wrong")
    assert "0123456789" not in repr(ks)


def test_every_sample_card_certifies_clean(prepared: certkit.Prepared) -> None:
    for n in range(3):
        card = certkit.card_from_dgis(prepared.clear(n))
        prof, rec, keys = certkit.sources_for(prepared, n)
        rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
        assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed]
        per_app = len(certify.APP_RULES)
        assert len(rep.results) == per_app * len(prof.applications) + len(certify.CARD_RULES)
        ok = {r.rule for r in rep.results if r.verdict == PASS}
        assert {"DATA-PAN-001", "KEY-AC-001", "KEY-PIN-001", "KEY-PIN-002", "CERT-ICC-PAN-001", "CERT-ISS-004"} <= ok
        assert sum(r.verdict == PASS for r in rep.results) > 60
        # each card evaluator gives one result per rule it declares, in order
        assert [r.rule for r in rep.results if not r.app] == certify.CARD_RULES


def test_card_evaluators_declare_catalogue_rules() -> None:
    """The plug-in list of certify/evaluators.py: card rules are catalogue rules, each owned by one evaluator."""
    assert certify.CARD_RULES and len(set(certify.CARD_RULES)) == len(certify.CARD_RULES)
    assert set(certify.CARD_RULES) <= set(rules.RULES) and not set(certify.CARD_RULES) & set(certify.APP_RULES)
    assert all(ev.rule_ids and ev.name for ev in certify.CARD_EVALUATORS)


def test_card_evaluator_before_the_applications(prepared: certkit.Prepared, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``before_applications`` evaluator sees the card as powered on (no command sent yet)
    and its results come first; the others run after the applications."""
    from cardlab.tester.certify import card as card_module
    from cardlab.tester.certify.context import CardContext

    seen: list[int] = []

    def power_on(ctx: CardContext) -> list[rules.Result]:
        seen.append(len(getattr(ctx.channel, "log")))
        return [rules.Result("DIR-001", NA, "a test evaluator")]

    extra = certify.CardEvaluator("test", ("DIR-001",), power_on, before_applications=True)
    monkeypatch.setattr(card_module, "CARD_EVALUATORS", (extra, *certify.CARD_EVALUATORS))
    prof, rec, keys = certkit.sources_for(prepared, 0)
    rep = certify.certify_card(certkit.channel(certkit.card_from_dgis(prepared.clear(0))), prof, rec, keys, today=certkit.TODAY)
    assert seen == [0]
    assert rep.results[0].evidence == "a test evaluator"
    assert [r.rule for r in rep.results if not r.app] == ["DIR-001", *certify.CARD_RULES]


DESTRUCTIVE = ("KEY-PIN-003", *certify.SCRIPT_RULES)


def _verdicts(rep: certify.CardReport, app: bytes | None = None) -> dict[str, str]:
    return {r.rule: r.verdict for r in rep.results if app is None or r.app == app.hex().upper()}


def _evidence(rep: certify.CardReport, rid: str) -> str:
    return " | ".join(r.evidence for r in rep.results if r.rule == rid)


def test_destructive_checks(prepared: certkit.Prepared) -> None:
    card = certkit.card_from_dgis(prepared.clear(0))
    prof, rec, keys = certkit.sources_for(prepared)
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, destructive=True)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed]
    assert {r.verdict for r in rep.results if r.rule in DESTRUCTIVE} == {PASS}, [(r.rule, r.verdict, r.evidence) for r in rep.results if r.rule in DESTRUCTIVE]
    assert "6283" in _evidence(rep, "KEY-SMI-002") and "reset by the command" in _evidence(rep, "KEY-SMC-001")
    # afterwards: the same PIN with its counter at the limit, the application not blocked, and
    # only "fresh card" shows the online transactions (the last online ATC register, Book 3 §10.6.3)
    again = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
    assert again.failed_rules() <= {"STATE-ATC-002"}, [(r.rule, r.evidence) for r in again.failed]
    assert {r.verdict for r in again.results if r.rule in ("KEY-PIN-001", "STATE-PTC-001", "LIFE-APP-001", "KEY-AC-001")} == {PASS}
    # and a second destructive run passes too (nothing was left half done)
    third = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, destructive=True)
    assert third.failed_rules() <= {"STATE-ATC-002"}, [(r.rule, r.evidence) for r in third.failed]


@pytest.mark.parametrize("which", [1, 2])
def test_destructive_wrong_script_keys(prepared: certkit.Prepared, which: int) -> None:
    """A wrong ICC SMI key: every script rule fails (the MAC, 6988); a wrong ICC SMC key:
    the PIN change fails (the new PIN block does not decipher) and the rest passes. Either
    way the PIN try counter is restored and the application left unblocked."""
    from test_mutations import wrong_key

    apps = [(aid, list(dgis)) for aid, dgis in prepared.clear(0)]
    wrong_key(0, which)(apps)
    card = certkit.card_from_dgis(apps)
    prof, rec, keys = certkit.sources_for(prepared)
    plain = certify.certify_card(certkit.channel(certkit.card_from_dgis(apps)), prof, rec, keys, today=certkit.TODAY)
    assert plain.verdict == PASS  # without --destructive the script keys are never used
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, destructive=True)
    v = _verdicts(rep, apps[0][0])
    if which == 1:
        assert {rid: v[rid] for rid in certify.SCRIPT_RULES} == dict.fromkeys(certify.SCRIPT_RULES, FAIL)
        assert "6988" in _evidence(rep, "KEY-SMI-002")
    else:
        assert v["KEY-SMC-001"] == FAIL and "SMC" in _evidence(rep, "KEY-SMC-001")
        assert {v[rid] for rid in ("KEY-SMI-001", "KEY-SMI-002", "KEY-SMI-003")} == {PASS}
    assert rep.failed_rules() == ({"KEY-SMC-001"} if which == 2 else set(certify.SCRIPT_RULES))
    assert v["KEY-PIN-002"] == PASS and "PIN try counter is 3" in _evidence(rep, "KEY-PIN-002")
    again = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
    assert again.failed_rules() <= {"STATE-ATC-002"}, [(r.rule, r.evidence) for r in again.failed]


def test_keystore_with_imk_ac_only(prepared: certkit.Prepared) -> None:
    """An issuer sharing only IMK-AC: the ARQC is verified; script rules are not
    applicable and say which key is missing. With IMK-SMI but no IMK-SMC only the
    PIN change is. Without the KMC the GP rules cannot run: the card is incomplete, not passed."""
    prof, rec, keys = certkit.sources_for(prepared)
    ac_only = replace(keys, symmetric={n: k for n, k in keys.symmetric.items() if k[0] == "IMK-AC"})
    for destructive in (False, True):
        card = certkit.card_from_dgis(prepared.clear(0))
        rep = certify.certify_card(certkit.channel(card), prof, rec, ac_only, today=certkit.TODAY, destructive=destructive)
        assert rep.verdict == INCOMPLETE and not rep.failed, [(r.rule, r.evidence) for r in rep.failed]
        assert {r.rule for r in rep.not_run} == {"LIFE-CARD-002", "LIFE-APP-003"}
        assert all("no KMC" in r.evidence for r in rep.not_run)
        assert {r.verdict for r in rep.results if r.rule == "KEY-AC-001"} == {PASS}
        assert {r.verdict for r in rep.results if r.rule in certify.SCRIPT_RULES} == {NA}
        if destructive:
            assert all("no IMK-SMI" in r.evidence for r in rep.results if r.rule in certify.SCRIPT_RULES)
    no_smc = replace(keys, symmetric={n: k for n, k in keys.symmetric.items() if k[0] != "IMK-SMC"})
    card = certkit.card_from_dgis(prepared.clear(0))
    rep = certify.certify_card(certkit.channel(card), prof, rec, no_smc, today=certkit.TODAY, destructive=True)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed]
    v = _verdicts(rep, prof.applications[0].aid)
    assert v["KEY-SMC-001"] == NA and "no IMK-SMC" in _evidence(rep, "KEY-SMC-001")
    assert {v[rid] for rid in ("KEY-AC-001", "KEY-SMI-001", "KEY-SMI-002", "KEY-SMI-003", "KEY-PIN-002")} == {PASS}


def test_command_line_destructive(prepared: certkit.Prepared, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from cardlab.cli import main

    image = tmp_path / "card.json"
    certkit.card_from_dgis(prepared.clear(0)).save(image)
    rc = main(["test", "certify", "--profile", str(prepared.profile_path), "--records", str(certkit.SAMPLE),
               "--keys", str(prepared.keys_path), "--today", "2026-01-15", "--card", str(image), "--record",
               str(prepared.cards[0].record_index), "--destructive", "--report-dir", str(tmp_path / "r"),
               "--details", "all"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    cards = [json.loads(ln) for ln in (tmp_path / "r" / "certification.jsonl").read_text().splitlines()[1:-1]]
    results = [r for card in cards for r in card["results"] if r["rule"] in DESTRUCTIVE]
    assert results and {r["verdict"] for r in results} == {PASS}
    # no PIN (nor its PIN block) and no full PAN in any report, though the PIN was changed
    from kernelkit import shows_pin

    rec = certkit.sources_for(prepared)[1]
    for report in (tmp_path / "r").iterdir():
        text = report.read_text()
        assert not shows_pin(text, rec.pin) and rec.pan not in text, report.name


def test_evidence_masks_pans_and_hides_pins_and_keys(prepared: certkit.Prepared) -> None:
    apps = prepared.clear(0)
    card = certkit.card_from_dgis(apps)
    prof, rec, keys = certkit.sources_for(prepared)
    other = certkit.sources.load_record(certkit.SAMPLE, 2)  # the wrong cardholder: every value differs
    rep = certify.certify_card(certkit.channel(card), prof, other, keys, today=certkit.TODAY)
    assert rep.verdict == FAIL and "DATA-PAN-001" in rep.failed_rules()
    blob = " ".join(f"{r.evidence} {r.expected} {r.found}" for r in rep.results)
    assert rec.pan not in blob and other.pan not in blob
    assert sources.mask_pan(rec.pan) in blob
    for name, (_u, key) in keys.symmetric.items():
        assert key.hex().upper() not in blob.upper(), name
    assert f"PIN {other.pin}" not in blob


def test_batch_directory_and_exit_code(prepared: certkit.Prepared, tmp_path: Path) -> None:
    from cardlab.emulator import Card

    for n, cd in enumerate(prepared.cards[:3]):
        certkit.card_from_dgis(prepared.clear(n)).save(tmp_path / f"card-{cd.card_id}.json")
    (tmp_path / "cards.jsonl").write_text((prepared.batch / "cards.jsonl").read_text())
    mapped = certify.map_images(tmp_path)
    assert [(m[1], m[2]) for m in mapped] == [(cd.record_index, cd.card_id) for cd in prepared.cards[:3]]
    def opener(path: Path) -> Callable[[], CardChannel]:
        return lambda: certkit.channel(Card.load(path))

    items = [(opener(p), idx, cid, str(p)) for p, idx, cid in mapped]
    prof, _rec, keys = certkit.sources_for(prepared)
    reports = certify.certify_batch(items, prof, certkit.SAMPLE, keys, today=certkit.TODAY)
    assert [r.verdict for r in reports] == [PASS] * 3


def test_command_line(prepared: certkit.Prepared, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main

    good = tmp_path / "cards"
    good.mkdir()
    for n, cd in enumerate(prepared.cards[:2]):
        certkit.card_from_dgis(prepared.clear(n)).save(good / f"card-{cd.card_id}.json")
    # the directory's own list of cards: these two (a record it lists without a card is a MATCH-003 finding)
    lines = (prepared.batch / "cards.jsonl").read_text().splitlines()
    mine = {cd.card_id for cd in prepared.cards[:2]}
    (good / "cards.jsonl").write_text("".join(ln + "\n" for ln in lines if json.loads(ln)["card_id"] in mine))
    args = ["test", "certify", "--profile", str(prepared.profile_path), "--records", str(certkit.SAMPLE),
            "--keys", str(prepared.keys_path), "--today", "2026-01-15"]  # fmt: skip
    rc = main([*args, "--cards", str(good), "--report-dir", str(tmp_path / "r1")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "r1" / "certification.html").exists()
    # a card given as the wrong record: one finding (MATCH-001), no cascade of data rules, exit code 1
    rc = main([*args, "--card", str(good / f"card-{prepared.cards[0].card_id}.json"), "--record", "3",
               "--report-dir", str(tmp_path / "r2"), "--details", "all"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 1
    assert "MATCH-001 · card · critical · fail" in out and "given as record 3" in out
    assert "DATA-PAN-001 · A0" in out and "DATA-PAN-001 · A0000000031010 · critical · fail" not in out
    assert NA  # (imported for symmetry)

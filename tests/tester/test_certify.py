"""Certification of cards personalized by the personalizer from the sample
profiles and records: every sample certifies clean; batch and command line."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import certkit
from tester import certify, rules, sources
from tester.channel import CardChannel
from tester.rules import FAIL, NA, PASS

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
    """docs/rules.md holds exactly ``python -m tester.rules`` (regenerate it after a rule change)."""
    doc = (certkit.ROOT / "docs" / "rules.md").read_text()
    assert rules.markdown_table() in doc and f"({len(rules.RULES)} rules)" in doc


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
    from personalizer.keys import SoftwareKeyStore

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
        per_app = len(rules.RULES) - len(certify.CARD_RULES)
        assert len(rep.results) == per_app * len(prof.applications) + len(certify.CARD_RULES)
        ok = {r.rule for r in rep.results if r.verdict == PASS}
        assert {"DATA-PAN-001", "KEY-AC-001", "KEY-PIN-001", "KEY-PIN-002", "CERT-ICC-PAN-001", "CERT-ISS-004"} <= ok
        assert sum(r.verdict == PASS for r in rep.results) > 60


def test_destructive_checks(prepared: certkit.Prepared) -> None:
    card = certkit.card_from_dgis(prepared.clear(0))
    prof, rec, keys = certkit.sources_for(prepared)
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY, destructive=True)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed]
    assert {r.verdict for r in rep.results if r.rule in ("KEY-SMI-001", "KEY-PIN-003")} == {PASS}
    # afterwards the PIN try counter is back at the limit; only the online transaction shows
    again = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
    assert again.failed_rules() <= {"STATE-ATC-002"}, [(r.rule, r.evidence) for r in again.failed]


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
    from emulator import Card

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
    (good / "cards.jsonl").write_text((prepared.batch / "cards.jsonl").read_text())
    args = ["test", "certify", "--profile", str(prepared.profile_path), "--records", str(certkit.SAMPLE),
            "--keys", str(prepared.keys_path), "--today", "2026-01-15"]  # fmt: skip
    rc = main([*args, "--cards", str(good), "--report-dir", str(tmp_path / "r1")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "r1" / "certification.html").exists()
    # a card certified against the wrong record fails, and so does the exit code
    rc = main([*args, "--card", str(good / f"card-{prepared.cards[0].card_id}.json"), "--record", "3",
               "--report-dir", str(tmp_path / "r2")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 1
    assert "DATA-PAN-001" in out
    assert NA  # (imported for symmetry)

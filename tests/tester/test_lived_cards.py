"""Cards that lived are still certifiable (issue 11): counter rules judge the card's history
unless the profile says ``card.certify_as: fresh``; ``test transaction --card IMAGE`` says that
it updated the image, and ``--dry-run`` leaves the image untouched."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import certkit  # type: ignore[import-not-found]
import pytest

from cardlab.cli import main
from cardlab.emulator import Card
from cardlab.tester import certify
from cardlab.tester.rules import FAIL, PASS

TERMINAL = certkit.prepkit.VECTORS / "terminals" / "visa-cvn18.yaml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("lived"))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_certified_ten_times_still_passes(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    card = certkit.card_from_dgis(prepared.clear(0))
    for n in range(12):  # ten times and more: each certification is a transaction (ATC + 1)
        rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
        assert rep.verdict == PASS, (n, [(r.rule, r.evidence) for r in rep.failed + rep.not_run])
    # as fresh from perso, the same card is no longer what perso left
    rep = certify.certify_card(certkit.channel(card), replace(prof, certify_as="fresh"), rec, keys, today=certkit.TODAY)
    assert rep.verdict == FAIL and "STATE-ATC-001" in rep.failed_rules()


def test_after_two_approved_transactions_still_passes(prepared: certkit.Prepared, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card.json"
    certkit.card_from_dgis(prepared.clear(0)).save(image)
    rec = certkit.sources_for(prepared)[1]
    for seed in (1, 2):
        rc = main(["test", "transaction", "--card", str(image), "--terminal", str(TERMINAL), "--amount", "1000",
                   "--pin", rec.pin, "--keys", str(prepared.keys_path), "--force-online", "--seed", str(seed)])
        out, err = capsys.readouterr()
        assert rc == 0 and out.startswith("approved"), out + err
        assert f"the card image {image} was updated" in err
    prof, rec, keys = certkit.sources_for(prepared)
    from cardlab.tester.channel import RecordingChannel

    card = Card.load(image)
    rep = certify.certify_card(RecordingChannel(card.transmit), prof, rec, keys, today=certkit.TODAY)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed + rep.not_run]
    atc = next(r for r in rep.results if r.rule == "STATE-ATC-001" and r.verdict == PASS)
    assert "consistent with the card's history" in atc.evidence


def test_dry_run_leaves_the_image_untouched(prepared: certkit.Prepared, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card.json"
    certkit.card_from_dgis(prepared.clear(0)).save(image)
    before = _sha(image)
    rc = main(["test", "transaction", "--card", str(image), "--terminal", str(TERMINAL), "--amount", "1000",
               "--keys", str(prepared.keys_path), "--force-online", "--seed", "1", "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 0 and out.startswith("approved"), out + err
    assert _sha(image) == before and "left untouched" in err and "was updated" not in err
    assert not list(tmp_path.glob("*.tmp"))


def test_dry_run_needs_an_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "transaction", "--reader", "no such reader", "--dry-run"]) == 2
    assert "--dry-run needs --card" in capsys.readouterr().err

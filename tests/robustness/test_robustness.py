"""Bounded versions of the robustness scripts (robustness/, docs/robustness.md):
the same zero figures on fewer APDUs, bit flips and kills."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from robustness import bad_source, crash_soak, fault_soak, fuzz_apdus, scp03_tamper, secrets_scan  # noqa: E402


def test_fuzz_apdus_5000() -> None:
    r = fuzz_apdus.run(5000, seed=11)
    assert r.apdus >= 5000 and r.sessions_opened > 0 and r.secured_sent > 0 and r.reloads > 0
    assert (r.uncaught, r.bad_sw, r.violations) == (0, 0, 0), r.examples


def test_fuzz_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzzer counts an exception the card turns into 6F00, and a counter going down."""
    import logging

    from cardlab.emulator.card import Card

    fz = fuzz_apdus.Fuzzer(3, fuzz_apdus.Result())
    card = Card(fuzz_apdus.card_image.loads(fz.scenarios[0].image))
    card.power_on()
    logging.getLogger("emulator").addHandler(fz.catch)
    try:
        seen = fuzz_apdus._snapshot(card)
        card.state.sequence_counter -= 1  # as if the command had lowered it
        _resp, seen = fz.send(card, bytes.fromhex("80CA9F7F00"), seen)
        assert fz.result.violations == 1

        def boom(*_: object) -> bytes:
            raise KeyError("planted")

        monkeypatch.setattr(Card, "_dispatch", boom)
        fz.send(card, bytes.fromhex("80CA9F7F00"), seen)
        assert fz.result.uncaught == 1
    finally:
        logging.getLogger("emulator").removeHandler(fz.catch)


def test_scp03_tamper_every_level() -> None:
    res = scp03_tamper.run(stride=4)  # every byte, bits 0 and 4 after the header, all bits of the header
    assert res.ok, res.problems[:5]
    assert set(res.levels) == {0x01, 0x03, 0x11, 0x13, 0x33}
    assert res.total("refused") == res.total("flips") > 0
    assert res.total("closed") + res.total("other_channel") == res.total("flips")
    assert res.total("replays_refused") == res.total("replays") == 30


def test_crash_soak_3_kills(tmp_path: Path) -> None:
    res = crash_soak.run(tmp_path, kills=3, records=12, seed=2, delay=0.05, window=(0.6, 1.2))
    assert res.kills >= 2
    assert res.ok, crash_soak.report(res)
    assert res.unaccounted == 0 and res.audit_ok


def test_bad_source_corpus(tmp_path: Path) -> None:
    res = bad_source.run(tmp_path)
    assert res.kinds >= 30
    assert res.ok, res.problems
    assert res.card_data_written == res.engine_done == res.engine_images_changed == 0


def test_secrets_scan(tmp_path: Path) -> None:
    res = secrets_scan.run(tmp_path, cards=2, demo_cards=4)
    assert res.ok, secrets_scan.report(res)
    assert res.hits == [] and res.control_hits > 0


def test_fault_soak_reader_faults(tmp_path: Path) -> None:
    """The card server (and once pcscd) SIGKILLed mid-command during perso over pcscd + vpcd: every
    record done exactly once, no card left holding cardholder data unspoiled, no traceback."""
    res = fault_soak.run_reader_faults(tmp_path, faults=4, records=4, seed=5, pcscd_every=4)
    if res.skipped:
        pytest.skip(res.skipped)
    assert res.ok, fault_soak.report(res, fault_soak.SharedResult())
    assert res.faults >= 3 and res.pcscd_kills >= 1 and res.done_once == 4 and res.data_unspoiled == 0


def test_fault_soak_shared_stock(tmp_path: Path) -> None:
    res = fault_soak.run_shared_stock(tmp_path, batches=2, records=5)
    assert res.ok, fault_soak.report(fault_soak.ReaderResult(skipped="not run"), res)
    assert res.done == 10 and res.claimed_twice == res.wrong_record == res.data_unaccounted == 0


def test_counter_kill_300(tmp_path: Path) -> None:
    """A card-serving process SIGKILLed mid-command 300 times: no SCP03 sequence counter, ATC or
    PIN try lost or repeated (``python -m robustness.counter_kill`` runs thousands)."""
    from robustness import counter_kill

    res = counter_kill.run(tmp_path, kills=300, seed=3)
    assert res.ok(), res.errors[:5]
    assert res.kills == 300 and res.acks > 300  # kills land after the card is loaded, amid commands


def test_counter_kill_detects_a_card_that_does_not_persist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustness import counter_kill

    from cardlab.emulator.journal import ImageJournal

    monkeypatch.setattr(ImageJournal, "commit", lambda self, card: None)  # inherited by the forked children
    res = counter_kill.run(tmp_path, kills=20, seed=3)
    assert not res.ok() and res.seq_lost and res.atc_lost

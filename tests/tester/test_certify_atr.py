"""Power-on certification: the ATR rules, on T=0 and T=1 cards, and the old Type-B-style ATR."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import certkit  # type: ignore[import-not-found]
import kernelkit  # type: ignore[import-not-found]
from cardlab.cardspec import atr as A
from cardlab.tester import certify
from cardlab.tester.atr import read
from cardlab.tester.rules import ATR_RULE_IDS
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.rules import FAIL, NA, PASS

OLD = bytes.fromhex("3B8880010000000000718100F9")  # cardlab's ATR before issue 10
T0_THEN_T1 = A.build(A.Atr(0x3B, (A.Group(tb=0, tc=0, td_protocol=0), A.Group(td_protocol=1), A.Group()),
                           A.DEFAULT_HISTORICAL))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("atr"))


def _certify(prepared: certkit.Prepared, card_atr: bytes, **profile_changes: object) -> dict[str, tuple[str, str]]:
    card = certkit.card_from_dgis(prepared.clear(0))
    card.state.atr = card_atr
    prof, rec, keys = certkit.sources_for(prepared)
    prof = dataclasses.replace(prof, **profile_changes)  # type: ignore[arg-type]
    rep = certify.certify_card(RecordingChannel(card.transmit, card.power_on()), prof, rec, keys,
                               today=certkit.TODAY)
    others = [(r.rule, r.evidence) for r in rep.failed if r.rule not in ATR_RULE_IDS]
    assert not others, others  # T=0 or T=1, everything else still passes
    return {r.rule: (r.verdict, r.evidence) for r in rep.results if r.rule in ATR_RULE_IDS}


@pytest.mark.parametrize("protocol", [0, 1])
def test_basic_atrs_certify_on_t0_and_t1(prepared: certkit.Prepared, protocol: int) -> None:
    got = _certify(prepared, A.basic(protocol), protocol=protocol)
    assert {r: v for r, (v, _) in got.items()} == dict.fromkeys(ATR_RULE_IDS, PASS), got


def test_old_type_b_style_atr_fails_naming_the_byte(prepared: certkit.Prepared) -> None:
    got = _certify(prepared, OLD)
    assert got["ATR-STRUCT-001"][0] == PASS  # well formed, TCK right …
    verdict, evidence = got["ATR-EMV-001"]  # … but no EMV terminal takes it
    assert verdict == FAIL and "TD2 (byte 3) = 01: after T=0 only T=15 may follow" in evidence
    assert "TB1 absent" in evidence
    assert got["ATR-HIST-001"][0] == FAIL and "not a valid SW" in got["ATR-HIST-001"][1]
    assert got["ATR-PROFILE-001"][0] == NA


def test_t0_followed_by_t1_fails(prepared: certkit.Prepared) -> None:
    verdict, evidence = _certify(prepared, T0_THEN_T1)["ATR-EMV-001"]
    assert verdict == FAIL and "TD2 (byte 5)" in evidence and "found T=1" in evidence


def test_wrong_tck_and_profile_mismatch(prepared: certkit.Prepared) -> None:
    bad = A.DEFAULT_T1[:-1] + bytes((A.DEFAULT_T1[-1] ^ 1,))
    got = _certify(prepared, bad, atr=A.DEFAULT_T1)
    assert got["ATR-STRUCT-001"][0] == FAIL and "TCK (byte 14) = 8F: expected 8E" in got["ATR-STRUCT-001"][1]
    assert got["ATR-PROFILE-001"][0] == FAIL
    assert _certify(prepared, A.DEFAULT_T0, protocol=1)["ATR-PROFILE-001"][0] == FAIL


def test_transaction_needing_get_response_on_t0_and_trace_opens_with_the_atr() -> None:
    from cardlab.tester.trace import render_text

    card, _ = kernelkit.card_for(kernelkit.P())
    card.state.atr = A.basic(0)
    atr = card.power_on()
    raw_log: list[bytes] = []

    def send(apdu: bytes) -> bytes:
        resp = card.transmit(apdu)
        raw_log.append(apdu)
        return resp

    state = kernelkit.run_transaction(RecordingChannel(send, atr, protocol="T=0"), kernelkit.terminal(),
                                      amount=1500, when=kernelkit.WHEN, seed=7)
    assert state.outcome, state.outcome
    assert state.aid  # selection, GPO, records, GENERATE AC all came through 61xx / GET RESPONSE
    assert any(c[1] == 0xC0 for c in raw_log)
    text = render_text(state)
    assert text.startswith("[1] Answer to reset")
    assert "TS   3B  direct convention" in text and "an EMV basic ATR offering T=0; the reader uses T=0" in text


def test_tester_reader_agrees_on_the_known_atrs() -> None:
    a = read(A.DEFAULT_T1)
    assert [b.name for b in a.bytes_][:8] == ["TS", "T0", "TB1", "TC1", "TD1", "TD2", "TA3", "TB3"]
    assert a.protocols == [1] and not a.problems
    assert read(OLD).protocols == [0, 1]


def test_trace_snapshot_unchanged_without_atr(tmp_path: Path) -> None:
    """A channel without an ATR (unit tests' plain functions) adds no power-on step."""
    card, _ = kernelkit.card_for(kernelkit.P())
    state, _ = kernelkit.transact(card)
    assert state.events[0].step != "Answer to reset"

"""PIN safety as a stated policy (issue 11; cardlab/tester/certify/pin.py): the counter is read
before any VERIFY, VERIFY is sent only at the limit and at most once per card per run, a refused
PIN stops the tries, ``--restore-pin-counter`` resets the counter by PIN UNBLOCK and proves it;
and no report carries a status word the card did not send."""

from __future__ import annotations

import re
from dataclasses import replace

import certkit  # type: ignore[import-not-found]
import pytest

from cardlab.emulator import Card
from cardlab.tester import certify
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.rules import FAIL, INCOMPLETE, NOT_RUN, PASS

LIMIT = 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("pin"))


def _counter(card: Card, aid: bytes) -> int:
    """The PIN try counter as the card holds it: SELECT + GET DATA 9F17 (no VERIFY)."""
    ch = RecordingChannel(card.transmit)
    assert ch.transmit(bytes((0, 0xA4, 4, 0, len(aid))) + aid + b"\x00")[-2:] == b"\x90\x00"
    resp = ch.transmit(bytes.fromhex("80CA9F1700"))
    assert resp[-2:] == b"\x90\x00" and resp[:3] == b"\x9F\x17\x01"
    return resp[3]


def _verifies(ch: RecordingChannel) -> int:
    return sum(1 for x in ch.log if len(x.command) > 1 and x.command[1] == 0x20)


def _result(rep: certify.CardReport, rule: str, app: bytes) -> tuple[str, str]:
    (r,) = [r for r in rep.results if r.rule == rule and r.app == app.hex().upper()]
    return r.verdict, r.evidence


def test_three_runs_with_wrong_pins_cost_one_try_at_most(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    wrong = replace(rec, pin="9876" if rec.pin != "9876" else "1234")
    card = certkit.card_from_dgis(prepared.clear(0))
    pin_apps = [a.aid for a in prof.applications if a.offline_pin]
    assert pin_apps
    sent = []
    for run in range(3):
        ch = certkit.channel(card)
        rep = certify.certify_card(ch, prof, wrong, keys, today=certkit.TODAY)
        # a refused PIN fails; a PIN that could not be tried safely leaves the card incomplete, never passed
        assert rep.verdict == (FAIL if _verifies(ch) else INCOMPLETE)
        sent.append(_verifies(ch))
        assert sent[-1] <= 1, f"run {run + 1}: one VERIFY per card and run at most"
        for aid in pin_apps:
            assert _counter(card, aid) >= LIMIT - 1
    # the card keeps a counter per application: each is tried once, then never again below its limit
    assert sent == [1] * min(len(pin_apps), 3) + [0] * (3 - min(len(pin_apps), 3))
    for aid in pin_apps:
        assert _counter(card, aid) == LIMIT - 1
        verdict, why = _result(rep, "KEY-PIN-001", aid)
        assert verdict == NOT_RUN and "below its limit" in why and "VERIFY not sent" in why
        verdict, why = _result(rep, "KEY-PIN-002", aid)
        assert verdict == NOT_RUN and f"PIN try counter {LIMIT - 1} (limit {LIMIT})" in why


def test_one_verify_per_card_even_with_two_pin_applications(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    pin_apps = [a.aid for a in prof.applications if a.offline_pin]
    wrong = replace(rec, pin="9876" if rec.pin != "9876" else "1234")
    card = certkit.card_from_dgis(prepared.clear(0))
    ch = certkit.channel(card)
    rep = certify.certify_card(ch, prof, wrong, keys, today=certkit.TODAY)
    assert _verifies(ch) == 1
    if len(pin_apps) > 1:
        verdict, why = _result(rep, "KEY-PIN-001", pin_apps[1])
        assert verdict == NOT_RUN and "was refused" in why and "no further PIN try" in why


def test_the_right_pin_passes_and_shows_the_counter_before_and_after(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    card = certkit.card_from_dgis(prepared.clear(0))
    for _ in range(3):  # certified again and again: the counter stays at the limit
        rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
        aid = next(a.aid for a in prof.applications if a.offline_pin)
        assert _result(rep, "KEY-PIN-001", aid)[0] == PASS
        verdict, why = _result(rep, "KEY-PIN-002", aid)
        assert verdict == PASS and f"PIN try counter before {LIMIT}, after {LIMIT}" in why


def test_restore_pin_counter_by_pin_unblock(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    wrong = replace(rec, pin="9876" if rec.pin != "9876" else "1234")
    card = certkit.card_from_dgis(prepared.clear(0))
    aid = next(a.aid for a in prof.applications if a.offline_pin)
    rep = certify.certify_card(certkit.channel(card), prof, wrong, keys, today=certkit.TODAY, restore_pin_counter=True)
    assert _counter(card, aid) == LIMIT
    verdict, why = _result(rep, "KEY-PIN-002", aid)
    assert verdict == PASS and "PIN UNBLOCK" in why and f"afterwards {LIMIT}" in why and "after the refused VERIFY" in why
    # the PIN itself is unchanged: the right PIN still verifies
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
    assert _result(rep, "KEY-PIN-001", aid)[0] == PASS
    # without the issuer's SMI key the counter cannot be restored, and the report says why
    no_smi = replace(keys, symmetric={n: k for n, k in keys.symmetric.items() if k[0] != "IMK-SMI"})
    rep = certify.certify_card(certkit.channel(card), prof, wrong, no_smi, today=certkit.TODAY, restore_pin_counter=True)
    verdict, why = _result(rep, "KEY-PIN-002", aid)
    assert verdict == FAIL and "not restored" in why and "IMK-SMI" in why
    assert _counter(card, aid) == LIMIT - 1


SW_IN_TEXT = re.compile(r"\b(?:answered|SW)\s+([0-9A-F]{4})\b")


def test_every_status_word_in_a_report_was_sent_by_the_card(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    wrong = replace(rec, pin="9876" if rec.pin != "9876" else "1234")
    card = certkit.card_from_dgis(prepared.clear(0))
    for record, kw in ((rec, {"destructive": True}), (wrong, {}), (wrong, {}), (wrong, {"restore_pin_counter": True})):
        ch = certkit.channel(card)
        rep = certify.certify_card(ch, prof, record, keys, today=certkit.TODAY, **kw)
        sent = {x.response[-2:].hex().upper() for x in ch.log if len(x.response) >= 2}
        # SWs of T=0 GET RESPONSE turns are followed inside the channel; the final one is logged
        for r in rep.results:
            for text in (r.evidence, r.found):
                for sw in SW_IN_TEXT.findall(text):
                    assert sw in sent, f"{r.rule}: {sw} in {text!r} was never sent by the card"


def test_a_response_without_status_word_is_a_fault_not_a_status_word(prepared: certkit.Prepared) -> None:
    prof, rec, keys = certkit.sources_for(prepared)
    card = certkit.card_from_dgis(prepared.clear(0))

    def mute_on_gpo(apdu: bytes) -> bytes:
        return b"" if apdu[1] == 0xA8 else card.transmit(apdu)

    rep = certify.certify_card(RecordingChannel(mute_on_gpo), prof, rec, keys, today=certkit.TODAY)
    assert rep.verdict == FAIL
    texts = " ".join(r.evidence for r in rep.failed)
    assert "no status word" in texts and "6F00" not in texts


def test_restore_a_counter_that_arrived_below_its_limit(prepared: certkit.Prepared) -> None:
    """A card that arrives one below the limit gets no VERIFY; with --restore-pin-counter its counter
    is reset by PIN UNBLOCK, and the next certification verifies the PIN and passes."""
    prof, rec, keys = certkit.sources_for(prepared)
    wrong = replace(rec, pin="9876" if rec.pin != "9876" else "1234")
    card = certkit.card_from_dgis(prepared.clear(0))
    aid = next(a.aid for a in prof.applications if a.offline_pin)
    certify.certify_card(certkit.channel(card), prof, wrong, keys, today=certkit.TODAY)
    assert _counter(card, aid) == LIMIT - 1
    ch = certkit.channel(card)
    rep = certify.certify_card(ch, prof, rec, keys, today=certkit.TODAY, restore_pin_counter=True)
    assert _result(rep, "KEY-PIN-001", aid)[0] == NOT_RUN  # no VERIFY below the limit, even with the right PIN
    verdict, why = _result(rep, "KEY-PIN-002", aid)
    assert verdict == PASS and f"PIN try counter {LIMIT - 1} on arrival" in why and "PIN UNBLOCK" in why
    assert _counter(card, aid) == LIMIT
    rep = certify.certify_card(certkit.channel(card), prof, rec, keys, today=certkit.TODAY)
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed + rep.not_run]

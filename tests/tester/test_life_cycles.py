"""GP life cycles read by the tester over its own SCP03 (LIFE-CARD-001,
LIFE-CARD-002, LIFE-APP-003) on emulated cards personalized with
tests/emv/cardmaker.py, whose ISD keys are then set to the ones a card stock
diversified from the test key store's KMC would have."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "emv"))

import cardmaker  # type: ignore[import-not-found]  # noqa: E402
from cardlab.emulator import Card  # noqa: E402

from cardlab.tester import gp, scp03, sources  # noqa: E402
from cardlab.tester.certify import life  # noqa: E402
from cardlab.tester.channel import RecordingChannel  # noqa: E402
from cardlab.tester.rules import FAIL, NA, NOT_RUN, PASS, RULES, Result  # noqa: E402

KEYSTORE = ROOT / "vectors" / "test-keystore.json"
KDD = bytes.fromhex("AABBCCDDEE0000000042")


@pytest.fixture(scope="module")
def keys() -> sources.KeyStore:
    return sources.load_keystore(KEYSTORE)


def _card(keys: sources.KeyStore, lifecycle: int = 0x0F) -> tuple[Card, bytes]:
    card, made = cardmaker.make_card(cardmaker.Profile())
    kmc = keys.symmetric_key("KMC", "KMC")
    assert kmc is not None
    ck = scp03.diversify(kmc[1], "KDF3", KDD)
    for entry, value in zip(card.state.keys, (ck.enc, ck.mac, ck.dek), strict=True):
        entry.value = value
    card.state.kdd = KDD
    card.state.lifecycle = lifecycle  # SECURED: what the personalizer engine's last step sets
    card.power_on()
    return card, made[0].profile.aid


def _prof(aid: bytes, target: str = "SECURED") -> life.GpCardProfile:
    return life.GpCardProfile(None, "KMC", "KDF3", 0, target, (aid,))


def _verdicts(results: list[Result]) -> dict[str, str]:
    return {r.rule: r.verdict for r in results}


def test_rules_in_catalogue() -> None:
    for rid in life.LIFE_RULES:
        assert rid in RULES and "GP" in RULES[rid].reference and "§" in RULES[rid].reference


def test_personalized_secured_card_passes(keys: sources.KeyStore) -> None:
    card, aid = _card(keys)
    ch = RecordingChannel(card.transmit)
    res = life.life_cycle_results(ch, _prof(aid), keys)
    assert _verdicts(res) == {"LIFE-CARD-001": PASS, "LIFE-CARD-002": PASS, "LIFE-APP-003": PASS}, [(r.rule, r.evidence) for r in res]
    # GET STATUS went over SCP03 (CLA 84 with a C-MAC), P1=80 and P1=40
    status = [x.command for x in ch.log if x.command[1] == 0xF2]
    assert {c[2] for c in status} == {0x80, 0x40} and all(c[0] == 0x84 for c in status)
    text = " ".join(r.evidence for r in res)
    kmc = keys.symmetric_key("KMC", "KMC")
    assert kmc is not None and kmc[1].hex().upper() not in text.upper()
    assert "PERSONALIZED" in text


def test_card_left_op_ready_fails(keys: sources.KeyStore) -> None:
    card, aid = _card(keys, lifecycle=0x01)
    res = life.life_cycle_results(RecordingChannel(card.transmit), _prof(aid), keys)
    v = _verdicts(res)
    assert v["LIFE-CARD-001"] == FAIL and v["LIFE-CARD-002"] == PASS
    bad = next(r for r in res if r.rule == "LIFE-CARD-001")
    assert bad.expected == "SECURED" and bad.found == "OP_READY"


def test_locked_instance_fails(keys: sources.KeyStore) -> None:
    card, aid = _card(keys)
    rec = next(r for r in card.state.instances if r.aid == aid)
    rec.lifecycle |= 0x80
    res = life.life_cycle_results(RecordingChannel(card.transmit), _prof(aid), keys)
    v = _verdicts(res)
    assert v["LIFE-APP-003"] == FAIL and v["LIFE-CARD-001"] == PASS
    assert "LOCKED(PERSONALIZED)" in next(r.evidence for r in res if r.rule == "LIFE-APP-003")


def test_instance_not_personalized_fails(keys: sources.KeyStore) -> None:
    card, aid = _card(keys)
    rec = next(r for r in card.state.instances if r.aid == aid)
    rec.lifecycle = 0x07  # SELECTABLE: personalization never completed
    res = life.life_cycle_results(RecordingChannel(card.transmit), _prof(aid), keys)
    assert _verdicts(res)["LIFE-APP-003"] == FAIL


def test_card_keys_not_from_the_kmc(keys: sources.KeyStore) -> None:
    card, made = cardmaker.make_card(cardmaker.Profile())  # default ISD keys
    res = life.life_cycle_results(RecordingChannel(card.transmit), _prof(made[0].profile.aid), keys)
    v = _verdicts(res)
    assert v["LIFE-CARD-002"] == FAIL and v["LIFE-CARD-001"] == NA and v["LIFE-APP-003"] == NA


def test_no_kmc_not_run(keys: sources.KeyStore) -> None:
    """Without the KMC the GP rules cannot run: "not run" naming the missing key, never a pass."""
    card, aid = _card(keys)
    empty = sources.KeyStore()
    res = life.life_cycle_results(RecordingChannel(card.transmit), _prof(aid), empty)
    assert set(_verdicts(res).values()) == {NOT_RUN}
    assert all("no KMC" in r.evidence for r in res)


def test_certify_card_hook(keys: sources.KeyStore) -> None:
    """certify_card carries the life-cycle results (gp_status, on by default); switched off they do not run."""
    from cardlab.tester import certify

    card, aid = _card(keys)
    prof = sources.load_profile(ROOT / "vectors" / "profiles" / "visa-cvn18.yaml")
    rec = next(sources.read_records(ROOT / "vectors" / "records" / "sample.csv"))
    results = life.card_gp_results(RecordingChannel(card.transmit), prof, keys, pan=rec.pan, enabled=False)
    assert set(_verdicts(results).values()) == {NOT_RUN}
    assert set(life.LIFE_RULES) <= set(certify.CARD_RULES)


def test_gp_parsers() -> None:
    e3 = bytes.fromhex("E3154F07A00000000310109F70010FC5030000008401AA")
    (entry,) = gp.parse_status_tlv(e3)
    assert entry.aid_hex == "A0000000031010" and entry.lifecycle == 0x0F and entry.modules == (b"\xaa",)
    legacy = gp.parse_status_legacy(bytes.fromhex("07A0000000031010" "0F00" "05F000000001" "8300"))
    assert [(e.aid_hex, gp.app_state_name(e.lifecycle)) for e in legacy] == [
        ("A0000000031010", "PERSONALIZED"), ("F000000001", "LOCKED(INSTALLED)")]
    assert gp.card_state_name(0x0F) == "SECURED" and gp.card_state_code("op_ready") == 0x01
    assert gp.is_personalized(0x0F) and not gp.is_personalized(0x8F) and gp.is_selectable(0x07)
    cplc = gp.parse_cplc(bytes.fromhex("9F7F2A") + bytes(range(42)))
    assert cplc["ic_fabricator"] == "0001" and cplc["ic_serial_number"] == "0C0D0E0F"


def test_get_status_and_cplc_on_the_card(keys: sources.KeyStore) -> None:
    card, aid = _card(keys)
    session, _isd = life.open_session(RecordingChannel(card.transmit), _prof(aid), keys, level=0x13)
    apps, sw = gp.get_status(session.send, gp.APPS)
    assert sw == 0x9000 and aid in {e.aid for e in apps}
    cplc = session.send(bytes.fromhex("80CA9F7F00"))
    assert cplc[-2:] == b"\x90\x00" and len(gp.parse_cplc(cplc[:-2])) == len(gp.CPLC_FIELDS)

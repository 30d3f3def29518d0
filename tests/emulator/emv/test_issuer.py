"""Issuer script commands with EMV secure messaging, MACs and PIN data built
with pyemv: block/unblock, card block, PIN change/unblock, PUT DATA, UPDATE
RECORD; a bad MAC changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from ackit import CVNS, Host, IssuerProfile, cdol1, make_card
from emvkit import PIN, h

from cardlab.cardspec import tlv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

TC, ARQC = 0x40, 0x80
BLOCK, UNBLOCK, CARD_BLOCK = h("841E0000"), h("84180000"), h("84160000")


def online(cvn: int = 0x12, **kw: Any) -> Host:
    profile = IssuerProfile(cvn=cvn, **kw)
    host = Host(make_card(profile), profile)
    host.begin()
    host.first(ARQC)
    return host


def test_scripts_need_an_arqc() -> None:
    profile = IssuerProfile()
    host = Host(make_card(profile), profile)
    host.begin()
    host.arqc, host.atc = bytes(8), h("0001")
    assert host.script(BLOCK) == 0x6985
    host.first(TC)
    assert host.script(BLOCK) == 0x6985
    assert not host.app.data.blocked


@pytest.mark.parametrize("cvn", CVNS)
def test_application_block_then_unblock(cvn: int) -> None:
    host = online(cvn)
    assert host.script(BLOCK) == 0x9000
    assert host.app.data.blocked
    r = host.second(TC, b"00" + cdol1())
    assert r[0x9F27][0] == 0x00 | 0x08 | 0x01  # AAC, advice, service not allowed
    assert host.term.select(host.profile.aid)[1] == 0x6283
    assert host.term.gpo()[1] == 0x9000  # it transacts, but GENERATE AC answers only AAC
    # unblocking needs an online transaction: here in the same one (script after the block)
    host2 = online(cvn)
    assert host2.script(BLOCK) == 0x9000
    assert host2.script(UNBLOCK) == 0x9000
    assert not host2.app.data.blocked
    assert host2.app.tx.scripts_run == 2
    assert host2.term.select(host2.profile.aid)[1] == 0x9000


@pytest.mark.parametrize("cvn", CVNS)
def test_bad_mac_6988_changes_nothing(cvn: int) -> None:
    host = online(cvn)
    before = host.app.data.dump()
    assert host.script(h("04DA9F14"), b"\x09", bad_mac=True) == 0x6988
    assert host.script(BLOCK, bad_mac=True) == 0x6988
    after = host.app.data.dump()
    assert after["flags"]["script_failed"] and not after["flags"]["blocked"]
    after["flags"]["script_failed"] = False
    assert after == before
    assert host.term.send(h("841E000004") + bytes(4))[1] == 0x6987  # cardlab MACs are 8 bytes


def test_script_failed_reported_next_transaction() -> None:
    host = online(0x12, lcol=5, ucol=9)
    assert host.script(BLOCK, bad_mac=True) == 0x6988
    host.second(TC, b"00" + cdol1())
    host.begin()
    r = host.first(TC)
    assert r[0x9F10][6] & 0x08  # Visa CVR byte 4 b4: issuer script processing failed


def test_card_block_locks_the_card() -> None:
    host = online(0x0A)
    assert host.script(CARD_BLOCK) == 0x9000
    assert host.card.state.lifecycle == 0x7F
    assert host.term.select(host.profile.aid)[1] == 0x6A81


def test_card_block_refused_before_secured() -> None:
    profile = IssuerProfile(cvn=0x0A)
    host = Host(make_card(profile, secured=False), profile)
    host.begin()
    host.first(ARQC)
    assert host.script(CARD_BLOCK) == 0x6985
    assert host.app.data.script_failed


@pytest.mark.parametrize("cvn", CVNS)
def test_pin_change_then_verify_new_pin(cvn: int) -> None:
    host = online(cvn)
    assert host.pin_change("8642") == 0x9000
    host.second(TC, b"00" + cdol1())
    host.begin()
    assert host.term.verify_plain(PIN) == 0x63C2
    assert host.term.verify_plain("8642") == 0x9000
    assert host.app.data.pin_try_counter == 3


@pytest.mark.parametrize("cvn", (0x0A, 0x12))
def test_visa_pin_change_with_current_pin(cvn: int) -> None:
    host = online(cvn)
    assert host.pin_change("97531", current="9999") == 0x6A80  # wrong current PIN: no change
    assert host.app.data.script_failed
    assert host.pin_change("97531", current=PIN) == 0x9000
    host.begin()
    assert host.term.verify_plain("97531") == 0x9000


@pytest.mark.parametrize("cvn", CVNS)
def test_pin_unblock_after_blocking(cvn: int) -> None:
    profile = IssuerProfile(cvn=cvn)
    host = Host(make_card(profile), profile)
    host.begin()
    assert [host.term.verify_plain("0000") for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert host.term.verify_plain(PIN) == 0x6983
    host.first(ARQC)
    assert host.script(h("84240000")) == 0x9000
    host.begin()
    assert host.term.verify_plain(PIN) == 0x9000


def test_put_data_updates_risk_parameters_and_get_data() -> None:
    host = online(0x10)
    assert host.script(h("04DA9F14"), b"\x07") == 0x9000  # second command: M/Chip ARQC + 1
    assert host.script(h("04DA9F23"), b"\x09") == 0x9000
    assert host.script(h("04DADF11"), h("000000050000")) == 0x9000
    assert host.app.data.risk.lower_consecutive_offline == 7
    assert host.app.data.risk.upper_consecutive_offline == 9
    assert host.app.data.risk.lower_cumulative_offline == 50000
    assert host.term.get_data(0x9F14)[0] == tlv.encode(0x9F14, b"\x07")
    assert host.script(h("04DA9F36"), b"\x00\x00") == 0x6A88  # counters are the card's own
    assert host.app.data.atc == 1
    assert host.script(h("04DA9F14"), b"\x07\x07") == 0x6A80


def test_update_record() -> None:
    host = online(0x12)
    record = tlv.encode(0x70, tlv.encode(0x5F20, b"NEW/NAME"))
    assert host.script(h("04DC0114"), record) == 0x9000  # SFI 2 record 1
    assert host.term.read_record(2, 1) == (record, 0x9000)
    assert host.script(h("04DC0514"), record) == 0x6A83  # no record 5
    assert host.script(h("04DC0114"), b"\x71\x00") == 0x6A80  # not a 70 template


def test_external_authenticate_refusals() -> None:
    host = online(0x0A)
    assert host.term.send(h("008201000A") + host.arpc1())[1] == 0x6A86
    assert host.term.send(h("0082000004") + bytes(4))[1] == 0x6700
    host.second(AAC := 0x00, b"Z3" + cdol1())
    assert host.term.send(h("008200000A") + host.arpc1())[1] == 0x6985  # after the second GENERATE AC
    del AAC


@pytest.mark.parametrize("cvn", CVNS)
def test_blocked_application_unblocked_with_scripts_over_its_aac(cvn: int) -> None:
    profile = IssuerProfile(cvn=cvn)
    host = Host(make_card(profile), profile)
    host.begin()
    host.app.data.blocked = True  # as if blocked by an earlier script (core may refuse GPO when blocked)
    r = host.first(ARQC)
    assert r[0x9F27][0] & 0xC0 == 0x00  # only AAC from a blocked application
    host.arqc, host.atc = r[0x9F26], r[0x9F36]
    assert host.term.send(h("008200000A") + bytes(10))[1] == 0x6985  # no issuer authentication on an AAC
    assert host.script(UNBLOCK) == 0x9000
    assert not host.app.data.blocked

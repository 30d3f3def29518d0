"""The contactless terminal: Entry Point (Book B), kernel 3 (Book C-3 qVSDC with fDDA),
kernel 2 (Book C-2 EMV mode with CDA), against the card DOUBLE of contactlesskit.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pyemv.cvn import VisaCVN18

from cardlab.tester.channel import RecordingChannel
from cardlab.tester.contactless import ReaderConfigError, parse_reader, run_contactless
from cardlab.tester.contactless.entry_point import pre_process, requested_kernel
from cardlab.tester.contactless.reader import Combination
from cardlab.tester.issuer_host import IssuerHost
from cardlab.tester.state import TransactionState
from cardlab.tester.trace import render_text

from contactlesskit import AID2, AID3, ContactlessCard, cl_terminal
from cardmaker import IMK_AC, IMK_SMC, IMK_SMI

WHEN = datetime(2025, 6, 1, 12, 0, 0)


def run(card: ContactlessCard, amount: int, host: Any = None, **reader: Any) -> TransactionState:
    ch = RecordingChannel(card.transmit, card.atr())
    return run_contactless(ch, cl_terminal(**reader), amount=amount, online_host=host, when=WHEN, seed=7)


def outcome(state: TransactionState) -> Any:
    return state.extras["contactless"]["outcome"]


# -- Entry Point pre-processing (Book B §3.1.1) ----------------------------------------------

def combo(**kw: Any) -> Combination:
    base: dict[str, Any] = dict(aid=AID3, kernel=3, ttq=bytes.fromhex("36C00080"), transaction_limit=10000,
                                floor_limit=3000, cvm_limit=5000)
    base.update(kw)
    return Combination(**base)


def test_pre_processing_resets_ttq_byte2_and_sets_it_from_the_limits() -> None:
    low = pre_process(combo(), 1000, 0)
    assert low.ttq == bytes.fromhex("36000080") and not low.not_allowed
    floor = pre_process(combo(), 3001, 0)
    assert floor.floor_limit_exceeded and floor.ttq[1] == 0x80
    at_floor = pre_process(combo(), 3000, 0)
    assert not at_floor.floor_limit_exceeded  # "greater than" the floor limit
    cvm = pre_process(combo(), 5000, 0)
    assert cvm.cvm_limit_exceeded and cvm.ttq[1] == 0xC0  # ≥ the CVM limit, and > the floor limit
    over = pre_process(combo(), 10000, 0)
    assert over.not_allowed  # ≥ the transaction limit


def test_pre_processing_zero_amount_and_terminal_floor_limit() -> None:
    assert pre_process(combo(), 0, 0).ttq[1] & 0x80  # zero amount: online cryptogram
    offline_only = combo(ttq=bytes.fromhex("3E000080"))
    assert pre_process(offline_only, 0, 0).not_allowed
    no_reader_floor = combo(floor_limit=None)
    assert pre_process(no_reader_floor, 2500, 2000).floor_limit_exceeded  # falls back to 9F1B
    assert not pre_process(no_reader_floor, 1500, 2000).floor_limit_exceeded
    assert pre_process(combo(status_check=True), 100, 0).ttq[1] & 0x80


def test_requested_kernel() -> None:
    assert requested_kernel({0x4F: AID3, 0x9F2A: b"\x03"}) == 3
    assert requested_kernel({0x4F: bytes.fromhex("A0000000041010")}) == 2  # RID default, Table 3-6
    assert requested_kernel({0x4F: AID3}) == 0  # unknown RID, no 9F2A: any kernel
    assert requested_kernel({0x4F: AID3, 0x9F2A: b"\x00"}) == 0


def test_reader_config_errors() -> None:
    with pytest.raises(ReaderConfigError, match="kernel 3 needs a TTQ"):
        parse_reader({"combinations": [{"aid": AID3.hex(), "kernel": 3}]})
    with pytest.raises(ReaderConfigError, match="not a kernel"):
        parse_reader({"ttq": "36000080", "combinations": [{"aid": AID3.hex(), "kernel": 7}]})
    with pytest.raises(ReaderConfigError, match="unknown"):
        parse_reader({"ttq": "36000080", "limit": 1, "combinations": [{"aid": AID3.hex(), "kernel": 3}]})


def test_over_the_transaction_limit_tries_another_interface() -> None:
    card = ContactlessCard()
    s = run(card, 200000)
    assert outcome(s).status == "Try Another Interface" and s.outcome == "try another interface"
    assert card.answers == []  # the card is not even asked


def test_combination_selection_by_kernel_id() -> None:
    # the card asks for kernel 2 for an AID the reader only has with kernel 3: no combination
    s = run(ContactlessCard(ppse_kernel=b"\x02"), 1000)
    assert outcome(s).status == "End Application"
    assert "no allowed combination" in render_text(s)


def test_combination_priority_and_next_on_failed_select() -> None:
    from cardlab.tester import tlv
    other = tlv.encode(0x61, tlv.encode(0x4F, AID3 + b"\x01") + tlv.encode(0x87, b"\x01") + tlv.encode(0x9F2A, b"\x03"))
    card = ContactlessCard(priority=2, extra_entries=[other])
    s = run(card, 1000)
    selects = [c.hex().upper() for c, _ in card.answers if c[1] == 0xA4]
    # priority 1 first (it fails: 6A82), then the priority 2 entry
    assert selects[1].endswith((AID3 + b"\x01").hex().upper() + "00")
    assert outcome(s).status == "Approved"


# -- kernel 3 -------------------------------------------------------------------------------

def test_kernel3_offline_approval_with_fdda() -> None:
    s = run(ContactlessCard(), 1000)
    out = outcome(s)
    assert out.status == "Approved" and out.cvm == "No CVM" and out.ui_message == 0x03
    assert s.oda_method == "fDDA" and s.oda_ok is True
    text = render_text(s)
    assert "fDDA successful" in text and "9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69" in text


def test_kernel3_online_request_arqc_verified_at_the_host_and_with_pyemv() -> None:
    card = ContactlessCard()
    host = IssuerHost(IMK_AC)
    s = run(card, 6000, host)  # above the floor limit: online cryptogram required; above CVM limit
    assert outcome(s).status == "Online Request"
    assert outcome(s).cvm == "Online PIN" or outcome(s).cvm == "Obtain Signature"
    assert s.outcome == "approved online" and s.online_response["arqc_valid"] is True
    v = card.pdol_values
    expected = VisaCVN18(IMK_AC, IMK_SMI, IMK_SMC, card.profile.pan, card.profile.psn).generate_ac(
        v[0x9F02], v[0x9F03], v[0x9F1A], v[0x95], v[0x5F2A], v[0x9A], v[0x9C], v[0x9F37], card.aip,
        s.card_data[0x9F36], s.card_data[0x9F10])
    assert bytes(expected) == s.card_data[0x9F26]
    assert v[0x9F66][1] & 0xC0 == 0xC0  # TTQ: online cryptogram and CVM required


def test_kernel3_wrong_key_host_declines() -> None:
    s = run(ContactlessCard(), 6000, IssuerHost(IMK_SMI))
    assert s.outcome == "declined online" and s.online_response["arqc_valid"] is False


def test_kernel3_bad_fdda_signature_goes_online_when_the_ctq_says_so() -> None:
    s = run(ContactlessCard(tamper_sdad=True, ctq=b"\x20\x00"), 1000)
    assert outcome(s).status == "Online Request" and "fDDA failed" in outcome(s).reason
    assert s.tvr_set("DDA failed")


def test_kernel3_bad_fdda_signature_switches_interface_or_declines() -> None:
    s = run(ContactlessCard(tamper_sdad=True, ctq=b"\x10\x00"), 1000)
    assert outcome(s).status == "Try Another Interface"
    s = run(ContactlessCard(tamper_sdad=True, ctq=b"\x00\x00"), 1000)
    assert outcome(s).status == "Declined"


def test_kernel3_missing_9f69_fails_fdda() -> None:
    s = run(ContactlessCard(omit_9f69=True, ctq=b"\x00\x00"), 1000)
    assert outcome(s).status == "Declined" and "9F69" in outcome(s).reason


def test_kernel3_ctq_online_pin_on_offline_only_reader_declines() -> None:
    # offline-only reader (TTQ byte 1 b4), amount over the CVM limit, the card demands online PIN
    s = run(ContactlessCard(ctq=b"\x80\x00", offline_limit=10000), 6000, ttq="3E000080", online_capable=False,
            floor_limit=10000)
    assert outcome(s).status == "Declined" and "online PIN" in outcome(s).reason


def test_kernel3_gpo_6984_tries_another_interface() -> None:
    s = run(ContactlessCard(gpo_sw=0x6984), 1000)
    assert outcome(s).status == "Try Another Interface"


def test_kernel3_arqc_without_host_is_declined_unable_to_go_online() -> None:
    s = run(ContactlessCard(), 6000)
    assert outcome(s).status == "Online Request" and s.outcome == "declined (unable to go online)"


# -- kernel 2 -------------------------------------------------------------------------------

def test_kernel2_emv_mode_with_cda_offline() -> None:
    card = ContactlessCard(kernel=2)
    s = run(card, 1000)
    assert outcome(s).status == "Approved", render_text(s)
    assert s.oda_method == "CDA" and s.oda_ok is True
    gac = [c for c, _ in card.answers if c[1] == 0xAE][0]
    assert gac[2] & 0x10  # CDA requested


def test_kernel2_online_request_verified() -> None:
    s = run(ContactlessCard(kernel=2), 6000, IssuerHost(IMK_AC))
    assert outcome(s).status == "Online Request", render_text(s)
    assert s.outcome == "approved online" and s.online_response["arqc_valid"] is True


def test_kernel2_cda_failure_ends_the_application() -> None:
    s = run(ContactlessCard(kernel=2, tamper_sdad=True), 1000)
    assert outcome(s).status == "End Application" and "CDA failed" in outcome(s).reason


def test_kernel2_mag_stripe_only_card_is_out_of_scope() -> None:
    s = run(ContactlessCard(kernel=2, aip2=bytes.fromhex("3D00")), 1000)
    assert outcome(s).status == "End Application" and "mag-stripe" in outcome(s).reason


# -- cardlab test transaction --contactless ----------------------------------------------------

def _cli(tmp_path: Any, card: ContactlessCard, *args: str) -> tuple[int, str]:
    import argparse
    import io
    from contextlib import redirect_stdout
    from pathlib import Path

    from cardlab.tester.transaction import add_commands

    root = Path(__file__).resolve().parents[2]
    terminal = tmp_path / "t.yaml"
    terminal.write_text(f"""name: cl
capabilities: E0F8C8
terminal_type: 0x22
currency: 978
floor_limit: 10000
ca_keys: [{{file: {root}/vectors/test-ca.json}}]
aids: [{{aid: {AID3.hex().upper()}}}]
contactless:
  ttq: "36000080"
  transaction_limit: 100000
  floor_limit: 5000
  cvm_limit: 5000
  combinations: [{{aid: {AID3.hex().upper()}, kernel: 3}}, {{aid: {AID2.hex().upper()}, kernel: 2}}]
""")
    opened: list[str] = []

    def open_image(path: str, interface: str = "contact") -> Any:
        opened.append(interface)
        return card

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(), open_image)
    ns = parser.parse_args(["transaction", "--card", "x.json", "--terminal", str(terminal), "--contactless",
                            "--seed", "3", *args])
    out = io.StringIO()
    with redirect_stdout(out):
        rc = ns.func(ns)
    assert opened == ["contactless"]
    return rc, out.getvalue()


def test_cli_contactless_offline_approval_with_trace(tmp_path: Any) -> None:
    rc, out = _cli(tmp_path, ContactlessCard(), "--amount", "1000", "--trace")
    assert rc == 0, out
    assert "Entry Point: pre-processing" in out and "Kernel 3 (qVSDC)" in out and "fDDA successful" in out
    assert "contactless outcome: Approved" in out and "'03' Approved" in out
    assert "4761739001010010" not in out  # the PAN is masked


def test_cli_contactless_online_with_keys(tmp_path: Any) -> None:
    keys = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "vectors" / "test-keystore.json")
    rc, out = _cli(tmp_path, ContactlessCard(kernel=2), "--amount", "6000", "--keys", keys, "--pin", "1234")
    assert "contactless outcome: Online Request" in out
    assert rc == 0 and out.startswith("approved online"), out


def test_contactless_atr_form() -> None:
    from cardlab.tester.contactless.atr import check
    assert check(ContactlessCard().atr()) == []
    assert check(bytes.fromhex("3B6800000073C84013009000"))  # a contact ATR is not the PC/SC contactless form
    s = run(ContactlessCard(), 1000)
    assert "the PC/SC contactless form, 4 historical byte(s) 8073C821" in render_text(s)


# -- certification (CL-* rules) against the doubles ---------------------------------------------

def _certify(card: ContactlessCard, *, shared_atc: bool = True, ctq: bytes = b"\x20\x00") -> dict[str, Any]:
    from dataclasses import replace
    from datetime import date
    from pathlib import Path

    from cardlab.tester import sources, tlv
    from cardlab.tester.certify.contactless import contactless_rules
    from cardlab.tester.certify.context import AppContext
    from cardlab.tester.certify.results import Collector
    from cardlab.tester.kernel.start import new_state
    from cardlab.tester.rules import CL_RULE_IDS

    from contactlesskit import PDOL3

    root = Path(__file__).resolve().parents[2]
    profile = sources.load_profile(root / "vectors" / "profiles" / "visa-cvn18.yaml")
    spec = sources.ContactlessSpec(3, tuple(tlv.parse_dol(PDOL3)), ctq, True, None, None)
    app = replace(profile.applications[0], aid=AID3, contactless=spec)
    keys = sources.load_keystore(root / "vectors" / "test-keystore.json")

    def contact(apdu: bytes) -> bytes:  # the card's contact side: SELECT and GET DATA ATC
        if apdu[1] == 0xCA:
            atc = card.atc if shared_atc else 0x10
            return tlv.encode(0x9F36, atc.to_bytes(2, "big")) + b"\x90\x00"
        return b"\x90\x00"

    term = cl_terminal()
    ctx = AppContext(RecordingChannel(contact), app, None, keys, term, False, date(2025, 6, 1),  # type: ignore[arg-type]
                     Collector(AID3.hex().upper(), card.profile.pan), new_state(term, amount=100, when=WHEN),
                     contactless=RecordingChannel(card.transmit, card.atr()))
    contactless_rules(ctx)
    return {r.rule: r for r in ctx.c.results(CL_RULE_IDS, "unreached")}


def test_certify_contactless_passes_on_a_good_card() -> None:
    got = _certify(ContactlessCard())
    verdicts = {k: v.verdict for k, v in got.items()}
    assert verdicts == {k: "pass" for k in verdicts}, {k: (v.verdict, v.evidence) for k, v in got.items()}


def test_certify_contactless_findings() -> None:
    assert _certify(ContactlessCard(), shared_atc=False)["CL-ATC-001"].verdict == "fail"
    assert _certify(ContactlessCard(), ctq=b"\x00\x00")["CL-CTQ-001"].verdict == "fail"
    bad = _certify(ContactlessCard(tamper_sdad=True))
    assert bad["CL-ODA-001"].verdict == "fail"
    assert _certify(ContactlessCard(ppse_kernel=b""))["CL-PPSE-001"].verdict == "fail"


def test_kernel3_ctq_switch_interface_for_cash() -> None:
    card = ContactlessCard(ctq=b"\x04\x00")
    ch = RecordingChannel(card.transmit, card.atr())
    s = run_contactless(ch, cl_terminal(), amount=1000, transaction_type=0x01, when=WHEN, seed=1)
    assert outcome(s).status == "Try Another Interface" and "cash" in outcome(s).reason
    s = run(ContactlessCard(ctq=b"\x04\x00"), 1000)  # a purchase is not concerned
    assert outcome(s).status == "Approved"


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(amount=st.integers(0, 300_000), txn=st.none() | st.integers(1, 300_000), floor=st.none() | st.integers(0, 300_000),
       cvm=st.none() | st.integers(0, 300_000), ttq=st.binary(min_size=4, max_size=4), terminal_floor=st.integers(0, 300_000))
def test_pre_processing_properties(amount: int, txn: int | None, floor: int | None, cvm: int | None, ttq: bytes,
                                   terminal_floor: int) -> None:
    """Book B §3.1.1 as invariants: only TTQ byte 2 b8/b7 change, each for its reason."""
    p = pre_process(combo(ttq=ttq, transaction_limit=txn, floor_limit=floor, cvm_limit=cvm), amount, terminal_floor)
    offline_only = bool(ttq[0] & 0x08)
    assert p.not_allowed == ((txn is not None and amount >= txn) or (amount == 0 and offline_only))
    floor_exceeded = amount > (floor if floor is not None else terminal_floor)
    assert bool(p.ttq[1] & 0x80) == (floor_exceeded or (amount == 0 and not offline_only))
    assert bool(p.ttq[1] & 0x40) == (cvm is not None and amount >= cvm)
    assert p.ttq[0] == ttq[0] and p.ttq[2:] == ttq[2:] and p.ttq[1] & 0x3F == ttq[1] & 0x3F

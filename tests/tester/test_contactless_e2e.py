"""End to end, in process, both interfaces of ONE card: a sample profile's dual-interface card
(the personalizer's data preparation, the emulator's EMV applet, certkit) ↔ the tester's
contactless terminal (Entry Point, kernel 3 / kernel 2), the contact kernel, and the CL-*
certification rules. The card switches interface the way a card moves from a reader's field
to its slot: a power cycle on the other interface, one state, one ATC."""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import certkit
from cardlab.emulator import Card
from cardlab.tester import certify
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.contactless import run_contactless
from cardlab.tester.issuer_host import IssuerHost
from cardlab.tester.kernel import run_transaction
from cardlab.tester.rules import CL_RULE_IDS
from cardlab.tester.terminal import load_terminal

pytestmark = pytest.mark.skipif("interface" not in inspect.signature(Card.__init__).parameters,
                                reason="the card has no contactless interface yet (issue 16, card side)")

WHEN = datetime(2026, 1, 15, 12, 0, 0)
#: the checkout's terminal profiles (the installed cardlab.vectors may be another checkout's)
TERMINALS_DIR = Path(__file__).resolve().parents[2] / "vectors" / "terminals"


class Interface:
    """One interface of the in-process card; using it after the other one power-cycles the card."""

    def __init__(self, card: Card, name: str) -> None:
        self.card, self.name = card, name

    def _here(self) -> None:
        if self.card.interface != self.name or not self.card.powered:
            self.card.interface = self.name
            self.card.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        self._here()
        return self.card.transmit(apdu)

    def channel(self) -> RecordingChannel:
        self.card.interface = self.name
        atr = self.card.power_on()
        return RecordingChannel(self.transmit, atr)


@pytest.fixture(scope="module", params=["visa-cvn18", "mastercard-cvn16"])
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return certkit.prepare_sample(request.param, tmp_path_factory.mktemp(request.param))


def _host(prepared: Any, app: Any) -> IssuerHost:
    keys = certkit.sources.load_keystore(prepared.keys_path)
    found = keys.symmetric_key(app.keys.get("imk_ac"), "IMK-AC")
    assert found is not None
    return IssuerHost(found[1])


def _atc(state: Any) -> int:
    raw = state.card_data.get(0x9F36) or state.ac1.get(0x9F36)
    return int.from_bytes(raw, "big")


def test_contactless_transaction_then_contact_one_atc(prepared: Any) -> None:
    card = certkit.card_from_dgis(prepared.clear(0))
    profile = certkit.sources.load_profile(prepared.profile_path)
    app = profile.applications[0]
    terminal = load_terminal(TERMINALS_DIR / f"{prepared.profile_path.stem}.yaml")
    host = _host(prepared, app)
    cl = run_contactless(Interface(card, "contactless").channel(), terminal, amount=1000, online_host=host,
                         when=WHEN, seed=1)
    out = cl.extras["contactless"]["outcome"]
    assert out.status in ("Approved", "Online Request"), out
    assert cl.oda_ok is not False, out
    if out.status == "Online Request":
        assert cl.online_response["arqc_valid"] is True
    above = run_contactless(Interface(card, "contactless").channel(), terminal, amount=6000, online_host=host,
                            when=WHEN, seed=2)
    assert above.extras["contactless"]["outcome"].status == "Online Request"
    assert above.online_response["arqc_valid"] is True and above.outcome == "approved online"
    contact = run_transaction(Interface(card, "contact").channel(), terminal, amount=1000, pin="1234",
                              online_host=host, when=WHEN, seed=3)
    assert [_atc(cl), _atc(above), _atc(contact)] == [_atc(cl), _atc(cl) + 1, _atc(cl) + 2]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.sampled_from(["contact", "contactless"]), min_size=2, max_size=5))
def test_interleaved_interfaces_keep_one_atc_that_never_repeats(prepared: Any, order: list[str]) -> None:
    card = certkit.card_from_dgis(prepared.clear(0))
    terminal = load_terminal(TERMINALS_DIR / f"{prepared.profile_path.stem}.yaml")
    atcs = []
    for n, where in enumerate(order):
        ch = Interface(card, where).channel()
        if where == "contactless":
            s = run_contactless(ch, terminal, amount=1000 + n, when=WHEN, seed=n)
        else:
            s = run_transaction(ch, terminal, amount=1000 + n, pin="1234", when=WHEN, seed=n)
        atcs.append(_atc(s))
    assert atcs == list(range(atcs[0], atcs[0] + len(atcs))), (order, atcs)


def test_certify_both_interfaces(prepared: Any) -> None:
    card = certkit.card_from_dgis(prepared.clear(0))
    prof, rec, keys = certkit.sources_for(prepared)
    terminal = load_terminal(TERMINALS_DIR / f"{prepared.profile_path.stem}.yaml")
    rep = certify.certify_card(Interface(card, "contact").channel(), prof, rec, keys, today=certkit.TODAY,
                               terminal=terminal, contactless=Interface(card, "contactless").channel())
    cl = {(r.rule, r.app): r for r in rep.results if r.rule in CL_RULE_IDS}
    bad = {k: (r.verdict, r.evidence) for k, r in cl.items() if r.verdict not in ("pass", "not applicable")}
    assert not bad
    assert any(r.verdict == "pass" for r in cl.values())
    assert rep.verdict == "pass", [(r.rule, r.evidence) for r in rep.failed]


def test_cli_contactless_on_an_image_then_certify(prepared: Any, tmp_path: Path) -> None:
    """Through the command line and cardlab's image opener (pyscard plug-in): a contactless
    transaction, then certification of both interfaces of the same image."""
    from cardlab.cli import main

    image = tmp_path / "card.json"
    certkit.card_from_dgis(prepared.clear(0)).save(image)
    term = str(TERMINALS_DIR / f"{prepared.profile_path.stem}.yaml")
    assert main(["test", "transaction", "--contactless", "--card", str(image), "--terminal", term,
                 "--amount", "6000", "--keys", str(prepared.keys_path), "--seed", "1"]) == 0
    rc = main(["test", "certify", "--profile", str(prepared.profile_path), "--records", str(certkit.SAMPLE),
               "--keys", str(prepared.keys_path), "--card", str(image), "--terminal", term, "--contactless",
               "--report-dir", str(tmp_path / "reports"), "--today", "2026-01-15", "--details", "all"])
    text = (tmp_path / "reports" / "certification.txt").read_text()
    for rule in ("CL-ATC-001", "CL-ODA-001", "CL-AC-001", "CL-PPSE-001"):
        assert f"{rule} · {prepared.cards[0].apps[0].aid.hex().upper()} · " in text
        assert any(rule in ln and ln.rstrip().endswith("pass") for ln in text.splitlines()), rule
    assert rc == 0, text

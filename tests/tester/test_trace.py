"""The teaching trace, snapshot-tested for one deterministic transaction: an
SDA card (RSA signatures are deterministic), the card's random fixed
(``card.random``), the terminal's unpredictable number fixed by the seed and
the date fixed. UPDATE_SNAPSHOTS=1 rewrites the snapshot."""

from __future__ import annotations

import os
from pathlib import Path

from kernelkit import P, card_for, shows_pin, transact

from cardlab.tester.trace import render_html, render_text

SNAPSHOT = Path(__file__).with_name("snapshots") / "trace_sda_offline.txt"
PAN = "4761739001010010"


def _state():  # type: ignore[no-untyped-def]
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, pin="1234", seed=42)
    return state


def test_trace_snapshot() -> None:
    text = render_text(_state())
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


def test_trace_content_and_privacy() -> None:
    state = _state()
    text = render_text(state)
    for needle in ("Application selection — EMV Book 1", "GET PROCESSING OPTIONS", "5A Application",
                   "476173******0010", "Cardholder verification", "<PIN data withheld>",
                   "TVR 0200000000: SDA selected", "Outcome: approved offline", "Terminal action analysis — EMV Book 3 §10.7"):
        assert needle in text, needle
    page = render_html(state)
    for out in (text, page):
        assert PAN not in out and PAN not in out.replace(" ", "")
        assert not shows_pin(out, "1234")  # neither the PIN nor its PIN block
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page


def test_trace_names_tvr_bits() -> None:
    card, _ = card_for(P(oda="SDA"))
    state, _ = transact(card, pin="1234", amount=50_000)
    text = render_text(state)
    assert 'sets TVR byte 4 b8 "transaction exceeds floor limit" (rule: EMV Book 3 §10.6.1)' in text
    assert "TVR 0200008000: SDA selected; transaction exceeds floor limit" in text


def test_live_trace_prints_each_step_as_it_happens() -> None:
    """``--trace`` prints while the transaction runs: each step's section once the next step starts,
    PANs already masked, and all of it together is exactly the after-the-fact trace."""
    from cardlab.tester.trace import LiveTrace

    card, _ = card_for(P(oda="SDA"))
    chunks: list[tuple[int, str]] = []
    sent: list[bytes] = []

    def transmit(apdu: bytes) -> bytes:
        sent.append(apdu)
        return card.transmit(apdu)

    live = LiveTrace(lambda text: chunks.append((len(sent), text)))
    from kernelkit import WHEN, terminal

    from cardlab.tester.channel import RecordingChannel
    from cardlab.tester.kernel import run_transaction

    state = run_transaction(RecordingChannel(transmit), terminal(), amount=1500, pin="1234", seed=42, when=WHEN,
                            on_event=live.on_event)
    printed_before_the_end = len(chunks)
    live.finish(state)
    assert "".join(text for _, text in chunks) == render_text(state)
    first_gen_ac = next(i for i, apdu in enumerate(sent) if apdu[1] == 0xAE)
    assert chunks[0][1].startswith("[1] Application selection")
    assert chunks[0][0] < first_gen_ac  # selection was printed before the card was asked for a cryptogram
    assert printed_before_the_end >= 6
    assert all(PAN not in text for _, text in chunks)


def test_icc_certificates_are_withheld() -> None:
    """9F46 (and 9F2D) hold the PAN, recoverable with the CA public key: never printed."""
    card, _ = card_for(P(oda="DDA", pin_key_bits=1024))
    state, _ = transact(card, pin="1234", seed=42)
    cert = state.card_data[0x9F46].hex().upper()
    pin_cert = state.card_data[0x9F2D].hex().upper()
    for out in (render_text(state), render_html(state)):
        flat = out.replace(" ", "").replace("\n", "")
        assert cert[:40] not in flat and pin_cert[:40] not in flat
        assert "bytes withheld: the PAN is recoverable from this certificate" in out


def test_section_titles_are_unique_and_taa_is_written_out() -> None:
    """An online CDA transaction meets GENERATE AC, ODA and completion more than once: each title is unique;
    terminal action analysis shows (IAC | TAC) & TVR for denial, online and default."""
    import re

    from kernelkit import WHEN, terminal

    from cardlab.tester.channel import RecordingChannel
    from cardlab.tester.kernel import run_transaction
    from cardlab.tester.trace import sections, titles

    state = _online_state()
    names = titles([s for s, _, _ in sections(state)])
    assert len(names) == len(set(names)) and "First GENERATE AC (continued)" in names
    text = render_text(state)
    headings = re.findall(r"^\[\d+\] (.+?) — ", text, re.M)
    assert headings == names
    assert re.search(r"online +F040AC9800 \| DC4004F800 = FC40ACF800 & 0000008800 = 0000008800: "
                     r"transaction exceeds floor limit; merchant forced transaction online", text)
    assert "Issuer script results (9F5B) 2000000000:" in text and "script 1: script processing successful" in text
    del WHEN, terminal, RecordingChannel, run_transaction


def _online_state():  # type: ignore[no-untyped-def]
    import test_online
    from cardmaker import Profile, make_card
    from kernelkit import WHEN, terminal

    from cardlab.tester.channel import RecordingChannel
    from cardlab.tester.issuer_host import put_data
    from cardlab.tester.kernel import run_transaction

    card, _ = make_card(Profile(cvn=0x12, oda="CDA"))
    host = test_online.host()
    host.queue_scripts(put_data(0x9F14, b"\x04"))
    return run_transaction(RecordingChannel(card.transmit), terminal(floor_limit=0), amount=1000, pin="1234",
                           online_host=host, force_online=True, seed=1, when=WHEN)


class _Page(__import__("html.parser").parser.HTMLParser):
    """What the HTML check needs: section titles, arrows by class, text."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.arrows: dict[str, int] = {}
        self.ids: list[str] = []
        self._in_h2 = False
        self._in_ref = False
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag == "span" and self._in_h2:
            self._in_ref = True
        if tag == "line" and a.get("marker-end"):
            cls = str(a.get("class"))
            self.arrows[cls] = self.arrows.get(cls, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        if tag == "span":
            self._in_ref = False

    def handle_data(self, data: str) -> None:
        if self._in_h2 and not self._in_ref:
            self.h2[-1] += data


def test_html_trace_header_contents_diagram() -> None:
    state = _online_state()
    page = render_html(state)
    parsed = _Page()
    parsed.feed(page)
    steps = [h.strip() for h in parsed.h2 if h.strip()[:1].isdigit()]
    assert len(steps) == len(set(steps)) == len(sections_of(state))
    apdus = sum(1 for ev in state.events if ev.kind == "apdu")
    assert parsed.arrows == {"apdu": apdus, "host": 2}
    assert "header" in parsed.tags and "nav" in parsed.tags and "svg" in parsed.tags
    assert len(set(parsed.ids)) == len(parsed.ids)
    for needle in ("Terminal profile", "Amount", "10.00 EUR", "Outcome", "approved online", "Contents"):
        assert needle in page, needle
    assert "<script" not in page and "http" not in page
    assert "overflow-x" not in page and PAN not in page


def sections_of(state):  # type: ignore[no-untyped-def]
    from cardlab.tester.trace import sections

    return sections(state)

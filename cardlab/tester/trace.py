"""The teaching trace: a transaction told step by step.

For each step: its name and EMV book section; each command and response APDU
with every TLV decoded and named (``cardlab.tester.dictionary`` when present); the
terminal's decision and why, with the TVR/TSI bits it set named. Rendered as
plain text (:func:`render_text`, what the snapshot test compares), as rich
text on a terminal (:func:`print_rich`) and as one self-contained HTML page
(:func:`render_html`).

Privacy: PANs are masked to the first 6 and last 4 digits wherever they occur
(5A, track 2 equivalent 57, track 1 56, and any raw hex that contains them);
the ICC (PIN encipherment) public key certificates 9F46 / 9F2D are withheld,
since the PAN can be recovered from them with the CA's public key;
VERIFY data is never recorded (see :mod:`cardlab.tester.exchange`), the cardholder
name is shown, the PIN never.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator

from . import tlv
from .exchange import mask_pan
from .kernel import optional_module
from .state import TSI_BITS, TVR_BITS, TraceEvent, TransactionState

_FALLBACK_NAMES = {
    0x4F: "Application Identifier (ADF Name)", 0x50: "Application Label", 0x56: "Track 1 Data",
    0x57: "Track 2 Equivalent Data", 0x5A: "Application PAN", 0x5F20: "Cardholder Name",
    0x5F24: "Application Expiration Date", 0x5F25: "Application Effective Date", 0x5F28: "Issuer Country Code",
    0x5F2D: "Language Preference", 0x5F34: "PAN Sequence Number", 0x61: "Application Template",
    0x6F: "FCI Template", 0x70: "READ RECORD Response Template", 0x77: "Response Message Template Format 2",
    0x80: "Response Message Template Format 1", 0x82: "Application Interchange Profile", 0x84: "DF Name",
    0x87: "Application Priority Indicator", 0x88: "SFI of the Directory Elementary File", 0x8C: "CDOL1",
    0x8D: "CDOL2", 0x8E: "CVM List", 0x8F: "CA Public Key Index", 0x90: "Issuer Public Key Certificate",
    0x92: "Issuer Public Key Remainder", 0x93: "Signed Static Application Data", 0x94: "Application File Locator",
    0xA5: "FCI Proprietary Template", 0x9F07: "Application Usage Control", 0x9F08: "Application Version Number",
    0x9F0D: "IAC - Default", 0x9F0E: "IAC - Denial", 0x9F0F: "IAC - Online", 0x9F10: "Issuer Application Data",
    0x9F11: "Issuer Code Table Index", 0x9F12: "Application Preferred Name", 0x9F13: "Last Online ATC Register",
    0x9F14: "Lower Consecutive Offline Limit", 0x9F17: "PIN Try Counter", 0x9F1F: "Track 1 Discretionary Data",
    0x9F23: "Upper Consecutive Offline Limit", 0x9F26: "Application Cryptogram",
    0x9F27: "Cryptogram Information Data", 0x9F32: "Issuer Public Key Exponent", 0x9F36: "ATC",
    0x9F38: "PDOL", 0x9F42: "Application Currency Code", 0x9F44: "Application Currency Exponent",
    0x9F46: "ICC Public Key Certificate", 0x9F47: "ICC Public Key Exponent", 0x9F48: "ICC Public Key Remainder",
    0x9F49: "DDOL", 0x9F4A: "SDA Tag List", 0x9F4B: "Signed Dynamic Application Data",
    0x9F4C: "ICC Dynamic Number", 0x9F4D: "Log Entry", 0xBF0C: "FCI Issuer Discretionary Data",
}


def tag_name(tag: int) -> str:
    dictionary = optional_module("cardlab.tester.dictionary")
    if dictionary is not None:
        try:
            found = str(dictionary.name(tag))
        except (KeyError, ValueError):
            found = ""
        if found and found.upper() != f"{tag:X}":
            return found
    return _FALLBACK_NAMES.get(tag, f"{tag:X}")


# -- masking -----------------------------------------------------------------------------------


def _pans(state: TransactionState) -> list[str]:
    pans: list[str] = []
    pan = state.card_data.get(0x5A)
    if pan:
        pans.append(pan.hex().upper().rstrip("F"))
    t2 = state.card_data.get(0x57)
    if t2:
        pans.append(t2.hex().upper().split("D")[0])
    return [p for p in pans if len(p) >= 12]


def masker(state: TransactionState) -> Callable[[str], str]:
    """Masks every PAN of this transaction in a piece of text (hex or digits)."""
    pans = sorted(set(_pans(state)), key=len, reverse=True)

    def mask(text: str) -> str:
        for pan in pans:
            if pan in text.upper():
                idx = text.upper().index(pan)
                while idx >= 0:
                    text = text[:idx] + mask_pan(pan) + text[idx + len(pan):]
                    idx = text.upper().find(pan)
        return text

    return mask


def _value_text(tag: int, value: bytes, mask: Callable[[str], str]) -> str:
    if tag == 0x5A:
        return mask_pan(value.hex())
    if tag == 0x57:
        digits = value.hex().upper()
        pan, _, rest = digits.partition("D")
        return mask_pan(pan) + "D" + rest[:7] + "…"  # PAN masked, expiry and service code kept, the rest cut
    if tag in (0x56, 0x9F6B, 0x9F1F):
        return f"<{len(value)} bytes withheld>"
    if tag in (0x9F46, 0x9F2D):  # anyone with the CA public key recovers the PAN from them (Book 2 §6.4, §7.1)
        return f"<{len(value)} bytes withheld: the PAN is recoverable from this certificate>"
    text = value.hex().upper()
    if tag in (0x50, 0x9F12, 0x5F20, 0x5F2D, 0x84) and value and all(0x20 <= b < 0x7F for b in value):
        text += f' "{value.decode("ascii")}"'
    return mask(text)


def decode(data: bytes, mask: Callable[[str], str], depth: int = 0) -> Iterator[str]:
    """Lines of the TLV tree, names and values (PANs masked)."""
    try:
        items = tlv.parse(data)
    except tlv.TlvError:
        yield "  " * depth + f"(not BER-TLV) {mask(data.hex().upper())}"
        return
    for item in items:
        name = tag_name(item.tag)
        if item.constructed:
            yield "  " * depth + f"{item.tag:X} {name}"
            yield from decode(item.value, mask, depth + 1)
        else:
            yield "  " * depth + f"{item.tag:X} {name} [{len(item.value)}] = {_value_text(item.tag, item.value, mask)}"


class _Dols:
    """Which data object list a GPO / GENERATE AC command's data follows, for
    splitting it into named fields: the PDOL (9F38) for GPO, CDOL1 (8C) for the
    first GENERATE AC and CDOL2 (8D) for the second (Book 3 §5.4, §6.5.5)."""

    def __init__(self, state: TransactionState) -> None:
        self.card = state.card_data
        self.gen_acs = 0

    def for_command(self, command: bytes) -> tuple[str, bytes] | None:
        if len(command) < 4:
            return None
        if command[1] == 0xA8:
            return ("PDOL", self.card.get(0x9F38, b""))
        if command[1] == 0xAE:
            self.gen_acs += 1
            name, tag = ("CDOL1", 0x8C) if self.gen_acs == 1 else ("CDOL2", 0x8D)
            return (name, self.card.get(tag, b""))
        return None


def _dol_lines(name: str, dol: bytes, data: bytes, mask: Callable[[str], str]) -> list[str]:
    try:
        fields = tlv.parse_dol(dol)
    except (tlv.TlvError, IndexError):
        return []
    if not fields or sum(n for _, n in fields) != len(data):
        return []
    lines, at = [f"{name} data:"], 0
    for tag, n in fields:
        lines.append(f"  {tag:X} {tag_name(tag)} [{n}] = {_value_text(tag, data[at:at + n], mask)}")
        at += n
    return lines


def _command_text(command: bytes, mask: Callable[[str], str], dols: _Dols | None = None) -> list[str]:
    if len(command) < 4:
        return [f"C-APDU {command.hex().upper()}"]
    head = command[:4].hex().upper()
    if command[1] == 0x20:
        return [f"C-APDU {head} Lc {command[4] if len(command) > 4 else 0:02X} <PIN data withheld>"]
    body = command[5 : 5 + command[4]] if len(command) > 5 else b""
    lines = [f"C-APDU {head}" + (f" Lc {len(body):02X} {mask(body.hex().upper())}" if body else "")
             + (f" Le {command[-1]:02X}" if len(command) == 5 or len(command) > 5 + len(body) else "")]
    if body and command[1] in (0xA8,):
        lines += ["  " + line for line in decode(body, mask)]
    which = dols.for_command(command) if dols is not None else None
    if which is not None and body:
        data = body[2:] if command[1] == 0xA8 and body[:1] == b"\x83" else body
        lines += ["  " + line for line in _dol_lines(which[0], which[1], data, mask)]
    return lines


def _response_text(response: bytes, mask: Callable[[str], str]) -> list[str]:
    if len(response) < 2:
        return ["R-APDU (none)"]
    data, sw = response[:-2], response[-2:]
    lines = [f"R-APDU SW {sw.hex().upper()}" + (f", {len(data)} bytes" if data else "")]
    if data:
        lines += ["  " + line for line in decode(data, mask)]
    return lines


def _bits(state: TransactionState) -> list[str]:
    tvr = [n for n, (i, b) in TVR_BITS.items() if state.tvr[i] & b]
    tsi = [n for n, (i, b) in TSI_BITS.items() if state.tsi[i] & b]
    return [
        f"TVR {bytes(state.tvr).hex().upper()}: " + ("; ".join(tvr) if tvr else "no bit set"),
        f"TSI {bytes(state.tsi).hex().upper()}: " + ("; ".join(tsi) if tsi else "no bit set"),
    ]


def _event_lines(event: TraceEvent, mask: Callable[[str], str], dols: _Dols | None = None) -> list[str]:
    if event.kind == "apdu":
        out = [f"  > {mask(event.text)}"]
        out += ["      " + line for line in _command_text(event.command, mask, dols)]
        out += ["      " + line for line in _response_text(event.response, mask)]
        return out
    marker = {"decision": "=>", "check": "- ", "note": "  "}.get(event.kind, "  ")
    out = [f"  {marker} {mask(event.text)}"]
    if event.bits_set:
        out.append("      sets: " + "; ".join(event.bits_set))
    return out


def sections(state: TransactionState) -> list[tuple[str, str, list[TraceEvent]]]:
    """Consecutive events grouped by step: (step, references, events)."""
    out: list[tuple[str, str, list[TraceEvent]]] = []
    for ev in state.events:
        if out and out[-1][0] == ev.step:
            out[-1][2].append(ev)
            if ev.reference and ev.reference not in out[-1][1]:
                out[-1] = (out[-1][0], out[-1][1] + "; " + ev.reference, out[-1][2])
        else:
            out.append((ev.step, ev.reference, [ev]))
    return out


def _section_text(number: int, step: str, refs: str, events: list[TraceEvent], mask: Callable[[str], str],
                  dols: _Dols | None = None) -> str:
    lines = [f"[{number}] {step} — {refs}"]
    for ev in events:
        lines += _event_lines(ev, mask, dols)
    return "\n".join(lines) + "\n\n"


def _summary_text(state: TransactionState) -> str:
    lines = [f"Outcome: {state.outcome or '(unfinished)'}", *_bits(state),
             f"CVM Results {state.cvm_result.hex().upper()}"]
    return "\n".join(lines) + "\n"


def render_text(state: TransactionState) -> str:
    mask, dols = masker(state), _Dols(state)
    return "".join(_section_text(i, step, refs, events, mask, dols)
                   for i, (step, refs, events) in enumerate(sections(state), 1)) + _summary_text(state)


class LiveTrace:
    """The teaching trace printed while the transaction runs: each step's
    section as soon as the next step starts (complete, with every reference
    the step cited, PANs masked with what the terminal knows by then), the last
    one and the outcome at :meth:`finish`. Together exactly :func:`render_text`.
    Pass :meth:`on_event` as ``run_transaction(on_event=...)``."""

    def __init__(self, write: Callable[[str], object], *, rich_console: object | None = None) -> None:
        self.write = write
        self.console = rich_console
        self.printed = 0
        self.dols: _Dols | None = None

    def _emit(self, state: TransactionState, upto: int) -> None:
        secs = sections(state)
        mask = masker(state)
        if self.dols is None:
            self.dols = _Dols(state)
        self.dols.card = state.card_data
        while self.printed < min(upto, len(secs)):
            step, refs, events = secs[self.printed]
            self.printed += 1
            if self.console is not None:
                _rich_section(self.console, self.printed, step, refs, events, mask, self.dols)
            else:
                self.write(_section_text(self.printed, step, refs, events, mask, self.dols))

    def on_event(self, state: TransactionState, event: TraceEvent) -> None:
        del event
        self._emit(state, len(sections(state)) - 1)  # every section but the one still growing

    def finish(self, state: TransactionState) -> None:
        self._emit(state, len(sections(state)))
        if self.console is not None:
            _rich_summary(self.console, state)
        else:
            self.write(_summary_text(state))


def print_rich(state: TransactionState, console: object | None = None) -> None:
    """The same trace, coloured, on a terminal (rich)."""
    from rich.console import Console

    out = console if isinstance(console, Console) else Console()
    mask, dols = masker(state), _Dols(state)
    for i, (step, refs, events) in enumerate(sections(state), 1):
        _rich_section(out, i, step, refs, events, mask, dols)
    _rich_summary(out, state)


def _rich_section(console: object, number: int, step: str, refs: str, events: list[TraceEvent],
                  mask: Callable[[str], str], dols: _Dols | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape

    assert isinstance(console, Console)
    console.rule(f"[bold cyan]{number}. {escape(step)}[/] [dim]{escape(refs)}[/]", align="left")
    for ev in events:
        style = {"apdu": "white", "decision": "bold yellow", "check": "green", "note": "dim"}.get(ev.kind, "")
        for j, line in enumerate(_event_lines(ev, mask, dols)):
            console.print(f"[{style if j == 0 else 'dim'}]{escape(line)}[/]", highlight=False)


def _rich_summary(console: object, state: TransactionState) -> None:
    from rich.console import Console
    from rich.markup import escape

    assert isinstance(console, Console)
    console.rule()
    colour = "green" if state.outcome.startswith("approved") else "red"
    console.print(f"[bold {colour}]Outcome: {escape(state.outcome or '(unfinished)')}[/]")
    for line in _bits(state):
        console.print(escape(line), highlight=False)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;color:#222}
h1{font-size:1.4rem} section{border-left:4px solid #58a;padding:.2rem 1rem;margin:1rem 0}
h2{font-size:1.1rem;margin:.3rem 0} .ref{color:#777;font-weight:normal;font-size:.9rem}
pre{background:#f5f5f5;padding:.4rem;overflow-x:auto;font-size:.85rem;margin:.2rem 0}
.decision{color:#8a5a00;font-weight:bold} .check{color:#2a7a2a} .note{color:#666}
.bits{color:#a33;font-size:.85rem} .outcome{font-size:1.2rem;font-weight:bold}
"""


def render_html(state: TransactionState, title: str = "cardlab transaction trace") -> str:
    """One self-contained page (inline CSS, no scripts, no external links)."""
    mask, dols = masker(state), _Dols(state)
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    for i, (step, refs, events) in enumerate(sections(state), 1):
        parts.append(f"<section><h2>{i}. {e(step)} <span class='ref'>{e(refs)}</span></h2>")
        for ev in events:
            if ev.kind == "apdu":
                body = _command_text(ev.command, mask, dols) + _response_text(ev.response, mask)
                parts.append(f"<div>{e(mask(ev.text))}</div><pre>{e(chr(10).join(body))}</pre>")
            else:
                parts.append(f"<div class='{e(ev.kind)}'>{e(mask(ev.text))}</div>")
                if ev.bits_set:
                    parts.append(f"<div class='bits'>sets: {e('; '.join(ev.bits_set))}</div>")
        parts.append("</section>")
    parts.append(f"<p class='outcome'>Outcome: {e(state.outcome or '(unfinished)')}</p>")
    parts.append("<pre>" + e("\n".join(_bits(state) + [f"CVM Results {state.cvm_result.hex().upper()}"]))
                 + "</pre></body></html>")
    return "\n".join(parts)

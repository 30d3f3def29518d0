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

import re

from .decode import bits as bitsmod
from .decode import sw as swmod
from .decode import tlvtree, values
from .decode import cvm as cvmmod
from .decode.apdu import INS_NAMES
from .decode.elements import Context, dol_lines, explain
from .kernel import optional_module
from .risk import action_codes
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
    return tlvtree.masker(_pans(state))


def _context(state: TransactionState, mask: Callable[[str], str]) -> Context:
    """What the decoders need from the card: currency and exponent for CVM amounts, the AID for the IAD."""
    cur, exp = state.card_data.get(0x9F42), state.card_data.get(0x9F44)
    return Context(currency=int(cur.hex()) if cur and cur.hex().isdigit() else None,
                   exponent=exp[0] if exp else None, aid=state.aid, mask=mask)


def decode(data: bytes, mask: Callable[[str], str], depth: int = 0, ctx: Context | None = None) -> Iterator[str]:
    """Lines of the TLV tree, names and values (PANs masked), each known element explained."""
    return tlvtree.lines(data, mask, ctx or Context(mask=mask), depth)


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
    """The DOL as a table: tag, length, name and the value the terminal filled (Book 3 §5.4)."""
    try:
        rows = dol_lines(dol, Context(dol_data=data, mask=mask))
    except ValueError:
        return []
    return [f"{name} data:", *("  " + r for r in rows)]


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


def _response_text(response: bytes, mask: Callable[[str], str], command: bytes = b"",
                   ctx: Context | None = None) -> list[str]:
    if len(response) < 2:
        return ["R-APDU (none)"]
    data, sw = response[:-2], int.from_bytes(response[-2:], "big")
    ins = command[1] if len(command) > 1 else None
    lines = [f"R-APDU SW {swmod.text(sw, ins)}" + (f", {len(data)} bytes" if data else "")]
    if data:
        lines += ["  " + line for line in decode(data, mask, ctx=ctx)]
    return lines


def _bits(state: TransactionState) -> list[str]:
    tvr = [n for n, (i, b) in TVR_BITS.items() if state.tvr[i] & b]
    tsi = [n for n, (i, b) in TSI_BITS.items() if state.tsi[i] & b]
    return [
        f"TVR {bytes(state.tvr).hex().upper()}: " + ("; ".join(tvr) if tvr else "no bit set"),
        *("    · " + line for line in bitsmod.lines(bitsmod.TVR, bytes(state.tvr)) if tvr),
        f"TSI {bytes(state.tsi).hex().upper()}: " + ("; ".join(tsi) if tsi else "no bit set"),
        *("    · " + line for line in bitsmod.lines(bitsmod.TSI, bytes(state.tsi)) if tsi),
    ]


def _where(name: str) -> str:
    """``TVR byte 4 b8`` / ``TSI byte 1 b7`` for a bit name (Book 3 Annex C5, C6)."""
    for label, table in (("TVR", TVR_BITS), ("TSI", TSI_BITS)):
        if name in table:
            i, mask = table[name]
            return f"{label} byte {i + 1} b{mask.bit_length()}"
    return "?"


def _sets_lines(event: TraceEvent) -> list[str]:
    """Each bit the event set: where it lives (TVR or TSI, byte and bit) and the rule that set it."""
    return [f"      sets {_where(name)} \"{name}\" (rule: {event.reference})" for name in event.bits_set]


_TVR_IN_TEXT = re.compile(r"TVR ([0-9A-F]{10})")


def _taa_lines(state: TransactionState, event: TraceEvent) -> list[str]:
    """The terminal action analysis written out: for denial, online and default,
    (IAC OR TAC) AND TVR and the bits that matched (Book 3 §10.7)."""
    found = _TVR_IN_TEXT.search(event.text)
    tvr = bytes.fromhex(found.group(1)) if found else bytes(state.tvr)
    iacs = action_codes(state.card_data)
    terminal = state.terminal
    tacs = (getattr(terminal, "tac_denial", bytes(5)), getattr(terminal, "tac_online", bytes(5)),
            getattr(terminal, "tac_default", bytes(5)))
    out = [f"    {'':8} {'IAC':<10}   {'TAC':<10}   {'IAC|TAC':<10}   {'TVR':<10}   AND"]
    for label, iac, tac in zip(("denial", "online", "default"), iacs, tacs, strict=True):
        either = bytes(a | b for a, b in zip(iac.ljust(5, b"\0"), tac.ljust(5, b"\0"), strict=True))
        both = bytes(a & b for a, b in zip(either, tvr.ljust(5, b"\0"), strict=True))
        named = sorted(bitsmod.set_names(bitsmod.TVR, both), key=list(TVR_BITS).index)
        out.append(f"    {label:<8} {iac.hex().upper():<10} | {tac.hex().upper():<10} = {either.hex().upper():<10} "
                   f"& {tvr.hex().upper():<10} = {both.hex().upper()}" + (f": {'; '.join(named)}" if named else ""))
    return out


def _event_lines(event: TraceEvent, mask: Callable[[str], str], dols: _Dols | None = None,
                 state: TransactionState | None = None) -> list[str]:
    ctx = _context(state, mask) if state is not None else None
    if event.kind == "apdu":
        out = [f"  > {mask(event.text)}"]
        out += ["      " + line for line in _command_text(event.command, mask, dols)]
        out += ["      " + line for line in _response_text(event.response, mask, event.command, ctx)]
        return out
    marker = {"decision": "=>", "check": "- ", "note": "  "}.get(event.kind, "  ")
    first, *more = mask(event.text).split("\n")  # a text of several lines: details under its headline
    out = [f"  {marker} {first}", *(f"        {line}" for line in more)]
    if state is not None and event.step == "Terminal action analysis" and event.kind == "decision":
        out += _taa_lines(state, event)
    if event.bits_set:
        out += _sets_lines(event)
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


def titles(steps: list[str]) -> list[str]:
    """Unique section titles: a step met again (CDA checks inside GENERATE AC,
    completion around issuer authentication) is marked as continued."""
    seen: dict[str, int] = {}
    out = []
    for step in steps:
        seen[step] = seen.get(step, 0) + 1
        k = seen[step]
        out.append(step if k == 1 else f"{step} (continued)" if k == 2 else f"{step} (continued, part {k})")
    return out


def _section_text(number: int, step: str, refs: str, events: list[TraceEvent], mask: Callable[[str], str],
                  dols: _Dols | None = None, state: TransactionState | None = None) -> str:
    lines = [f"[{number}] {step} — {refs}"]
    for ev in events:
        lines += _event_lines(ev, mask, dols, state)
    return "\n".join(lines) + "\n\n"


def _cvm_results(state: TransactionState) -> str:
    try:
        return "; ".join(cvmmod.results_lines(state.cvm_result))
    except ValueError:
        return "not decodable"


def _script_results(state: TransactionState) -> list[str]:
    value = state.card_data.get(0x9F5B)
    if not value:
        return []
    return [f"Issuer script results (9F5B) {value.hex().upper()}:",
            *("    · " + line for line in explain(0x9F5B, value))]


def _summary_lines(state: TransactionState) -> list[str]:
    return [f"Outcome: {state.outcome or '(unfinished)'}", *_bits(state),
            f"CVM Results {state.cvm_result.hex().upper()}: {_cvm_results(state)}", *_script_results(state)]


def _summary_text(state: TransactionState) -> str:
    return "\n".join(_summary_lines(state)) + "\n"


def render_text(state: TransactionState) -> str:
    mask, dols = masker(state), _Dols(state)
    secs = sections(state)
    names = titles([s for s, _, _ in secs])
    return "".join(_section_text(i, names[i - 1], refs, events, mask, dols, state)
                   for i, (_step, refs, events) in enumerate(secs, 1)) + _summary_text(state)


class LiveTrace:
    """The teaching trace printed while the transaction runs: each step's
    section as soon as the next step starts (complete, with every reference
    the step cited, PANs masked with what the terminal knows by then), the last
    one and the outcome at :meth:`finish`. Together exactly :func:`render_text`.
    Pass :meth:`on_event` as ``run_transaction(on_event=...)``.

    ``pause`` (student mode, ``--step``) is called after each section printed."""

    def __init__(self, write: Callable[[str], object], *, rich_console: object | None = None,
                 pause: Callable[[str], object] | None = None) -> None:
        self.write = write
        self.console = rich_console
        self.printed = 0
        self.dols: _Dols | None = None
        self.pause = pause

    def _emit(self, state: TransactionState, upto: int) -> None:
        secs = sections(state)
        names = titles([s for s, _, _ in secs])
        mask = masker(state)
        if self.dols is None:
            self.dols = _Dols(state)
        self.dols.card = state.card_data
        while self.printed < min(upto, len(secs)):
            _step, refs, events = secs[self.printed]
            self.printed += 1
            title = names[self.printed - 1]
            if self.console is not None:
                _rich_section(self.console, self.printed, title, refs, events, mask, self.dols, state)
            else:
                self.write(_section_text(self.printed, title, refs, events, mask, self.dols, state))
            if self.pause is not None:
                self.pause(title)

    def on_event(self, state: TransactionState, event: TraceEvent) -> None:
        del event
        self._emit(state, len(sections(state)) - 1)  # every section but the one still growing

    def finish(self, state: TransactionState) -> None:
        pause, self.pause = self.pause, None  # nothing left to wait for after the last step
        self._emit(state, len(sections(state)))
        self.pause = pause
        if self.console is not None:
            _rich_summary(self.console, state)
        else:
            self.write(_summary_text(state))


def print_rich(state: TransactionState, console: object | None = None) -> None:
    """The same trace, coloured, on a terminal (rich)."""
    from rich.console import Console

    out = console if isinstance(console, Console) else Console()
    mask, dols = masker(state), _Dols(state)
    secs = sections(state)
    names = titles([s for s, _, _ in secs])
    for i, (_step, refs, events) in enumerate(secs, 1):
        _rich_section(out, i, names[i - 1], refs, events, mask, dols, state)
    _rich_summary(out, state)


def _rich_section(console: object, number: int, step: str, refs: str, events: list[TraceEvent],
                  mask: Callable[[str], str], dols: _Dols | None = None,
                  state: TransactionState | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape

    assert isinstance(console, Console)
    console.rule(f"[bold cyan]{number}. {escape(step)}[/] [dim]{escape(refs)}[/]", align="left")
    for ev in events:
        style = {"apdu": "white", "decision": "bold yellow", "check": "green", "note": "dim"}.get(ev.kind, "")
        for j, line in enumerate(_event_lines(ev, mask, dols, state)):
            console.print(f"[{style if j == 0 else 'dim'}]{escape(line)}[/]", highlight=False)


def _rich_summary(console: object, state: TransactionState) -> None:
    from rich.console import Console
    from rich.markup import escape

    assert isinstance(console, Console)
    console.rule()
    colour = "green" if state.outcome.startswith("approved") else "red"
    lines = _summary_lines(state)
    console.print(f"[bold {colour}]{escape(lines[0])}[/]")
    for line in lines[1:]:
        console.print(escape(line), highlight=False)


# -- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:1rem auto;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin:.3rem 0}
header dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0}
header dt{font-weight:bold} header dd{margin:0}
nav ol{columns:2;font-size:.9rem}
section{border-left:4px solid #888;padding:.2rem 1rem;margin:1rem 0}
.ref{color:#555;font-weight:normal;font-size:.9rem}
pre{background:#f5f5f5;padding:.4rem;font-size:.85rem;margin:.2rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
.decision::before{content:"⇒ decision: ";font-weight:bold} .check::before{content:"✓ check: "}
.note::before{content:"note: "} .bits{font-size:.85rem;white-space:pre-wrap}
.hint{text-decoration:underline dotted;cursor:help}
.outcome{font-size:1.2rem;font-weight:bold;overflow-wrap:anywhere}
svg{width:100%;height:auto;font-family:system-ui,sans-serif} svg text{font-size:11px}
"""


def _apdu_label(ev: TraceEvent) -> str:
    ins = ev.command[1] if len(ev.command) > 1 else None
    name = (INS_NAMES.get(ins, f"INS {ins:02X}") if ins is not None else "?")
    sw = ev.response[-2:].hex().upper() if len(ev.response) >= 2 else "----"
    return f"{name} → {sw}"


def sequence_svg(state: TransactionState, anchors: list[str] | None = None) -> str:
    """A sequence diagram of the exchange, inline SVG: one arrow per APDU
    (terminal → card, labelled with the command and its status word), and
    the authorization request and response to the issuer host when the
    transaction went online. Arrows differ by dash pattern and label, not
    by colour alone."""
    online = bool(state.online_response) or any(ev.step == "Online processing" for ev in state.events)
    cols = {"Terminal": 90, "Card": 430} | ({"Issuer host": 650} if online else {})
    rows: list[tuple[str, str, str, str]] = []  # (class, from, to, label)
    host_done = False
    for ev in state.events:
        if ev.kind == "apdu":
            rows.append(("apdu", "Terminal", "Card", _apdu_label(ev)))
        elif online and ev.step == "Online processing" and not host_done:
            host_done = True
            rows.append(("host", "Terminal", "Issuer host", "authorization request (ARQC)"))
            arc = state.online_response.get("arc")
            arc_text = arc.decode("ascii", "replace") if isinstance(arc, bytes) else "?"
            rows.append(("host", "Issuer host", "Terminal", f"authorization response (ARC {arc_text})"))
    top, step = 40, 22
    height = top + step * len(rows) + 20
    width = 740 if online else 520
    e = html.escape
    out = [f"<svg role='img' aria-label='sequence of the exchange' viewBox='0 0 {width} {height}'>",
           "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
           "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#222'/></marker></defs>"]
    for name, x in cols.items():
        out.append(f"<text x='{x}' y='20' text-anchor='middle' font-weight='bold'>{e(name)}</text>")
        out.append(f"<line class='lifeline' x1='{x}' y1='28' x2='{x}' y2='{height - 10}' stroke='#999' "
                   "stroke-dasharray='2,3'/>")
    for i, (cls, a, b, label) in enumerate(rows):
        y = top + step * i
        x1, x2 = cols[a], cols[b]
        dash = " stroke-dasharray='6,3'" if cls == "host" else ""
        out.append(f"<line class='{cls}' x1='{x1}' y1='{y}' x2='{x2}' y2='{y}' stroke='#222'{dash} "
                   "marker-end='url(#arrow)'/>")
        out.append(f"<text x='{(x1 + x2) / 2:.0f}' y='{y - 4}' text-anchor='middle'>{i + 1}. {e(label)}</text>")
    out.append("</svg>")
    return "".join(out)


def _header(state: TransactionState, title: str) -> list[str]:
    e = html.escape
    mask = masker(state)
    label = state.card_data.get(0x50, b"").decode("ascii", "replace")
    pan = state.card_data.get(0x5A)
    terminal = state.terminal
    currency = getattr(terminal, "currency", None)
    exponent = getattr(terminal, "currency_exponent", None)
    rows = [("Card", f"{state.aid.hex().upper() or '-'} {label}".strip()
             + (f", PAN {values.value_text(0x5A, pan, mask)}" if pan else "")),
            ("Terminal profile", f"{getattr(terminal, 'name', '-')}"
             + (f" ({terminal.source})" if getattr(terminal, "source", "") else "")),
            ("Amount", cvmmod.amount_text(state.amount, currency, exponent)
             + (f" (other {cvmmod.amount_text(state.amount_other, currency, exponent)})" if state.amount_other else "")),
            ("Outcome", state.outcome or "(unfinished)")]
    return [f"<header><h1>{e(title)}</h1><dl>"
            + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows) + "</dl></header>"]


_TLV_LINE = re.compile(r"^(\s*)([0-9A-F]{2,6})( .+? \[\d+\] = )([0-9A-F]+)$")
_BITS_LINE = re.compile(r"^(\s*)(TVR|TSI) ([0-9A-F]+)(:.*)$")
_SETS_LINE = re.compile(r'^(\s*sets )((TVR|TSI) byte \d b\d)( ".*)$')


_BIT_TABLES = {t.tag: t for t in bitsmod.TABLES.values() if t.tag is not None}


def _title(text: str, hint: list[str]) -> str:
    return f"<span class='hint' title='{html.escape('; '.join(hint), quote=True)}'>{html.escape(text)}</span>"


def _hover(line: str, ctx: Context) -> str:
    """One trace line as HTML, a decoded value carrying its explanation as a title
    (shown on hover, besides the lines under it): TLV values a decoder knows,
    the TVR/TSI in the summary, the bit a "sets" line names (Book 3 Annex C5, C6)."""
    e = html.escape
    m = _TLV_LINE.match(line)
    if m and len(m.group(4)) % 2 == 0:
        tag, value = int(m.group(2), 16), bytes.fromhex(m.group(4))
        table = _BIT_TABLES.get(tag)
        try:
            hint = (bitsmod.summary(table, value) or ["no bit set"]) if table is not None else [
                " ".join(h.split()) for h in explain(tag, value, ctx)]
        except ValueError:
            hint = []
        if hint:
            return e(m.group(1) + m.group(2) + m.group(3)) + _title(m.group(4), hint)
    m = _BITS_LINE.match(line)
    if m and len(m.group(3)) in (4, 10):
        table = bitsmod.TVR if m.group(2) == "TVR" else bitsmod.TSI
        hint = bitsmod.summary(table, bytes.fromhex(m.group(3))) or ["no bit set"]
        return e(m.group(1) + m.group(2) + " ") + _title(m.group(3), hint) + e(m.group(4))
    m = _SETS_LINE.match(line)
    if m:
        table = bitsmod.TVR if m.group(3) == "TVR" else bitsmod.TSI
        hint = [f"{m.group(2)} of the {table.name} ({table.source})"]
        return e(m.group(1)) + _title(m.group(2), hint) + e(m.group(4))
    return e(line)


def render_html(state: TransactionState, title: str = "cardlab transaction trace") -> str:
    """One self-contained page (inline CSS and SVG, no scripts, no external
    links): a header (card, terminal, amount, outcome), contents, a sequence
    diagram of the exchange, then each step with a unique title."""
    mask, dols = masker(state), _Dols(state)
    ctx = _context(state, mask)
    e = html.escape
    secs = sections(state)
    names = titles([s for s, _, _ in secs])
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body>", *_header(state, title)]
    parts.append("<nav><h2>Contents</h2><ol>" + "".join(
        f"<li><a href='#step-{i}'>{e(name)}</a></li>" for i, name in enumerate(names, 1))
        + "<li><a href='#summary'>Outcome and bits</a></li></ol></nav>")
    parts.append(f"<figure><figcaption>The exchange, one arrow per command</figcaption>{sequence_svg(state)}"
                 "</figure>")
    for i, (_step, refs, events) in enumerate(secs, 1):
        parts.append(f"<section id='step-{i}'><h2>{i}. {e(names[i - 1])} <span class='ref'>{e(refs)}</span></h2>")
        for ev in events:
            if ev.kind == "apdu":
                body = _command_text(ev.command, mask, dols) + _response_text(ev.response, mask, ev.command, ctx)
                parts.append(f"<div>{e(mask(ev.text))}</div><pre>{chr(10).join(_hover(b, ctx) for b in body)}</pre>")
            else:
                first, *more = mask(ev.text).split("\n")
                parts.append(f"<div class='{e(ev.kind)}'>{e(first)}</div>")
                extra = _event_lines(ev, mask, None, state)[1:]
                if extra:
                    parts.append(f"<pre class='bits'>{chr(10).join(_hover(line.strip(), ctx) for line in extra)}</pre>")
        parts.append("</section>")
    summary = _summary_lines(state)
    parts.append(f"<section id='summary'><h2>Outcome and bits</h2><p class='outcome'>{e(summary[0])}</p>")
    parts.append("<pre>" + "\n".join(_hover(line, ctx) for line in summary[1:]) + "</pre></section></body></html>")
    return "\n".join(parts)

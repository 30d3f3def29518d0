"""One card in each report format: a passing card as one row, a card that
did not pass (and every card with ``details="all"``) with every result, its
evidence whole (wrapped, never cut) and its differences decoded
(:mod:`.differences`). The writer (:mod:`.writer`) streams these pieces.
"""

from __future__ import annotations

import html
import textwrap
import xml.etree.ElementTree as ET
from typing import Any

from ..certify.results import CardReport
from ..rules import CRITICAL, FAIL, NA, NOT_RUN, PASS, RULES, Result
from .differences import differences

#: the text report's width: evidence wraps at it
WIDTH = 110
_ORDER = {FAIL: 0, NOT_RUN: 1, PASS: 2, NA: 3}


def shown_results(card: CardReport, detailed: bool, full: bool = True) -> list[Result]:
    """The results a report shows in full for ``card``: none for a one-row card; else
    failures first, then rules that could not run, then (``full``: ``--details all``) passes, then not applicable.
    Without ``full`` the passes are named only (:func:`passed_ids`)."""
    if not detailed:
        return []
    return sorted((r for r in card.results if full or r.verdict != PASS), key=lambda r: _ORDER.get(r.verdict, 0))


def passed_ids(card: CardReport) -> dict[str, list[str]]:
    """The rules a card passed, by application ("card" for card-level rules)."""
    out: dict[str, list[str]] = {}
    for r in card.results:
        if r.verdict == PASS:
            out.setdefault(r.app or "card", []).append(r.rule)
    return out


def result_json(r: Result) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": r.rule, "app": r.app, "verdict": r.verdict, "severity": RULES[r.rule].severity,
                           "evidence": r.evidence, "expected": r.expected, "found": r.found}
    diff = differences(r.rule, r.evidence, r.expected, r.found) if r.verdict == FAIL else []
    if diff:
        out["differences"] = diff
    return out


def card_json(n: int, uid: str, card: CardReport, detailed: bool, full: bool = True) -> dict[str, Any]:
    """The card's line of ``certification.jsonl``."""
    out: dict[str, Any] = {
        "n": n, "id": uid, "card_id": card.card_id, "profile": card.profile, "record_index": card.record_index,
        "pan": card.pan_masked, "verdict": card.verdict, **({"error": card.error} if card.error else {}), "source": card.source,
        "reader": card.reader, "atr": card.atr, "started": card.started, "seconds": round(card.seconds, 4),
        "counts": card.counts(),
    }
    if detailed:
        out["results"] = [result_json(r) for r in shown_results(card, True, full)]
        if not full:
            out["passed"] = passed_ids(card)
    return out


# -- text -------------------------------------------------------------------------------------------

TEXT_HEAD = f"{'card':<28} {'profile':<18} {'record':>6} {'PAN':<19} {'verdict':<10} {'pass':>4} {'fail':>4} {'n/a':>4} {'norun':>5} {'time':>7}  reader / ATR"


def text_row(uid: str, card: CardReport) -> str:
    k = card.counts()
    where = " ".join(x for x in (card.reader or card.source, card.atr) if x)
    return (f"{uid:<28} {card.profile:<18} {card.record_index:>6} {card.pan_masked:<19} {card.verdict.upper():<10} "
            f"{k[PASS]:>4} {k[FAIL]:>4} {k[NA]:>4} {k[NOT_RUN]:>5} {card.seconds:>6.2f}s  {where}")


def _wrap(label: str, value: str) -> list[str]:
    pad = " " * 14
    return textwrap.wrap(value, WIDTH, initial_indent=f"    {label:<9} ", subsequent_indent=pad,
                         break_long_words=True, break_on_hyphens=False, drop_whitespace=True) or [f"    {label}"]


def text_detail(uid: str, card: CardReport, full: bool = True) -> list[str]:
    out = [f"\n── card {uid}: {card.verdict.upper()} (profile {card.profile}, record {card.record_index}, PAN {card.pan_masked})",
           f"   source {card.source}; reader {card.reader or '-'}; ATR {card.atr or '-'}"]
    if card.error:
        out += _wrap("error", card.error)
    for r in shown_results(card, True, full):
        rule = RULES[r.rule]
        out.append(f"  {r.rule} · {r.app or 'card'} · {rule.severity} · {r.verdict}")
        out += _wrap("evidence", r.evidence)
        if r.expected or r.found:
            out += _wrap("expected", r.expected or "-")
            out += _wrap("found", r.found or "-")
        for d in differences(r.rule, r.evidence, r.expected, r.found) if r.verdict == FAIL else []:
            out += _wrap("differs", d)
    if not full:
        for app, ids in passed_ids(card).items():
            out += _wrap("passed", f"{app}: {' '.join(ids)}")
    return out


# -- HTML -------------------------------------------------------------------------------------------

def _cls(verdict: str) -> str:
    return {PASS: "pass", FAIL: "fail", NA: "na", NOT_RUN: "inc"}.get(verdict, "inc")


def html_row(n: int, uid: str, card: CardReport, detailed: bool) -> str:
    e = html.escape
    k = card.counts()
    name = f"<a href='#c{n}'>{e(uid)}</a>" if detailed else e(uid)
    return (f"<tr><td>{name}</td><td>{e(card.profile)}</td><td>{card.record_index}</td><td class='mono'>{e(card.pan_masked)}</td>"
            f"<td class='{_cls(card.verdict)}'>{e(card.verdict.upper())}</td><td>{k[PASS]}</td><td>{k[FAIL]}</td><td>{k[NA]}</td><td>{k[NOT_RUN]}</td>"
            f"<td>{e(card.reader or card.source)}</td><td class='mono'>{e(card.atr)}</td></tr>")


def html_detail(n: int, uid: str, card: CardReport, full: bool = True) -> str:
    e = html.escape
    parts = [f"<h2 id='c{n}'>Card {e(uid)} — {e(card.pan_masked)} — <span class='{_cls(card.verdict)}'>{e(card.verdict.upper())}</span></h2>",
             f"<p>profile {e(card.profile)}, record {card.record_index}, source <code>{e(card.source)}</code>, "
             f"reader {e(card.reader or '-')}, ATR <code>{e(card.atr or '-')}</code>, {card.seconds:.2f}s</p>"]
    if card.error:
        parts.append(f"<p class='fail'>{e(card.error)}</p>")
    results = shown_results(card, True, full)
    if not full:
        parts.append("<details><summary>Passed (" + str(sum(len(v) for v in passed_ids(card).values())) + ")</summary><p>"
                     + "<br>".join(f"{e(app)}: {e(' '.join(ids))}" for app, ids in passed_ids(card).items()) + "</p></details>")
    for title, verdict, open_ in (("Failures", FAIL, True), ("Could not run", NOT_RUN, True), ("Passed", PASS, False),
                                  ("Not applicable", NA, False)):
        rows = [r for r in results if r.verdict == verdict]
        if not rows:
            continue
        parts.append(f"<details{' open' if open_ else ''}><summary>{title} ({len(rows)})</summary><table>"
                     "<tr><th>rule</th><th>application</th><th>severity</th><th>evidence</th><th>expected</th><th>found</th>"
                     "<th>differences</th></tr>")
        for r in rows:
            rule = RULES[r.rule]
            diff = differences(r.rule, r.evidence, r.expected, r.found) if r.verdict == FAIL else []
            parts.append(
                f"<tr><td class='{_cls(verdict)}' title='{e(rule.description)}'><a href='#rule-{e(r.rule)}'>{e(r.rule)}</a></td>"
                f"<td class='mono'>{e(r.app)}</td><td class='sev-{rule.severity}'>{rule.severity}</td><td>{e(r.evidence)}</td>"
                f"<td class='mono'>{e(r.expected)}</td><td class='mono'>{e(r.found)}</td>"
                f"<td>{'<br>'.join(e(d) for d in diff)}</td></tr>")
        parts.append("</table></details>")
    return "\n".join(parts)


# -- JUnit ------------------------------------------------------------------------------------------

def _props(parent: ET.Element, items: list[tuple[str, str]]) -> None:
    props = ET.SubElement(parent, "properties")
    for k, v in items:
        ET.SubElement(props, "property", name=k, value=v)


def junit_case(uid: str, card: CardReport) -> str:
    """A passing (one-row) card: one test case."""
    case = ET.Element("testcase", classname=uid, name="certification", time=f"{card.seconds:.4f}")
    _props(case, [("pan", card.pan_masked), ("record", str(card.record_index)), ("reader", card.reader or card.source),
                  ("atr", card.atr)])
    return ET.tostring(case, encoding="unicode")


def junit_suite(uid: str, card: CardReport) -> tuple[str, int, int, int, int]:
    """A detailed card: its own test suite, one case per rule per application
    (classname ``<id>.<AID>``); (xml, tests, failures, errors, skipped). A card that could not be
    certified and a critical rule that could not run are errors; not applicable is skipped."""
    suite = ET.Element("testsuite", name=f"card {uid} {card.pan_masked}", timestamp=card.started or "",
                       time=f"{card.seconds:.4f}")
    _props(suite, [("profile", card.profile), ("card_id", card.card_id), ("record", str(card.record_index)),
                   ("pan", card.pan_masked), ("source", card.source), ("reader", card.reader), ("atr", card.atr),
                   ("verdict", card.verdict)])
    n = f = s = err = 0
    if card.error:
        case = ET.SubElement(suite, "testcase", classname=uid, name="card")
        ET.SubElement(case, "error", message=card.error)
        n += 1
        err += 1
    for r in shown_results(card, True):
        rule = RULES[r.rule]
        case = ET.SubElement(suite, "testcase", classname=uid + (f".{r.app}" if r.app else ""), name=r.rule, time="0")
        n += 1
        if r.verdict == FAIL:
            f += 1
            el = ET.SubElement(case, "failure", message=f"{rule.description} [{rule.severity}]", type=rule.severity)
            diff = differences(r.rule, r.evidence, r.expected, r.found)
            el.text = "\n".join([r.evidence, f"expected: {r.expected}", f"found: {r.found}",
                                 *(f"differs: {d}" for d in diff), f"reference: {rule.reference}"])
        elif r.verdict == NOT_RUN and rule.severity == CRITICAL:  # the card is incomplete: not a pass
            err += 1
            ET.SubElement(case, "error", message=r.evidence, type="not run")
        elif r.verdict in (NA, NOT_RUN):
            s += 1
            ET.SubElement(case, "skipped", message=r.evidence)
    suite.set("tests", str(n))
    suite.set("failures", str(f))
    suite.set("errors", str(err))
    suite.set("skipped", str(s))
    return ET.tostring(suite, encoding="unicode"), n, f, err, s

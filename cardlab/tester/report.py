"""Certification reports: the same results as text (tabulate), JSON (schema in
docs/certification-report.md), one self-contained HTML file and JUnit XML
(one test case per rule per application per card).
"""

from __future__ import annotations

import html
import json
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from tabulate import tabulate

from .certify.results import CardReport
from .rules import FAIL, NA, PASS, RULES

SCHEMA = "cardlab-certification-report"
SCHEMA_VERSION = 1


def summary(reports: list[CardReport]) -> dict[str, Any]:
    verdicts = Counter(r.verdict for r in reports)
    failing = Counter(res.rule for r in reports for res in r.failed)
    return {
        "cards": len(reports),
        "passed": verdicts.get(PASS, 0),
        "failed": verdicts.get(FAIL, 0),
        "results": dict(Counter(res.verdict for r in reports for res in r.results)),
        "failing_rules": dict(failing.most_common()),
    }


def to_json(reports: list[CardReport]) -> dict[str, Any]:
    return {
        "format": SCHEMA,
        "version": SCHEMA_VERSION,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "summary": summary(reports),
        "rules": [
            {"id": r.id, "description": r.description, "reference": r.reference, "severity": r.severity, "category": r.category}
            for r in RULES.values()
        ],
        "cards": [
            {
                "card_id": c.card_id,
                "record_index": c.record_index,
                "pan": c.pan_masked,
                "profile": c.profile,
                "source": c.source,
                "verdict": c.verdict,
                "error": c.error,
                "started": c.started,
                "seconds": round(c.seconds, 4),
                "counts": c.counts(),
                "results": [
                    {"rule": r.rule, "app": r.app, "verdict": r.verdict, "severity": RULES[r.rule].severity,
                     "evidence": r.evidence, "expected": r.expected, "found": r.found}
                    for r in c.results
                ],  # fmt: skip
            }
            for c in reports
        ],
    }


def text(reports: list[CardReport], *, all_results: bool = False) -> str:
    rows = [[c.card_id, c.record_index, c.pan_masked, c.verdict.upper(), *(c.counts()[k] for k in (PASS, FAIL, NA)), f"{c.seconds:.2f}s"] for c in reports]
    out = [tabulate(rows, headers=["card", "record", "PAN", "verdict", "pass", "fail", "n/a", "time"], tablefmt="github")]
    for c in reports:
        shown = [r for r in c.results if all_results or r.verdict == FAIL]
        if c.error:
            out.append(f"\ncard {c.card_id}: {c.error}")
        if shown:
            out.append(f"\ncard {c.card_id} ({c.pan_masked}):")
            out.append(tabulate(
                [[r.rule, r.app, RULES[r.rule].severity, r.verdict, r.evidence[:80], r.expected[:32], r.found[:32]] for r in shown],
                headers=["rule", "application", "severity", "verdict", "evidence", "expected", "found"], tablefmt="github",
            ))  # fmt: skip
    s = summary(reports)
    out.append(f"\n{s['cards']} cards: {s['passed']} passed, {s['failed']} failed")
    return "\n".join(out)


def junit(reports: list[CardReport]) -> bytes:
    suites = ET.Element("testsuites", name="cardlab certification")
    total = fails = 0
    for c in reports:
        suite = ET.SubElement(suites, "testsuite", name=f"card {c.card_id} {c.pan_masked}", timestamp=c.started or "", time=f"{c.seconds:.4f}")
        n = f = s = 0
        if c.error:
            case = ET.SubElement(suite, "testcase", classname=f"card.{c.card_id}", name="card")
            ET.SubElement(case, "error", message=c.error)
            n += 1
            f += 1
        for r in c.results:
            rule = RULES[r.rule]
            case = ET.SubElement(suite, "testcase", classname=f"card.{c.card_id}" + (f".{r.app}" if r.app else ""), name=r.rule, time="0")
            n += 1
            if r.verdict == FAIL:
                f += 1
                el = ET.SubElement(case, "failure", message=f"{rule.description} [{rule.severity}]", type=rule.severity)
                el.text = f"{r.evidence}\nexpected: {r.expected}\nfound: {r.found}\nreference: {rule.reference}"
            elif r.verdict == NA:
                s += 1
                ET.SubElement(case, "skipped", message=r.evidence)
        suite.set("tests", str(n))
        suite.set("failures", str(f))
        suite.set("errors", "0")
        suite.set("skipped", str(s))
        total += n
        fails += f
    suites.set("tests", str(total))
    suites.set("failures", str(fails))
    out: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return out


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.pass{color:#146c2e}.fail{color:#b00020;font-weight:bold}.na{color:#777}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff}.bpass{background:#2e7d32}.bfail{background:#c62828}
code,.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
details{margin:.5em 0}summary{cursor:pointer}.sev-critical{font-weight:bold}
"""


def to_html(reports: list[CardReport]) -> str:
    e = html.escape
    s = summary(reports)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Certification report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Card certification report</h1>",
        f"<p>{s['cards']} card(s): <span class='badge bpass'>{s['passed']} passed</span> "
        f"<span class='badge bfail'>{s['failed']} failed</span> — generated {e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
    ]
    if s["failing_rules"]:
        parts.append("<h2>Failing rules</h2><table><tr><th>rule</th><th>cards × applications</th><th>severity</th><th>description</th></tr>")
        for rid, n in s["failing_rules"].items():
            r = RULES[rid]
            parts.append(f"<tr><td><a href='#rule-{e(rid)}'>{e(rid)}</a></td><td>{n}</td><td class='sev-{r.severity}'>{r.severity}</td><td>{e(r.description)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Cards</h2><table><tr><th>card</th><th>record</th><th>PAN</th><th>verdict</th><th>pass</th><th>fail</th><th>n/a</th></tr>")
    for c in reports:
        k = c.counts()
        cls = "pass" if c.verdict == PASS else "fail"
        parts.append(f"<tr><td><a href='#card-{e(c.card_id)}'>{e(c.card_id)}</a></td><td>{c.record_index}</td><td class='mono'>{e(c.pan_masked)}</td>"
                     f"<td class='{cls}'>{c.verdict.upper()}</td><td>{k[PASS]}</td><td>{k[FAIL]}</td><td>{k[NA]}</td></tr>")  # fmt: skip
    parts.append("</table>")
    for c in reports:
        parts.append(f"<h2 id='card-{e(c.card_id)}'>Card {e(c.card_id)} — {e(c.pan_masked)} — <span class='{'pass' if c.verdict == PASS else 'fail'}'>{c.verdict.upper()}</span></h2>")
        parts.append(f"<p>record {c.record_index}, profile {e(c.profile)}, source <code>{e(c.source)}</code>, {c.seconds:.2f}s</p>")
        if c.error:
            parts.append(f"<p class='fail'>{e(c.error)}</p>")
        for title, verdict, open_ in (("Failures", FAIL, True), ("Passed", PASS, False), ("Not applicable", NA, False)):
            rows = [r for r in c.results if r.verdict == verdict]
            if not rows:
                continue
            parts.append(f"<details{' open' if open_ else ''}><summary>{title} ({len(rows)})</summary><table>"
                         "<tr><th>rule</th><th>application</th><th>severity</th><th>evidence</th><th>expected</th><th>found</th><th>reference</th></tr>")  # fmt: skip
            for res in rows:
                rule = RULES[res.rule]
                parts.append(
                    f"<tr><td class='{'na' if verdict == NA else verdict}' title='{e(rule.description)}'>{e(res.rule)}</td><td class='mono'>{e(res.app)}</td>"
                    f"<td class='sev-{rule.severity}'>{rule.severity}</td><td>{e(res.evidence)}</td><td class='mono'>{e(res.expected)}</td>"
                    f"<td class='mono'>{e(res.found)}</td><td>{e(rule.reference)}</td></tr>"
                )  # fmt: skip
            parts.append("</table></details>")
    parts.append("<h2>Rule catalogue</h2><table><tr><th>rule</th><th>severity</th><th>description</th><th>reference</th></tr>")
    for r in RULES.values():
        parts.append(f"<tr id='rule-{e(r.id)}'><td>{e(r.id)}</td><td class='sev-{r.severity}'>{r.severity}</td><td>{e(r.description)}</td><td>{e(r.reference)}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_reports(reports: list[CardReport], directory: str | Path = "reports", *, echo: bool = False, stream: TextIO | None = None) -> list[Path]:
    """Write certification.{txt,json,html,xml} into ``directory`` (created);
    with ``echo`` the text report also goes to ``stream`` (stdout)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    txt = text(reports)
    paths = [d / "certification.txt", d / "certification.json", d / "certification.html", d / "certification-junit.xml"]
    paths[0].write_text(txt + "\n", encoding="utf-8")
    paths[1].write_text(json.dumps(to_json(reports), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[2].write_text(to_html(reports), encoding="utf-8")
    paths[3].write_bytes(junit(reports))
    if echo:
        print(txt, file=stream or sys.stdout)
    return paths

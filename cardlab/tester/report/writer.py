"""The report writer: cards go in one at a time and out at once to disk —
``certification.jsonl`` line by line, the other formats into spooled parts
(memory up to a bound, then a temporary file) joined at :meth:`close` behind
a head that carries the provenance and the summary. Memory stays bounded
whatever the number of cards; only counters and the set of card ids are kept.
"""

from __future__ import annotations

import html
import json
import shutil
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

from ..certify.results import CardReport
from ..rules import FAIL, INCOMPLETE, PASS, RULES
from . import cards as C
from . import origin as P

SCHEMA = "cardlab-certification-report"
SCHEMA_VERSION = 2
DETAILS = ("failing", "all")
#: every file a report consists of (none is written over without ``force``)
FILES = ("certification.txt", "certification.json", "certification.jsonl", "certification.html", "certification-junit.xml")
_SPOOL = 1 << 20


class ReportExists(Exception):
    """The report directory already holds a report (and ``force`` was not given)."""


def check_free(directory: str | Path, force: bool = False) -> None:
    """Raise :class:`ReportExists` (one line) when ``directory`` holds a report and not ``force``."""
    d = Path(directory)
    there = [name for name in FILES if (d / name).exists()]
    if there and not force:
        raise ReportExists(f"{d} already holds a report ({there[0]}); give --force to replace it or another --report-dir")


def _spool() -> IO[str]:
    return tempfile.SpooledTemporaryFile(_SPOOL, mode="w+", encoding="utf-8")


def _copy(src: IO[str], dst: IO[str]) -> None:
    src.seek(0)
    shutil.copyfileobj(src, dst)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.pass{color:#146c2e}.fail{color:#b00020;font-weight:bold}.na{color:#777}.inc{color:#a15c00;font-weight:bold}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff}.bpass{background:#2e7d32}.bfail{background:#c62828}
code,.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
details{margin:.5em 0}summary{cursor:pointer}.sev-critical{font-weight:bold}
"""


class ReportWriter:
    """``with ReportWriter(dir, provenance) as w: w.add(card) …`` writes the five
    report files; ``details``: ``"failing"`` (a passing card is one row) or ``"all"``."""

    def __init__(self, directory: str | Path, provenance: Mapping[str, Any], *, details: str = "failing",
                 force: bool = False) -> None:
        if details not in DETAILS:
            raise ValueError(f"details must be one of {DETAILS}, got {details!r}")
        self.dir = Path(directory)
        check_free(self.dir, force)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.details = details
        self.provenance = {**provenance, "options": {**(provenance.get("options") or {}), "details": details}}
        self.paths = [self.dir / name for name in FILES]
        self._jsonl = (self.dir / "certification.jsonl").open("w", encoding="utf-8")
        self._jsonl.write(json.dumps({"format": SCHEMA + "-cards", "version": SCHEMA_VERSION,
                                      "provenance": self.provenance}, ensure_ascii=False) + "\n")
        self._text_rows, self._text_detail = _spool(), _spool()
        self._html_rows, self._html_detail = _spool(), _spool()
        self._junit_suites = _spool()
        self._junit_passing: dict[str, IO[str]] = {}
        self._passing_counts: Counter[str] = Counter()
        self._ids: set[str] = set()
        self.n = 0
        self.verdicts: Counter[str] = Counter()
        self.results: Counter[str] = Counter()
        self.failing_rules: Counter[str] = Counter()
        self.profiles: dict[str, Counter[str]] = {}
        self.junit_totals = Counter[str]()
        self.closed = False

    # -- cards in ----------------------------------------------------------------------------------

    def unique_id(self, card: CardReport) -> str:
        """``profile/card_id``; a repeated one gets ``#2``, ``#3`` …"""
        base = f"{card.profile}/{card.card_id}" if card.profile else card.card_id
        uid, k = base, 1
        while uid in self._ids:
            k += 1
            uid = f"{base}#{k}"
        self._ids.add(uid)
        return uid

    def add(self, card: CardReport) -> None:
        self.n += 1
        n, uid = self.n, self.unique_id(card)
        detailed = self.details == "all" or card.verdict != PASS
        self.verdicts[card.verdict] += 1
        self.profiles.setdefault(card.profile, Counter())[card.verdict] += 1
        for r in card.results:
            self.results[r.verdict] += 1
            if r.verdict == FAIL:
                self.failing_rules[r.rule] += 1
        full = self.details == "all"
        self._jsonl.write(json.dumps(C.card_json(n, uid, card, detailed, full), ensure_ascii=False) + "\n")
        self._text_rows.write(C.text_row(uid, card) + "\n")
        self._html_rows.write(C.html_row(n, uid, card, detailed) + "\n")
        if detailed:
            self._text_detail.write("\n".join(C.text_detail(uid, card, full)) + "\n")
            self._html_detail.write(C.html_detail(n, uid, card, full) + "\n")
            xml, tests, fails, errors, skipped = C.junit_suite(uid, card)
            self._junit_suites.write(xml + "\n")
            self.junit_totals.update({"tests": tests, "failures": fails, "errors": errors, "skipped": skipped})
        else:
            spool = self._junit_passing.setdefault(card.profile, _spool())
            spool.write(C.junit_case(uid, card) + "\n")
            self._passing_counts[card.profile] += 1
            self.junit_totals["tests"] += 1

    def extend(self, cards: Iterable[CardReport]) -> None:
        for c in cards:
            self.add(c)

    # -- out ---------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {
            "cards": self.n,
            "passed": self.verdicts.get(PASS, 0),
            "failed": self.verdicts.get(FAIL, 0),
            "incomplete": self.verdicts.get(INCOMPLETE, 0),
            "verdicts": dict(self.verdicts),
            "profiles": {p: dict(c) for p, c in sorted(self.profiles.items())},
            "results": dict(self.results),
            "failing_rules": dict(self.failing_rules.most_common()),
        }

    def summary_line(self) -> str:
        s = self.summary()
        others = "".join(f", {n} {v}" for v, n in sorted(s["verdicts"].items()) if v not in (PASS, FAIL))
        return f"{s['cards']} cards: {s['passed']} passed, {s['failed']} failed{others}"

    def close(self) -> list[Path]:
        if self.closed:
            return self.paths
        self.closed = True
        s = self.summary()
        self._jsonl.write(json.dumps({"summary": s}, ensure_ascii=False) + "\n")
        self._jsonl.close()
        self._write_json(s)
        self._write_text()
        self._write_html(s)
        self._write_junit()
        for f in (self._text_rows, self._text_detail, self._html_rows, self._html_detail, self._junit_suites,
                  *self._junit_passing.values()):
            f.close()
        return self.paths

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _write_json(self, s: dict[str, Any]) -> None:
        doc = {
            "format": SCHEMA, "version": SCHEMA_VERSION, "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "provenance": self.provenance, "summary": s, "cards": "certification.jsonl",
            "rules": [{"id": r.id, "description": r.description, "reference": r.reference, "severity": r.severity,
                       "category": r.category} for r in RULES.values()],
        }
        (self.dir / "certification.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    def _write_text(self) -> None:
        with (self.dir / "certification.txt").open("w", encoding="utf-8") as out:
            out.write("Certification report\n")
            for line in P.lines(self.provenance):
                out.write("\n".join(textwrap.wrap(line, C.WIDTH, initial_indent="  ", subsequent_indent="      ",
                                                   break_long_words=True, break_on_hyphens=False)) + "\n")
            out.write("\n" + C.TEXT_HEAD + "\n")
            _copy(self._text_rows, out)
            _copy(self._text_detail, out)
            out.write("\n" + self.summary_line() + "\n")

    def _write_html(self, s: dict[str, Any]) -> None:
        e = html.escape
        p = self.provenance
        with (self.dir / "certification.html").open("w", encoding="utf-8") as out:
            out.write("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Certification report</title>"
                      f"<style>{_CSS}</style></head><body>\n<h1>Card certification report</h1>\n")
            others = "".join(f" <span class='badge' style='background:#a15c00'>{n} {e(v)}</span>"
                             for v, n in sorted(s["verdicts"].items()) if v not in (PASS, FAIL))
            out.write(f"<p>{s['cards']} card(s): <span class='badge bpass'>{s['passed']} passed</span> "
                      f"<span class='badge bfail'>{s['failed']} failed</span>{others}</p>\n")
            out.write("<h2>Provenance</h2><table>\n")
            for line in P.lines(p):
                k, _, v = line.partition(": ")
                out.write(f"<tr><th>{e(k)}</th><td class='mono'>{e(v)}</td></tr>\n")
            out.write("</table>\n<h2>Profiles</h2><table><tr><th>profile</th><th>cards</th><th>verdicts</th></tr>\n")
            for prof, c in s["profiles"].items():
                out.write(f"<tr><td>{e(prof)}</td><td>{sum(c.values())}</td>"
                          f"<td>{e(', '.join(f'{n} {v}' for v, n in sorted(c.items())))}</td></tr>\n")
            out.write("</table>\n")
            if s["failing_rules"]:
                out.write("<h2>Failing rules</h2><table><tr><th>rule</th><th>cards × applications</th><th>severity</th><th>description</th></tr>\n")
                for rid, n in s["failing_rules"].items():
                    r = RULES[rid]
                    out.write(f"<tr><td><a href='#rule-{e(rid)}'>{e(rid)}</a></td><td>{n}</td><td class='sev-{r.severity}'>{r.severity}</td>"
                              f"<td>{e(r.description)}</td></tr>\n")
                out.write("</table>\n")
            out.write("<h2>Cards</h2><table><tr><th>card</th><th>profile</th><th>record</th><th>PAN</th><th>verdict</th>"
                      "<th>pass</th><th>fail</th><th>n/a</th><th>not run</th><th>reader</th><th>ATR</th></tr>\n")
            _copy(self._html_rows, out)
            out.write("</table>\n")
            _copy(self._html_detail, out)
            out.write("<h2>Rule catalogue</h2><table><tr><th>rule</th><th>severity</th><th>description</th><th>reference</th></tr>\n")
            for r in RULES.values():
                out.write(f"<tr id='rule-{e(r.id)}'><td>{e(r.id)}</td><td class='sev-{r.severity}'>{r.severity}</td>"
                          f"<td>{e(r.description)}</td><td>{e(r.reference)}</td></tr>\n")
            out.write("</table></body></html>\n")

    def _write_junit(self) -> None:
        t = self.junit_totals
        with (self.dir / "certification-junit.xml").open("w", encoding="utf-8") as out:
            out.write("<?xml version='1.0' encoding='utf-8'?>\n")
            out.write(f"<testsuites name=\"cardlab certification\" tests=\"{t['tests']}\" failures=\"{t['failures']}\" "
                      f"errors=\"{t['errors']}\" skipped=\"{t['skipped']}\">\n")
            prov = ET.Element("testsuite", name="provenance", tests="0", failures="0", errors="0", skipped="0")
            props = ET.SubElement(prov, "properties")
            for line in P.lines(self.provenance):
                k, _, v = line.partition(": ")
                ET.SubElement(props, "property", name=k, value=v)
            out.write(ET.tostring(prov, encoding="unicode") + "\n")
            for prof, spool in sorted(self._junit_passing.items()):
                n = self._passing_counts[prof]
                out.write(f"<testsuite name={_attr(f'passing cards {prof}')} tests=\"{n}\" failures=\"0\" errors=\"0\" skipped=\"0\">\n")
                _copy(spool, out)
                out.write("</testsuite>\n")
            _copy(self._junit_suites, out)
            out.write("</testsuites>\n")


def _attr(value: str) -> str:
    return '"' + html.escape(value, quote=True) + '"'


def write_reports(reports: Iterable[CardReport], directory: str | Path = "reports", *,
                  provenance: Mapping[str, Any] | None = None, details: str = "failing", force: bool = False,
                  echo: bool = False, stream: TextIO | None = None) -> list[Path]:
    """All the report files for ``reports`` (an iterable: consumed as it goes);
    with ``echo`` the text report also goes to ``stream`` (stdout)."""
    prov = provenance if provenance is not None else P.provenance(inputs={})
    with ReportWriter(directory, prov, details=details, force=force) as w:
        w.extend(reports)
    if echo:
        echo_text(w.dir, stream)
    return w.paths


def echo_text(directory: Path, stream: TextIO | None = None) -> None:
    with (directory / "certification.txt").open(encoding="utf-8") as f:
        shutil.copyfileobj(f, stream or sys.stdout)

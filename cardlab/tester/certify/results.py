"""What certification produces, shared by every rule evaluator and by the
reports (:mod:`cardlab.tester.report`): the verdicts and :class:`Result` of
the catalogue (:mod:`cardlab.tester.rules`), the :class:`CardReport` of one
card, and the :class:`Collector` that turns the checks of one application
into one result per rule, its evidence cleaned (PAN masked, secrets
redacted: never a key or a PIN).

This module imports only the catalogue and the redaction helpers, so that
the reports depend on the result types and on nothing that produces them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..rules import CRITICAL, FAIL, INCOMPLETE, NA, NOT_RUN, PASS, RULES, Result
from ..sources import mask_pan, redact

__all__ = ["FAIL", "INCOMPLETE", "NA", "NOT_RUN", "PASS", "CardReport", "Collector", "Result"]


@dataclass
class CardReport:
    card_id: str
    pan_masked: str
    record_index: int
    profile: str
    source: str  # image path or reader name
    results: list[Result] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    error: str = ""  # a card that could not be certified at all
    reader: str = ""  # the PC/SC reader the card was in (an emulated image: its plug-in reader)
    atr: str = ""  # the ATR the transport got at power-on, hex

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.verdict == FAIL]

    @property
    def not_run(self) -> list[Result]:
        """The critical rules that applied but could not run (their evidence says what was missing)."""
        return [r for r in self.results if r.verdict == NOT_RUN and RULES[r.rule].severity == CRITICAL]

    @property
    def verdict(self) -> str:
        """fail (a rule failed, or the card could not be certified), else incomplete (a critical rule
        could not run), else pass: a card passes only when every critical rule ran and passed."""
        if self.error or self.failed:
            return FAIL
        return INCOMPLETE if self.not_run else PASS

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, NA: 0, NOT_RUN: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out

    def failed_rules(self) -> set[str]:
        return {r.rule for r in self.failed}


# -- collecting results ------------------------------------------------------------------


_DIGIT = re.compile(r"\d").search
#: texts seen to hold nothing that looks like a PAN, shared by the cards of a run (bounded)
_NOTHING_TO_REDACT: set[str] = set()
_NOTHING_TO_REDACT_MAX = 4096


class Collector:
    """Several checks may feed one rule; one Result per rule and application."""

    def __init__(self, app: str, pan: str) -> None:
        self.app = app
        self.pan = pan
        self._masked = mask_pan(pan) if pan else ""
        self.checks: dict[str, list[tuple[bool | None, str, str, str]]] = {}
        self._cleaned: dict[str, str] = {}

    def _clean(self, text: str) -> str:
        """The text with the PAN (and anything that looks like one) masked; memoized per
        collector, as most results of an application share a few texts."""
        done = self._cleaned.get(text)
        if done is None:
            done = text.replace(self.pan, self._masked) if self.pan and self.pan in text else text
            if _DIGIT(done) and done not in _NOTHING_TO_REDACT:
                redacted = redact(done)
                if redacted == done and len(_NOTHING_TO_REDACT) < _NOTHING_TO_REDACT_MAX:
                    _NOTHING_TO_REDACT.add(done)  # such texts recur on every card of a run
                done = redacted
            self._cleaned[text] = done
        return done

    def check(self, rule: str, ok: bool, evidence: str, expected: str = "", found: str = "") -> bool:
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((ok, evidence, expected, found))
        return ok

    def na(self, rule: str, why: str) -> None:
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((None, why, "", ""))

    def not_run(self, rule: str, why: str) -> None:
        """The rule applies but could not run: ``why`` names what is missing (a key, an option,
        a command not sent and why). A critical rule not run makes the card *incomplete*."""
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((None, f"{NOT_RUN}: {why}", "", ""))

    def results(self, rule_ids: list[str], unreached: str) -> list[Result]:
        out = []
        unrun_prefix = f"{NOT_RUN}: "
        for rid in rule_ids:
            items = self.checks.get(rid)
            if not items:
                out.append(Result(rid, NA, self._clean(unreached), app=self.app))
                continue
            if len(items) == 1:  # most rules: one check
                ok, ev, exp, fnd = items[0]
                verdict = FAIL if ok is False else PASS if ok is True else NOT_RUN if ev.startswith(unrun_prefix) else NA
                out.append(Result(rid, verdict, self._clean(ev), self._clean(exp), self._clean(fnd), self.app))
                continue
            fails: list[tuple[bool | None, str, str, str]] = []
            unrun: list[tuple[bool | None, str, str, str]] = []
            passes: list[tuple[bool | None, str, str, str]] = []
            for i in items:  # one pass: most rules hold one check
                if i[0] is False:
                    fails.append(i)
                elif i[0] is True:
                    passes.append(i)
                elif i[1].startswith(unrun_prefix):
                    unrun.append(i)
            chosen = fails or unrun or passes or items  # a part that could not run is never hidden by a pass
            verdict = FAIL if fails else NOT_RUN if unrun else PASS if passes else NA
            ev = "; ".join(dict.fromkeys(i[1] for i in chosen))
            exp = "; ".join(i[2] for i in chosen if i[2])
            fnd = "; ".join(i[3] for i in chosen if i[3])
            out.append(Result(rid, verdict, self._clean(ev), self._clean(exp), self._clean(fnd), self.app))  # never cut
        return out

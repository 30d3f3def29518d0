"""The Collector that turns an application's checks into one Result per rule
(cardlab/tester/certify/results.py): the one-check fast path gives what the general rule gives,
and evidence is redacted on every card although redaction work is shared between cards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cardlab.tester.certify import results as R
from cardlab.tester.certify.results import FAIL, NA, NOT_RUN, PASS, Collector
from cardlab.tester.rules import RULES
from cardlab.tester.sources import mask_pan, redact

RULE_IDS = sorted(RULES)[:6]
PAN = "4761739001010010"


def _reference(c: Collector, rule_ids: list[str], unreached: str) -> list[tuple[str, str, str, str, str]]:
    """The rule as the catalogue states it, with no fast path: a failed check wins, then one that
    could not run, then a pass; evidence of the chosen checks joined, PAN masked, then redacted."""
    def clean(t: str) -> str:
        return redact(t.replace(PAN, mask_pan(PAN)))

    out = []
    for rid in rule_ids:
        items = c.checks.get(rid)
        if not items:
            out.append((rid, NA, clean(unreached), "", ""))
            continue
        fails = [i for i in items if i[0] is False]
        unrun = [i for i in items if i[0] is None and i[1].startswith(f"{NOT_RUN}: ")]
        passes = [i for i in items if i[0] is True]
        chosen = fails or unrun or passes or items
        verdict = FAIL if fails else NOT_RUN if unrun else PASS if passes else NA
        out.append((rid, verdict, clean("; ".join(dict.fromkeys(i[1] for i in chosen))),
                    clean("; ".join(i[2] for i in chosen if i[2])), clean("; ".join(i[3] for i in chosen if i[3]))))
    return out


_text = st.sampled_from(["", "9F36 0001", f"PAN {PAN}", "other card 5413330089020011 here", "ATC 12",
                         "A0000000031010", "x"])
_check = st.tuples(st.sampled_from(["check", "na", "not_run"]), st.sampled_from(RULE_IDS), st.booleans(),
                   _text, _text, _text)


@given(st.lists(_check, max_size=12))
def test_results_are_the_catalogue_rule_with_or_without_the_fast_path(checks: list[tuple[str, str, bool, str, str, str]]) -> None:
    c = Collector("A0000000031010", PAN)
    for kind, rid, ok, ev, exp, fnd in checks:
        if kind == "check":
            c.check(rid, ok, ev, exp, fnd)
        elif kind == "na":
            c.na(rid, ev)
        else:
            c.not_run(rid, ev)
    got = [(r.rule, r.verdict, r.evidence, r.expected, r.found) for r in c.results(RULE_IDS, f"unreached {PAN}")]
    assert got == _reference(c, RULE_IDS, f"unreached {PAN}")
    assert all(PAN not in "".join(g) and "5413330089020011" not in "".join(g) for g in got)


def test_redaction_shared_between_cards_never_lets_a_pan_through() -> None:
    """Texts found clean on one card are remembered (bounded); a text that holds a PAN is never
    remembered as clean, on the card that holds it or on any later one."""
    R._NOTHING_TO_REDACT.clear()
    for n in range(3):
        c = Collector("A0000000031010", PAN)
        c.check(RULE_IDS[0], True, "9F36 0001")
        c.check(RULE_IDS[1], False, f"the card holds {PAN}, the record 5413330089020011")
        c.check(RULE_IDS[2], True, "5413330089020011 again")
        res = {r.rule: r for r in c.results(RULE_IDS[:3], "")}
        assert res[RULE_IDS[0]].evidence == "9F36 0001"
        assert res[RULE_IDS[1]].evidence == f"the card holds {mask_pan(PAN)}, the record 541333******0011"
        assert res[RULE_IDS[2]].evidence == "541333******0011 again"
    assert R._NOTHING_TO_REDACT == {"9F36 0001"}
    R._NOTHING_TO_REDACT.update(f"clean {i}" for i in range(R._NOTHING_TO_REDACT_MAX))
    c = Collector("A0000000031010", PAN)
    c.check(RULE_IDS[0], True, "never seen 1")
    c.results(RULE_IDS[:1], "")
    assert "never seen 1" not in R._NOTHING_TO_REDACT  # full: nothing more is remembered
    R._NOTHING_TO_REDACT.clear()

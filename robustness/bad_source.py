"""Bad source data: every file of ``vectors/bad-source`` (malformed cardholder
records and issuer profiles, one defect each, listed with the field in its
README) is rejected with a message naming that field, and nothing reaches a card.

* a records file is prepared with the good Visa profile: the batch holds no
  card data for the bad record (``cards.jsonl`` empty, or only the first copy of
  a duplicate), ``rejected.jsonl`` names the field and the message names it;
* a profile file is prepared with the good sample records: ``prepare`` refuses
  it (``ProfileError``) with a problem naming the field path, and writes no
  ``cards.jsonl`` / ``manifest.json``;
* all bad records together make one batch, which the perso engine runs over a
  stock of blank emulated cards: no record personalized, no card image changed.

``python -m robustness.bad_source [--quick]`` (--quick: the same, the corpus is small); exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from robustness.common import VECTORS, figures

CORPUS = VECTORS / "bad-source"
GOOD_PROFILE = VECTORS / "profiles" / "visa-cvn18.yaml"
GOOD_RECORDS = VECTORS / "records" / "sample.csv"
TODAY = date(2026, 1, 15)
KMC_NAME = "TEST-KMC-VISA"


@dataclass
class Result:
    kinds: int = 0
    record_kinds: int = 0
    profile_kinds: int = 0
    rejected_for_field: int = 0
    card_data_written: int = 0
    engine_done: int = 0
    engine_images_changed: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.rejected_for_field == self.kinds


def corpus() -> list[tuple[str, str, str]]:
    """(file, kind, field) from the README table."""
    rows = []
    for line in (CORPUS / "README.md").read_text().splitlines():
        m = re.fullmatch(r"\| `([^`]+)` \| (.+) \| `([^`]+)` \|", line.strip())
        if m:
            rows.append((m.group(1), m.group(2), m.group(3)))
    return rows


def _keystore(work: Path) -> Path:
    import prepkit  # type: ignore[import-not-found]

    ks = prepkit.make_keystore()
    if KMC_NAME not in ks:
        ks.add_symmetric(KMC_NAME, "AES", "KMC", ks.clear_value("KMC"))
    path = work / "keys.json"
    ks.save(path)
    return path


def _names_field(message: str, name: str) -> bool:
    return name in message


def check_records(path: Path, want: str, keys: Path, out: Path, res: Result) -> None:
    from cardlab.personalizer.prepare import prepare

    s = prepare(GOOD_PROFILE, path, str(keys), out, today=TODAY)
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines() if x.strip()]
    cards = [json.loads(x) for x in (out / "cards.jsonl").read_text().splitlines() if x.strip()]
    bad_indexes = {r["record_index"] for r in rejected}
    expected_cards = s.input_count - 1 if want == "pan+psn" else 0
    if len(cards) != expected_cards or len(rejected) != 1:
        res.card_data_written += max(0, len(cards) - expected_cards)
        res.problems.append(f"{path.name}: {len(cards)} cards prepared, {len(rejected)} rejected")
        return
    if any(c.get("record_index", c.get("index")) in bad_indexes for c in cards):
        res.card_data_written += 1
        res.problems.append(f"{path.name}: card data written for a rejected record")
    rej = rejected[0]
    res.messages.append(f"{path.name}: {rej['message']}")
    if rej["field"] == want and _names_field(rej["message"], want):
        res.rejected_for_field += 1
    else:
        res.problems.append(f"{path.name}: rejected for {rej['field']!r} ({rej['message']}), expected {want!r}")


def check_profile(path: Path, want: str, keys: Path, out: Path, res: Result) -> None:
    from cardlab.personalizer.prepare import prepare
    from cardlab.personalizer.profile import ProfileError

    try:
        prepare(path, GOOD_RECORDS, str(keys), out, today=TODAY)
    except ProfileError as exc:
        res.messages.append(f"{path.name}: " + " | ".join(exc.problems))
        if any(p.startswith(want + ":") or p.startswith(want + "[") or p.startswith(want + ".")
               for p in exc.problems):
            res.rejected_for_field += 1
        else:
            res.problems.append(f"{path.name}: problems {exc.problems} do not name {want!r}")
    except Exception as exc:  # noqa: BLE001 - any other refusal is a finding too
        res.problems.append(f"{path.name}: refused with {type(exc).__name__}: {exc}")
    else:
        res.problems.append(f"{path.name}: profile accepted")
    for name in ("cards.jsonl", "manifest.json"):
        if (out / name).exists() and (out / name).stat().st_size:
            res.card_data_written += 1
            res.problems.append(f"{path.name}: {name} written")


def check_engine(work: Path, keys: Path, record_files: list[Path], res: Result) -> None:
    """All bad CSV records in one batch; the engine must personalize none."""
    from cardlab.personalizer import engine
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.prepare import prepare
    from cardlab.personalizer.stock import make_stock

    lines: list[str] = []
    header = ""
    for p in record_files:
        if p.suffix != ".csv" or p.stem.startswith("duplicate"):
            continue
        text = p.read_text().splitlines()
        header = text[0]
        lines += text[1:]
    combined = work / "all-bad.csv"
    combined.write_text("\n".join([header, *lines]) + "\n")
    batch = work / "engine-batch"
    s = prepare(GOOD_PROFILE, combined, str(keys), batch, today=TODAY)
    if s.accepted:
        res.card_data_written += s.accepted
        res.problems.append(f"combined bad records: {s.accepted} prepared")
    with open_keystore(str(keys)) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys(KMC_NAME, "KDF3", kdd)
            return k.enc, k.mac, k.dek

        make_stock(work / "stock", 3, div, "kdf3")

    def digests() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((work / "stock").glob("*.json"))}

    before = digests()
    rep = engine.run(batch, cards=work / "stock", keys=str(keys), script=VECTORS / "scripts" / "emv-cps.yaml")
    res.engine_done = rep.counts.get("done", 0) + rep.cards_this_run
    after = digests()
    res.engine_images_changed = sum(1 for k in before if after.get(k) != before[k])
    if res.engine_done or res.engine_images_changed:
        res.problems.append(f"engine: {res.engine_done} personalized, {res.engine_images_changed} images changed")
    if rep.counts.get("rejected", 0) != s.input_count:
        res.problems.append(f"engine: {rep.counts} for {s.input_count} bad records")


def run(work: Path) -> Result:
    res = Result()
    started = time.perf_counter()
    keys = _keystore(work)
    record_files: list[Path] = []
    for i, (rel, _kind, want) in enumerate(corpus()):
        path = CORPUS / rel
        res.kinds += 1
        out = work / f"out-{i:02d}"
        if rel.startswith("records/"):
            res.record_kinds += 1
            record_files.append(path)
            try:
                check_records(path, want, keys, out, res)
            except Exception as exc:  # noqa: BLE001 - the whole file refused: a finding
                res.problems.append(f"{rel}: prepare raised {type(exc).__name__}: {exc}")
        else:
            res.profile_kinds += 1
            check_profile(path, want, keys, out, res)
    check_engine(work, keys, record_files, res)
    res.seconds = time.perf_counter() - started
    return res


def report(res: Result, verbose: bool = False) -> str:
    text = figures("bad source data (robustness/bad_source.py)", [
        ("kinds in the corpus", f"{res.kinds} ({res.record_kinds} records, {res.profile_kinds} profiles)"),
        ("rejected, message naming the field", res.rejected_for_field),
        ("card data written for them (prepare)", res.card_data_written),
        ("records personalized by the engine", res.engine_done),
        ("card images changed by the engine", res.engine_images_changed),
        ("problems", len(res.problems)),
        ("seconds", f"{res.seconds:.1f}"),
    ])
    if verbose:
        text += "\nmessages:\n" + "\n".join("  " + m for m in res.messages)
    if res.problems:
        text += "\nproblems:\n" + "\n".join("  " + p for p in res.problems)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="accepted for symmetry: the corpus is always run whole")
    ap.add_argument("--verbose", action="store_true", help="print each rejection message")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cardlab-bad-source-") as tmp:
        res = run(Path(tmp))
    print(report(res, args.verbose))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())

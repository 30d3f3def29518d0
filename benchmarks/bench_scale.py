"""What certifying one card costs in batch bookkeeping as the batch grows: 1,000, 100,000 and
1,000,000 records.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,100000,1000000]

A bureau's batch is 100,000 to 1,000,000 records (issue 14); the pipeline benchmark runs 1,000. A
per-card step that scans the batch is invisible at 1,000 and makes a big run quadratic: the
record a batch names for a card was once looked up by a scan (654 µs a card at 100,000 records).
Printed for each size:

* the matcher (``cardlab.tester.certify.match.Matcher``): µs per card to find a card's record by
  its PAN and PSN and compare it with the batch's hint, over 2,000 cards spread over the batch,
  and the ratio to the smallest size (goal: at most x5: a bigger index costs cache misses, a scan
  of the batch would cost x100 and more);
* memory per record of the records as certification holds them (``read_records`` of a CSV
  made by ``cardlab.records_gen``) and of the matcher's index, from the process's resident set.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cardlab import records_gen  # noqa: E402
from cardlab.tester.certify.match import Matcher, key_of  # noqa: E402
from cardlab.tester.sources import read_records  # noqa: E402

#: a bigger index costs more cache misses (x2-3 at 1,000,000); a scan of the batch would be x100 and more
GOAL_RATIO = 5.0
CARDS = 2000


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one_size(work: Path, n: int) -> tuple[float, float, float]:
    """(µs per card in the matcher, bytes per record held, bytes per record of the index)."""
    bin_, languages = records_gen.BINS["visa-cvn18"]
    path = records_gen.write_csv(work / f"records-{n}.csv", bin_, n, seed=1, languages=languages)
    gc.collect()
    before = rss_mb()
    records = list(read_records(path))
    held = rss_mb()
    m = Matcher(records)
    indexed = rss_mb()
    picks = random.Random(n).sample(records, min(CARDS, n))
    t = time.perf_counter()
    for k, r in enumerate(picks):
        rec, found = m.match(key_of(r.pan, r.psn), "", f"card-{k}", r.index)
        if rec is not r or found[0].verdict != "pass":
            raise SystemExit(f"record {r.index}: matched {rec!r}, {found[0].evidence}")
    per_card = (time.perf_counter() - t) / len(picks) * 1e6
    per_record = (held - before) * 2**20 / n
    per_index = (indexed - held) * 2**20 / n
    del m, records
    path.unlink()
    return per_card, per_record, per_index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,100000,1000000", help="batch sizes, comma-separated")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    ok = True
    base = None
    print(f"batch bookkeeping per card, {CARDS} cards spread over the batch:")
    with tempfile.TemporaryDirectory(prefix="cardlab-bench-scale-") as d:
        for n in sizes:
            per_card, per_record, per_index = one_size(Path(d), n)
            base = per_card if base is None else base
            ratio = per_card / base
            ok &= ratio <= GOAL_RATIO
            print(f"  {n:>9,} records: matcher {per_card:6.1f} µs/card (x{ratio:.2f} of {sizes[0]:,}; goal <= "
                  f"x{GOAL_RATIO:.0f}: {'met' if ratio <= GOAL_RATIO else 'MISSED'}); records held "
                  f"{per_record:5.0f} B/record, matcher index {per_index:4.0f} B/record")
    print("all goals met" if ok else "GOALS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Memory of certifying a whole batch as a user does: ``cardlab test certify --cards BATCH``.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_certify_memory.py [--cards 100000] [--stations 1]

Issue 14's "done when": certifying 100,000 emulated cards stays under 300 MB. Every card is a
distinct personalized card (no copies: MATCH-002 would rightly refuse two cards holding one
record): SDA records of the Visa sample's credit application (tests/personalizer/prepkit.py
``sda_profile``) are prepared, personalized by the perso engine with the shipped script onto
emulated cards behind the pyscard plug-in (``--stations`` stations), then certified by
``cardlab test certify --cards BATCH --contactless --quiet`` in a child process, the command line
and path a user runs (``--gp-status`` is its default). While it runs, the child's resident set
(VmRSS of /proc/PID/status) is sampled every second; printed: RSS at each tenth of the run, the
peak (VmHWM), cards/s, the exit code, and the goal.

At 100,000 cards this takes about an hour on one core of the 2-core machine (prepare ~2 min,
perso ~20 min, certify ~25 min) and ~5 GB of disk in the temporary directory (``--keep DIR``
keeps the batch and the report there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "personalizer"))

from prepkit import sda_profile  # noqa: E402

from cardlab import records_gen  # noqa: E402
from cardlab.demo import pipeline  # noqa: E402

GOAL_MB = 300.0


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def certify(work: Path, profile: Path, records: Path, keys: Path, batch: Path, cards: int) -> int:
    cmd = [sys.executable, "-m", "cardlab", "test", "certify", "--profile", str(profile), "--records", str(records),
           "--keys", str(keys), "--cards", str(batch), "--contactless", "--quiet",
           "--report-dir", str(work / "report"), "--force"]  # the benchmark's own directory
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []
    peak = 0
    while child.poll() is None:
        rss, hwm = status_kb(child.pid, "VmRSS"), status_kb(child.pid, "VmHWM")
        peak = max(peak, hwm)
        if rss:
            samples.append((time.perf_counter() - t, rss))
        time.sleep(1.0)
    seconds = time.perf_counter() - t
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    print(f"  cardlab test certify --cards ({cards} cards): exit {child.returncode}, {seconds:.0f} s, "
          f"{cards / seconds:.1f} cards/s")
    if child.returncode not in (0,):
        print("  " + err[-2000:].replace("\n", "\n  "))
    if samples:
        print("  resident set at each tenth of the run (MB):", " ".join(
            f"{samples[min(len(samples) - 1, len(samples) * k // 10)][1] / 1024:.0f}" for k in range(1, 11)))
    mb = peak / 1024
    print(f"  peak RSS (VmHWM) {mb:.0f} MB (goal < {GOAL_MB:.0f} MB for 100,000 cards: "
          f"{'met' if mb < GOAL_MB else 'MISSED'})")
    return child.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cards", type=int, default=100_000)
    ap.add_argument("--stations", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="work here and keep the batch and the report")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: certify the batch a former run left there (no prepare, no perso)")
    args = ap.parse_args()
    from cardlab.personalizer import engine
    from cardlab.personalizer.profile import load_profile

    work = args.keep or Path(tempfile.mkdtemp(prefix="cardlab-bench-certify-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.reuse and args.keep and (work / "batch" / "jobs.sqlite").exists():
            from cardlab.tester.certify import map_images

            n = len(map_images(work / "batch"))
            print(f"  reusing the personalized batch in {work} ({n} cards)", flush=True)
            return certify(work, work / "visa-sda.yaml", work / "records.csv", work / "keys.json", work / "batch", n)
        keys = pipeline.demo_keystore(work / "keys.json")
        profile = sda_profile(work)
        bin_, languages = records_gen.BINS["visa-cvn18"]
        records = records_gen.write_csv(work / "records.csv", bin_, args.cards, seed=1, languages=languages)
        batch, stock = work / "batch", work / "stock"
        t = time.perf_counter()
        _n, accepted, _rej, _s = pipeline._prepare_worker((str(profile), str(records), str(keys), str(batch)))
        shutil.copyfile(pipeline.SCRIPT, batch / "script.yaml")
        print(f"  prepare: {accepted} cards, {time.perf_counter() - t:.0f} s", flush=True)
        card = load_profile(profile).card
        pipeline._stock_worker((str(stock), str(keys), card.kmc, card.diversification.upper(), accepted))
        t = time.perf_counter()
        rep = engine.run(batch, cards=stock, stations=args.stations, keys=str(keys))
        print(f"  perso: exit {rep.exit_code}, {time.perf_counter() - t:.0f} s", flush=True)
        if rep.exit_code != 0:
            return 1
        return certify(work, profile, records, keys, batch, accepted)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

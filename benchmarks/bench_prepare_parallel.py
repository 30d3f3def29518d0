"""One batch prepared on many processes or a Dask cluster (issues 14 and 15).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare_parallel.py [--records 2000] [--workers 1 2 4]

A DDA profile (the Visa sample's credit application: one 1024-bit ICC key per card) and
``--records`` generated records, prepared in the same run by

* one process (``prepare()``, the baseline),
* ``--workers N`` local worker processes, and
* ``--dask local:N`` (a local Dask cluster of N worker processes),

each as ``cardlab perso prepare`` in a child process. Prints records/s, the speed-up against
the one-process run, and the peak memory (VmHWM) of the parent and of the largest worker.
The issue asks for 100,000 records; ``--records 100000`` runs that (about an hour on two cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "personalizer"))

from prepkit import VISA, make_keystore  # noqa: E402

from cardlab.records_gen import write_csv  # noqa: E402

# the child: runs the command, then reports its own and its children's peak memory
CHILD = r"""
import json, resource, sys
from cardlab.cli import main
rc = main(sys.argv[1:])
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print("BENCH " + json.dumps({"rc": rc, "parent_mb": me, "worker_mb": kids}), flush=True)
"""


def dda_profile(out: Path) -> Path:
    doc = yaml.safe_load(VISA.read_text())
    doc["applications"] = doc["applications"][:1]  # the credit application: SDA + DDA
    path = out / "dda.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(profile: Path, records: Path, keys: Path, out: Path, extra: list[str]) -> tuple[float, dict[str, int]]:
    cmd = [sys.executable, "-c", CHILD, "perso", "prepare", "--profile", str(profile), "--records", str(records),
           "--keys", str(keys), "--out", str(out), "--today", "2026-01-15", "--quiet", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{' '.join(extra) or 'one process'} failed: {proc.stderr[-2000:]}")
    stats = json.loads(line[6:])
    if stats["rc"] != 0:
        raise SystemExit(f"{' '.join(extra) or 'one process'}: exit code {stats['rc']}: {proc.stderr[-2000:]}")
    return seconds, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--no-dask", action="store_true", help="only local worker processes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cardlab-bench-parallel-") as tmp:
        work = Path(tmp)
        keys = work / "keys.json"
        make_keystore().save(keys)
        profile = dda_profile(work)
        records = work / "records.csv"
        write_csv(records, "476173", args.records, seed=1)
        print(f"DDA profile, {args.records} records (one 1024-bit ICC key each), same run:")
        base, stats = run(profile, records, keys, work / "one", [])
        rows = [("one process", base, stats)]
        for n in args.workers:
            s, st = run(profile, records, keys, work / f"w{n}", ["--workers", str(n)])
            rows.append((f"--workers {n}", s, st))
            if not args.no_dask:
                s, st = run(profile, records, keys, work / f"d{n}", ["--dask", f"local:{n}"])
                rows.append((f"--dask local:{n}", s, st))
        print(f"  {'how':<18} {'seconds':>8} {'records/s':>10} {'speed-up':>9} {'parent MB':>10} {'worker MB':>10}")
        for what, s, st in rows:
            print(f"  {what:<18} {s:>8.1f} {args.records / s:>10.1f} {base / s:>8.2f}x {st['parent_mb']:>10} "
                  f"{st['worker_mb'] if what != 'one process' else '-':>10}")
        print("  (seconds include the command's start and, for Dask, starting the local cluster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

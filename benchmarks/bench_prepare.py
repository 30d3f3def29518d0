"""Data preparation throughput and memory.

    /tmp/venv/bin/python benchmarks/bench_prepare.py [--cards 200] [--rss-records 100000]

Prints, on one core:

* SDA profile (the Visa sample's credit application, SDA only): prepare +
  personalize cards per second — ``prepare()`` writes a batch, then every card
  is stored into its own emulated card by hand (tests/personalizer/prepkit.py:
  SCP03 level 33, sealed DGIs opened and re-encrypted under the card DEK);
  goal ≥ 100 cards/s. The same profile through the production path
  (``cardlab.personalizer.engine.run`` with the shipped EMV CPS script, job database,
  audit log and durable card image saves, one station) is printed next to it,
  as a ratio of the in-memory path: the engine's own cost per card;
* DDA profile (the Visa sample's credit application alone: SDA + DDA, one
  1024-bit ICC key per card), and the two-application Visa sample (two ICC keys
  per card), next to the raw OpenSSL RSA-1024 key generation rate measured in
  the same run; goal ≥ 50 % of it (one key per card);
* peak RSS of a child process preparing ``--rss-records`` records (generated on
  the fly into a temporary file, SDA profile); goal < 300 MB.
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "personalizer"))

from prepkit import VISA, make_keystore, personalize, sda_profile  # noqa: E402

from cardlab.emulator import Card  # noqa: E402
from cardlab.personalizer.batch import iter_cards  # noqa: E402
from cardlab.personalizer.prepare import prepare  # noqa: E402

TODAY = date(2026, 1, 15)
SCRIPT = ROOT / "vectors" / "scripts" / "emv-cps.yaml"


def _luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return body + str((10 - total) % 10)


def write_records(path: Path, n: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    with path.open("w") as f:
        f.write("pan,psn,expiry,name,pin\n")
        for i in range(n):
            pan = _luhn(f"476173{i:09d}")
            name = "HOLDER/" + chr(65 + i % 26) + chr(65 + i // 26 % 26)
            f.write(f"{pan},{i % 100:02d},20{30 + i % 5}-{1 + i % 12:02d},{name},"
                    f"{rnd.randrange(10**4):04d}\n")  # fmt: skip


def dda_profile(out: Path) -> Path:
    doc: dict[str, Any] = yaml.safe_load(VISA.read_text())
    doc["applications"] = [copy.deepcopy(doc["applications"][0])]
    doc["profile"] = "visa-dda-test"
    path = out / "visa-dda.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def keygen_rate(seconds: float, exponent: int = 65537) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        rsa.generate_private_key(public_exponent=exponent, key_size=1024)
        n += 1
    return n / elapsed


def prepare_and_personalize(profile: Path, records: Path, ks: Any, out: Path) -> tuple[float, float, int]:
    """(prepare cards/s, prepare+personalize cards/s, cards)."""
    t0 = time.perf_counter()
    s = prepare(profile, records, ks, out, today=TODAY)
    t1 = time.perf_counter()
    for card_data in iter_cards(out):
        personalize(Card.create(), card_data, ks)
    t2 = time.perf_counter()
    return s.accepted / (t1 - t0), s.accepted / (t2 - t0), s.accepted


def prepare_and_engine(profile: Path, records: Path, ks: Any, out: Path) -> tuple[float, float, int]:
    """The production path: ``prepare()`` then ``cardlab.personalizer.engine.run`` with the shipped EMV CPS
    script (script interpreter, SCP03 with KMC-diversified keys, job database, audit log, card
    images saved after every card) on one station. Card stock is made beforehand, untimed: blank
    cards come from the card manufacturer. Returns (engine cards/s, prepare + engine cards/s, cards)."""
    from enginekit import KMC_NAME, make_cards

    from cardlab.personalizer import engine

    if KMC_NAME not in ks:
        ks.add_symmetric(KMC_NAME, "AES", "KMC", ks.clear_value("KMC"))
    keys = out.parent / f"{out.name}-keys.json"
    ks.save(keys)
    t0 = time.perf_counter()
    s = prepare(profile, records, ks, out, today=TODAY, script=SCRIPT, keys_spec=str(keys))
    t1 = time.perf_counter()
    stock = make_cards(out.parent, keys, s.accepted, name=f"{out.name}-stock")
    t2 = time.perf_counter()
    rep = engine.run(out, cards=stock, stations=1)
    t3 = time.perf_counter()
    if rep.exit_code != 0:
        raise SystemExit(f"engine run failed: {rep.failures[:3]} {rep.unaccounted[:3]} {rep.errors[:3]}")
    return s.accepted / (t3 - t2), s.accepted / ((t1 - t0) + (t3 - t2)), s.accepted


def rss_child(records: int) -> None:
    """In a child process: prepare ``records`` generated records, print peak RSS (MB)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_records(tmp / "r.csv", records)
        ks = make_keystore([VISA])
        t0 = time.perf_counter()
        s = prepare(sda_profile(tmp), tmp / "r.csv", ks, tmp / "batch", today=TODAY)
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{s.accepted} {dt:.1f} {rss:.1f} {(tmp / 'batch' / 'cards.jsonl').stat().st_size}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", type=int, default=200)
    ap.add_argument("--keygen-seconds", type=float, default=3.0)
    ap.add_argument("--rss-records", type=int, default=100_000)
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return 0

    ks = make_keystore([VISA])
    ok = True
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_records(tmp / "r.csv", args.cards)
        write_records(tmp / "r-small.csv", max(20, args.cards // 4))
        prep, total, n = prepare_and_personalize(sda_profile(tmp), tmp / "r.csv", ks, tmp / "sda")
        print(f"SDA profile:  prepare {prep:7.1f} cards/s; prepare + personalize {total:7.1f} cards/s "
              f"({n} cards; goal >= 100)")  # fmt: skip
        ok &= total >= 100
        eng, total_eng, n = prepare_and_engine(sda_profile(tmp), tmp / "r.csv", ks, tmp / "sda-engine")
        print(f"SDA profile through the perso engine (shipped EMV CPS script, job db, audit, 1 station): "
              f"engine {eng:7.1f} cards/s; prepare + engine {total_eng:7.1f} cards/s ({n} cards; "
              f"{100 * total_eng / total:.0f} % of the in-memory path above; goal >= 100: "
              f"{'met' if total_eng >= 100 else 'MISSED'})")  # fmt: skip
        ok &= total_eng >= 100  # the goal holds for the path a bureau runs, not only the test's shortcut
        # the baseline uses the profile's own ICC exponent: OpenSSL generates
        # e = 3 keys about half as fast as e = 65537 keys (primes p with
        # gcd(3, p-1) = 1 are rarer), so comparing with e = 65537 would be unfair
        dda_doc = yaml.safe_load(dda_profile(tmp).read_text())
        exponent = int(dda_doc["applications"][0]["icc_key"]["exponent"])
        raw = keygen_rate(args.keygen_seconds, exponent)
        raw_f4 = keygen_rate(args.keygen_seconds / 2)
        print(f"raw OpenSSL RSA-1024 key generation: {raw:7.1f} keys/s with e = {exponent} "
              f"(the DDA profile's exponent); {raw_f4:7.1f} keys/s with e = 65537")  # fmt: skip
        prep, total, n = prepare_and_personalize(dda_profile(tmp), tmp / "r-small.csv", ks, tmp / "dda")
        print(f"DDA profile (1 ICC key/card): prepare {prep:7.1f} cards/s; prepare + personalize {total:7.1f} "
              f"cards/s = {100 * total / raw:.0f} % of raw keygen ({n} cards; goal >= 50 %)")  # fmt: skip
        ok &= total >= 0.5 * raw
        prep, total, n = prepare_and_personalize(VISA, tmp / "r-small.csv", ks, tmp / "visa2")
        print(f"Visa sample (2 apps, 2 ICC keys/card): prepare + personalize {total:7.1f} cards/s "
              f"= {100 * total / raw:.0f} % of raw keygen (at most 50 % with two keys)")  # fmt: skip
    if args.rss_records:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(args.rss_records)],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        n, dt, rss, size = int(out[0]), float(out[1]), float(out[2]), int(out[3])
        print(f"peak RSS preparing {n} records: {rss:.0f} MB (goal < 300; {n / dt:.0f} records/s, "
              f"cards.jsonl {size / 1e6:.0f} MB)")  # fmt: skip
        ok &= rss < 300
    print("all goals met" if ok else "GOALS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

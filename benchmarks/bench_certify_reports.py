"""Certification reports at batch scale: certify N emulated cards (default
10,000) and write the reports as they go; print the size of each report file
and the peak memory (VmHWM) of the process.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_certify_reports.py [--cards 10000] [--fail-every 100]

How the cards are made (the fastest honest way): ``cardlab demo --cards 4``
prepares, personalizes and certifies 2 cards per sample profile (Visa CVN 18,
Mastercard CVN 16); each of the N cards is then a fresh copy of one of those 4
images (loaded anew from the image's JSON, so its counters start as
personalized), talked to in-process (``RecordingChannel`` over the card's
``transmit``; not the PC/SC plug-in), and certified in full by
``certify_card`` (``gp_status=True``, as the demo) against its own record —
every ``--fail-every``-th card against another cardholder's record, so that
it fails and its report is written in full. Personalizing 10,000 cards would
only cost RSA key generation, which the reports do not depend on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # pyemv's TripleDES use warns on every call under recent `cryptography`
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

from cardlab.emulator import Card  # noqa: E402
from cardlab.emulator.image import loads  # noqa: E402
from cardlab.tester.certify import certify_card, map_images  # noqa: E402
from cardlab.tester.channel import RecordingChannel  # noqa: E402
from cardlab.tester.progress import Progress  # noqa: E402
from cardlab.tester.report import FILES, ReportWriter, provenance  # noqa: E402
from cardlab.tester.sources import load_keystore, load_profile, read_records  # noqa: E402


def vm(field: str) -> int:
    """A VmXXX line of /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=10_000)
    ap.add_argument("--fail-every", type=int, default=100, help="every Nth card against a wrong record (0: none)")
    ap.add_argument("--details", choices=("failing", "all"), default="failing")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-certify-") as tmp:
        work = Path(tmp) / "demo"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cardlab", "demo", "--cards", "4", "--out", str(work), "--no-trace",
                        "--quiet"], check=True, stdout=subprocess.DEVNULL, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        made = time.perf_counter() - t
        keys = load_keystore(str(work / "keys.json"))
        templates = []  # (profile, image text, its record, another record of the profile, image name)
        inputs: dict[str, Path | None] = {"key store": work / "keys.json"}
        for name in ("visa-cvn18", "mastercard-cvn16"):
            prof_path, rec_path = work / "profiles" / f"{name}.yaml", work / "records" / f"{name}.csv"
            inputs.update({f"profile {name}": prof_path, f"records {name}": rec_path,
                           f"manifest {name}": work / name / "batch" / "manifest.json"})
            profile, recs = load_profile(prof_path), {r.index: r for r in read_records(rec_path)}
            for img, idx, _cid in map_images(work / name / "batch"):
                other = next(r for i, r in recs.items() if i != idx)
                templates.append((profile, Path(img).read_text(), recs[idx], other, Path(img).name))
        base_rss = vm("VmRSS")
        out = Path(tmp) / "reports"
        prov = provenance(inputs=inputs, keys=keys, argv=sys.argv,
                          options={"benchmark": f"{a.cards} copies of {len(templates)} demo cards"})
        t = time.perf_counter()
        with ReportWriter(out, prov, details=a.details) as w, Progress(a.cards, "certify") as bar:
            for i in range(a.cards):
                profile, text, rec, other, img = templates[i % len(templates)]
                card = Card(loads(text))
                ch = RecordingChannel(card.transmit, card.power_on())
                wrong = a.fail_every and (i + 1) % a.fail_every == 0
                rep = certify_card(ch, profile, other if wrong else rec, keys, card_id=f"{i + 1:06d}",
                                   source=f"copy {i + 1} of {img}", gp_status=True)
                rep.reader, rep.atr = "in-process", ch.atr().hex().upper()
                w.add(rep)
                bar.advance(failed=rep.verdict != "pass")
        seconds = time.perf_counter() - t
        s = w.summary()
        print(f"cards: {a.cards} certified in {seconds:.1f} s ({a.cards / seconds:.1f} cards/s); "
              f"{s['passed']} passed, {s['cards'] - s['passed']} not passed; templates made by the demo in {made:.1f} s")
        print(f"details: {a.details}")
        total = 0
        for name in FILES:
            size = (out / name).stat().st_size
            total += size
            print(f"  {name:<26} {size / 1e6:8.2f} MB")
        print(f"  {'all':<26} {total / 1e6:8.2f} MB")
        print(f"peak memory (VmHWM): {vm('VmHWM') / 1024:.0f} MB (RSS before certifying {base_rss / 1024:.0f} MB, "
              f"after {vm('VmRSS') / 1024:.0f} MB)")


if __name__ == "__main__":
    main()

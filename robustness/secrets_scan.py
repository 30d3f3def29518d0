"""Secrets: a full demo-like run leaves no key, PIN or full PAN in its logs,
reports, job database or command-line output.

The run goes through the command line (``cardlab -v``, debug logging on):
``perso prepare`` (the Visa sample profile, the first records of the sample
file), ``perso stock`` (blank cards whose ISD keys come from the KMC),
``perso run`` (the EMV CPS perso script), ``perso status``, ``perso audit``
(list and ``--verify``), ``test certify`` with ``--report-dir``, and then the
main job ``cardlab demo`` (both sample profiles, reports and the annotated
trace), all under one output directory (``--out``, else a temporary one).

Scanned: the stdout and stderr of every command, every file under the output
directory except the card images and the key store (the reports, the batch:
manifest, rejected and prepared-card files, the job database both as raw
bytes and as an SQL dump), for

* every secret of the key store: symmetric key values, RSA private keys (the
  PKCS#8 DER and the private exponent and primes), and the ISD keys of the
  stock cards diversified from the KMC, as hex in either case;
* every PIN of the records, as a number standing alone and as a PIN block;
* every full PAN of the records (digits, and the hex of the BCD PAN).

``python -m robustness.secrets_scan [--out DIR] [--cards N] [--demo-cards N] [--quick]``; exit 1 on any hit.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from robustness.common import ROOT, VECTORS, figures

PROFILE = VECTORS / "profiles" / "visa-cvn18.yaml"
SAMPLE = VECTORS / "records" / "sample.csv"
KMC_NAME = "TEST-KMC-VISA"
TODAY = "2026-01-15"


@dataclass
class Result:
    commands: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    scanned: list[tuple[str, int]] = field(default_factory=list)  # (what, bytes)
    keys: int = 0
    pins: int = 0
    pans: int = 0
    hits: list[str] = field(default_factory=list)
    cards_done: int = 0
    #: control: patterns found in the records and key store files themselves (must be > 0)
    control_hits: int = 0
    #: control: every PIN pattern (labelled and PIN block forms) fires on a leak written for it
    pin_patterns: int = 0
    pin_controls_missed: int = -1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.hits and all(c == 0 for c in self.exit_codes) and self.cards_done > 0
                and self.control_hits > 0 and self.pin_controls_missed == 0)


def _cli(args: list[str], cwd: Path, res: Result, outputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cardlab", "-v", *args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    name = " ".join(args[:2])
    res.commands.append("cardlab -v " + " ".join(args))
    res.exit_codes.append(p.returncode)
    outputs[f"{name} (stdout)"] = p.stdout
    outputs[f"{name} (stderr)"] = p.stderr
    return p


def secrets_of_keystore(path: Path) -> dict[str, str]:
    """name → hex of every secret in the key store file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    out: dict[str, str] = {}
    doc = json.loads(path.read_text())
    for name, entry in doc["keys"].items():
        value = str(entry.get("value", ""))
        if not value:
            continue
        out[name] = value
        if entry.get("type") == "RSA":
            key = serialization.load_der_private_key(bytes.fromhex(value), None)
            if isinstance(key, rsa.RSAPrivateKey):
                nums = key.private_numbers()
                for part, v in (("d", nums.d), ("p", nums.p), ("q", nums.q)):
                    out[f"{name}.{part}"] = format(v, "X")
    return out


def run(out: Path, cards: int = 4, demo_cards: int = 200) -> Result:
    """``cards``: the CLI pipeline on the Visa sample records (1-6); ``demo_cards``: the size of the
    `cardlab demo` run scanned too (its default, 200: the full main job)."""
    import prepkit  # type: ignore[import-not-found]

    from cardlab.emulator import Card
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.profile import load_profile

    res = Result()
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    ks = prepkit.make_keystore()
    if KMC_NAME not in ks:
        ks.add_symmetric(KMC_NAME, "AES", "KMC", ks.clear_value("KMC"))
    keys = out / "keys.json"
    ks.save(keys)
    # the sample records on the profile's BIN (sample.csv also holds Mastercard-BIN records, which it rejects)
    on_bin = load_profile(PROFILE).pan_on_bin
    rows = [r for r in csv.DictReader(SAMPLE.open()) if on_bin(r["pan"])][:cards]
    records = out / "records.csv"
    with records.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    outputs: dict[str, str] = {}
    batch, reports = out / "batch", out / "reports"
    _cli(["perso", "prepare", "--profile", str(PROFILE), "--records", str(records), "--keys", str(keys),
          "--out", str(batch), "--today", TODAY], out, res, outputs)
    _cli(["perso", "stock", str(batch / "cards"), "--count", str(cards), "--keys", str(keys), "--kmc", KMC_NAME],
         out, res, outputs)
    _cli(["perso", "run", str(batch), "--cards", str(batch / "cards"), "--keys", str(keys),
          "--script", str(VECTORS / "scripts" / "emv-cps.yaml"), "--quiet"], out, res, outputs)
    _cli(["perso", "status", str(batch)], out, res, outputs)
    _cli(["perso", "audit", str(batch)], out, res, outputs)
    _cli(["perso", "audit", str(batch), "--verify"], out, res, outputs)
    _cli(["test", "certify", "--profile", str(PROFILE), "--records", str(records), "--keys", str(keys),
          "--cards", str(batch), "--report-dir", str(reports), "--today", TODAY], out, res, outputs)
    # and the main job itself: `cardlab demo` on both sample profiles, with its trace
    demo = out / "demo"
    _cli(["demo", "--cards", str(max(2, demo_cards)), "--out", str(demo), "--report-dir", str(demo / "reports")],
         out, res, outputs)
    demo_rows = [r for path in sorted((demo / "records").glob("*.csv")) for r in csv.DictReader(path.open())]

    # what must not appear
    secrets = secrets_of_keystore(keys)
    with open_keystore(str(keys)) as store:
        for image in sorted((batch / "cards").glob("card-*.json")):
            kdd = Card.load(image).state.kdd
            k = store.diversify_card_keys(KMC_NAME, "KDF3", kdd)
            for part, v in (("enc", k.enc), ("mac", k.mac), ("dek", k.dek)):
                secrets[f"card {image.stem} {part}"] = v.hex().upper()
    if (demo / "keys.json").exists():
        secrets.update({f"demo {k}": v for k, v in secrets_of_keystore(demo / "keys.json").items()})
    res.keys = len(secrets)
    pins = {r["pin"] for r in rows + demo_rows}
    pans = {r["pan"] for r in rows + demo_rows}
    res.pins, res.pans = len(pins), len(pans)
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for name, hexval in secrets.items():
        patterns.append((f"key {name}", re.compile(re.escape(hexval), re.IGNORECASE)))
    pipeline_pins = {r["pin"] for r in rows}
    standalone: list[tuple[str, re.Pattern[str]]] = []  # for the pipeline's own outputs, not the demo's
    for i, pin in enumerate(sorted(pins)):
        block = ("2" + format(len(pin), "X") + pin).ljust(16, "F")
        if pin in pipeline_pins:
            # the few sample PINs of the CLI pipeline: anywhere standing alone (not the decimals
            # of a timing figure such as 0.1234)
            standalone.append((f"PIN #{i + 1}", re.compile(rf"(?<![0-9A-Za-z.]){pin}(?![0-9A-Za-z])")))
        else:
            # the demo's hundreds of random 4-digit PINs are every 4-digit number of a report (counts,
            # ids, record numbers): for them, a PIN next to the word "pin" ("pin": "1234", PIN=1234)
            patterns.append((f"PIN #{i + 1} (labelled)",
                             re.compile(rf"pin\W{{0,4}}{pin}(?![0-9])", re.IGNORECASE)))
        patterns.append((f"PIN #{i + 1} block", re.compile(re.escape(block), re.IGNORECASE)))
    for i, pan in enumerate(sorted(pans)):
        patterns.append((f"PAN #{i + 1}", re.compile(re.escape(pan))))

    texts: dict[str, str] = dict(outputs)
    # the inputs themselves, and card images (a card's own secret storage)
    inputs = [keys, records, demo / "keys.json", *sorted((demo / "records").glob("*.csv"))]
    skip = {p.resolve() for p in inputs}
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.resolve() in skip:
            continue
        # an image is its snapshot and its journal (cardlab.emulator.journal): both are the card's storage
        name = path.name.removesuffix(".journal")
        if name.endswith(".json") and (path.parent.name in ("cards", "stock") or name == "trace-card.json"):
            continue
        data = path.read_bytes()
        texts[str(path.relative_to(out))] = data.decode("latin-1")
        if path.suffix in (".sqlite", ".db") or path.name.startswith("jobs.sqlite"):
            try:
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                texts[f"{path.relative_to(out)} (SQL dump)"] = "\n".join(con.iterdump())
                con.close()
            except sqlite3.Error:
                pass
            # blobs: scan their hex too
            texts[f"{path.relative_to(out)} (hex)"] = data.hex()
    for what, text in texts.items():
        res.scanned.append((what, len(text)))
        in_demo = what.startswith("demo")  # the demo's files and command output
        for label, pat in patterns + ([] if in_demo else standalone):
            m = pat.search(text)
            if m:
                ctx = text[max(0, m.start() - 30): m.end() + 30].replace("\n", " ")
                res.hits.append(f"{label} in {what}: ...{ctx}...")
    control = "".join(p.read_text() for p in inputs if p.exists())
    res.control_hits = sum(1 for _, pat in patterns + standalone if pat.search(control))
    # the PIN patterns must fire on the leaks they are for: a labelled JSON value, a key=value
    # log field, a PIN block in hex (the records file cannot show that: the label is in its header)
    leaks = "\n".join(f'{{"pin": "{pin}"}} PIN={pin} {("2" + format(len(pin), "X") + pin).ljust(16, "F")}'
                      for pin in sorted(pins))
    pin_pats = [(label, pat) for label, pat in patterns if label.startswith("PIN")]
    res.pin_patterns = len(pin_pats)
    res.pin_controls_missed = sum(1 for _, pat in pin_pats if not pat.search(leaks))
    status = outputs.get("perso status (stdout)", "")
    m = re.search(r"done (\d+)", status)
    res.cards_done = int(m.group(1)) if m else 0
    res.seconds = time.perf_counter() - started
    return res


def report(res: Result) -> str:
    rows: list[tuple[str, object]] = [
        ("commands run", len(res.commands)),
        ("exit codes", " ".join(str(c) for c in res.exit_codes)),
        ("cards personalized", res.cards_done),
        ("secrets looked for", f"{res.keys} keys, {res.pins} PINs, {res.pans} PANs"),
        ("sources scanned", f"{len(res.scanned)} ({sum(n for _, n in res.scanned):,} characters)"),
        ("hits", len(res.hits)),
        ("control: patterns found in records + key store", res.control_hits),
        ("control: PIN patterns firing on written leaks", f"{res.pin_patterns - res.pin_controls_missed} of {res.pin_patterns}"),
        ("seconds", f"{res.seconds:.1f}"),
    ]
    text = figures("secrets scan (robustness/secrets_scan.py)", rows)
    text += "\ncommands:\n" + "\n".join("  " + c for c in res.commands)
    text += "\nscanned:\n" + "\n".join(f"  {w} ({n:,} chars)" for w, n in res.scanned)
    if res.hits:
        text += "\nHITS:\n" + "\n".join("  " + h for h in res.hits[:50])
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="keep every artefact in this directory (must not hold a batch)")
    ap.add_argument("--cards", type=int, default=4, help="cards to prepare, personalize and certify (1-6)")
    ap.add_argument("--demo-cards", type=int, default=200, help="cards of the `cardlab demo` run scanned (200: the full demo)")
    ap.add_argument("--quick", action="store_true", help="2 cards, a 4-card demo")
    args = ap.parse_args(argv)
    n, demo_n = (2, 4) if args.quick else (args.cards, args.demo_cards)
    if args.out:
        res = run(args.out, n, demo_n)
    else:
        with tempfile.TemporaryDirectory(prefix="cardlab-secrets-") as tmp:
            res = run(Path(tmp), n, demo_n)
    print(report(res))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

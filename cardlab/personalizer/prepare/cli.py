"""``cardlab perso prepare``: the command line of data preparation (the logic is in
:mod:`.writer`, :mod:`.preparer` and :mod:`.issuer`)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from cardlab.personalizer.keys import KeyStoreError
from cardlab.personalizer.masking import one_line
from cardlab.personalizer.prepare.errors import PrepareError
from cardlab.personalizer.prepare.issuer import load_ca_public_keys
from cardlab.personalizer.prepare.writer import prepare
from cardlab.personalizer.profile import ProfileError
from cardlab.personalizer.records import RecordsError
from cardlab.personalizer.transport import TransportKeys

__all__ = ["add_commands"]


def _cmd_prepare(args: argparse.Namespace, out: Any) -> int:
    import sys

    today = date.fromisoformat(args.today) if args.today else None
    tkeys: TransportKeys | None = None
    try:
        if args.bureau_key or args.issuer_public:
            from cardlab.personalizer.transport import load_private_key, load_public_key

            if not (args.bureau_key and args.issuer_public):
                raise PrepareError("sealed records need both --bureau-key and --issuer-public")
            priv = load_private_key(args.bureau_key)
            if not isinstance(priv, rsa.RSAPrivateKey):
                raise PrepareError("--bureau-key must be an RSA private key")
            tkeys = TransportKeys(priv, load_public_key(args.issuer_public))
        cas = load_ca_public_keys(args.ca_public_keys) if args.ca_public_keys else []
        with RecordsBar(_count_records(args.records), show_progress(args.quiet)) as bar:
            s = prepare(
                args.profile, args.records, args.keys, args.out, today=today,
                transport_key=args.transport_key, transport_keys=tkeys, script=args.script, ca_public_keys=cas,
                progress=bar.advance, workers=args.workers, dask=args.dask,
            )  # fmt: skip
    except UnicodeDecodeError:
        raise  # cardlab.errors names the file that is not text
    except (PrepareError, ProfileError, RecordsError, KeyStoreError, OSError, ValueError) as e:
        print(f"cardlab perso prepare: {one_line(str(e))}", file=sys.stderr)
        return 2
    out.print(
        f"{s.profile}: {s.input_count} records, {s.accepted} prepared, {s.rejected} rejected "
        f"-> {s.out_dir} ({s.seconds:.1f} s, {s.rate:.0f} records/s; transport key {s.transport_key} "
        f"KCV {s.transport_kcv})"
    )
    if s.rejected:
        out.print(f"rejections: {s.out_dir / 'rejected.jsonl'}")
    return 0


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 256:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes 1-256, got {value!r}")
    return int(value)


def show_progress(quiet: bool) -> bool:
    """A progress bar only on a terminal (stderr), outside CI, unless ``--quiet``."""
    import os
    import sys

    return not quiet and not os.environ.get("CI") and sys.stderr.isatty()


def _count_records(path: Path) -> int | None:
    """Records in a CSV (lines after the header) or JSON Lines file; None when not known (sealed)."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
            if b"\0" in head:
                return None
            f.seek(0)
            n = sum(1 for line in f if line.strip())
    except OSError:
        return None
    return n - 1 if path.suffix.lower() == ".csv" else n


class RecordsBar:
    """``perso prepare``'s progress: records, records per second, time left (rich, on stderr)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._p: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("prepare"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[rate]} records/s"),
                               TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._task = self._p.add_task("prepare", total=total, rate="-")
        import time

        self._clock = time.perf_counter
        self._start = self._clock()
        self.n = 0

    def advance(self) -> None:
        self.n += 1
        if self._p is not None:
            rate = self.n / max(self._clock() - self._start, 1e-9)
            self._p.update(self._task, advance=1, rate=f"{rate:.1f}")

    def __enter__(self) -> RecordsBar:
        if self._p is not None:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cardlab perso prepare``."""
    p = sub.add_parser(
        "prepare",
        help="prepare per-card perso data from an issuer profile and cardholder records",
        description="Key store passphrase: $CARDLAB_KEYSTORE_PASSPHRASE; PKCS#11 PIN: $CARDLAB_PKCS11_PIN "
        "(or the pin-env= of the pkcs11: spec).",
    )
    p.add_argument("--profile", required=True, type=Path, help="issuer profile (YAML)")
    p.add_argument("--records", required=True, type=Path, help="cardholder records (CSV, JSONL, or sealed)")
    p.add_argument("--keys", required=True, help="key store: a file or pkcs11:token=LABEL[;pin-env=VAR]")
    p.add_argument("--out", required=True, type=Path, help="batch directory to create")
    p.add_argument("--transport-key", default="KEK", help="key-store name of the batch transport key")
    p.add_argument("--script", type=Path,
                   help="perso script to copy into the batch (default: the shipped EMV CPS or badge script)")
    p.add_argument("--today", help="YYYY-MM-DD for the expiry checks (default: today)")
    p.add_argument("--ca-public-keys", type=Path,
                   help="JSON/YAML file with a ca_public_keys list (RID, index, modulus, exponent) to verify "
                        "the profile's issuer certificates (default: the key store's)")
    p.add_argument("--bureau-key", type=Path, help="bureau private key (PEM) to open sealed records")
    p.add_argument("--issuer-public", type=Path, help="issuer public signing key (PEM) of sealed records")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, default=1, metavar="N",
                       help="prepare on N local worker processes (default 1: this process); the same batch")
    where.add_argument("--dask", metavar="ADDRESS",
                       help="prepare on the workers of a Dask scheduler (tcp://HOST:PORT) or of a local Dask cluster "
                            "(local:N); each worker opens the key store itself (docs/perso-engine.md)")
    p.set_defaults(func=_cmd_prepare)

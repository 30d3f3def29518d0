"""``cardlab perso run | status | audit | stock``: the engine's command line.

Each command parses its options, calls the engine (:func:`~cardlab.personalizer.engine.runner.run`,
the job database, the audit chain, :func:`~cardlab.personalizer.stock.make_stock`) and prints;
the logic lives in those modules. Exit codes (:mod:`cardlab.exitcodes`): 0 all good, 1 a record failed or is unaccounted for
(listed), 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cardlab.cardspec import argtypes
from cardlab.exitcodes import USAGE
from cardlab.personalizer.engine.errors import EngineError
from cardlab.personalizer.engine.runner import RunReport, run
from cardlab.personalizer.jobdb import JobDb, JobDbError, open_jobdb, safe_reason
from cardlab.personalizer.jobstore import JobStoreError, masked_url
from cardlab.personalizer.masking import one_line


def print_report(rep: RunReport, out: Any) -> None:
    c = rep.counts
    rate = rep.cards_this_run / rep.seconds if rep.seconds > 0 else 0.0
    out.print(f"input {rep.input}: done {c['done']}, failed {c['failed']}, rejected {c['rejected']}, "
              f"pending {c['pending']}, in progress {c['in_progress']}")
    if rep.reconciled:
        out.print("reconciled after a crash: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.reconciled.items())))
    out.print(f"this run: {rep.cards_this_run} cards in {rep.seconds:.2f} s ({rate:.1f} cards/s)")
    if rep.stages:
        from rich.table import Table

        table = Table(title="time per stage (all runs)")
        for col in ("stage", "times", "total s", "mean ms", "per s"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for name, count, total in rep.stages:
            mean = total / count if count else 0.0
            table.add_row(name, str(count), f"{total:.2f}", f"{mean * 1000:.2f}", f"{1 / mean:.1f}" if mean else "-")
        out.print(table)
    for index, card_id, pan, reason in rep.failures:
        out.print(f"failed: record {index} (card {card_id}, {pan}): {reason}")
    if rep.elsewhere:
        out.print(f"{len(rep.elsewhere)} records in progress on stations still running: "
                  + ", ".join(f"{i} ({s})" for i, s in rep.elsewhere[:50]), markup=False)
    if rep.unaccounted:
        listed = ", ".join(f"{i} ({s})" for i, _, s in rep.unaccounted[:50])
        more = f" and {len(rep.unaccounted) - 50} more" if len(rep.unaccounted) > 50 else ""
        out.print(f"[bold red]{len(rep.unaccounted)} records unaccounted for[/]: {listed}{more}")
    for err in rep.errors:
        out.print(f"[red]error[/]: {err}")


def _jobs(args: argparse.Namespace) -> str | None:
    """The job store: --jobs, else $CARDLAB_JOBS, else None (BATCH/jobs.sqlite)."""
    import os

    return str(getattr(args, "jobs", None) or os.environ.get("CARDLAB_JOBS") or "") or None


def _open_existing(batch: Path, jobs: str | None, command: str) -> JobDb | None:
    """The job database of a batch that has been run, or None (after saying so on stderr)."""
    if jobs is None:
        if not (batch / "jobs.sqlite").exists():
            print(f"cardlab perso {command}: {batch}: not run yet (no jobs.sqlite)", file=sys.stderr)
            return None
        return JobDb(batch / "jobs.sqlite", batch=batch)
    try:
        db = open_jobdb(batch, jobs)
    except (JobDbError, ValueError, OSError) as exc:
        print(f"cardlab perso {command}: {safe_reason(str(exc))}", file=sys.stderr)
        return None
    if db.meta("cards_sha256") is None:
        db.close()
        print(f"cardlab perso {command}: {batch}: not run yet (the job store {masked_url(jobs)} does not hold it)",
              file=sys.stderr)
        return None
    return db


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    out = Console(stderr=False)
    try:
        rep = run(args.batch, cards=args.cards, readers=args.reader or (), stations=args.stations,
                  script=args.script, keys=args.keys, progress=not args.quiet,
                  reader_timeout=args.card_timeout, wait_removal=not args.no_wait_removal, jobs=_jobs(args))
    except (EngineError, JobDbError) as exc:
        print(f"cardlab perso run: {safe_reason(str(exc))}", file=sys.stderr)
        return USAGE
    except JobStoreError as exc:  # the server went away during the run: open attempts wait for the next run
        print(f"cardlab perso run: {safe_reason(str(exc))}; run the batch again when the job store is back "
              "(what this run left open is settled then)", file=sys.stderr)
        return 1
    print_report(rep, out)
    return rep.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    out = Console()
    batch = Path(args.batch)
    if not (batch / "manifest.json").is_file():
        print(f"cardlab perso status: {batch}: not a batch directory (no manifest.json)", file=sys.stderr)
        return USAGE
    jobs = _jobs(args)
    if jobs is None and not (batch / "jobs.sqlite").exists():
        out.print(f"{batch}: not run yet (no jobs.sqlite)")
        return 1
    opened = _open_existing(batch, jobs, "status")
    if opened is None:
        return 1
    with opened as db:
        c = db.counts()
        total = sum(c.values())
        out.print(f"input {db.input_count()}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
        for index, card_id, pan, reason in db.failures():
            out.print(f"failed: record {index} (card {card_id}, {pan}): {reason}")
        for location, status, reason in db.set_aside():
            out.print(f"card {Path(location).name} {'set aside' if status == 'unusable' else status}: {reason}")
        left = db.unaccounted()
        if left:
            out.print(f"{len(left)} records not finished: " + ", ".join(f"{i} ({s})" for i, _, s in left[:50]))
        problems = db.check()
        for p in problems:
            out.print(f"[red]inconsistent[/]: {p}")
        if db.shared:  # a record in progress is either on a running station or waits for its card's station
            for att in db.open_attempts():
                state = "running" if db.station_alive(att.station) else "stopped: settled when a station reaches the card"
                out.print(f"record {att.record_index} in progress on {att.station} ({state}), card {att.location}",
                          markup=False)
        head = db.meta("audit_head") or "0:"
        out.print(f"audit head: entry {head.replace(':', ' hash ')}")
        ok = total == db.input_count() and not left and not db.failures() and not problems
    return 0 if ok else 1


def cmd_audit(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cardlab.personalizer import audit

    out = Console()
    jobs = _jobs(args)
    if jobs is not None:
        opened = _open_existing(Path(args.batch), jobs, "audit")
        if opened is None:
            return USAGE
        with opened as jdb:
            if not args.verify:
                for seq, when, event, details in jdb.db.execute("SELECT seq, time, event, details FROM audit ORDER BY seq"):
                    out.print(f"{int(seq):6d} {when} {event:12s} {details}", markup=False, highlight=False)
                return 0
            result = audit.verify(jdb.store)
        return _print_verification(out, result)
    path = Path(args.batch) / "jobs.sqlite"
    if not path.exists():
        print(f"cardlab perso audit: {args.batch}: no job database (not run yet?)", file=sys.stderr)
        return USAGE
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not args.verify:
            for seq, when, event, details in db.execute("SELECT seq, time, event, details FROM audit ORDER BY seq"):
                out.print(f"{seq:6d} {when} {event:12s} {details}", markup=False, highlight=False)
            return 0
        result = audit.verify(db)
    finally:
        db.close()
    return _print_verification(out, result)


def _print_verification(out: Any, result: Any) -> int:
    if result.ok:
        out.print(f"audit chain verified: {result.entries} entries, head {result.head}")
        return 0
    for p in result.problems:
        out.print(f"[red]audit[/]: {p}")
    out.print(f"audit chain [bold red]NOT[/] verified ({len(result.problems)} problems, {result.entries} entries)")
    return 1


def cmd_stock(args: argparse.Namespace) -> int:
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.stock import make_stock

    kmc, scheme = args.kmc, args.diversification
    isd_aid, kvn = args.isd_aid, args.key_version
    atr = None
    if args.profile:  # the card stock the profile's GP details expect (ISD AID, KMC, scheme, key version)
        from cardlab.personalizer.profile import ProfileError, load_card_details

        try:
            card = load_card_details(args.profile)  # EMV or badge profile
        except (ProfileError, OSError) as exc:
            print(f"cardlab perso stock: {one_line(str(exc))}", file=sys.stderr)
            return 2
        kmc = args.kmc or card.kmc
        scheme = args.diversification or card.diversification.upper()
        isd_aid = isd_aid if isd_aid is not None else card.isd_aid
        kvn = kvn if kvn is not None else card.key_version
        atr = card.atr  # the product ATR the profile names (card.atr / card.protocol)
    with open_keystore(args.keys) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys(kmc or "KMC", scheme or "KDF3", kdd)
            return k.enc, k.mac, k.dek

        made = make_stock(args.dir, args.count, div, (scheme or "KDF3").lower(), lifecycle=args.lifecycle,
                          isd_aid=isd_aid, kvn=0x30 if kvn is None else kvn, atr=atr)
    print(f"{len(made)} blank cards in {args.dir}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """``cardlab perso retry``: failed records back to pending for the next ``perso run``."""
    batch = Path(args.batch)
    opened = _open_existing(batch, _jobs(args), "retry")
    if opened is None:
        return USAGE
    with opened as db:
        failed = {i for i, *_ in db.failures()}
        wanted = None if args.failed else list(args.record)
        unknown = [i for i in wanted or [] if i not in failed]
        if unknown:
            print(f"cardlab perso retry: record {unknown[0]} has not failed (failed: "
                  f"{', '.join(map(str, sorted(failed))) or 'none'})", file=sys.stderr)  # fmt: skip
            return USAGE
        done = db.retry(wanted, args.reason)
    print(f"{len(done)} record(s) back to pending: {', '.join(map(str, done)) or 'none'}; run the batch again")
    return 0


JOBS_HELP = ("job store shared by stations on many machines: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB "
             "(default $CARDLAB_JOBS, else BATCH/jobs.sqlite)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="personalize a prepared batch (resumes after a crash)")
    p.add_argument("batch", type=argtypes.directory, help="batch directory (from perso prepare)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cards", metavar="DIR", help="card stock directory of emulated card images")
    src.add_argument("--reader", metavar="NAME", action="append",
                     help="PC/SC reader (repeat for several stations, one per reader)")
    p.add_argument("--stations", type=argtypes.positive, default=1, help="parallel stations (worker processes) for --cards")
    p.add_argument("--script", metavar="PATH", help="perso script (default BATCH/script.yaml)")
    p.add_argument("--keys", metavar="K", help="key store (path or pkcs11:token=…); default $CARDLAB_KEYS")
    p.add_argument("--card-timeout", type=argtypes.number, default=None,
                   help="with --reader: seconds to wait for a card before the station stops (default: forever)")
    p.add_argument("--no-wait-removal", action="store_true", help="with --reader: do not wait for card removal")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--jobs", metavar="URL", help=JOBS_HELP)
    p.set_defaults(func=lambda a, *_: cmd_run(a))

    s = sub.add_parser("status", help="counts and failures of a batch's job database")
    s.add_argument("batch", type=argtypes.directory, help="batch directory")
    s.add_argument("--jobs", metavar="URL", help=JOBS_HELP)
    s.set_defaults(func=lambda a, *_: cmd_status(a))

    a = sub.add_parser("audit", help="show or verify a batch's audit chain")
    a.add_argument("batch", type=argtypes.directory, help="batch directory")
    a.add_argument("--verify", action="store_true", help="verify the hash chain")
    a.add_argument("--jobs", metavar="URL", help=JOBS_HELP)
    a.set_defaults(func=lambda a, *_: cmd_audit(a))

    t = sub.add_parser("retry", help="put failed records back to pending (the next perso run takes them)")
    t.add_argument("batch", type=argtypes.directory, help="batch directory")
    which = t.add_mutually_exclusive_group(required=True)
    which.add_argument("--record", type=argtypes.positive, action="append", metavar="N",
                       help="a failed record to retry (repeatable)")
    which.add_argument("--failed", action="store_true", help="every failed record")
    t.add_argument("--reason", default="operator retry", help="why, for the audit log (default: operator retry)")
    t.add_argument("--jobs", metavar="URL", help=JOBS_HELP)
    t.set_defaults(func=lambda a, *_: cmd_retry(a))

    k = sub.add_parser("stock", help="make blank emulated cards (card stock) with ISD keys from the KMC")
    k.add_argument("dir", help="card stock directory to fill (created when missing)")
    k.add_argument("--count", type=argtypes.positive, required=True, help="number of blank cards")
    k.add_argument("--keys", required=True, metavar="K", help="key store holding the KMC")
    k.add_argument("--profile", metavar="P.yaml",
                   help="issuer profile: ISD AID, KMC, diversification and key version from its card section")
    k.add_argument("--kmc", help="key store name of the KMC (default: the profile's, else KMC)")
    k.add_argument("--diversification", metavar="EMV|VISA2|KDF3", type=argtypes.diversification,
                   help="card key diversification (default: the profile's, else KDF3)")
    k.add_argument("--isd-aid", type=argtypes.aid, help="ISD AID, hex (default: the profile's, else A000000151000000)")
    k.add_argument("--key-version", type=argtypes.key_version, help="ISD key version number, hex (default: the profile's, else 30)")
    k.add_argument("--lifecycle", default="OP_READY", choices=("OP_READY", "INITIALIZED"))
    k.set_defaults(func=lambda a, *_: cmd_stock(a))

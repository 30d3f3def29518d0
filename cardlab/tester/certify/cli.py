"""``cardlab test certify``: the command line of certification. EMV profiles
go to :func:`.batch.certify_batch`, file-system (badge) profiles to
:func:`.fs.certify_fs_card`; the cards come from images (``--card``,
``--cards``) or one after another from a reader (``--reader``); the reports
are written by :mod:`cardlab.tester.report`.

:mod:`cardlab.tester.report` is imported inside the functions: it imports
the result types of this package (:mod:`.results`), so a top-level import here
would make ``import cardlab.tester.report`` re-enter a half-initialized module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cardlab.exitcodes import USAGE

from ..channel import CardChannel
from ..sources import Record, SourceError, load_keystore, load_profile, read_records
from ..terminal import load_terminal
from .batch import CardItem, certify_batch, map_images
from .fs import FsSourceError, certify_fs_card, is_fs_profile, load_fs_profile, mask_number, read_badge_records
from .readers import iter_reader
from .results import FAIL, CardReport


def add_commands(sub: Any, open_image: Callable[[str], CardChannel]) -> None:
    p = sub.add_parser("certify", help="certify personalized cards against the issuer's source data")
    p.add_argument("--profile", required=True, help="issuer profile YAML")
    p.add_argument("--records", required=True, help="cardholder records (CSV / JSON Lines)")
    p.add_argument("--keys", required=True, help="issuer key store (JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cards", metavar="DIR", help="perso batch directory / directory of emulated card images")
    src.add_argument("--card", metavar="IMAGE", help="one emulated card image")
    src.add_argument("--reader", metavar="NAME", help="PC/SC reader: cards one after another")
    p.add_argument("--record", type=_record_number, help="record number (1-based) for --card / --reader")
    p.add_argument("--report-dir", default="reports", help="where the reports go (default reports/)")
    p.add_argument("--destructive", action="store_true",
                   help="also run state-changing checks: a wrong PIN, issuer scripts (PUT DATA, PIN change to the "
                        "record's PIN, application block then unblock); the card ends usable with its PIN, not fresh")
    p.add_argument("--terminal", help="terminal profile YAML (capabilities, CA keys)")
    p.add_argument("--today", help="date for expiry checks, YYYY-MM-DD")
    p.add_argument("--gp-status", action="store_true", help="read card and application life cycles and privileges over SCP03 (keys from the key store's KMC)")
    p.set_defaults(func=lambda a, *_out: _run(a, open_image))


_T = TypeVar("_T")


def _named(path: str, load: Callable[[str], _T]) -> _T:
    """``load(path)``, its SourceError naming ``path`` (one line)."""
    try:
        return load(path)
    except SourceError as exc:
        text = " ".join(str(exc).split())
        raise SourceError(text if path in text else f"{path}: {text}") from None


def _record_number(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a record number from 1, got {value!r}")
    return int(value)


def _opener(open_image: Callable[[str], CardChannel], path: str) -> Callable[[], CardChannel]:
    return lambda: open_image(path)


def image_items(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> list[CardItem] | None:
    """The cards named by ``--card IMAGE`` or ``--cards DIR`` (mapped to their
    records by :func:`.batch.map_images`, filtered by ``--record``); None when the
    cards come from a reader instead."""
    if a.card:
        idx = a.record or 1
        return [(_opener(open_image, a.card), idx, f"{idx:06d}", a.card)]
    if a.cards:
        mapped = map_images(Path(a.cards))
        if a.record:
            mapped = [m for m in mapped if m[1] == a.record]
        return [(_opener(open_image, str(img)), idx, cid, str(img)) for img, idx, cid in mapped]
    return None


def _prompt(msg: str) -> None:
    input(msg)


def _run(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> int:
    from ..report import write_reports  # lazily: see the module docstring

    # file-system (badge) profiles are certified by .fs
    if is_fs_profile(a.profile):
        return run_fs(a, open_image)
    try:
        profile = _named(a.profile, load_profile)
        keys = _named(a.keys, load_keystore)
        records = _named(a.records, lambda p: list(read_records(p)))
    except (SourceError, OSError) as exc:
        print(f"cardlab test certify: {exc}", file=sys.stderr)
        return USAGE
    terminal = None
    if a.terminal:
        try:
            terminal = load_terminal(a.terminal)
        except Exception as exc:
            print(f"cardlab test certify: terminal profile: {exc}", file=sys.stderr)
            return USAGE
    kw: dict[str, Any] = {"terminal": terminal, "destructive": a.destructive, "gp_status": a.gp_status}
    if a.today:
        kw["today"] = date.fromisoformat(a.today)
    items: list[CardItem]
    images = image_items(a, open_image)
    if images is not None:
        items = images
        if not items:
            print(f"cardlab test certify: no card images found in {a.cards}", file=sys.stderr)
            return USAGE
    else:
        chosen = [r for r in records if a.record is None or r.index == a.record]
        items = list(iter_reader(a.reader, chosen, wait=_prompt))
    reports = certify_batch(items, profile, a.records, keys, **kw)
    paths = write_reports(reports, a.report_dir, echo=True)
    print("reports: " + ", ".join(str(p) for p in paths))
    return 1 if any(r.verdict == FAIL for r in reports) else 0


# -- file-system (badge) profiles ----------------------------------------------------------


def _fs_prompt(msg: str) -> None:
    input(msg.replace(" (" + "*" * 12 + ")", "").replace(" (" + "0" * 12 + ")", ""))


def run_fs(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> int:
    """``cardlab test certify`` for a file-system profile (same options)."""
    from ..report import write_reports  # lazily: see the module docstring

    try:
        doc = load_fs_profile(a.profile)
        records = read_badge_records(a.records)
        keys = load_keystore(a.keys) if a.keys else None
    except (SourceError, FsSourceError, OSError, yaml.YAMLError) as exc:
        print(f"cardlab test certify: {exc}", file=sys.stderr)
        return USAGE
    by_index = {int(r["_index"]): r for r in records}
    images = image_items(a, open_image)
    if images is not None:
        items = images
        if not items:
            print(f"cardlab test certify: no card images found in {a.cards}", file=sys.stderr)
            return USAGE
    else:
        fake = [Record(int(r["_index"]), "0" * 12, "00", (2000, 1), None, "", "", None, None, "") for r in records
                if a.record is None or int(r["_index"]) == a.record]  # fmt: skip
        items = list(iter_reader(a.reader, fake, wait=_fs_prompt))
    reports = []
    for opener, idx, cid, src in items:
        rec = by_index.get(idx)
        if rec is None:
            reports.append(CardReport(cid or f"{idx:06d}", "-", idx, str(doc.get("profile", "")), src, error=f"no record {idx} in the records file"))
            continue
        try:
            ch = opener()
        except Exception as exc:
            reports.append(CardReport(cid or f"{idx:06d}", mask_number(rec.get("badge_number", "")), idx, str(doc.get("profile", "")), src,
                                      error=f"cannot open card: {type(exc).__name__}"))  # fmt: skip
            continue
        reports.append(certify_fs_card(ch, doc, rec, keys=keys, gp_status=getattr(a, "gp_status", False), card_id=cid, source=src))
    paths = write_reports(reports, a.report_dir, echo=True)
    print("reports: " + ", ".join(str(p) for p in paths))
    return 1 if any(r.verdict == FAIL for r in reports) else 0

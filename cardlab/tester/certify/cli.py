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
import functools
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cardlab.exitcodes import INCOMPLETE, OK, USAGE, VERDICT

from ..channel import CardChannel
from ..progress import Progress
from ..sources import KeyStore, Record, SourceError, load_keystore, load_profile, read_records
from ..terminal import load_terminal
from .batch import (CardItem, certify_item, expected_records, map_images, prepared_from, reader_and_atr,
                    records_without_card)
from .fs import FsSourceError, certify_fs_card, is_fs_profile, load_fs_profile, mask_number, read_badge_records
from .match import Matcher
from .readers import reader_rounds
from .results import FAIL, INCOMPLETE as INCOMPLETE_VERDICT, PASS, CardReport


def add_commands(sub: Any, open_image: Callable[[str], CardChannel]) -> None:
    p = sub.add_parser("certify", help="certify personalized cards against the issuer's source data")
    p.add_argument("--profile", required=True, help="issuer profile YAML")
    p.add_argument("--records", required=True, help="cardholder records (CSV / JSON Lines)")
    p.add_argument("--keys", required=True, help="issuer key store (JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cards", metavar="DIR", help="perso batch directory / directory of emulated card images")
    src.add_argument("--card", metavar="IMAGE", help="one emulated card image")
    src.add_argument("--reader", metavar="NAME", action="append",
                     help="PC/SC reader: cards one after another; several --reader: one card in each at once, "
                          "certified in parallel (one worker per reader)")
    p.add_argument("--record", type=_record_number, help="record number (1-based) for --card / --reader")
    p.add_argument("--report-dir", default="reports", help="where the reports go (default reports/)")
    p.add_argument("--force", action="store_true", help="replace a report already in --report-dir (else exit 2)")
    p.add_argument("--details", choices=("failing", "all"), default="failing",
                   help="every result of every card (all), or only of the cards that did not pass (failing, the default: "
                        "a passing card is one row)")
    p.add_argument("--sample", type=_positive, metavar="N", help="certify N cards drawn at random (seeded by --seed; "
                   "the report records the sample)")
    p.add_argument("--seed", type=int, help="seed of --sample (default: a random one, recorded in the report)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    p.add_argument("--destructive", action="store_true",
                   help="also run state-changing checks: a wrong PIN, issuer scripts (PUT DATA, PIN change to the "
                        "record's PIN, application block then unblock); the card ends usable with its PIN, not fresh")
    p.add_argument("--restore-pin-counter", action="store_true",
                   help="when the record's PIN is refused (the one VERIFY a card gets per run) or the card arrives "
                        "with its PIN try counter below the limit, reset the counter by a PIN UNBLOCK issuer script "
                        "(needs the issuer's IMK-AC and IMK-SMI; the PIN itself is not changed) and show it afterwards")
    p.add_argument("--terminal", help="terminal profile YAML (capabilities, CA keys, contactless reader)")
    p.add_argument("--contactless", action="store_true",
                   help="also certify each application's contactless side (CL-* rules) through the card's "
                        "contactless interface, when the card channel offers one (emulated card images do)")
    p.add_argument("--today", help="date for expiry checks, YYYY-MM-DD")
    p.add_argument("--gp-status", action=argparse.BooleanOptionalAction, default=True,
                   help="read card and application life cycles and privileges over SCP03 with the key store's KMC "
                        "(default; --no-gp-status skips them and the cards are then incomplete, exit code 4)")
    p.set_defaults(func=lambda a, *_out: _run(a, open_image))


_T = TypeVar("_T")


def _named(path: str, load: Callable[[str], _T]) -> _T:
    """``load(path)``, its SourceError naming ``path`` (one line)."""
    try:
        return load(path)
    except SourceError as exc:
        text = " ".join(str(exc).split())
        raise SourceError(text if path in text else f"{path}: {text}") from None


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 1, got {value!r}")
    return int(value)


def draw_sample(items: list[_T], size: int | None, seed: int | None) -> tuple[list[_T], dict[str, int] | None]:
    """``size`` of ``items`` drawn with ``random.Random(seed)`` (their order kept) and
    what the report records of it; all of them (and None) without ``size``."""
    if size is None:
        return items, None
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 32)
    chosen = sorted(random.Random(seed).sample(range(len(items)), min(size, len(items))))
    return [items[i] for i in chosen], {"size": len(chosen), "of": len(items), "seed": seed}


def run_provenance(a: argparse.Namespace, keys: KeyStore | None, sample: dict[str, int] | None) -> dict[str, Any]:
    """The report's provenance for this command line: inputs hashed (the batch's
    manifest too when ``--cards`` is a batch directory), key check values, options."""
    from ..report import provenance

    manifest = Path(a.cards) / "manifest.json" if a.cards and (Path(a.cards) / "manifest.json").is_file() else None
    opts: dict[str, Any] = {"destructive": a.destructive, "gp_status": a.gp_status, "today": a.today or date.today().isoformat(),
                            "restore_pin_counter": a.restore_pin_counter, "contactless": a.contactless}
    if a.terminal:
        opts["terminal"] = a.terminal
    if sample is not None:
        opts["sample"] = sample
    if a.reader:
        opts["readers"] = list(a.reader)
    return provenance(inputs={"profile": a.profile, "records": a.records, "key store": a.keys, "manifest": manifest},
                      keys=keys, argv=getattr(a, "command_line", None), options=opts)


def _report_dir_taken(a: argparse.Namespace) -> bool:
    """One line and True when --report-dir holds a report and --force is not given (checked before any card)."""
    from ..report import ReportExists, check_free

    try:
        check_free(a.report_dir, a.force)
    except ReportExists as exc:
        print(f"cardlab test certify: {exc}", file=sys.stderr)
        return True
    return False


def certify_stream(rounds: Iterable[list[CardItem]], certify_one: Callable[[CardItem], CardReport],
                   workers: int = 1) -> Iterator[CardReport]:
    """Each round's cards certified (in parallel with ``workers`` > 1), reports in round order. The
    k-th card of a round is the k-th reader's (:func:`.readers.reader_rounds`), and it goes to that
    reader's own worker thread: a reader is used from one thread only (PC/SC asks for a context
    per thread), and the readers' cards run at once (a shared pool let one worker take two cards
    in turn when the first was quick)."""
    if workers <= 1:
        for items in rounds:
            yield from (certify_one(i) for i in items)
        return
    pools = [ThreadPoolExecutor(1, thread_name_prefix=f"reader{k}") for k in range(workers)]
    try:
        for items in rounds:
            futures = [pools[k % workers].submit(certify_one, item) for k, item in enumerate(items)]
            yield from (f.result() for f in futures)
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def write_stream(a: argparse.Namespace, reports: Iterable[CardReport], total: int, prov: dict[str, Any]) -> int:
    """Write the reports as the cards come, with a progress line on a terminal; the exit code."""
    from ..report import ReportWriter, echo_text

    with ReportWriter(a.report_dir, prov, details=a.details, force=a.force) as w, \
            Progress(total, "certify", enabled=None if not a.quiet else False) as bar:
        for rep in reports:
            w.add(rep)
            bar.advance(failed=rep.verdict != PASS)
    echo_text(w.dir)
    print("reports: " + ", ".join(str(p) for p in w.paths))
    return verdict_exit(w.verdicts, w.n)


def verdict_exit(verdicts: Any, cards: int) -> int:
    """1 when a card failed, else 4 when a card is incomplete (a critical rule could not run), else 0."""
    if verdicts.get(PASS, 0) == cards:
        return OK
    return VERDICT if verdicts.get(FAIL, 0) or set(verdicts) - {PASS, INCOMPLETE_VERDICT} else INCOMPLETE


def _record_number(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a record number from 1, got {value!r}")
    return int(value)


def _opener(open_image: Callable[[str], CardChannel], path: str) -> Callable[[], CardChannel]:
    return functools.partial(open_image, path)  # a third of a closure's bytes, 100,000 times


def image_items(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> list[CardItem] | None:
    """The cards named by ``--card IMAGE`` or ``--cards DIR`` (mapped to their
    records by :func:`.batch.map_images`, filtered by ``--record``); None when the
    cards come from a reader instead."""
    if a.card:  # --record is a claim the card's PAN is compared with (.match); without it the PAN decides
        idx = a.record or 0
        return [(_opener(open_image, a.card), idx, f"{idx or 1:06d}", a.card)]
    if a.cards:
        mapped = map_images(Path(a.cards))
        if a.record:
            mapped = [m for m in mapped if m[1] == a.record]
        # the batch's record numbers are hints only for the records file it was prepared from
        same = prepared_from(Path(a.cards), a.records)
        return [(_opener(open_image, img), idx if same else 0, cid, img) for img, idx, cid in mapped]
    return None


def _prompt(msg: str) -> None:
    input(msg)


def _run(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> int:
    # file-system (badge) profiles are certified by .fs
    if is_fs_profile(a.profile):
        return run_fs(a, open_image)
    if _report_dir_taken(a):
        return USAGE
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
    kw: dict[str, Any] = {"terminal": terminal, "destructive": a.destructive, "gp_status": a.gp_status,
                          "restore_pin_counter": a.restore_pin_counter, "contactless": a.contactless}
    if a.today:
        kw["today"] = date.fromisoformat(a.today)
    images = image_items(a, open_image)
    rounds: list[list[CardItem]] | Iterator[list[CardItem]]
    if images is not None:
        if not images:
            print(f"cardlab test certify: no card images found in {a.cards}", file=sys.stderr)
            return USAGE
        items, sample = draw_sample(images, a.sample, a.seed)
        rounds, total = [[i] for i in items], len(items)
    else:
        chosen, sample = draw_sample([r for r in records if a.record is None or r.index == a.record], a.sample, a.seed)
        rounds, total = reader_rounds(a.reader, chosen, wait=_prompt), len(chosen)

    matcher = Matcher(records)  # every card finds its record by the PAN and PSN it holds

    def one(item: CardItem) -> CardReport:
        return certify_item(matcher, item, profile, keys, **kw)

    def reports() -> Iterator[CardReport]:
        yield from certify_stream(rounds, one, workers=len(a.reader or ()))
        if sample is None and a.record is None and not a.card:  # a whole batch: records without a card
            if a.cards:
                yield from records_without_card(matcher, profile, expected_records(Path(a.cards), a.records))
            else:
                yield from records_without_card(matcher, profile, {r.index for r in chosen})

    return write_stream(a, reports(), total, run_provenance(a, keys, sample))


# -- file-system (badge) profiles ----------------------------------------------------------


def _fs_prompt(msg: str) -> None:
    input(msg.replace(" (" + "*" * 12 + ")", "").replace(" (" + "0" * 12 + ")", ""))


def run_fs(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> int:
    """``cardlab test certify`` for a file-system profile (same options; cards in readers one after another)."""
    if _report_dir_taken(a):
        return USAGE
    try:
        doc = load_fs_profile(a.profile)
        records = read_badge_records(a.records)
        keys = load_keystore(a.keys) if a.keys else None
    except (SourceError, FsSourceError, OSError, yaml.YAMLError) as exc:
        print(f"cardlab test certify: {exc}", file=sys.stderr)
        return USAGE
    by_index = {int(r["_index"]): r for r in records}
    images = image_items(a, open_image)
    rounds: list[list[CardItem]] | Iterator[list[CardItem]]
    if images is not None:
        if not images:
            print(f"cardlab test certify: no card images found in {a.cards}", file=sys.stderr)
            return USAGE
        # a badge holds no PAN to match by: images without a claim pair with the records in name order
        images = [(o, idx or n, cid, src) for n, (o, idx, cid, src) in enumerate(images, 1)]
        items, sample = draw_sample(images, a.sample, a.seed)
        rounds, total = [[i] for i in items], len(items)
    else:
        fake = [Record(int(r["_index"]), "0" * 12, "00", (2000, 1), None, "", "", None, None, "") for r in records
                if a.record is None or int(r["_index"]) == a.record]  # fmt: skip
        chosen, sample = draw_sample(fake, a.sample, a.seed)
        rounds, total = reader_rounds(a.reader, chosen, wait=_fs_prompt), len(chosen)

    def one(item: CardItem) -> CardReport:
        opener, idx, cid, src = item
        rec = by_index.get(idx)
        if rec is None:
            return CardReport(cid or f"{idx:06d}", "-", idx, str(doc.get("profile", "")), src, error=f"no record {idx} in the records file")
        try:
            ch = opener()
        except Exception as exc:
            return CardReport(cid or f"{idx:06d}", mask_number(rec.get("badge_number", "")), idx, str(doc.get("profile", "")), src,
                              error=f"cannot open card: {type(exc).__name__}")  # fmt: skip
        rep = certify_fs_card(ch, doc, rec, keys=keys, gp_status=getattr(a, "gp_status", False), card_id=cid, source=src)
        rep.reader, rep.atr = reader_and_atr(ch)
        return rep

    return write_stream(a, certify_stream(rounds, one, workers=len(a.reader or ())), total, run_provenance(a, keys, sample))

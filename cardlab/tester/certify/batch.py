"""Certification of many cards: :func:`certify_batch` certifies cards one
after another (emulated card images, or cards presented in a reader), each
against its cardholder record; :func:`map_images` maps the card images of a
perso batch directory to their records (the job database, else
``cards.jsonl``, else name order).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..channel import CardChannel
from ..rules import FAIL, Result
from ..sources import IssuerProfile, KeyStore, mask_pan, read_records, redact
from .card import certify_card
from .match import Matcher, read_identity
from .results import CardReport

#: (open the card, record index, card id, where the card is)
CardItem = tuple[Callable[[], CardChannel], int, str, str]


def map_images(directory: Path) -> list[tuple[str, int, str]]:
    """(image, record index, card id) for the emulated cards of a batch directory:
    from the job database (jobs.sqlite: cards.location ↔ records), else images whose
    name holds a card_id of cards.jsonl, else images in name order with record 0 (no claim: the
    card's own PAN and PSN find its record, :mod:`.match`). Paths as strings: a batch can
    hold 100,000 cards, and a ``Path`` keeps its parts too: twice the bytes."""
    db = directory / "jobs.sqlite"
    out: list[tuple[str, int, str]] = []
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT c.location, r.record_index, r.card_id FROM cards c JOIN records r ON r.record_index = c.record_index"
                " WHERE c.kind = 'image' AND c.status = 'personalized' ORDER BY r.record_index"
            ).fetchall()
        finally:
            con.close()
        base = str(directory)
        for loc, idx, cid in rows:
            out.append((loc if os.path.isabs(loc) else os.path.join(base, loc), int(idx), str(cid or f"{idx:06d}")))
        if out:
            return out
    images = sorted(p for p in directory.glob("card-*.json") if not p.name.startswith("."))
    ids: dict[str, int] = {}
    cards = directory / "cards.jsonl"
    if cards.exists():
        for line in cards.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                ids[str(d["card_id"])] = int(d["record_index"])
    if not images:
        images = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".img") and p.name not in ("manifest.json",) and not p.name.startswith("."))
    for n, img in enumerate(images, 1):
        exact = img.stem.removeprefix("card-")  # the perso engine's own name: one lookup, not a scan of every id
        match = [(exact, ids[exact])] if exact in ids else [(cid, idx) for cid, idx in ids.items() if cid in img.stem]
        if match:
            cid, idx = max(match, key=lambda m: len(m[0]))
            out.append((str(img), idx, cid))
        elif not ids:  # name order is no claim about the record: 0, the card's PAN decides (.match)
            out.append((str(img), 0, f"{n:06d}"))
    return out


def certify_batch(
    cards: list[CardItem],
    profile: IssuerProfile,
    records_path: str | os.PathLike[str],
    keys: KeyStore,
    **kw: Any,
) -> list[CardReport]:
    """Certify cards one after another: each item is (open channel, record
    index, card id, source description)."""
    return list(iter_certify(cards, profile, records_path, keys, **kw))


def iter_certify(
    cards: Iterable[CardItem],
    profile: IssuerProfile,
    records_path: str | os.PathLike[str],
    keys: KeyStore,
    *,
    matcher: Matcher | None = None,
    whole_batch: bool = False,
    **kw: Any,
) -> Iterator[CardReport]:
    """:func:`certify_batch` card by card, each report as soon as its card is done
    (the reports are written as they go); each names its reader and ATR. Every card is matched
    to its record by the PAN and PSN it holds (:mod:`.match`; the item's record index is only a
    hint to compare with). ``whole_batch``: the records no card matched follow as findings."""
    m = matcher if matcher is not None else Matcher(list(read_records(records_path)))
    with _run_lived():
        for item in cards:
            yield certify_item(m, item, profile, keys, **kw)
    if whole_batch:
        yield from records_without_card(m, profile)


@contextlib.contextmanager
def _run_lived() -> Iterator[None]:
    """What is alive now (the records and their index, the profile, the keys) lives as long as
    the run: kept out of the cyclic collector's sight until the run ends (:func:`gc.freeze`),
    so that its collections do not walk every record again while cards are certified."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def certify_item(m: Matcher, item: CardItem, profile: IssuerProfile, keys: KeyStore, **kw: Any) -> CardReport:
    """One card: open it, read its PAN and PSN, find its record, certify it against that record."""
    opener, hint, cid, src = item
    want_contactless = bool(kw.pop("contactless", False))
    try:
        ch = opener()
    except Exception as exc:
        return CardReport(cid, "-", hint, profile.name, src, error=redact(f"cannot open card: {exc}"))
    try:
        key, why = read_identity(ch, profile)
        rec, found = m.match(key, why, cid, hint if hint > 0 else None)
        if rec is None:  # no record to certify against: the match findings say why, nothing else
            rep = CardReport(cid, mask_pan(key[0]) if key else "-", hint, profile.name, src, results=found,
                             started=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
        else:
            # the same card through its contactless interface, when its channel offers one (issue 16)
            view = getattr(ch, "contactless_channel", None) if want_contactless else None
            cl = view() if callable(view) else None
            rep = certify_card(ch, profile, rec, keys, card_id=cid, source=src, contactless=cl, **kw)
            rep.results[:0] = found
        rep.reader, rep.atr = reader_and_atr(ch)
    finally:
        close = getattr(ch, "close", None)
        if callable(close):
            close()
    return rep


def prepared_from(directory: Path, records_path: str | os.PathLike[str]) -> bool:
    """Whether ``records_path`` is the file the batch in ``directory`` was prepared from (its
    SHA-256 in the batch's manifest; true for a directory without a manifest): the batch's record
    numbers are positions in that file, and mean nothing in another."""
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        return True
    try:
        want = json.loads(manifest.read_text())["inputs"]["records"]["sha256"]
        return bool(want == hashlib.sha256(Path(records_path).read_bytes()).hexdigest())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def expected_records(directory: Path, records_path: str | os.PathLike[str]) -> set[int] | None:
    """The records a batch directory says it holds cards for: the personalized cards of its job
    database, else the record indices of its ``cards.jsonl``; None when it says nothing, or when
    ``records_path`` is another file than the batch's (:func:`prepared_from`)."""
    if not prepared_from(directory, records_path):
        return None
    db = directory / "jobs.sqlite"
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT record_index FROM cards WHERE kind = 'image' AND status = 'personalized'").fetchall()
        finally:
            con.close()
        if rows:
            return {int(i) for (i,) in rows}
    cards = directory / "cards.jsonl"
    if cards.exists():
        return {int(json.loads(line)["record_index"]) for line in cards.read_text().splitlines() if line.strip()}
    return None


def records_without_card(m: Matcher, profile: IssuerProfile, expected: set[int] | None = None) -> Iterator[CardReport]:
    """MATCH-003: one finding per record that no card of the run holds — of ``expected`` (the
    batch's own list), else of the records on the profile's BINs."""
    for rec in m.without_card():
        if expected is not None and rec.index not in expected:
            continue
        if not profile.pan_on_bin(rec.pan):  # another profile's record (a records file may serve several)
            continue
        yield CardReport(f"record-{rec.index:06d}", rec.masked, rec.index, profile.name, "records file",
                         results=[Result("MATCH-003", FAIL, f"record {rec.index} ({rec.masked}, PSN {rec.psn}) has no "
                                         "card among the cards certified", "a card", "none")])  # fmt: skip


def reader_and_atr(ch: CardChannel) -> tuple[str, str]:
    """The reader's name as PC/SC lists it and the ATR in hex ("" when the channel does not say)."""
    conn = getattr(ch, "connection", None)
    reader = str(getattr(conn, "getReader", lambda: "")() or "") if conn is not None else ""
    try:
        atr = ch.atr().hex().upper()
    except Exception:
        atr = ""
    return reader, atr

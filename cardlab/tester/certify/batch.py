"""Certification of many cards: :func:`certify_batch` certifies cards one
after another (emulated card images, or cards presented in a reader), each
against its cardholder record; :func:`map_images` maps the card images of a
perso batch directory to their records (the job database, else
``cards.jsonl``, else name order).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..channel import CardChannel
from ..sources import IssuerProfile, KeyStore, read_records, redact
from .card import certify_card
from .results import CardReport

#: (open the card, record index, card id, where the card is)
CardItem = tuple[Callable[[], CardChannel], int, str, str]


def map_images(directory: Path) -> list[tuple[Path, int, str]]:
    """(image, record index, card id) for the emulated cards of a batch directory:
    from the job database (jobs.sqlite: cards.location ↔ records), else images whose
    name holds a card_id of cards.jsonl, else images in name order ↔ records 1, 2, …"""
    images = sorted(p for p in directory.glob("card-*.json") if not p.name.startswith("."))
    db = directory / "jobs.sqlite"
    out: list[tuple[Path, int, str]] = []
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT c.location, r.record_index, r.card_id FROM cards c JOIN records r ON r.record_index = c.record_index"
                " WHERE c.kind = 'image' AND c.status = 'personalized' ORDER BY r.record_index"
            ).fetchall()
        finally:
            con.close()
        for loc, idx, cid in rows:
            p = Path(loc)
            out.append((p if p.is_absolute() else directory / p, int(idx), str(cid or f"{idx:06d}")))
        if out:
            return out
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
        match = [(cid, idx) for cid, idx in ids.items() if cid in img.stem]
        if match:
            cid, idx = max(match, key=lambda m: len(m[0]))
            out.append((img, idx, cid))
        elif not ids:
            out.append((img, n, f"{n:06d}"))
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
    **kw: Any,
) -> Iterator[CardReport]:
    """:func:`certify_batch` card by card, each report as soon as its card is done
    (the reports are written as they go); each names its reader and ATR."""
    recs = {r.index: r for r in read_records(records_path)}
    for opener, idx, cid, src in cards:
        rec = recs.get(idx)
        if rec is None:
            rep = CardReport(cid, "-", idx, profile.name, src, error=f"no record {idx} in the records file")
        else:
            try:
                ch = opener()
            except Exception as exc:
                rep = CardReport(cid, rec.masked, idx, profile.name, src, error=redact(f"cannot open card: {exc}"))
            else:
                rep = certify_card(ch, profile, rec, keys, card_id=cid, source=src, **kw)
                rep.reader, rep.atr = reader_and_atr(ch)
                close = getattr(ch, "close", None)
                if callable(close):
                    close()
        yield rep


def reader_and_atr(ch: CardChannel) -> tuple[str, str]:
    """The reader's name as PC/SC lists it and the ATR in hex ("" when the channel does not say)."""
    conn = getattr(ch, "connection", None)
    reader = str(getattr(conn, "getReader", lambda: "")() or "") if conn is not None else ""
    try:
        atr = ch.atr().hex().upper()
    except Exception:
        atr = ""
    return reader, atr

"""Cards in a PC/SC reader (cardlab.tester.channel.PyscardChannel): one
after another, one per cardholder record, for :func:`.batch.certify_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..channel import CardChannel, PyscardChannel
from ..sources import Record
from .batch import CardItem


def iter_reader(reader: str, records: list[Record], wait: Callable[[str], None] | None = None) -> Iterator[CardItem]:
    """The cards presented one after another in a PC/SC reader, one per record;
    ``wait`` asks for each card (the command line waits for Enter)."""
    for rec in records:
        if wait is not None:
            wait(f"present the card for record {rec.index} ({rec.masked}) and press Enter")
        yield (lambda: PyscardChannel(reader)), rec.index, f"{rec.index:06d}", reader


def reader_rounds(readers: list[str], records: list[Record],
                  wait: Callable[[str], None] | None = None) -> Iterator[list[CardItem]]:
    """Several readers at once: each round one card per reader (the next records
    in turn), asked for in one prompt; the caller certifies a round's cards in
    parallel, one worker per reader."""
    for start in range(0, len(records), len(readers)):
        batch = list(zip(readers, records[start:start + len(readers)]))
        if wait is not None:
            wait("present " + ", ".join(f"the card for record {rec.index} ({rec.masked}) in {r}" for r, rec in batch)
                 + " and press Enter")
        yield [(_open(r), rec.index, f"{rec.index:06d}", r) for r, rec in batch]


def _open(reader: str) -> Callable[[], CardChannel]:
    return lambda: PyscardChannel(reader)

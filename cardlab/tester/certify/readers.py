"""Cards in a PC/SC reader (cardlab.tester.channel.PyscardChannel): one
after another, one per cardholder record, for :func:`.batch.certify_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..channel import PyscardChannel
from ..sources import Record
from .batch import CardItem


def iter_reader(reader: str, records: list[Record], wait: Callable[[str], None] | None = None) -> Iterator[CardItem]:
    """The cards presented one after another in a PC/SC reader, one per record;
    ``wait`` asks for each card (the command line waits for Enter)."""
    for rec in records:
        if wait is not None:
            wait(f"present the card for record {rec.index} ({rec.masked}) and press Enter")
        yield (lambda: PyscardChannel(reader)), rec.index, f"{rec.index:06d}", reader

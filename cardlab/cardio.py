"""Glue between the emulator and the tester (which must not import it).

:func:`open_image_channel` loads a card image, puts it behind cardlab's pyscard
reader plug-in and opens it with the tester's PC/SC channel — the same code
path as a card in a physical reader. Every state change is saved to the image
before the answer leaves the card.
"""

from __future__ import annotations

from pathlib import Path

from cardlab.emulator import Card
from cardlab.emulator.transports import pyscard_reader
from cardlab.tester.channel import PyscardChannel


class ImageChannel(PyscardChannel):
    """The tester's PC/SC channel to an image's card; closing it also takes the card out of the
    plug-in's reader, so a batch holds only the cards in flight (memory flat over the batch)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reader_name = name

    def close(self) -> None:
        try:
            super().close()
        finally:
            pyscard_reader.remove(self.reader_name)


def open_image_channel(path: str) -> PyscardChannel:
    card = Card.load(path)
    card.on_commit = lambda c: c.save(path)
    name = f"cardlab image {Path(path).name}"
    pyscard_reader.insert(card, name=name)
    try:
        return ImageChannel(name)
    except BaseException:
        pyscard_reader.remove(name)
        raise

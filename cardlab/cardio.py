"""Glue between the emulator and the tester (which must not import it).

:func:`open_image_channel` loads a card image, puts it behind cardlab's pyscard
reader plug-in and opens it with the tester's PC/SC channel — the same code
path as a card in a physical reader. Every state change is journaled next to the
image (:mod:`cardlab.emulator.journal`, synced) before the answer leaves the card;
closing the channel folds the journal into the image.
"""

from __future__ import annotations

from pathlib import Path

from cardlab.emulator import Card
from cardlab.emulator.journal import ImageJournal
from cardlab.emulator.transports import pyscard_reader
from cardlab.tester.channel import PyscardChannel


class ImageChannel(PyscardChannel):
    """The tester's PC/SC channel to an emulated card kept in an image file. Closing it folds the
    journal into the image and takes the card out of the plug-in's reader, so a batch holds only
    the cards in flight (memory flat over the batch)."""

    def __init__(self, reader_name: str, journal: ImageJournal) -> None:
        super().__init__(reader_name)
        self.reader_name = reader_name
        self.journal = journal

    def close(self) -> None:
        try:
            super().close()
        finally:
            try:
                self.journal.close()  # the image file alone holds the card again
            finally:
                pyscard_reader.remove(self.reader_name)


def open_image_channel(path: str) -> PyscardChannel:
    card = Card.load(path)
    journal = ImageJournal.attach(card, path)  # each change journaled, synced, before the answer leaves
    name = f"cardlab image {Path(path).name}"
    pyscard_reader.insert(card, name=name)
    try:
        return ImageChannel(name, journal)
    except BaseException:
        pyscard_reader.remove(name)
        journal.close()
        raise

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
        self._contactless: PyscardChannel | None = None

    def contactless_channel(self) -> PyscardChannel:
        """The same card through a contactless reader (issue 16): one card, one state, one ATC.
        Used after this channel (or before), the card is powered again on the other interface,
        as a card moved from a reader's slot to its field is."""
        if self._contactless is None:
            name = f"{self.reader_name} (contactless)"
            pyscard_reader.insert(self.journal.card, name=name, interface="contactless")
            try:
                self._contactless = PyscardChannel(name)
            except BaseException:
                pyscard_reader.remove(name)
                raise
        return self._contactless

    def close(self) -> None:
        try:
            super().close()
            if self._contactless is not None:
                try:
                    self._contactless.close()
                finally:
                    pyscard_reader.remove(f"{self.reader_name} (contactless)")
        finally:
            try:
                self.journal.close()  # synced: the image (snapshot and journal) holds the card
            finally:
                pyscard_reader.remove(self.reader_name)


def open_image_channel(path: str, interface: str = "contact") -> PyscardChannel:
    """A card image behind the pyscard plug-in: a contact reader, or a contactless one."""
    card = Card.load(path, interface=interface)
    journal = ImageJournal.attach(card, path)  # each change journaled, synced, before the answer leaves
    name = f"cardlab image {Path(path).name}" + (" (contactless)" if interface == "contactless" else "")
    pyscard_reader.insert(card, name=name, interface=interface)
    try:
        return ImageChannel(name, journal)
    except BaseException:
        pyscard_reader.remove(name)
        journal.close()
        raise

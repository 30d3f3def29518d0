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


class _Interface:
    """One interface of an emulated card in the pyscard plug-in: using it after the other one
    power-cycles the card, as a card taken from a reader's field into its slot is (issue 16: one
    card, one state, two interfaces)."""

    def __init__(self, card: Card, name: str) -> None:
        self.card, self.name = card, name

    def _here(self) -> None:
        if self.card.interface != self.name:
            self.card.interface = self.name
            self.card.power_on()

    def power_on(self) -> bytes:
        self.card.interface = self.name
        return self.card.power_on()

    def transmit(self, command: bytes) -> bytes:
        self._here()
        return self.card.transmit(command)

    def select_protocol(self, protocol: int) -> None:
        self._here()
        self.card.select_protocol(protocol)

    def __getattr__(self, name: str) -> object:
        return getattr(self.card, name)


class ImageChannel(PyscardChannel):
    """The tester's PC/SC channel to an emulated card kept in an image file. Closing it folds the
    journal into the image and takes the card out of the plug-in's reader, so a batch holds only
    the cards in flight (memory flat over the batch)."""

    def __init__(self, reader_name: str, journal: ImageJournal, card: Card | None = None) -> None:
        super().__init__(reader_name)
        self.reader_name = reader_name
        self.journal = journal
        self.card = card
        self._other: PyscardChannel | None = None

    def contactless_channel(self) -> PyscardChannel:
        """The same card through its contactless interface (a second emulated reader)."""
        if self.card is None:
            raise ValueError("this channel has no card to reach contactless")
        if self._other is None:
            name = f"{self.reader_name} (contactless)"
            pyscard_reader.insert(_Interface(self.card, "contactless"), name=name)  # type: ignore[arg-type]
            self._other = PyscardChannel(name)
        return self._other

    def close(self) -> None:
        if self._other is not None:
            self._other.close()
            pyscard_reader.remove(f"{self.reader_name} (contactless)")
        try:
            super().close()
        finally:
            try:
                self.journal.close()  # the image file alone holds the card again
            finally:
                pyscard_reader.remove(self.reader_name)


def open_image_channel(path: str, interface: str = "contact") -> PyscardChannel:
    """The card image behind the plug-in's reader, reached through ``interface`` (contact or
    contactless); :meth:`ImageChannel.contactless_channel` reaches the same card contactless."""
    card = Card.load(path)
    journal = ImageJournal.attach(card, path)  # each change journaled, synced, before the answer leaves
    name = f"cardlab image {Path(path).name}" + (" (contactless)" if interface == "contactless" else "")
    pyscard_reader.insert(_Interface(card, interface), name=name)  # type: ignore[arg-type]
    try:
        return ImageChannel(name, journal, card)
    except BaseException:
        pyscard_reader.remove(name)
        journal.close()
        raise

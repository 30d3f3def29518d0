"""Glue between the emulator and the tester (which must not import it).

:func:`open_image_channel` loads a card image, puts it behind cardlab's pyscard
reader plug-in and opens it with the tester's PC/SC channel — the same code
path as a card in a physical reader. Every state change is saved to the image
before the answer leaves the card.
"""

from __future__ import annotations

from pathlib import Path

from cardlab.emulator import Card
from cardlab.emulator.journal import ImageJournal
from cardlab.emulator.transports import pyscard_reader
from cardlab.tester.channel import PyscardChannel


def open_image_channel(path: str) -> PyscardChannel:
    card = Card.load(path)
    ImageJournal.attach(card, path)  # each change journaled, synced, before the answer leaves
    name = f"cardlab image {Path(path).name}"
    pyscard_reader.insert(card, name=name)
    return PyscardChannel(name)

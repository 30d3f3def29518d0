"""Card sources: where a station gets its next blank card.

* :class:`ImageSource` — emulated cards, the images of a stock directory
  (:mod:`cardlab.personalizer.stock`), each claimed in the job database and
  loaded into a private emulated reader;
* :class:`ReaderSource` — the card in a PC/SC reader, swapped by an operator
  or a feeder between two cards.

Either way the station gets a :class:`CardInHand` whose channel is a
:class:`~cardlab.personalizer.engine.channel.PcscChannel`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from smartcard.Exceptions import SmartcardException

from cardlab.personalizer.engine.channel import PcscChannel, card_present
from cardlab.personalizer.engine.errors import EngineError
from cardlab.personalizer.files import remove_stale_temps
from cardlab.personalizer.stock import CLAIMS, list_images, note_record, reserve

if TYPE_CHECKING:
    from cardlab.emulator import Card
    from cardlab.personalizer.jobdb import JobDb


@dataclass
class CardInHand:
    """The card a station is working on."""

    kind: str  # "image" | "reader"
    location: str  # image path or reader name
    channel: PcscChannel
    card_row: int | None = None
    #: called once the card is finished (saved / ejected)
    finish: Callable[[], None] = lambda: None
    #: called after the result is recorded: a reader station waits here for the card's removal
    eject: Callable[[], None] = lambda: None
    #: called with (record index, card id) once a record is claimed for the card
    note: Callable[[int, str], None] = lambda record, card_id: None


class CardSource(Protocol):
    kind: str

    def next_card(self, db: JobDb, station: str) -> CardInHand | None:
        """The next blank card, or ``None`` when there is none (stock used up,
        nothing pending, the operator stopped)."""

    def open(self, location: str) -> CardInHand | None:
        """The card at ``location`` again (reconciliation); ``None`` if gone."""

    def reaches(self, location: str, station: str) -> bool:
        """Whether the card ``station`` left at ``location`` is one this source can open (a shared
        job store: the attempts of a dead station on another machine are left to that machine)."""

    def close(self) -> None: ...


class ImageSource:
    """Emulated cards: card images in a stock directory, each loaded into a
    private emulated reader and used through :class:`PcscChannel`."""

    kind = "image"

    def __init__(self, directory: str | Path, *, reader_name: str | None = None, owner: str = "") -> None:
        # absolute, so that the job database names each card image the same
        # whatever directory a later command (resume, certify) runs from
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise EngineError(f"{self.directory}: no such card stock directory")
        remove_stale_temps(self.directory)  # a killed run's half-saved images (0600, but secrets all the same)
        if (self.directory / CLAIMS).is_dir():
            remove_stale_temps(self.directory / CLAIMS)
        #: the batch this source claims cards for, in the stock's own claim markers (stock.reserve)
        self.owner = owner
        self.reader_name = reader_name or f"cardlab perso station {os.getpid()}"
        # the stock listing, read once and walked forward: an image passed over is used for good
        # (card rows are never given back while records are pending), so each claim looks only at
        # the images after the last one; the directory is read again when the walk reaches its
        # end (cards added to the stock during a run are found then)
        self._images: list[str] = []
        self._next = 0

    def _insert(self, path: Path) -> CardInHand:
        from cardlab.emulator import Card
        from cardlab.emulator.journal import ImageJournal
        from cardlab.emulator.transports import pyscard_reader

        card = Card.load(path)
        # each APDU that changed the card appends what changed to the image's journal, synced
        # before the response (a power cut loses no counter, never half a command)
        journal = ImageJournal.attach(card, path)
        pyscard_reader.insert(card, self.reader_name)
        channel = PcscChannel(self.reader_name)

        def finish() -> None:
            channel.close()
            journal.close()  # synced: the personalized card is whole on disk before the job DB says so
            pyscard_reader.remove(self.reader_name)

        return CardInHand("image", str(path), channel, finish=finish)

    def next_card(self, db: JobDb, station: str) -> CardInHand | None:
        if not db.pending_left():
            return None
        # the images after the last claim, without copying the rest of the listing (a slice per card
        # made a run quadratic: 3 ms a card half way through a stock of 1,000,000)
        images = self._images
        claimed = db.claim_image(station, (images[i] for i in range(self._next, len(images))), self._reserve)
        if claimed is None:
            self._images, self._next = [str(p) for p in list_images(self.directory)], 0
            claimed = db.claim_image(station, self._images, self._reserve)
            if claimed is None:
                return None
        row, path = claimed
        self._next = self._images.index(path, self._next) + 1
        try:
            hand = self._insert(Path(path))
        except Exception as exc:  # noqa: BLE001 - a broken image is one unusable card
            db.release_card(row, "unusable", f"image cannot be loaded: {type(exc).__name__}")
            return self.next_card(db, station)
        hand.card_row = row
        if self.owner:
            hand.note = lambda record, card_id: note_record(path, self.owner, record, card_id)
        return hand

    def _reserve(self, path: str) -> bool:
        return not self.owner or reserve(path, self.owner)

    def open(self, location: str) -> CardInHand | None:
        path = Path(location)
        if not path.exists():
            return None
        return self._insert(path)

    def reaches(self, location: str, station: str) -> bool:
        path = Path(location)
        return path.parent == self.directory and path.exists()

    def close(self) -> None:
        from cardlab.emulator.transports import pyscard_reader

        with contextlib.suppress(Exception):
            pyscard_reader.remove(self.reader_name)


class ReaderSource:
    """A real (or any PC/SC) reader: the next card is the card in the reader.

    The station waits for a card to be inserted (polling every
    ``poll`` seconds, up to ``timeout`` seconds per card, ``None`` = forever),
    and after each card, when ``wait_removal`` is set, for its removal — so
    the operator (or a card feeder) swaps cards between two runs of the script.
    """

    kind = "reader"

    def __init__(
        self,
        reader: str,
        *,
        timeout: float | None = None,
        poll: float = 0.25,
        wait_removal: bool = True,
        say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    ) -> None:
        self.reader = reader
        self.timeout = timeout
        self.poll = poll
        self.wait_removal = wait_removal
        self.say = say

    def _wait(self, present: bool) -> bool:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        told = False
        while card_present(self.reader) != present:
            if not told:
                self.say(f"{'insert a card into' if present else 'remove the card from'} reader {self.reader!r}")
                told = True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(self.poll)
        return True

    def next_card(self, db: JobDb, station: str) -> CardInHand | None:
        while True:
            if not db.pending_left() or not self._wait(True):
                return None
            try:
                channel = PcscChannel(self.reader)
                break
            except SmartcardException as exc:  # NoCardException, CardConnectionException: the card went away
                # between detection and connect (pulled, a reader reset): nothing was written, wait again
                self.say(f"reader {self.reader!r}: the card went away before it could be used "
                         f"({type(exc).__name__}); insert it again")  # fmt: skip
                self._wait(False)

        def eject() -> None:
            if self.wait_removal:
                self._wait(False)

        return CardInHand("reader", self.reader, channel, finish=channel.close, eject=eject)

    def open(self, location: str) -> CardInHand | None:
        if not card_present(location):
            return None
        return CardInHand("reader", location, PcscChannel(location))

    def reaches(self, location: str, station: str) -> bool:
        # reader names repeat between machines: the station must have run on this one
        # (station names begin with their host, jobdb.station_name)
        host = station.split(":", 1)[0] if station.count(":") >= 2 else socket.gethostname()
        return location == self.reader and host == socket.gethostname()

    def close(self) -> None:
        pass

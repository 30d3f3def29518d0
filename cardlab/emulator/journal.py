"""A card image's journal: durability paid in proportion to what changed.

A card image (:mod:`cardlab.emulator.image`) is a snapshot of the whole state. Rewriting it
after every state-changing APDU costs the whole card each time; instead :class:`ImageJournal`
appends, after each command that changed the card and before its response leaves, one entry
holding only what that command changed, and syncs the journal file alone (one ``fdatasync``
per command). Every ``compact_every`` entries the snapshot is rewritten atomically and durably
and the journal removed. Closing the card syncs the journal and leaves it: an image is its
snapshot ``IMAGE.json`` and, next to it, ``IMAGE.json.journal`` (copy both:
:func:`cardlab.emulator.image.copy_image`); the next load replays it and the next
:meth:`ImageJournal.attach` appends to it, so a card used for a few commands at a time (a perso
station, a certification, a terminal) never pays for rewriting the whole card.

Entries that only build what personalization writes — a new application's registration, and the
state and registry entry of an instance not yet personalized (its ``personalized`` flag still
false) — are *lazy*:
kept in memory and written, with one ``write``, just before the next synced entry, or when the
card is closed (or dropped): neither written nor synced on their own. A power cut, or a kill of
the process, may lose them (the card is then as before those commands: the perso engine
reconciles it, and closing the card writes and syncs them before the job database says *done*);
everything else — the SCP03 sequence
counter, life cycles, keys, and every change to a personalized application (ATC, PIN try counter,
offline counters, PIN, log) — is synced before its response, and syncs the lazy entries before it.
A personalization then pays three syncs (two sequence counters and the life cycle) instead of
one per command. The commands that change only an application not yet personalized (its STORE
DATA) are not even dumped one by one: the card leaves them to the next command that changes
anything else, or to :meth:`ImageJournal.close`, whose entry holds them all (:meth:`ImageJournal.defers`).

The guarantees of ARCHITECTURE.md ("a power cut can never give the card a second try") hold:

* an entry is one line, ``CRC32 (8 hex) SP JSON LF``, written with one ``write`` and synced
  before the response; loading replays every whole entry, so a counter (PIN try counter, ATC,
  SCP03 sequence counter) acknowledged by a response is never lost nor repeated;
* a torn last entry (no line feed, or a CRC that does not match, at the end of the file) was
  never acknowledged and is ignored whole: a command is applied entirely or not at all;
  a bad entry followed by good ones is damage, not a torn write, and loading refuses it;
* the journal's header names the SHA-256 of the snapshot it applies to: after a compaction
  (snapshot replaced, then journal removed) a crash between the two leaves a journal that
  names another snapshot, and it is ignored (its changes are in the new snapshot).

Images without a journal load as before; the snapshot's format is unchanged.

An entry is a list of operations on the *journal view* of the state (:func:`.journalfile.view`):
``[path, value]`` sets, ``[path]`` deletes; paths are lists of JSON object keys. Objects are
compared key by key, so an ATC increment journals one small value, not the application.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .image import to_json
from .journalfile import (
    FORMAT, VERSION, Op, diff, frame, journal_path, lazy_entry, snapshot_id, whole_entries,
)
from .state import CardState

if TYPE_CHECKING:
    from .applet import Applet
    from .card import Card

#: entries between two snapshots of a long-lived card (a terminal's card, vpcd)
COMPACT_EVERY = 256


def _card_part(state: CardState) -> dict[str, Any]:
    """The card-level part of the view, without the derived key check values (cheap:
    a few keys and registry entries)."""
    return to_json(state, kcvs=False, instances=False)


def _registry(state: CardState) -> dict[str, Any]:
    return {
        r.aid.hex().upper(): {
            "aid": r.aid.hex().upper(),
            "load_file": r.load_file_aid.hex().upper(),
            "module": r.module_aid.hex().upper(),
            "privileges": r.privileges.hex().upper(),
            "lifecycle": r.lifecycle,
            "install_params": r.install_params.hex().upper(),
        }
        for r in state.instances
    }


def _shadow_of(state: CardState) -> dict[str, Any]:
    """The journal view of ``state`` as the card holds it (the card was loaded from, or just
    saved to, its image: this is what the snapshot and journal on disk hold)."""
    return {
        "card": _card_part(state),
        "registry": _registry(state),
        "states": {rec.aid.hex().upper(): rec.state for rec in state.instances},
        "fs": state.filesystem,
    }


# -- the writer ----------------------------------------------------------------------------


@dataclass
class ImageJournal:
    """Keeps ``card``'s image at ``path`` up to date: attach with :meth:`attach`, then every
    command that changed the card appends one synced entry; :meth:`close` writes the snapshot."""

    card: Card
    path: Path
    durable: bool = True
    compact_every: int = COMPACT_EVERY
    entries: int = 0
    _fd: int | None = None
    _finalizer: weakref.finalize | None = None  # type: ignore[type-arg]
    _shadow: dict[str, Any] = field(default_factory=dict)
    _image_id: str = ""
    _dir_synced: bool = False
    #: lazy entries written since the last sync
    _unsynced: bool = False
    #: lazy entries not yet written (framed); written before the next synced entry, or at close
    _pending: list[bytes] = field(default_factory=list)
    #: commands whose changes the card has not dumped yet (:meth:`defers`)
    _deferred: bool = False

    @classmethod
    def attach(
        cls, card: Card, path: str | os.PathLike[str], *, durable: bool = True, compact_every: int = COMPACT_EVERY
    ) -> ImageJournal:
        """Journal ``card`` (loaded from, or just saved to, ``path``) from now on. A journal left
        by an earlier process was replayed when the card was loaded: it is folded into the
        snapshot first, so that new entries never follow a torn one."""
        j = cls(card, Path(path), durable=durable, compact_every=compact_every)
        with contextlib.suppress(FileNotFoundError):
            if j.path.stat().st_mode & 0o077:
                # an image holds keys: a plain copy (0644) made private, as a snapshot save would
                os.chmod(j.path, 0o600)
        card.on_commit = j.commit
        card.journal = j
        read, card.image_read = card.image_read, None
        if read is not None and read.still(j.path):
            # loaded from these very files just now: what the load read decides, not a second read
            if read.journal is None:
                j._start(read.image_id)
            elif read.whole is None or read.whole >= j.compact_every or not j._resume(read.image_id, read.whole):
                j.compact()
        elif not j.path.exists():
            j.compact()
        elif journal_path(j.path).exists():
            if not j._resume():
                j.compact()
        else:
            j._start()
        return j

    def _resume(self, image_id: str = "", entries: int | None = None) -> bool:
        """Go on appending to the journal an earlier process left whole (every line a whole entry
        for the current snapshot, under :attr:`compact_every` entries): the card was loaded from
        this snapshot and journal, so the state is what they hold. ``False`` when it must be
        folded into the snapshot first (a torn or damaged tail, another snapshot's journal, full).
        ``image_id`` and ``entries``: what the card's load read of them (else they are read)."""
        if entries is None:
            snap = self.path.read_bytes()
            try:
                entries = whole_entries(journal_path(self.path).read_bytes(), snap)
            except FileNotFoundError:
                return False
            if entries is None:
                return False
            image_id = snapshot_id(snap)
        if entries >= self.compact_every:
            return False
        self._image_id = image_id
        self._shadow = _shadow_of(self.card.state)
        try:
            fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return False
        self._fd = fd
        self._finalizer = weakref.finalize(self, _write_and_close, fd, self._pending)
        self.entries = entries
        return True

    def _start(self, image_id: str = "") -> None:
        """Remember the state as saved in the snapshot (the base of the next entries; the
        instances' states and the file system are compared with it at the first commit).
        ``image_id``: the snapshot's, as the card's load read it (else it is read)."""
        self._image_id = image_id or snapshot_id(self.path.read_bytes())
        self._shadow = _shadow_of(self.card.state)
        self.entries = 0
        self._deferred = False  # a snapshot was just written from the card: it holds them

    def commit(self, card: Card) -> None:
        """``Card.on_commit``: journal what the command changed, synced, before the response."""
        self._deferred = False  # the card dumped every changed application before it called
        state = card.state
        ops: list[Op] = []
        shadow = self._shadow
        new_card = _card_part(state)
        diff(shadow["card"], new_card, ["card"], ops)
        new_registry = _registry(state)
        diff(shadow["registry"], new_registry, ["registry"], ops)
        states = shadow["states"]
        new_states = {}
        for rec in state.instances:
            aid = rec.aid.hex().upper()
            new_states[aid] = rec.state
            old = states.get(aid)
            if old is None or not isinstance(rec.state, dict) or not isinstance(old, dict):
                if old != rec.state:
                    ops.append([["states", aid], rec.state])
            elif old is not rec.state:
                diff(old, rec.state, ["states", aid], ops)
        for aid in states:
            if aid not in new_states:
                ops.append([["states", aid]])
        if shadow["fs"] is not state.filesystem:
            diff(shadow["fs"], state.filesystem, ["fs"], ops)
        if not ops:
            return
        if self.entries >= self.compact_every:
            self.compact()
            return
        self._append(ops, lazy=self._lazy(ops))
        self._shadow = {"card": new_card, "registry": new_registry, "states": new_states, "fs": state.filesystem}

    def defers(self, applets: list[Applet]) -> bool:
        """Whether a command that changed only ``applets`` may be dumped and journaled later,
        with the next command that changes anything else or at :meth:`close`: true when each is
        an instance not yet personalized (its journaled state says ``personalized: false``), so
        that what it changed would be a lazy entry anyway (:meth:`_lazy`). Dumping and comparing
        a growing application after every STORE DATA cost a personalization most of its journal
        time; the entry that finally holds the changes keeps them in command order with the rest."""
        if self.card.on_commit != self.commit:
            return False
        states = self._shadow["states"]
        for applet in applets:
            old = states.get(applet.record.aid.hex().upper())
            if not (isinstance(old, dict) and old.get("personalized") is False):
                return False
        self._deferred = True
        return True

    def _lazy(self, ops: list[Op]) -> bool:
        """Whether every operation only builds what personalization writes: a new registration,
        or the state of an instance that is new or not yet personalized (see the module doc)."""
        registry, states = self._shadow["registry"], self._shadow["states"]
        for op in ops:
            path = op[0]
            if len(op) != 2 or path[0] not in ("registry", "states") or len(path) < 2:
                return False
            if path[1] not in registry:
                continue  # INSTALL: a new registration and its first state
            old = states.get(path[1])
            if isinstance(old, dict) and old.get("personalized") is False:
                continue  # the instance's data, or its own INSTALLED → PERSONALIZED, while perso builds it
            return False
        return True

    def _append(self, ops: list[Op], *, lazy: bool = False) -> None:
        """One entry, synced before the response leaves, after the lazy entries held until now
        (a lazy one: held, written and synced with the next synced entry, or at close)."""
        entry = frame(lazy_entry(ops) if lazy else ops)
        fd = self._fd
        if fd is None:
            # a new journal for the current snapshot (the header names it)
            fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)  # before any byte: O_CREAT keeps the mode of a journal a killed run left
            self._fd = fd
            # closed with the journal (its held entries written), also when a caller drops the
            # card without close()
            self._pending.clear()
            self._finalizer = weakref.finalize(self, _write_and_close, fd, self._pending)
            entry = frame({"format": FORMAT, "version": VERSION, "image": self._image_id}) + entry
            if lazy:
                os.write(fd, entry)  # the header is on disk from the first entry on
                self._unsynced = True
                self.entries += 1
                return
        self.entries += 1
        if lazy:
            self._pending.append(entry)
            return
        if self._pending:
            entry = b"".join(self._pending) + entry
            self._pending.clear()
        os.write(fd, entry)
        if self.durable:
            self._sync()
        else:
            self._unsynced = True

    def _write_pending(self) -> None:
        if self._pending and self._fd is not None:
            os.write(self._fd, b"".join(self._pending))
            self._pending.clear()
            self._unsynced = True

    def _sync(self) -> None:
        assert self._fd is not None
        os.fdatasync(self._fd)
        self._unsynced = False
        if not self._dir_synced:
            _sync_dir(self.path.parent)  # the journal's name survives a power cut too
            self._dir_synced = True

    def compact(self) -> None:
        """Write the whole state as the snapshot (atomic, durable), then drop the journal."""
        self.card.save(self.path)  # save_state removes the journal once it is durable; then saved()

    def saved(self, path: str | os.PathLike[str]) -> None:
        """``Card.save`` wrote the whole state to ``path``: when it is this image, the next entries
        start a new journal on the new snapshot (those of the old one are in it, and removed)."""
        if Path(path).resolve() == self.path.resolve():
            self._close_fd()
            if self.card.journal is self:
                self._start()

    def close(self) -> None:
        """Stop journaling, everything written durable: the journal is synced (its lazy entries,
        e.g. a whole personalization, with it) and stays next to the snapshot, to be replayed by
        the next load and appended to by the next :meth:`attach`; a journal of
        :attr:`compact_every` entries or more is folded into the snapshot instead. A torn write
        cannot happen after this returns: the image is whole on disk."""
        if self._deferred and self.card.journal is self:
            self.card.flush()  # what the deferred commands changed, journaled now
        if self.card.journal is self:
            self.card.journal = None
        if self.entries >= self.compact_every:
            self.card.save(self.path)
        else:
            self._write_pending()
            if self._fd is not None and self.durable and self._unsynced:
                self._sync()
        self._close_fd()
        if self.card.on_commit == self.commit:
            self.card.on_commit = None

    def _close_fd(self) -> None:
        """Close the journal file; lazy entries still held are dropped (a snapshot holding them
        was just written) — :meth:`close` writes them first."""
        self._pending.clear()
        if self._finalizer is not None:
            self._finalizer()  # os.close, once
            self._finalizer = None
        self._fd = None
        self._dir_synced = False
        self._unsynced = False
        self.entries = 0


def _write_and_close(fd: int, pending: list[bytes]) -> None:
    """The journal's finalizer: the lazy entries still held written, then the file closed (a card
    dropped without :meth:`ImageJournal.close` keeps what its commands did, unsynced)."""
    try:
        if pending:
            os.write(fd, b"".join(pending))
            pending.clear()
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    dfd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

"""A card image's journal: durability paid in proportion to what changed.

A card image (:mod:`cardlab.emulator.image`) is a snapshot of the whole state. Rewriting it
after every state-changing APDU costs the whole card each time; instead :class:`ImageJournal`
appends, after each command that changed the card and before its response leaves, one entry
holding only what that command changed, and syncs the journal file alone (one ``fdatasync``
per command). Every ``compact_every`` entries, and when the card is closed, the snapshot is
rewritten atomically and durably and the journal removed.

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

An entry is a list of operations on the *journal view* of the state (:func:`view`):
``[path, value]`` sets, ``[path]`` deletes; paths are lists of JSON object keys. Objects are
compared key by key, so an ATC increment journals one small value, not the application.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .image import ImageError, from_json, save_state, to_json
from .state import CardState

if TYPE_CHECKING:
    from .card import Card

FORMAT = "cardlab-card-journal"
VERSION = 1
SUFFIX = ".journal"
#: entries between two snapshots of a long-lived card (a terminal's card, vpcd)
COMPACT_EVERY = 256

Op = list[Any]


def journal_path(image: str | os.PathLike[str]) -> Path:
    """``card-0001.json`` → ``card-0001.json.journal`` (not matched by a stock's ``card-*.json``)."""
    p = Path(image)
    return p.with_name(p.name + SUFFIX)


def snapshot_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


# -- the journal view ----------------------------------------------------------------------


def view(doc: dict[str, Any]) -> dict[str, Any]:
    """The image document (:func:`cardlab.emulator.image.to_json`) keyed for diffs: the
    registry and the instances' states by AID (a list would be replaced whole)."""
    card = {k: v for k, v in doc.items() if k not in ("instances", "filesystem")}
    registry: dict[str, Any] = {}
    states: dict[str, Any] = {}
    for inst in doc["instances"]:
        registry[inst["aid"]] = {k: v for k, v in inst.items() if k != "state"}
        states[inst["aid"]] = inst["state"]
    return {"card": card, "registry": registry, "states": states, "fs": doc["filesystem"]}


def unview(v: dict[str, Any]) -> dict[str, Any]:
    doc = dict(v["card"])
    doc["instances"] = [{**reg, "state": v["states"].get(aid, {})} for aid, reg in v["registry"].items()]
    doc["filesystem"] = v["fs"]
    return doc


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


def diff(old: dict[str, Any], new: dict[str, Any], path: list[str], ops: list[Op]) -> None:
    """Append to ``ops`` what turns ``old`` into ``new`` (objects recursively, other values whole)."""
    for k, v in new.items():
        if k in old:
            o = old[k]
            if o == v:
                continue
            if isinstance(o, dict) and isinstance(v, dict):
                diff(o, v, [*path, k], ops)
                continue
        ops.append([[*path, k], v])
    for k in old:
        if k not in new:
            ops.append([[*path, k]])


def apply(doc: dict[str, Any], ops: list[Op]) -> None:
    for op in ops:
        *parents, last = op[0]
        d = doc
        for p in parents:
            d = d.setdefault(p, {})
        if len(op) == 2:
            d[last] = op[1]
        else:
            d.pop(last, None)


# -- framing -------------------------------------------------------------------------------


def _frame(obj: object) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _unframe(line: bytes) -> Any:
    """The entry of a whole line, or ``None`` if its CRC does not match."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        return json.loads(body)
    except ValueError:
        return None


def read_entries(data: bytes, snapshot: bytes) -> list[list[Op]]:
    """The whole entries of journal ``data`` if it applies to ``snapshot`` (else none)."""
    lines = data.split(b"\n")
    lines.pop()  # after the last LF: empty, or a torn entry never acknowledged
    if not lines:
        return []
    header = _unframe(lines[0])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        if len(lines) == 1:
            return []  # torn header: nothing was acknowledged
        raise ImageError("card journal: damaged header")
    if header.get("version") != VERSION:
        raise ImageError(f"card journal: unsupported version {header.get('version')!r}")
    if header.get("image") != snapshot_id(snapshot):
        return []  # a journal of an older snapshot: its changes are in this one
    entries: list[list[Op]] = []
    for i, line in enumerate(lines[1:], 1):
        entry = _unframe(line)
        if not isinstance(entry, list):
            if any(_unframe(rest) is not None for rest in lines[i + 1:]):
                raise ImageError(f"card journal: entry {i} damaged before later entries")
            break  # torn tail (a power cut may leave zeros after the last synced entry)
        entries.append(entry)
    return entries


def load_with_journal(path: str | os.PathLike[str], snapshot: bytes, doc: dict[str, Any]) -> CardState | None:
    """The state of snapshot ``doc`` with the journal next to ``path`` replayed, or ``None``
    when there is no journal for it."""
    try:
        data = journal_path(path).read_bytes()
    except FileNotFoundError:
        return None
    entries = read_entries(data, snapshot)
    if not entries:
        return None
    from_json(doc)  # the snapshot itself is an image (its own errors first)
    try:
        v = view(doc)
        for ops in entries:
            apply(v, ops)
        return from_json(unview(v))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ImageError(f"card journal does not apply to its image: {type(exc).__name__}") from None


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
        if journal_path(j.path).exists() or not j.path.exists():
            j.compact()
        else:
            j._start()
        return j

    def _start(self) -> None:
        """Remember the state as saved in the snapshot (the base of the next entries; the
        instances' states and the file system are compared with it at the first commit)."""
        snap = self.path.read_bytes()
        self._image_id = snapshot_id(snap)
        self._shadow = view(json.loads(snap))
        self._shadow["card"] = _card_part(self.card.state)
        self.entries = 0

    def commit(self, card: Card) -> None:
        """``Card.on_commit``: journal what the command changed, synced, before the response."""
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
        self._append(ops)
        self._shadow = {"card": new_card, "registry": new_registry, "states": new_states, "fs": state.filesystem}

    def _append(self, ops: list[Op]) -> None:
        """One entry, synced before the response leaves."""
        entry = _frame(ops)
        fd = self._fd
        first = fd is None
        if fd is None:
            # a new journal for the current snapshot (the header names it)
            fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            self._fd = fd
            # closed with the journal, also when a caller drops the card without close()
            self._finalizer = weakref.finalize(self, os.close, fd)
            entry = _frame({"format": FORMAT, "version": VERSION, "image": self._image_id}) + entry
        os.write(fd, entry)
        if self.durable:
            os.fdatasync(fd)
            if first:
                _sync_dir(self.path.parent)  # the journal's name survives a power cut too
        self.entries += 1

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
        """Fold the journal into the snapshot and stop journaling."""
        if self.card.journal is self:
            self.card.journal = None
        if self.entries:
            self.card.save(self.path)
        self._close_fd()
        if self.card.on_commit == self.commit:
            self.card.on_commit = None

    def _close_fd(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # os.close, once
            self._finalizer = None
        self._fd = None
        self.entries = 0


def _sync_dir(directory: Path) -> None:
    dfd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

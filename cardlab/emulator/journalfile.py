"""The card image journal's file format: framing, reading, replay (the writer is
:mod:`cardlab.emulator.journal`; :func:`cardlab.emulator.image.load_state` replays).

A journal file is a header line then one line per command, each ``CRC32 (8 hex) SP JSON LF``.
The header names the SHA-256 of the snapshot the entries apply to; an entry is a list of
operations on the *journal view* of the image document (:func:`view`): ``[path, value]`` sets,
``[path]`` deletes, paths being lists of JSON object keys.

Version 2 adds *lazy* entries, ``{"lazy": [ops…]}``: written before the response but not synced
(:mod:`cardlab.emulator.journal` says which). The next synced entry makes them durable with it;
until then a power cut may lose them, or leave holes among them: a damaged entry followed only by
lazy entries is the unsynced tail of the file and ends it, while a damaged entry followed by a
synced one is damage (that sync would have made it durable) and the journal is refused.
Version 1 journals (every entry synced) are read as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any


class JournalError(ValueError):
    """A journal that cannot be trusted (damaged before later entries, or not of this image)."""


FORMAT = "cardlab-card-journal"
VERSION = 2
#: journal versions this code reads
READS = (1, 2)
SUFFIX = ".journal"

Op = list[Any]


def journal_path(image: str | os.PathLike[str]) -> Path:
    """``card-0001.json`` → ``card-0001.json.journal`` (not matched by a stock's ``card-*.json``)."""
    return Path(os.fspath(image) + SUFFIX)


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


def frame(obj: object) -> bytes:
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


def lazy_entry(ops: list[Op]) -> dict[str, list[Op]]:
    """An entry written without a sync of its own (version 2)."""
    return {"lazy": ops}


def _ops(entry: Any) -> list[Op] | None:
    """The operations of an entry (synced: a list; lazy: ``{"lazy": [...]}``), None if not one."""
    if isinstance(entry, list):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("lazy"), list):
        return list(entry["lazy"])
    return None


def _synced_after(lines: list[bytes]) -> bool:
    """Whether any of ``lines`` is a whole synced entry."""
    return any(isinstance(_unframe(rest), list) for rest in lines)


def read_entries(data: bytes, snapshot: bytes) -> list[list[Op]]:
    """The whole entries of journal ``data`` if it applies to ``snapshot`` (else none)."""
    return _read(data, snapshot)[0]


def _read(data: bytes, snapshot: bytes) -> tuple[list[list[Op]], bool]:
    """:func:`read_entries`, and whether the journal is whole as :func:`whole_entries` means it
    (a writer may append to it)."""
    lines = data.split(b"\n")
    lines.pop()  # after the last LF: empty, or a torn entry never acknowledged
    if not lines:
        return [], False
    header = _unframe(lines[0])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        if len(lines) == 1 or not _synced_after(lines[1:]):
            return [], False  # torn header, and nothing after it was synced: nothing is owed
        raise JournalError("card journal: damaged header")
    if header.get("version") not in READS:
        raise JournalError(f"card journal: unsupported version {header.get('version')!r}")
    if header.get("image") != snapshot_id(snapshot):
        return [], False  # a journal of an older snapshot: its changes are in this one
    entries: list[list[Op]] = []
    for i, line in enumerate(lines[1:], 1):
        ops = _ops(_unframe(line))
        if ops is None:
            if _synced_after(lines[i + 1:]):
                raise JournalError(f"card journal: entry {i} damaged before later entries")
            # the end of what was synced: a torn tail, or holes among lazy entries a power cut left
            return entries, False
        entries.append(ops)
    return entries, data.endswith(b"\n") and header.get("version") == VERSION


def whole_entries(data: bytes, snapshot: bytes) -> int | None:
    """How many entries journal ``data`` holds if it is whole — a header for ``snapshot`` and
    every line a whole entry, ending with a line feed — so that a writer may append to it;
    ``None`` otherwise (it must be folded into a new snapshot first)."""
    try:
        entries, whole = _read(data, snapshot)
    except JournalError:
        return None
    return len(entries) if whole else None


def replay(path: str | os.PathLike[str], snapshot: bytes, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The image document ``doc`` (of the snapshot bytes ``snapshot``) with the journal next to
    ``path`` replayed, or ``None`` when there is no journal for it."""
    try:
        data = journal_path(path).read_bytes()
    except FileNotFoundError:
        return None
    return replay_data(data, snapshot, doc)[0]


def replay_data(data: bytes, snapshot: bytes, doc: dict[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
    """:func:`replay` of the journal bytes ``data``; and how many entries it holds when it is
    whole for this snapshot (:func:`whole_entries`), else ``None``."""
    entries, whole = _read(data, snapshot)
    count = len(entries) if whole else None
    if not entries:
        return None, count
    return _applied(doc, entries), count


def _applied(doc: dict[str, Any], entries: list[list[Op]]) -> dict[str, Any]:
    try:
        v = view(doc)
        for ops in entries:
            apply(v, ops)
        return unview(v)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise JournalError(f"card journal does not apply to its image: {type(exc).__name__}") from None

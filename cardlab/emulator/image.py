"""Card images: the whole persistent state as a readable JSON file.

Bytes are written as upper-case hex strings; the layout mirrors
:class:`cardlab.emulator.state.CardState`. Writes are atomic: a temporary file in the
same directory, fsync, rename, then fsync of the directory — a power cut leaves
either the old image or the new one, never a mix. Between two such snapshots, the
changes of each command are appended to the image's journal (:mod:`.journal`);
:func:`load_state` replays it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardlab.cardspec.atr import DEFAULT as DEFAULT_ATR

from .journalfile import JournalError, journal_path, replay_data, snapshot_id
from .state import CardState, InstanceRecord, KeyEntry, LoadFileRecord

FORMAT = "cardlab-card-image"
VERSION = 1


class ImageError(ValueError):
    """The file is not a card image this version understands."""


def _hex(b: bytes) -> str:
    return b.hex().upper()


def _unhex(s: object, what: str) -> bytes:
    if not isinstance(s, str):
        raise ImageError(f"{what}: expected a hex string")
    try:
        return bytes.fromhex(s)
    except ValueError as exc:
        raise ImageError(f"{what}: not hex") from exc


def to_json(state: CardState, *, kcvs: bool = True, instances: bool = True) -> dict[str, Any]:
    """The image document; without ``kcvs`` the keys lack their (derived) check values, without
    ``instances`` the registry and the file system are left out (the journal's card part)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "isd_aid": _hex(state.isd_aid),
        "lifecycle": state.lifecycle,
        "atr": _hex(state.atr),
        "scp": {"i": state.scp_i, "sequence_counter": state.sequence_counter, "kdd": _hex(state.kdd)},
        "iin": _hex(state.iin),
        "cin": _hex(state.cin),
        "cplc": _hex(state.cplc),
        **({"uid": _hex(state.uid)} if state.uid else {}),
        "keys": [
            {"kvn": k.kvn, "kid": k.kid, "type": k.kind, "value": _hex(k.value), "kcv": _hex(k.kcv())}
            if kcvs
            else {"kvn": k.kvn, "kid": k.kid, "type": k.kind, "value": _hex(k.value)}
            for k in state.keys
        ],
        "load_files": [
            {
                "aid": _hex(lf.aid),
                "modules": [_hex(m) for m in lf.modules],
                "lifecycle": lf.lifecycle,
                "version": _hex(lf.version),
            }
            for lf in state.load_files
        ],
        "isd_data": {f"{tag:X}": _hex(v) for tag, v in sorted(state.isd_data.items())},
    }
    if not instances:
        return doc
    isd_data = doc.pop("isd_data")  # the image's key order as before: instances, isd_data, filesystem
    doc["instances"] = [
        {
            "aid": _hex(r.aid),
            "load_file": _hex(r.load_file_aid),
            "module": _hex(r.module_aid),
            "privileges": _hex(r.privileges),
            "lifecycle": r.lifecycle,
            "install_params": _hex(r.install_params),
            "state": r.state,
        }
        for r in state.instances
    ]
    doc["isd_data"] = isd_data
    doc["filesystem"] = state.filesystem
    return doc


def from_json(doc: dict[str, Any]) -> CardState:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ImageError("not a cardlab card image")
    if doc.get("version") != VERSION:
        raise ImageError(f"unsupported image version {doc.get('version')!r}")
    try:
        scp = doc["scp"]
        return CardState(
            isd_aid=_unhex(doc["isd_aid"], "isd_aid"),
            lifecycle=int(doc["lifecycle"]),
            # an image keeps its ATR as written, also the pre-issue-10 Type-B-style one
            atr=_unhex(doc["atr"], "atr") if "atr" in doc else DEFAULT_ATR,
            scp_i=int(scp["i"]),
            sequence_counter=int(scp["sequence_counter"]),
            kdd=_unhex(scp["kdd"], "kdd"),
            iin=_unhex(doc["iin"], "iin"),
            cin=_unhex(doc["cin"], "cin"),
            cplc=_unhex(doc["cplc"], "cplc"),
            uid=_unhex(doc["uid"], "uid") if "uid" in doc else b"",
            keys=[
                KeyEntry(int(k["kvn"]), int(k["kid"]), str(k["type"]), _unhex(k["value"], "key value"))
                for k in doc["keys"]
            ],
            load_files=[
                LoadFileRecord(
                    _unhex(lf["aid"], "load file aid"),
                    [_unhex(m, "module aid") for m in lf["modules"]],
                    int(lf["lifecycle"]),
                    _unhex(lf["version"], "load file version"),
                )
                for lf in doc["load_files"]
            ],
            instances=[
                InstanceRecord(
                    _unhex(r["aid"], "instance aid"),
                    _unhex(r["load_file"], "instance load file"),
                    _unhex(r["module"], "instance module"),
                    _unhex(r["privileges"], "privileges"),
                    int(r["lifecycle"]),
                    _unhex(r["install_params"], "install params"),
                    dict(r["state"]),
                )
                for r in doc["instances"]
            ],
            isd_data={int(t, 16): _unhex(v, "isd data") for t, v in doc["isd_data"].items()},
            filesystem=dict(doc["filesystem"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ImageError(f"card image incomplete: {exc}") from exc


def dumps(state: CardState, *, compact: bool = False) -> str:
    """The image as JSON text: indented for people, or ``compact`` (one line,
    through json's C encoder, several times faster) for the per-APDU saves of
    a card being personalized; :func:`loads` reads both."""
    if compact:
        return json.dumps(to_json(state), separators=(",", ":")) + "\n"
    return json.dumps(to_json(state), indent=1, sort_keys=False) + "\n"


def loads(text: str) -> CardState:
    return from_json(_parse(text))


def _parse(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImageError(f"card image is not JSON: {exc}") from exc


def save_state(state: CardState, path: str | os.PathLike[str]) -> None:
    """Write atomically: temp file + fsync + rename + directory fsync."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    data = dumps(state).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    # the snapshot holds everything now: a journal of the older one is stale (and would be
    # ignored anyway, it names the older snapshot's hash; cardlab.emulator.journal)
    try:
        os.unlink(journal_path(target))
    except FileNotFoundError:
        pass


FileId = tuple[int, int, int]  # inode, size, modification time (ns)


@dataclass(frozen=True)
class ImageRead:
    """What :func:`load_image` read, so that a journal attached right after need not read the
    files again (:meth:`cardlab.emulator.journal.ImageJournal.attach`): valid while both files
    are as they were (:meth:`still`)."""

    path: str
    snapshot: FileId
    image_id: str  # the snapshot's id, as a journal header names it
    journal: FileId | None  # None: there was no journal
    whole: int | None  # entries of a journal whole for this snapshot (a writer may append), else None

    def still(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is the image read, its snapshot and journal unchanged since."""
        if os.fspath(path) != self.path:
            return False
        try:
            if _file_id(os.stat(self.path)) != self.snapshot:
                return False
            return _file_id(os.stat(journal_path(self.path))) == self.journal
        except FileNotFoundError:
            return self.journal is None and os.path.exists(self.path)


def _file_id(st: os.stat_result) -> FileId:
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_state(path: str | os.PathLike[str]) -> CardState:
    """The state saved in ``path``, with the changes its journal holds (:mod:`.journal`);
    ``ImageError("PATH: …")`` when it is not a card image."""
    return load_image(path)[0]


def load_image(path: str | os.PathLike[str]) -> tuple[CardState, ImageRead]:
    """:func:`load_state`, and what was read (:class:`ImageRead`)."""
    try:
        # each file's identity taken before its bytes: a change in between makes them differ at attach
        with open(path, "rb") as f:
            snap = _file_id(os.fstat(f.fileno()))
            raw = f.read()
        doc = _parse(raw.decode("utf-8"))
        try:
            with open(journal_path(path), "rb") as f:
                journal: FileId | None = _file_id(os.fstat(f.fileno()))
                data: bytes | None = f.read()
        except FileNotFoundError:
            data, journal = None, None
        try:
            journaled, whole = replay_data(data, raw, doc) if data is not None else (None, None)
        except JournalError:
            from_json(doc)  # the snapshot's own errors first
            raise
        if journaled is None:
            state = from_json(doc)
        else:
            try:
                state = from_json(journaled)
            except ImageError:
                from_json(doc)  # the snapshot's own errors first
                raise
        return state, ImageRead(os.fspath(path), snap, snapshot_id(raw), journal, whole)
    except JournalError as exc:
        raise ImageError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ImageError(f"{path}: not a card image (not UTF-8 text at byte {exc.start})") from None
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def copy_image(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a card image: its snapshot and, when there is one, its journal (the changes since the
    snapshot, :mod:`cardlab.emulator.journal`), both private (they hold keys); a journal left at
    ``dst`` by an earlier copy is removed (it would name another snapshot anyway)."""
    source, target = Path(src), Path(dst)
    _write_private(target, source.read_bytes())
    try:
        journal = journal_path(source).read_bytes()
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal_path(target))
        return
    _write_private(journal_path(target), journal)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT keeps the mode of a file that was there
        os.write(fd, data)
    finally:
        os.close(fd)

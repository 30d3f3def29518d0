"""The prepared batch: what data preparation hands to the perso engine.

A batch is a directory::

    BATCH/
      manifest.json     format, counts, SHA-256 of the inputs and of cards.jsonl,
                        transport key name and check value, profile/script names
      profile.yaml      copy of the issuer profile used
      script.yaml       copy of the perso script to run (optional)
      cards.jsonl       one CardPersoData per accepted record (JSON, one line each)
      rejected.jsonl    one Rejection per rejected record
      jobs.sqlite       the engine's job database (created by ``perso run``)

Secrets (ICC master keys, PIN block, RSA private key parts, and the station data
that holds the full PAN) are :class:`Sealed`: encrypted under the batch
transport key (a key-store key, AES-CBC with zero ICV over ISO 9797-1 method 2
padding), never clear at rest. Only the engine opens them, to re-encrypt them
under the card's DEK.

A batch appears whole or not at all: :func:`staging` builds it in a private directory next
to the target and moves it into place only when the manifest is written, so a preparation that
fails (bad file, Ctrl-C, kill) leaves nothing that blocks the next attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import process_alive

FORMAT = "cardlab-batch"
VERSION = 1

#: the files whose presence means a directory already holds a batch
BATCH_FILES = ("manifest.json", "cards.jsonl")
_STAGING = ".{name}.preparing-{pid}"


class BatchExistsError(ValueError):
    """The target directory already holds a batch (or is not a directory)."""


def _remove_stale_staging(out: Path) -> None:
    """Staging directories of preparations that were killed (their process is gone)."""
    prefix = f".{out.name}.preparing-"
    for entry in out.parent.glob(prefix + "*"):
        pid = entry.name.removeprefix(prefix)
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A private (0700) directory to build the batch ``out`` in; on a normal exit its files are moved
    into ``out`` (created, or an existing directory that holds no batch) with ``manifest.json`` last;
    on any exception, KeyboardInterrupt included, it is removed and ``out`` is left as it was."""
    if out.exists() and not out.is_dir():
        raise BatchExistsError(f"{out}: not a directory")
    for name in BATCH_FILES:
        if (out / name).exists():
            raise BatchExistsError(f"{out}: already holds a batch ({name})")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    tmp = out.parent / _STAGING.format(name=out.name, pid=os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        if not out.exists():
            tmp.chmod(0o755)
            os.rename(tmp, out)
            return
        for name in BATCH_FILES:  # checked again: another run may have finished meanwhile
            if (out / name).exists():
                raise BatchExistsError(f"{out}: already holds a batch ({name})")
        names = sorted(p.name for p in tmp.iterdir())
        for name in sorted(names, key=lambda n: n == "manifest.json"):
            os.replace(tmp / name, out / name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _h(b: bytes) -> str:
    return b.hex().upper()


@dataclass(frozen=True)
class Sealed:
    """A value encrypted under the batch transport key."""

    kek: str  # key-store name of the transport key
    kek_kcv: bytes  # its check value, so a wrong key is caught before use
    ciphertext: bytes

    def to_json(self) -> dict[str, str]:
        return {"kek": self.kek, "kcv": _h(self.kek_kcv), "ct": _h(self.ciphertext)}

    @classmethod
    def from_json(cls, d: dict[str, str]) -> Sealed:
        return cls(d["kek"], bytes.fromhex(d["kcv"]), bytes.fromhex(d["ct"]))


@dataclass(frozen=True)
class AppPersoData:
    """Everything one application instance on the card receives."""

    aid: bytes
    load_file: bytes
    module: bytes
    privileges: bytes
    install_params: bytes
    #: DGIs in the order they are stored; clear ones as bytes, secret ones sealed
    dgis: tuple[tuple[int, bytes | Sealed], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "aid": _h(self.aid),
            "load_file": _h(self.load_file),
            "module": _h(self.module),
            "privileges": _h(self.privileges),
            "install_params": _h(self.install_params),
            "dgis": [
                {"dgi": f"{d:04X}", **({"sealed": v.to_json()} if isinstance(v, Sealed) else {"value": _h(v)})}
                for d, v in self.dgis
            ],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AppPersoData:
        dgis: list[tuple[int, bytes | Sealed]] = []
        for item in d["dgis"]:
            dgi = int(item["dgi"], 16)
            dgis.append((dgi, Sealed.from_json(item["sealed"]) if "sealed" in item else bytes.fromhex(item["value"])))
        return cls(
            bytes.fromhex(d["aid"]),
            bytes.fromhex(d["load_file"]),
            bytes.fromhex(d["module"]),
            bytes.fromhex(d["privileges"]),
            bytes.fromhex(d["install_params"]),
            tuple(dgis),
        )


@dataclass(frozen=True)
class CardPersoData:
    """One card's prepared data (one line of cards.jsonl)."""

    card_id: str  # stable id in the batch, e.g. "000042"
    record_index: int  # 1-based position of the source record
    pan_masked: str  # first 6 and last 4 digits only
    apps: tuple[AppPersoData, ...] = ()
    #: non-secret values scripts may use as ${card.fields.NAME} (e.g. name, expiry)
    fields: dict[str, str] = field(default_factory=dict)
    #: sealed JSON for the other stations: embossing/print lines and magnetic tracks
    stations: Sealed | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "card_id": self.card_id,
            "record_index": self.record_index,
            "pan_masked": self.pan_masked,
            "apps": [a.to_json() for a in self.apps],
            "fields": dict(self.fields),
            "stations": self.stations.to_json() if self.stations else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CardPersoData:
        return cls(
            d["card_id"],
            int(d["record_index"]),
            d["pan_masked"],
            tuple(AppPersoData.from_json(a) for a in d["apps"]),
            dict(d.get("fields") or {}),
            Sealed.from_json(d["stations"]) if d.get("stations") else None,
        )


@dataclass(frozen=True)
class Rejection:
    """A source record data preparation refused (one line of rejected.jsonl)."""

    record_index: int
    record_id: str  # masked PAN or "line N"
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"record_index": self.record_index, "record_id": self.record_id, "field": self.field,
                "message": self.message}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rejection:
        return cls(int(d["record_index"]), d["record_id"], d["field"], d["message"])


def iter_cards(batch: Path) -> Iterator[CardPersoData]:
    """The prepared cards of ``batch``; ``ValueError("BATCH/cards.jsonl line N: …")`` for a line
    that is not what data preparation writes (an edited or damaged file)."""
    path = batch / "cards.jsonl"
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    card = CardPersoData.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    what = f"no field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
                    raise ValueError(f"{path} line {number}: not a prepared card ({what})") from None
                yield card


def iter_rejections(batch: Path) -> Iterator[Rejection]:
    path = batch / "rejected.jsonl"
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            if line.strip():
                yield Rejection.from_json(json.loads(line))


def read_manifest(batch: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((batch / "manifest.json").read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{batch}: not a cardlab batch")
    return doc


# -- the batch files as the engine reads them ---------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a JSON Lines file with the byte offset of each."""
    with path.open("rb") as fh:
        offset = 0
        for line in fh:
            if line.strip():
                yield offset, line
            offset += len(line)


def iter_cards_at(batch: Path) -> Iterator[tuple[int, CardPersoData]]:
    """``cards.jsonl`` with the byte offset of each line (a station reads one
    card's data with :func:`read_card_at`, without holding the batch in memory)."""
    with (batch / "cards.jsonl").open("rb") as fh:
        offset = 0
        for line in fh:
            if line.strip():
                yield offset, CardPersoData.from_json(json.loads(line))
            offset += len(line)


def read_card_at(batch: Path, offset: int) -> CardPersoData:
    with (batch / "cards.jsonl").open("rb") as fh:
        fh.seek(offset)
        return CardPersoData.from_json(json.loads(fh.readline()))


def manifest_mismatch(batch: Path, cards_digest: str, rejected_digest: str) -> str | None:
    """Whether the batch files are the ones data preparation wrote: a truncated or edited
    ``cards.jsonl`` would otherwise load as a smaller batch and silently lose records (the
    manifest, written last, holds their SHA-256). The problem, or None."""
    path = batch / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    empty = hashlib.sha256(b"").hexdigest()
    for name, expected, found in (
        ("cards.jsonl", manifest.get("cards_sha256"), cards_digest),
        ("rejected.jsonl", manifest.get("rejected_sha256"), rejected_digest or empty),
    ):
        if expected is not None and expected != found:
            counts = manifest.get("counts", {})
            return (f"{batch}: {name} is not the file data preparation wrote (SHA-256 differs from "
                    f"manifest.json, which counts {counts.get('accepted', '?')} accepted and "
                    f"{counts.get('rejected', '?')} rejected records): the batch was edited or truncated; "
                    "prepare it again")
    return None

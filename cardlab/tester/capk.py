"""The terminal's list of certification authority public keys (EMV 4.4 Book 2
§5.2 and Annex B: RID, CA public key index, modulus, exponent, expiry and the
SHA-1 checksum over RID ‖ index ‖ modulus ‖ exponent, checked on load).

A key file is YAML or JSON: either a list of keys or a mapping with ``keys``
(or ``ca_keys``); each key has ``rid``, ``index``, ``modulus``, ``exponent``
(hex) and optionally ``expiry`` (``YYYY-MM-DD`` or ``YYMMDD``) and
``checksum``. A mapping with a ``ca`` section (``vectors/test-ca.json``) is
read as its one public key; private parts are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


class CapkError(ValueError):
    pass


def _hex(value: Any, what: str) -> bytes:
    # YAML reads unquoted hex such as 03 or 94 as decimal integers: take the
    # digits as written
    text = str(value).replace(" ", "").replace(":", "")
    if len(text) % 2:
        text = "0" + text
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CapkError(f"{what}: not hex: {value!r}") from None


def _date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    text = str(value)
    if len(text) == 6 and text.isdigit():  # YYMMDD
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    return date.fromisoformat(text)


@dataclass(frozen=True)
class CaPublicKey:
    rid: bytes
    index: int
    modulus: bytes
    exponent: bytes
    expiry: date | None = None
    checksum: bytes = b""
    note: str = ""

    @property
    def n(self) -> int:
        return int.from_bytes(self.modulus, "big")

    @property
    def e(self) -> int:
        return int.from_bytes(self.exponent, "big")

    @property
    def public_key(self) -> tuple[int, int]:
        return self.n, self.e

    def computed_checksum(self) -> bytes:
        return hashlib.sha1(self.rid + bytes((self.index,)) + self.modulus + self.exponent).digest()

    def expired(self, today: date) -> bool:
        return self.expiry is not None and today > self.expiry

    def label(self) -> str:
        return f"{self.rid.hex().upper()}/{self.index:02X}"

    @classmethod
    def from_mapping(cls, d: dict[str, Any]) -> CaPublicKey:
        try:
            rid = _hex(d["rid"], "rid")
            index_raw = d["index"]
            index = int(str(index_raw), 16)
            key = cls(
                rid=rid,
                index=index,
                modulus=_hex(d["modulus"], "modulus"),
                exponent=_hex(d["exponent"], "exponent"),
                expiry=_date(d.get("expiry")),
                checksum=_hex(d["checksum"], "checksum") if d.get("checksum") else b"",
                note=str(d.get("note", "")),
            )
        except KeyError as exc:
            raise CapkError(f"CA key without {exc.args[0]!r}") from None
        if len(key.rid) != 5:
            raise CapkError(f"{key.label()}: a RID is 5 bytes")
        if key.checksum and key.checksum != key.computed_checksum():
            raise CapkError(
                f"{key.label()}: checksum {key.checksum.hex().upper()} differs from "
                f"SHA-1(RID‖index‖modulus‖exponent) = {key.computed_checksum().hex().upper()}"
            )
        return key


@dataclass
class CaKeyList:
    keys: list[CaPublicKey] = field(default_factory=list)

    def __iter__(self) -> Iterator[CaPublicKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: CaPublicKey) -> None:
        self.keys = [k for k in self.keys if (k.rid, k.index) != (key.rid, key.index)] + [key]

    def find(self, rid: bytes, index: int, today: date | None = None) -> CaPublicKey | None:
        """The key for (RID, index), None if absent or expired on ``today``."""
        for k in self.keys:
            if k.rid == rid and k.index == index:
                return None if today is not None and k.expired(today) else k
        return None

    def get(self, rid: bytes, index: int) -> CaPublicKey | None:
        """The key whatever its expiry (for certification evidence)."""
        return self.find(rid, index)

    @classmethod
    def from_entries(cls, entries: Iterable[dict[str, Any]]) -> CaKeyList:
        out = cls()
        for e in entries:
            out.add(CaPublicKey.from_mapping(e))
        return out

    @classmethod
    def from_document(cls, doc: Any) -> CaKeyList:
        if isinstance(doc, list):
            return cls.from_entries(doc)
        if isinstance(doc, dict):
            for name in ("keys", "ca_keys", "capk"):
                if isinstance(doc.get(name), list):
                    return cls.from_entries(doc[name])
            if isinstance(doc.get("ca"), dict):
                return cls.from_entries([doc["ca"]])
            if "rid" in doc:
                return cls.from_entries([doc])
        raise CapkError("no CA public keys in the document")

    @classmethod
    def load(cls, path: str | Path) -> CaKeyList:
        p = Path(path)
        text = p.read_text()
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
        return cls.from_document(doc)

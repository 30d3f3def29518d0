"""Data preparation for the access-control badge (a non-EMV card, background 002).

A badge record (CSV with a header) has ``badge_number, name, department,
premises`` — the premises the holder may enter, separated by ``;``. Each valid
record becomes a :class:`CardPersoData` with no applications and these
``fields`` for the perso script (``vectors/scripts/badge.yaml``)::

    badge_number, name, department, premises   (as given, premises ';'-joined)

and, when a key store is given, the badge's access key — 16 random bytes
sealed under the profile's transport key (``badge.kek``) — as a sealed DGI
``DF01`` of a pseudo-application entry, so that the interpreter can unseal it
just before writing it inside the C-DECRYPTION secure channel. The key never
appears in clear outside the interpreter's step that sends it.

Validation follows the profile's ``badge`` section (sizes of the files):
a bad record is rejected with a message naming its line and field.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardspec.scp03 import pad80

from .batch import AppPersoData, CardPersoData, Sealed

if TYPE_CHECKING:
    from .keys import KeyStore

#: the pseudo-application that carries the badge's sealed key (never installed)
KEY_HOLDER_AID = bytes.fromhex("F0000000994241444745")
KEY_DGI = 0xDF01
FIELDS = ("badge_number", "name", "department", "premises")


class BadgeRecordError(ValueError):
    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"record {line}: {field}: {message}")
        self.line = line
        self.field = field


@dataclass(frozen=True)
class BadgeLayout:
    name_size: int = 32
    department_size: int = 32
    premises_records: int = 8
    premise_length: int = 16
    kek: str = "KEK"

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> BadgeLayout:
        b = profile.get("badge") or {}
        return cls(
            int(b.get("name_size", 32)),
            int(b.get("department_size", 32)),
            int(b.get("premises_records", 8)),
            int(b.get("premise_length", 16)),
            str(b.get("kek", "KEK")),
        )


_TEXT = re.compile(r"[A-Za-z0-9 .,'/&()\-]+")


def validate(row: Mapping[str, str], line: int, layout: BadgeLayout) -> dict[str, str]:
    """The record's fields, checked; :class:`BadgeRecordError` names the field."""
    out: dict[str, str] = {}
    for name in FIELDS:
        if not (row.get(name) or "").strip():
            raise BadgeRecordError(line, name, "missing")
        out[name] = row[name].strip()
    if not re.fullmatch(r"[0-9]{6,10}", out["badge_number"]):
        raise BadgeRecordError(line, "badge_number", "6 to 10 digits")
    for name, size in (("name", layout.name_size), ("department", layout.department_size)):
        if not _TEXT.fullmatch(out[name]):
            raise BadgeRecordError(line, name, "letters, digits, space and . , ' / & ( ) - only")
        if len(out[name].encode()) > size:
            raise BadgeRecordError(line, name, f"longer than {size} bytes")
    premises = [p.strip() for p in out["premises"].split(";") if p.strip()]
    if len(premises) > layout.premises_records:
        raise BadgeRecordError(line, "premises", f"more than {layout.premises_records} premises")
    for p in premises:
        if not _TEXT.fullmatch(p) or len(p.encode()) > layout.premise_length:
            raise BadgeRecordError(line, "premises", f"{p!r}: up to {layout.premise_length} plain characters")
    out["premises"] = ";".join(premises)
    return out


def seal(keystore: KeyStore, kek: str, clear: bytes) -> Sealed:
    """Encrypt ``clear`` under transport key ``kek`` (AES-CBC, zero ICV, ISO
    9797-1 method 2 padding: the batch's :class:`Sealed` format)."""
    return Sealed(kek, keystore.kcv(kek), keystore.encrypt(kek, pad80(clear)))


def prepare_badges(
    profile: Mapping[str, Any],
    records: Path,
    keystore: KeyStore | None,
    *,
    errors: list[BadgeRecordError] | None = None,
) -> Iterator[CardPersoData]:
    """One :class:`CardPersoData` per valid record of ``records`` (CSV);
    rejected records go to ``errors`` (when given) and the rest go on.
    Without a key store the cards carry no key (enough for ``render``)."""
    layout = BadgeLayout.from_profile(profile)
    with records.open(newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=1):
            try:
                fields = validate(row, line, layout)
            except BadgeRecordError as exc:
                if errors is not None:
                    errors.append(exc)
                continue
            apps: tuple[AppPersoData, ...] = ()
            if keystore is not None:
                key = seal(keystore, layout.kek, os.urandom(16))
                apps = (AppPersoData(KEY_HOLDER_AID, b"", b"", b"", b"", ((KEY_DGI, key),)),)
            number = fields["badge_number"]
            yield CardPersoData(
                card_id=number,
                record_index=line,
                pan_masked="*" * (len(number) - 4) + number[-4:],
                apps=apps,
                fields=fields,
            )

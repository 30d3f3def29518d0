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

Read-back (:func:`read_badge`, used by the perso engine to settle an attempt
a crash left open, docs/perso-engine.md): the badge installs no GP
application and leaves the card OP_READY, so GET STATUS cannot tell a written
badge from a blank card. The script's last step writes a completion marker —
EF ``df_fid + 5``: the badge number, ASCII, 00-padded to 16 bytes — and the
engine reads the badge DF back with plain ISO 7816-4 commands (SELECT by path,
READ BINARY / READ RECORD; all these files are readable without a secure
channel) and compares marker and holder files with the record, in memory only.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardlab.cardspec.scp03 import pad80

from .batch import AppPersoData, CardPersoData, Sealed

if TYPE_CHECKING:
    from .keys import KeyStore

#: the pseudo-application that carries the badge's sealed key (never installed)
KEY_HOLDER_AID = bytes.fromhex("F0000000994241444745")
KEY_DGI = 0xDF01
FIELDS = ("badge_number", "name", "department", "premises")
#: EFs of the badge DF, as FID offsets from ``df_fid`` (vectors/scripts/badge.yaml)
NAME_EF, DEPARTMENT_EF, PREMISES_EF, KEY_EF, MARKER_EF = 1, 2, 3, 4, 5
#: the completion marker: the badge number, ASCII, 00-padded (written last by the script)
MARKER_SIZE = 16
SW_OK, SW_FILE_NOT_FOUND, SW_RECORD_NOT_FOUND = 0x9000, 0x6A82, 0x6A83


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
    df_fid: int = 0x4200

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> BadgeLayout:
        b = profile.get("badge") or {}
        fid = b.get("df_fid", "4200")
        return cls(
            int(b.get("name_size", 32)),
            int(b.get("department_size", 32)),
            int(b.get("premises_records", 8)),
            int(b.get("premise_length", 16)),
            str(b.get("kek", "KEK")),
            int(fid, 16) if isinstance(fid, str) else int(fid),
        )


def is_badge_profile(doc: object) -> bool:
    """A profile mapping of the badge kind (a ``badge:`` section, no EMV ``applications``)."""
    return isinstance(doc, Mapping) and "badge" in doc and "applications" not in doc


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


# ============================================================================ read-back


def marker(badge_number: str) -> bytes:
    """The completion marker the script writes last for this badge number."""
    return badge_number.encode("ascii").ljust(MARKER_SIZE, b"\x00")


class BadgeReadError(RuntimeError):
    """The card answered a read-back command with an unexpected SW (no data in the message)."""


@dataclass(frozen=True)
class BadgeOnCard:
    """What a card's file system shows of a badge. Holds no card data: only
    which files exist and whether their contents are this record's."""

    df: bool  # the badge DF exists
    efs: frozenset[int]  # FID offsets (NAME_EF …) of the EFs found in it
    marker: str  # "absent" (no EF or all 00), "match" (this record's), "other"
    holder_matches: bool  # name, department and premises are exactly the record's

    def state(self) -> str:
        """``complete`` — marker and holder files are this record's;
        ``absent`` — no badge DF: nothing written; ``foreign`` — the card holds
        another badge (a marker not this record's, or this record's marker
        over other holder data): never rolled back; ``partial`` — anything
        else (the script stopped before its last step)."""
        if not self.df:
            return "absent"
        if self.marker == "other" or (self.marker == "match" and not self.holder_matches):
            return "foreign"
        if self.marker == "match" and self.efs >= {NAME_EF, DEPARTMENT_EF, PREMISES_EF, KEY_EF, MARKER_EF}:
            return "complete"
        return "partial"


def _sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0


def read_badge(transmit: Callable[[bytes], bytes], layout: BadgeLayout, fields: Mapping[str, str]) -> BadgeOnCard:
    """Read the badge DF back with plain ISO 7816-4 commands (no secure
    channel: SELECT by path from the MF, ISO 7816-4 §7.2.2 / §11.1.1; READ
    BINARY §11.2.3; READ RECORD §11.3.3) and compare it with the record
    ``fields``. Reads only; the door key EF (read: never) is only selected."""

    def select(*fids: int) -> bool:
        path = b"".join(f.to_bytes(2, "big") for f in fids)
        sw = _sw(transmit(bytes((0x00, 0xA4, 0x08, 0x0C, len(path))) + path))
        if sw == SW_FILE_NOT_FOUND:
            return False
        if sw != SW_OK:
            raise BadgeReadError(f"SELECT by path: SW {sw:04X}")
        return True

    def read_binary(size: int) -> bytes:
        out = b""
        while len(out) < size:
            n = min(256, size - len(out))
            resp = transmit(bytes((0x00, 0xB0, len(out) >> 8, len(out) & 0xFF, n & 0xFF)))
            if _sw(resp) != SW_OK:
                raise BadgeReadError(f"READ BINARY: SW {_sw(resp):04X}")
            out += resp[:-2]
            if len(resp) - 2 < n:  # a smaller file than the layout says: what there is
                break
        return out[:size]

    def read_records() -> list[bytes]:
        records = []
        for number in range(1, layout.premises_records + 2):
            resp = transmit(bytes((0x00, 0xB2, number, 0x04, 0x00)))  # P2 04: record P1 of the current EF
            if _sw(resp) == SW_RECORD_NOT_FOUND:
                break
            if _sw(resp) != SW_OK:
                raise BadgeReadError(f"READ RECORD: SW {_sw(resp):04X}")
            records.append(resp[:-2])
        return records

    df = layout.df_fid
    if not select(df):
        return BadgeOnCard(False, frozenset(), "absent", False)
    efs = frozenset(k for k in (NAME_EF, DEPARTMENT_EF, PREMISES_EF, KEY_EF, MARKER_EF) if select(df, df + k))

    def text(value: str, size: int) -> bytes:
        return value.encode("utf-8").ljust(size, b"\x00")

    holder = efs >= {NAME_EF, DEPARTMENT_EF, PREMISES_EF}
    if holder:
        select(df, df + NAME_EF)
        holder = read_binary(layout.name_size) == text(fields["name"], layout.name_size)
    if holder:
        select(df, df + DEPARTMENT_EF)
        holder = read_binary(layout.department_size) == text(fields["department"], layout.department_size)
    if holder:
        select(df, df + PREMISES_EF)
        premises = [p for p in fields["premises"].split(";") if p]
        holder = read_records() == [text(p, layout.premise_length) for p in premises]
    found = "absent"
    if MARKER_EF in efs:
        select(df, df + MARKER_EF)
        value = read_binary(MARKER_SIZE)
        if value == marker(fields["badge_number"]):
            found = "match"
        elif any(value):
            found = "other"
    return BadgeOnCard(True, efs, found, holder)


def rollback_apdus(layout: BadgeLayout) -> list[bytes]:
    """What undoes a partial badge, to be sent inside the SCP03 session (the
    MF lets a secure channel delete its children): SELECT the MF, DELETE FILE
    the badge DF with everything in it (ISO 7816-9 §6.4)."""
    fid = layout.df_fid.to_bytes(2, "big")
    return [bytes.fromhex("00A4000C023F00"), bytes((0x00, 0xE4, 0x00, 0x00, 2)) + fid]

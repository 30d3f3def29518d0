"""Cardholder records: streaming reader and per-record validation.

Input is CSV with a header row or JSON Lines (one object per line), plain or
sealed for transport (:mod:`cardlab.personalizer.transport`). Fields:

=================  ========  ==================================================
field              required  rule
=================  ========  ==================================================
``pan``            yes       12–19 digits, Luhn check digit
``psn``            yes       PAN sequence number 00–99 (one or two digits); empty only with the
                             profile's ``card.empty_psn`` (``omit`` or ``"00"``)
``expiry``         yes       ``YYYY-MM``, month 01–12, not before ``effective`` (the
                             same month is a card valid for one month), not
                             before the month of ``today``
``effective``      no        ``YYYY-MM``
``name``           yes       2–26 characters of ISO/IEC 7813 track 1: A–Z,
                             0–9, space and ``. , - / '``
``pin``            yes       4–12 digits
``service_code``   no        3 digits, first one 1, 2, 5, 6, 7 or 9
``language``       no        2–8 letters, ISO 639-1 pairs (``en``, ``enfr``)
``discretionary``  no        digits, as many as fit track 2 (37 characters)
=================  ========  ==================================================

:func:`read_records` is a generator: it holds one record at a time (plus a
keyed 8-byte digest per PAN+PSN to find duplicates), so a 100,000-record file
stays flat in memory. Each input record yields a :class:`Record` or a
:class:`Rejected` naming the record (line number and masked PAN) and the field;
a bad record never stops the stream. Problems with the file itself (unreadable,
header without a required column, sealed file that fails verification) raise
:class:`RecordsError` or :class:`~personalizer.transport.TransportError`.

No message, ``repr`` or exception carries a PIN or a full PAN.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import hmac
import json
import os
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final, Literal

from .masking import mask_pan
from .transport import MAGIC, TransportKeys, open_sealed, sealed_name

__all__ = [
    "FIELDS",
    "REQUIRED_FIELDS",
    "Record",
    "RecordsError",
    "Rejected",
    "YearMonth",
    "luhn_ok",
    "read_records",
    "validate",
]

REQUIRED_FIELDS: Final = ("pan", "psn", "expiry", "name", "pin")
OPTIONAL_FIELDS: Final = ("effective", "service_code", "language", "discretionary")
FIELDS: Final = REQUIRED_FIELDS + OPTIONAL_FIELDS

Format = Literal["csv", "jsonl"]

#: 5F20 is format ans (EMV 4.4 Book 3 Annex A) and an ISO/IEC 7813 track 1 name allows digits: what
#: is refused cannot go on the card or the stripe the way cardlab writes them (lower case, ^ % ? …)
_NAME_CHARS = re.compile(r"[A-Z0-9 .,\-/']")
_TRACK2_MAX: Final = 37  # ISO/IEC 7813 track 2 characters between the sentinels


class RecordsError(ValueError):
    """The records file as a whole cannot be read."""


@dataclass(frozen=True, order=True)
class YearMonth:
    """A card date with month precision (``YYYY-MM``)."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> YearMonth:
        """``YYYY-MM``; raises ValueError naming what is wrong.

        >>> YearMonth.parse("2029-02").yymm
        '2902'
        """
        m = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if not m:
            raise ValueError(f"{text!r} is not YYYY-MM")
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise ValueError(f"month {m.group(2)} is not 01-12")
        if not 2000 <= year <= 2099:
            raise ValueError(f"year {year} is outside 2000-2099 (two-digit card dates)")
        return cls(year, month)

    @classmethod
    def of(cls, d: date) -> YearMonth:
        return cls(d.year, d.month)

    @property
    def yymm(self) -> str:
        """Track 2 / 57 form."""
        return f"{self.year % 100:02d}{self.month:02d}"

    def last_day(self) -> date:
        """The last day of the month: what 5F24 (YYMMDD) holds for an expiry date."""
        nxt = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        return date.fromordinal(nxt.toordinal() - 1)

    def first_day(self) -> date:
        """The first day of the month: what 5F25 holds for an effective date."""
        return date(self.year, self.month, 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Record:
    """One valid cardholder record. ``repr`` masks the PAN and hides the PIN."""

    index: int  # 1-based position of the record in the file
    line: int  # line where the record starts
    pan: str = field(repr=False)
    psn: str  # two digits; "" when empty and the profile omits it (card.empty_psn: omit)
    expiry: YearMonth
    effective: YearMonth | None
    name: str
    pin: str = field(repr=False)
    service_code: str | None = None
    language: str | None = None  # lowercase ISO 639-1 pairs
    discretionary: str | None = None

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        return (
            f"Record(index={self.index}, line={self.line}, pan={self.masked_pan!r}, psn={self.psn!r}, "
            f"expiry={str(self.expiry)!r}, effective={str(self.effective) if self.effective else None!r}, "
            f"name={self.name!r}, pin='****', service_code={self.service_code!r}, "
            f"language={self.language!r}, discretionary={self.discretionary!r})"
        )


@dataclass(frozen=True)
class Rejected:
    """A record that failed validation.

    ``field`` is the first failing field (``record`` for a malformed line,
    ``pan+psn`` for a duplicate); ``problems`` lists every (field, message).
    ``message`` reads ``line 7 (476173******0119): expiry: month 13 is not 01-12``.
    """

    index: int
    record_id: str  # masked PAN, or "line N" when there is no PAN
    field: str
    message: str
    line: int = 0
    problems: tuple[tuple[str, str], ...] = ()


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B check digit.

    >>> luhn_ok("4761739001010119"), luhn_ok("4761739001010118")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _text(raw: Mapping[str, object], key: str) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise TypeError(f"expected text, got {type(v).__name__}")
    s = str(v).strip()
    return s or None


def validate(raw: Mapping[str, object], *, today: date, index: int = 1, line: int = 1,
             empty_psn: str | None = None) -> Record | Rejected:
    """Check one record given as field → value (strings; JSON numbers accepted for digits).

    ``empty_psn`` (the profile's ``card.empty_psn``): an empty PSN is accepted as "" (``omit``:
    no 5F34 on the card) or "00"; without it an empty PSN is a problem of the record.
    Returns a :class:`Record` or a :class:`Rejected` listing every problem.
    """
    problems: list[tuple[str, str]] = []

    def get(key: str, required: bool) -> str | None:
        try:
            v = _text(raw, key)
        except TypeError as e:
            problems.append((key, str(e)))
            return None
        if v is None and required:
            problems.append((key, "missing"))
        return v

    for key in raw:
        if key not in FIELDS:
            problems.append((str(key), f"unknown field (expected {', '.join(FIELDS)})"))

    pan = get("pan", True)
    if pan is not None:
        if not pan.isdigit() or not pan.isascii():
            problems.append(("pan", "must be digits only"))
        elif not 12 <= len(pan) <= 19:
            problems.append(("pan", f"{len(pan)} digits, expected 12-19"))
        elif not luhn_ok(pan):
            problems.append(("pan", "Luhn check digit is wrong"))

    psn = get("psn", False)
    if psn is None and empty_psn is None:
        problems.append(("psn", 'missing (an empty PSN needs the profile\'s card.empty_psn: omit or "00")'))
    elif psn is None:
        psn = "" if empty_psn == "omit" else "00"
    elif psn is not None:
        if not re.fullmatch(r"\d{1,2}", psn):
            problems.append(("psn", f"{psn!r} is not 00-99"))
        else:
            psn = psn.zfill(2)

    expiry = effective = None
    exp_text = get("expiry", True)
    if exp_text is not None:
        try:
            expiry = YearMonth.parse(exp_text)
        except ValueError as e:
            problems.append(("expiry", str(e)))
    eff_text = get("effective", False)
    if eff_text is not None:
        try:
            effective = YearMonth.parse(eff_text)
        except ValueError as e:
            problems.append(("effective", str(e)))
    if expiry is not None:
        if expiry < YearMonth.of(today):
            problems.append(("expiry", f"{expiry} is in the past (today {today.isoformat()})"))
        elif effective is not None and expiry < effective:  # the same month: valid from its first day to its last
            problems.append(("expiry", f"{expiry} is before effective {effective}"))
        elif expiry.year > 2049:
            # EMV dates are YYMMDD: YY 50-99 means 1950-1999 (EMV Book 3 Annex A,
            # Book 2 §5.3 certificate dates), so a card cannot expire after 2049
            problems.append(("expiry", f"{expiry} is beyond 2049, which EMV's two-digit years cannot express"))

    name = get("name", True)
    if name is not None:
        bad = next((c for c in name if not _NAME_CHARS.fullmatch(c)), None)
        if bad is not None:
            hint = " (uppercase only)" if bad.isalpha() and bad.upper() != bad else ""
            problems.append(
                (
                    "name",
                    (
                        f"character {bad!r} at position {name.index(bad) + 1} is not allowed "
                        f"(A-Z, 0-9, space and . , - / '){hint}"
                    ),
                )
            )
        elif not 2 <= len(name) <= 26:
            problems.append(("name", f"{len(name)} characters, expected 2-26"))

    pin = get("pin", True)
    if pin is not None and not re.fullmatch(r"\d{4,12}", pin):
        problems.append(("pin", "must be 4-12 digits"))  # never echo the PIN

    sc = get("service_code", False)
    if sc is not None and not re.fullmatch(r"[125679]\d\d", sc):
        problems.append(("service_code", f"{sc!r} is not 3 digits starting with 1, 2, 5, 6, 7 or 9"))

    lang = get("language", False)
    if lang is not None:
        if not re.fullmatch(r"(?:[A-Za-z]{2}){1,4}", lang):
            problems.append(("language", f"{lang!r} is not 1-4 ISO 639-1 codes (2-8 letters, pairs)"))
        else:
            lang = lang.lower()

    disc = get("discretionary", False)
    if disc is not None:
        if not disc.isdigit() or not disc.isascii():
            problems.append(("discretionary", "must be digits only"))
        elif pan is not None and pan.isdigit():
            room = _TRACK2_MAX - len(pan) - 8  # '=' + YYMM + service code
            if len(disc) > room:
                problems.append(
                    (
                        "discretionary",
                        f"{len(disc)} digits; with a {len(pan)}-digit PAN track 2 holds at most {room}",
                    )
                )

    rid = mask_pan(pan) if pan else f"line {line}"
    if problems:
        return _rejected(index, line, rid, problems)
    assert pan is not None and psn is not None and expiry is not None and name is not None and pin is not None
    return Record(index, line, pan, psn, expiry, effective, name, pin, sc, lang, disc)


def _rejected(index: int, line: int, rid: str, problems: list[tuple[str, str]]) -> Rejected:
    where = f"line {line}" + (f" ({rid})" if not rid.startswith("line ") else "")
    msg = "; ".join(f"{f}: {m}" for f, m in problems)
    return Rejected(index, rid, problems[0][0], f"{where}: {msg}", line, tuple(problems))


# --------------------------------------------------------------------------- reading


def _decode_lines(chunks: Iterable[bytes], source: str) -> Iterator[str]:
    """UTF-8 lines (with their endings) from byte chunks, one line in memory at a time."""
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    try:
        for chunk in chunks:
            pending += dec.decode(chunk)
            if "\n" in pending:
                head, _, pending = pending.rpartition("\n")
                for text in head.split("\n"):
                    yield text + "\n"
        pending += dec.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise RecordsError(f"{source}: not UTF-8 text ({e.reason})") from None
    if pending:
        yield pending


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(64 * 1024):
            yield chunk


def _format_of(name: str) -> Format:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise RecordsError(f"{name}: cannot tell the format from the name (.csv or .jsonl); pass format=")


def _csv_rows(lines: Iterator[str], source: str) -> Iterator[tuple[int, Mapping[str, object] | str]]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise RecordsError(f"{source}: header: {e}") from None
    header = [h.strip().lower() for h in header]
    missing = [f for f in REQUIRED_FIELDS if f not in header]
    unknown = [h for h in header if h not in FIELDS]
    dups = sorted({h for h in header if header.count(h) > 1})
    if missing or unknown or dups:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s) " + ", ".join(unknown))
        if dups:
            parts.append("repeated column(s) " + ", ".join(dups))
        raise RecordsError(f"{source}: header: {'; '.join(parts)} (columns: {', '.join(FIELDS)})")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, f"unreadable CSV: {e}"
            start = reader.line_num + 1
            continue
        if not row or all(not c.strip() for c in row):
            start = reader.line_num + 1
            continue
        if len(row) != len(header):
            yield start, f"{len(row)} columns, the header has {len(header)}"
        else:
            yield start, dict(zip(header, row))
        start = reader.line_num + 1


class _DigestTable:
    """An open-addressing map from 64-bit digests to line numbers in two flat arrays.

    12 bytes a slot at most half full: 100,000 records need about 3 MB, where a
    dict of Python ints would take several times that.
    """

    def __init__(self) -> None:
        self._keys = array("Q", [0]) * 1024
        self._lines = array("I", [0]) * 1024
        self._count = 0

    def setdefault(self, digest: int, line: int) -> int:
        """The line stored for ``digest``, storing ``line`` if there is none."""
        digest |= 1  # 0 marks an empty slot
        mask = len(self._keys) - 1
        i = digest & mask
        while self._keys[i]:
            if self._keys[i] == digest:
                return self._lines[i]
            i = (i + 1) & mask
        self._keys[i] = digest
        self._lines[i] = line
        self._count += 1
        if self._count * 2 > len(self._keys):
            self._grow()
        return line

    def _grow(self) -> None:
        keys, lines = self._keys, self._lines
        size = len(keys) * 2
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        mask = size - 1
        for k, ln in zip(keys, lines):
            if k:
                i = k & mask
                while self._keys[i]:
                    i = (i + 1) & mask
                self._keys[i] = k
                self._lines[i] = ln


def _jsonl_rows(lines: Iterator[str]) -> Iterator[tuple[int, Mapping[str, object] | str]]:
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield number, f"not JSON: {e.msg} at column {e.colno}"
            continue
        except ValueError as e:  # e.g. an integer too long to convert
            yield number, f"not JSON: {e}"
            continue
        if not isinstance(obj, dict):
            yield number, "not a JSON object"
            continue
        yield number, obj


def read_records(
    path: str | Path,
    *,
    today: date | None = None,
    keys: TransportKeys | None = None,
    format: Format | None = None,
    duplicates: bool = True,
    empty_psn: str | None = None,
) -> Iterator[Record | Rejected]:
    """Stream the records of ``path`` (CSV or JSON Lines, plain or sealed).

    ``today`` (default: the current date) is what "expiry not in the past" is
    checked against. A sealed file needs ``keys``; its signature is verified
    before the first record is yielded. The format comes from ``format`` or the
    file name (for a sealed file, the name recorded when it was sealed).

    With ``duplicates`` (the default) a repeated PAN+PSN is rejected; the
    table that remembers them is the only memory that grows with the file
    (12 bytes a slot, at most half full: ~3 MB for 100,000 records). Without
    it memory use does not depend on the file size at all.
    """
    p = Path(path)
    day = today or date.today()
    with open(p, "rb") as f:
        sealed = f.read(len(MAGIC)) == MAGIC
    if sealed:
        if keys is None:
            raise RecordsError(f"{p.name}: sealed file; transport keys are needed to open it")
        fmt = format or _format_of(sealed_name(p))
        chunks: Iterable[bytes] = open_sealed(p, keys.recipient_key, keys.verify_key)
    else:
        fmt = format or _format_of(p.name)
        chunks = _file_chunks(p)
    lines = _decode_lines(chunks, p.name)
    rows = _csv_rows(lines, p.name) if fmt == "csv" else _jsonl_rows(lines)

    # duplicates are found by a keyed digest of PAN+PSN, never by keeping PANs
    salt = os.urandom(16)
    seen = _DigestTable()
    index = 0
    for line, row in rows:
        index += 1
        if isinstance(row, str):
            yield _rejected(index, line, f"line {line}", [("record", row)])
            continue
        result = validate(row, today=day, index=index, line=line, empty_psn=empty_psn)
        if isinstance(result, Record) and duplicates:
            digest = hmac.new(salt, f"{result.pan}/{result.psn}".encode(), hashlib.blake2b).digest()[:8]
            first = seen.setdefault(int.from_bytes(digest, "big"), line)
            if first != line:
                yield _rejected(
                    index, line, result.masked_pan,
                    [("pan+psn", f"duplicate of line {first} (same PAN and PSN {result.psn})")],
                )  # fmt: skip
                continue
        yield result
    if index == 0:  # an empty file, or a header alone: nothing to prepare is an input error
        raise RecordsError(f"{p.name}: no records")

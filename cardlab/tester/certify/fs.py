"""Certification of file-system profiles (the access-control badge): the
tester derives, on its own, every file and record the profile and the
cardholder record determine, reads them back by path with plain ISO/IEC
7816-4 commands and checks contents, file types (FCP 82), sizes, SFIs and
access conditions (FCP 8C, compact format) — what must not be readable is
refused with 6982, and nothing is updatable outside the secure channel.

The badge layout (the profile's ``badge`` section, docs in
vectors/profiles/badge.yaml and the perso script vectors/scripts/badge.yaml):

====  ============  ============  =====  =================================
FID   name          type          SFI    access
====  ============  ============  =====  =================================
DF    df_fid        DF, df_name          create EF: secure channel
+01   holder name   transparent   1      read always, update SM, write never
+02   department    transparent   2      read always, update SM, write never
+03   premises      linear fixed  3      read always, update / append SM
+04   door key      transparent   4      read never, update SM, write never
====  ============  ============  =====  =================================

Text is UTF-8, padded with 00 to the file (record) size. The door key is a
per-card random secret: its contents are not known to the tester and never
read or reported; only its type, size and access conditions are checked.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..channel import CardChannel
from ..rules import FS_RULE_IDS
from ..tlv import TlvError, parse
from .life import LIFE_RULES, GpCardProfile, life_cycle_results
from .results import FAIL, NA, NOT_RUN, PASS, CardReport, Result

MF = b"\x3f\x00"
FDB_DF, FDB_TRANSPARENT, FDB_LINEAR_FIXED = 0x38, 0x01, 0x02
FDB_NAMES = {0x38: "DF", 0x01: "transparent", 0x02: "linear fixed", 0x04: "linear variable", 0x06: "cyclic"}
FS_KINDS = ("badge", "file_system", "filesystem", "fs")

# access modes of an EF (8C AM bits, ISO 7816-4 §7.4.3 table 20)
READ, UPDATE, WRITE = "read", "update", "write/append"
AM_BITS = {0x01: READ, 0x02: UPDATE, 0x04: WRITE}
ALWAYS, NEVER, SM, PIN = "always", "never", "secure_channel", "pin"


class FsSourceError(ValueError):
    pass


# -- what the card should hold -------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedFile:
    fid: int
    name: str  # in words, for evidence
    fdb: int
    sfi: int | None
    size: int = 0  # transparent
    record_length: int = 0  # record EFs
    max_records: int = 0
    access: dict[str, str] = field(default_factory=dict)  # mode → condition
    content: bytes | None = None  # transparent, None: secret / not derivable
    records: tuple[bytes, ...] | None = None  # record EFs
    secret: bool = False

    @property
    def fid_hex(self) -> str:
        return f"{self.fid:04X}"


@dataclass(frozen=True)
class ExpectedDf:
    fid: int
    df_name: bytes
    files: tuple[ExpectedFile, ...]

    def path(self, f: ExpectedFile) -> bytes:
        return self.fid.to_bytes(2, "big") + f.fid.to_bytes(2, "big")


def load_fs_profile(path: str | Path) -> dict[str, Any]:
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise FsSourceError(f"{path}: not a profile")
    return doc


def is_fs_profile(path: str | Path) -> bool:
    """A file-system profile: ``kind`` names one (badge, file_system), or
    it has a ``badge`` section and no EMV ``applications``."""
    try:
        doc = load_fs_profile(path)
    except (OSError, yaml.YAMLError, FsSourceError):
        return False
    kind = str(doc.get("kind", "")).lower()
    if kind:
        return kind in FS_KINDS
    return isinstance(doc.get("badge"), dict) and not doc.get("applications")


def _pad(text: str, size: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > size:
        raise FsSourceError(f"{what}: {len(raw)} bytes do not fit in {size}")
    return raw + bytes(size - len(raw))


def expected_badge(doc: dict[str, Any], record: dict[str, str]) -> ExpectedDf:
    """The badge DF and its EFs for one cardholder record."""
    b = doc.get("badge") or {}
    try:
        df_fid = int(str(b.get("df_fid", "4200")), 16)
        df_name = bytes.fromhex(str(b["df_name"]))
        name_size = int(b.get("name_size", 32))
        dept_size = int(b.get("department_size", 32))
        n_records = int(b.get("premises_records", 8))
        rec_len = int(b.get("premise_length", 16))
    except (KeyError, ValueError, TypeError) as exc:
        raise FsSourceError(f"profile badge section: {type(exc).__name__}: {exc}") from None
    premises = [p.strip() for p in (record.get("premises") or "").split(";") if p.strip()]
    if len(premises) > n_records:
        raise FsSourceError(f"record: {len(premises)} premises for {n_records} records")
    text = {READ: ALWAYS, UPDATE: SM, WRITE: NEVER}
    files = (
        ExpectedFile(df_fid + 1, "holder name", FDB_TRANSPARENT, 1, size=name_size, access=text,
                     content=_pad(record.get("name", ""), name_size, "name")),
        ExpectedFile(df_fid + 2, "department", FDB_TRANSPARENT, 2, size=dept_size, access=text,
                     content=_pad(record.get("department", ""), dept_size, "department")),
        ExpectedFile(df_fid + 3, "premises", FDB_LINEAR_FIXED, 3, record_length=rec_len, max_records=n_records,
                     access={READ: ALWAYS, UPDATE: SM, WRITE: SM},
                     records=tuple(_pad(p, rec_len, "premise") for p in premises)),
        ExpectedFile(df_fid + 4, "door key", FDB_TRANSPARENT, 4, size=16, access={READ: NEVER, UPDATE: SM, WRITE: NEVER},
                     secret=True),
    )  # fmt: skip
    return ExpectedDf(df_fid, df_name, files)


def read_badge_records(path: str | Path) -> list[dict[str, str]]:
    """Rows of a badge records CSV (header row), 1-based ``_index`` added."""
    text = Path(path).read_text(encoding="utf-8-sig")
    out = []
    for n, row in enumerate(csv.DictReader(io.StringIO(text)), 1):
        clean = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k}
        clean["_index"] = str(n)
        out.append(clean)
    return out


def mask_number(number: str) -> str:
    return "*" * max(0, len(number) - 4) + number[-4:]


# -- FCP parsing (the card's format, read on the tester's own) ------------------------------


def condition_name(sc: int) -> str:
    if sc == 0x00:
        return ALWAYS
    if sc == 0xFF:
        return NEVER
    parts = [n for bit, n in ((0x40, SM), (0x10, PIN)) if sc & bit]
    other = sc & ~0xD0 & 0xFF
    if other:
        parts.append(f"SC{sc:02X}")
    return ("+" if sc & 0x80 else "|").join(parts) or f"SC{sc:02X}"


def decode_compact(acl: bytes | None) -> dict[str, str] | None:
    """8C compact security attributes of an EF → mode → condition (a mode
    whose AM bit is 0 is ``never``); None when the FCP has no 8C."""
    if acl is None:
        return None
    if not acl:
        return {m: NEVER for m in AM_BITS.values()}
    am, scs = acl[0], list(acl[1:])
    out = {m: NEVER for m in AM_BITS.values()}
    i = 0
    for bit in (0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01):
        if am & bit:
            sc = scs[i] if i < len(scs) else 0xFF
            i += 1
            if bit in AM_BITS:
                out[AM_BITS[bit]] = condition_name(sc)
    return out


@dataclass
class Fcp:
    fdb: int | None = None
    dcb: int | None = None
    record_length: int | None = None
    max_records: int | None = None
    size: int | None = None
    fid: int | None = None
    df_name: bytes | None = None
    sfi: int | None = None
    sfi_present: bool = False
    acl: bytes | None = None

    @classmethod
    def parse(cls, data: bytes) -> Fcp:
        items = parse(data)
        if not items or items[0].tag != 0x62:
            raise TlvError("not an FCP template (62)")
        f = cls()
        for t in items[0].children():
            v = t.value
            if t.tag == 0x82 and v:
                f.fdb = v[0]
                f.dcb = v[1] if len(v) > 1 else None
                if len(v) >= 4:
                    f.record_length = int.from_bytes(v[2:4], "big") if len(v) >= 5 else v[3]
                    f.max_records = v[4] if len(v) >= 5 else None
            elif t.tag == 0x80:
                f.size = int.from_bytes(v, "big")
            elif t.tag == 0x83:
                f.fid = int.from_bytes(v, "big")
            elif t.tag == 0x84:
                f.df_name = v
            elif t.tag == 0x88:
                f.sfi_present = True
                f.sfi = v[0] >> 3 if v else None
            elif t.tag == 0x8C:
                f.acl = v
        return f


# -- talking to the card ----------------------------------------------------------------------


class _Io:
    def __init__(self, channel: CardChannel) -> None:
        self.ch = channel

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        resp = self.ch.transmit(apdu)
        data, sw = resp[:-2], int.from_bytes(resp[-2:], "big")
        while sw >> 8 == 0x61:
            resp = self.ch.transmit(bytes((0x00, 0xC0, 0, 0, sw & 0xFF)))
            data += resp[:-2]
            sw = int.from_bytes(resp[-2:], "big")
        if sw >> 8 == 0x6C:
            resp = self.ch.transmit(apdu[:-1] + bytes((sw & 0xFF,)))
            data, sw = resp[:-2], int.from_bytes(resp[-2:], "big")
        return data, sw

    def select_path(self, path: bytes) -> tuple[bytes, int]:
        """SELECT by path from the MF (P1=08), FCP requested (P2=04)."""
        return self.send(bytes((0x00, 0xA4, 0x08, 0x04, len(path))) + path + b"\x00")

    def select_name(self, name: bytes) -> tuple[bytes, int]:
        return self.send(bytes((0x00, 0xA4, 0x04, 0x04, len(name))) + name + b"\x00")

    def read_binary(self, size: int, sfi: int | None = None) -> tuple[bytes, int]:
        """The whole transparent EF (current, or by SFI), in chunks."""
        out = b""
        offset = 0
        while True:
            want = min(max(size - offset, 1), 256)
            if sfi is not None and offset == 0:
                p1, p2 = 0x80 | sfi, 0x00
            else:
                p1, p2 = (offset >> 8) & 0x7F, offset & 0xFF
            data, sw = self.send(bytes((0x00, 0xB0, p1, p2, want & 0xFF)))
            if sw != 0x9000:
                return out, sw
            out += data
            offset += len(data)
            if not data or offset >= size:
                return out, sw

    def read_record(self, number: int, sfi: int | None = None) -> tuple[bytes, int]:
        p2 = ((sfi or 0) << 3) | 0x04
        return self.send(bytes((0x00, 0xB2, number, p2, 0x00)))


# -- certification ----------------------------------------------------------------------------


class _Results:
    def __init__(self, rules: list[str]) -> None:
        self.rules = rules
        self.fails: dict[str, list[str]] = {r: [] for r in rules}
        self.passes: dict[str, list[str]] = {r: [] for r in rules}
        self.first: dict[str, tuple[str, str]] = {}
        self.na_reason: dict[str, str] = {}

    def check(self, rule: str, ok: bool, evidence: str, expected: str = "", found: str = "") -> bool:
        (self.passes if ok else self.fails)[rule].append(evidence)
        if not ok and rule not in self.first:
            self.first[rule] = (expected, found)
        return ok

    def na(self, rule: str, why: str) -> None:
        self.na_reason.setdefault(rule, why)

    def results(self, unreached: str) -> list[Result]:
        out = []
        for r in self.rules:
            if self.fails[r]:
                exp, found = self.first[r]
                out.append(Result(r, FAIL, "; ".join(self.fails[r]), exp, found))
            elif self.passes[r]:
                out.append(Result(r, PASS, "; ".join(self.passes[r])))
            else:
                out.append(Result(r, NA, self.na_reason.get(r, unreached)))
        return out


def _describe_type(fdb: int | None) -> str:
    return FDB_NAMES.get(fdb, f"{fdb:02X}") if fdb is not None else "none"


def _text(b: bytes) -> str:
    """Printable form of a padded text value for evidence."""
    return b.rstrip(b"\x00").decode("utf-8", errors="replace")


def certify_fs(channel: CardChannel, df: ExpectedDf) -> list[Result]:
    """The FS-* rules for one card against the expected DF."""
    io_ = _Io(channel)
    res = _Results(list(FS_RULE_IDS))
    # the DF: by name, then by path with its FCP
    _, sw = io_.select_name(df.df_name)
    res.check("FS-DF-001", sw == 0x9000, f"SELECT DF name {df.df_name.hex().upper()}: {sw:04X}", "9000", f"{sw:04X}")
    data, sw = io_.select_path(df.fid.to_bytes(2, "big"))
    if sw != 0x9000:
        res.check("FS-DF-001", False, f"SELECT path 3F00/{df.fid:04X}: {sw:04X}", "9000", f"{sw:04X}")
        return res.results(f"not reached: DF {df.fid:04X} not selectable")
    try:
        fcp = Fcp.parse(data)
    except TlvError as exc:
        res.check("FS-DF-001", False, f"DF {df.fid:04X}: FCP unreadable ({exc})")
        fcp = Fcp()
    res.check("FS-DF-001", fcp.fdb == FDB_DF and fcp.df_name == df.df_name,
              f"DF {df.fid:04X}: 82 {_describe_type(fcp.fdb)}, 84 {fcp.df_name.hex().upper() if fcp.df_name else 'absent'}",
              f"DF, {df.df_name.hex().upper()}", f"{_describe_type(fcp.fdb)}, {fcp.df_name.hex().upper() if fcp.df_name else '-'}")  # fmt: skip
    for f in df.files:
        _certify_file(io_, res, df, f)
    return res.results("nothing in the profile for this rule to check")


def _certify_file(io_: _Io, res: _Results, df: ExpectedDf, f: ExpectedFile) -> None:
    label = f"{f.fid_hex} ({f.name})"
    path = df.path(f)
    data, sw = io_.select_path(path)
    if not res.check("FS-SEL-001", sw == 0x9000, f"{label}: SELECT path 3F00/{path.hex().upper()} {sw:04X}", "9000", f"{sw:04X}"):
        return
    try:
        fcp = Fcp.parse(data)
    except TlvError as exc:
        res.check("FS-TYPE-001", False, f"{label}: FCP unreadable ({exc})", "FCP 62", "malformed")
        return
    res.check("FS-TYPE-001", fcp.fdb == f.fdb, f"{label}: file descriptor {_describe_type(fcp.fdb)}",
              _describe_type(f.fdb), _describe_type(fcp.fdb))  # fmt: skip
    if f.fdb == FDB_TRANSPARENT:
        res.check("FS-SIZE-001", fcp.size == f.size, f"{label}: size (80) {fcp.size}", str(f.size), str(fcp.size))
    else:
        got = (fcp.record_length, fcp.max_records)
        res.check("FS-SIZE-001", got == (f.record_length, f.max_records), f"{label}: record length {got[0]}, records {got[1]}",
                  f"{f.record_length} × {f.max_records}", f"{got[0]} × {got[1]}")  # fmt: skip
    res.check("FS-SFI-001", fcp.sfi == f.sfi, f"{label}: SFI (88) {fcp.sfi}", str(f.sfi), str(fcp.sfi))
    access = decode_compact(fcp.acl)
    if access is None:
        res.check("FS-AC-001", False, f"{label}: no security attributes (8C): everything allowed", str(f.access), "none")
    else:
        wrong = {m: access.get(m) for m, want in f.access.items() if access.get(m) != want}
        res.check("FS-AC-001", not wrong, f"{label}: 8C {fcp.acl.hex().upper() if fcp.acl else ''} → "
                  + ", ".join(f"{m} {access.get(m)}" for m in f.access),
                  ", ".join(f"{m} {c}" for m, c in f.access.items() if m in wrong),
                  ", ".join(f"{m} {c}" for m, c in wrong.items()))  # fmt: skip
    readable = f.access.get(READ) == ALWAYS
    if f.fdb == FDB_TRANSPARENT:
        _transparent(io_, res, f, label, readable)
    else:
        _records(io_, res, f, label, readable)
    _no_update_outside_sm(io_, res, df, f, label)


def _transparent(io_: _Io, res: _Results, f: ExpectedFile, label: str, readable: bool) -> None:
    if not readable:
        # refused both on the current EF and by SFI; a 9000 answer is not kept nor shown
        _, sw1 = io_.read_binary(f.size or 1)
        _, sw2 = io_.read_binary(f.size or 1, f.sfi) if f.sfi else (b"", 0x6982)
        ok = sw1 == 0x6982 and sw2 == 0x6982
        res.check("FS-AC-002", ok, f"{label}: READ BINARY must be refused: {sw1:04X}" + (f", by SFI {f.sfi}: {sw2:04X}" if f.sfi else ""),
                  "6982", f"{sw1:04X}/{sw2:04X}" + ("" if ok else " (contents were readable)"))  # fmt: skip
        res.na("FS-DATA-001", "secret files are not read")
        return
    data, sw = io_.read_binary(f.size)
    if not res.check("FS-AC-002", sw == 0x9000, f"{label}: READ BINARY without security {sw:04X}", "9000", f"{sw:04X}"):
        return
    if f.content is not None:
        res.check("FS-DATA-001", data == f.content, f"{label}: {_text(data)!r}" + ("" if data == f.content else f" ({len(data)} bytes)"),
                  _text(f.content), _text(data) if data.rstrip(b'\x00') != f.content.rstrip(b'\x00') else data.hex().upper())  # fmt: skip
    if f.sfi:
        by_sfi, sw = io_.read_binary(f.size, f.sfi)
        res.check("FS-SFI-001", sw == 0x9000 and by_sfi == data, f"{label}: READ BINARY by SFI {f.sfi} {sw:04X}",
                  "same contents", "same" if by_sfi == data else "different")  # fmt: skip


def _records(io_: _Io, res: _Results, f: ExpectedFile, label: str, readable: bool) -> None:
    expected = f.records or ()
    found: list[bytes] = []
    last_sw = 0x9000
    for n in range(1, max(len(expected), 0) + 2):
        if n > 254:
            break
        data, sw = io_.read_record(n, f.sfi)
        if sw != 0x9000:
            last_sw = sw
            break
        found.append(data)
    if not readable:
        res.check("FS-AC-002", last_sw == 0x6982 and not found, f"{label}: READ RECORD must be refused: {last_sw:04X}", "6982", f"{last_sw:04X}")
        return
    if found or last_sw in (0x9000, 0x6A83):
        res.check("FS-AC-002", True, f"{label}: READ RECORD without security")
    else:
        res.check("FS-AC-002", False, f"{label}: READ RECORD 1 answered {last_sw:04X}", "9000", f"{last_sw:04X}")
        return
    for n, want in enumerate(expected, 1):
        got = found[n - 1] if n <= len(found) else None
        if got is None:
            res.check("FS-REC-001", False, f"{label}: record {n} missing ({last_sw:04X}); expected {_text(want)!r}", _text(want), "missing")
        else:
            res.check("FS-REC-001", got == want, f"{label}: record {n} {_text(got)!r}", _text(want), _text(got) if got.rstrip(b"\x00") != want.rstrip(b"\x00") else got.hex().upper())
    if len(found) > len(expected):
        res.check("FS-REC-001", False, f"{label}: unexpected record {len(expected) + 1} {_text(found[len(expected)])!r}", "6A83", "9000")
    elif len(found) == len(expected):
        res.check("FS-REC-001", last_sw == 0x6A83, f"{label}: record {len(expected) + 1} answers {last_sw:04X}", "6A83", f"{last_sw:04X}")


def _no_update_outside_sm(io_: _Io, res: _Results, df: ExpectedDf, f: ExpectedFile, label: str) -> None:
    """UPDATE with the expected contents (so a card that wrongly accepts it is
    left as it should be); files with unknown contents are not written."""
    if f.access.get(UPDATE) in (ALWAYS, None):
        return
    io_.select_path(df.path(f))
    if f.fdb == FDB_TRANSPARENT and f.content is not None:
        body = f.content[:255]
        _, sw = io_.send(bytes((0x00, 0xD6, 0x00, 0x00, len(body))) + body)
        res.check("FS-AC-003", sw == 0x6982, f"{label}: UPDATE BINARY outside the secure channel {sw:04X}", "6982", f"{sw:04X}")
    elif f.records:
        body = f.records[0]
        _, sw = io_.send(bytes((0x00, 0xDC, 0x01, 0x04, len(body))) + body)
        res.check("FS-AC-003", sw == 0x6982, f"{label}: UPDATE RECORD 1 outside the secure channel {sw:04X}", "6982", f"{sw:04X}")


# -- one card ----------------------------------------------------------------------------------------


def certify_fs_card(channel: CardChannel, doc: dict[str, Any], record: dict[str, str], *, keys: Any = None,
                    gp_status: bool = True, card_id: str = "", source: str = "", profile_path: str = "") -> CardReport:  # fmt: skip
    """The :class:`.results.CardReport` of one file-system card."""
    start = time.perf_counter()
    number = record.get("badge_number", "")
    idx = int(record.get("_index", "0") or 0)
    report = CardReport(card_id or number or f"{idx:06d}", mask_number(number), idx, str(doc.get("profile", "")), source,
                        started=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    try:
        df = expected_badge(doc, record)
    except FsSourceError as exc:
        report.error = f"source data: {exc}"
        return report
    report.results.extend(certify_fs(channel, df))
    if gp_status and keys is not None:
        report.results.extend(life_cycle_results(channel, GpCardProfile.from_doc(doc), keys))
    else:
        why = "--no-gp-status given" if not gp_status else "no key store given"
        report.results.extend(Result(r, NOT_RUN, f"{NOT_RUN}: GP life cycles not read: {why}") for r in LIFE_RULES)
    report.seconds = time.perf_counter() - start
    return report

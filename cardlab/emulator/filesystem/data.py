"""Reading and writing EF contents: READ / UPDATE / WRITE BINARY (B0, D6, D0;
ISO 7816-4 §11.2) and READ / UPDATE / APPEND RECORD (B2, DC, E2; §11.3).

Le policy: READ BINARY / READ RECORD return at most Ne bytes; when fewer are
available they return what there is with 9000 (as for Le=00, ISO 7816-4 §5.1:
"all available bytes"); 6282 is never sent. Le absent on a read is 6700.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..apdu import SW, Command, StatusError
from .access import READ, UPDATE, WRITE
from .core import FileSystemCore
from .fcp import FDB_CYCLIC, FDB_LINEAR_VARIABLE, FDB_TRANSPARENT
from .model import EF, FsCursor

if TYPE_CHECKING:
    from ..applet import Context


def _transparent(fs: FileSystemCore, ctx: Context, cmd: Command, mode: int) -> tuple[EF, int]:
    """The EF and offset of READ/UPDATE/WRITE BINARY (§11.2.2): P1 b8=1 → SFI in
    P1 b5-b1 and an 8-bit offset in P2, else a 15-bit offset of the current EF."""
    cur = fs.cursor(ctx)
    if cmd.p1 & 0x80:
        if cmd.p1 & 0x60 or not 1 <= cmd.p1 & 0x1F <= 30:
            raise StatusError(SW.INCORRECT_P1P2)
        assert cur.df is not None
        ef = cur.df.by_sfi(cmd.p1 & 0x1F)
        if ef is None:
            raise StatusError(SW.FILE_NOT_FOUND)
        if ef is not cur.ef:  # §7.2.1: the file referenced by SFI becomes current
            cur.ef, cur.record = ef, None
        offset = cmd.p2
    else:
        if cur.ef is None:
            raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_EF)
        ef = cur.ef
        offset = (cmd.p1 << 8) | cmd.p2
    if ef.spec.fdb != FDB_TRANSPARENT:
        raise StatusError(SW.INCOMPATIBLE_FILE_STRUCTURE)
    fs.require(ctx, ef, mode)
    if offset >= ef.spec.size:
        raise StatusError(SW.WRONG_P1P2, "offset beyond the end of the file")
    return ef, offset


def read_binary(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    if cmd.data:
        raise StatusError(SW.WRONG_LENGTH)
    ef, offset = _transparent(fs, ctx, cmd, READ)
    if cmd.ne is None:
        raise StatusError(SW.WRONG_LENGTH, "READ BINARY without Le")
    return bytes(ef.data[offset : offset + cmd.ne])


def update_binary(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    return _write(fs, ctx, cmd, UPDATE)


def write_binary(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    return _write(fs, ctx, cmd, WRITE)


def _write(fs: FileSystemCore, ctx: Context, cmd: Command, mode: int) -> bytes:
    if not cmd.data:
        raise StatusError(SW.WRONG_LENGTH)
    ef, offset = _transparent(fs, ctx, cmd, mode)
    end = offset + len(cmd.data)
    if end > ef.spec.size:
        raise StatusError(SW.NOT_ENOUGH_MEMORY, "data runs past the end of the file")
    new = cmd.data
    behaviour = ef.spec.dcb & 0x60  # data coding byte b7b6 (§7.4.5)
    if mode == WRITE and behaviour == 0x40:
        new = bytes(a | b for a, b in zip(ef.data[offset:end], new, strict=True))
    elif mode == WRITE and behaviour == 0x60:
        new = bytes(a & b for a, b in zip(ef.data[offset:end], new, strict=True))
    ef.data[offset:end] = new
    fs.dirty = True
    return b""


# -- record EFs (§11.3) --------------------------------------------------------------------------


def _record_ef(fs: FileSystemCore, ctx: Context, cmd: Command, mode: int) -> tuple[FsCursor, EF]:
    """The EF of a record command: SFI in P2 b8-b4 (0: the current EF)."""
    cur = fs.cursor(ctx)
    sfi = cmd.p2 >> 3
    if sfi == 0x1F:
        raise StatusError(SW.INCORRECT_P1P2)
    if sfi:
        assert cur.df is not None
        ef = cur.df.by_sfi(sfi)
        if ef is None:
            raise StatusError(SW.FILE_NOT_FOUND)
        if ef is not cur.ef:
            cur.ef, cur.record = ef, None
    elif cur.ef is None:
        raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_EF)
    else:
        ef = cur.ef
    if not ef.spec.is_record:
        raise StatusError(SW.INCOMPATIBLE_FILE_STRUCTURE)
    fs.require(ctx, ef, mode)
    return cur, ef


def _record_number(cur: FsCursor, ef: EF, cmd: Command) -> int:
    """Record number from P1 and P2 b3-b1 (§11.3.2): 100 = record P1
    (P1=00: the current record); with P1=00, 000 first, 001 last, 010 next,
    011 previous."""
    how = cmd.p2 & 0x07
    count = len(ef.records)
    if how == 0x04:
        if cmd.p1 == 0xFF:
            raise StatusError(SW.INCORRECT_P1P2)
        number = cmd.p1 or cur.record or 0
    elif how <= 0x03:
        if cmd.p1:
            raise StatusError(SW.INCORRECT_P1P2)
        if how == 0x00:
            number = 1
        elif how == 0x01:
            number = count
        elif how == 0x02:
            number = (cur.record or 0) + 1
        else:
            number = cur.record - 1 if cur.record else count
    else:
        raise StatusError(SW.INCORRECT_P1P2)
    if not 1 <= number <= count:
        raise StatusError(SW.RECORD_NOT_FOUND)
    return number


def _check_record_length(ef: EF, data: bytes) -> None:
    ok = (1 <= len(data) <= ef.spec.rec_len) if ef.spec.fdb == FDB_LINEAR_VARIABLE \
        else len(data) == ef.spec.rec_len
    if not ok:
        raise StatusError(SW.WRONG_LENGTH, "record length")


def read_record(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    if cmd.data:
        raise StatusError(SW.WRONG_LENGTH)
    cur, ef = _record_ef(fs, ctx, cmd, READ)
    number = _record_number(cur, ef, cmd)
    if cmd.ne is None:
        raise StatusError(SW.WRONG_LENGTH, "READ RECORD without Le")
    cur.record = number
    return ef.records[number - 1][: cmd.ne]


def update_record(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    cur, ef = _record_ef(fs, ctx, cmd, UPDATE)
    number = _record_number(cur, ef, cmd)
    _check_record_length(ef, cmd.data)
    ef.records[number - 1] = cmd.data
    cur.record = number
    fs.dirty = True
    return b""


def append_record(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    """APPEND RECORD (§11.3.6): P1=00, P2 b3-b1=000."""
    if cmd.p1 or cmd.p2 & 0x07:
        raise StatusError(SW.INCORRECT_P1P2)
    cur, ef = _record_ef(fs, ctx, cmd, WRITE)
    _check_record_length(ef, cmd.data)
    if ef.spec.fdb == FDB_CYCLIC:  # the newest becomes record 1 (§7.3.1)
        ef.records.insert(0, cmd.data)
        del ef.records[ef.spec.max_records :]
        cur.record = 1
    else:
        if len(ef.records) >= ef.spec.max_records:
            raise StatusError(SW.NOT_ENOUGH_MEMORY, "no room for another record")
        ef.records.append(cmd.data)
        cur.record = len(ef.records)
    fs.dirty = True
    return b""

"""SELECT of files (ISO 7816-4 §11.1.1): by FID, by path, by DF name; the FCI/FCP/FMD answer.

The card (:mod:`cardlab.emulator.card`) routes SELECT: registry applications
first when P1=04, then the file system. SELECT answers its template whatever
Le says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardlab.cardspec import tlv

from ..apdu import SW, Command, StatusError
from .core import FileSystemCore
from .model import DF, EF, MF_FID, FsCursor, Node

if TYPE_CHECKING:
    from ..applet import Context


def check_select(fs: FileSystemCore, ctx: Context, cmd: Command) -> None:
    """Resolve the SELECT target or raise (before the card deselects anything)."""
    ctx.notes["fs_target"] = _resolve(fs, ctx, cmd)


def select(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    target = ctx.notes.pop("fs_target", None)
    if not isinstance(target, Node):
        target = _resolve(fs, ctx, cmd)
    cur = fs.cursor(ctx)
    if isinstance(target, DF):
        cur.df, cur.ef = target, None
    else:
        assert isinstance(target, EF) and target.parent is not None
        cur.df, cur.ef = target.parent, target
    cur.record = None
    return answer(target, cmd.p2)


def _resolve(fs: FileSystemCore, ctx: Context, cmd: Command) -> Node:
    if cmd.cla & 0x80:
        raise StatusError(SW.INS_NOT_SUPPORTED)
    p1, p2, data = cmd.p1, cmd.p2, cmd.data
    if p2 & 0xF0:
        raise StatusError(SW.INCORRECT_P1P2)
    occurrence = p2 & 0x03
    if occurrence and not (p1 == 0x04 and occurrence == 0x02):
        raise StatusError(SW.INCORRECT_P1P2, "only first (and next, by DF name) occurrence")
    cur = fs.cursor(ctx)
    if p1 == 0x04:
        return _by_name(fs, ctx, cur, data, occurrence == 0x02)
    if p1 not in (0x00, 0x01, 0x02, 0x03, 0x08, 0x09):
        raise StatusError(SW.INCORRECT_P1P2)
    if p1 == 0x03:
        if data:
            raise StatusError(SW.LC_INCONSISTENT_WITH_P1P2)
        if cur.df is None or cur.df.parent is None:
            raise StatusError(SW.FILE_NOT_FOUND, "the MF has no parent")
        return cur.df.parent
    if p1 == 0x00 and not data:
        return fs.root
    if len(data) % 2 or not data or (p1 in (0x00, 0x01, 0x02) and len(data) != 2):
        raise StatusError(SW.LC_INCONSISTENT_WITH_P1P2)
    fids = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    assert cur.df is not None
    found: Node | None
    if p1 == 0x00:
        found = _by_fid(fs, cur.df, fids[0])
    elif p1 in (0x01, 0x02):
        found = cur.df.child(fids[0])
        if found is not None and isinstance(found, DF) != (p1 == 0x01):
            found = None
    else:  # paths (§7.2.2): 08 from the MF (its FID may lead), 09 from the current DF
        start = fs.root if p1 == 0x08 else cur.df
        if p1 == 0x08 and fids[0] == MF_FID:
            fids = fids[1:]
        found = _walk_path(start, fids)
    if found is None:
        raise StatusError(SW.FILE_NOT_FOUND)
    return found


def _by_fid(fs: FileSystemCore, df: DF, fid: int) -> Node | None:
    """P1=00 (§7.2.1): the MF, a child of the current DF, the current DF,
    its parent, or a child of the parent — in that order."""
    if fid == MF_FID:
        return fs.root
    hit = df.child(fid)
    if hit is not None:
        return hit
    if df.fid == fid:
        return df
    parent = df.parent
    if parent is not None:
        if parent.fid == fid:
            return parent
        return parent.child(fid)
    return None


def _walk_path(start: DF, fids: list[int]) -> Node | None:
    node: Node = start
    for fid in fids:
        if not isinstance(node, DF):
            return None
        nxt = node.child(fid)
        if nxt is None:
            return None
        node = nxt
    return node


def _by_name(fs: FileSystemCore, ctx: Context, cur: FsCursor, name: bytes, following: bool) -> DF:
    """By DF name, partial names allowed (§11.1.1); 'next' continues after the
    current DF when the file system (not an application) is selected."""
    if not name:
        raise StatusError(SW.FILE_NOT_FOUND)
    matches = [n for n in fs.root.walk() if isinstance(n, DF) and n.spec.name.startswith(name)
               and n.spec.name]
    if following and ctx.channel.selected is None and cur.df in matches:
        matches = matches[matches.index(cur.df) + 1 :]
    if not matches:
        raise StatusError(SW.FILE_NOT_FOUND)
    return matches[0]


def answer(node: Node, p2: int) -> bytes:
    """SELECT response by P2 b4b3 (§11.1.1): FCI, FCP, FMD or nothing."""
    kind = p2 & 0x0C
    if kind == 0x0C:
        return b""
    fcp = node.spec.content()
    if kind == 0x04:
        return tlv.encode(0x62, tlv.encode_all(fcp))
    management = fmd(node)
    if kind == 0x08:
        return tlv.encode(0x64, tlv.encode_all(management))
    return tlv.encode(0x6F, tlv.encode_all(fcp + management))


def fmd(node: Node) -> list[tuple[int, bytes]]:
    """File management data (§7.4.1): a named DF carries its name as
    application identifier (4F); other files have none."""
    return [(0x4F, node.spec.name)] if node.spec.name else []

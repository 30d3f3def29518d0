"""CREATE FILE (E0) and DELETE FILE (E4), ISO 7816-9 §6.3 and §6.4.

CREATE FILE takes an FCP (:mod:`.fcp`); the parent DF's access conditions
CREATE EF / CREATE DF, and DELETE CHILD for DELETE FILE, apply (:mod:`.access`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..apdu import SW, Command, StatusError
from .access import CREATE_DF, CREATE_EF, DELETE_CHILD
from .core import FileSystemCore
from .fcp import FileSpec
from .model import DF, EF, FILE_OVERHEAD, MF_FID, Node

if TYPE_CHECKING:
    from ..applet import Context


def create_file(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)
    if not cmd.data:
        raise StatusError(SW.WRONG_LENGTH)
    spec = FileSpec.parse(cmd.data)
    cur = fs.cursor(ctx)
    parent = cur.df
    assert parent is not None
    fs.require(ctx, parent, CREATE_DF if spec.is_df else CREATE_EF)
    if spec.fid == MF_FID or spec.fid == parent.fid or parent.child(spec.fid) is not None:
        raise StatusError(SW.FILE_ALREADY_EXISTS)
    if spec.sfi is not None and parent.by_sfi(spec.sfi) is not None:
        raise StatusError(SW.FILE_ALREADY_EXISTS, "SFI already used in this DF")
    if spec.name and any(isinstance(n, DF) and n.spec.name == spec.name for n in fs.root.walk()):
        raise StatusError(SW.DF_NAME_ALREADY_EXISTS)
    if fs.used() + FILE_OVERHEAD + spec.data_size > fs.budget:
        raise StatusError(SW.NOT_ENOUGH_MEMORY)
    # ISO 7816-9 §6.3: the new file becomes the current one
    if spec.is_df:
        df = DF(spec)
        parent.add(df)
        cur.df, cur.ef = df, None
    else:
        ef = EF(spec, data=bytearray(spec.size))
        parent.add(ef)
        cur.ef = ef
    cur.record = None
    fs.dirty = True
    return b""


def delete_file(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    """P1P2=0000; data: FID of a child of the current DF, or empty for the
    current EF (the current DF when there is none)."""
    if cmd.p1 or cmd.p2:
        raise StatusError(SW.INCORRECT_P1P2)
    cur = fs.cursor(ctx)
    assert cur.df is not None
    target: Node | None
    if not cmd.data:
        target = cur.ef or cur.df
    elif len(cmd.data) == 2:
        target = cur.df.child(int.from_bytes(cmd.data, "big"))
    else:
        raise StatusError(SW.LC_INCONSISTENT_WITH_P1P2)
    if target is None:
        raise StatusError(SW.FILE_NOT_FOUND)
    parent = target.parent
    if parent is None:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "the MF cannot be deleted")
    fs.require(ctx, parent, DELETE_CHILD)
    parent.children.remove(target)
    target.parent = None
    if cur.ef is target or cur.df is target:
        cur.df, cur.ef, cur.record = parent, None, None
    fs.dirty = True
    return b""

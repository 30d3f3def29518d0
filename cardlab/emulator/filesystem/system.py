"""The file system the card talks to: dispatch table, SELECT entry points, persistence.

Commands (ISO 7816-4 §11): SELECT (A4, via :mod:`cardlab.emulator.card`), READ /
UPDATE / WRITE BINARY (B0, D6, D0), READ / UPDATE / APPEND RECORD (B2, DC, E2)
in :mod:`.data`; VERIFY (20), CHANGE REFERENCE DATA (24), RESET RETRY COUNTER
(2C) in :mod:`.pin`; and, from ISO 7816-9, CREATE FILE (E0) and DELETE FILE
(E4) in :mod:`.admin`. Only the interindustry class reaches the file system.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ..apdu import SW, Command, StatusError
from . import admin, data, pin
from . import select as selection
from .core import FileSystemCore
from .model import DEFAULT_BUDGET, DF, Node, Secret
from .persist import default_tree, dump_node, load_node

if TYPE_CHECKING:
    from ..applet import Context

Handler = Callable[[FileSystemCore, "Context", Command], bytes]


class FileSystem(FileSystemCore):
    """The card's file tree, PIN and memory budget, and the commands on them."""

    #: the file system's dispatch table: INS → handler (interindustry class only)
    COMMANDS: ClassVar[dict[int, Handler]] = {
        0xB0: data.read_binary,
        0xD6: data.update_binary,
        0xD0: data.write_binary,
        0xB2: data.read_record,
        0xDC: data.update_record,
        0xE2: data.append_record,
        0xE0: admin.create_file,
        0xE4: admin.delete_file,
        0x20: pin.verify,
        0x24: pin.change_reference_data,
        0x2C: pin.reset_retry_counter,
    }

    # -- persistence -----------------------------------------------------------------
    @classmethod
    def load(cls, data: dict[str, Any]) -> FileSystem:
        """Restore from :meth:`dump` output; an empty dict gives the default tree."""
        if not data or "tree" not in data:
            return cls.default()
        root = load_node(data["tree"])
        if not isinstance(root, DF):
            raise ValueError("the file system root must be a DF")
        return cls(
            root,
            pin=Secret.load(data["pin"]),
            puk=Secret.load(data["puk"]),
            budget=int(data.get("budget", DEFAULT_BUDGET)),
        )

    def dump(self) -> dict[str, Any]:
        return {
            "version": 1,
            "budget": self.budget,
            "pin": self.pin.dump(),
            "puk": self.puk.dump(),
            "tree": dump_node(self.root),
        }

    @classmethod
    def default(cls) -> FileSystem:
        """A new card's file system (:func:`.persist.default_tree`, default PIN and PUK)."""
        return cls(default_tree())

    # -- SELECT (ISO 7816-4 §11.1.1) ---------------------------------------------------
    def check_select(self, ctx: Context, cmd: Command) -> None:
        """Resolve the SELECT target or raise (before the card deselects anything)."""
        selection.check_select(self, ctx, cmd)

    def select(self, ctx: Context, cmd: Command) -> bytes:
        return selection.select(self, ctx, cmd)

    def answer(self, node: Node, p2: int) -> bytes:
        """SELECT response by P2 b4b3 (§11.1.1): FCI, FCP, FMD or nothing."""
        return selection.answer(node, p2)

    fmd = staticmethod(selection.fmd)

    # -- dispatch -----------------------------------------------------------------------
    def process(self, ctx: Context, cmd: Command) -> bytes:
        if cmd.cla & 0x80:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        handler = self.COMMANDS.get(cmd.ins)
        if handler is None:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        return handler(self, ctx, cmd)

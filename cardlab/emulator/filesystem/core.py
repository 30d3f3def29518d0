"""The file system's state and the helpers every file command uses.

:class:`FileSystemCore` holds the tree, the PIN/PUK and the memory budget;
the commands (:mod:`.select`, :mod:`.data`, :mod:`.admin`, :mod:`.pin`) are
functions of it, and :class:`~.system.FileSystem` adds their dispatch table
and persistence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..apdu import SW, StatusError
from .access import condition_met
from .model import (
    DEFAULT_BUDGET,
    DEFAULT_PIN,
    DEFAULT_PUK,
    DF,
    FILE_OVERHEAD,
    PIN_REF,
    PIN_TRIES,
    PUK_TRIES,
    FsCursor,
    Node,
    Secret,
)

if TYPE_CHECKING:
    from ..applet import Context


class FileSystemCore:
    """The card's file tree, PIN and memory budget."""

    def __init__(
        self, root: DF, *, pin: Secret | None = None, puk: Secret | None = None, budget: int = DEFAULT_BUDGET
    ) -> None:
        self.root = root
        self.pin = pin or Secret(DEFAULT_PIN, PIN_TRIES, PIN_TRIES)
        self.puk = puk or Secret(DEFAULT_PUK, PUK_TRIES, PUK_TRIES)
        self.budget = budget
        #: persistent content changed; the card saves and resets it
        self.dirty = False

    def attached(self, node: Node) -> bool:
        while node.parent is not None:
            if node not in node.parent.children:
                return False
            node = node.parent
        return node is self.root

    def cursor(self, ctx: Context) -> FsCursor:
        """The channel's cursor, repaired if its files were deleted meanwhile."""
        cur = ctx.channel.fs
        if cur is None:
            cur = ctx.channel.fs = FsCursor.at_mf(self)
        if cur.df is None or not self.attached(cur.df):
            cur.df, cur.ef, cur.record = self.root, None, None
        if cur.ef is not None and not self.attached(cur.ef):
            cur.ef, cur.record = None, None
        return cur

    def used(self) -> int:
        return sum(FILE_OVERHEAD + n.spec.data_size for n in self.root.walk())

    @staticmethod
    def require(ctx: Context, node: Node, mode: int) -> None:
        """6982 unless the node's access condition for ``mode`` holds (§7.4.3): SM
        means an authenticated GP secure channel on this logical channel, user
        authentication the global PIN verified since power-on."""
        sc = node.spec.rule(mode)
        if not condition_met(
            sc, secure_channel=ctx.authenticated, pin_verified=PIN_REF in ctx.card.security.pin_verified
        ):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "access condition not satisfied")

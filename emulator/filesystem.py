"""ISO 7816-4 file system (SKELETON — the file-system helper replaces it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .apdu import SW, Command, StatusError

if TYPE_CHECKING:
    from .applet import Context


@dataclass
class FsCursor:
    """Per-channel position in the file tree."""

    @classmethod
    def at_mf(cls, fs: FileSystem) -> FsCursor:
        return cls()


class FileSystem:
    def __init__(self) -> None:
        self.dirty = False

    @classmethod
    def load(cls, data: dict[str, Any]) -> FileSystem:
        return cls()

    def dump(self) -> dict[str, Any]:
        return {}

    def check_select(self, ctx: Context, cmd: Command) -> None:
        raise StatusError(SW.FILE_NOT_FOUND)

    def select(self, ctx: Context, cmd: Command) -> bytes:
        raise StatusError(SW.FILE_NOT_FOUND)

    def process(self, ctx: Context, cmd: Command) -> bytes:
        raise StatusError(SW.INS_NOT_SUPPORTED)

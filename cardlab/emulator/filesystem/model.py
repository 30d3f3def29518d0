"""The file model: the MF/DF/EF tree, the per-channel cursor and the PIN/PUK.

The tree is plain Python objects (:class:`DF`, :class:`EF`), each described by
its :class:`~.fcp.FileSpec`. Each logical channel has its own
:class:`FsCursor` (current DF, current EF, current record; ISO 7816-4 §7.2.1
and §5.4.1). Record EFs are created empty and grow with APPEND RECORD (a
cyclic EF then overwrites its oldest record; record 1 is always the newest,
§7.3.1).

PIN (ISO 7816-4 §11.5): one global PIN, reference 01 (VERIFY P2=01), 3 tries,
format: 4 to 8 ASCII digits padded with FF to 8 bytes. **Default PIN of a new
card: "1234", i.e. 31 32 33 34 FF FF FF FF.** The unblocking code (PUK, RESET
RETRY COUNTER) is 8 bytes, default ASCII "12345678", 10 tries. Try counters are
decremented and the file system marked dirty *before* the comparison, so the
card image is saved with the spent try before any answer leaves (ARCHITECTURE.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..apdu import SW, StatusError
from .fcp import FileSpec

MF_FID = 0x3F00

PIN_REF = 0x01
PIN_LENGTH = 8
DEFAULT_PIN = b"1234".ljust(PIN_LENGTH, b"\xff")
DEFAULT_PUK = b"12345678"
PIN_TRIES = 3
PUK_TRIES = 10

#: total memory for EF contents and file headers (6A84 beyond it)
DEFAULT_BUDGET = 16384
#: bytes charged per file on top of its contents
FILE_OVERHEAD = 32


@dataclass(eq=False)
class Node:
    spec: FileSpec
    parent: DF | None = field(default=None, repr=False)

    @property
    def fid(self) -> int:
        return self.spec.fid


@dataclass(eq=False)
class EF(Node):
    data: bytearray = field(default_factory=bytearray)
    #: records[0] is record number 1 (for cyclic files: the newest, §7.3.1)
    records: list[bytes] = field(default_factory=list)


@dataclass(eq=False)
class DF(Node):
    children: list[Node] = field(default_factory=list)

    def child(self, fid: int) -> Node | None:
        for node in self.children:
            if node.fid == fid:
                return node
        return None

    def by_sfi(self, sfi: int) -> EF | None:
        for node in self.children:
            if isinstance(node, EF) and node.spec.sfi == sfi:
                return node
        return None

    def walk(self) -> Iterator[Node]:
        """Pre-order: this DF, then each child subtree in creation order."""
        yield self
        for node in self.children:
            if isinstance(node, DF):
                yield from node.walk()
            else:
                yield node

    def add(self, node: Node) -> Node:
        node.parent = self
        self.children.append(node)
        return node


class HasRoot(Protocol):
    @property
    def root(self) -> DF: ...


class HasDirty(Protocol):
    dirty: bool


@dataclass
class FsCursor:
    """Per-channel position in the file tree (§7.2.1)."""

    df: DF | None = None
    ef: EF | None = None
    #: current record number (1-based), or None
    record: int | None = None

    @classmethod
    def at_mf(cls, fs: HasRoot) -> FsCursor:
        return cls(fs.root)


@dataclass
class Secret:
    """A PIN or PUK and its try counter (persistent)."""

    value: bytes
    tries: int
    max_tries: int

    def check(self, fs: HasDirty, offered: bytes) -> bool:
        """Spend a try, mark the file system dirty, then compare (never the
        other way round: a power cut must not give a free try)."""
        if self.tries <= 0:
            raise StatusError(SW.AUTH_METHOD_BLOCKED)
        self.tries -= 1
        fs.dirty = True
        ok = hmac.compare_digest(offered, self.value)
        if ok:
            self.tries = self.max_tries
        return ok

    def failed(self) -> StatusError:
        return StatusError(SW.VERIFY_FAILED | min(self.tries, 15), "verification failed")

    def dump(self) -> dict[str, Any]:
        return {"value": self.value.hex(), "tries": self.tries, "max": self.max_tries}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Secret:
        return cls(bytes.fromhex(data["value"]), int(data["tries"]), int(data["max"]))


def valid_pin_format(pin: bytes) -> bool:
    """4..8 ASCII digits padded with FF to 8 bytes."""
    digits = pin.rstrip(b"\xff")
    return len(pin) == PIN_LENGTH and 4 <= len(digits) and digits.isdigit() and digits.isascii()

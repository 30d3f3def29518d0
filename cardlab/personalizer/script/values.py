"""The values a step builds its command data from: clear bytes and
:class:`Secret` pieces (known only while a step is built, or only by their
length when rendering), an application's DGI list, and the error of evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..batch import Sealed

__all__ = ["Data", "DgiList", "EvalError", "Lazy", "Piece", "Secret"]


@dataclass(frozen=True)
class Secret:
    """A secret piece of command data. ``value`` is what goes to the card:
    clear (``encrypted=False``: only inside a C-DEC channel) or already
    encrypted for the card; ``None`` when rendering (no key store)."""

    label: str
    length: int  # exact when value is set, an upper bound otherwise
    value: bytes | None = field(default=None, repr=False)
    encrypted: bool = False


Piece = bytes | Secret


@dataclass(frozen=True)
class Data:
    """Command data: clear bytes and secret pieces."""

    pieces: tuple[Piece, ...] = ()

    @classmethod
    def of(cls, *items: Piece | Data) -> Data:
        out: list[Piece] = []
        for item in items:
            for p in item.pieces if isinstance(item, Data) else (item,):
                if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
                    out[-1] = out[-1] + p
                elif not (isinstance(p, bytes) and not p):
                    out.append(p)
        return cls(tuple(out))

    def __len__(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.length for p in self.pieces)

    @property
    def exact(self) -> bool:
        return all(isinstance(p, bytes) or p.value is not None for p in self.pieces)

    @property
    def has_clear_secret(self) -> bool:
        return any(isinstance(p, Secret) and not p.encrypted for p in self.pieces)

    @property
    def secret(self) -> bool:
        return any(isinstance(p, Secret) for p in self.pieces)

    def clear(self) -> bytes | None:
        """The bytes when there is no secret piece."""
        if self.secret:
            return None
        return b"".join(p for p in self.pieces if isinstance(p, bytes))

    def materialize(self) -> bytes:
        out = b""
        for p in self.pieces:
            if isinstance(p, bytes):
                out += p
            elif p.value is None:
                raise EvalError(f"{p.label} is not available")
            else:
                out += p.value
        return out

    def show(self, mask: Callable[[str], str]) -> str:
        out = []
        for p in self.pieces:
            out.append(mask(p.hex().upper()) if isinstance(p, bytes) else f"<{p.label}>")
        return " ".join(out)


@dataclass(frozen=True)
class DgiList:
    """An application's prepared DGIs (``${app.dgis}``)."""

    items: tuple[tuple[int, bytes | Sealed], ...]


class EvalError(ValueError):
    pass


@dataclass(frozen=True)
class Lazy:
    """A runtime-only value (``session.*``) while rendering."""

    label: str

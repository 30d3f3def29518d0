"""What goes wrong in data preparation: the whole batch (:class:`PrepareError`) or one
record (:class:`CardProblem`, which the batch writes to ``rejected.jsonl`` and goes on)."""

from __future__ import annotations

__all__ = ["CardProblem", "PrepareError"]


class PrepareError(Exception):
    """The batch cannot be prepared at all (profile, keys, output directory)."""


class CardProblem(ValueError):
    """One record cannot be prepared; it is rejected with ``field`` and the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


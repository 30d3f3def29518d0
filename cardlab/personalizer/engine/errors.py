"""The two errors of the perso engine: one stops the run, the other one card."""

from __future__ import annotations


class EngineError(RuntimeError):
    """Something that stops the run (not one card): message safe to print."""


class CardError(RuntimeError):
    """One card went wrong outside the script (transport, identity)."""

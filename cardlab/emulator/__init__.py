"""cardlab's emulated smart card: ISO 7816-4 OS, GlobalPlatform card manager,
SCP03. The public entry point is :class:`Card`."""

from .card import Card

__all__ = ["Card"]

"""How the tester talks to a card: one small protocol, one real transport.

Everything in the tester takes a :class:`CardChannel`. The only transport is
PC/SC through pyscard (:class:`PyscardChannel`): a physical card in a reader,
the emulated card served through pcscd, and the emulated card behind cardlab's
pyscard reader plug-in (registered by the ``cardlab`` command line, never
imported here) all take this same code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class CardChannel(Protocol):
    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU, return response data ‖ SW1 SW2."""
        ...

    def atr(self) -> bytes: ...


@dataclass
class Exchange:
    command: bytes
    response: bytes


@dataclass
class RecordingChannel:
    """Wraps a transmit function and keeps every exchange (for traces and
    reports); also what tests use with a plain function."""

    send: Callable[[bytes], bytes]
    answer_to_reset: bytes = b""
    log: list[Exchange] = field(default_factory=list)

    def transmit(self, apdu: bytes) -> bytes:
        resp = self.send(apdu)
        self.log.append(Exchange(apdu, resp))
        return resp

    def atr(self) -> bytes:
        return self.answer_to_reset


class PyscardChannel:
    """A card in a PC/SC reader (or any reader pyscard lists) by name."""

    def __init__(self, reader_name: str) -> None:
        from smartcard.System import readers

        matches = [r for r in readers() if str(r) == reader_name or str(r).startswith(reader_name)]
        if not matches:
            raise LookupError(f"no reader named {reader_name!r}")
        self.connection = matches[0].createConnection()
        self.connection.connect()

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data) + bytes((sw1, sw2))

    def atr(self) -> bytes:
        return bytes(self.connection.getATR())

    def close(self) -> None:
        self.connection.disconnect()

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

#: pyscard's protocol masks (smartcard.CardConnection.CardConnection.T0_protocol / T1_protocol)
_PYSCARD_T0, _PYSCARD_T1 = 0x1, 0x2
#: at most this many GET RESPONSEs for one command (256 bytes each)
_MAX_GET_RESPONSE = 64


def follow_t0(send: Callable[[bytes], bytes], apdu: bytes) -> bytes:
    """``apdu`` through ``send`` as the application layer sees it over T=0 (EMV 4.4 Book 1 §9.3.1):
    ``61xx`` → GET RESPONSE ``00 C0 00 00 xx`` until the data is complete; ``6Cxx`` → the same
    command again with Le = xx. A T=1 card never answers either, so this is harmless there.

    >>> answers = {"80CA9F1700": "6C01", "80CA9F1701": "039000"}
    >>> follow_t0(lambda c: bytes.fromhex(answers[c.hex().upper()]), bytes.fromhex("80CA9F1700")).hex()
    '039000'
    """
    resp = send(apdu)
    if len(resp) >= 2 and resp[-2] == 0x6C and len(apdu) >= 5:
        # case 2 (Le last) or case 4 (Le after the data): the same command with Le = xx
        resp = send(apdu[:-1] + resp[-1:])
    data = b""
    for _ in range(_MAX_GET_RESPONSE):
        if len(resp) < 2 or resp[-2] != 0x61:
            break
        data += resp[:-2]
        # GET RESPONSE on the command's logical channel (ISO/IEC 7816-4 §5.4.1: CLA b2b1 or b4b1)
        cla = apdu[0] & (0x0F if apdu[0] & 0x40 else 0x03) | (apdu[0] & 0x40)
        resp = send(bytes((cla, 0xC0, 0x00, 0x00, resp[-1])))
    return data + resp


class CardChannel(Protocol):
    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU, return response data ‖ SW1 SW2 (T=0's 61xx / 6Cxx already followed)."""
        ...

    def atr(self) -> bytes: ...


@dataclass
class Exchange:
    command: bytes
    response: bytes


@dataclass
class RecordingChannel:
    """Wraps a transmit function and keeps every exchange (for traces and
    reports); also what tests use with a plain function. T=0's 61xx / 6Cxx are
    followed here (:func:`follow_t0`), so ``log`` holds one exchange per command;
    ``protocol`` is what the transport said it used ("T=0", "T=1"), "" when unknown."""

    send: Callable[[bytes], bytes]
    answer_to_reset: bytes = b""
    log: list[Exchange] = field(default_factory=list)
    protocol: str = ""

    def transmit(self, apdu: bytes) -> bytes:
        resp = follow_t0(self.send, apdu)
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

    @property
    def protocol(self) -> str:
        """The protocol the reader uses with the card ("T=0" or "T=1"), as PC/SC reports it."""
        active = int(self.connection.getProtocol() or 0)
        return "T=0" if active == _PYSCARD_T0 else "T=1" if active == _PYSCARD_T1 else f"mask {active:#x}"

    def _send(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data) + bytes((sw1, sw2))

    def transmit(self, apdu: bytes) -> bytes:
        # pyscard passes T=0's procedure answers through as status words: follow them here
        return follow_t0(self._send, apdu)

    def atr(self) -> bytes:
        return bytes(self.connection.getATR())

    def close(self) -> None:
        self.connection.disconnect()

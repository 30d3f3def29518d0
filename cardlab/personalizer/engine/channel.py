"""The card channel: a card in a PC/SC reader, by reader name (pyscard).

Emulated cards sit in a private emulated reader (the pyscard plug-in,
:mod:`cardlab.emulator.transports.pyscard_reader`), real cards in a real one;
above :class:`PcscChannel` nothing knows the difference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from cardlab.personalizer.engine.errors import CardError

#: ``transmit(command APDU) -> response data ‖ SW``
Transmit = Callable[[bytes], bytes]

SW_OK = 0x9000


def status_word(resp: bytes) -> int:
    """The status word at the end of a response APDU (0 when there is none)."""
    return int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0


class PcscChannel:
    """A connection to the card in a PC/SC reader (pyscard), by reader name.

    ``transmit(bytes) -> bytes`` (response data ‖ SW), with T=0 chaining done
    here: 61xx → GET RESPONSE, 6Cxx → the command again with Le = xx.
    """

    def __init__(self, reader: str) -> None:
        from smartcard.System import readers

        found = [r for r in readers() if str(r) == reader] or [r for r in readers() if reader in str(r)]
        if not found:
            raise CardError(f"no reader named {reader!r}")
        if len(found) > 1:
            raise CardError(f"reader name {reader!r} is ambiguous: {', '.join(str(r) for r in found)}")
        self.reader = str(found[0])
        self._conn = found[0].createConnection()
        try:
            self._conn.connect()
        except BaseException:
            self.close()  # no card (or no card service): release the context now, not in __del__
            raise

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self._conn.transmit(list(apdu))
        out = bytes(data)
        while sw1 == 0x61:
            more, sw1, sw2 = self._conn.transmit([apdu[0] & 0x03, 0xC0, 0x00, 0x00, sw2])
            out += bytes(more)
        if sw1 == 0x6C and len(apdu) >= 5:
            data, sw1, sw2 = self._conn.transmit(list(apdu[:-1]) + [sw2])
            out = bytes(data)
        return out + bytes((sw1, sw2))

    def atr(self) -> bytes:
        return bytes(self._conn.getATR())

    def close(self) -> None:
        """Disconnect and release the PC/SC context now: left to pyscard's ``__del__``, a context
        whose card service went away (pcscd restarted) prints a traceback on stderr."""
        inner = getattr(self._conn, "component", self._conn)
        for step in (getattr(inner, "disconnect", None), getattr(inner, "release", None)):
            if step is not None:
                with contextlib.suppress(Exception):
                    step()
        if getattr(inner, "hcontext", None) is not None:
            inner.hcontext = None  # released, or its service is gone: nothing left to release


def card_present(reader: str) -> bool:
    """Whether a card answers in ``reader`` (used to wait for insertion and removal)."""
    try:
        PcscChannel(reader).close()
    except Exception:  # noqa: BLE001 - NoCardException, CardConnectionException, pcsc errors
        return False
    return True

"""T=0 seen from the application layer: ``61xx`` / GET RESPONSE and ``6Cxx`` (sans-I/O).

Under T=0 a card cannot send data in answer to a command that carried data, and
it must be told the exact length of data to send (ISO/IEC 7816-3 §12.2, EMV 4.4
Book 1 §9.3.1). A PC/SC reader passes these procedure-level answers to the
application as status words, so a T=0 card behind pcscd answers:

* case 4 (data in, data out): ``61xx`` (xx = bytes waiting, 00 for 256 or more);
  the terminal fetches them with GET RESPONSE ``00 C0 00 00 xx`` (EMV Book 1 §9.3.1.3);
* case 2 (data out) whose Le is not the length of the data: ``6Cxx`` (xx = the
  length); the terminal sends the same command again with Le = xx (§9.3.1.2).
  The card keeps the answer for that repeat, so a command is executed once;
* GET RESPONSE with nothing waiting (no previous ``61xx``, or another command
  came in between): ``6985`` conditions of use not satisfied (ISO/IEC 7816-4
  §5.6 table 6 — the condition of GET RESPONSE, data left by the previous
  command, is not met; EMV Book 1 leaves the case to ISO);
* GET RESPONSE whose Le exceeds what is waiting: ``6Cxx`` with what is waiting;
  Le smaller: that many bytes and ``61xx`` for the rest.

A warning status (62xx/63xx) that comes with data in a case 4 command is kept and
answered after the data by the last GET RESPONSE. Cases 1 and 3, and extended
length commands (T=0 carries them in ENVELOPE, which this card does not need),
pass unchanged. With T=1 none of this applies: the card answers directly.

>>> t0 = T0Layer()
>>> card = lambda c: bytes.fromhex("6F0784A0000000031010") + b"\\x90\\x00"
>>> t0.transmit(bytes.fromhex("00A4040007A000000003101000"), card).hex().upper()
'610A'
>>> t0.transmit(bytes.fromhex("00C000000A"), card).hex().upper()
'6F0784A00000000310109000'
>>> t0.transmit(bytes.fromhex("00C000000A"), card).hex().upper()
'6985'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

INS_GET_RESPONSE = 0xC0
SW_NOTHING_WAITING = b"\x69\x85"
SW_WRONG_P1P2 = b"\x6A\x86"


def _case(raw: bytes) -> int:
    """The ISO/IEC 7816-4 §5.2 case of a short command (0 when extended or malformed)."""
    if len(raw) == 4:
        return 1
    if len(raw) == 5:
        return 2
    if len(raw) < 6 or raw[4] == 0:
        return 0
    lc = raw[4]
    if len(raw) == 5 + lc:
        return 3
    if len(raw) == 6 + lc:
        return 4
    return 0


def _sw_more(n: int) -> bytes:
    return bytes((0x61, n if n < 256 else 0))


@dataclass
class T0Layer:
    """The T=0 answers of one card between two resets (see the module text)."""

    #: data + SW left for GET RESPONSE
    waiting: bytes | None = None
    #: (command without Le, full response) after a 6Cxx, for the repeat with Le = xx
    repeat: tuple[bytes, bytes] | None = None

    def reset(self) -> None:
        self.waiting = None
        self.repeat = None

    def transmit(self, raw: bytes, process: Callable[[bytes], bytes]) -> bytes:
        waiting, self.waiting = self.waiting, None
        repeat, self.repeat = self.repeat, None
        case = _case(raw)
        if case == 2 and raw[1] == INS_GET_RESPONSE and not raw[0] & 0x80:
            return self._get_response(raw, waiting)
        if case == 2 and repeat is not None and repeat[0] == raw[:4]:
            response = repeat[1]
        else:
            response = process(raw)
        data, sw = response[:-2], response[-2:]
        if not data:
            return response
        if case == 2:
            le = raw[4] or 256
            if len(data) == le:
                return response
            if len(data) < 256:
                self.repeat = (raw[:4], response)
                return bytes((0x6C, len(data)))
            return self._serve(data, sw, le)
        if case == 4:
            self.waiting = response
            return _sw_more(len(data))
        return response

    def _get_response(self, raw: bytes, waiting: bytes | None) -> bytes:
        if raw[2:4] != b"\x00\x00":
            self.waiting = waiting
            return SW_WRONG_P1P2
        if waiting is None:
            return SW_NOTHING_WAITING
        data, sw = waiting[:-2], waiting[-2:]
        le = raw[4] or 256
        if le > len(data):
            self.waiting = waiting
            return bytes((0x6C, len(data)))
        return self._serve(data, sw, le)

    def _serve(self, data: bytes, sw: bytes, le: int) -> bytes:
        """``le`` bytes now, the rest for the next GET RESPONSE."""
        if le >= len(data):
            return data + sw
        self.waiting = data[le:] + sw
        return data[:le] + _sw_more(len(data) - le)

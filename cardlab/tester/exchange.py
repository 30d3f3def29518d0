"""APDU exchange and trace bookkeeping shared by the kernel steps.

Every command goes through :func:`send`, which follows ``61xx`` (GET
RESPONSE) and ``6Cxx`` (wrong Le) as the transport layer does (EMV Book 1
§9.3.1.3 / ISO 7816-4), and records one :class:`~tester.state.TraceEvent` per
command. A VERIFY command is recorded *without* its data: no PIN block,
plain or enciphered, ever reaches a trace or a log.
"""

from __future__ import annotations

from collections.abc import Iterable

from .channel import CardChannel
from .state import TraceEvent, TransactionState

INS_VERIFY = 0x20


def redact(command: bytes) -> bytes:
    """The command as it may be recorded: VERIFY keeps only its header and Lc."""
    if len(command) >= 2 and command[1] == INS_VERIFY:
        return command[:5]
    return command


class NoStatusWord(Exception):
    """The card's answer carried no status word (fewer than 2 bytes, ISO/IEC 7816-4 §5.1): a
    transport fault, reported as such — the tester never makes a status word up."""


def answer(apdu: bytes, resp: bytes) -> tuple[bytes, int]:
    """(data, SW) of a response APDU; :class:`NoStatusWord` when it has none."""
    if len(resp) < 2:
        raise NoStatusWord(f"command {apdu[:4].hex().upper()} got {len(resp)} byte(s) back: no status word")
    return resp[:-2], int.from_bytes(resp[-2:], "big")


def _raw(channel: CardChannel, apdu: bytes) -> tuple[bytes, int]:
    data, sw = answer(apdu, channel.transmit(apdu))
    guard = 0
    while sw >> 8 == 0x61 and guard < 32:
        get_response = bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF))
        more, sw = answer(get_response, channel.transmit(get_response))
        data += more
        guard += 1
    if sw >> 8 == 0x6C and len(apdu) >= 5:
        return _raw(channel, apdu[:-1] + bytes((sw & 0xFF,)) if len(apdu) > 5 else apdu[:4] + bytes((sw & 0xFF,)))
    return data, sw


def send(state: TransactionState, channel: CardChannel, apdu: bytes, step: str, reference: str,
         text: str) -> tuple[bytes, int]:
    """Send ``apdu``; record it with ``text`` (what the command is for)."""
    data, sw = _raw(channel, apdu)
    state.events.append(TraceEvent(step, reference, "apdu", text, redact(apdu), data + sw.to_bytes(2, "big")))
    return data, sw


def case4(header: bytes, data: bytes) -> bytes:
    return header + bytes((len(data),)) + data + b"\x00"


def event(state: TransactionState, step: str, reference: str, kind: str, text: str,
          *, tvr: Iterable[str] = (), tsi: Iterable[str] = ()) -> None:
    """A decision/check/note; sets the named TVR and TSI bits and names them."""
    bits: list[str] = []
    for name in tvr:
        state.set_tvr(name)
        bits.append(name)
    for name in tsi:
        state.set_tsi(name)
        bits.append(name)
    state.events.append(TraceEvent(step, reference, kind, text, bits_set=bits))


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits (PCI DSS 3.4 style); shorter PANs show less."""
    pan = pan.upper().rstrip("F")
    if len(pan) <= 10:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]

"""The ATR a PC/SC reader builds for a contactless card (PC/SC Part 3 §3.1.3.2.3):
``3B 8n 80 01`` ‖ n historical bytes (ISO 14443-4 Type A: the ATS historical bytes;
Type B: application data, protocol info, MBLI) ‖ TCK. The card sends no ATR over
the air: the trace says so instead of holding it to the EMV contact rules.
"""

from __future__ import annotations

from functools import reduce

from ..state import TraceEvent, TransactionState

STEP = "Card detection (contactless)"
REF = "PC/SC Part 3 §3.1.3.2.3; EMV Contactless Book D"


def check(atr: bytes) -> list[str]:
    """What is wrong with ``atr`` as a PC/SC Part 3 contactless ATR ([] when nothing).

    >>> check(bytes.fromhex("3B8180018080"))
    []
    """
    if len(atr) < 5:
        return [f"{len(atr)} bytes: too short for 3B 8n 80 01 … TCK"]
    problems = []
    n = atr[1] & 0x0F
    if atr[0] != 0x3B:
        problems.append(f"TS {atr[0]:02X}, expected 3B")
    if atr[1] & 0xF0 != 0x80:
        problems.append(f"T0 {atr[1]:02X}, expected 8n (TD1 present)")
    if atr[2:4] != b"\x80\x01":
        problems.append(f"TD1 TD2 {atr[2:4].hex().upper()}, expected 80 01 (T=0 then T=1)")
    if len(atr) != 4 + n + 1:
        problems.append(f"{len(atr)} bytes where T0 announces {n} historical bytes and TCK ({4 + n + 1})")
    if reduce(lambda x, y: x ^ y, atr[1:], 0) != 0:
        problems.append("TCK does not make T0 … TCK XOR to 00")
    return problems


def contactless_atr(state: TransactionState, atr: bytes) -> TransactionState:
    if not atr:
        return state
    problems = check(atr)
    hist = atr[4:-1] if not problems else b""
    text = (f"ATR {atr.hex().upper()}: the PC/SC contactless form, {len(hist)} historical byte(s) "
            f"{hist.hex().upper() or '-'} (from the card's ATS or ATQB)" if not problems
            else f"ATR {atr.hex().upper()} is not the PC/SC contactless form: {'; '.join(problems)}")
    state.events.append(TraceEvent(STEP, REF, "check", text))
    return state

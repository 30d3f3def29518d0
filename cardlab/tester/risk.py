"""Terminal risk management (EMV 4.4 Book 3 §10.6) and terminal action
analysis (Book 3 §10.7).

Risk management: floor limit (§10.6.1), random transaction selection
(§10.6.2), velocity checking with the ATC and the last online ATC (§10.6.3);
the merchant may force the transaction online (Book 4 §6.5.3).

Action analysis compares the TVR with the issuer action codes (9F0E denial,
9F0F online, 9F0D default; absent: denial all zeros, online and default all
ones) and the terminal action codes, in that order: denial → AAC; online (an
online-capable terminal) → ARQC; otherwise TC. An offline-only terminal uses
the default codes instead of the online ones.
"""

from __future__ import annotations

import random

from .channel import CardChannel
from .exchange import event, send
from .state import TVR_BITS, TransactionState
from .terminal import TerminalProfile

STEP_TRM = "Terminal risk management"
STEP_TAA = "Terminal action analysis"
REF_TRM = "EMV Book 3 §10.6"
REF_TAA = "EMV Book 3 §10.7"

AAC, TC, ARQC = 0x00, 0x40, 0x80
NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}


# -- terminal risk management --------------------------------------------------------------


def random_selection_percent(terminal: TerminalProfile, amount: int) -> float:
    """The chance (0–99) the amount is selected (Book 3 §10.6.2): the target
    percentage under the threshold, rising linearly to the maximum at the floor limit."""
    if amount >= terminal.floor_limit:
        return 0.0
    if amount < terminal.random_threshold or terminal.floor_limit <= terminal.random_threshold:
        return float(terminal.random_target_percent)
    span = terminal.floor_limit - terminal.random_threshold
    rise = (terminal.random_max_percent - terminal.random_target_percent) * (amount - terminal.random_threshold) / span
    return terminal.random_target_percent + rise


def _get_data(state: TransactionState, channel: CardChannel, tag: int, what: str) -> bytes | None:
    data, sw = send(state, channel, bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00)), STEP_TRM,
                    "EMV Book 3 §10.6.3, §6.5.7", f"GET DATA {what} ({tag:X})")
    head = tag.to_bytes(2, "big")
    if sw != 0x9000 or len(data) < 5 or data[:2] != head or data[2] != len(data) - 3:
        return None
    value = data[3:]
    state.card_data[tag] = value
    return value


def terminal_risk_management(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    if state.extras.get("force_online"):
        event(state, STEP_TRM, "EMV Book 4 §6.5.3", "decision", "the merchant forces the transaction online",
              tvr=("merchant forced transaction online",))
    if not state.aip or not state.aip[0] & 0x08:
        event(state, STEP_TRM, REF_TRM, "decision",
              "the AIP does not ask for terminal risk management: not performed")
        return state
    # floor limit (§10.6.1)
    if state.amount >= terminal.floor_limit:
        event(state, STEP_TRM, "EMV Book 3 §10.6.1", "decision",
              f"amount {state.amount} reaches the floor limit {terminal.floor_limit}",
              tvr=("transaction exceeds floor limit",))
    else:
        event(state, STEP_TRM, "EMV Book 3 §10.6.1", "check",
              f"amount {state.amount} is under the floor limit {terminal.floor_limit}")
    # random transaction selection (§10.6.2), online-capable terminals only
    if terminal.online_capable and state.amount < terminal.floor_limit and (
            terminal.random_target_percent or terminal.random_max_percent):
        rng: random.Random = state.extras.get("rng") or random.Random()
        number = rng.randint(1, 99)
        percent = random_selection_percent(terminal, state.amount)
        if number <= percent:
            event(state, STEP_TRM, "EMV Book 3 §10.6.2", "decision",
                  f"random number {number} ≤ {percent:.1f} %: selected for online processing",
                  tvr=("transaction selected randomly for online processing",))
        else:
            event(state, STEP_TRM, "EMV Book 3 §10.6.2", "check", f"random number {number} > {percent:.1f} %: not selected")
    # velocity checking (§10.6.3)
    lcol, ucol = state.card_data.get(0x9F14), state.card_data.get(0x9F23)
    if not terminal.velocity_check:
        event(state, STEP_TRM, "EMV Book 3 §10.6.3", "note", "velocity checking is off in this terminal")
    elif lcol is None or ucol is None:
        event(state, STEP_TRM, "EMV Book 3 §10.6.3", "note",
              "no lower/upper consecutive offline limits (9F14/9F23) in the card: no velocity check")
    else:
        velocity_check(state, channel, lcol[0], ucol[0])
    state.set_tsi("terminal risk management was performed")
    event(state, STEP_TRM, REF_TRM, "note", "terminal risk management done",
          tsi=("terminal risk management was performed",))
    return state


def velocity_check(state: TransactionState, channel: CardChannel, lcol: int, ucol: int) -> None:
    atc = _get_data(state, channel, 0x9F36, "application transaction counter")
    last = _get_data(state, channel, 0x9F13, "last online ATC register")
    ref = "EMV Book 3 §10.6.3"
    if atc is None or last is None:
        event(state, STEP_TRM, ref, "decision", "the ATC or the last online ATC cannot be read: both limits "
              "count as exceeded", tvr=("lower consecutive offline limit exceeded",
                                        "upper consecutive offline limit exceeded", "ICC data missing"))
        return
    a, lo = int.from_bytes(atc, "big"), int.from_bytes(last, "big")
    if lo == 0:
        event(state, STEP_TRM, ref, "decision", "last online ATC is zero: a new card", tvr=("new card",))
    if a <= lo:
        event(state, STEP_TRM, ref, "decision", f"ATC {a} is not above the last online ATC {lo}: both limits "
              "count as exceeded", tvr=("lower consecutive offline limit exceeded",
                                        "upper consecutive offline limit exceeded"))
        return
    offline = a - lo
    if offline > lcol:
        event(state, STEP_TRM, ref, "decision", f"{offline} transactions since the last online one (ATC {a} − "
              f"{lo}) exceed the lower limit {lcol}", tvr=("lower consecutive offline limit exceeded",))
    if offline > ucol:
        event(state, STEP_TRM, ref, "decision", f"{offline} transactions since the last online one exceed "
              f"the upper limit {ucol}", tvr=("upper consecutive offline limit exceeded",))
    if offline <= lcol:
        event(state, STEP_TRM, ref, "check", f"{offline} offline transaction(s) since the last online one: "
              f"within the limits {lcol}/{ucol}")


# -- terminal action analysis ----------------------------------------------------------------


def bits_named(mask: bytes) -> list[str]:
    """The TVR bits set in ``mask`` by name; a bit the book leaves undefined (RFU, EMV 4.4 Book 3
    Annex C5) by its place — an issuer's code may still name it, and it still decides."""
    named = [n for n, (i, bit) in TVR_BITS.items() if i < len(mask) and mask[i] & bit]
    known = {(i, bit) for i, bit in TVR_BITS.values()}
    rfu = [f"TVR byte {i + 1} b{b + 1} (RFU)" for i in range(len(mask)) for b in range(7, -1, -1)
           if mask[i] & (1 << b) and (i, 1 << b) not in known]  # fmt: skip
    return named + rfu


def _and(a: bytes, b: bytes) -> bytes:
    return bytes(x & y for x, y in zip(a.ljust(5, b"\x00"), b.ljust(5, b"\x00"), strict=True))


def _or(a: bytes, b: bytes) -> bytes:
    return bytes(x | y for x, y in zip(a.ljust(5, b"\x00"), b.ljust(5, b"\x00"), strict=True))


def action_codes(card: dict[int, bytes]) -> tuple[bytes, bytes, bytes]:
    """(IAC-denial, IAC-online, IAC-default), absent ones as Book 3 §10.7 says."""
    return (card.get(0x9F0E, bytes(5)), card.get(0x9F0F, b"\xFF" * 5), card.get(0x9F0D, b"\xFF" * 5))


def decide(tvr: bytes, iac: tuple[bytes, bytes, bytes], tac: tuple[bytes, bytes, bytes],
           online_capable: bool, online_only: bool = False) -> tuple[int, str, list[str]]:
    """The pure rule: (AAC/TC/ARQC, which codes decided, TVR bits that matched)."""
    denial = _and(tvr, _or(iac[0], tac[0]))
    if any(denial):
        return AAC, "denial", bits_named(denial)
    if online_capable:
        online = _and(tvr, _or(iac[1], tac[1]))
        if any(online):
            return ARQC, "online", bits_named(online)
        if online_only:
            return ARQC, "online-only terminal", []
        return TC, "none", []
    default = _and(tvr, _or(iac[2], tac[2]))
    if any(default):
        return AAC, "default", bits_named(default)
    return TC, "none", []


def terminal_action_analysis(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    iac = action_codes(state.card_data)
    tac = (terminal.tac_denial, terminal.tac_online, terminal.tac_default)
    tvr = bytes(state.tvr)
    ask, which, bits = decide(tvr, iac, tac, terminal.online_capable, terminal.online_only)
    state.extras["ask"] = ask
    codes = (f"IAC denial/online/default {iac[0].hex().upper()}/{iac[1].hex().upper()}/{iac[2].hex().upper()}, "
             f"TAC {tac[0].hex().upper()}/{tac[1].hex().upper()}/{tac[2].hex().upper()}")
    if which in ("denial", "online", "default"):
        why = f"TVR {tvr.hex().upper()} meets the {which} codes on: {'; '.join(bits)}"
    elif which == "online-only terminal":
        why = f"TVR {tvr.hex().upper()}: no denial, and the terminal is online only"
    else:
        why = f"TVR {tvr.hex().upper()} meets no denial" + (", online" if terminal.online_capable else ", default") \
            + " code"
    event(state, STEP_TAA, REF_TAA, "decision", f"{why} ({codes}) → ask for {NAMES[ask]}")
    return state

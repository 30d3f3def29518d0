"""In-process throughput of the emulated card (no transport).

    /tmp/venv/bin/python benchmarks/bench_inprocess.py [--seconds 2] [--profile]

Prints APDU/s for simple commands (SELECT EF by FID + READ BINARY, or SELECT by
AID + GET DATA where the file system is missing), GET DATA alone, and
SCP03-wrapped STORE DATA at security level 33 (C-MAC, C-DEC, R-MAC, R-ENC)
when the SCP03 host side and card side exist. Goal for simple APDUs:
≥ 50,000 APDU/s. ``--profile`` prints the top of a cProfile run of the simple
APDUs (cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cardlab.emulator import Card  # noqa: E402

GOAL_SIMPLE = 50_000
SELECT_ISD = bytes.fromhex("00A4040008A000000151000000")
SELECT_MF = bytes.fromhex("00A4000C023F00")
SELECT_EF_2F01 = bytes.fromhex("00A4020C022F01")
READ_BINARY = bytes.fromhex("00B0000000")
GET_DATA_CARD_DATA = bytes.fromhex("80CA006600")
DEFAULT_KEY = bytes(range(0x40, 0x50))


def rate(step: Callable[[], int], seconds: float) -> float:
    """Run ``step`` (which returns how many APDUs it sent) for ``seconds``;
    APDUs per second."""
    step()  # warm-up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        count += step()
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def sw(response: bytes) -> str:
    return response[-2:].hex().upper()


def batch(card: Card, commands: Sequence[bytes], repeat: int = 100) -> Callable[[], int]:
    transmit = card.transmit
    seq = list(commands) * repeat

    def step() -> int:
        for c in seq:
            transmit(c)
        return len(seq)

    return step


def simple_commands(card: Card) -> tuple[str, list[bytes]]:
    """SELECT by FID + READ BINARY if the file system answers, else SELECT by
    AID + GET DATA."""
    card.power_on()
    card.transmit(SELECT_MF)
    if sw(card.transmit(SELECT_EF_2F01)) == "9000" and sw(card.transmit(READ_BINARY)) == "9000":
        return "SELECT EF 2F01 by FID + READ BINARY", [SELECT_EF_2F01, READ_BINARY]
    return "SELECT ISD by AID + GET DATA 0066", [SELECT_ISD, GET_DATA_CARD_DATA]


def report(label: str, value: float, goal: float | None = None) -> None:
    line = f"{label:<58} {value:>10,.0f} APDU/s"
    if goal is not None:
        line += f"   (goal ≥ {goal:,.0f}/s: {'met' if value >= goal else 'BELOW'})"
    print(line)


def bench_scp03(seconds: float) -> None:
    try:
        from cardlab.cardspec.scp03 import HostSession, ScpError, StaticKeys
        import cardlab.emulator.gp.scp03  # noqa: F401 - the card side
    except ImportError as exc:
        print(f"{'SCP03 STORE DATA at level 33':<58} {'n/a':>10}   ({exc.name} not there yet)")
        return
    card = Card.create()
    card.power_on()
    card.transmit(SELECT_ISD)
    session = HostSession(card.transmit, StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30))
    try:
        session.open(0x33)
    except ScpError as exc:
        print(f"{'SCP03 STORE DATA at level 33':<58} {'n/a':>10}   (session refused: {exc})")
        return
    # STORE DATA, last block, DGI 0070 (a record-ish 32 bytes); P2 = block number
    block = 0

    def step() -> int:
        nonlocal block
        for _ in range(20):
            block = (block + 1) & 0xFF
            apdu = bytes([0x80, 0xE2, 0x80, block, 0x23, 0x00, 0x70, 0x20]) + bytes(32) + b"\x00"
            session.send(apdu)
        return 20

    first = session.send(bytes([0x80, 0xE2, 0x80, 0x00, 0x23, 0x00, 0x70, 0x20]) + bytes(32) + b"\x00")
    value = rate(step, seconds)
    report(f"SCP03 level 33 STORE DATA (card answers {sw(first)})", value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the simple APDUs")
    args = parser.parse_args(argv)

    card = Card.create()
    label, commands = simple_commands(card)
    answers = " ".join(sw(card.transmit(c)) for c in commands)
    report(f"{label} [{answers}]", rate(batch(card, commands), args.seconds), GOAL_SIMPLE)
    card.power_on()
    card.transmit(SELECT_ISD)
    report(f"GET DATA 0066 on the ISD [{sw(card.transmit(GET_DATA_CARD_DATA))}]",
           rate(batch(card, [GET_DATA_CARD_DATA]), args.seconds), GOAL_SIMPLE)
    bench_scp03(args.seconds)

    if args.profile:
        card = Card.create()
        label, commands = simple_commands(card)
        step = batch(card, commands, repeat=5000)
        profiler = cProfile.Profile()
        profiler.runcall(step)
        print(f"\ncProfile of {len(commands) * 5000} APDUs ({label}), by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput through pcscd + vpcd with pyscard: the emulated card next to a
trivial vpcd card (constant answers, same client code), measured in the same
run, and their ratio (goal: the emulated card reaches ≥ 70 % of the trivial
card's rate).

    /tmp/venv/bin/python benchmarks/bench_vpcd.py [--apdus 2000] [--rounds 3]

Uses a running pcscd if vpcd's ports are listening, else starts
``pcscd --foreground --error`` itself (root) and stops it at the end. The
emulated card serves on slot 0 (port 35963, "Virtual PCD 00 00"), the trivial
card on slot 1 (35964, "Virtual PCD 00 01"), each in its own process.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

GOAL_RATIO = 0.70
COMMANDS = [bytes.fromhex("00A4020C022F01"), bytes.fromhex("00B0000000")]  # SELECT EF by FID, READ BINARY


class TrivialCard:
    """A vpcd card that answers every command with 9000 (READ BINARY with 16 bytes)."""

    ATR = bytes.fromhex("3B8880010000000000718100F9")

    def power_on(self) -> bytes:
        return self.ATR

    def transmit(self, command: bytes) -> bytes:
        if command[1:2] == b"\xb0":
            return bytes(16) + b"\x90\x00"
        return b"\x90\x00"


def serve_trivial(port: int) -> int:
    from cardlab.emulator.transports import vpcd

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    vpcd.serve(TrivialCard(), "127.0.0.1", port, stop)
    return 0


def measure(conn: Any, apdus: int) -> float:
    cmds = [list(c) for c in COMMANDS]
    transmit = conn.transmit
    for c in cmds:  # warm-up, and a sanity check
        _, sw1, sw2 = transmit(c)
        if (sw1, sw2) != (0x90, 0x00):
            raise RuntimeError(f"card answered {sw1:02X}{sw2:02X} to {bytes(c).hex()}")
    n = apdus // len(cmds)
    start = time.perf_counter()
    for _ in range(n):
        for c in cmds:
            transmit(c)
    return n * len(cmds) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apdus", type=int, default=2000, help="APDUs per card per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trivial-card", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=35964, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trivial_card:
        return serve_trivial(args.port)

    logging.basicConfig(level=logging.WARNING)
    from pcscd_helper import CardServer, Pcscd, close, connect_reader, pcscd_unavailable, port_listening

    from cardlab.emulator import Card

    own_pcscd: Pcscd | None = None
    processes: list[subprocess.Popen[bytes]] = []
    servers: list[CardServer] = []
    conns: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if not (port_listening(35963) and port_listening(35964)):
                reason = pcscd_unavailable()
                if reason:
                    print(f"cannot run: {reason}")
                    return 1
                own_pcscd = Pcscd(Path(tmp) / "pcscd.log")
                own_pcscd.start()
            image = Path(tmp) / "card.json"
            Card.create().save(image)
            servers.append(CardServer(image, Path(tmp) / "server.log", port=35963))
            with open(Path(tmp) / "trivial.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, __file__, "--trivial-card", "--port", "35964"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
            emulated = connect_reader("Virtual PCD 00 00")
            conns.append(emulated)
            trivial = connect_reader("Virtual PCD 00 01")
            conns.append(trivial)
            emulated.transmit(list(bytes.fromhex("00A4000C023F00")))  # MF, so that 2F01 is a child

            results: dict[str, list[float]] = {"emulated": [], "trivial": []}
            for _ in range(args.rounds):  # alternate, so that load changes hit both
                results["trivial"].append(measure(trivial, args.apdus))
                results["emulated"].append(measure(emulated, args.apdus))
            best = {k: max(v) for k, v in results.items()}
            ratio = best["emulated"] / best["trivial"]
            label = "SELECT EF by FID + READ BINARY via pyscard → pcscd → vpcd"
            print(label)
            for name in ("trivial", "emulated"):
                rounds = ", ".join(f"{x:,.0f}" for x in results[name])
                print(f"  {name + ' card':<14} {best[name]:>8,.0f} APDU/s (best of {args.rounds}: {rounds})")
            verdict = "met" if ratio >= GOAL_RATIO else "BELOW"
            print(f"  ratio          {ratio:>8.0%}          (goal ≥ {GOAL_RATIO:.0%}: {verdict})")
        finally:
            for conn in conns:
                close(conn)
            for server in servers:
                server.stop()
            for proc in processes:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if own_pcscd is not None:
                own_pcscd.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

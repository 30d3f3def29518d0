"""Kill a card-serving process mid-command, many times: no counter is lost or repeated.

A personalized EMV card (tests/emulator/emv/emvkit.py) is kept in an image file with its
journal (:mod:`cardlab.emulator.journal`, compacted every few entries so that kills also land
in compactions). Each round forks a child that loads the image and sends, in a loop:
INITIALIZE UPDATE (SCP03 sequence counter, GP Amendment D §6.2.2.1), SELECT + GET PROCESSING
OPTIONS (ATC, EMV Book 3 §7.1) and VERIFY with a wrong PIN (PIN try counter, Book 3 §6.5.12;
the right PIN once one try is left). After each response it tells the parent the counter
the card answered. The parent SIGKILLs the child at a random moment, loads the image and checks,
against the last acknowledged answers:

* SCP03 sequence counter: the next one is above every counter the card used (none reused),
  at most one above the next expected (one unacknowledged command);
* ATC: at least the last acknowledged one (never lost, never given again);
* PIN try counter: never above the last acknowledged one (no second try), unless the command
  in flight was the right PIN (then the limit).

``python -m robustness.counter_kill [--kills 2000] [--seed 1]``; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from robustness.common import ROOT, figures

sys.path.insert(0, str(ROOT / "tests" / "emulator" / "emv"))

AID = bytes.fromhex("A0000000031010")
WRONG_PIN = "9999"
ISD_SELECT = bytes.fromhex("00A4040008A000000151000000")


@dataclass
class Result:
    kills: int = 0
    loads_failed: int = 0
    seq_lost: int = 0
    atc_lost: int = 0
    pin_regained: int = 0
    acks: int = 0
    max_jump: int = 0
    errors: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return self.kills > 0 and not (self.loads_failed or self.seq_lost or self.atc_lost or self.pin_regained)


def _serve(path: Path, out: int, compact_every: int) -> None:
    """The child: load the image, journal it, loop commands, report each acknowledged counter."""
    from emvkit import PIN, lv, pin_block

    from cardlab.emulator import Card
    from cardlab.emulator.journal import ImageJournal

    card = Card.load(path)
    ImageJournal.attach(card, path, compact_every=compact_every)
    card.power_on()
    os.write(out, b"R 0\n")  # loaded: the parent's clock starts now, so that kills land in commands
    rnd = random.Random(os.getpid())
    while True:
        card.transmit(ISD_SELECT)
        resp = card.transmit(bytes.fromhex("8050000008") + rnd.randbytes(8) + b"\x00")
        if resp[-2:] == b"\x90\x00":
            os.write(out, b"S %d\n" % int.from_bytes(resp[-5:-2], "big"))  # counter used (§7.3.1.6)
        card.transmit(bytes((0, 0xA4, 4, 0, len(AID))) + AID + b"\x00")
        resp = card.transmit(bytes.fromhex("80A8000008830601020304025000"))
        if resp[-2:] == b"\x90\x00":
            atc = card.transmit(bytes.fromhex("80CA9F3600"))
            os.write(out, b"A %d\n" % int.from_bytes(atc[3:5], "big"))
        tries = card.transmit(bytes.fromhex("80CA9F1700"))[3]
        pin = PIN if tries <= 1 else WRONG_PIN
        resp = card.transmit(bytes.fromhex("00200080") + lv(pin_block(pin)))
        after = card.transmit(bytes.fromhex("80CA9F1700"))[3]
        os.write(out, b"P %d\n" % after)


def _state(path: Path) -> tuple[int, int, int]:
    from cardlab.emulator import Card

    card = Card.load(path)
    data = card.applets[AID].data  # type: ignore[attr-defined]
    return card.state.sequence_counter, int(data.atc), int(data.pin_try_counter)


def run(work: Path, kills: int = 2000, seed: int = 1, max_delay: float = 0.02, compact_every: int = 8) -> Result:
    from emvkit import personalized_card

    res = Result()
    rng = random.Random(seed)
    path = work / "card.json"
    personalized_card().save(path)
    seq, atc, pin = _state(path)
    limit = pin
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns
            try:
                os.close(r)
                _serve(path, w, compact_every)
            finally:
                os._exit(3)
        os.close(w)
        data = b""
        deadline = time.monotonic() + 30
        while b"\n" not in data and time.monotonic() < deadline:  # wait for "R": the card is loaded
            if select.select([r], [], [], 1)[0]:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
        time.sleep(rng.uniform(0, max_delay))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while select.select([r], [], [], 0)[0]:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        res.kills += 1
        last_s, last_a, last_p = None, None, None
        for line in data.decode().splitlines():
            kind, value = line.split()
            if kind == "R":
                continue
            res.acks += 1
            if kind == "S":
                last_s = int(value)
            elif kind == "A":
                last_a = int(value)
            else:
                last_p = int(value)
        try:
            new_seq, new_atc, new_pin = _state(path)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            res.loads_failed += 1
            res.errors.append(f"load after kill {res.kills}: {type(exc).__name__}: {exc}")
            break
        floor = seq if last_s is None else last_s + 1
        if new_seq < max(floor, seq):
            res.seq_lost += 1
            res.errors.append(f"kill {res.kills}: sequence counter {new_seq} < {floor}")
        res.max_jump = max(res.max_jump, new_seq - floor)
        if new_atc < max(atc, last_a or 0):
            res.atc_lost += 1
            res.errors.append(f"kill {res.kills}: ATC {new_atc} < {last_a}")
        acked_pin = pin if last_p is None else last_p
        if new_pin > acked_pin and not (acked_pin <= 1 and new_pin == limit):
            res.pin_regained += 1
            res.errors.append(f"kill {res.kills}: PIN try counter {new_pin} > acknowledged {acked_pin}")
        seq, atc, pin = new_seq, new_atc, new_pin
    return res


def report(res: Result) -> str:
    return figures("counters across kills mid-command", [
        ("kills (SIGKILL at random moments)", res.kills),
        ("acknowledged counter answers", res.acks),
        ("images that did not load (must be 0)", res.loads_failed),
        ("SCP03 sequence counters lost or reused (must be 0)", res.seq_lost),
        ("ATCs lost or repeated (must be 0)", res.atc_lost),
        ("PIN tries regained (must be 0)", res.pin_regained),
        ("largest sequence counter step past an acknowledged one", res.max_jump),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-delay", type=float, default=0.02, help="seconds before the kill, at most")
    args = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cardlab-counter-kill-") as d:
        res = run(Path(d), kills=args.kills, seed=args.seed, max_delay=args.max_delay)
    print(report(res))
    for e in res.errors[:10]:
        print("  " + e)
    return 0 if res.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

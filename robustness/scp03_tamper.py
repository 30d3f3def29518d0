"""SCP03 tamper: every single-bit flip of every byte of a wrapped command, at
each security level (01, 03, 11, 13, 33), is refused by the card and closes
the session; replayed commands are refused too.

For each level and each of three commands (GET STATUS with data, SET STATUS
without data, STORE DATA to the ISD; all sent without Le, so that every byte
of the command is covered by the C-MAC, GP Amendment D §6.2.4), a fresh
session is opened with :class:`cardlab.cardspec.scp03.HostSession`, the wrapped command
has one bit flipped, and the card must:

* answer an error status word (not 9000, 61xx, 62xx or 63xx),
* leave its persistent state unchanged (the image is compared before/after),
* have no session on the channel afterwards (checked on the card object).

A flip of a CLA bit that moves the command to another logical channel
(the channel bits of CLA, ISO 7816-4 §5.4.1) is refused with 6881 by the
channel check before any secure messaging: that command never reaches the
session, which stays open on its own channel. Those flips are counted
apart ("addressed to a closed channel") and must all be refused.

Replays: a command that the card accepted, sent again in the same session,
and a command of an earlier session sent in a new one, must be refused and
the session closed.

``python -m robustness.scp03_tamper [--quick | --stride N]``; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from robustness.common import figures

from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator import image as card_image

GP_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
GP_KEYS = StaticKeys(GP_KEY, GP_KEY, GP_KEY, 0x30)
LEVELS = (0x01, 0x03, 0x11, 0x13, 0x33)
COMMANDS = {
    "GET STATUS (ISD)": bytes.fromhex("80F28000024F00"),
    "SET STATUS card INITIALIZED": bytes.fromhex("80F08007"),
    "STORE DATA (ISD, IIN)": bytes.fromhex("80E28000054203999999"),
}
ACCEPTED_SW1 = (0x90, 0x61, 0x62, 0x63)


@dataclass
class LevelFigures:
    flips: int = 0
    refused: int = 0
    closed: int = 0
    other_channel: int = 0
    state_changed: int = 0
    replays: int = 0
    replays_refused: int = 0


@dataclass
class Result:
    levels: dict[int, LevelFigures] = field(default_factory=dict)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.levels.values())


def _session(level: int) -> tuple[Card, HostSession]:
    card = Card.create()
    card.power_on()
    hs = HostSession(card.transmit, GP_KEYS)
    hs.open(level)
    return card, hs


def _image(card: Card) -> str:
    card.sync_state()
    return card_image.dumps(card.state)


def _refused(resp: bytes) -> bool:
    return len(resp) >= 2 and resp[-2] not in ACCEPTED_SW1


def _other_channel(original: bytes, tampered: bytes) -> bool:
    from cardlab.emulator import apdu

    try:
        return apdu.parse(tampered).channel != apdu.parse(original).channel
    except Exception:  # noqa: BLE001 - an unparsable command is on no channel
        return False


def flip_level(level: int, stride: int, res: Result) -> LevelFigures:
    fig = LevelFigures()
    for name, plain in COMMANDS.items():
        # the wrapped command is the same for every fresh session only up to
        # its MAC; its length is what matters for the positions
        _card, hs = _session(level)
        length = len(hs.wrap(plain))
        for pos in range(length):
            for bit in range(0, 8, stride if pos >= 4 else 1):
                card, hs = _session(level)
                before = _image(card)
                wrapped = hs.wrap(plain)
                tampered = bytearray(wrapped)
                tampered[pos] ^= 1 << bit
                resp = card.transmit(bytes(tampered))
                fig.flips += 1
                where = f"level {level:02X} {name} byte {pos} bit {bit}: {bytes(tampered).hex()} -> {resp.hex()}"
                if _refused(resp):
                    fig.refused += 1
                else:
                    res.problems.append("accepted: " + where)
                if _image(card) != before:
                    fig.state_changed += 1
                    res.problems.append("state changed: " + where)
                if card.channels[0].session is None:
                    fig.closed += 1
                elif _other_channel(wrapped, bytes(tampered)) and resp[-2:] == b"\x68\x81":
                    fig.other_channel += 1
                else:
                    res.problems.append("session still open: " + where)
    # replays
    for name, plain in COMMANDS.items():
        card, hs = _session(level)
        wrapped = hs.wrap(plain)
        first = card.transmit(wrapped)
        if first[-2:] != b"\x90\x00":
            res.problems.append(f"level {level:02X} {name}: the genuine command got {first.hex()}")
            continue
        again = card.transmit(wrapped)
        fig.replays += 1
        if _refused(again) and card.channels[0].session is None:
            fig.replays_refused += 1
        else:
            res.problems.append(f"level {level:02X} {name}: replay in the same session -> {again.hex()}")
        # a command of an earlier session in a new one
        card2, hs2 = _session(level)
        old = hs2.wrap(plain)
        hs2.open(level)  # a new session on the same card
        before = _image(card2)
        late = card2.transmit(old)
        fig.replays += 1
        if _refused(late) and card2.channels[0].session is None and _image(card2) == before:
            fig.replays_refused += 1
        else:
            res.problems.append(f"level {level:02X} {name}: replay into a new session -> {late.hex()}")
    return fig


def run(stride: int = 1) -> Result:
    res = Result()
    started = time.perf_counter()
    for level in LEVELS:
        res.levels[level] = flip_level(level, stride, res)
    res.seconds = time.perf_counter() - started
    return res


def report(res: Result) -> str:
    rows: list[tuple[str, object]] = []
    for level, f in res.levels.items():
        rows.append((f"level {level:02X}", f"{f.flips} flips: {f.refused} refused, {f.closed} closed the session, "
                     f"{f.other_channel} addressed to a closed channel, {f.state_changed} changed the card; "
                     f"replays {f.replays_refused}/{f.replays} refused"))
    rows += [
        ("bit flips", res.total("flips")),
        ("refused", res.total("refused")),
        ("session closed", res.total("closed")),
        ("to another channel (6881)", res.total("other_channel")),
        ("accepted / state changed / session left open", len(res.problems)),
        ("replays refused", f"{res.total('replays_refused')}/{res.total('replays')}"),
        ("seconds", f"{res.seconds:.1f}"),
    ]
    text = figures("SCP03 tamper (robustness/scp03_tamper.py)", rows)
    if res.problems:
        text += "\nproblems:\n" + "\n".join("  " + p for p in res.problems[:20])
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stride", type=int, default=1,
                    help="flip every N-th bit of each byte after the header (1 = all bits)")
    ap.add_argument("--quick", action="store_true", help="same as --stride 4")
    args = ap.parse_args(argv)
    res = run(4 if args.quick else args.stride)
    print(report(res))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())

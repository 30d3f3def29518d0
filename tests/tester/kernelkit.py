"""Shared helpers for the kernel tests: emulated cards from the test card maker."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emv"))

from cardmaker import CardData, Profile, build, make_card, personalize  # noqa: E402

from cardlab.cardspec import tlv as card_tlv  # noqa: E402
from cardlab.emulator import Card  # noqa: E402
from cardlab.tester.channel import RecordingChannel  # noqa: E402
from cardlab.tester.kernel import run_transaction  # noqa: E402
from cardlab.tester.state import TransactionState  # noqa: E402
from cardlab.tester.terminal import TerminalProfile, load_terminal  # noqa: E402

WHEN = datetime(2025, 6, 1, 12, 0, 0)


#: card risk limits that let the card approve offline (the card maker's default 0 forces ARQCs)
OFFLINE = dict(lcol=3, ucol=5, lower_cumulative=50_000, upper_cumulative=100_000)


def shows_pin(text: str, pin: str) -> bool:
    """True when ``text`` shows the PIN: standing alone, or as an ISO 9564
    format 2 plaintext PIN block (2, length, digits). A PIN's digits inside a
    longer hex string (a random number, a signature) are not the PIN: the
    traces are full of random hex, and "1234" turns up in it now and then."""
    alone = re.search(rf"(?<![0-9A-Fa-f.]){pin}(?![0-9A-Fa-f])", text)
    block = f"2{len(pin):X}{pin}".ljust(16, "F") in text.upper().replace(" ", "")
    return alone is not None or block


def P(**kw: Any) -> Profile:
    return Profile(**{**OFFLINE, **kw})  # type: ignore[arg-type]


def terminal(**changes: Any) -> TerminalProfile:
    t = load_terminal()
    for k, v in changes.items():
        setattr(t, k, v)
    return t


def with_velocity(cd: CardData, lcol: int, ucol: int) -> CardData:
    """Put 9F14/9F23 into record SFI 1/1 (not signed for ODA) so the terminal sees them."""
    body = card_tlv.parse(cd.records[(1, 1)])[0].value
    body += card_tlv.encode(0x9F14, bytes((lcol,))) + card_tlv.encode(0x9F23, bytes((ucol,)))
    cd.records[(1, 1)] = card_tlv.encode(0x70, body)
    cd.dgis = [(d, cd.records[(1, 1)] if d == 0x0101 else v) for d, v in cd.dgis]
    return cd


def card_for(profile: Profile, *, velocity: tuple[int, int] | None = None) -> tuple[Card, CardData]:
    cd = build(profile)
    if velocity is not None:
        cd = with_velocity(cd, *velocity)
    card = Card.create()
    counter = iter(range(1 << 30))
    card.random = lambda n: bytes((next(counter) & 0xFF for _ in range(n)))
    personalize(card, cd)
    return card, cd


def transact(card: Card, term: TerminalProfile | None = None, **kw: Any) -> tuple[TransactionState, RecordingChannel]:
    ch = RecordingChannel(card.transmit)
    kw.setdefault("amount", 1500)
    kw.setdefault("when", WHEN)
    kw.setdefault("seed", 7)
    return run_transaction(ch, term or terminal(), **kw), ch


__all__ = ["P", "OFFLINE", "CardData", "Profile", "make_card", "card_for", "transact", "terminal", "WHEN"]

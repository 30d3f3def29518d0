"""What the certification steps share: the context of a card and of one of
its applications, and the small helpers every step uses to talk to the card
and to read what the terminal kernel sent.

Certification drives the shared terminal kernel (cardlab.tester.kernel and its step
functions): the card's data and the step verdicts are the kernel's; the rules
only compare them with the source data. ODA goes through cardlab.tester.oda
(certificate fields from cardlab.tester.rsa), the PIN through cardlab.tester.cvm, the ARQC
and the script MAC through the issuer host (cardlab.tester.issuer_host, cardlab.tester.online).
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from datetime import date

from ..channel import CardChannel
from ..exchange import answer, send
from ..sources import AppProfile, IssuerProfile, KeyStore, Record
from ..state import TraceEvent, TransactionState
from ..terminal import TerminalProfile
from ..tlv import TlvError, parse
from .results import Collector

STEP = "Certification"
REF_GET_DATA = "EMV Book 3 §6.5.7"
#: the amount of the certification transaction (minor units)
AMOUNT = 100


# -- the contexts -------------------------------------------------------------------------


@dataclass(frozen=True)
class CardContext:
    """What a card-level rule evaluator is given (:data:`.evaluators.CARD_EVALUATORS`):
    the card, the source data it is certified against, and the options of
    :func:`.card.certify_card`. ``pan`` is for masking evidence."""

    channel: CardChannel
    profile: IssuerProfile
    record: Record
    keys: KeyStore
    terminal: TerminalProfile | None
    destructive: bool
    today: date
    gp_status: bool
    #: the card's contactless interface (issue 16), None when the certification was given none
    contactless: CardChannel | None = None

    @property
    def pan(self) -> str:
        return self.record.pan


@dataclass
class AppContext:
    """The certification of one application: the step functions of
    :data:`.evaluators.APPLICATION_STEPS` read and extend it in turn."""

    ch: CardChannel
    app: AppProfile
    rec: Record
    keys: KeyStore
    terminal: TerminalProfile
    destructive: bool
    today: date
    c: Collector
    state: TransactionState
    found: dict[str, dict[int, bytes]] = field(default_factory=dict)  # place → tag → value
    static_data: bytes | None = None
    atc: int | None = None
    #: destructive PIN change (:mod:`.scripts`): the counter was lowered by a wrong PIN
    #: so that the reset by PIN CHANGE/UNBLOCK shows; the SW the PIN CHANGE got (None: not sent)
    pin_lowered: bool = False
    pin_change_sw: int | None = None
    #: the certification transaction went online with scripts (KEY-SMI-001): the
    #: block / unblock transactions follow
    scripts_online: bool = False
    #: the card's PIN tries in this run, shared by its applications (:mod:`.pin`)
    pin: PinGuard = field(default_factory=lambda: PinGuard())
    #: reset a PIN try counter that the one VERIFY lowered (PIN UNBLOCK script, :mod:`.scripts`)
    restore_pin_counter: bool = False
    #: the counter to restore and when it was read (set by :mod:`.pin`: after a refused VERIFY,
    #: or on arrival below its limit)
    restore_from: tuple[int, str] | None = None
    #: judge the counters as fresh from perso (``card.certify_as: fresh``), not against the history
    fresh: bool = False
    #: the card's contactless interface (:mod:`.contactless`, the CL-* rules), None when not given
    contactless: CardChannel | None = None

    def all_values(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for objs in self.found.values():
            for t, v in objs.items():
                out.setdefault(t, v)
        return out


@dataclass
class PinGuard:
    """The PIN tries of one card in one certification run (all its applications, :mod:`.pin`)."""

    #: why no further VERIFY is sent to this card ("" while one may be: none was refused yet)
    stopped: str = ""


class Stop(Exception):
    """A step cannot go on: the application's remaining rules are not reached (the message says why)."""


# -- talking to the card -----------------------------------------------------------------


def _value_of_get_data(data: bytes, tag: int) -> bytes | None:
    try:
        items = parse(data)
    except TlvError:
        return None
    for t in items:
        if t.tag == tag:
            return t.value
    return None


def hex_or_dash(b: bytes | None) -> str:
    return "-" if b is None else b.hex().upper()


@functools.lru_cache(maxsize=1024)
def tagname(tag: int) -> str:
    try:
        from ..dictionary import name

        return f"{tag:X} {name(tag)}"
    except Exception:
        return f"{tag:X}"


def sw_of(ev: TraceEvent) -> int:
    """The status word the card sent to the traced command (every traced response has one:
    :func:`cardlab.tester.exchange.answer` refuses a response without)."""
    return answer(ev.command, ev.response)[1]


def sent_since(state: TransactionState, start: int, ins: int) -> list[TraceEvent]:
    """The commands with instruction ``ins`` the kernel sent since event ``start``."""
    return [e for e in state.events[start:] if e.kind == "apdu" and len(e.command) > 1 and e.command[1] == ins]


def get_data(ctx: AppContext, tag: int, what: str) -> tuple[bytes | None, int]:
    data, sw = send(ctx.state, ctx.ch, bytes((0x80, 0xCA)) + tag.to_bytes(2, "big") + b"\x00", STEP, REF_GET_DATA,
                    f"GET DATA {what} ({tag:X})")
    return (_value_of_get_data(data, tag) if sw == 0x9000 else None), sw

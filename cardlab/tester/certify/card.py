"""The certification of one card, :func:`certify_card`: for each application
of the issuer profile a certification transaction through the steps of
:data:`.evaluators.APPLICATION_STEPS`, and the card-level evaluators of
:data:`.evaluators.CARD_EVALUATORS`; every rule of the catalogue gives one
result per application (per card for card-level rules) with its evidence.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date, datetime
from datetime import time as dtime
from functools import lru_cache

from .. import kernel
from ..channel import CardChannel
from ..sources import AppProfile, IssuerProfile, KeyStore, Record
from ..terminal import TerminalAid, TerminalProfile, load_terminal
from ..tlv import TlvError
from .context import AMOUNT, AppContext, CardContext, PinGuard, Stop
from .evaluators import APP_RULES, APPLICATION_STEPS, CARD_EVALUATORS
from .results import CardReport, Collector


@lru_cache(maxsize=1)
def _default_terminal() -> TerminalProfile:
    return load_terminal()


def _terminal_for(terminal: TerminalProfile | None, app: AppProfile) -> TerminalProfile:
    """The terminal certification plays: the given profile (or the default one
    in the application's country and currency) supporting exactly this AID."""
    base = terminal if terminal is not None else replace(_default_terminal(), country=app.country, currency=app.currency)
    return replace(base, aids=[TerminalAid(app.aid, partial=False)], selection="pse", cardholder_confirmation=True)


def certify_card(
    channel: CardChannel,
    profile: IssuerProfile,
    record: Record,
    keys: KeyStore,
    *,
    terminal: TerminalProfile | None = None,
    destructive: bool = False,
    today: date | None = None,
    card_id: str = "",
    source: str = "",
    gp_status: bool = True,
    restore_pin_counter: bool = False,
    contactless: CardChannel | None = None,
) -> CardReport:
    """Certify one card; every rule of the catalogue gives one result per application.
    ``gp_status`` (default): also read the GP life cycles and privileges over SCP03 (:mod:`.life`);
    without it those critical rules do not run and the card is *incomplete*.
    ``restore_pin_counter``: reset a PIN try counter the one VERIFY lowered (:mod:`.pin`).
    ``contactless``: the same card through its contactless interface (the CL-* rules, :mod:`.contactless`)."""
    start = time.perf_counter()
    if not record.psn and profile.empty_psn == "00":
        record = replace(record, psn="00")  # the profile makes an empty PSN 00 (card.empty_psn: "00")
    report = CardReport(card_id or f"{record.index:06d}", record.masked, record.index, profile.name, source,
                        started=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    if not record.psn and profile.empty_psn is None:
        report.error = (f"record {record.index} ({record.masked}) has no PSN and the profile does not say what an empty "
                        "PSN means (card.empty_psn: omit or \"00\")")
        return report
    day = today or date.today()
    card = CardContext(channel, profile, record, keys, terminal, destructive, day, gp_status, contactless)
    pin = PinGuard()  # one per card: the PIN-safety policy counts the card's tries, not an application's
    for ev in CARD_EVALUATORS:
        if ev.before_applications:
            report.results.extend(ev.run(card))
    for app in profile.applications:
        col = Collector(app.aid.hex().upper(), record.pan)
        term = _terminal_for(terminal, app)
        state = kernel.new_state(term, amount=AMOUNT, when=datetime.combine(day, dtime(12, 0)))
        ctx = AppContext(channel, app, record, keys, term, destructive, day, col, state, pin=pin,
                         restore_pin_counter=restore_pin_counter, fresh=profile.certify_as == "fresh",
                         contactless=contactless)
        reason = "nothing on this card or in its source data for this rule to check"
        try:
            for step in APPLICATION_STEPS:
                step(ctx)
        except Stop as exc:
            reason = f"not reached: {exc}"
        except Exception as exc:  # a card answer the tester could not digest is a finding
            col.check("AFL-005" if isinstance(exc, TlvError) else "LIFE-APP-002", False, f"certification stopped: {type(exc).__name__}: {exc}")
            reason = f"not reached: {type(exc).__name__}"
        report.results.extend(col.results(APP_RULES, reason))
    for ev in CARD_EVALUATORS:
        if not ev.before_applications:
            report.results.extend(ev.run(card))
    report.seconds = time.perf_counter() - start
    return report

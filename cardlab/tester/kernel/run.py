"""The whole transaction: :func:`run_transaction` runs the kernel's steps in
order (EMV Book 3 §10, Book 4 §6.3) and stops at the first that ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..channel import CardChannel
from ..state import EventLog, TraceEvent, TransactionState
from ..terminal import TerminalProfile
from .authentication import offline_data_authentication
from .completion import online_and_completion
from .generate_ac import first_generate_ac
from .initiate import initiate_application_processing, read_application_data
from .restrictions import processing_restrictions
from .selection import select_application
from .start import new_state


def run_transaction(channel: CardChannel, terminal: TerminalProfile, *, amount: int, pin: str | None = None,
                    online_host: Any = None, force_online: bool = False, amount_other: int = 0,
                    transaction_type: int = 0x00, when: datetime | None = None,
                    seed: int | None = None,
                    on_event: Callable[[TransactionState, TraceEvent], None] | None = None) -> TransactionState:
    """One contact transaction from application selection to completion.

    ``pin`` is what the cardholder types when asked (never recorded);
    ``seed`` fixes the unpredictable number and random selection; ``when``
    fixes the transaction date and time; ``on_event`` hears every trace event
    as it happens (``cardlab.tester.trace.LiveTrace.on_event``).
    """
    from ..cvm import cardholder_verification
    from ..risk import terminal_action_analysis, terminal_risk_management

    state = new_state(terminal, amount=amount, amount_other=amount_other, transaction_type=transaction_type,
                      when=when, seed=seed, force_online=force_online)
    if on_event is not None and isinstance(state.events, EventLog):
        live = state
        state.events.listener = lambda event: on_event(live, event)
    # power-on first: the ATR decoded byte by byte (cardlab.tester.atr)
    from ..atr import answer_to_reset

    state = answer_to_reset(state, channel.atr(), str(getattr(channel, "protocol", "") or ""))
    steps: list[Callable[[TransactionState, CardChannel], TransactionState]] = [
        select_application,
        initiate_application_processing,
        read_application_data,
        offline_data_authentication,
        processing_restrictions,
        lambda s, c: cardholder_verification(s, c, pin=pin),
        terminal_risk_management,
        terminal_action_analysis,
        first_generate_ac,
    ]
    for step in steps:
        state = step(state, channel)
        if state.outcome:
            return state
    state = online_and_completion(state, channel, online_host)
    return state

"""Step 10: online processing, issuer authentication, scripts and completion
through ``cardlab.tester.online`` (EMV Book 3 §10.9–§10.11), or the
default-action completion when the terminal cannot go online.
"""

from __future__ import annotations

from typing import Any

from ..channel import CardChannel
from ..exchange import event
from ..state import TransactionState
from ..terminal import TerminalProfile
from .common import S_ONLINE, abort, optional_module
from .generate_ac import cda_check


def _cda_for_online(state: TransactionState, response: dict[int, bytes], data2: bytes) -> tuple[bool, str]:
    return cda_check(state, response, data2, second=True)


def online_and_completion(state: TransactionState, channel: CardChannel, host: Any) -> TransactionState:
    """After an ARQC: the issuer host through ``cardlab.tester.online``, or the
    default-action completion when the terminal cannot go online."""
    online = optional_module("cardlab.tester.online")
    if online is None:
        return abort(state, S_ONLINE, "EMV Book 3 §10.9", "the online module is not available")
    terminal: TerminalProfile = state.terminal
    cda = None if state.extras.get("cda_not_requested") else _cda_for_online
    if host is not None and terminal.online_capable:
        result: TransactionState = online.process(state, channel, host, cda_check=cda)
        return result
    why = "no issuer host given" if host is None else "the terminal is offline only"
    event(state, S_ONLINE, "EMV Book 3 §10.8", "decision", f"unable to go online ({why})")
    result = online.complete_offline(state, channel, tac_default=terminal.tac_default, cda_check=cda)
    return result

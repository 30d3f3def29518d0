"""Step 4, offline data authentication (EMV Book 3 §10.3, Book 2 §5–§6): the
method both card and terminal support, carried out by ``cardlab.tester.oda``
(or by :data:`oda_hook` when a test or a caller replaces it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..channel import CardChannel
from ..exchange import event
from ..state import TransactionState
from ..terminal import TerminalProfile
from .common import AIP_CDA, AIP_DDA, AIP_SDA, REF_ODA, S_ODA, optional_module

#: tests (or a caller) may replace ODA: ``(state, channel, ca_keys) -> state``
oda_hook: Callable[[TransactionState, CardChannel, Any], TransactionState] | None = None


def choose_oda(state: TransactionState) -> str:
    """Book 3 §10.3: CDA if both support it, else DDA, else SDA, else none."""
    terminal: TerminalProfile = state.terminal
    aip = state.aip[0] if state.aip else 0
    for bit, name in ((AIP_CDA, "CDA"), (AIP_DDA, "DDA"), (AIP_SDA, "SDA")):
        if aip & bit and terminal.supports(name):
            return name
    return ""


FAILED_BIT = {"SDA": "SDA failed", "DDA": "DDA failed", "CDA": "CDA failed"}


def offline_data_authentication(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    method = choose_oda(state)
    if not method:
        event(state, S_ODA, REF_ODA, "decision", "neither CDA, DDA nor SDA is supported by both card and terminal",
              tvr=("offline data authentication was not performed",))
        return state
    state.oda_method = method
    error = state.extras.get("oda_input_error")
    if error:
        state.oda_ok = False
        event(state, S_ODA, REF_ODA, "decision", f"{method} fails before any signature is checked: {error}",
              tvr=(FAILED_BIT[method],), tsi=("offline data authentication was performed",))
        return state
    authenticate = oda_hook
    if authenticate is None:
        module = optional_module("cardlab.tester.oda")
        authenticate = getattr(module, "authenticate", None) if module is not None else None
    if authenticate is None:
        state.oda_method = ""
        event(state, S_ODA, REF_ODA, "decision", f"{method} chosen but the ODA module is not available",
              tvr=("offline data authentication was not performed",))
        return state
    if oda_hook is not None:
        event(state, S_ODA, REF_ODA, "decision", f"{method} chosen (AIP {state.aip.hex().upper()}, terminal "
              f"capabilities {terminal.capabilities.hex().upper()})")
        state = authenticate(state, channel, terminal.ca_key_map())
    else:  # cardlab.tester.oda reads the CA keys of the terminal profile itself
        state = authenticate(state, channel, None)
    if method == "CDA" and state.oda_ok is False:
        state.extras["cda_not_requested"] = True
    return state

"""The issuer host certification talks to for one application
(cardlab.tester.issuer_host): built from the key store's IMKs, and what is
missing for issuer scripts (EMV Book 2 §9, Book 3 §10.10) when the issuer did
not share a key.
"""

from __future__ import annotations

from typing import Literal

from ..issuer_host import IssuerHost, Policy
from ..state import TransactionState
from .context import AppContext

#: rules of issuer scripts (destructive): the certification transaction's script
#: (:mod:`.cryptograms`) and the transactions after it (:mod:`.scripts`)
SCRIPT_RULES = ("KEY-SMI-001", "KEY-SMC-001", "KEY-SMI-002", "KEY-SMI-003")


def host_for(ctx: AppContext, force: Literal["approve", "decline"] | None = None) -> IssuerHost | None:
    """The issuer host with the key store's keys for this application: IMK-AC
    (needed: the ARQC and the ARPC), IMK-SMI and IMK-SMC when the issuer shared
    them (scripts; :func:`script_keys_missing` says what is missing)."""
    k, a = ctx.keys, ctx.app.keys
    ac, smi, smc = k.symmetric_key(a.get("imk_ac"), "IMK-AC"), k.symmetric_key(a.get("imk_smi"), "IMK-SMI"), k.symmetric_key(a.get("imk_smc"), "IMK-SMC")
    if ac is None:
        return None
    return IssuerHost(ac[1], smi[1] if smi else None, smc[1] if smc else None, decide=Policy(force=force))


def script_keys_missing(ctx: AppContext, pin_change: bool = False) -> str:
    """Why no issuer script can be sent for this application ("" when one can):
    the key store lacks IMK-AC (no host), IMK-SMI (no MAC) or, for a PIN change, IMK-SMC."""
    k, a = ctx.keys, ctx.app.keys
    need = [("IMK-AC", "imk_ac", "no issuer host to go online to"), ("IMK-SMI", "imk_smi", "issuer scripts cannot be MACed (Book 2 §9.2)")]
    if pin_change:
        need.append(("IMK-SMC", "imk_smc", "a new PIN cannot be enciphered (Book 2 §9.3)"))
    for usage, field_, why in need:
        if k.symmetric_key(a.get(field_), usage) is None:
            return f"the key store holds no {usage} for {a.get(field_) or 'this application'!r} (the issuer did not share it): {why}"
    return ""


def pin_change_host(ctx: AppContext) -> IssuerHost | None:
    """The host for KEY-SMC-001 when it can run: destructive, offline PIN, IMK-AC/SMI/SMC."""
    if not (ctx.destructive and ctx.app.offline_pin) or script_keys_missing(ctx, pin_change=True):
        return None
    return host_for(ctx, "approve")


def script_sw(state: TransactionState, mark: int) -> dict[int, int]:
    """INS → the SW the card gave each issuer script command sent since
    ``state.script_results[mark]`` (accepted or refused, Book 3 §10.10)."""
    return {command[1]: sw for command, sw in state.script_results[mark:] if len(command) > 1}

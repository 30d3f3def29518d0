"""Step 5, processing restrictions (EMV Book 3 §10.4): application version,
application usage control, effective and expiration dates.
"""

from __future__ import annotations

from datetime import date

from ..channel import CardChannel
from ..exchange import event
from ..state import TransactionState
from ..terminal import TerminalProfile
from .common import S_RESTRICT


def _yymmdd(value: bytes) -> date | None:
    text = value.hex()
    if len(text) != 6 or not text.isdigit():
        return None
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:])
    try:
        return date(2000 + yy if yy < 50 else 1900 + yy, mm, dd)  # Book 3 §10.4.3 (YY < 50 → 20YY)
    except ValueError:
        return None


def processing_restrictions(state: TransactionState, channel: CardChannel) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    card = state.card_data
    # application version number (§10.4.1)
    card_version = card.get(0x9F08)
    terminal_version = terminal.version_for(state.aid)
    if card_version is None:
        event(state, S_RESTRICT, "EMV Book 3 §10.4.1", "check", "no ICC application version (9F08): not compared")
    elif card_version != terminal_version:
        event(state, S_RESTRICT, "EMV Book 3 §10.4.1", "decision",
              f"ICC application version {card_version.hex().upper()} differs from the terminal's "
              f"{terminal_version.hex().upper()}", tvr=("ICC and terminal have different application versions",))
    else:
        event(state, S_RESTRICT, "EMV Book 3 §10.4.1", "check", f"application versions agree ({card_version.hex()})")
    # application usage control (§10.4.2)
    auc = card.get(0x9F07)
    if auc is not None and len(auc) >= 2:
        why = _auc_refusal(state, terminal, auc, card.get(0x5F28))
        if why:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.2", "decision", f"AUC {auc.hex().upper()}: {why}",
                  tvr=("requested service not allowed for card product",))
        else:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.2", "check", f"AUC {auc.hex().upper()} allows this transaction")
    # dates (§10.4.3)
    today: date = state.extras.get("date") or date.today()
    effective = card.get(0x5F25)
    if effective is not None:
        d = _yymmdd(effective)
        if d is None or today < d:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.3", "decision",
                  f"application effective date {effective.hex()} is after today {today:%y%m%d}",
                  tvr=("application not yet effective",))
    expiry = card.get(0x5F24)
    if expiry is not None:
        d = _yymmdd(expiry)
        if d is None or today > d:
            event(state, S_RESTRICT, "EMV Book 3 §10.4.3", "decision",
                  f"application expiration date {expiry.hex()} is before today {today:%y%m%d}",
                  tvr=("expired application",))
    return state


def _auc_refusal(state: TransactionState, terminal: TerminalProfile, auc: bytes, issuer_country: bytes | None) -> str:
    """The reason the AUC refuses the transaction, or ""."""
    b1, b2 = auc[0], auc[1]
    if terminal.is_atm and not b1 & 0x02:
        return "not valid at ATMs"
    if not terminal.is_atm and not b1 & 0x01:
        return "not valid at terminals other than ATMs"
    if issuer_country is None:
        return ""  # the issuer country code is needed for the rest (Book 3 §10.4.2)
    domestic = issuer_country == state.extras["terminal_data"][0x9F1A]
    where = "domestic" if domestic else "international"
    kind = state.transaction_type
    if kind in (0x01, 0x17):  # cash, cash disbursement
        if not b1 & (0x80 if domestic else 0x40):
            return f"{where} cash transactions are not allowed"
    elif kind in (0x00, 0x09):  # goods and services (with cashback)
        goods = 0x20 if domestic else 0x10
        services = 0x08 if domestic else 0x04
        if not b1 & (goods | services):
            return f"{where} goods and services are not allowed"
        if kind == 0x09 or state.amount_other:
            if not b2 & (0x80 if domestic else 0x40):
                return f"{where} cashback is not allowed"
    return ""

"""The offline PIN rules (EMV Book 3 §6.5.12, §10.5.1): VERIFY by the
tester's cardholder verification module (cardlab.tester.cvm) with the
record's PIN, and with a wrong one when destructive checks are requested.
"""

from __future__ import annotations

from ..cvm import offline_pin
from ..state import TransactionState
from .context import AppContext, get_data, sent_since, sw_of
from .host import pin_change_host


def verify_pin(ctx: AppContext, pin: str, state: TransactionState | None = None) -> int:
    """VERIFY by the cardholder verification module (cardlab.tester.cvm): plaintext when the
    CVM list allows, else enciphered under the ICC key; the card's SW. ``state``:
    a later transaction of the same card (default: the certification transaction)."""
    st = state or ctx.state
    rules = ctx.all_values().get(0x8E, b"")
    codes = {rules[i] & 0x3F for i in range(8, len(rules) - 1, 2)}
    enciphered = not codes & {0x01, 0x03} and st.icc_public_key is not None
    mark = len(st.events)
    offline_pin(st, ctx.ch, pin, enciphered)
    verifies = sent_since(st, mark, 0x20)
    return sw_of(verifies[-1]) if verifies else 0x6F00


def _wrong_pin(pin: str) -> str:
    return "0000" if pin != "0000" else "1111"


def pin_rules(ctx: AppContext) -> None:
    """KEY-PIN-001..003: the record's PIN verifies offline and the counter is at
    its limit (destructive: a wrong PIN is refused with 63Cx first)."""
    c, app = ctx.c, ctx.app
    if not app.offline_pin:
        for rid in ("KEY-PIN-001", "KEY-PIN-002", "KEY-PIN-003"):
            c.na(rid, "no offline PIN CVM in the profile")
        return
    if ctx.destructive:
        sw = verify_pin(ctx, _wrong_pin(ctx.rec.pin))
        c.check("KEY-PIN-003", sw == 0x63C0 | (app.pin_try_limit - 1), f"a wrong PIN answered {sw:04X}", f"63C{app.pin_try_limit - 1:X}", f"{sw:04X}")
    else:
        c.na("KEY-PIN-003", "destructive checks not requested (--destructive)")
    sw = verify_pin(ctx, ctx.rec.pin)
    c.check("KEY-PIN-001", sw == 0x9000, f"VERIFY with the record's PIN answered {sw:04X}", "9000", f"{sw:04X}")
    ptc, sw2 = get_data(ctx, 0x9F17, "PIN try counter")
    c.check("KEY-PIN-002", ptc is not None and ptc[0] == app.pin_try_limit, "PIN try counter after VERIFY", str(app.pin_try_limit), str(ptc[0]) if ptc else f"SW {sw2:04X}")
    if sw == 0x9000 and app.pin_try_limit >= 2 and pin_change_host(ctx) is not None:
        # KEY-SMC-001: one wrong PIN now, so that the PIN CHANGE's counter reset
        # (Book 3 §6.5.10) shows in the next transaction; a VERIFY there restores it anyway
        ctx.pin_lowered = verify_pin(ctx, _wrong_pin(ctx.rec.pin)) == 0x63C0 | (app.pin_try_limit - 1)

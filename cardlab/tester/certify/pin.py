"""The offline PIN rules (EMV Book 3 §6.5.12, §10.5.1) under a stated PIN-safety policy:
certification must never be what blocks a card's PIN.

* The PIN try counter is read (GET DATA 9F17, Book 3 §6.5.7) before any VERIFY.
* VERIFY with the record's PIN is sent only when the counter is at the profile's limit, and at
  most once per card per run (:class:`.context.PinGuard`, shared by the card's applications); when that
  one try fails no further VERIFY is sent to the card in this run, and the report says why.
  A records file that does not match the cards therefore costs each card at most one try per
  run, and a card already one below its limit is not tried at all: three runs with wrong PINs
  leave every counter at limit − 1 at worst.
* Destructive checks (``--destructive``) send a wrong PIN only after the record's PIN proved
  right, and restore the counter with the right PIN afterwards (or by PIN CHANGE/UNBLOCK).
* ``restore_pin_counter`` (``--restore-pin-counter``): when the one VERIFY left the counter below
  its limit, or the card arrived with it below (then no VERIFY is sent in this run), and the issuer
  keys allow (IMK-AC to go online, IMK-SMI for the MAC), a PIN UNBLOCK
  script (PIN CHANGE/UNBLOCK with P2 = 00: the counter reset, the PIN unchanged, Book 3 §6.5.10)
  resets it in a further transaction — :func:`.scripts.restore_pin_counter` sends it and the
  counter read afterwards proves it.
* The counter before and after goes into the evidence of KEY-PIN-002. A command not sent is
  reported as "not sent: <reason>", never with a status word the card did not send.
"""

from __future__ import annotations

from ..cvm import offline_pin
from ..state import TransactionState
from .context import AppContext, get_data, sent_since, sw_of
from .host import pin_change_host

PIN_RULES = ("KEY-PIN-001", "KEY-PIN-002", "KEY-PIN-003")


def read_counter(ctx: AppContext) -> tuple[int | None, int]:
    """The PIN try counter (GET DATA 9F17) and the SW of the GET DATA."""
    value, sw = get_data(ctx, 0x9F17, "PIN try counter")
    return (value[0] if value else None), sw


def verify_pin(ctx: AppContext, pin: str, state: TransactionState | None = None) -> int | None:
    """VERIFY by the cardholder verification module (cardlab.tester.cvm): plaintext when the
    CVM list allows, else enciphered under the ICC key; the card's SW, None when the module did
    not send it (e.g. it found the counter at 0). ``state``: a later transaction of the same
    card (default: the certification transaction)."""
    st = state or ctx.state
    rules = ctx.all_values().get(0x8E, b"")
    codes = {rules[i] & 0x3F for i in range(8, len(rules) - 1, 2)}
    enciphered = not codes & {0x01, 0x03} and st.icc_public_key is not None
    mark = len(st.events)
    offline_pin(st, ctx.ch, pin, enciphered)
    verifies = sent_since(st, mark, 0x20)
    return sw_of(verifies[-1]) if verifies else None


def _wrong_pin(pin: str) -> str:
    return "0000" if pin != "0000" else "1111"


def _said(sw: int | None, why: str = "") -> str:
    return f"answered {sw:04X}" if sw is not None else f"not sent{': ' + why if why else ''}"


def pin_rules(ctx: AppContext) -> None:
    """KEY-PIN-001..003 under the policy of the module docstring."""
    c, app, guard = ctx.c, ctx.app, ctx.pin
    aid = app.aid.hex().upper()
    if not app.offline_pin:
        for rid in PIN_RULES:
            c.na(rid, "no offline PIN CVM in the profile")
        return
    limit = app.pin_try_limit
    before, sw0 = read_counter(ctx)
    if before is None:
        why = f"the PIN try counter could not be read (GET DATA 9F17 answered {sw0:04X})"
        c.check("KEY-PIN-002", False, why, str(limit), f"SW {sw0:04X}")
        c.not_run("KEY-PIN-001", f"VERIFY not sent: {why}; the PIN is never tried blind")
        _no_wrong_pin(ctx, "VERIFY not sent: " + why)
        return
    not_sent = guard.stopped or (
        f"the PIN try counter is {before}, below its limit {limit}: VERIFY is sent only at the limit, so that "
        "certification can never be what blocks the PIN" if before < limit else "")
    if not_sent:
        c.not_run("KEY-PIN-001", f"VERIFY not sent: {not_sent}")
        if before < limit and ctx.restore_pin_counter and not guard.stopped:
            # reset by PIN UNBLOCK after the transaction (:func:`.scripts.restore_pin_counter`, which
            # judges KEY-PIN-002); the PIN itself is verified by the next certification
            ctx.restore_from = (before, "on arrival")
        else:
            c.not_run("KEY-PIN-002", f"PIN try counter {before} (limit {limit}), not verified: {not_sent}")
        _no_wrong_pin(ctx, "VERIFY not sent: " + not_sent)
        return
    sw = verify_pin(ctx, ctx.rec.pin)
    after, _ = read_counter(ctx)
    c.check("KEY-PIN-001", sw == 0x9000, f"VERIFY with the record's PIN {_said(sw, 'the PIN module did not send it')}",
            "9000", f"{sw:04X}" if sw is not None else "not sent")  # fmt: skip
    if sw != 0x9000:
        guard.stopped = (f"VERIFY with the record's PIN was refused on {aid} ({_said(sw)}): no further PIN "
                         "try in this run (does the records file match the card?)")
    counter = f"PIN try counter before {before}, after {'-' if after is None else after} (limit {limit})"
    if sw != 0x9000 and ctx.restore_pin_counter and after is not None and after < limit:
        ctx.restore_from = (after, "after the refused VERIFY")  # :func:`.scripts.restore_pin_counter` resets it and judges KEY-PIN-002
    else:
        c.check("KEY-PIN-002", after == limit, counter, str(limit), str(after))
        if sw != 0x9000 and after is not None and after < limit:
            c.check("KEY-PIN-002", False, "the counter stays below its limit: --restore-pin-counter (with the "
                    "issuer's IMK-AC and IMK-SMI) resets it by PIN UNBLOCK")  # fmt: skip
    if sw != 0x9000:
        _no_wrong_pin(ctx, "the record's PIN was refused")
        return
    if ctx.destructive:
        # the right PIN is known: a wrong one now costs one try that the right one gives back
        wrong = verify_pin(ctx, _wrong_pin(ctx.rec.pin))
        expect = 0x63C0 | (limit - 1)
        c.check("KEY-PIN-003", wrong == expect, f"a wrong PIN {_said(wrong)}", f"{expect:04X}",
                f"{wrong:04X}" if wrong is not None else "not sent")  # fmt: skip
        if wrong == expect and limit >= 2 and pin_change_host(ctx) is not None:
            # KEY-SMC-001: the counter stays one below the limit so that the PIN CHANGE's reset
            # (Book 3 §6.5.10) shows in the next transaction; a VERIFY there restores it anyway
            ctx.pin_lowered = True
        elif wrong is not None and wrong & 0xFFF0 == 0x63C0:
            restored = verify_pin(ctx, ctx.rec.pin)
            final, _ = read_counter(ctx)
            c.check("KEY-PIN-002", restored == 0x9000 and final == limit,
                    f"after the wrong PIN the record's PIN {_said(restored)}; PIN try counter {final} (limit {limit})",
                    str(limit), str(final))  # fmt: skip
    else:
        c.na("KEY-PIN-003", "destructive checks not requested (--destructive)")


def _no_wrong_pin(ctx: AppContext, why: str) -> None:
    if ctx.destructive:
        ctx.c.not_run("KEY-PIN-003", f"wrong PIN not sent: {why}")
    else:
        ctx.c.na("KEY-PIN-003", "destructive checks not requested (--destructive)")

"""Cardholder verification (EMV 4.4 Book 3 §10.5, CV rules Annex C3;
offline PIN Book 3 §6.5.12 VERIFY, enciphered PIN Book 2 §7.2).

The CVM list (8E) is X (4 bytes) ‖ Y (4 bytes) ‖ rules of 2 bytes: the CVM
code (b7 set = apply the next rule if this one fails; b6..b1 the method) and
the condition. Rules are tried in order; the first whose condition is met and
whose method succeeds ends cardholder verification. CVM Results (9F34) are
method ‖ condition ‖ result (00 unknown, 01 failed, 02 successful; Book 4 A4).

The PIN comes from the transaction request; it is never stored in the state
or written to a trace (VERIFY commands are recorded without their data).
"""

from __future__ import annotations

import hashlib

from .channel import CardChannel
from .decode.cvm import CONDITIONS
from .decode.cvm import METHODS as METHOD_NAMES
from .exchange import event, send
from .oda import OdaError, icc_pin_key
from .state import TransactionState
from .terminal import TerminalProfile

STEP = "Cardholder verification"
REF = "EMV Book 3 §10.5, Annex C3"

FAIL_CVM, PLAIN_PIN, ONLINE_PIN, PLAIN_PIN_SIG, ENC_PIN, ENC_PIN_SIG, SIGNATURE, NO_CVM = (
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1E, 0x1F)

#: the CVM codes this terminal recognises in a CVM list (Book 3 Annex C3, Table C-3), named as the
#: decoders name them; 3F ("no CVM performed") is a result, never a rule
METHODS = {code: METHOD_NAMES[code]
           for code in (FAIL_CVM, PLAIN_PIN, ONLINE_PIN, PLAIN_PIN_SIG, ENC_PIN, ENC_PIN_SIG, SIGNATURE, NO_CVM)}

RESULT_UNKNOWN, RESULT_FAILED, RESULT_OK = 0x00, 0x01, 0x02


def parse_cvm_list(value: bytes) -> tuple[int, int, list[tuple[int, int]]]:
    """(X, Y, [(code byte, condition)]) — a trailing odd byte is ignored."""
    x = int.from_bytes(value[:4], "big") if len(value) >= 4 else 0
    y = int.from_bytes(value[4:8], "big") if len(value) >= 8 else 0
    body = value[8:]
    return x, y, [(body[i], body[i + 1]) for i in range(0, len(body) - 1, 2)]


def terminal_supports(terminal: TerminalProfile, method: int) -> bool:
    """Terminal capabilities 9F33 byte 2 (Book 4 Annex A2)."""
    need = {
        PLAIN_PIN: ["plaintext PIN for ICC verification"],
        ONLINE_PIN: ["enciphered PIN for online verification"],
        PLAIN_PIN_SIG: ["plaintext PIN for ICC verification", "signature (paper)"],
        ENC_PIN: ["enciphered PIN for offline verification"],
        ENC_PIN_SIG: ["enciphered PIN for offline verification", "signature (paper)"],
        SIGNATURE: ["signature (paper)"],
        NO_CVM: ["no CVM required"],
        FAIL_CVM: [],
    }.get(method)
    if need is None:
        return False
    return all(terminal.supports(n) for n in need)


def condition_met(state: TransactionState, condition: int, method: int, x: int, y: int) -> bool | None:
    """Whether a CV rule's condition holds; None for an unknown condition (skipped)."""
    terminal: TerminalProfile = state.terminal
    kind = state.transaction_type
    cash = kind in (0x01, 0x17)
    cashback = kind == 0x09 or (kind == 0x00 and state.amount_other > 0)
    unattended_cash = cash and terminal.unattended
    manual_cash = cash and not terminal.unattended
    if condition == 0x00:
        return True
    if condition == 0x01:
        return unattended_cash
    if condition == 0x02:
        return not (unattended_cash or manual_cash or cashback)
    if condition == 0x03:
        return terminal_supports(terminal, method)
    if condition == 0x04:
        return manual_cash
    if condition == 0x05:
        return cashback
    if 0x06 <= condition <= 0x09:
        # amounts compare only in the application currency (9F42 = 5F2A), Book 3 §10.5
        app_currency = state.card_data.get(0x9F42)
        if app_currency is None or app_currency != state.extras["terminal_data"][0x5F2A]:
            return False
        limit = x if condition in (0x06, 0x07) else y
        return state.amount < limit if condition in (0x06, 0x08) else state.amount > limit
    return None


def cardholder_verification(state: TransactionState, channel: CardChannel, *, pin: str | None = None) -> TransactionState:
    terminal: TerminalProfile = state.terminal
    if not state.aip or not state.aip[0] & 0x10:
        event(state, STEP, REF, "decision",
              "the AIP does not ask for cardholder verification: skipped (CVM Results 3F0000)")
        state.cvm_result = b"\x3F\x00\x00"
        return state
    cvm_list = state.card_data.get(0x8E)
    if cvm_list is None or len(cvm_list) < 10:
        state.cvm_result = b"\x3F\x00\x00"
        event(state, STEP, REF, "decision", "no CVM list (8E) or no rule in it: cardholder verification ends",
              tvr=("ICC data missing",))
        return state
    x, y, rules = parse_cvm_list(cvm_list)
    state.extras["cvm_x_y"] = (x, y)
    performed_any = False
    last_failed: tuple[int, int] | None = None
    for code, condition in rules:
        method = code & 0x3F
        name = METHODS.get(method, f"CVM {method:02X}")
        cond_name = CONDITIONS.get(condition, f"condition {condition:02X}")
        met = condition_met(state, condition, method, x, y)
        if not met:
            event(state, STEP, REF, "check", f"rule {code:02X}{condition:02X} ({name}, {cond_name}): "
                  + ("condition not met" if met is False else "condition not understood") + ", next rule")
            continue
        performed_any = True
        outcome, why = _perform(state, channel, method, pin)
        if outcome is not None:
            state.cvm_result = bytes((code, condition, outcome))
            state.extras["cvm"] = method
            event(state, STEP, REF, "decision", f"rule {code:02X}{condition:02X} ({name}, {cond_name}): {why}; "
                  f"CVM Results {state.cvm_result.hex().upper()}",
                  tsi=("cardholder verification was performed",))
            return state
        last_failed = (code, condition)
        if code & 0x40:
            event(state, STEP, REF, "check", f"rule {code:02X}{condition:02X} ({name}) failed: {why}; "
                  "b7 set: apply the next rule")
            continue
        event(state, STEP, REF, "check", f"rule {code:02X}{condition:02X} ({name}) failed: {why}; b7 clear: "
              "cardholder verification fails")
        break
    if last_failed is not None:
        state.cvm_result = bytes((last_failed[0], last_failed[1], RESULT_FAILED))
    else:
        state.cvm_result = b"\x3F\x00\x01"
    why = "a CVM failed" if performed_any else "no rule's condition was met"
    event(state, STEP, REF, "decision", f"cardholder verification was not successful ({why}); CVM Results "
          f"{state.cvm_result.hex().upper()}",
          tvr=("cardholder verification was not successful",), tsi=("cardholder verification was performed",))
    return state


def _perform(state: TransactionState, channel: CardChannel, method: int, pin: str | None) -> tuple[int | None, str]:
    """(CVM result byte, why) when it succeeded or ended undetermined; (None, why) when it failed."""
    terminal: TerminalProfile = state.terminal
    if method not in METHODS:
        event(state, STEP, REF, "check", f"CVM code {method:02X} is not recognised", tvr=("unrecognised CVM",))
        return None, "unrecognised CVM"
    if method == FAIL_CVM:
        return None, "the rule says fail"
    if not terminal_supports(terminal, method):
        if method in (PLAIN_PIN, PLAIN_PIN_SIG, ENC_PIN, ENC_PIN_SIG, ONLINE_PIN):
            event(state, STEP, REF, "check", "the terminal has no PIN pad for this method",
                  tvr=("PIN entry required and PIN pad not present or not working",))
        return None, "the terminal does not support it"
    if method == NO_CVM:
        return RESULT_OK, "no CVM required"
    if method == SIGNATURE:
        state.extras["signature_required"] = True
        return RESULT_UNKNOWN, "signature to be taken on the receipt"
    if method == ONLINE_PIN:
        if not pin:
            event(state, STEP, REF, "check", "online PIN asked, no PIN entered",
                  tvr=("PIN entry required, PIN pad present, but PIN was not entered",))
            return None, "PIN not entered"
        state.extras["online_pin_entered"] = True  # the PIN itself goes to the host, never into the state
        event(state, STEP, REF, "check", "PIN entered for online verification",
              tvr=("online PIN entered",))
        return RESULT_UNKNOWN, "PIN sent online for verification by the issuer"
    enciphered = method in (ENC_PIN, ENC_PIN_SIG)
    result, why = offline_pin(state, channel, pin, enciphered)
    if result and method in (PLAIN_PIN_SIG, ENC_PIN_SIG):
        state.extras["signature_required"] = True
        return RESULT_UNKNOWN, why + " and signature to be taken"
    return (RESULT_OK, why) if result else (None, why)


def pin_block(pin: str) -> bytes:
    """Plaintext offline PIN block (Book 3 §6.5.12 Table 24): 2 ‖ N ‖ PIN ‖ F…"""
    return bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))


def offline_pin(state: TransactionState, channel: CardChannel, pin: str | None, enciphered: bool) -> tuple[bool, str]:
    """GET DATA PIN try counter first (Book 3 §10.5.1), then VERIFY."""
    data, sw = send(state, channel, bytes.fromhex("80CA9F1700"), STEP, "EMV Book 3 §10.5.1, §6.5.7",
                    "GET DATA PIN try counter (9F17)")
    if sw == 0x9000 and len(data) >= 4 and data[:3] == b"\x9F\x17\x01":
        counter = data[3]
        state.card_data[0x9F17] = data[3:4]
        if counter == 0:
            event(state, STEP, "EMV Book 3 §10.5.1", "check", "PIN try counter is 0: the PIN is not asked",
                  tvr=("PIN try limit exceeded",))
            return False, "PIN try limit exceeded"
        event(state, STEP, "EMV Book 3 §10.5.1", "check", f"{counter} PIN tries left")
    if not pin:
        event(state, STEP, REF, "check", "no PIN entered (bypass)",
              tvr=("PIN entry required, PIN pad present, but PIN was not entered",))
        return False, "PIN not entered"
    if not (pin.isdigit() and 4 <= len(pin) <= 12):
        event(state, STEP, REF, "check", "the PIN entered is not 4 to 12 digits: not sent")
        return False, "PIN of the wrong form"
    block = pin_block(pin)
    if enciphered:
        key = state.extras.get("icc_pin_key")
        if key is None and 0x9F2D in state.card_data:
            # a distinct ICC PIN encipherment key takes precedence over the ICC key (Book 2 §7.1)
            try:
                key = icc_pin_key(state)
            except OdaError as exc:
                event(state, STEP, "EMV Book 2 §7.1", "check",
                      f"the ICC PIN encipherment key cannot be recovered: {exc}: enciphered PIN impossible")
                return False, "ICC PIN encipherment key not recovered"
        key = key or state.icc_public_key
        if key is None:
            event(state, STEP, "EMV Book 2 §7.1", "check",
                  "no ICC PIN encipherment key nor ICC public key was recovered: enciphered PIN impossible")
            return False, "no key to encipher the PIN"
        challenge, sw = send(state, channel, bytes.fromhex("0084000000"), STEP, "EMV Book 2 §7.2, Book 3 §6.5.6",
                             "GET CHALLENGE (an unpredictable number to go with the PIN)")
        if sw != 0x9000 or len(challenge) != 8:
            return False, f"GET CHALLENGE answered SW {sw:04X}"
        n, e = key
        size = (n.bit_length() + 7) // 8
        rng = state.extras.get("rng")
        pad = bytes(rng.getrandbits(8) for _ in range(size - 17)) if rng else hashlib.sha256(challenge).digest()
        plain = b"\x7F" + block + challenge + pad[: size - 17].ljust(size - 17, b"\x55")
        cipher = pow(int.from_bytes(plain, "big"), e, n).to_bytes(size, "big")
        command = bytes((0x00, 0x20, 0x00, 0x88, size)) + cipher
        text = "VERIFY with the enciphered PIN (P2 88; data withheld)"
    else:
        command = bytes.fromhex("0020008008") + block
        text = "VERIFY with the plaintext PIN block (P2 80; data withheld)"
    _, sw = send(state, channel, command, STEP, "EMV Book 3 §6.5.12", text)
    if sw == 0x9000:
        state.pin_verified = True
        return True, "the card accepted the PIN"
    state.pin_verified = False
    if sw >> 4 == 0x63C:
        left = sw & 0x0F
        if left == 0:
            event(state, STEP, REF, "check", "wrong PIN and no tries left", tvr=("PIN try limit exceeded",))
            return False, "wrong PIN, try limit now exceeded"
        return False, f"wrong PIN ({left} tries left)"
    if sw in (0x6983, 0x6984):
        event(state, STEP, REF, "check", f"the PIN is blocked (SW {sw:04X})", tvr=("PIN try limit exceeded",))
        return False, "PIN blocked"
    return False, f"VERIFY answered SW {sw:04X}"

"""The CVM list (8E) and CVM Results (9F34).

CVM list (EMV 4.4 Book 3 §10.5, Annex C3): amount X (4 bytes) ‖ amount Y
(4 bytes) ‖ CV rules of 2 bytes: the CVM code (b7 set = apply the succeeding
rule if this CVM fails; b6-1 the method, Table C-3 part 1) and the condition
code (Table C-3 part 2). X and Y are in the application currency (9F42),
with its exponent (9F44). CVM Results (Book 4 Annex A4): method code ‖
condition ‖ result (00 unknown, 01 failed, 02 successful).

>>> r = parse(bytes.fromhex("000000000000000042031E031F00")).rules
>>> [str(x) for x in r]
['4203 enciphered PIN verified online, if terminal supports the CVM; if it fails, next rule', \
'1E03 signature (paper), if terminal supports the CVM; if it fails, fail cardholder verification', \
'1F00 no CVM required, always; if it fails, fail cardholder verification']
"""

from __future__ import annotations

from dataclasses import dataclass

#: Book 3 Annex C3, Table C-3: CVM codes (b6-1)
METHODS: dict[int, str] = {
    0x00: "fail CVM processing",
    0x01: "plaintext PIN verified by the ICC",
    0x02: "enciphered PIN verified online",
    0x03: "plaintext PIN verified by the ICC and signature (paper)",
    0x04: "enciphered PIN verified by the ICC",
    0x05: "enciphered PIN verified by the ICC and signature (paper)",
    0x1E: "signature (paper)",
    0x1F: "no CVM required",
    0x3F: "no CVM performed (not available for use in a list)",
}

#: Book 3 Annex C3, Table C-4: CVM condition codes
CONDITIONS: dict[int, str] = {
    0x00: "always",
    0x01: "if unattended cash",
    0x02: "if not unattended cash and not manual cash and not purchase with cashback",
    0x03: "if terminal supports the CVM",
    0x04: "if manual cash",
    0x05: "if purchase with cashback",
    0x06: "if transaction is in the application currency and is under X value",
    0x07: "if transaction is in the application currency and is over X value",
    0x08: "if transaction is in the application currency and is under Y value",
    0x09: "if transaction is in the application currency and is over Y value",
}

RESULTS = {0x00: "unknown", 0x01: "failed", 0x02: "successful"}

#: ISO 4217: numeric code → (alphabetic code, minor unit exponent), the currencies demos use
CURRENCIES: dict[int, tuple[str, int]] = {
    36: ("AUD", 2), 124: ("CAD", 2), 156: ("CNY", 2), 203: ("CZK", 2), 208: ("DKK", 2), 348: ("HUF", 2),
    356: ("INR", 2), 392: ("JPY", 0), 578: ("NOK", 2), 752: ("SEK", 2), 756: ("CHF", 2), 826: ("GBP", 2),
    840: ("USD", 2), 949: ("TRY", 2), 978: ("EUR", 2), 985: ("PLN", 2), 986: ("BRL", 2),
}


class CvmError(ValueError):
    pass


def method_name(code: int) -> str:
    m = code & 0x3F
    if m in METHODS:
        return METHODS[m]
    if 0x20 <= m <= 0x2F:
        return f"payment system CVM {m:02X}"
    if 0x30 <= m <= 0x3E:
        return f"issuer CVM {m:02X}"
    return f"RFU CVM {m:02X}"


def condition_name(cond: int) -> str:
    if cond in CONDITIONS:
        return CONDITIONS[cond]
    return f"payment system condition {cond:02X}" if cond >= 0x80 else f"RFU condition {cond:02X}"


@dataclass(frozen=True)
class Rule:
    code: int
    condition: int

    @property
    def method(self) -> int:
        return self.code & 0x3F

    @property
    def next_on_failure(self) -> bool:
        return bool(self.code & 0x40)

    def __str__(self) -> str:
        then = "next rule" if self.next_on_failure else "fail cardholder verification"
        return (f"{self.code:02X}{self.condition:02X} {method_name(self.code)}, {condition_name(self.condition)};"
                f" if it fails, {then}")


@dataclass(frozen=True)
class CvmList:
    x: int
    y: int
    rules: tuple[Rule, ...]


def parse(value: bytes) -> CvmList:
    if len(value) < 8 or len(value) % 2:
        raise CvmError(f"a CVM list is X (4) ‖ Y (4) ‖ 2-byte rules, got {len(value)} bytes")
    body = value[8:]
    return CvmList(int.from_bytes(value[:4], "big"), int.from_bytes(value[4:8], "big"),
                   tuple(Rule(body[i], body[i + 1]) for i in range(0, len(body), 2)))


def amount_text(minor: int, currency: int | None = None, exponent: int | None = None) -> str:
    """``1500`` minor units → ``15.00 EUR`` (exponent from 9F44, else ISO 4217)."""
    code, default_exp = CURRENCIES.get(currency or -1, ("", 2))
    exp = default_exp if exponent is None else exponent
    whole = f"{minor // 10 ** exp}.{minor % 10 ** exp:0{exp}d}" if exp else str(minor)
    label = code or (f"currency {currency:03d}" if currency is not None else "")
    return f"{whole} {label}".strip()


def lines(value: bytes, currency: int | None = None, exponent: int | None = None) -> list[str]:
    cl = parse(value)
    out = [f"X = {amount_text(cl.x, currency, exponent)} ({cl.x} minor units)",
           f"Y = {amount_text(cl.y, currency, exponent)} ({cl.y} minor units)"]
    for i, rule in enumerate(cl.rules, 1):
        text = str(rule)
        if rule.condition in (0x06, 0x07):
            text += f" [X = {amount_text(cl.x, currency, exponent)}]"
        elif rule.condition in (0x08, 0x09):
            text += f" [Y = {amount_text(cl.y, currency, exponent)}]"
        out.append(f"rule {i}: {text}")
    return out


def to_json(value: bytes) -> dict[str, object]:
    cl = parse(value)
    return {"x": cl.x, "y": cl.y, "rules": [
        {"code": f"{r.code:02X}{r.condition:02X}", "method": method_name(r.code),
         "condition": condition_name(r.condition), "next_rule_on_failure": r.next_on_failure} for r in cl.rules]}


def results_lines(value: bytes) -> list[str]:
    """CVM Results 9F34 (Book 4 Annex A4)."""
    if len(value) != 3:
        raise CvmError(f"CVM Results are 3 bytes, got {len(value)}")
    return [f"CVM performed: {value[0]:02X} {method_name(value[0])}",
            f"condition: {value[1]:02X} {condition_name(value[1])}",
            f"result: {value[2]:02X} {RESULTS.get(value[2], 'RFU')}"]

"""Status words and what they mean (ISO/IEC 7816-4:2020 §5.6 Tables 5–6,
EMV 4.4 Book 1 §9.4 and §12, Book 3 §6.3.5 and the command sections §6.5,
GlobalPlatform Card Specification 2.3 §11.1.3). Some status words mean
something particular for one command; :func:`meaning` takes the INS.

>>> meaning(0x6A83, 0xB2)
'record not found (Book 1 §12.2.3: the end of the directory / of the file)'
>>> meaning(0x63C2, 0x20)
'wrong PIN, 2 tries left (Book 3 §6.5.12)'
"""

from __future__ import annotations

#: ISO 7816-4 §5.6 Tables 5 and 6 (interindustry meanings)
GENERAL: dict[int, str] = {
    0x9000: "normal processing",
    0x6200: "warning: no information given, non-volatile memory unchanged",
    0x6281: "warning: part of the returned data may be corrupted",
    0x6282: "warning: end of file or record reached before reading Ne bytes",
    0x6283: "warning: selected file deactivated (invalidated)",
    0x6284: "warning: file control information not formatted per ISO 7816-4",
    0x6285: "warning: selected file in termination state",
    0x6300: "warning: no information given, non-volatile memory changed",
    0x6310: "more data available (GlobalPlatform GET STATUS)",
    0x6400: "execution error: non-volatile memory unchanged",
    0x6581: "execution error: memory failure",
    0x6700: "wrong length",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6900: "command not allowed",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "incorrect secure messaging data objects",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data or reference data not found",
    0x6A89: "file already exists",
    0x6A8A: "DF name already exists",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}

#: (INS, SW) → the meaning EMV gives it for that command
PER_COMMAND: dict[tuple[int, int], str] = {
    (0xA4, 0x6A81): "card blocked or SELECT not supported (Book 1 §12.3.2: the terminal terminates)",
    (0xA4, 0x6A82): "application or PSE not found (Book 1 §12.3.2: use the list of AIDs)",
    (0xA4, 0x6283): "application blocked (Book 1 §12.4: not a candidate)",
    (0xB2, 0x6A83): "record not found (Book 1 §12.2.3: the end of the directory / of the file)",
    (0xA8, 0x6985): "conditions of use not satisfied (Book 3 §10.1: the terminal drops this "
                    "application and returns to candidate selection)",
    (0xAE, 0x6985): "conditions of use not satisfied (Book 3 §6.5.5: the card refuses another cryptogram)",
    (0x20, 0x6983): "PIN blocked: the PIN try limit was reached (Book 3 §6.5.12)",
    (0x20, 0x6984): "PIN blocked: reference data not usable (Book 3 §6.5.12)",
    (0x82, 0x6300): "issuer authentication failed (Book 3 §6.5.4)",
    (0xCA, 0x6A88): "the card does not hold that data object (Book 3 §6.5.7)",
}


def meaning(sw: int, ins: int | None = None) -> str:
    """What ``sw`` says (for the command ``ins`` when given)."""
    if ins is not None and (ins, sw) in PER_COMMAND:
        return PER_COMMAND[(ins, sw)]
    if ins == 0x20 and sw & 0xFFF0 == 0x63C0:
        n = sw & 0x0F
        return f"wrong PIN, {n} tr{'y' if n == 1 else 'ies'} left (Book 3 §6.5.12)"
    if sw in GENERAL:
        return GENERAL[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2} more bytes available: GET RESPONSE (Book 1 §9.3.1.3)"
    if sw1 == 0x6C:
        return f"wrong Le: resend with Le {sw2:02X} (Book 1 §9.3.1.3)"
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, counter {sw & 0x0F}"
    if sw1 in (0x62, 0x63):
        return "warning (state of non-volatile memory: " + ("unchanged)" if sw1 == 0x62 else "changed)")
    if sw1 in (0x64, 0x65, 0x66):
        return "execution error"
    if sw1 in (0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6D, 0x6E, 0x6F):
        return "checking error"
    if sw1 == 0x90 or sw1 == 0x91:
        return "normal processing (proprietary SW2)"
    return "unknown status"


def category(sw: int) -> str:
    """ISO 7816-4 §5.6: normal, warning, or error processing."""
    sw1 = sw >> 8
    if sw1 in (0x90, 0x61):
        return "normal"
    if sw1 in (0x62, 0x63):
        return "warning"
    return "error"


def text(sw: int, ins: int | None = None) -> str:
    """``6A83 record not found (…)``"""
    return f"{sw:04X} {meaning(sw, ins)}"

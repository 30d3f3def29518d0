"""The tester's own reading of the Answer to Reset (independent of the card's code).

A terminal judges power-on before anything else: the ATR's structure
(ISO/IEC 7816-3 §8.2: TS, T0, the TAi/TBi/TCi/TDi chain, K historical bytes,
TCK), the rules EMV puts on it (EMV 4.4 Book 1 §8.3, the basic ATRs) and its
historical bytes (ISO/IEC 7816-4 §8.1.1). Each finding names the byte.

Written apart from the card's ATR module on purpose (the tester imports nothing
of the card): a byte-by-byte walk that keeps every byte with its name, which is
also what the teaching trace prints.

>>> a = read(bytes.fromhex("3B6600008031C0829000"))
>>> [(b.name, f"{b.value:02X}") for b in a.interface]
[('TB1', '00'), ('TC1', '00')]
>>> a.protocols, a.problems, emv_findings(a)
([0], [], [])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .state import TransactionState, TraceEvent

REF_STRUCTURE = "ISO/IEC 7816-3 §8.2"
REF_EMV = "EMV 4.4 Book 1 §8.3"
REF_HIST = "ISO/IEC 7816-4 §8.1.1"


@dataclass(frozen=True)
class AtrByte:
    name: str  # "TS", "T0", "TA1", …, "H1" … "Hk", "TCK"
    offset: int
    value: int
    meaning: str


@dataclass
class ReadAtr:
    """What the tester found in an ATR; ``problems`` are structural (ISO/IEC 7816-3)."""

    raw: bytes
    bytes_: list[AtrByte] = field(default_factory=list)
    #: protocol announced by TD1, TD2, … in order
    td_protocols: list[int] = field(default_factory=list)
    historical: bytes = b""
    problems: list[str] = field(default_factory=list)

    @property
    def interface(self) -> list[AtrByte]:
        return [b for b in self.bytes_ if b.name[:2] in ("TA", "TB", "TC", "TD")]

    @property
    def protocols(self) -> list[int]:
        """Protocols offered, the first being the default; [0] without TD1 (ISO/IEC 7816-3 §8.2.3)."""
        found = [t for t in self.td_protocols if t != 15]
        return list(dict.fromkeys(found)) if self.td_protocols else [0]

    def get(self, name: str) -> AtrByte | None:
        for b in self.bytes_:
            if b.name == name:
                return b
        return None


def _meaning(name: str, value: int, previous_t: int | None) -> str:
    if name.startswith("TD"):
        nxt = ", ".join(k for k, bit in (("TA", 0x10), ("TB", 0x20), ("TC", 0x40), ("TD", 0x80)) if value & bit)
        return f"protocol T={value & 0x0F}; next group has {nxt or 'nothing'}"
    fixed = {
        "TA1": f"Fi/Di index {value >> 4:X}/{value & 0x0F:X} (clock rate conversion, bit rate adjustment)",
        "TB1": "no VPP (deprecated programming voltage)" if value == 0 else f"VPP {value:02X} (deprecated)",
        "TC1": f"extra guard time N = {value}" + (" (minimum: 12 etu for T=0, 11 for T=1)" if value == 0xFF else ""),
        "TA2": f"specific mode, T={value & 0x0F}" + (" (parameters implicit)" if value & 0x10 else ""),
        "TB2": "VPP (deprecated)",
        "TC2": f"T=0 work waiting time integer WI = {value}",
    }
    if name in fixed:
        return fixed[name]
    if previous_t == 1:
        return {"TA": f"IFSC = {value} bytes", "TB": f"BWI = {value >> 4}, CWI = {value & 0x0F}",
                "TC": "error detection: " + ("CRC" if value & 1 else "LRC")}[name[:2]]
    if previous_t == 15:
        return {"TA": "clock stop / class indicator", "TB": "SPU use", "TC": "global (RFU)"}[name[:2]]
    return f"interface byte for T={previous_t}"


def read(raw: bytes) -> ReadAtr:
    """Walk ``raw`` byte by byte (ISO/IEC 7816-3 §8.2); never raises."""
    out = ReadAtr(raw)
    if len(raw) < 2:
        out.problems.append(f"ATR of {len(raw)} bytes: TS and T0 are mandatory ({REF_STRUCTURE}.1)")
        return out
    ts = raw[0]
    out.bytes_.append(AtrByte("TS", 0, ts, {0x3B: "direct convention", 0x3F: "inverse convention"}.get(ts, "?")))
    if ts not in (0x3B, 0x3F):
        out.problems.append(f"TS (byte 0) = {ts:02X}: must be 3B or 3F ({REF_STRUCTURE}.1)")
    t0 = raw[1]
    k = t0 & 0x0F
    out.bytes_.append(AtrByte("T0", 1, t0, f"Y1 = {t0 >> 4:X}, K = {k} historical bytes"))
    y, pos, i, previous_t = t0 >> 4, 2, 1, None
    while True:
        td = None
        for kind, bit in (("TA", 1), ("TB", 2), ("TC", 4), ("TD", 8)):
            if not y & bit:
                continue
            if pos >= len(raw):
                out.problems.append(f"{kind}{i} (byte {pos}) announced but the ATR ends there ({REF_STRUCTURE}.3)")
                return out
            name = f"{kind}{i}"
            out.bytes_.append(AtrByte(name, pos, raw[pos], _meaning(name, raw[pos], previous_t)))
            if kind == "TD":
                td = raw[pos]
            pos += 1
        if td is None:
            break
        out.td_protocols.append(td & 0x0F)
        previous_t, y, i = td & 0x0F, td >> 4, i + 1
    if pos + k > len(raw):
        out.problems.append(f"T0 (byte 1) announces {k} historical bytes, {len(raw) - pos} follow ({REF_STRUCTURE}.4)")
        return out
    out.historical = raw[pos : pos + k]
    for j in range(k):
        out.bytes_.append(AtrByte(f"H{j + 1}", pos + j, raw[pos + j], "historical byte"))
    pos += k
    needs_tck = any(t != 0 for t in out.td_protocols)
    if needs_tck:
        if pos >= len(raw):
            out.problems.append(f"TCK (byte {pos}) missing: mandatory when T≠0 is announced ({REF_STRUCTURE}.5)")
            return out
        check = 0
        for b in raw[1 : pos + 1]:
            check ^= b
        out.bytes_.append(AtrByte("TCK", pos, raw[pos], "check byte" + ("" if not check else " (WRONG)")))
        if check:
            out.problems.append(f"TCK (byte {pos}) = {raw[pos]:02X}: expected {raw[pos] ^ check:02X} "
                                f"(T0 … TCK XOR to 00) ({REF_STRUCTURE}.5)")
        pos += 1
    if pos < len(raw):
        out.problems.append(f"byte {pos} = {raw[pos]:02X}: {len(raw) - pos} byte(s) after the end of the ATR "
                            f"({REF_STRUCTURE})")
    return out


def _name(a: ReadAtr, name: str) -> str:
    b = a.get(name)
    return f"{name} (byte {b.offset}) = {b.value:02X}" if b else f"{name} absent"


def emv_findings(a: ReadAtr) -> list[str]:
    """EMV's basic-ATR rules for the protocols the ATR announces (EMV 4.4 Book 1 §8.3.3)."""
    out: list[str] = []
    v = {b.name: b.value for b in a.bytes_}
    first = a.td_protocols[0] if a.td_protocols else 0
    if "TA1" in v and v["TA1"] not in (0x11, 0x12, 0x13):
        out.append(f"{_name(a, 'TA1')}: EMV accepts Fi/Di 11, 12 or 13 only")
    if v.get("TB1") != 0x00:
        out.append(f"{_name(a, 'TB1')}: the basic ATR has TB1 = 00 (no VPP)")
    if v.get("TC1") not in (0x00, 0xFF):
        out.append(f"{_name(a, 'TC1')}: the basic ATR has TC1 = 00 (or FF)")
    if first not in (0, 1):
        out.append(f"{_name(a, 'TD1')}: EMV cards use T=0 or T=1")
    if "TB2" in v:
        out.append(f"{_name(a, 'TB2')}: EMV does not allow TB2")
    if "TA2" in v and (v["TA2"] & 0x10 or v["TA2"] & 0x0F != first):
        out.append(f"{_name(a, 'TA2')}: specific mode must name T={first} with b5 = 0")
    if "TC2" in v and (first != 0 or v["TC2"] != 0x0A):
        out.append(f"{_name(a, 'TC2')}: only a T=0 card may give TC2, and only 0A")
    if len(a.td_protocols) >= 2:
        t2 = a.td_protocols[1]
        if first == 0 and t2 != 15:
            out.append(f"{_name(a, 'TD2')}: after T=0 only T=15 may follow, found T={t2}")
        if first == 1 and t2 != 1:
            out.append(f"{_name(a, 'TD2')}: after TD1 T=1 the basic ATR has TD2 with T=1")
    elif first == 1:
        out.append(f"{_name(a, 'TD1')}: T=1 needs TD2 (T=1) announcing TA3 and TB3")
    if first == 1 and len(a.td_protocols) >= 2:
        if not 0x10 <= v.get("TA3", 0) <= 0xFE:
            out.append(f"{_name(a, 'TA3')}: IFSC must be 10-FE")
        if "TB3" not in v or v["TB3"] >> 4 > 4 or v["TB3"] & 0x0F > 5:
            out.append(f"{_name(a, 'TB3')}: BWI 0-4 and CWI 0-5 expected")
        if v.get("TC3", 0) != 0x00:
            out.append(f"{_name(a, 'TC3')}: EMV uses the LRC (TC3 = 00 or absent)")
        if len(a.td_protocols) >= 3:
            out.append(f"{_name(a, 'TD3')}: the basic T=1 ATR ends at TB3")
    return out


def _sw_ok(sw: bytes) -> bool:
    n = int.from_bytes(sw, "big")
    return n == 0x9000 or 0x6100 <= n <= 0x6FFF


def historical_findings(hist: bytes) -> list[str]:
    """ISO/IEC 7816-4 §8.1.1: category indicator 00 (status indicator LCS SW1 SW2 last), 80
    (compact-TLV, status indicator object 8x optional), 10 (DIR data reference); 81-8F RFU."""
    if not hist:
        return []
    cat = hist[0]
    if 0x81 <= cat <= 0x8F:
        return [f"H1 = {cat:02X}: category indicator reserved for future use"]
    if cat == 0x10:
        return [] if len(hist) == 2 else [f"H1 = 10: one DIR data reference byte expected, {len(hist) - 1} follow"]
    if cat not in (0x00, 0x80):
        return []  # proprietary: nothing to check
    body = hist[1:-3] if cat == 0x00 else hist[1:]
    out: list[str] = []
    if cat == 0x00:
        if len(hist) < 4:
            return [f"H1 = 00: a status indicator (3 bytes) must end the historical bytes, {len(hist) - 1} follow"]
        if not _sw_ok(hist[-2:]):
            out.append(f"H{len(hist) - 1}-H{len(hist)} = {hist[-2:].hex().upper()}: status indicator is not a valid SW")
    i = 0
    while i < len(body):
        tag, length = body[i] >> 4, body[i] & 0x0F
        name = f"H{i + 2}"
        if tag == 0:
            out.append(f"{name} = {body[i]:02X}: compact-TLV tag 0 is not defined")
        if i + 1 + length > len(body):
            out.append(f"{name} = {body[i]:02X}: compact-TLV length {length} runs past the end")
            break
        value = body[i + 1 : i + 1 + length]
        if tag == 8 and (length not in (1, 2, 3) or (length > 1 and not _sw_ok(value[-2:]))):
            out.append(f"{name} = {body[i]:02X}: status indicator {value.hex().upper()} is not LCS / SW / LCS SW")
        i += 1 + length
    return out


def describe(a: ReadAtr) -> list[str]:
    """One line per byte: ``TD1  81  protocol T=1; next group has TD``."""
    return [f"{b.name:<4} {b.value:02X}  {b.meaning}" for b in a.bytes_]


STEP = "Answer to reset"


def answer_to_reset(state: TransactionState, atr: bytes, protocol: str = "") -> TransactionState:
    """The trace's first step: the ATR decoded byte by byte, and what a strict terminal
    makes of it (the transaction goes on either way: the reader has already accepted the card)."""
    if not atr:
        return state
    a = read(atr)
    ev = state.events
    ev.append(TraceEvent(STEP, REF_STRUCTURE, "note", f"ATR {atr.hex().upper()}"))
    for line in describe(a):
        ev.append(TraceEvent(STEP, REF_STRUCTURE, "note", line))
    findings = a.problems + (emv_findings(a) + historical_findings(a.historical) if not a.problems else [])
    used = f"; the reader uses {protocol}" if protocol else ""
    offered = ", ".join(f"T={t}" for t in a.protocols)
    if findings:
        ev.append(TraceEvent(STEP, REF_EMV, "check", f"not an EMV basic ATR: {'; '.join(findings)}"))
    else:
        ev.append(TraceEvent(STEP, REF_EMV, "check", f"an EMV basic ATR offering {offered}{used}"))
    return state

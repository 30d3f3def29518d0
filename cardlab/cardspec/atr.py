"""Answer to Reset: parse, build and check against EMV's basic ATRs.

Structure (ISO/IEC 7816-3 §8.2): TS, T0, then groups of interface bytes
TAi TBi TCi TDi, the K historical bytes, and TCK. T0 and each TDi say which
bytes of the next group follow (the Y nibble, b5 TA … b8 TD); the low nibble
of T0 is K, that of TDi the protocol T the group announces. TCK (the XOR of
T0 … TCK is 00) is present unless only T=0 is announced (§8.2.5).

EMV's rules (EMV 4.4 Book 1 §8.3, "basic ATR"): :func:`emv_problems`.

The bit fields of T0 and TDi are declared with ``construct`` below, as the
standard draws them; the chain is walked by hand because which bytes follow
depends on the byte before, and a hand walk can name the byte where an ATR
goes wrong (``TD2 (byte 4)``), which is what a user needs to read.

>>> atr = parse(DEFAULT_T1)
>>> atr.protocols, atr.historical.hex().upper()
((1,), '8031C0829000')
>>> build(atr) == DEFAULT_T1
True
>>> emv_problems(parse(bytes.fromhex("3B8880010000000000718100F9")))[2]
'TD2 (byte 3) = 01: EMV allows only T=15 after T=0 (ISO/IEC 7816-3 §8.2.3), found T=1'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from construct import BitsInteger, BitStruct, Flag

#: T0 and TDi (ISO/IEC 7816-3 §8.2.2, §8.2.3): presence of TD, TC, TB, TA of the next
#: group (b8..b5), then K (T0) or the protocol T (TDi) in b4..b1
Y_AND_LOW = BitStruct("td" / Flag, "tc" / Flag, "tb" / Flag, "ta" / Flag, "low" / BitsInteger(4))

DIRECT, INVERSE = 0x3B, 0x3F
MAX_HISTORICAL = 15

#: cardlab's historical bytes (ISO/IEC 7816-4 §8.1.1): category 80 (compact-TLV follows),
#: 31 C0 card service data (selection by full and by partial DF name, §8.1.1.2.3),
#: 82 90 00 status indicator SW1 SW2 = 9000 (§8.1.1.3)
DEFAULT_HISTORICAL = bytes.fromhex("8031C0829000")


class AtrError(ValueError):
    """The bytes are not an ATR; the message names the byte."""


@dataclass(frozen=True)
class Group:
    """Interface bytes of group i: TAi, TBi, TCi (None when absent) and the
    protocol TDi announces (None when there is no TDi)."""

    ta: int | None = None
    tb: int | None = None
    tc: int | None = None
    td_protocol: int | None = None


@dataclass(frozen=True)
class Atr:
    ts: int
    groups: tuple[Group, ...]
    historical: bytes = b""
    #: TCK as found (parse) or None to compute it (build) / when absent
    tck: int | None = None
    #: for parsed ATRs: the byte offsets of every interface byte name (``"TD1"`` → 2)
    offsets: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def protocols(self) -> tuple[int, ...]:
        """The protocols announced by TD1, TD2 … in order, T=15 (global) left out; (0,) without TD1."""
        found = tuple(g.td_protocol for g in self.groups if g.td_protocol is not None)
        if not found:
            return (0,)
        return tuple(dict.fromkeys(t for t in found if t != 15))

    @property
    def tck_required(self) -> bool:
        """TCK is present unless only T=0 is announced (ISO/IEC 7816-3 §8.2.5)."""
        return any(g.td_protocol not in (None, 0) for g in self.groups)

    def byte(self, name: str) -> int | None:
        """An interface byte by name (``"TB3"``), None when absent."""
        kind, index = name[:2], int(name[2:])
        if not 1 <= index <= len(self.groups):
            return None
        g = self.groups[index - 1]
        return {"TA": g.ta, "TB": g.tb, "TC": g.tc}.get(kind)


def _at(name: str, offset: int) -> str:
    return f"{name} (byte {offset})"


def parse(raw: bytes) -> Atr:
    """The ATR ``raw`` (direct convention bytes as a PC/SC reader reports them).

    Raises :class:`AtrError` naming the byte when the structure is wrong or
    TCK is missing or wrong (ISO/IEC 7816-3 §8.2)."""
    if len(raw) < 2:
        raise AtrError(f"ATR of {len(raw)} bytes: TS and T0 are mandatory")
    if raw[0] not in (DIRECT, INVERSE):
        raise AtrError(f"TS (byte 0) = {raw[0]:02X}: expected 3B (direct) or 3F (inverse convention)")
    offsets: dict[str, int] = {"TS": 0, "T0": 1}
    y = Y_AND_LOW.parse(raw[1:2])
    k = y.low
    pos = 2
    groups: list[Group] = []
    index = 1
    while True:
        values: dict[str, int | None] = {"TA": None, "TB": None, "TC": None, "TD": None}
        for kind, present in (("TA", y.ta), ("TB", y.tb), ("TC", y.tc), ("TD", y.td)):
            if not present:
                continue
            if pos >= len(raw):
                raise AtrError(f"{kind}{index} (byte {pos}) is announced but the ATR ends there")
            values[kind] = raw[pos]
            offsets[f"{kind}{index}"] = pos
            pos += 1
        td = values["TD"]
        if td is None:
            groups.append(Group(values["TA"], values["TB"], values["TC"], None))
            break
        y = Y_AND_LOW.parse(bytes((td,)))
        groups.append(Group(values["TA"], values["TB"], values["TC"], y.low))
        index += 1
    if pos + k > len(raw):
        raise AtrError(f"T0 (byte 1) announces {k} historical bytes, only {len(raw) - pos} follow")
    historical = raw[pos : pos + k]
    offsets["hist"] = pos  # first historical byte
    pos += k
    atr = Atr(raw[0], tuple(groups), historical, None, offsets)
    if atr.tck_required:
        if pos >= len(raw):
            raise AtrError(f"TCK (byte {pos}) is missing: it is mandatory when a protocol other than T=0 is announced")
        tck = raw[pos]
        offsets["TCK"] = pos
        pos += 1
        check = 0
        for b in raw[1:pos]:
            check ^= b
        if check:
            raise AtrError(f"TCK (byte {pos - 1}) = {tck:02X}: expected {tck ^ check:02X} (XOR of T0 … TCK must be 00)")
        atr = Atr(raw[0], tuple(groups), historical, tck, offsets)
    if pos != len(raw):
        raise AtrError(f"byte {pos} = {raw[pos]:02X}: {len(raw) - pos} byte(s) after the end of the ATR")
    return atr


def _y(g: Group, low: int, td: bool) -> int:
    b = Y_AND_LOW.build({"td": td, "tc": g.tc is not None, "tb": g.tb is not None, "ta": g.ta is not None,
                         "low": low})
    return int(b[0])


def build(atr: Atr) -> bytes:
    """The bytes of ``atr``; TCK is computed when ``atr.tck`` is None and one is required."""
    if not atr.groups:
        raise AtrError("an ATR has at least the group that T0 describes")
    if len(atr.historical) > MAX_HISTORICAL:
        raise AtrError(f"{len(atr.historical)} historical bytes: at most {MAX_HISTORICAL} (K is 4 bits)")
    out = bytearray((atr.ts,))
    out.append(_y(atr.groups[0], len(atr.historical), atr.groups[0].td_protocol is not None))
    for i, g in enumerate(atr.groups):
        out += bytes(v for v in (g.ta, g.tb, g.tc) if v is not None)
        if g.td_protocol is not None:
            nxt = atr.groups[i + 1] if i + 1 < len(atr.groups) else Group()
            out.append(_y(nxt, g.td_protocol, nxt.td_protocol is not None))
        elif i + 1 < len(atr.groups):
            raise AtrError(f"group {i + 1} has no TD{i + 1} but group {i + 2} follows")
    out += atr.historical
    if atr.tck_required:
        if atr.tck is not None:
            out.append(atr.tck)
        else:
            check = 0
            for b in out[1:]:
                check ^= b
            out.append(check)
    return bytes(out)


def basic(protocol: int, historical: bytes = DEFAULT_HISTORICAL) -> bytes:
    """EMV's basic ATR (EMV 4.4 Book 1 §8.3) for ``protocol`` 0 or 1 with ``historical`` bytes.

    T=0: ``3B 6K 00 00 hist`` (TB1 = 00: no VPP; TC1 = 00: no extra guard time; no TD1).
    T=1: ``3B EK 00 00 81 31 FE 45 hist TCK`` (TD1: T=1, TD2 follows; TD2: T=1, TA3 and TB3 follow;
    TA3 = FE: IFSC 254; TB3 = 45: BWI 4, CWI 5).

    >>> basic(0).hex().upper()
    '3B6600008031C0829000'
    """
    if protocol == 0:
        return build(Atr(DIRECT, (Group(tb=0x00, tc=0x00),), historical))
    if protocol == 1:
        return build(Atr(DIRECT, (Group(tb=0x00, tc=0x00, td_protocol=1), Group(td_protocol=1),
                                  Group(ta=0xFE, tb=0x45)), historical))
    raise ValueError(f"T={protocol}: EMV cards use T=0 or T=1")


def contactless(historical: bytes = DEFAULT_HISTORICAL) -> bytes:
    """The ATR a PC/SC reader builds for an ISO/IEC 14443-4 card (PC/SC Part 3 §3.1.3.2.3):
    ``3B 8K 80 01 hist TCK`` — T0 (TD1 follows, K historical bytes), TD1 = 80 (TD2 follows,
    T=0), TD2 = 01 (T=1), the card's historical bytes (the ATS's for type A, at most 15), TCK.

    >>> contactless().hex().upper()
    '3B8680018031C082900064'
    """
    return build(Atr(DIRECT, (Group(td_protocol=0), Group(td_protocol=1)), historical[:MAX_HISTORICAL]))


DEFAULT_T0 = basic(0)
DEFAULT_T1 = basic(1)
#: the default for new cards: T=1 (see README "Choosing a card's ATR")
DEFAULT = DEFAULT_T1


# -- historical bytes (ISO/IEC 7816-4 §8.1.1) ---------------------------------------------------


def _valid_sw(sw: int) -> bool:
    """A status word a card may send: 9000, 61xx–6Fxx (not 60xx) (ISO/IEC 7816-4 §5.6)."""
    return sw == 0x9000 or (0x6100 <= sw <= 0x6FFF)


def _compact_tlv(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        tag, length = data[i] >> 4, data[i] & 0x0F
        if i + 1 + length > len(data):
            raise AtrError(f"historical byte {i + 1} = {data[i]:02X}: compact-TLV tag {tag:X} length {length} "
                           f"runs past the end")
        out.append((tag, data[i + 1 : i + 1 + length]))
        i += 1 + length
    return out


def historical_problems(hist: bytes) -> list[str]:
    """Problems of the historical bytes, each naming the byte (ISO/IEC 7816-4 §8.1.1).

    Category 00: compact-TLV, then a status indicator LCS SW1 SW2 in the last three bytes;
    80: compact-TLV, optionally with a status indicator object 8x (1 byte LCS, 2 SW, 3 LCS SW);
    10: one DIR data reference byte; 81–8F: RFU; anything else is proprietary (not checked)."""
    if not hist:
        return []
    cat = hist[0]
    try:
        if cat == 0x00:
            if len(hist) < 4:
                return [f"historical byte 0 = 00: category 00 needs a status indicator (3 bytes), "
                        f"only {len(hist) - 1} follow"]
            sw = int.from_bytes(hist[-2:], "big")
            problems = [] if _valid_sw(sw) else [
                f"historical bytes {len(hist) - 2}-{len(hist) - 1} = {sw:04X}: the status indicator is not a valid SW"]
            return problems + [p for p in _objects_problems(_compact_tlv(hist[1:-3]))]
        if cat == 0x80:
            return _objects_problems(_compact_tlv(hist[1:]))
        if cat == 0x10:
            return [] if len(hist) == 2 else [f"historical byte 0 = 10: expects one DIR data reference byte, "
                                              f"{len(hist) - 1} follow"]
        if 0x81 <= cat <= 0x8F:
            return [f"historical byte 0 = {cat:02X}: category indicator reserved for future use"]
    except AtrError as exc:
        return [str(exc)]
    return []


def _objects_problems(objects: list[tuple[int, bytes]]) -> list[str]:
    problems: list[str] = []
    if any(tag == 0 for tag, _ in objects):
        problems.append("compact-TLV tag 0 is not defined (ISO/IEC 7816-4 §8.1.1.2)")
    for tag, value in objects:
        if tag == 8:
            sw = value[-2:] if len(value) in (2, 3) else b""
            if len(value) not in (1, 2, 3):
                problems.append(f"status indicator 8{len(value):X}: length must be 1, 2 or 3")
            elif sw and not _valid_sw(int.from_bytes(sw, "big")):
                problems.append(f"status indicator SW {sw.hex().upper()} is not a valid SW")
    return problems


# -- EMV (EMV 4.4 Book 1 §8.3) ------------------------------------------------------------------

B1 = "EMV 4.4 Book 1 §8.3.3"


def emv_problems(atr: Atr) -> list[str]:
    """What keeps ``atr`` from being one EMV's terminals must accept (EMV 4.4 Book 1 §8.3,
    basic ATRs), each a line naming the byte; empty when it is fine.

    >>> emv_problems(parse(DEFAULT_T0)), emv_problems(parse(DEFAULT_T1))
    ([], [])
    """
    off = atr.offsets
    out: list[str] = []

    def name(n: str) -> str:
        return _at(n, off[n]) if n in off else n

    g = atr.groups
    g1 = g[0]
    if atr.ts != DIRECT and atr.ts != INVERSE:
        out.append(f"TS (byte 0) = {atr.ts:02X}: expected 3B or 3F")
    if g1.ta is not None and g1.ta not in (0x11, 0x12, 0x13):
        out.append(f"{name('TA1')} = {g1.ta:02X}: EMV allows Fi/Di 11, 12 or 13 ({B1})")
    if g1.tb is None:
        out.append(f"TB1 missing: the basic ATR has TB1 = 00 (no VPP) ({B1})")
    elif g1.tb != 0x00:
        out.append(f"{name('TB1')} = {g1.tb:02X}: expected 00 (no VPP) ({B1})")
    if g1.tc is None:
        out.append(f"TC1 missing: the basic ATR has TC1 = 00 (no extra guard time) ({B1})")
    elif g1.tc not in (0x00, 0xFF):
        out.append(f"{name('TC1')} = {g1.tc:02X}: expected 00 (or FF) ({B1})")
    first = g1.td_protocol if g1.td_protocol is not None else 0
    if first not in (0, 1):
        out.append(f"{name('TD1')} = T={first}: EMV cards use T=0 or T=1 ({B1})")
    if len(g) > 1:
        g2 = g[1]
        if g2.tb is not None:
            out.append(f"{name('TB2')} = {g2.tb:02X}: EMV does not allow TB2 ({B1})")
        if g2.ta is not None and (g2.ta & 0x10 or g2.ta & 0x0F != first):
            out.append(f"{name('TA2')} = {g2.ta:02X}: specific mode must name T={first} with b5 = 0 ({B1})")
        if g2.tc is not None and (first != 0 or g2.tc != 0x0A):
            out.append(f"{name('TC2')} = {g2.tc:02X}: only T=0 cards may give TC2, and only 0A ({B1})")
        t2 = g2.td_protocol
        if first == 0 and t2 is not None and t2 != 15:
            out.append(f"{name('TD2')} = {_td_byte(atr, 2):02X}: EMV allows only T=15 after T=0 "
                       f"(ISO/IEC 7816-3 §8.2.3), found T={t2}")
        if first == 1 and t2 != 1:
            out.append(f"{name('TD2') if t2 is not None else 'TD2'}: after TD1 T=1 EMV expects TD2 with T=1 "
                       f"(TA3 IFSC, TB3 BWI/CWI) ({B1})")
    elif first == 1:
        out.append(f"{name('TD1')}: T=1 needs TD2 = 31 (TA3 IFSC, TB3 BWI/CWI follow) ({B1})")
    if first == 1 and len(g) > 2:
        g3 = g[2]
        if g3.ta is None or not 0x10 <= g3.ta <= 0xFE:
            found = "missing" if g3.ta is None else f"{g3.ta:02X}"
            out.append(f"{name('TA3')} = {found}: IFSC must be 10-FE ({B1})")
        if g3.tb is None:
            out.append(f"TB3 missing: T=1 needs BWI/CWI ({B1})")
        elif g3.tb >> 4 > 4 or g3.tb & 0x0F > 5:
            out.append(f"{name('TB3')} = {g3.tb:02X}: BWI must be 0-4 and CWI 0-5 ({B1})")
        if g3.tc is not None and g3.tc != 0x00:
            out.append(f"{name('TC3')} = {g3.tc:02X}: EMV uses the LRC (TC3 = 00 or absent) ({B1})")
        if g3.td_protocol is not None:
            out.append(f"{name('TD3')}: the basic T=1 ATR ends its interface bytes at TB3 ({B1})")
    elif first == 1 and len(g) == 2:
        out.append(f"TA3/TB3 missing: T=1 needs IFSC and BWI/CWI ({B1})")
    if len(atr.historical) > MAX_HISTORICAL:
        out.append(f"{len(atr.historical)} historical bytes: at most 15")
    return out


def _td_byte(atr: Atr, index: int) -> int:
    """The TDi byte as sent, rebuilt from groups i and i+1."""
    g = atr.groups[index - 1]
    nxt = atr.groups[index] if index < len(atr.groups) else Group()
    return _y(nxt, g.td_protocol or 0, nxt.td_protocol is not None)


def check(raw: bytes, *, allow_non_emv: bool = False) -> Atr:
    """Parse ``raw`` and check it: structure and TCK always, EMV's basic-ATR rules and well-formed
    historical bytes unless ``allow_non_emv``. :class:`AtrError` carries one line naming the byte."""
    atr = parse(raw)
    if not allow_non_emv:
        problems = emv_problems(atr) + historical_problems(atr.historical)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise AtrError(f"not an EMV basic ATR: {problems[0]}{more}")
    return atr


def for_protocol(protocol: str | int, historical: bytes | None = None) -> bytes:
    """The basic ATR for ``"T=0"`` / ``"T=1"`` (or 0 / 1) with ``historical`` (default: cardlab's)."""
    t = int(str(protocol).upper().removeprefix("T="))
    hist = DEFAULT_HISTORICAL if historical is None else historical
    problems = historical_problems(hist)
    if problems:
        raise AtrError(f"historical bytes: {problems[0]}")
    return basic(t, hist)


def protocol_name(t: int) -> str:
    return f"T={t}"


def describe(raw: bytes) -> list[str]:
    """The ATR byte by byte, for people (``cardlab card show``)."""
    try:
        atr = parse(raw)
    except AtrError as exc:
        return [f"{raw.hex().upper()}: {exc}"]
    lines = [f"TS  {atr.ts:02X}  {'direct' if atr.ts == DIRECT else 'inverse'} convention"]
    lines.append(f"T0  {raw[1]:02X}  {len(atr.historical)} historical bytes; group 1 has "
                 + (", ".join(k for k, v in zip(("TA1", "TB1", "TC1", "TD1"), (atr.groups[0].ta, atr.groups[0].tb,
                    atr.groups[0].tc, atr.groups[0].td_protocol), strict=True) if v is not None) or "no bytes"))
    meaning = {"TA1": "Fi/Di (clock rate / baud rate)", "TB1": "VPP (00: none)", "TC1": "extra guard time N",
               "TA2": "specific mode", "TB2": "VPP (deprecated)", "TC2": "T=0 work waiting time WI"}
    for i, g in enumerate(atr.groups, start=1):
        for kind, v in (("TA", g.ta), ("TB", g.tb), ("TC", g.tc)):
            if v is None:
                continue
            n = f"{kind}{i}"
            text = meaning.get(n, "")
            if i >= 3 and atr.groups[i - 2].td_protocol == 1:
                text = {"TA": "IFSC", "TB": f"BWI {v >> 4}, CWI {v & 0x0F}", "TC": "error detection (00: LRC)"}[kind]
            elif i >= 3 and atr.groups[i - 2].td_protocol == 15:
                text = {"TA": "clock stop / class", "TB": "SPU", "TC": "global"}[kind]
            lines.append(f"{n:<4}{v:02X}  {text}")
        if g.td_protocol is not None:
            lines.append(f"TD{i:<2}{_td_byte(atr, i):02X}  protocol T={g.td_protocol}")
    lines.append(f"historical bytes {atr.historical.hex().upper() or '(none)'}")
    if atr.tck is not None:
        lines.append(f"TCK {atr.tck:02X}  check byte")
    problems = emv_problems(atr) + historical_problems(atr.historical)
    lines.append("EMV basic ATR: yes" if not problems else f"EMV basic ATR: no — {problems[0]}")
    return lines

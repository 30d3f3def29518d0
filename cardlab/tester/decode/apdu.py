"""Command and response APDUs explained: the command named by its INS (EMV
4.4 Book 3 §6.5, Book 1 §11, GlobalPlatform Card Specification 2.3 §11),
its parameters, its data (split by the PDOL/CDOL it follows, Book 3 §5.4),
the response's status word (ISO 7816-4 §5.6) and its data as a TLV tree.
GET PROCESSING OPTIONS and GENERATE AC responses in format 1 (tag 80) are
split into their fields (Book 3 §6.5.8.4, §6.5.5.4).

A :class:`Session` carries what earlier responses told (the PDOL, CDOL1 and
CDOL2, the currency, the PANs to mask) to the commands that follow, so that
a whole APDU log reads like the teaching trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import tlv
from . import sw as swmod
from . import tlvtree, values
from .elements import BY_KEY, Context


class ApduError(ValueError):
    pass


@dataclass(frozen=True)
class Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le field (case 1 or 3)

    @property
    def case(self) -> int:
        return 1 + (self.le is not None) + 2 * bool(self.data)


def parse_command(apdu: bytes) -> Command:
    """A short or extended C-APDU (ISO 7816-4 §5.1, cases 1–4)."""
    if len(apdu) < 4:
        raise ApduError(f"a command APDU has at least 4 bytes, got {len(apdu)}")
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:
        return Command(cla, ins, p1, p2, b"", None)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, b"", body[0] or 256)
    if body[0] == 0 and len(body) >= 3:  # extended length
        n = int.from_bytes(body[1:3], "big")
        if len(body) == 3:
            return Command(cla, ins, p1, p2, b"", n or 65536)
        data = body[3:3 + n]
        rest = body[3 + n:]
        if len(data) != n or len(rest) not in (0, 2):
            raise ApduError("extended-length command: Lc does not match the data")
        return Command(cla, ins, p1, p2, data, (int.from_bytes(rest, "big") or 65536) if rest else None)
    n = body[0]
    data, rest = body[1:1 + n], body[1 + n:]
    if len(data) != n or len(rest) > 1:
        raise ApduError(f"Lc {n:02X} does not match the {len(body) - 1} bytes that follow")
    return Command(cla, ins, p1, p2, data, (rest[0] or 256) if rest else None)


#: INS → name (EMV 4.4 Book 3 §6.5 and Book 1 §11; GP Card Spec 2.3 §11 for the card manager)
INS_NAMES: dict[int, str] = {
    0xA4: "SELECT", 0xB2: "READ RECORD", 0xA8: "GET PROCESSING OPTIONS", 0xAE: "GENERATE AC",
    0x88: "INTERNAL AUTHENTICATE", 0x82: "EXTERNAL AUTHENTICATE", 0x20: "VERIFY", 0xCA: "GET DATA",
    0x84: "GET CHALLENGE", 0xC0: "GET RESPONSE", 0x1E: "APPLICATION BLOCK", 0x18: "APPLICATION UNBLOCK",
    0x16: "CARD BLOCK", 0x24: "PIN CHANGE/UNBLOCK", 0xDA: "PUT DATA", 0xDC: "UPDATE RECORD", 0xB0: "READ BINARY",
    0x50: "INITIALIZE UPDATE", 0xE6: "INSTALL", 0xE8: "LOAD", 0xE4: "DELETE", 0xF2: "GET STATUS",
    0xD8: "PUT KEY", 0xF0: "SET STATUS", 0xE2: "STORE DATA", 0x70: "MANAGE CHANNEL",
}

_AC_TYPES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC", 0xC0: "RFU"}


def _params(c: Command) -> str:
    if c.ins == 0xA4:
        how = {0x04: "by DF name"}.get(c.p1, f"P1 {c.p1:02X}")
        which = {0x00: "first or only occurrence", 0x02: "next occurrence"}.get(c.p2, f"P2 {c.p2:02X}")
        return f"{how}, {which}"
    if c.ins == 0xB2:
        return (f"record {c.p1} of SFI {c.p2 >> 3}" if c.p2 & 7 == 4
                else f"record {c.p1}, P2 {c.p2:02X}")
    if c.ins == 0xAE:
        kind = _AC_TYPES[c.p1 & 0xC0]
        return f"asks for {kind}" + (", CDA signature requested" if c.p1 & 0x10 else "")
    if c.ins == 0x20:
        return {0x80: "plaintext PIN", 0x88: "enciphered PIN"}.get(c.p2, f"P2 {c.p2:02X}")
    if c.ins in (0xCA, 0xDA):
        return f"tag {c.p1:02X}{c.p2:02X} ({tlvtree.tag_name(c.p1 << 8 | c.p2 if c.p1 else c.p2)})"
    return f"P1 {c.p1:02X} P2 {c.p2:02X}"


def command_name(c: Command) -> str:
    if c.ins == 0x82 and c.cla & 0x04:
        return "EXTERNAL AUTHENTICATE (secure channel)"
    return INS_NAMES.get(c.ins, f"INS {c.ins:02X}")


@dataclass
class Session:
    """What the exchange has told so far (card data, the GENERATE ACs sent,
    the PANs to mask)."""

    card_data: dict[int, bytes] = field(default_factory=dict)
    pans: set[str] = field(default_factory=set)
    gen_acs: int = 0

    def mask(self, text: str) -> str:
        return tlvtree.masker(self.pans)(text)

    def learn(self, data: bytes) -> None:
        self.pans.update(tlvtree.pans_in(data))
        try:
            for tag, value in tlv.flatten(data).items():
                self.card_data.setdefault(tag, value)
        except tlv.TlvError:
            pass

    def context(self, dol_data: bytes | None = None) -> Context:
        cur, exp = self.card_data.get(0x9F42), self.card_data.get(0x9F44)
        return Context(currency=int(cur.hex()) if cur and cur.hex().isdigit() else None,
                       exponent=exp[0] if exp else None,
                       aid=self.card_data.get(0x4F) or self.card_data.get(0x84, b""),
                       dol_data=dol_data, mask=self.mask)

    def dol_for(self, c: Command) -> tuple[str, int] | None:
        """(name, tag) of the DOL this command's data follows (Book 3 §5.4)."""
        if c.ins == 0xA8:
            return ("PDOL", 0x9F38)
        if c.ins == 0xAE:
            return ("CDOL1", 0x8C) if self.gen_acs <= 1 else ("CDOL2", 0x8D)
        if c.ins == 0x88:
            return ("DDOL", 0x9F49)
        return None


def _dol_table(session: Session, name: str, tag: int, data: bytes) -> list[str]:
    dol = session.card_data.get(tag)
    if dol is None:
        return [f"({name} not seen in this exchange: the data cannot be split)"]
    try:
        rows = BY_KEY["dol"].lines(dol, session.context(dol_data=data))
    except ValueError as exc:
        return [f"({name} {dol.hex().upper()} does not fit the data: {exc})"]
    return [f"{name} data:", *("  " + r for r in rows)]


def command_lines(apdu: bytes, session: Session) -> list[str]:
    """The C-APDU explained (VERIFY data is never shown)."""
    try:
        c = parse_command(apdu)
    except ApduError as exc:
        return [f"C-APDU {session.mask(apdu.hex().upper())}: {exc}"]
    if c.ins == 0xAE:
        session.gen_acs += 1
    head = f"CLA {c.cla:02X} INS {c.ins:02X} P1 {c.p1:02X} P2 {c.p2:02X}"
    lc = f", Lc {len(c.data):02X}" if c.data else ""
    le = f", Le {c.le & 0xFF:02X}" if c.le is not None else ""
    out = [f"{command_name(c)}: {_params(c)}", f"  {head}{lc}{le} (case {c.case})"]
    if not c.data:
        return out
    if c.ins == 0x20:
        return out + ["  data: <PIN block withheld>"]
    data = c.data
    out.append(f"  data: {session.mask(data.hex().upper())}")
    if c.ins == 0xA4 and all(0x20 <= b < 0x7F for b in data):
        out[-1] += f' "{data.decode("ascii")}"'
    which = session.dol_for(c)
    if c.ins == 0xA8 and data[:1] == b"\x83":
        out += ["  " + line for line in tlvtree.lines(data, session.mask, session.context(), explained=False)]
        data = data[2:]
    if which is not None and data:
        out += ["  " + line for line in _dol_table(session, *which, data)]
    elif c.ins in (0xDA, 0xE2, 0x82) and c.cla & 0x04 == 0:
        out += ["  " + line for line in tlvtree.lines(data, session.mask, session.context())]
    return out


def _format1(ins: int, value: bytes) -> list[tuple[int, bytes]] | None:
    """Book 3 §6.5.8.4 (GPO: AIP ‖ AFL) and §6.5.5.4 (GENERATE AC: CID ‖ ATC ‖ AC ‖ IAD)."""
    if ins == 0xA8 and len(value) >= 2:
        return [(0x82, value[:2]), (0x94, value[2:])]
    if ins == 0xAE and len(value) >= 11:
        return [(0x9F27, value[:1]), (0x9F36, value[1:3]), (0x9F26, value[3:11]), (0x9F10, value[11:])]
    return None


def response_lines(response: bytes, session: Session, ins: int | None = None) -> list[str]:
    if len(response) < 2:
        return ["R-APDU (none)"]
    data, sw = response[:-2], int.from_bytes(response[-2:], "big")
    out = [f"SW {swmod.text(sw, ins)}" + (f"; {len(data)} bytes of data" if data else "")]
    if not data:
        return out
    session.learn(data)
    ctx = session.context()
    out += ["  " + line for line in tlvtree.lines(data, session.mask, ctx)]
    try:
        items = tlv.parse(data)
    except tlv.TlvError:
        items = []
    if len(items) == 1 and items[0].tag == 0x80 and ins is not None:
        fields = _format1(ins, items[0].value)
        if fields:
            out.append("    format 1, split (Book 3 §6.5.5.4 / §6.5.8.4):")
            for tag, value in fields:
                session.card_data.setdefault(tag, value)
                out.append(f"      {tag:X} {tlvtree.tag_name(tag)} [{len(value)}] = "
                           f"{values.value_text(tag, value, session.mask)}")
                out += ["        · " + session.mask(x) for x in _explain(tag, value, ctx)]
    return out


def _explain(tag: int, value: bytes, ctx: Context) -> list[str]:
    from .elements import explain

    return explain(tag, value, ctx)


def pair_lines(command: bytes, response: bytes, session: Session) -> list[str]:
    ins = command[1] if len(command) > 1 else None
    return (["> " + session.mask(command.hex().upper()) if ins != 0x20 else "> " + command[:5].hex().upper() + "…",
             *("  " + x for x in command_lines(command, session)),
             "< " + session.mask(response.hex().upper()),
             *("  " + x for x in response_lines(response, session, ins))])


def pair_json(command: bytes, response: bytes, session: Session) -> dict[str, Any]:
    c = parse_command(command)
    if c.ins == 0xAE:
        session.gen_acs += 1
    which = session.dol_for(c)
    data = c.data[2:] if c.ins == 0xA8 and c.data[:1] == b"\x83" else c.data
    cmd: dict[str, Any] = {"name": command_name(c), "cla": f"{c.cla:02X}", "ins": f"{c.ins:02X}",
                           "p1": f"{c.p1:02X}", "p2": f"{c.p2:02X}", "meaning": _params(c),
                           "data": "<withheld>" if c.ins == 0x20 else session.mask(c.data.hex().upper()),
                           "le": c.le}
    if which is not None and which[1] in session.card_data and data and c.ins != 0x20:
        try:
            cmd[which[0].lower()] = BY_KEY["dol"].json(session.card_data[which[1]], session.context(dol_data=data))
        except ValueError as exc:
            cmd[which[0].lower()] = {"error": str(exc)}
    rdata, sw = response[:-2], int.from_bytes(response[-2:], "big") if len(response) >= 2 else 0
    session.learn(rdata)
    try:
        tree: Any = tlvtree.to_json(rdata, session.mask, session.context()) if rdata else []
    except tlv.TlvError:
        tree = {"raw": session.mask(rdata.hex().upper())}
    return {"command": cmd, "response": {"sw": f"{sw:04X}", "meaning": swmod.meaning(sw, c.ins), "data": tree}}


# -- logs -----------------------------------------------------------------------------------

_SPLIT = re.compile(r"\s*(?:\||->|=>|<-|;|\t)\s*")
_PREFIX = re.compile(r"^\s*(>>|<<|>|<|C:|R:|C-APDU:?|R-APDU:?|CMD:?|RSP:?)\s*", re.IGNORECASE)


def _hex(text: str, where: str) -> bytes:
    compact = re.sub(r"[\s:]", "", text)
    if not compact or len(compact) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", compact):
        raise ApduError(f"{where}: not hex: {text.strip()[:40]!r}")
    return bytes.fromhex(compact)


def parse_log(text: str) -> list[tuple[bytes, bytes]]:
    """(command, response) pairs of an APDU log. A line holds a command and
    its response (separated by ``|``, ``->``, ``=>``, ``;`` or a tab, or as
    two hex words), or one of them, marked ``>``/``C:`` (command) or
    ``<``/``R:`` (response), or unmarked, commands and responses taking turns.
    ``#`` starts a comment."""
    pairs: list[tuple[bytes, bytes]] = []
    pending: bytes | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"line {n}"
        parts = [p for p in _SPLIT.split(line) if p]
        words = line.split()
        if len(parts) == 1 and len(words) == 2 and len(words[0]) >= 8 and len(words[1]) >= 4:
            parts = words
        if len(parts) == 2:
            if pending is not None:
                raise ApduError(f"{where}: a command pair while the command before has no response")
            pairs.append((_hex(_PREFIX.sub("", parts[0]), where), _hex(_PREFIX.sub("", parts[1]), where)))
            continue
        if len(parts) > 2:
            raise ApduError(f"{where}: more than a command and a response")
        m = _PREFIX.match(line)
        mark = m.group(1).upper() if m else ""
        value = _hex(_PREFIX.sub("", line), where)
        is_command = mark in (">", ">>", "C:", "C-APDU", "C-APDU:", "CMD", "CMD:") or (not mark and pending is None)
        if is_command:
            if pending is not None:
                raise ApduError(f"{where}: a command while the command before has no response")
            pending = value
        else:
            if pending is None:
                raise ApduError(f"{where}: a response without a command")
            pairs.append((pending, value))
            pending = None
    if pending is not None:
        raise ApduError("the last command has no response")
    return pairs


def log_session(pairs: Iterable[tuple[bytes, bytes]]) -> Session:
    """A session that already knows every PAN in the log (so the first lines mask it too)."""
    s = Session()
    for _c, r in pairs:
        s.pans.update(tlvtree.pans_in(r[:-2]))
    return s


def log_lines(pairs: list[tuple[bytes, bytes]], session: Session | None = None) -> list[str]:
    session = session or log_session(pairs)
    out: list[str] = []
    for i, (c, r) in enumerate(pairs, 1):
        out.append(f"[{i}]")
        out += ["  " + x for x in pair_lines(c, r, session)]
    return out

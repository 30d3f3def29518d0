"""GlobalPlatform card content as the tester reads it (GP Card Spec 2.3),
independently of the card's code: GET STATUS (§11.4) in the TLV format (E3
templates, table 11-38) and the deprecated format (§11.4.3.1), GET DATA of the
CPLC (9F7F, GP §H.5) and the card data (66, §H.2), and the names of the life
cycle states (§5.1, §5.3, tables 11-5 to 11-7).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from construct import ConstructError

from .formats import CPLC
from .tlv import TlvError, parse

# -- life cycle states ---------------------------------------------------------------------

#: card life cycle (GP 2.3 §5.1.1, table 11-6)
CARD_STATES = {0x01: "OP_READY", 0x07: "INITIALIZED", 0x0F: "SECURED", 0x7F: "CARD_LOCKED", 0xFF: "TERMINATED"}
CARD_CODES = {v: k for k, v in CARD_STATES.items()}
#: application / security domain life cycle (§5.3, tables 11-5 and 11-7)
INSTALLED, SELECTABLE, PERSONALIZED, LOCKED_BIT = 0x03, 0x07, 0x0F, 0x80
APP_STATES = {0x03: "INSTALLED", 0x07: "SELECTABLE", 0x0F: "PERSONALIZED"}
#: executable load file (§5.2)
LOAD_FILE_STATES = {0x01: "LOADED"}

ISD, APPS, LOAD_FILES, LOAD_FILES_AND_MODULES = 0x80, 0x40, 0x20, 0x10


def card_state_name(code: int) -> str:
    return CARD_STATES.get(code, f"unknown({code:02X})")


def card_state_code(name: str) -> int | None:
    """A card life cycle state by name (``SECURED``) or hex (``0F``)."""
    key = name.strip().upper().replace("-", "_").replace(" ", "_")
    if key in CARD_CODES:
        return CARD_CODES[key]
    try:
        return int(key, 16)
    except ValueError:
        return None


def app_state_name(code: int) -> str:
    """``PERSONALIZED``, ``LOCKED(PERSONALIZED)``, application specific
    states (b1–b3 set, b4–b7 the application's) as ``SPECIFIC(xx)``."""
    if code & LOCKED_BIT:
        return f"LOCKED({app_state_name(code & 0x7F)})"
    if code in APP_STATES:
        return APP_STATES[code]
    if code & 0x07 == 0x07:
        return f"SPECIFIC({code:02X})"
    return f"unknown({code:02X})"


def is_locked(code: int) -> bool:
    return bool(code & LOCKED_BIT)


def is_personalized(code: int) -> bool:
    """PERSONALIZED, or an application specific state after SELECTABLE that
    keeps b4 (0F with extra bits), not LOCKED."""
    return not is_locked(code) and code & 0x0F == 0x0F


def is_selectable(code: int) -> bool:
    return not is_locked(code) and code & 0x07 == 0x07


# -- GET STATUS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryEntry:
    """One GET STATUS entry (table 11-38 / §11.4.3.1)."""

    aid: bytes
    lifecycle: int
    privileges: bytes = b""
    load_file_aid: bytes | None = None  # C4
    sd_aid: bytes | None = None  # CC: associated security domain
    version: bytes | None = None  # CE
    modules: tuple[bytes, ...] = field(default=())  # 84

    @property
    def aid_hex(self) -> str:
        return self.aid.hex().upper()


class GpError(ValueError):
    pass


def parse_status_tlv(data: bytes) -> list[RegistryEntry]:
    """The E3 templates of a TLV-format GET STATUS response."""
    out: list[RegistryEntry] = []
    try:
        items = parse(data)
    except TlvError as exc:
        raise GpError(f"GET STATUS response is not BER-TLV: {exc}") from None
    for item in items:
        if item.tag != 0xE3:
            raise GpError(f"GET STATUS response holds {item.tag:X}, not E3 templates")
        fields: dict[int, bytes] = {}
        modules: list[bytes] = []
        try:
            children = parse(item.value)
        except TlvError as exc:
            raise GpError(f"E3 template is not BER-TLV: {exc}") from None
        for c in children:
            if c.tag == 0x84:
                modules.append(c.value)
            else:
                fields.setdefault(c.tag, c.value)
        if 0x4F not in fields:
            raise GpError("E3 template without an AID (4F)")
        lc = fields.get(0x9F70, b"")
        out.append(RegistryEntry(
            aid=fields[0x4F], lifecycle=lc[0] if lc else -1, privileges=fields.get(0xC5, b""),
            load_file_aid=fields.get(0xC4), sd_aid=fields.get(0xCC), version=fields.get(0xCE), modules=tuple(modules),
        ))  # fmt: skip
    return out


def parse_status_legacy(data: bytes, with_modules: bool = False) -> list[RegistryEntry]:
    """The deprecated format (§11.4.3.1): length ‖ AID ‖ life cycle ‖
    privileges (1 byte) [‖ number of modules ‖ (length ‖ AID)…]."""
    out: list[RegistryEntry] = []
    i = 0
    while i < len(data):
        n = data[i]
        if i + 1 + n + 2 > len(data):
            raise GpError("truncated GET STATUS entry")
        aid = data[i + 1 : i + 1 + n]
        lc, priv = data[i + 1 + n], data[i + 2 + n]
        i += n + 3
        modules: list[bytes] = []
        if with_modules:
            if i >= len(data):
                raise GpError("truncated module count")
            count = data[i]
            i += 1
            for _ in range(count):
                m = data[i]
                modules.append(data[i + 1 : i + 1 + m])
                i += 1 + m
        out.append(RegistryEntry(aid, lc, bytes((priv,)), modules=tuple(modules)))
    return out


Send = Callable[[bytes], bytes]


def get_status(send: Send, p1: int, aid_prefix: bytes = b"", *, tlv: bool = True) -> tuple[list[RegistryEntry], int]:
    """GET STATUS for subset ``p1`` (80 ISD, 40 applications and SDs, 20 load
    files, 10 load files and modules), following 6310 with "next
    occurrence". ``send`` is a (secured) transmit returning data ‖ SW.
    Returns (entries, final SW); 6A88 (nothing matches) gives no entries."""
    p2 = 0x02 if tlv else 0x00
    criteria = bytes((0x4F, len(aid_prefix))) + aid_prefix
    data = b""
    sw = 0
    for _ in range(64):
        resp = send(bytes((0x80, 0xF2, p1, p2, len(criteria))) + criteria + b"\x00")
        sw = int.from_bytes(resp[-2:], "big")
        if sw not in (0x9000, 0x6310):
            return [], sw
        data += resp[:-2]
        if sw == 0x9000:
            break
        p2 |= 0x01
    entries = parse_status_tlv(data) if tlv else parse_status_legacy(data, p1 == LOAD_FILES_AND_MODULES)
    return entries, sw


# -- GET DATA: CPLC and card data ---------------------------------------------------------

#: CPLC fields (GP 2.3 table H-4, declared in ``formats.CPLC``): name → length, in order (42 bytes)
CPLC_FIELDS = tuple((sc.name, sc.sizeof()) for sc in CPLC.subcons)


def parse_cplc(data: bytes) -> dict[str, str]:
    """GET DATA 9F7F answer (with or without the 9F7F tag) → field → hex."""
    if data[:2] == b"\x9f\x7f":
        n = data[2]
        data = data[3 : 3 + n]
    try:
        fields = CPLC.parse(data)
    except ConstructError:
        raise GpError(f"CPLC of {len(data)} bytes, expected {CPLC.sizeof()}") from None
    return {name: fields[name].hex().upper() for name, _ in CPLC_FIELDS}


def parse_card_data(data: bytes) -> dict[str, list[bytes]]:
    """GET DATA 66 (card data, §H.2): the OIDs of 73 (card recognition data)
    keyed by their role tag (60 GP version, 63 card identification scheme,
    64 secure channel protocol and i, 65 configuration, 66 chip details)."""
    out: dict[str, list[bytes]] = {}
    try:
        top = parse(data)
        if top and top[0].tag == 0x66:
            top = top[0].children()
        for t in top:
            if t.tag != 0x73:
                continue
            for role in t.children():
                if role.tag == 0x06:
                    out.setdefault("06", []).append(role.value)
                    continue
                for oid in role.children() if role.constructed else []:
                    if oid.tag == 0x06:
                        out.setdefault(f"{role.tag:02X}", []).append(oid.value)
    except TlvError as exc:
        raise GpError(f"card data is not BER-TLV: {exc}") from None
    return out


def scp_of_card_data(card_data: dict[str, list[bytes]]) -> tuple[int, int] | None:
    """(SCP number, i) from the card data's 64 OID (1.2.840.114283.4.scp.i)."""
    for oid in card_data.get("64", []):
        if oid[:7] == bytes.fromhex("2A864886FC6B04") and len(oid) >= 9:
            return oid[7], oid[8]
    return None

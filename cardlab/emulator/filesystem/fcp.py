"""The FCP template (tag 62, ISO/IEC 7816-4 §7.4.3), declaratively.

Every file is described by a :class:`FileSpec`. CREATE FILE parses an FCP into
a spec, SELECT builds the FCP back from it, and the card image stores each file
as its FCP plus contents, so one parser/builder pair serves all three
(``FileSpec.parse(spec.build()) == spec``).

Data objects written and accepted (§7.4.3 table 12)
---------------------------------------------------
``80`` data size (transparent EF: file size; record EF: record length ×
number of records, emitted only), ``82`` file descriptor (FDB, data coding
byte, and for record EFs a 2-byte maximum record length and a 1-byte number of
records), ``83`` FID, ``84`` DF name (DFs), ``88`` SFI (EFs; one byte, SFI in
b8-b4; empty = no SFI; when absent on CREATE the SFI is the FID's five low
bits, §7.4.3), ``8A`` life cycle status (05, operational activated), ``8C``
security attributes in compact format (:mod:`.access`). ``81``, ``85`` and
``A5`` are accepted and ignored; any other tag, a duplicate or a malformed
value is 6A80.

File descriptor bytes (§7.4.5): ``38`` DF, ``01`` transparent, ``02`` linear
fixed, ``04`` linear variable, ``06`` cyclic. For linear fixed and cyclic EFs
the record length in ``82`` is the (enforced) length of every record; for
linear variable EFs it is the maximum. Record lengths are 1..255, numbers of
records 1..254, transparent sizes 0..32767 (15-bit offsets).

The value of each data object is a ``construct`` declared in :data:`FCP_OBJECTS`
(the table above, in code). The BER-TLV wrapper (tag 62 and the tag-length-value
of each object) is :mod:`cardlab.cardspec.tlv`, the card's one BER-TLV codec:
it skips 00/FF padding between objects (§6.3) and reads the 81/82/83 length
forms, so the file system accepts exactly what the rest of the card accepts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Const,
    ConstructError,
    ExprAdapter,
    FocusedSeq,
    GreedyBytes,
    If,
    Int8ub,
    Int16ub,
    Optional,
    Struct,
    Terminated,
)

from cardlab.cardspec import tlv

from .access import ALWAYS, NEVER, bad, parse_acl

# -- file descriptor bytes (ISO 7816-4 §7.4.5) --------------------------
FDB_DF = 0x38
FDB_TRANSPARENT = 0x01
FDB_LINEAR_FIXED = 0x02
FDB_LINEAR_VARIABLE = 0x04
FDB_CYCLIC = 0x06
RECORD_FDBS = frozenset({FDB_LINEAR_FIXED, FDB_LINEAR_VARIABLE, FDB_CYCLIC})
EF_FDBS = RECORD_FDBS | {FDB_TRANSPARENT}
#: data coding byte: write OR, data unit of one byte (§7.4.5)
DEFAULT_DCB = 0x41

MAX_TRANSPARENT_SIZE = 0x7FFF
MAX_RECORD_LENGTH = 255
MAX_RECORDS = 254
#: life cycle status byte (§7.4.10 table 15): operational state, activated
LCSI_OPERATIONAL = 0x05


def _whole(layout: Any) -> Any:
    """The layout, and nothing after it."""
    return FocusedSeq("value", "value" / layout, Terminated)


# -- the data objects' values (§7.4.3 table 12) --------------------------------------
#: 80: number of data bytes, big-endian, as few bytes as needed (at least one)
DATA_SIZE = ExprAdapter(
    GreedyBytes,
    decoder=lambda raw, ctx: int.from_bytes(raw, "big"),
    encoder=lambda n, ctx: n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big"),
)
#: 82: file descriptor byte, data coding byte (absent: 41), and for record EFs
#: the maximum record length (2 bytes) and the number of records (1 byte) (§7.4.5)
FILE_DESCRIPTOR = Struct(
    "fdb" / Int8ub,
    "dcb" / Optional(Int8ub),
    "record" / If(lambda this: this.fdb in RECORD_FDBS, Struct("length" / Int16ub, "count" / Int8ub)),
    Terminated,
)
#: 83: file identifier
FILE_ID = _whole(Int16ub)
#: 84: DF name (1..16 bytes)
DF_NAME = GreedyBytes
#: 88: short EF identifier in b8-b4, b3-b1 zero; empty: the EF has no SFI (§7.4.3)
SHORT_EF_ID = _whole(Optional(BitStruct("sfi" / BitsInteger(5), Const(0, BitsInteger(3)))))
#: 8A: life cycle status byte (§7.4.10)
LIFE_CYCLE = _whole(Int8ub)
#: 8C: security attributes in compact format (checked by :func:`.access.parse_acl`)
SECURITY_ATTRIBUTES = GreedyBytes


@dataclass(frozen=True)
class DataObject:
    """One row of the FCP table: tag, name and the layout of its value."""

    tag: int
    name: str
    layout: Any

    def build(self, value: Any) -> bytes:
        return bytes(self.layout.build(value))

    def parse(self, raw: bytes) -> Any:
        try:
            return self.layout.parse(raw)
        except ConstructError as exc:
            raise bad(f"malformed {self.name} ({self.tag:02X})") from exc


FCP_OBJECTS: dict[int, DataObject] = {
    obj.tag: obj
    for obj in (
        DataObject(0x80, "data size", DATA_SIZE),
        DataObject(0x82, "file descriptor", FILE_DESCRIPTOR),
        DataObject(0x83, "file identifier", FILE_ID),
        DataObject(0x84, "DF name", DF_NAME),
        DataObject(0x88, "short EF identifier", SHORT_EF_ID),
        DataObject(0x8A, "life cycle status", LIFE_CYCLE),
        DataObject(0x8C, "security attributes (compact)", SECURITY_ATTRIBUTES),
    )
}
#: tags accepted in a CREATE FILE FCP but not kept (§7.4.3)
IGNORED_FCP_TAGS = frozenset({0x81, 0x85, 0xA5})
KNOWN_FCP_TAGS = frozenset(FCP_OBJECTS) | IGNORED_FCP_TAGS


@dataclass(frozen=True)
class FileSpec:
    """Everything the FCP says about one file (§7.4.3).

    >>> spec = FileSpec(fid=0x5001, fdb=FDB_TRANSPARENT, size=16, sfi=1)
    >>> spec.build().hex()
    '621180011082020141830250018801088a0105'
    >>> FileSpec.parse(spec.build()) == spec
    True
    """

    fid: int
    fdb: int
    dcb: int = DEFAULT_DCB
    name: bytes = b""
    size: int = 0
    rec_len: int = 0
    max_records: int = 0
    sfi: int | None = None
    lcsi: int = LCSI_OPERATIONAL
    #: the 8C value, or None: no security attributes (everything allowed)
    acl: bytes | None = None

    @property
    def is_df(self) -> bool:
        return self.fdb == FDB_DF

    @property
    def is_record(self) -> bool:
        return self.fdb in RECORD_FDBS

    @property
    def data_size(self) -> int:
        return self.rec_len * self.max_records if self.is_record else self.size

    def rule(self, mode: int) -> int:
        """SC byte for an access mode bit (NEVER when 8C lacks the bit)."""
        if self.acl is None:
            return ALWAYS
        return parse_acl(self.acl).get(mode, NEVER)

    def descriptor(self) -> bytes:
        record = {"length": self.rec_len, "count": self.max_records} if self.is_record else None
        return FCP_OBJECTS[0x82].build({"fdb": self.fdb, "dcb": self.dcb, "record": record})

    def content(self) -> list[tuple[int, bytes]]:
        """The FCP's data objects in canonical order."""
        build = {tag: obj.build for tag, obj in FCP_OBJECTS.items()}
        items: list[tuple[int, bytes]] = []
        if not self.is_df:
            items.append((0x80, build[0x80](self.data_size)))
        items.append((0x82, self.descriptor()))
        items.append((0x83, build[0x83](self.fid)))
        if self.name:
            items.append((0x84, build[0x84](self.name)))
        if not self.is_df:
            items.append((0x88, build[0x88](None if self.sfi is None else {"sfi": self.sfi})))
        items.append((0x8A, build[0x8A](self.lcsi)))
        if self.acl is not None:
            items.append((0x8C, build[0x8C](self.acl)))
        return items

    def build(self) -> bytes:
        """The FCP template (tag 62); built once per (frozen) spec: every image save dumps it."""
        built: bytes | None = self.__dict__.get("_built")
        if built is None:
            built = tlv.encode(0x62, tlv.encode_all(self.content()))
            object.__setattr__(self, "_built", built)
        return built

    @classmethod
    def parse(cls, fcp: bytes) -> FileSpec:
        """Parse and validate an FCP template; 6A80 on anything wrong. The spec is frozen: the
        same bytes (every card of a stock has the same files) give the same spec, parsed once."""
        if cls is FileSpec:
            return _parse_cached(bytes(fcp))
        return cls._parse(fcp)

    @classmethod
    def _parse(cls, fcp: bytes) -> FileSpec:
        try:
            outer = tlv.parse(fcp)
            if len(outer) != 1 or outer[0].tag != 0x62:
                raise bad("not one FCP template")
            objs: dict[int, bytes] = {}
            for item in tlv.iterate(outer[0].value):
                if item.tag in objs or item.tag not in KNOWN_FCP_TAGS:
                    raise bad("duplicate or unsupported FCP tag")
                objs[item.tag] = item.value
        except tlv.TlvError as exc:
            raise bad("malformed FCP") from exc
        if not objs.get(0x82) or 0x83 not in objs:
            raise bad("FCP needs 82 and a 2-byte 83")
        fid: int = FCP_OBJECTS[0x83].parse(objs[0x83])
        if fid in (0x3FFF, 0xFFFF):
            raise bad("reserved FID")
        desc = FCP_OBJECTS[0x82].parse(objs[0x82])
        fdb: int = desc.fdb
        dcb: int = DEFAULT_DCB if desc.dcb is None else desc.dcb
        size = rec_len = max_records = 0
        if fdb in RECORD_FDBS:
            rec_len, max_records = desc.record.length, desc.record.count
            if not (1 <= rec_len <= MAX_RECORD_LENGTH and 1 <= max_records <= MAX_RECORDS):
                raise bad("record length or number out of range")
        elif fdb not in (FDB_DF, FDB_TRANSPARENT):
            raise bad("unsupported file descriptor byte")
        if fdb == FDB_TRANSPARENT:  # 80 of other files is emitted only, never read
            raw = objs.get(0x80)
            if raw is None or not 1 <= len(raw) <= 2 or FCP_OBJECTS[0x80].parse(raw) > MAX_TRANSPARENT_SIZE:
                raise bad("transparent EF needs a size (80) up to 32767")
            size = FCP_OBJECTS[0x80].parse(raw)
        name: bytes = FCP_OBJECTS[0x84].parse(objs.get(0x84, b""))
        sfi: int | None
        if fdb == FDB_DF:
            if 0x84 in objs and not 1 <= len(name) <= 16:
                raise bad("DF name must be 1..16 bytes")
            if 0x88 in objs:
                raise bad("a DF has no SFI")
            sfi = None
        else:
            if 0x84 in objs:
                raise bad("an EF has no DF name")
            sfi = cls._parse_sfi(objs.get(0x88), fid)
        if 0x8A in objs and FCP_OBJECTS[0x8A].parse(objs[0x8A]) != LCSI_OPERATIONAL:
            raise bad("only operational files (8A=05) are supported")
        acl = objs.get(0x8C)
        if acl is not None:
            parse_acl(acl)
        return cls(fid, fdb, dcb, name, size, rec_len, max_records, sfi, LCSI_OPERATIONAL, acl)

    @staticmethod
    def _parse_sfi(raw: bytes | None, fid: int) -> int | None:
        if raw is None:  # §7.4.3: absent → the FID's five low-order bits
            low = fid & 0x1F
            return low if 1 <= low <= 30 else None
        value = FCP_OBJECTS[0x88].parse(raw)
        if value is None:
            return None
        sfi: int = value.sfi
        if not 1 <= sfi <= 30:
            raise bad("SFI must be one byte, b8-b4 = 1..30")
        return sfi


#: known answers (FCP bytes, spec), built by hand from §7.4.3 and checked against the
#: single-module implementation this package replaced; tests/emulator/test_fcp.py reads both ways
EXAMPLES: tuple[tuple[str, FileSpec], ...] = (
    ("621180011082020141830250018801088a0105", FileSpec(0x5001, FDB_TRANSPARENT, size=16, sfi=1)),
    ("6211820238418302500084045f43444c8a0105", FileSpec(0x5000, FDB_DF, name=b"_CDL")),
    (
        "6218800180820504410040028302500488008a01058c03031000",
        FileSpec(0x5004, FDB_LINEAR_VARIABLE, rec_len=64, max_records=2, acl=bytes.fromhex("031000")),
    ),
    (
        "621b8002c6708205062100c8fe83022f018801f08a01058c0407ff5000",
        FileSpec(
            0x2F01, FDB_CYCLIC, 0x21, rec_len=200, max_records=254, sfi=30, acl=bytes.fromhex("07ff5000")
        ),
    ),
)


@functools.lru_cache(maxsize=1024)
def _parse_cached(fcp: bytes) -> FileSpec:
    return FileSpec._parse(fcp)

"""ISO/IEC 7816-4 file system: MF, DFs, EFs and the interindustry file commands.

The tree is plain Python objects (:class:`DF`, :class:`EF`); every file is
described by a :class:`FileSpec`, the declarative form of its FCP template
(tag 62, ISO 7816-4 §7.4.3). CREATE FILE parses an FCP into a spec, SELECT
builds the FCP back from it, and the card image stores each file as its FCP
plus contents, so one parser/builder pair serves all three
(``FileSpec.parse(spec.build()) == spec``).

Each logical channel has its own :class:`FsCursor` (current DF, current EF,
current record; ISO 7816-4 §7.2.1 and §5.4.1).

Commands (ISO 7816-4 §11): SELECT (A4, via :mod:`cardlab.emulator.card`), READ /
UPDATE / WRITE BINARY (B0, D6, D0), READ / UPDATE / APPEND RECORD (B2, DC, E2),
VERIFY (20), CHANGE REFERENCE DATA (24), RESET RETRY COUNTER (2C) and, from
ISO 7816-9, CREATE FILE (E0) and DELETE FILE (E4).

FCP written and accepted (ISO 7816-4 §7.4.3)
--------------------------------------------
``80`` data size (transparent EF: file size; record EF: record length ×
number of records, emitted only), ``82`` file descriptor (FDB, data coding
byte, and for record EFs a 2-byte maximum record length and a 1-byte number of
records), ``83`` FID, ``84`` DF name (DFs), ``88`` SFI (EFs; one byte, SFI in
b8-b4; empty = no SFI; when absent on CREATE the SFI is the FID's five low
bits, §7.4.3), ``8A`` life cycle status (05, operational activated), ``8C``
security attributes in compact format. ``81``, ``85`` and ``A5`` are accepted
and ignored; any other tag, a duplicate or a malformed value is 6A80.

File descriptor bytes (§7.4.5): ``38`` DF, ``01`` transparent, ``02`` linear
fixed, ``04`` linear variable, ``06`` cyclic. For linear fixed and cyclic EFs
the record length in ``82`` is the (enforced) length of every record; for
linear variable EFs it is the maximum. The number of records is the maximum
number of records; record EFs are created empty and grow with APPEND RECORD
(a cyclic EF then overwrites its oldest record; record 1 is always the newest,
§7.3.1). Record lengths are 1..255, numbers of records 1..254, transparent
sizes 0..32767 (15-bit offsets).

Access conditions (tag 8C, compact format, ISO 7816-4 §7.4.3)
--------------------------------------------------------------
The first byte is the access mode (AM) byte, followed by one security
condition (SC) byte for each AM bit set, from b7 down to b1:

=====  ===========================  ===========================
AM     EF                           DF
=====  ===========================  ===========================
b1     READ BINARY / READ RECORD    DELETE FILE (of a child)
b2     UPDATE BINARY / RECORD       CREATE FILE (an EF)
b3     WRITE BINARY, APPEND RECORD  CREATE FILE (a DF)
=====  ===========================  ===========================

AM b4-b7 may be set (their SC bytes are kept) but no command of this card
uses them; AM b8 must be 0. SC bytes: ``00`` always, ``FF`` never; otherwise
b7 (secure messaging) means *inside an authenticated GP SCP03 secure channel
on this logical channel* and b5 (user authentication) means *the global PIN
(VERIFY P2=01) has been verified since power-on*; b8=1 requires all the
conditions set, b8=0 any one of them. b6 and the security environment number
(b4-b1) must be 0. A file without 8C allows everything; a file with 8C refuses
(6982) any mode whose AM bit is 0 — fail-closed.

PIN (ISO 7816-4 §11.5)
----------------------
One global PIN, reference 01 (VERIFY P2=01), 3 tries, format: 4 to 8 ASCII
digits padded with FF to 8 bytes. **Default PIN of a new card: "1234", i.e.
31 32 33 34 FF FF FF FF.** The unblocking code (PUK, RESET RETRY COUNTER) is
8 bytes, default ASCII "12345678", 10 tries. Try counters are decremented and
the file system marked dirty *before* the comparison, so the card image is
saved with the spent try before any answer leaves (ARCHITECTURE.md).

Le policy
---------
READ BINARY / READ RECORD return at most Ne bytes; when fewer are available
they return what there is with 9000 (as for Le=00, ISO 7816-4 §5.1: "all
available bytes"); 6282 is never sent. Le absent on a read is 6700. SELECT
answers its template whatever Le says.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cardlab.cardspec import tlv

from .apdu import SW, Command, StatusError

if TYPE_CHECKING:
    from .applet import Context

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

MF_FID = 0x3F00
MAX_TRANSPARENT_SIZE = 0x7FFF
MAX_RECORD_LENGTH = 255
MAX_RECORDS = 254
LCSI_OPERATIONAL = 0x05

# -- access modes (AM bits of the compact format, §7.4.3) -------------
READ = 0x01
UPDATE = 0x02
WRITE = 0x04
DELETE_CHILD = 0x01
CREATE_EF = 0x02
CREATE_DF = 0x04

# -- security condition bytes (§7.4.3) -----------------------------------
ALWAYS = 0x00
NEVER = 0xFF
SC_ALL = 0x80
SC_SM = 0x40  # interpreted: authenticated GP secure channel
SC_PIN = 0x10  # interpreted: global PIN verified

PIN_REF = 0x01
PIN_LENGTH = 8
DEFAULT_PIN = b"1234".ljust(PIN_LENGTH, b"\xff")
DEFAULT_PUK = b"12345678"
PIN_TRIES = 3
PUK_TRIES = 10

#: total memory for EF contents and file headers (6A84 beyond it)
DEFAULT_BUDGET = 16384
#: bytes charged per file on top of its contents
FILE_OVERHEAD = 32


def _bad(message: str) -> StatusError:
    return StatusError(SW.WRONG_DATA, message)


# -- security attributes ----------------------------------------------------------


def compact_acl(rules: dict[int, int]) -> bytes:
    """Build an 8C value from {AM bit: SC byte} (§7.4.3: SC bytes follow in AM
    bit order from b7 to b1).

    >>> compact_acl({READ: ALWAYS, UPDATE: SC_PIN}).hex()
    '031000'
    """
    am = 0
    for bit in rules:
        am |= bit
    return bytes([am]) + bytes(rules[1 << b] for b in range(6, -1, -1) if am & (1 << b))


def parse_acl(value: bytes) -> dict[int, int]:
    """Decode and validate an 8C value; 6A80 when malformed or unsupported."""
    if not value:
        raise _bad("empty security attributes")
    am = value[0]
    if am & 0x80:
        raise _bad("AM byte b8 not supported")
    bits = [1 << b for b in range(6, -1, -1) if am & (1 << b)]
    if len(value) != 1 + len(bits):
        raise _bad("SC bytes do not match the AM byte")
    rules = dict(zip(bits, value[1:], strict=True))
    for sc in rules.values():
        if sc not in (ALWAYS, NEVER) and (sc & 0x2F or not sc & (SC_SM | SC_PIN)):
            raise _bad("unsupported security condition")
    return rules


def condition_met(ctx: Context, sc: int) -> bool:
    """Evaluate one SC byte for this command (§7.4.3)."""
    if sc == ALWAYS:
        return True
    if sc == NEVER:
        return False
    met: list[bool] = []
    if sc & SC_SM:
        met.append(ctx.authenticated)
    if sc & SC_PIN:
        met.append(PIN_REF in ctx.card.security.pin_verified)
    return all(met) if sc & SC_ALL else any(met)


# -- FCP, declaratively --------------------------------------------------------------

#: tags accepted in a CREATE FILE FCP but not kept (§7.4.3)
IGNORED_FCP_TAGS = frozenset({0x81, 0x85, 0xA5})
KNOWN_FCP_TAGS = frozenset({0x80, 0x82, 0x83, 0x84, 0x88, 0x8A, 0x8C}) | IGNORED_FCP_TAGS


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


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
        out = bytes([self.fdb, self.dcb])
        if self.is_record:
            out += self.rec_len.to_bytes(2, "big") + bytes([self.max_records])
        return out

    def content(self) -> list[tuple[int, bytes]]:
        """The FCP's data objects in canonical order."""
        items: list[tuple[int, bytes]] = []
        if not self.is_df:
            size = self.data_size
            items.append((0x80, size.to_bytes(max(1, (size.bit_length() + 7) // 8), "big")))
        items.append((0x82, self.descriptor()))
        items.append((0x83, self.fid.to_bytes(2, "big")))
        if self.name:
            items.append((0x84, self.name))
        if not self.is_df:
            items.append((0x88, b"" if self.sfi is None else bytes([self.sfi << 3])))
        items.append((0x8A, bytes([self.lcsi])))
        if self.acl is not None:
            items.append((0x8C, self.acl))
        return items

    def build(self) -> bytes:
        """The FCP template (tag 62)."""
        return tlv.encode(0x62, tlv.encode_all(self.content()))

    @classmethod
    def parse(cls, fcp: bytes) -> FileSpec:
        """Parse and validate an FCP template; 6A80 on anything wrong."""
        try:
            outer = tlv.parse(fcp)
            if len(outer) != 1 or outer[0].tag != 0x62:
                raise _bad("not one FCP template")
            objs: dict[int, bytes] = {}
            for item in tlv.iterate(outer[0].value):
                if item.tag in objs or item.tag not in KNOWN_FCP_TAGS:
                    raise _bad("duplicate or unsupported FCP tag")
                objs[item.tag] = item.value
        except tlv.TlvError as exc:
            raise _bad("malformed FCP") from exc
        desc = objs.get(0x82, b"")
        fid_raw = objs.get(0x83, b"")
        if not desc or len(fid_raw) != 2:
            raise _bad("FCP needs 82 and a 2-byte 83")
        fid = _int(fid_raw)
        if fid in (0x3FFF, 0xFFFF):
            raise _bad("reserved FID")
        fdb = desc[0]
        dcb = desc[1] if len(desc) > 1 else DEFAULT_DCB
        size = rec_len = max_records = 0
        if fdb in RECORD_FDBS:
            if len(desc) != 5:
                raise _bad("record EF descriptor must be 5 bytes")
            rec_len, max_records = _int(desc[2:4]), desc[4]
            if not (1 <= rec_len <= MAX_RECORD_LENGTH and 1 <= max_records <= MAX_RECORDS):
                raise _bad("record length or number out of range")
        elif fdb in (FDB_DF, FDB_TRANSPARENT):
            if len(desc) > 2:
                raise _bad("descriptor too long")
        else:
            raise _bad("unsupported file descriptor byte")
        if fdb == FDB_TRANSPARENT:
            raw = objs.get(0x80)
            if raw is None or not 1 <= len(raw) <= 2 or _int(raw) > MAX_TRANSPARENT_SIZE:
                raise _bad("transparent EF needs a size (80) up to 32767")
            size = _int(raw)
        name = objs.get(0x84, b"")
        if fdb == FDB_DF:
            if 0x84 in objs and not 1 <= len(name) <= 16:
                raise _bad("DF name must be 1..16 bytes")
            if 0x88 in objs:
                raise _bad("a DF has no SFI")
            sfi = None
        else:
            if 0x84 in objs:
                raise _bad("an EF has no DF name")
            sfi = cls._parse_sfi(objs.get(0x88), fid)
        lcsi = objs.get(0x8A, bytes([LCSI_OPERATIONAL]))
        if lcsi != bytes([LCSI_OPERATIONAL]):
            raise _bad("only operational files (8A=05) are supported")
        acl = objs.get(0x8C)
        if acl is not None:
            parse_acl(acl)
        return cls(fid, fdb, dcb, name, size, rec_len, max_records, sfi, LCSI_OPERATIONAL, acl)

    @staticmethod
    def _parse_sfi(raw: bytes | None, fid: int) -> int | None:
        if raw is None:  # §7.4.3: absent → the FID's five low-order bits
            low = fid & 0x1F
            return low if 1 <= low <= 30 else None
        if not raw:
            return None
        if len(raw) != 1 or raw[0] & 0x07 or not 1 <= raw[0] >> 3 <= 30:
            raise _bad("SFI must be one byte, b8-b4 = 1..30")
        return raw[0] >> 3


# -- the tree ---------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    spec: FileSpec
    parent: DF | None = field(default=None, repr=False)

    @property
    def fid(self) -> int:
        return self.spec.fid


@dataclass(eq=False)
class EF(Node):
    data: bytearray = field(default_factory=bytearray)
    #: records[0] is record number 1 (for cyclic files: the newest, §7.3.1)
    records: list[bytes] = field(default_factory=list)


@dataclass(eq=False)
class DF(Node):
    children: list[Node] = field(default_factory=list)

    def child(self, fid: int) -> Node | None:
        for node in self.children:
            if node.fid == fid:
                return node
        return None

    def by_sfi(self, sfi: int) -> EF | None:
        for node in self.children:
            if isinstance(node, EF) and node.spec.sfi == sfi:
                return node
        return None

    def walk(self) -> Iterator[Node]:
        """Pre-order: this DF, then each child subtree in creation order."""
        yield self
        for node in self.children:
            if isinstance(node, DF):
                yield from node.walk()
            else:
                yield node

    def add(self, node: Node) -> Node:
        node.parent = self
        self.children.append(node)
        return node


@dataclass
class FsCursor:
    """Per-channel position in the file tree (§7.2.1)."""

    df: DF | None = None
    ef: EF | None = None
    #: current record number (1-based), or None
    record: int | None = None

    @classmethod
    def at_mf(cls, fs: FileSystem) -> FsCursor:
        return cls(fs.root)


@dataclass
class Secret:
    """A PIN or PUK and its try counter (persistent)."""

    value: bytes
    tries: int
    max_tries: int

    def check(self, fs: FileSystem, offered: bytes) -> bool:
        """Spend a try, mark the file system dirty, then compare (never the
        other way round: a power cut must not give a free try)."""
        if self.tries <= 0:
            raise StatusError(SW.AUTH_METHOD_BLOCKED)
        self.tries -= 1
        fs.dirty = True
        ok = hmac.compare_digest(offered, self.value)
        if ok:
            self.tries = self.max_tries
        return ok

    def failed(self) -> StatusError:
        return StatusError(SW.VERIFY_FAILED | min(self.tries, 15), "verification failed")

    def dump(self) -> dict[str, Any]:
        return {"value": self.value.hex(), "tries": self.tries, "max": self.max_tries}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Secret:
        return cls(bytes.fromhex(data["value"]), int(data["tries"]), int(data["max"]))


def valid_pin_format(pin: bytes) -> bool:
    """4..8 ASCII digits padded with FF to 8 bytes."""
    digits = pin.rstrip(b"\xff")
    return len(pin) == PIN_LENGTH and 4 <= len(digits) and digits.isdigit() and digits.isascii()


Handler = Callable[["FileSystem", "Context", Command], bytes]


class FileSystem:
    """The card's file tree, PIN and memory budget."""

    COMMANDS: ClassVar[dict[int, Handler]] = {}

    def __init__(
        self, root: DF, *, pin: Secret | None = None, puk: Secret | None = None, budget: int = DEFAULT_BUDGET
    ) -> None:
        self.root = root
        self.pin = pin or Secret(DEFAULT_PIN, PIN_TRIES, PIN_TRIES)
        self.puk = puk or Secret(DEFAULT_PUK, PUK_TRIES, PUK_TRIES)
        self.budget = budget
        #: persistent content changed; the card saves and resets it
        self.dirty = False

    # -- persistence -----------------------------------------------------------------
    @classmethod
    def load(cls, data: dict[str, Any]) -> FileSystem:
        """Restore from :meth:`dump` output; an empty dict gives the default tree."""
        if not data or "tree" not in data:
            return cls.default()
        root = _load_node(data["tree"])
        if not isinstance(root, DF):
            raise ValueError("the file system root must be a DF")
        return cls(
            root,
            pin=Secret.load(data["pin"]),
            puk=Secret.load(data["puk"]),
            budget=int(data.get("budget", DEFAULT_BUDGET)),
        )

    def dump(self) -> dict[str, Any]:
        return {
            "version": 1,
            "budget": self.budget,
            "pin": self.pin.dump(),
            "puk": self.puk.dump(),
            "tree": _dump_node(self.root),
        }

    @classmethod
    def default(cls) -> FileSystem:
        """A new card's tree: MF with EF.DIR (2F00) and EF.ATR/INFO (2F01), and a
        demo DF 5000 with one EF of each structure."""
        mf = DF(FileSpec(MF_FID, FDB_DF, acl=compact_acl({
            DELETE_CHILD: SC_PIN | SC_SM, CREATE_EF: SC_PIN | SC_SM, CREATE_DF: SC_PIN | SC_SM})))
        public = compact_acl({READ: ALWAYS, UPDATE: SC_SM, WRITE: SC_SM})
        ef_dir = EF(FileSpec(0x2F00, FDB_LINEAR_VARIABLE, rec_len=64, max_records=16, sfi=30, acl=public))
        ef_dir.records.append(
            tlv.encode(0x61, tlv.encode_all([(0x4F, DEMO_DF_NAME), (0x50, b"cardlab demo")]))
        )
        mf.add(ef_dir)
        info = tlv.encode(0x46, b"cardlab emulator")  # pre-issuing data (interindustry tag 46, ISO 7816-4 EF.ATR/INFO)
        ef_atr = EF(FileSpec(0x2F01, FDB_TRANSPARENT, size=len(info), sfi=1,
                             acl=compact_acl({READ: ALWAYS, UPDATE: NEVER, WRITE: NEVER})),
                    data=bytearray(info))
        mf.add(ef_atr)
        demo = DF(FileSpec(0x5000, FDB_DF, name=DEMO_DF_NAME, acl=compact_acl({
            DELETE_CHILD: ALWAYS, CREATE_EF: ALWAYS, CREATE_DF: ALWAYS})))
        mf.add(demo)
        open_acl = compact_acl({READ: ALWAYS, UPDATE: ALWAYS, WRITE: ALWAYS})
        demo.add(EF(FileSpec(0x5001, FDB_TRANSPARENT, size=64, sfi=1, acl=open_acl),
                    data=bytearray(b"Hello, cardlab!".ljust(64, b"\x00"))))
        demo.add(EF(FileSpec(0x5002, FDB_TRANSPARENT, size=32, sfi=2,
                             acl=compact_acl({READ: SC_PIN, UPDATE: SC_PIN, WRITE: SC_PIN})),
                    data=bytearray(b"secret".ljust(32, b"\x00"))))
        demo.add(EF(FileSpec(0x5003, FDB_LINEAR_FIXED, rec_len=16, max_records=5, sfi=3,
                             acl=compact_acl({READ: ALWAYS, UPDATE: SC_PIN, WRITE: SC_PIN})),
                    records=[bytes([n]) * 16 for n in range(1, 4)]))
        demo.add(EF(FileSpec(0x5004, FDB_LINEAR_VARIABLE, rec_len=32, max_records=8, sfi=4, acl=open_acl),
                    records=[b"first", b"second record", b"3"]))
        demo.add(EF(FileSpec(0x5005, FDB_CYCLIC, rec_len=8, max_records=4, sfi=5,
                             acl=compact_acl({READ: ALWAYS, UPDATE: NEVER, WRITE: SC_PIN | SC_SM})),
                    records=[bytes(7) + b"\x02", bytes(7) + b"\x01"]))
        demo.add(EF(FileSpec(0x5006, FDB_TRANSPARENT, size=16, sfi=6,
                             acl=compact_acl({READ: SC_SM, UPDATE: SC_SM | SC_PIN | SC_ALL})),
                    data=bytearray(16)))
        return cls(mf)

    # -- helpers ---------------------------------------------------------------------------
    def attached(self, node: Node) -> bool:
        while node.parent is not None:
            if node not in node.parent.children:
                return False
            node = node.parent
        return node is self.root

    def cursor(self, ctx: Context) -> FsCursor:
        """The channel's cursor, repaired if its files were deleted meanwhile."""
        cur = ctx.channel.fs
        if cur is None:
            cur = ctx.channel.fs = FsCursor.at_mf(self)
        if cur.df is None or not self.attached(cur.df):
            cur.df, cur.ef, cur.record = self.root, None, None
        if cur.ef is not None and not self.attached(cur.ef):
            cur.ef, cur.record = None, None
        return cur

    def used(self) -> int:
        return sum(FILE_OVERHEAD + n.spec.data_size for n in self.root.walk())

    @staticmethod
    def require(ctx: Context, node: Node, mode: int) -> None:
        if not condition_met(ctx, node.spec.rule(mode)):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "access condition not satisfied")

    # -- SELECT (ISO 7816-4 §11.1.1) -----------------------------------------------------------
    def check_select(self, ctx: Context, cmd: Command) -> None:
        """Resolve the SELECT target or raise (before the card deselects anything)."""
        ctx.notes["fs_target"] = self._resolve(ctx, cmd)

    def select(self, ctx: Context, cmd: Command) -> bytes:
        target = ctx.notes.pop("fs_target", None)
        if not isinstance(target, Node):
            target = self._resolve(ctx, cmd)
        cur = self.cursor(ctx)
        if isinstance(target, DF):
            cur.df, cur.ef = target, None
        else:
            assert isinstance(target, EF) and target.parent is not None
            cur.df, cur.ef = target.parent, target
        cur.record = None
        return self.answer(target, cmd.p2)

    def _resolve(self, ctx: Context, cmd: Command) -> Node:
        if cmd.cla & 0x80:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        p1, p2, data = cmd.p1, cmd.p2, cmd.data
        if p2 & 0xF0:
            raise StatusError(SW.INCORRECT_P1P2)
        occurrence = p2 & 0x03
        if occurrence and not (p1 == 0x04 and occurrence == 0x02):
            raise StatusError(SW.INCORRECT_P1P2, "only first (and next, by DF name) occurrence")
        cur = self.cursor(ctx)
        if p1 == 0x04:
            return self._by_name(ctx, cur, data, occurrence == 0x02)
        if p1 not in (0x00, 0x01, 0x02, 0x03, 0x08, 0x09):
            raise StatusError(SW.INCORRECT_P1P2)
        if p1 == 0x03:
            if data:
                raise StatusError(SW.LC_INCONSISTENT_WITH_P1P2)
            if cur.df is None or cur.df.parent is None:
                raise StatusError(SW.FILE_NOT_FOUND, "the MF has no parent")
            return cur.df.parent
        if p1 == 0x00 and not data:
            return self.root
        if len(data) % 2 or not data or (p1 in (0x00, 0x01, 0x02) and len(data) != 2):
            raise StatusError(SW.LC_INCONSISTENT_WITH_P1P2)
        fids = [_int(data[i : i + 2]) for i in range(0, len(data), 2)]
        assert cur.df is not None
        found: Node | None
        if p1 == 0x00:
            found = self._by_fid(cur.df, fids[0])
        elif p1 in (0x01, 0x02):
            found = cur.df.child(fids[0])
            if found is not None and isinstance(found, DF) != (p1 == 0x01):
                found = None
        else:  # paths (§7.2.2): 08 from the MF (its FID may lead), 09 from the current DF
            start = self.root if p1 == 0x08 else cur.df
            if p1 == 0x08 and fids[0] == MF_FID:
                fids = fids[1:]
            found = self._walk_path(start, fids)
        if found is None:
            raise StatusError(SW.FILE_NOT_FOUND)
        return found

    def _by_fid(self, df: DF, fid: int) -> Node | None:
        """P1=00 (§7.2.1): the MF, a child of the current DF, the current DF,
        its parent, or a child of the parent — in that order."""
        if fid == MF_FID:
            return self.root
        hit = df.child(fid)
        if hit is not None:
            return hit
        if df.fid == fid:
            return df
        parent = df.parent
        if parent is not None:
            if parent.fid == fid:
                return parent
            return parent.child(fid)
        return None

    @staticmethod
    def _walk_path(start: DF, fids: list[int]) -> Node | None:
        node: Node = start
        for fid in fids:
            if not isinstance(node, DF):
                return None
            nxt = node.child(fid)
            if nxt is None:
                return None
            node = nxt
        return node

    def _by_name(self, ctx: Context, cur: FsCursor, name: bytes, following: bool) -> DF:
        """By DF name, partial names allowed (§11.1.1); 'next' continues after the
        current DF when the file system (not an application) is selected."""
        if not name:
            raise StatusError(SW.FILE_NOT_FOUND)
        matches = [n for n in self.root.walk() if isinstance(n, DF) and n.spec.name.startswith(name)
                   and n.spec.name]
        if following and ctx.channel.selected is None and cur.df in matches:
            matches = matches[matches.index(cur.df) + 1 :]
        if not matches:
            raise StatusError(SW.FILE_NOT_FOUND)
        return matches[0]

    def answer(self, node: Node, p2: int) -> bytes:
        """SELECT response by P2 b4b3 (§11.1.1): FCI, FCP, FMD or nothing."""
        kind = p2 & 0x0C
        if kind == 0x0C:
            return b""
        fcp = node.spec.content()
        if kind == 0x04:
            return tlv.encode(0x62, tlv.encode_all(fcp))
        fmd = self.fmd(node)
        if kind == 0x08:
            return tlv.encode(0x64, tlv.encode_all(fmd))
        return tlv.encode(0x6F, tlv.encode_all(fcp + fmd))

    @staticmethod
    def fmd(node: Node) -> list[tuple[int, bytes]]:
        """File management data (§7.4.1): a named DF carries its name as
        application identifier (4F); other files have none."""
        return [(0x4F, node.spec.name)] if node.spec.name else []

    # -- dispatch -----------------------------------------------------------------------------------
    def process(self, ctx: Context, cmd: Command) -> bytes:
        if cmd.cla & 0x80:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        handler = self.COMMANDS.get(cmd.ins)
        if handler is None:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        return handler(self, ctx, cmd)

    # -- transparent EFs (§11.2) -------------------------------------------------------------------
    def _transparent(self, ctx: Context, cmd: Command, mode: int) -> tuple[EF, int]:
        """The EF and offset of READ/UPDATE/WRITE BINARY (§11.2.2): P1 b8=1 → SFI in
        P1 b5-b1 and an 8-bit offset in P2, else a 15-bit offset of the current EF."""
        cur = self.cursor(ctx)
        if cmd.p1 & 0x80:
            if cmd.p1 & 0x60 or not 1 <= cmd.p1 & 0x1F <= 30:
                raise StatusError(SW.INCORRECT_P1P2)
            assert cur.df is not None
            ef = cur.df.by_sfi(cmd.p1 & 0x1F)
            if ef is None:
                raise StatusError(SW.FILE_NOT_FOUND)
            if ef is not cur.ef:  # §7.2.1: the file referenced by SFI becomes current
                cur.ef, cur.record = ef, None
            offset = cmd.p2
        else:
            if cur.ef is None:
                raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_EF)
            ef = cur.ef
            offset = (cmd.p1 << 8) | cmd.p2
        if ef.spec.fdb != FDB_TRANSPARENT:
            raise StatusError(SW.INCOMPATIBLE_FILE_STRUCTURE)
        self.require(ctx, ef, mode)
        if offset >= ef.spec.size:
            raise StatusError(SW.WRONG_P1P2, "offset beyond the end of the file")
        return ef, offset

    def read_binary(self, ctx: Context, cmd: Command) -> bytes:
        if cmd.data:
            raise StatusError(SW.WRONG_LENGTH)
        ef, offset = self._transparent(ctx, cmd, READ)
        if cmd.ne is None:
            raise StatusError(SW.WRONG_LENGTH, "READ BINARY without Le")
        return bytes(ef.data[offset : offset + cmd.ne])

    def update_binary(self, ctx: Context, cmd: Command) -> bytes:
        return self._write(ctx, cmd, UPDATE)

    def write_binary(self, ctx: Context, cmd: Command) -> bytes:
        return self._write(ctx, cmd, WRITE)

    def _write(self, ctx: Context, cmd: Command, mode: int) -> bytes:
        if not cmd.data:
            raise StatusError(SW.WRONG_LENGTH)
        ef, offset = self._transparent(ctx, cmd, mode)
        end = offset + len(cmd.data)
        if end > ef.spec.size:
            raise StatusError(SW.NOT_ENOUGH_MEMORY, "data runs past the end of the file")
        new = cmd.data
        behaviour = ef.spec.dcb & 0x60  # data coding byte b7b6 (§7.4.5)
        if mode == WRITE and behaviour == 0x40:
            new = bytes(a | b for a, b in zip(ef.data[offset:end], new, strict=True))
        elif mode == WRITE and behaviour == 0x60:
            new = bytes(a & b for a, b in zip(ef.data[offset:end], new, strict=True))
        ef.data[offset:end] = new
        self.dirty = True
        return b""

    # -- record EFs (§11.3) --------------------------------------------------------------------------
    def _record_ef(self, ctx: Context, cmd: Command, mode: int) -> tuple[FsCursor, EF]:
        """The EF of a record command: SFI in P2 b8-b4 (0: the current EF)."""
        cur = self.cursor(ctx)
        sfi = cmd.p2 >> 3
        if sfi == 0x1F:
            raise StatusError(SW.INCORRECT_P1P2)
        if sfi:
            assert cur.df is not None
            ef = cur.df.by_sfi(sfi)
            if ef is None:
                raise StatusError(SW.FILE_NOT_FOUND)
            if ef is not cur.ef:
                cur.ef, cur.record = ef, None
        elif cur.ef is None:
            raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_EF)
        else:
            ef = cur.ef
        if not ef.spec.is_record:
            raise StatusError(SW.INCOMPATIBLE_FILE_STRUCTURE)
        self.require(ctx, ef, mode)
        return cur, ef

    @staticmethod
    def _record_number(cur: FsCursor, ef: EF, cmd: Command) -> int:
        """Record number from P1 and P2 b3-b1 (§11.3.2): 100 = record P1
        (P1=00: the current record); with P1=00, 000 first, 001 last, 010 next,
        011 previous."""
        how = cmd.p2 & 0x07
        count = len(ef.records)
        if how == 0x04:
            if cmd.p1 == 0xFF:
                raise StatusError(SW.INCORRECT_P1P2)
            number = cmd.p1 or cur.record or 0
        elif how <= 0x03:
            if cmd.p1:
                raise StatusError(SW.INCORRECT_P1P2)
            if how == 0x00:
                number = 1
            elif how == 0x01:
                number = count
            elif how == 0x02:
                number = (cur.record or 0) + 1
            else:
                number = cur.record - 1 if cur.record else count
        else:
            raise StatusError(SW.INCORRECT_P1P2)
        if not 1 <= number <= count:
            raise StatusError(SW.RECORD_NOT_FOUND)
        return number

    @staticmethod
    def _check_record_length(ef: EF, data: bytes) -> None:
        ok = (1 <= len(data) <= ef.spec.rec_len) if ef.spec.fdb == FDB_LINEAR_VARIABLE \
            else len(data) == ef.spec.rec_len
        if not ok:
            raise StatusError(SW.WRONG_LENGTH, "record length")

    def read_record(self, ctx: Context, cmd: Command) -> bytes:
        if cmd.data:
            raise StatusError(SW.WRONG_LENGTH)
        cur, ef = self._record_ef(ctx, cmd, READ)
        number = self._record_number(cur, ef, cmd)
        if cmd.ne is None:
            raise StatusError(SW.WRONG_LENGTH, "READ RECORD without Le")
        cur.record = number
        return ef.records[number - 1][: cmd.ne]

    def update_record(self, ctx: Context, cmd: Command) -> bytes:
        cur, ef = self._record_ef(ctx, cmd, UPDATE)
        number = self._record_number(cur, ef, cmd)
        self._check_record_length(ef, cmd.data)
        ef.records[number - 1] = cmd.data
        cur.record = number
        self.dirty = True
        return b""

    def append_record(self, ctx: Context, cmd: Command) -> bytes:
        """APPEND RECORD (§11.3.6): P1=00, P2 b3-b1=000."""
        if cmd.p1 or cmd.p2 & 0x07:
            raise StatusError(SW.INCORRECT_P1P2)
        cur, ef = self._record_ef(ctx, cmd, WRITE)
        self._check_record_length(ef, cmd.data)
        if ef.spec.fdb == FDB_CYCLIC:  # the newest becomes record 1 (§7.3.1)
            ef.records.insert(0, cmd.data)
            del ef.records[ef.spec.max_records :]
            cur.record = 1
        else:
            if len(ef.records) >= ef.spec.max_records:
                raise StatusError(SW.NOT_ENOUGH_MEMORY, "no room for another record")
            ef.records.append(cmd.data)
            cur.record = len(ef.records)
        self.dirty = True
        return b""

    # -- CREATE FILE / DELETE FILE (ISO 7816-9 §6.3, §6.4) -----------------------------------------
    def create_file(self, ctx: Context, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            raise StatusError(SW.INCORRECT_P1P2)
        if not cmd.data:
            raise StatusError(SW.WRONG_LENGTH)
        spec = FileSpec.parse(cmd.data)
        cur = self.cursor(ctx)
        parent = cur.df
        assert parent is not None
        self.require(ctx, parent, CREATE_DF if spec.is_df else CREATE_EF)
        if spec.fid == MF_FID or spec.fid == parent.fid or parent.child(spec.fid) is not None:
            raise StatusError(SW.FILE_ALREADY_EXISTS)
        if spec.sfi is not None and parent.by_sfi(spec.sfi) is not None:
            raise StatusError(SW.FILE_ALREADY_EXISTS, "SFI already used in this DF")
        if spec.name and any(isinstance(n, DF) and n.spec.name == spec.name for n in self.root.walk()):
            raise StatusError(SW.DF_NAME_ALREADY_EXISTS)
        if self.used() + FILE_OVERHEAD + spec.data_size > self.budget:
            raise StatusError(SW.NOT_ENOUGH_MEMORY)
        # ISO 7816-9 §6.3: the new file becomes the current one
        if spec.is_df:
            df = DF(spec)
            parent.add(df)
            cur.df, cur.ef = df, None
        else:
            ef = EF(spec, data=bytearray(spec.size))
            parent.add(ef)
            cur.ef = ef
        cur.record = None
        self.dirty = True
        return b""

    def delete_file(self, ctx: Context, cmd: Command) -> bytes:
        """P1P2=0000; data: FID of a child of the current DF, or empty for the
        current EF (the current DF when there is none)."""
        if cmd.p1 or cmd.p2:
            raise StatusError(SW.INCORRECT_P1P2)
        cur = self.cursor(ctx)
        assert cur.df is not None
        target: Node | None
        if not cmd.data:
            target = cur.ef or cur.df
        elif len(cmd.data) == 2:
            target = cur.df.child(_int(cmd.data))
        else:
            raise StatusError(SW.LC_INCONSISTENT_WITH_P1P2)
        if target is None:
            raise StatusError(SW.FILE_NOT_FOUND)
        parent = target.parent
        if parent is None:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "the MF cannot be deleted")
        self.require(ctx, parent, DELETE_CHILD)
        parent.children.remove(target)
        target.parent = None
        if cur.ef is target or cur.df is target:
            cur.df, cur.ef, cur.record = parent, None, None
        self.dirty = True
        return b""

    # -- PIN (§11.5) ---------------------------------------------------------------------------------
    @staticmethod
    def _pin_reference(cmd: Command) -> None:
        if cmd.p2 != PIN_REF:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND)

    def verify(self, ctx: Context, cmd: Command) -> bytes:
        """VERIFY (§11.5.6): P1=00 with the PIN, or empty data for the status
        (9000 verified, 63Cx tries left, 6983 blocked); P1=FF resets the status."""
        verified = ctx.card.security.pin_verified
        if cmd.p1 == 0xFF:
            self._pin_reference(cmd)
            if cmd.data:
                raise StatusError(SW.WRONG_LENGTH)
            verified.discard(PIN_REF)
            return b""
        if cmd.p1:
            raise StatusError(SW.INCORRECT_P1P2)
        self._pin_reference(cmd)
        if not cmd.data:
            if PIN_REF in verified:
                return b""
            if self.pin.tries <= 0:
                raise StatusError(SW.AUTH_METHOD_BLOCKED)
            raise self.pin.failed()
        if len(cmd.data) != PIN_LENGTH:
            raise StatusError(SW.WRONG_LENGTH)
        self._check_pin(ctx, cmd.data)
        verified.add(PIN_REF)
        return b""

    def _check_pin(self, ctx: Context, offered: bytes) -> None:
        if not self.pin.check(self, offered):
            ctx.card.security.pin_verified.discard(PIN_REF)
            raise self.pin.failed()

    def change_reference_data(self, ctx: Context, cmd: Command) -> bytes:
        """CHANGE REFERENCE DATA (§11.5.7): P1=00 old PIN ‖ new PIN; P1=01 new
        PIN only, when the PIN is already verified."""
        self._pin_reference(cmd)
        if cmd.p1 == 0x00:
            if len(cmd.data) != 2 * PIN_LENGTH:
                raise StatusError(SW.WRONG_LENGTH)
            old, new = cmd.data[:PIN_LENGTH], cmd.data[PIN_LENGTH:]
        elif cmd.p1 == 0x01:
            if len(cmd.data) != PIN_LENGTH:
                raise StatusError(SW.WRONG_LENGTH)
            if PIN_REF not in ctx.card.security.pin_verified:
                raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
            old, new = None, cmd.data
        else:
            raise StatusError(SW.INCORRECT_P1P2)
        if not valid_pin_format(new):
            raise StatusError(SW.WRONG_DATA, "new PIN format")
        if old is not None:
            self._check_pin(ctx, old)
        self.pin.value = new
        self.pin.tries = self.pin.max_tries
        ctx.card.security.pin_verified.add(PIN_REF)
        self.dirty = True
        return b""

    def reset_retry_counter(self, ctx: Context, cmd: Command) -> bytes:
        """RESET RETRY COUNTER (§11.5.10): P1=00 PUK ‖ new PIN, P1=01 PUK only."""
        self._pin_reference(cmd)
        if cmd.p1 == 0x00 and len(cmd.data) == len(self.puk.value) + PIN_LENGTH:
            puk, new = cmd.data[: -PIN_LENGTH], cmd.data[-PIN_LENGTH:]
        elif cmd.p1 == 0x01 and len(cmd.data) == len(self.puk.value):
            puk, new = cmd.data, None
        elif cmd.p1 in (0x00, 0x01):
            raise StatusError(SW.WRONG_LENGTH)
        else:
            raise StatusError(SW.INCORRECT_P1P2)
        if new is not None and not valid_pin_format(new):
            raise StatusError(SW.WRONG_DATA, "new PIN format")
        if not self.puk.check(self, puk):
            raise self.puk.failed()
        if new is not None:
            self.pin.value = new
        self.pin.tries = self.pin.max_tries
        self.dirty = True
        return b""


#: the file system's dispatch table: INS → handler (interindustry class only)
FileSystem.COMMANDS = {
    0xB0: FileSystem.read_binary,
    0xD6: FileSystem.update_binary,
    0xD0: FileSystem.write_binary,
    0xB2: FileSystem.read_record,
    0xDC: FileSystem.update_record,
    0xE2: FileSystem.append_record,
    0xE0: FileSystem.create_file,
    0xE4: FileSystem.delete_file,
    0x20: FileSystem.verify,
    0x24: FileSystem.change_reference_data,
    0x2C: FileSystem.reset_retry_counter,
}

#: the demo DF's name: F0 (a proprietary, unregistered RID category, ISO 7816-5) + "CARDLAB.DEMO"
DEMO_DF_NAME = b"\xf0CARDLAB.DEMO"


def _dump_node(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"fcp": node.spec.build().hex()}
    if isinstance(node, DF):
        out["children"] = [_dump_node(c) for c in node.children]
    elif isinstance(node, EF):
        if node.spec.is_record:
            out["records"] = [r.hex() for r in node.records]
        else:
            out["data"] = node.data.hex()
    return out


def _load_node(data: dict[str, Any]) -> Node:
    try:
        spec = FileSpec.parse(bytes.fromhex(data["fcp"]))
    except StatusError as exc:
        raise ValueError("corrupt FCP in the card image") from exc
    if spec.is_df:
        df = DF(spec)
        for child in data.get("children", []):
            df.add(_load_node(child))
        return df
    return EF(
        spec,
        data=bytearray.fromhex(data.get("data", "")) if not spec.is_record else bytearray(),
        records=[bytes.fromhex(r) for r in data.get("records", [])],
    )

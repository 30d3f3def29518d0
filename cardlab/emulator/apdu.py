"""Command and response APDUs (ISO/IEC 7816-4:2020 §5).

Parsing covers the four cases in short and extended form (§5.2). Anything that
cannot be a well-formed command raises :class:`StatusError` with 6700 so that the
one place in :mod:`cardlab.emulator.card` that builds responses answers it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum


class SW(IntEnum):
    """Status words used by the card (ISO 7816-4 §5.6, GP Card Spec 2.3 §11.1.3)."""

    OK = 0x9000
    MORE_DATA = 0x6310  # GP GET STATUS: more data available
    VERIFY_FAILED = 0x63C0  # low nibble = remaining tries
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_EXPECTED = 0x6883
    CHAINING_NOT_SUPPORTED = 0x6884
    INCOMPATIBLE_FILE_STRUCTURE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_EF = 0x6986
    SM_DATA_OBJECTS_MISSING = 0x6987
    SM_DATA_OBJECTS_INCORRECT = 0x6988
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    LC_INCONSISTENT_WITH_P1P2 = 0x6A87
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    FILE_ALREADY_EXISTS = 0x6A89
    DF_NAME_ALREADY_EXISTS = 0x6A8A
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN = 0x6F00


class StatusError(Exception):
    """A command failed; ``sw`` is the status word the card answers with.

    The message is for logs only and must never contain key or PIN material.
    """

    def __init__(self, sw: int, message: str = "") -> None:
        super().__init__(message or f"SW {sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class Command:
    """A parsed command APDU.

    ``ne`` is the maximum number of response bytes the terminal expects
    (ISO 7816-4 §5.1: Le=00 means 256, or 65536 in extended form); ``None``
    when Le is absent (cases 1 and 3).
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None
    extended: bool = False

    @property
    def case(self) -> int:
        if self.data:
            return 4 if self.ne is not None else 3
        return 2 if self.ne is not None else 1

    @property
    def is_proprietary(self) -> bool:
        """CLA b8 set: proprietary class (GP commands use 80/84)."""
        return bool(self.cla & 0x80)

    @property
    def channel(self) -> int:
        """Logical channel number coded in CLA (ISO 7816-4 §5.4.1)."""
        if self.cla & 0x40:  # further interindustry values: channels 4..19
            return 4 + (self.cla & 0x0F)
        return self.cla & 0x03

    @property
    def secure_messaging(self) -> bool:
        """CLA indicates secure messaging (b3 for the first interindustry
        class and for GP's 84; b6 for the further interindustry class)."""
        if self.cla & 0x40:
            return bool(self.cla & 0x20)
        return bool(self.cla & 0x0C)

    @property
    def chained(self) -> bool:
        """Command chaining bit b5 (ISO 7816-4 §5.3.3)."""
        return bool(self.cla & 0x10) and not self.is_proprietary

    def with_data(self, data: bytes) -> Command:
        return replace(self, data=data)

    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def encode(self) -> bytes:
        """Serialise again (used by the host side and by tests)."""
        out = bytearray(self.header())
        ext = self.extended or len(self.data) > 255 or (self.ne is not None and self.ne > 256)
        if self.data:
            out += (b"\x00" + len(self.data).to_bytes(2, "big")) if ext else bytes([len(self.data)])
            out += self.data
        if self.ne is not None:
            if ext:
                le = 0 if self.ne == 65536 else self.ne
                out += le.to_bytes(2, "big") if self.data else b"\x00" + le.to_bytes(2, "big")
            else:
                out.append(0 if self.ne == 256 else self.ne)
        return bytes(out)


def parse(raw: bytes) -> Command:
    """Parse a command APDU (ISO 7816-4 §5.2, table 3).

    >>> parse(bytes.fromhex("00A4040008A000000151000000")).case
    3
    >>> parse(bytes.fromhex("00B0000000")).ne
    256
    """
    n = len(raw)
    if n < 4:
        raise StatusError(SW.WRONG_LENGTH, "command shorter than a header")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if cla == 0xFF:
        raise StatusError(SW.CLA_NOT_SUPPORTED, "CLA FF is reserved (PPS)")
    body = raw[4:]
    if not body:  # case 1
        return Command(cla, ins, p1, p2)
    if len(body) == 1:  # case 2 short
        return Command(cla, ins, p1, p2, ne=body[0] or 256)
    if body[0] != 0:  # short form with Lc
        lc = body[0]
        if len(body) == 1 + lc:  # case 3 short
            return Command(cla, ins, p1, p2, data=bytes(body[1:]))
        if len(body) == 2 + lc:  # case 4 short
            return Command(cla, ins, p1, p2, data=bytes(body[1 : 1 + lc]), ne=body[-1] or 256)
        raise StatusError(SW.WRONG_LENGTH, "Lc does not match the data length")
    # extended forms start with 00
    if len(body) == 3:  # case 2 extended
        le = int.from_bytes(body[1:3], "big")
        return Command(cla, ins, p1, p2, ne=le or 65536, extended=True)
    if len(body) < 3:
        raise StatusError(SW.WRONG_LENGTH, "truncated extended length")
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise StatusError(SW.WRONG_LENGTH, "extended Lc of zero")
    if len(body) == 3 + lc:  # case 3 extended
        return Command(cla, ins, p1, p2, data=bytes(body[3:]), extended=True)
    if len(body) == 5 + lc:  # case 4 extended
        le = int.from_bytes(body[-2:], "big")
        return Command(cla, ins, p1, p2, data=bytes(body[3 : 3 + lc]), ne=le or 65536, extended=True)
    raise StatusError(SW.WRONG_LENGTH, "extended Lc does not match the data length")


def response(data: bytes, sw: int = SW.OK) -> bytes:
    return data + sw.to_bytes(2, "big")


def sw_valid(sw: int) -> bool:
    """A status word the card may legally send: 61xx–6Fxx, 90xx (ISO 7816-4 §5.6)."""
    return 0x6100 <= sw <= 0x6FFF and (sw >> 8) not in (0x60,) or (sw >> 8) == 0x90

"""Access conditions: security attributes in compact format (tag 8C, ISO 7816-4 §7.4.3).

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

Pure: no card, no context — the caller says which conditions hold.
"""

from __future__ import annotations

from construct import Array, ConstructError, Int8ub, Struct, Terminated

from ..apdu import SW, StatusError

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

#: §7.4.3 compact format: the AM byte, then one SC byte per AM bit b7..b1 that is set
COMPACT_ACL = Struct(
    "am" / Int8ub,
    "sc" / Array(lambda this: bin(this.am & 0x7F).count("1"), Int8ub),
    Terminated,
)


def bad(message: str) -> StatusError:
    """A malformed or unsupported data object (6A80)."""
    return StatusError(SW.WRONG_DATA, message)


def _am_bits(am: int) -> list[int]:
    """The AM bits set, in SC byte order (b7 down to b1)."""
    return [1 << b for b in range(6, -1, -1) if am & (1 << b)]


def compact_acl(rules: dict[int, int]) -> bytes:
    """Build an 8C value from {AM bit: SC byte} (§7.4.3: SC bytes follow in AM
    bit order from b7 to b1).

    >>> compact_acl({READ: ALWAYS, UPDATE: SC_PIN}).hex()
    '031000'
    """
    am = 0
    for bit in rules:
        am |= bit
    return bytes(COMPACT_ACL.build({"am": am, "sc": [rules[bit] for bit in _am_bits(am)]}))


def parse_acl(value: bytes) -> dict[int, int]:
    """Decode and validate an 8C value; 6A80 when malformed or unsupported.

    >>> parse_acl(bytes.fromhex("031000")) == {UPDATE: SC_PIN, READ: ALWAYS}
    True
    """
    if not value:
        raise bad("empty security attributes")
    if value[0] & 0x80:
        raise bad("AM byte b8 not supported")
    try:
        parsed = COMPACT_ACL.parse(value)
    except ConstructError as exc:
        raise bad("SC bytes do not match the AM byte") from exc
    rules = dict(zip(_am_bits(parsed.am), parsed.sc, strict=True))
    for sc in rules.values():
        if sc not in (ALWAYS, NEVER) and (sc & 0x2F or not sc & (SC_SM | SC_PIN)):
            raise bad("unsupported security condition")
    return rules


def condition_met(sc: int, *, secure_channel: bool, pin_verified: bool) -> bool:
    """Evaluate one SC byte (§7.4.3) given the conditions that hold now.

    >>> condition_met(SC_SM | SC_PIN, secure_channel=False, pin_verified=True)
    True
    >>> condition_met(SC_ALL | SC_SM | SC_PIN, secure_channel=False, pin_verified=True)
    False
    """
    if sc == ALWAYS:
        return True
    if sc == NEVER:
        return False
    met: list[bool] = []
    if sc & SC_SM:
        met.append(secure_channel)
    if sc & SC_PIN:
        met.append(pin_verified)
    return all(met) if sc & SC_ALL else any(met)

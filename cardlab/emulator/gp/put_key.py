"""PUT KEY (GP Card Spec 2.3 §11.8, Amendment D §7.2.2): new or replaced key sets, the key
values encrypted under the static DEK, each checked against its key check value.

A pure function over the card state; the card manager (:mod:`.manager`) checks the secure
channel first and marks the state to be saved after.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cardlab.cardspec.keys import kcv

from ..apdu import SW, Command, StatusError
from ..state import CardState, KeyEntry
from . import data as gpdata

#: key versions a card holds at most (a new version beyond that: 6A84)
MAX_KEY_SETS = 8


def decrypt_under_dek(key: bytes, data: bytes) -> bytes:
    """AES-CBC with a zero ICV: how PUT KEY and encrypted STORE DATA carry secrets (GP §11.8.2.3, §11.11.2)."""
    if not data or len(data) % 16:
        raise StatusError(SW.WRONG_DATA, "encrypted data is not a multiple of the block size")
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()  # OpenSSL: a context is cheap
    return dec.update(data) + dec.finalize()


def _keys(data: bytes, dek: bytes) -> list[bytes]:
    """The clear key values of PUT KEY data after the new KVN byte."""
    values: list[bytes] = []
    i = 1
    while i < len(data):
        # key type, key data length, key data (length of key + cryptogram),
        # KCV length, KCV (§11.8.2.3, Amendment D §7.2.2)
        if i + 2 > len(data):
            raise StatusError(SW.WRONG_DATA, "truncated key data")
        ktype, n = data[i], data[i + 1]
        kd = data[i + 2 : i + 2 + n]
        i += 2 + n
        if ktype != gpdata.KEY_TYPE["AES"] or len(kd) != n or n < 17:
            raise StatusError(SW.WRONG_DATA, "only AES keys (type 88) are supported")
        size = kd[0]
        if size not in (16, 24, 32) or len(kd) - 1 < size:
            raise StatusError(SW.WRONG_DATA, "bad AES key length")
        key = decrypt_under_dek(dek, kd[1:])[:size]
        if i >= len(data):
            raise StatusError(SW.WRONG_DATA, "missing KCV length")
        m = data[i]
        check = data[i + 1 : i + 1 + m]
        i += 1 + m
        if m not in (0, 3) or len(check) != m or (m and check != kcv("AES", key)):
            raise StatusError(SW.WRONG_DATA, "key check value mismatch")
        values.append(key)
    return values


def put_key(state: CardState, cmd: Command, dek: bytes) -> bytes:
    """Apply PUT KEY to ``state``; the response data: the new KVN and the KCV of each key."""
    old_kvn = cmd.p1 & 0x7F  # b8: more PUT KEY commands follow
    multiple = bool(cmd.p2 & 0x80)
    first_kid = cmd.p2 & 0x7F
    if first_kid == 0:
        raise StatusError(SW.INCORRECT_P1P2, "key identifier 00")
    data = cmd.data
    if len(data) < 2:
        raise StatusError(SW.WRONG_DATA, "PUT KEY data too short")
    new_kvn = data[0]
    if not 0x01 <= new_kvn <= 0x7F:
        raise StatusError(SW.WRONG_DATA, "key version number out of range")
    values = _keys(data, dek)
    if not values or (not multiple and len(values) != 1) or first_kid + len(values) > 0x80:
        raise StatusError(SW.WRONG_DATA, "key count does not match P2")
    versions = {k.kvn for k in state.keys}
    if old_kvn == 0:
        if new_kvn in versions:
            raise StatusError(SW.WRONG_DATA, "key version already present")
        if len(versions) >= MAX_KEY_SETS:
            raise StatusError(SW.NOT_ENOUGH_MEMORY)
        kept = list(state.keys)
    else:
        if old_kvn not in versions:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no key version to replace")
        if new_kvn != old_kvn and new_kvn in versions:
            raise StatusError(SW.WRONG_DATA, "key version already present")
        written = range(first_kid, first_kid + len(values))
        kept = []
        for k in state.keys:
            if k.kvn != old_kvn:
                kept.append(k)
            elif k.kid not in written:  # the rest of the set follows the new KVN
                kept.append(KeyEntry(new_kvn, k.kid, k.kind, k.value))
    new = [KeyEntry(new_kvn, first_kid + n, "AES", v) for n, v in enumerate(values)]
    # the open session keeps its session keys and static DEK (§11.8.2.1)
    state.keys = sorted(kept + new, key=lambda k: (k.kvn, k.kid))
    return bytes([new_kvn]) + b"".join(kcv("AES", v) for v in values)

"""Key check values and GlobalPlatform master-key diversification.

Diversification derives a card's static ENC, MAC and DEK keys from an issuer
master key and the card's key diversification data (KDD, the first 10 bytes of
the INITIALIZE UPDATE response). The schemes and their templates are those of
GlobalPlatformPro (martinpaljak/GlobalPlatformPro ``keys/PlaintextKeys.java``,
known answers in ``TestPlaintextKeys.java``; see ``vectors/diversification.json``):

* ``EMV``   — 3DES-ECB(master, KDD[4..9] ‖ F0 ‖ kk ‖ KDD[4..9] ‖ 0F ‖ kk)
  (the EMV CPS "key derivation" layout),
* ``VISA2`` — 3DES-ECB(master, KDD[0,1,4..7] ‖ F0 ‖ kk ‖ KDD[0,1,4..7] ‖ 0F ‖ kk),
* ``KDF3``  — SP 800-108 counter mode with AES-CMAC, block i =
  CMAC(master, i ‖ 00 00 00 ‖ kk ‖ 00 ‖ KDD), output as long as the master key,

where kk is the key type: 01 ENC, 02 MAC, 03 DEK.

EMV and VISA2 give 16-byte (two-key 3DES) values. GlobalPlatformPro only pairs
them with SCP02 (its SCP03 path accepts KDF3 templates only). cardlab returns
the 16 bytes unchanged; a caller that loads them onto an SCP03 card uses them as
AES-128 keys, and their check value is then the AES one (``kcv("AES", key)``),
not the 3DES one the GlobalPlatformPro vectors list.

>>> master = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
>>> kdd = bytes.fromhex("00010203040506070809")
>>> [kcv("DES", k).hex().upper() for k in diversify("EMV", master, kdd)]
['C33013', '6F4CA6', 'BB8179']
>>> [kcv("AES", k).hex().upper() for k in diversify("KDF3", master, kdd)]
['E79C05', 'D1BD77', '3FDE8C']
"""

from __future__ import annotations

from Crypto.Cipher import AES, DES3

from cardlab.cardspec.scp03 import aes_cmac  # OpenSSL's AES-CMAC (SP 800-38B)

#: key types in the diversification data
KEY_TYPES = {"ENC": 0x01, "MAC": 0x02, "DEK": 0x03}
SCHEMES = ("EMV", "VISA2", "KDF3")


def kcv(kind: str, key: bytes) -> bytes:
    """Key check value (GP Amendment D §7.2.2: AES-ECB(key, 01×16)[:3];
    DES: 3DES-ECB(key, 00×8)[:3])."""
    if kind == "AES":
        return bytes(AES.new(key, AES.MODE_ECB).encrypt(b"\x01" * 16)[:3])
    return bytes(DES3.new(key, DES3.MODE_ECB).encrypt(bytes(8))[:3])


def _des_template(part: bytes, key_type: int) -> bytes:
    return part + bytes((0xF0, key_type)) + part + bytes((0x0F, key_type))


def diversify_key(scheme: str, master: bytes, kdd: bytes, key_type: int) -> bytes:
    """One diversified key; ``key_type`` 1 ENC, 2 MAC, 3 DEK."""
    scheme = scheme.upper()
    if len(kdd) != 10:
        raise ValueError("key diversification data is 10 bytes")
    if scheme in ("EMV", "VISA2"):
        if len(master) not in (16, 24):
            raise ValueError(f"{scheme} diversification needs a 3DES master key")
        part = kdd[4:10] if scheme == "EMV" else kdd[0:2] + kdd[4:8]
        return bytes(DES3.new(master, DES3.MODE_ECB).encrypt(_des_template(part, key_type)))
    if scheme == "KDF3":
        if len(master) not in (16, 24, 32):
            raise ValueError("KDF3 diversification needs an AES master key")
        out = b""
        counter = 1
        while len(out) < len(master):
            data = bytes((counter, 0, 0, 0, key_type, 0)) + kdd
            out += aes_cmac(master, data)
            counter += 1
        return out[: len(master)]
    raise ValueError(f"unknown diversification scheme {scheme!r} (one of {', '.join(SCHEMES)})")


def diversify(scheme: str, master: bytes, kdd: bytes) -> tuple[bytes, bytes, bytes]:
    """The card's (ENC, MAC, DEK) from ``master`` and ``kdd`` by ``scheme``
    (``"EMV"``, ``"VISA2"`` or ``"KDF3"``, case-insensitive)."""
    enc, mac, dek = (diversify_key(scheme, master, kdd, t) for t in (1, 2, 3))
    return enc, mac, dek

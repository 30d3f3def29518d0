"""Key check values (SKELETON — the SCP03 helper completes diversification here)."""

from __future__ import annotations

from Crypto.Cipher import AES, DES3


def kcv(kind: str, key: bytes) -> bytes:
    """Key check value (GP Amendment D §7.2.2: AES-ECB(key, 01×16)[:3];
    DES: 3DES-ECB(key, 00×8)[:3])."""
    if kind == "AES":
        return AES.new(key, AES.MODE_ECB).encrypt(b"\x01" * 16)[:3]
    return DES3.new(key, DES3.MODE_ECB).encrypt(bytes(8))[:3]

"""Pure key functions, bytes in and bytes out: DES parity and check values
(GP Amendment D §7.2.2), the ICC master key derivation inputs (EMV 4.4 Book 2
A1.4, Options A and B), AES-CBC without padding, and re-encryption of card data
under a card key. No key store state.

>>> y = option_a_input("12345678901234567", "01")
>>> y.hex().upper()
'4567890123456701'
>>> option_b_input("12345678901234567", "01").hex().upper()
'4201892658095334'
"""

from __future__ import annotations

import hashlib
import re

from Crypto.Cipher import AES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cardlab.cardspec.emv import tdes_ecb_encrypt

from .model import KeyType, Option, TargetMode


def adjust_parity(key: bytes) -> bytes:
    """Give every byte odd parity (DES keys; the low bit of each byte).

    >>> adjust_parity(bytes.fromhex("0000FEFF")).hex().upper()
    '0101FEFE'
    """
    return bytes((b & 0xFE) | (((b >> 1).bit_count() + 1) & 1) for b in key)


def des_kcv(key: bytes) -> bytes:
    """3DES check value: 3DES-ECB(key, 00×8)[:3]."""
    return des3_ecb_encrypt(key, bytes(8))[:3]


def aes_kcv(key: bytes) -> bytes:
    """AES check value per GP Amendment D §7.2.2: AES-ECB(key, 01×16)[:3]."""
    return bytes(AES.new(key, AES.MODE_ECB).encrypt(b"\x01" * 16)[:3])


def symmetric_kcv(key_type: KeyType, key: bytes) -> bytes:
    """The check value for a key of ``key_type`` (DES3 or AES)."""
    return des_kcv(key) if key_type == "DES3" else aes_kcv(key)


def des3_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """3DES-ECB, two-key (K1 K2 K1) or three-key, without padding, through OpenSSL: a cipher
    context costs a fraction of pycryptodome's, which also adjusts the key's parity in Python
    (every ICC master key derivation and check value makes one). A degenerate key (equal halves:
    single DES) is computed as such, as EMV test keys may be."""
    if len(key) not in (16, 24):
        raise ValueError(f"a 3DES key is 16 or 24 bytes, not {len(key)}")
    return tdes_ecb_encrypt(key, data)  # cardlab.cardspec.emv: OpenSSL, K1 K2 K1


def _digits(value: str, what: str, low: int, high: int) -> str:
    if not re.fullmatch(r"[0-9]+", value) or not low <= len(value) <= high:
        raise ValueError(f"{what} must be {low}–{high} decimal digits")
    return value


def _psn_digits(psn: str | int | None) -> str:
    if psn is None:
        return "00"
    if isinstance(psn, int):
        if not 0 <= psn <= 99:
            raise ValueError("PAN sequence number must be 00–99")
        return f"{psn:02d}"
    return _digits(psn, "PAN sequence number", 2, 2)


def option_a_input(pan: str, psn: str | int | None) -> bytes:
    """EMV Book 2 A1.4.1 (Option A): the rightmost 16 digits of PAN ‖ PSN
    (left-padded with zeros) as 8 bytes of BCD."""
    data = _digits(pan, "PAN", 1, 19) + _psn_digits(psn)
    return bytes.fromhex(data[-16:].rjust(16, "0"))


def option_b_input(pan: str, psn: str | int | None) -> bytes:
    """EMV Book 2 A1.4.2 (Option B, PANs over 16 digits): SHA-1 over PAN ‖ PSN
    (an even number of BCD digits, left-padded with a zero), decimalised to 16
    digits (the digits of the hash in order, then its letters A–F as 0–5).
    A PAN of 16 digits or fewer uses Option A."""
    pan = _digits(pan, "PAN", 1, 19)
    if len(pan) <= 16:
        return option_a_input(pan, psn)
    data = pan + _psn_digits(psn)
    if len(data) % 2:
        data = "0" + data
    digest = hashlib.sha1(bytes.fromhex(data)).hexdigest()
    digits = "".join(c for c in digest if c.isdigit())
    letters = "".join(str("abcdef".index(c)) for c in digest if c in "abcdef")
    return bytes.fromhex((digits + letters)[:16])


def icc_mk_input(pan: str, psn: str | int | None, option: Option) -> bytes:
    """The 8-byte derivation input Y for ``option`` (``"A"`` or ``"B"``)."""
    if option == "A":
        return option_a_input(pan, psn)
    if option == "B":
        return option_b_input(pan, psn)
    raise ValueError(f"ICC master key derivation option must be 'A' or 'B', not {option!r}")


def icc_mk_block(y: bytes) -> bytes:
    """Y ‖ (Y ⊕ FF×8): encrypting this 16-byte block with the IMK in ECB gives
    ZL ‖ ZR, the ICC master key before parity adjustment (EMV Book 2 A1.4.1)."""
    return y + bytes(b ^ 0xFF for b in y)


def aes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """AES-CBC without padding (``data`` a multiple of 16 bytes), through OpenSSL (a cipher
    context costs a fraction of pycryptodome's; a card's perso unseals a dozen values)."""
    check_blocks(data, 16, "data to encrypt")
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """Inverse of :func:`aes_cbc_encrypt`."""
    check_blocks(data, 16, "data to decrypt")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def reencrypt(clear: bytes, target_key: bytes, target: TargetMode) -> bytes:
    """Encrypt card data under a card key: ``"DES3-ECB"`` (EMV CPS with a
    SCP02/3DES DEK) or ``"AES-CBC"`` (SCP03 DEK, IV zero). No padding."""
    if target == "DES3-ECB":
        check_blocks(clear, 8, "data to re-encrypt")
        return des3_ecb_encrypt(target_key, clear)
    if target == "AES-CBC":
        return aes_cbc_encrypt(target_key, clear)
    raise ValueError(f"unknown re-encryption mode {target!r} (DES3-ECB or AES-CBC)")


def check_blocks(data: bytes, size: int, what: str) -> None:
    if not data or len(data) % size:
        raise ValueError(f"{what} must be a non-empty multiple of {size} bytes, not {len(data)}")

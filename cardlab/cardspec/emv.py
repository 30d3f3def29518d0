"""EMV symmetric cryptography (EMV 4.3 Book 2 Annex A1, §8 and §9), card and issuer side.

Pure functions over bytes: ICC master key derivation (A1.4), session keys (A1.3
and the scheme variants), the ISO/IEC 9797-1 MAC algorithm 3 that every EMV
cryptogram uses (A1.2), ARPC methods 1 and 2 (§8.2.1, §8.2.2), issuer script
secure messaging (§9.2 integrity, §9.3 confidentiality) and PIN blocks for
PIN CHANGE/UNBLOCK.

Keys are double-length (16-byte) DES keys, 3DES is the two-key EDE of ISO/IEC
18033-3, computed by OpenSSL (through ``cryptography``); keys whose halves are equal
(test keys such as 1234567812345678…) work as they do in HSMs: as single DES.

Known answers (pyemv ``tests/test_cvn_hsm.py``, see ``vectors/emv_crypto.json``):

>>> imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> icc_mk_option_a(imk, "12345678901234567", "01").hex().upper()
'73AD54688CEF2934B0979857E3C719F1'
>>> mk = icc_mk_option_a(imk, "1234567890123456", "00")
>>> kcv(mk, 2).hex().upper()
'BAB0'
>>> data = bytes.fromhex("000000004000" "000000000000" "0124" "8000048000" "0124"
...                      "191105" "01" "52BF4585" "1800" "001C" "03A06010")
>>> arqc = retail_mac(mk, data, padding=1)  # Visa CVN 10: no session key, padding method 1
>>> arqc.hex().upper()
'29CCA15AE665FA2E'
>>> arpc_method1(mk, arqc, bytes.fromhex("3030")).hex().upper()
'28993816AFAE4AEB'
"""

from __future__ import annotations

import hashlib
import hmac

from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # cryptography 43 and later keep 3DES here
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = algorithms.TripleDES  # type: ignore[misc]

__all__ = [
    "BLOCK",
    "ac_session_key_common",
    "adjust_parity",
    "arpc_method1",
    "arpc_method2",
    "common_session_key",
    "decipher_cbc",
    "decipher_visa",
    "encipher_cbc",
    "encipher_visa",
    "icc_mk_option_a",
    "icc_mk_option_b",
    "kcv",
    "mastercard_session_key",
    "pad_method1",
    "pad_method2",
    "parse_plaintext_pin_block",
    "parse_vis_pin_block",
    "plaintext_pin_block",
    "retail_mac",
    "script_mac",
    "tdes_cbc_decrypt",
    "tdes_cbc_encrypt",
    "tdes_ecb_decrypt",
    "tdes_ecb_encrypt",
    "unpad_method2",
    "verify_script_mac",
    "vis_pin_block",
    "visa_sm_session_key",
]

BLOCK = 8


def _check_key(key: bytes) -> None:
    # never echo the key itself in an exception message
    if len(key) not in (16, 24):
        raise ValueError("a double- or triple-length DES key is required")


# --------------------------------------------------------------------------- DES basics


def adjust_parity(key: bytes) -> bytes:
    """Set each byte to odd parity by flipping its least significant bit
    (DES key parity, FIPS 46-3; EMV A1.3.1 and A1.4 apply it to derived keys).

    >>> adjust_parity(bytes.fromhex("0001FEFF")).hex().upper()
    '0101FEFE'
    """
    return bytes(b ^ (1 - b.bit_count() % 2) for b in key)


def _ede(key: bytes) -> Any:
    """OpenSSL's 3DES-EDE for a double-length key (K1 K2 K1) or a triple-length one. A cipher
    context costs a fraction of single-DES objects chained in Python, and OpenSSL takes keys
    whose parts are equal (single DES) as HSMs do."""
    _check_key(key)
    return _TripleDES(bytes(key) + bytes(key[:8]) if len(key) == 16 else bytes(key))


def _ecb(key: bytes, data: bytes, encrypt: bool) -> bytes:
    if len(data) % BLOCK:
        raise ValueError("3DES data must be a multiple of 8 bytes")
    cipher = Cipher(_ede(key), modes.ECB())
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """3DES-EDE ECB encryption (ISO/IEC 18033-3), data a multiple of 8 bytes.

    >>> tdes_ecb_encrypt(bytes(range(16)), bytes(8)).hex().upper()
    'DDADA161E8D79673'
    """
    return _ecb(key, data, True)


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """3DES-EDE ECB decryption, the inverse of :func:`tdes_ecb_encrypt`.

    >>> tdes_ecb_decrypt(bytes(range(16)), bytes.fromhex("DDADA161E8D79673")) == bytes(8)
    True
    """
    return _ecb(key, data, False)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def tdes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    """3DES-EDE CBC encryption with the given ICV (zeros by default)."""
    if len(data) % BLOCK:
        raise ValueError("3DES data must be a multiple of 8 bytes")
    enc = Cipher(_ede(key), modes.CBC(bytes(iv))).encryptor()
    return enc.update(data) + enc.finalize()


def tdes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    """3DES-EDE CBC decryption, the inverse of :func:`tdes_cbc_encrypt`.

    >>> k = bytes(range(16))
    >>> tdes_cbc_decrypt(k, tdes_cbc_encrypt(k, bytes(range(24)))) == bytes(range(24))
    True
    """
    if len(data) % BLOCK:
        raise ValueError("3DES data must be a multiple of 8 bytes")
    dec = Cipher(_ede(key), modes.CBC(bytes(iv))).decryptor()
    return dec.update(data) + dec.finalize()


# --------------------------------------------------------------------------- padding and MAC


def pad_method1(data: bytes, block: int = BLOCK) -> bytes:
    """ISO/IEC 9797-1 padding method 1: zeros up to a block boundary; empty data
    becomes one zero block (EMV Book 2 A1.2.1, "Visa padding" of CVN 10).

    >>> pad_method1(b"\\x01").hex(), pad_method1(b"").hex(), pad_method1(bytes(8)).hex()
    ('0100000000000000', '0000000000000000', '0000000000000000')
    """
    if not data:
        return bytes(block)
    return data + bytes(-len(data) % block)


def pad_method2(data: bytes, block: int = BLOCK) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 80 then zeros (EMV Book 2 A1.2.1, §9.2.1).

    >>> pad_method2(bytes(8)).hex()
    '00000000000000008000000000000000'
    """
    data += b"\x80"
    return data + bytes(-len(data) % block)


def unpad_method2(data: bytes) -> bytes:
    """Remove ISO/IEC 9797-1 padding method 2; ValueError when it is malformed.

    >>> unpad_method2(bytes.fromhex("0102800000000000")).hex()
    '0102'
    """
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise ValueError("bad padding")
    return stripped[:-1]


def retail_mac(key: bytes, data: bytes, *, padding: int = 2, length: int = 8) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC") with DES, zero ICV:
    single-DES CBC under the left key half, then decrypt with the right half
    and encrypt with the left on the last block (EMV Book 2 A1.2.1).

    ``padding`` is the ISO/IEC 9797-1 padding method, 1 or 2.

    >>> k = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> retail_mac(k, bytes.fromhex("0102030405060708090A"), length=4).hex().upper()
    'CC324990'
    """
    _check_key(key)
    if padding == 1:
        padded = pad_method1(data)
    elif padding == 2:
        padded = pad_method2(data)
    else:
        raise ValueError("padding method must be 1 or 2")
    if not 4 <= length <= 8:
        raise ValueError("MAC length is 4 to 8 bytes")
    # single-DES CBC under KL up to the last block, whose E(KL) D(KR) E(KL) is one 3DES-EDE
    # encryption under KL KR of the last block chained: two OpenSSL contexts
    kl = bytes(key[:8])
    chain = bytes(BLOCK)
    if len(padded) > BLOCK:
        left = Cipher(_TripleDES(kl * 3), modes.CBC(bytes(BLOCK))).encryptor()
        chain = left.update(padded[:-BLOCK])[-BLOCK:]
    return tdes_ecb_encrypt(bytes(key[:16]), _xor(padded[-BLOCK:], chain))[:length]


def kcv(key: bytes, length: int = 3) -> bytes:
    """Key check value of a DES key: 3DES-ECB(key, 00×8), leftmost ``length`` bytes.

    >>> kcv(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")).hex().upper()
    '08D7B4'
    """
    return tdes_ecb_encrypt(key, bytes(BLOCK))[:length]


# --------------------------------------------------------------------------- key derivation


def _digits(value: str, what: str) -> str:
    if not value.isdigit():
        raise ValueError(f"{what} must be decimal digits")
    return value


def _option_a_y(pan: str, psn: str) -> bytes:
    # A1.4.1: the 16 rightmost digits of PAN ‖ PSN (left-padded with zeros)
    return bytes.fromhex((pan + psn)[-16:].zfill(16))


def icc_mk_option_a(imk: bytes, pan: str, psn: str = "00") -> bytes:
    """ICC master key, EMV Book 2 A1.4.1 (Option A).

    Y = the 16 rightmost digits of PAN ‖ PSN, zero-padded on the left;
    MK = 3DES(IMK)[Y] ‖ 3DES(IMK)[Y ⊕ FF…FF], with odd parity.

    >>> imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> icc_mk_option_a(imk, "12345678901234567", "01").hex().upper()
    '73AD54688CEF2934B0979857E3C719F1'
    """
    psn = _digits(psn or "00", "PSN")
    y = _option_a_y(_digits(pan, "PAN"), psn)
    return adjust_parity(tdes_ecb_encrypt(imk, y + _xor(y, b"\xff" * BLOCK)))


def icc_mk_option_b(imk: bytes, pan: str, psn: str = "00") -> bytes:
    """ICC master key, EMV Book 2 A1.4.2 (Option B), for PANs longer than 16 digits.

    X = PAN ‖ PSN (left-padded with one 0 to an even number of digits);
    Y = the first 16 decimal digits of SHA-1(X) in hex, completed when fewer
    than 16 by the hex letters a–f decimalised (a→0 … f→5) in order; then as
    Option A. A PAN of 16 digits or fewer uses Option A.

    >>> imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> icc_mk_option_b(imk, "12345678901234567", "01").hex().upper()
    'AD406D7F6D7570916D75E5DCAB8CF737'
    """
    pan = _digits(pan, "PAN")
    psn = _digits(psn or "00", "PSN")
    if len(pan) <= 16:
        return icc_mk_option_a(imk, pan, psn)
    x = pan + psn
    digest = hashlib.sha1(bytes.fromhex(x.zfill(len(x) + len(x) % 2))).hexdigest()
    y = "".join(c for c in digest if c.isdigit())[:16]
    if len(y) < 16:
        letters = "".join(str("abcdef".index(c)) for c in digest if c in "abcdef")
        y += letters[: 16 - len(y)]
    yb = bytes.fromhex(y)
    return adjust_parity(tdes_ecb_encrypt(imk, yb + _xor(yb, b"\xff" * BLOCK)))


def common_session_key(mk: bytes, r: bytes) -> bytes:
    """EMV common session key derivation, Book 2 A1.3.1.

    SK = 3DES(MK)[R0 R1 F0 R3 … R7] ‖ 3DES(MK)[R0 R1 0F R3 … R7], odd parity;
    R is 8 bytes (ATC ‖ 00×6 for application cryptograms, the AC for secure
    messaging).

    >>> mk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # pyemv kd.derive_common_sk
    >>> common_session_key(mk, bytes.fromhex("001C000000000000")).hex().upper()
    'E9FB384AF807B940FEDCEA613461B0C4'
    """
    if len(r) != BLOCK:
        raise ValueError("diversification value R must be 8 bytes")
    left = r[:2] + b"\xf0" + r[3:]
    right = r[:2] + b"\x0f" + r[3:]
    return adjust_parity(tdes_ecb_encrypt(mk, left + right))


def _atc(atc: int) -> bytes:
    if not 0 <= atc <= 0xFFFF:
        raise ValueError("ATC is two bytes")
    return atc.to_bytes(2, "big")


def ac_session_key_common(mk: bytes, atc: int) -> bytes:
    """AC session key with R = ATC ‖ 00×6 (Book 2 A1.3.1; Visa CVN 18/22, M/Chip CVN 20/21)."""
    return common_session_key(mk, _atc(atc) + bytes(6))


def mastercard_session_key(mk: bytes, atc: int, un: bytes) -> bytes:
    """M/Chip "Mastercard proprietary SKD": R = ATC ‖ 00 00 ‖ UN (9F37, 4 bytes),
    then the A1.3.1 derivation (M/Chip 4 CVN 16/17).

    jPOS ``JCESecurityModuleTest``: IMK 12345678×4, PAN 1234567890123456/00,
    ATC 3456, UN 11111111:

    >>> mk = icc_mk_option_a(bytes.fromhex("12345678" * 4), "1234567890123456", "00")
    >>> sk = mastercard_session_key(mk, 0x3456, bytes.fromhex("11111111"))
    >>> data = bytes.fromhex("000000010000" "000000001000" "0840" "0000001080" "0840" "980704" "00"
    ...                      "11111111" "5800" "3456" "A08003242000")
    >>> retail_mac(sk, data).hex().upper()
    'AC8074C9E62EE6EF'
    """
    if len(un) != 4:
        raise ValueError("unpredictable number must be 4 bytes")
    return common_session_key(mk, _atc(atc) + b"\x00\x00" + un)


def visa_sm_session_key(mk: bytes, atc: int) -> bytes:
    """Visa secure-messaging session key (VIS 1.5 Appendix B, as pyemv
    ``derive_visa_sm_sk``): left = MK_L ⊕ (00×6 ‖ ATC), right = MK_R ⊕ (00×6 ‖ ¬ATC),
    odd parity.

    >>> mk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> visa_sm_session_key(mk, 0x001C).hex().upper()
    '0123456789ABCDF2FEDCBA987654CDF2'
    """
    a = _atc(atc)
    left = _xor(mk[:8], bytes(6) + a)
    right = _xor(mk[8:16], bytes(6) + _xor(a, b"\xff\xff"))
    return adjust_parity(left + right)


# --------------------------------------------------------------------------- issuer authentication


def arpc_method1(key: bytes, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1, Book 2 §8.2.1: 3DES(SK)[ARQC ⊕ (ARC ‖ 00×6)], 8 bytes.

    >>> mk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> arpc_method1(mk, bytes(8), b"00").hex().upper()
    '1DF065D09365E421'
    """
    if len(arqc) != BLOCK or len(arc) != 2:
        raise ValueError("ARQC is 8 bytes and ARC 2 bytes")
    return tdes_ecb_encrypt(key, _xor(arqc, arc + bytes(6)))


def arpc_method2(key: bytes, arqc: bytes, csu: bytes, prop: bytes = b"") -> bytes:
    """ARPC method 2, Book 2 §8.2.2: MAC algorithm 3, padding method 2, over
    ARQC ‖ CSU ‖ proprietary authentication data (0–8 bytes); 4 bytes.

    >>> sk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    >>> len(arpc_method2(sk, bytes(8), bytes(4)))
    4
    """
    if len(arqc) != BLOCK or len(csu) != 4 or len(prop) > 8:
        raise ValueError("ARQC is 8 bytes, CSU 4 bytes, proprietary data 0-8 bytes")
    return retail_mac(key, arqc + csu + prop, padding=2, length=4)


# --------------------------------------------------------------------------- issuer scripts


def script_mac(key: bytes, header: bytes, atc: int, arqc: bytes, data: bytes = b"", length: int = 8) -> bytes:
    """Issuer script command MAC, Book 2 §9.2.1 (format 2, as Visa and M/Chip
    and pyemv use it): MAC algorithm 3, padding method 2, over
    CLA INS P1 P2 Lc ‖ ATC ‖ ARQC ‖ command data (without the MAC).

    ``header`` is the 5 bytes CLA INS P1 P2 Lc, Lc counting the MAC.

    >>> from cardlab.cardspec.emv import visa_sm_session_key as vsk
    >>> mk_smi = icc_mk_option_a(bytes.fromhex("FEDCBA98765432100123456789ABCDEF"), "1234567890123456")
    >>> arqc = bytes.fromhex("29CCA15AE665FA2E")
    >>> script_mac(vsk(mk_smi, 0x1C), bytes.fromhex("8418000008"), 0x1C, arqc).hex().upper()
    'DB56BA60087CEFD3'
    """
    if len(header) != 5:
        raise ValueError("header is CLA INS P1 P2 Lc")
    return retail_mac(key, header + _atc(atc) + arqc + data, padding=2, length=length)


def verify_script_mac(key: bytes, header: bytes, data: bytes, atc: int, arqc: bytes, mac: bytes) -> bool:
    """Check a script command MAC (4–8 bytes) in constant time."""
    if not 4 <= len(mac) <= 8:
        return False
    return hmac.compare_digest(script_mac(key, header, atc, arqc, data, len(mac)), mac)


def encipher_visa(key: bytes, data: bytes) -> bytes:
    """Visa script confidentiality (VIS 1.5, pyemv ``EncryptionType.VISA``):
    3DES-ECB of pad2(L ‖ data), L the data length in one byte."""
    return tdes_ecb_encrypt(key, pad_method2(bytes((len(data),)) + data))


def decipher_visa(key: bytes, enc: bytes) -> bytes:
    """Inverse of :func:`encipher_visa`; ValueError when the format is wrong."""
    plain = unpad_method2(tdes_ecb_decrypt(key, enc))
    if not plain or plain[0] != len(plain) - 1:
        raise ValueError("bad enciphered data length")
    return plain[1:]


def encipher_cbc(key: bytes, data: bytes, *, always_pad: bool = False) -> bytes:
    """Book 2 §9.3 confidentiality: 3DES-CBC, zero ICV. M/Chip (pyemv
    ``EncryptionType.MASTERCARD``) pads with method 2 only when the data is not a
    multiple of 8; the EMV variant (``always_pad``) always pads."""
    if always_pad or len(data) % BLOCK:
        data = pad_method2(data)
    return tdes_cbc_encrypt(key, data)


def decipher_cbc(key: bytes, enc: bytes, *, padded: bool = False) -> bytes:
    """Inverse of :func:`encipher_cbc`; ``padded`` removes padding method 2."""
    plain = tdes_cbc_decrypt(key, enc)
    return unpad_method2(plain) if padded else plain


# --------------------------------------------------------------------------- PIN blocks


def _pin(pin: str) -> str:
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("PIN must be 4 to 12 digits")
    return pin


def plaintext_pin_block(pin: str) -> bytes:
    """EMV plaintext offline PIN block = ISO 9564-1 format 2 (Book 3 §6.5.12):
    2 ‖ N ‖ PIN ‖ F padding, 8 bytes.

    >>> plaintext_pin_block("1234").hex().upper()
    '241234FFFFFFFFFF'
    """
    p = _pin(pin)
    return bytes.fromhex(f"2{len(p):X}" + p + "F" * (14 - len(p)))


def parse_plaintext_pin_block(block: bytes) -> str:
    """PIN digits of an ISO 9564 format 2 block; ValueError when malformed."""
    h = block.hex().upper()
    if len(block) != 8 or h[0] != "2":
        raise ValueError("not a format 2 PIN block")
    n = int(h[1], 16)
    if not 4 <= n <= 12 or not h[2 : 2 + n].isdigit() or h[2 + n :] != "F" * (14 - n):
        raise ValueError("not a format 2 PIN block")
    return h[2 : 2 + n]


def vis_pin_block(mk_ac: bytes, pin: str, current_pin: str | None = None) -> bytes:
    """VIS PIN block for PIN CHANGE/UNBLOCK (VIS 1.5, as pyemv ``format_vis_pin_block``):
    (00×4 ‖ MK-AC[4:8]) ⊕ (N ‖ PIN ‖ F padding), further XORed with the current
    PIN padded with zeros to 16 digits when the current PIN is supplied (P2 = 01).

    >>> vis_pin_block(bytes(16), "1234").hex().upper()
    '041234FFFFFFFFFF'
    """
    p = _pin(pin)
    block = _xor(bytes(4) + mk_ac[4:8], bytes((len(p),)) + bytes.fromhex(p + "F" * (14 - len(p))))
    if current_pin is not None:
        block = _xor(block, bytes.fromhex(_pin(current_pin).ljust(16, "0")))
    return block


def parse_vis_pin_block(mk_ac: bytes, block: bytes, current_pin: str | None = None) -> str:
    """New PIN digits of a VIS PIN block (inverse of :func:`vis_pin_block`)."""
    if len(block) != 8:
        raise ValueError("a PIN block is 8 bytes")
    if current_pin is not None:
        block = _xor(block, bytes.fromhex(_pin(current_pin).ljust(16, "0")))
    plain = _xor(block, bytes(4) + mk_ac[4:8])
    n, h = plain[0], plain[1:].hex().upper()
    if not 4 <= n <= 12 or not h[:n].isdigit() or h[n:] != "F" * (14 - n):
        raise ValueError("not a VIS PIN block")
    return h[:n]

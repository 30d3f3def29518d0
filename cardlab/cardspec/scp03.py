"""GlobalPlatform Secure Channel Protocol '03' (GP Card Spec 2.3 Amendment D).

Pure functions (bytes in, bytes out) shared by the emulated card
(:mod:`cardlab.emulator.gp.scp03`) and the host side (:class:`HostSession`, used by the
tests, the demo and the personalizer).

Section numbers refer to Amendment D v1.1.2 / v1.2:

* §4.1.5 data derivation: NIST SP 800-108 KDF in counter mode, PRF = AES-CMAC
  (full 16-byte output); derivation data = 11 × '00' ‖ constant ‖ '00' ‖
  L (2 bytes, in bits) ‖ i (1 byte counter) ‖ context;
* §6.2.1 session keys S-ENC, S-MAC, S-RMAC (context = host ‖ card challenge);
* §6.2.2 card challenge (pseudo-random: context = sequence counter ‖ SD AID)
  and card/host authentication cryptograms;
* §6.2.4 C-MAC with the MAC chaining value; §6.2.5 R-MAC;
* §6.2.6 command data encryption (ICV = AES(S-ENC, counter));
* §6.2.7 response data encryption (ICV = AES(S-ENC, '80' ‖ counter));
* §5.1 table 5-1, the ``i`` parameter, and §7.1.2 table 7-3, the security level.

Known-answer vectors (``vectors/scp03.json``) come from suma12/asterix
``asterix/SCP03.py`` and osmocom pySim ``tests/unittests/test_globalplatform.py``.

>>> enc = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
>>> aid = bytes.fromhex("A000000018434D08090A0B0C000000")
>>> pseudo_random_challenge(enc, 0x2A, aid).hex().upper()
'A3F5F144D19BE66E'
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from Crypto.Cipher import AES
from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms
from cryptography.hazmat.primitives.ciphers import modes as _modes
from cryptography.hazmat.primitives.cmac import CMAC as _CMAC

# -- constants ---------------------------------------------------------------------

#: derivation constants (Amendment D §4.1.5 table 4-1)
DERIVE_CARD_CRYPTOGRAM = 0x00
DERIVE_HOST_CRYPTOGRAM = 0x01
DERIVE_CARD_CHALLENGE = 0x02
DERIVE_S_ENC = 0x04
DERIVE_S_MAC = 0x06
DERIVE_S_RMAC = 0x07

#: ``i`` parameter bits (Amendment D §5.1 table 5-1)
I_S16 = 0x01  # b1: S16 mode (16-byte challenges, cryptograms and MACs), v1.2
I_PSEUDO_RANDOM = 0x10  # b5: pseudo-random card challenge (else random)
I_RMAC = 0x20  # b6: R-MAC support
I_RENC = 0x40  # b7: R-ENC support (with R-MAC)

#: security level bits (Amendment D §7.1.2.1 table 7-3; GP Card Spec §10.6)
LEVEL_CMAC = 0x01
LEVEL_CDEC = 0x02
LEVEL_RMAC = 0x10
LEVEL_RENC = 0x20
#: the P1 values EXTERNAL AUTHENTICATE accepts (table 7-3): '00' no secure
#: messaging, '01' C-MAC, '03' C-DEC+C-MAC, '11' C-MAC+R-MAC,
#: '13' C-DEC+C-MAC+R-MAC, '33' C-DEC+R-ENC+C-MAC+R-MAC
SECURITY_LEVELS = frozenset({0x00, 0x01, 0x03, 0x11, 0x13, 0x33})

BLOCK = 16
AES_KEY_LENGTHS = (16, 24, 32)


class ScpError(Exception):
    """A secure channel failure on the host side; ``sw`` is the card's status
    word when the card refused, else ``None``. Never carries key material."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message if sw is None else f"{message} (SW {sw:04X})")
        self.sw = sw


# -- primitives -----------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if len(key) not in AES_KEY_LENGTHS:
        raise ValueError("SCP03 keys are AES-128/192/256 keys")


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), full 16 bytes. OpenSSL's (through
    ``cryptography``) is about 15x faster here than pycryptodome's, and every
    secured APDU computes one or two."""
    mac = _CMAC(_algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def kdf(key: bytes, constant: int, context: bytes, bits: int) -> bytes:
    """Amendment D §4.1.5 data derivation (SP 800-108 counter mode, AES-CMAC).

    >>> kdf(bytes(16), DERIVE_S_ENC, b"", 256).__len__()
    32
    """
    _check_key(key)
    if bits <= 0 or bits % 8 or bits > 0xFFFF:
        raise ValueError("output length must be a positive number of bytes")
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        data = bytes(11) + bytes((constant, 0)) + bits.to_bytes(2, "big") + bytes((counter,)) + context
        out += aes_cmac(key, data)
        counter += 1
    return out[: bits // 8]


@dataclass(frozen=True)
class SessionKeys:
    """S-ENC, S-MAC, S-RMAC of one session (Amendment D §6.2.1)."""

    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    rmac: bytes = field(repr=False)


def derive_session_keys(enc: bytes, mac: bytes, host_challenge: bytes, card_challenge: bytes) -> SessionKeys:
    """Session keys from the static ENC and MAC keys (§6.2.1); each is as long
    as its static key.

    >>> k = derive_session_keys(bytes(16), bytes(32), bytes(8), bytes(8))
    >>> len(k.enc), len(k.mac), len(k.rmac)
    (16, 32, 32)
    """
    context = host_challenge + card_challenge
    return SessionKeys(
        kdf(enc, DERIVE_S_ENC, context, len(enc) * 8),
        kdf(mac, DERIVE_S_MAC, context, len(mac) * 8),
        kdf(mac, DERIVE_S_RMAC, context, len(mac) * 8),
    )


def card_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes, length: int = 8) -> bytes:
    """Card authentication cryptogram (§6.2.2.2); ``length`` 8 (S8) or 16 (S16)."""
    return kdf(s_mac, DERIVE_CARD_CRYPTOGRAM, host_challenge + card_challenge, length * 8)


def host_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes, length: int = 8) -> bytes:
    """Host authentication cryptogram (§6.2.2.3)."""
    return kdf(s_mac, DERIVE_HOST_CRYPTOGRAM, host_challenge + card_challenge, length * 8)


def pseudo_random_challenge(enc: bytes, sequence_counter: int, sd_aid: bytes, length: int = 8) -> bytes:
    """Pseudo-random card challenge (§6.2.2.1): KDF(static ENC, '02', context =
    sequence counter (3 bytes) ‖ AID of the security domain)."""
    if not 0 <= sequence_counter <= 0xFFFFFF:
        raise ValueError("the sequence counter is 3 bytes")
    return kdf(enc, DERIVE_CARD_CHALLENGE, sequence_counter.to_bytes(3, "big") + sd_aid, length * 8)


def pad80(data: bytes, block: int = BLOCK) -> bytes:
    """ISO/IEC 9797-1 padding method 2 ('80' then '00' to a block boundary).

    >>> pad80(b"\\x01").hex()
    '01800000000000000000000000000000'
    """
    n = len(data) + 1
    return data + b"\x80" + bytes(-n % block)


def unpad80(data: bytes) -> bytes:
    """Remove ISO/IEC 9797-1 method 2 padding; :class:`ValueError` if absent."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise ValueError("bad padding")
    return stripped[:-1]


@functools.lru_cache(maxsize=8)
def _ecb(key: bytes) -> Any:
    """An AES-ECB cipher object for ``key``, made once per session key and reused (ECB keeps no
    state between calls); the few most recent sessions' only."""
    return AES.new(key, AES.MODE_ECB)


def command_icv(s_enc: bytes, counter: int) -> bytes:
    """ICV for command encryption (§6.2.6): AES-ECB(S-ENC, counter as 16 bytes)."""
    return bytes(_ecb(s_enc).encrypt(counter.to_bytes(BLOCK, "big")))


def response_icv(s_enc: bytes, counter: int) -> bytes:
    """ICV for response encryption (§6.2.7): as the command's but with the most
    significant byte of the counter block set to '80'."""
    block = b"\x80" + counter.to_bytes(BLOCK, "big")[1:]
    return bytes(_ecb(s_enc).encrypt(block))


# AES-CBC through OpenSSL: a cipher context costs less than half of pycryptodome's, and every
# encrypted command and response makes one
def _cbc_encrypt(key: bytes, icv: bytes, data: bytes) -> bytes:
    if len(data) % BLOCK:
        raise ValueError("plaintext is not a whole number of blocks")
    enc = _Cipher(_algorithms.AES(key), _modes.CBC(icv)).encryptor()
    return enc.update(data) + enc.finalize()


def _cbc_decrypt(key: bytes, icv: bytes, data: bytes) -> bytes:
    if not data or len(data) % BLOCK:
        raise ValueError("ciphertext is not a whole number of blocks")
    dec = _Cipher(_algorithms.AES(key), _modes.CBC(icv)).decryptor()
    return dec.update(data) + dec.finalize()


def encrypt_command_data(s_enc: bytes, counter: int, data: bytes) -> bytes:
    """C-DECRYPTION, host side (§6.2.6): pad, AES-CBC under S-ENC with the counter ICV."""
    return _cbc_encrypt(s_enc, command_icv(s_enc, counter), pad80(data))


def decrypt_command_data(s_enc: bytes, counter: int, data: bytes) -> bytes:
    """C-DECRYPTION, card side; :class:`ValueError` on bad length or padding."""
    return unpad80(_cbc_decrypt(s_enc, command_icv(s_enc, counter), data))


def encrypt_response_data(s_enc: bytes, counter: int, data: bytes) -> bytes:
    """R-ENCRYPTION, card side (§6.2.7)."""
    return _cbc_encrypt(s_enc, response_icv(s_enc, counter), pad80(data))


def decrypt_response_data(s_enc: bytes, counter: int, data: bytes) -> bytes:
    """R-ENCRYPTION, host side; :class:`ValueError` on bad length or padding."""
    return unpad80(_cbc_decrypt(s_enc, response_icv(s_enc, counter), data))


def dek_encrypt(dek: bytes, data: bytes) -> bytes:
    """Encrypt sensitive data (key components for PUT KEY, encrypted STORE DATA)
    under the static DEK: AES-CBC with a zero ICV (GP Card Spec §11.8.2.3 with
    Amendment D; GlobalPlatformPro and pySim do the same). ``data`` must be a
    whole number of blocks: the caller pads as its command requires."""
    _check_key(dek)
    if len(data) % BLOCK:
        raise ValueError("data to encrypt under the DEK must be a multiple of 16 bytes")
    return _cbc_encrypt(dek, bytes(BLOCK), data)


def dek_decrypt(dek: bytes, data: bytes) -> bytes:
    """Inverse of :func:`dek_encrypt` (no padding removed)."""
    _check_key(dek)
    return _cbc_decrypt(dek, bytes(BLOCK), data)


# -- CLA handling (§6.2.4) ---------------------------------------------------------


def is_further_interindustry(cla: int) -> bool:
    return bool(cla & 0x40)


def secured_cla(cla: int) -> int:
    """CLA with the secure messaging indication set (b3, or b6 for the further
    interindustry classes coding channels 4..19)."""
    return cla | 0x20 if is_further_interindustry(cla) else cla | 0x04


def plain_cla(cla: int) -> int:
    """CLA with the secure messaging indication cleared."""
    return cla & ~0x20 & 0xFF if is_further_interindustry(cla) else cla & ~0x0C & 0xFF


def mac_cla(cla: int) -> int:
    """CLA as it enters the C-MAC (§6.2.4): logical channel number set to zero,
    b4 = 0 and b3 = 1 (b6 = 1 for the further interindustry classes)."""
    return (cla & 0xF0) | 0x20 if is_further_interindustry(cla) else (cla & 0xF0) | 0x04


def with_channel(cla: int, channel: int) -> int:
    """CLA coding ``channel`` (ISO 7816-4 §5.4.1), keeping b8 (proprietary)."""
    if not 0 <= channel <= 19:
        raise ValueError("logical channel out of range")
    b8 = cla & 0x80
    if channel < 4:
        sm = 0x04 if (cla & 0x20 if is_further_interindustry(cla) else cla & 0x04) else 0
        return b8 | sm | channel
    sm = 0x20 if (cla & 0x20 if is_further_interindustry(cla) else cla & 0x04) else 0
    return b8 | 0x40 | sm | (channel - 4)


def encode_lc(n: int, extended: bool) -> bytes:
    return b"\x00" + n.to_bytes(2, "big") if extended else bytes((n,))


def c_mac(s_mac: bytes, chaining_value: bytes, header: bytes, lc_field: bytes, data: bytes) -> bytes:
    """The full 16-byte C-MAC (= the next MAC chaining value) over
    chaining value ‖ CLA' INS P1 P2 ‖ Lc ‖ data (§6.2.4); ``header`` carries
    the CLA already converted with :func:`mac_cla`. S8 sends the first 8 bytes."""
    return aes_cmac(s_mac, chaining_value + header + lc_field + data)


def r_mac(s_rmac: bytes, chaining_value: bytes, data: bytes, sw: int) -> bytes:
    """The full 16-byte R-MAC over chaining value ‖ response data ‖ SW (§6.2.5)."""
    return aes_cmac(s_rmac, chaining_value + data + sw.to_bytes(2, "big"))


# -- host side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticKeys:
    """A static SCP03 key set (ENC, MAC, DEK) and its key version number."""

    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    dek: bytes = field(repr=False)
    kvn: int = 0x30

    def __post_init__(self) -> None:
        for key in (self.enc, self.mac, self.dek):
            _check_key(key)
        if not 0 <= self.kvn <= 0xFF:
            raise ValueError("key version number is one byte")


@dataclass(frozen=True)
class _Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: bytes  # the Le field as it was coded (b"" when absent)
    extended: bool


def _split_apdu(apdu: bytes) -> _Apdu:
    """Split a command APDU into its fields (ISO 7816-4 §5.2), keeping Le's coding."""
    if len(apdu) < 4:
        raise ValueError("command APDU shorter than a header")
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:
        return _Apdu(cla, ins, p1, p2, b"", b"", False)
    if len(body) == 1:
        return _Apdu(cla, ins, p1, p2, b"", body, False)
    if body[0]:
        lc = body[0]
        if len(body) in (1 + lc, 2 + lc):
            return _Apdu(cla, ins, p1, p2, body[1 : 1 + lc], body[1 + lc :], False)
        raise ValueError("Lc does not match the data length")
    if len(body) == 3:
        return _Apdu(cla, ins, p1, p2, b"", body[1:], True)
    lc = int.from_bytes(body[1:3], "big")
    if lc and len(body) in (3 + lc, 5 + lc):
        return _Apdu(cla, ins, p1, p2, body[3 : 3 + lc], body[3 + lc :], True)
    raise ValueError("extended Lc does not match the data length")


class HostSession:
    """The off-card entity's side of an SCP03 session over ``transmit``.

    ``transmit`` takes a command APDU and returns the response APDU (data ‖ SW).
    """

    def __init__(self, transmit: Callable[[bytes], bytes], keys: StaticKeys, *, channel: int = 0) -> None:
        self.transmit = transmit
        self.keys = keys
        self.channel = channel
        self.level = 0
        self.authenticated = False
        self.i = 0
        self.mac_length = 8
        self.kdd = b""
        self.key_version = 0
        self.sequence_counter: int | None = None
        self._keys: SessionKeys | None = None
        self._chaining = bytes(BLOCK)
        self._counter = 0

    # -- opening -----------------------------------------------------------------
    def open(self, level: int, host_challenge: bytes | None = None, key_version: int | None = None) -> None:
        """INITIALIZE UPDATE + EXTERNAL AUTHENTICATE (Amendment D §7.1.1, §7.1.2).

        Verifies the card cryptogram; :class:`ScpError` (with the SW when the
        card refused) on any failure.
        """
        if level not in SECURITY_LEVELS:
            raise ScpError(f"security level {level:02X} is not defined for SCP03")
        self.authenticated = False
        self._keys = None
        kvn = self.keys.kvn if key_version is None else key_version
        if host_challenge is None:
            host_challenge = os.urandom(8)
        if len(host_challenge) not in (8, 16):
            raise ScpError("host challenge must be 8 (S8) or 16 (S16) bytes")
        cla = with_channel(0x80, self.channel)
        iu = bytes((cla, 0x50, kvn, 0x00, len(host_challenge))) + host_challenge + b"\x00"
        resp = self.transmit(iu)
        if len(resp) < 2:
            raise ScpError("INITIALIZE UPDATE: no status word")
        sw = int.from_bytes(resp[-2:], "big")
        if sw != 0x9000:
            raise ScpError("INITIALIZE UPDATE refused", sw)
        data = resp[:-2]
        if len(data) < 13 or data[11] != 0x03:
            raise ScpError("INITIALIZE UPDATE response is not SCP03")
        i = data[12]
        n = 16 if i & I_S16 else 8
        if len(host_challenge) != n:
            raise ScpError("host challenge length does not match the card's S8/S16 mode")
        expected = 13 + 2 * n + (3 if i & I_PSEUDO_RANDOM else 0)
        if len(data) != expected:
            raise ScpError("INITIALIZE UPDATE response has the wrong length")
        self.kdd = data[:10]
        self.key_version = data[10]
        if kvn and self.key_version != kvn:
            raise ScpError("the card answered with another key version")
        self.i = i
        self.mac_length = n
        card_challenge = data[13 : 13 + n]
        cryptogram = data[13 + n : 13 + 2 * n]
        self.sequence_counter = int.from_bytes(data[13 + 2 * n :], "big") if i & I_PSEUDO_RANDOM else None
        if level & LEVEL_RMAC and not i & I_RMAC or level & LEVEL_RENC and not i & I_RENC:
            raise ScpError(f"the card's i parameter {i:02X} does not support level {level:02X}")
        keys = derive_session_keys(self.keys.enc, self.keys.mac, host_challenge, card_challenge)
        if not hmac.compare_digest(card_cryptogram(keys.mac, host_challenge, card_challenge, n), cryptogram):
            raise ScpError("card cryptogram mismatch: wrong keys or not the expected card")
        self._keys = keys
        self._chaining = bytes(BLOCK)
        self._counter = 0
        self.level = level
        # EXTERNAL AUTHENTICATE is always C-MACed, never encrypted (§7.1.2)
        ext = bytes((cla, 0x82, level, 0x00, n)) + host_cryptogram(keys.mac, host_challenge, card_challenge, n)
        ext_wrapped = self._mac_only(ext)
        resp = self.transmit(ext_wrapped)
        sw = int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0
        if sw != 0x9000:
            self._keys = None
            raise ScpError("EXTERNAL AUTHENTICATE refused", sw)
        self.authenticated = True

    def _mac_only(self, apdu: bytes) -> bytes:
        assert self._keys is not None
        a = _split_apdu(apdu)
        n = self.mac_length
        lc = encode_lc(len(a.data) + n, a.extended)
        header = bytes((mac_cla(a.cla), a.ins, a.p1, a.p2))
        self._chaining = c_mac(self._keys.mac, self._chaining, header, lc, a.data)
        return bytes((secured_cla(a.cla), a.ins, a.p1, a.p2)) + lc + a.data + self._chaining[:n] + a.le

    # -- traffic -----------------------------------------------------------------------
    def wrap(self, apdu: bytes) -> bytes:
        """Protect a command: C-DECRYPTION (when the level has it) then C-MAC,
        CLA with secure messaging and the session's channel (§6.2.4, §6.2.6)."""
        if not self.authenticated or self._keys is None:
            raise ScpError("no authenticated secure channel")
        if not self.level & LEVEL_CMAC:
            return apdu
        a = _split_apdu(apdu)
        cla = with_channel(a.cla, self.channel)
        self._counter += 1  # once per command, with or without data (§6.2.6)
        data = a.data
        if self.level & LEVEL_CDEC and data:
            data = encrypt_command_data(self._keys.enc, self._counter, data)
        n = self.mac_length
        le = a.le
        extended = a.extended or len(data) + n > 255
        if extended and not a.extended and le:
            # switching to extended lengths re-codes Le as well (ISO 7816-4 §5.2)
            ne = le[0] or 256
            le = ne.to_bytes(2, "big")
        lc = encode_lc(len(data) + n, extended)
        if len(data) + n > 0xFFFF:
            raise ScpError("command too long to wrap")
        header = bytes((mac_cla(cla), a.ins, a.p1, a.p2))
        self._chaining = c_mac(self._keys.mac, self._chaining, header, lc, data)
        return bytes((secured_cla(cla), a.ins, a.p1, a.p2)) + lc + data + self._chaining[:n] + le

    def unwrap(self, response: bytes) -> bytes:
        """Check the R-MAC and decrypt R-ENC data (§6.2.5, §6.2.7); returns data ‖ SW.

        Error status words carry no R-MAC (only '9000' and warnings '62xx'/'63xx'
        are protected)."""
        if len(response) < 2:
            raise ScpError("response without a status word")
        if not self.authenticated or self._keys is None:
            raise ScpError("no authenticated secure channel")
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        if not self.level & LEVEL_RMAC:
            return response
        protected = sw == 0x9000 or (sw >> 8) in (0x62, 0x63)
        if not protected or (sw != 0x9000 and not data):
            return response
        n = self.mac_length
        if len(data) < n:
            raise ScpError("response shorter than its R-MAC", sw)
        body, mac = data[:-n], data[-n:]
        if not hmac.compare_digest(r_mac(self._keys.rmac, self._chaining, body, sw)[:n], mac):
            raise ScpError("R-MAC mismatch", sw)
        if self.level & LEVEL_RENC and body:
            try:
                body = decrypt_response_data(self._keys.enc, self._counter, body)
            except ValueError as err:
                raise ScpError("R-ENC data malformed", sw) from err
        return body + response[-2:]

    def send(self, apdu: bytes) -> bytes:
        """Wrap, transmit, unwrap."""
        return self.unwrap(self.transmit(self.wrap(apdu)))

    def dek_encrypt(self, data: bytes) -> bytes:
        """Encrypt ``data`` (whole blocks) under the static DEK (see :func:`dek_encrypt`)."""
        return dek_encrypt(self.keys.dek, data)

    def encrypt_key(self, key: bytes) -> bytes:
        """A key component block for PUT KEY (GP Card Spec 2.3 §11.8.2.3,
        tables 11-70/11-71): a whole number of blocks is encrypted as it is;
        otherwise the clear length (one byte) precedes the zero-padded,
        encrypted value."""
        if len(key) % BLOCK == 0:
            return self.dek_encrypt(key)
        if len(key) > 0x7F:
            raise ValueError("key component too long")
        return bytes((len(key),)) + self.dek_encrypt(key + bytes(-len(key) % BLOCK))

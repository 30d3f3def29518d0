"""The tester's own host side of GlobalPlatform SCP03 (GP Card Spec 2.3
Amendment D), written independently of the card's and the personalizer's
code, on pycryptodome.

* KDF (§4.1.5): NIST SP 800-108 counter mode with AES-CMAC; derivation data
  ``00×11 ‖ constant ‖ 00 ‖ L (2 bytes, bits) ‖ i ‖ context``.
* Session keys S-ENC / S-MAC / S-RMAC (constants 04 / 06 / 07, context =
  host challenge ‖ card challenge), card and host cryptograms (00 / 01),
  pseudo-random card challenge (02, context = sequence counter ‖ ISD AID).
* Secure messaging (§6.2): C-MAC with MAC chaining, C-DECRYPTION (AES-CBC,
  ICV = E(S-ENC, counter)), R-MAC verification and R-ENCRYPTION decryption
  (ICV = E(S-ENC, 80 ‖ counter)). Security levels 01, 03, 11, 13, 33; S8
  (8-byte cryptograms and MACs) and S16.
* GP key diversification of a master key (KMC) by the key diversification
  data (KDD) the card answers in INITIALIZE UPDATE: EMV and VISA2 (3DES-ECB
  templates) and KDF3 (SP 800-108 AES-CMAC).

Keys never enter ``repr`` or exception messages.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from Crypto.Cipher import AES, DES3
from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms
from cryptography.hazmat.primitives.cmac import CMAC as _CMAC

# derivation constants (Amendment D table 4-1)
CARD_CRYPTOGRAM, HOST_CRYPTOGRAM, CARD_CHALLENGE = 0x00, 0x01, 0x02
S_ENC, S_MAC, S_RMAC = 0x04, 0x06, 0x07

# security levels (§5.1, table 5-1)
C_MAC, C_DEC, R_MAC, R_ENC = 0x01, 0x02, 0x10, 0x20
LEVELS = (0x01, 0x03, 0x11, 0x13, 0x33)

# i parameter bits (§5.1)
I_S16, I_PSEUDO_RANDOM, I_RMAC, I_RENC = 0x01, 0x10, 0x20, 0x40


class Scp03Error(Exception):
    """A secure channel that could not be opened or a response that does not
    verify. ``sw`` is the card's status word when one caused it."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw


# -- primitives --------------------------------------------------------------------------


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B) through OpenSSL (``cryptography``): several times faster than
    pycryptodome's, and every secured command and response computes one."""
    c = _CMAC(_algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    return AES.new(key, AES.MODE_ECB).encrypt(block)


def pad80(data: bytes, block: int = 16) -> bytes:
    """ISO/IEC 9797-1 method 2 padding."""
    data += b"\x80"
    return data + bytes(-len(data) % block)


def unpad80(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise Scp03Error("bad ISO 9797-1 method 2 padding")
    return stripped[:-1]


def kdf(key: bytes, constant: int, context: bytes, bits: int) -> bytes:
    """SCP03 KDF (Amendment D §4.1.5): SP 800-108 counter mode, AES-CMAC PRF,
    counter after the fixed label, output ``bits`` long."""
    out = b""
    i = 1
    while len(out) * 8 < bits:
        data = bytes(11) + bytes((constant, 0x00)) + bits.to_bytes(2, "big") + bytes((i,)) + context
        out += aes_cmac(key, data)
        i += 1
    return out[: bits // 8]


@dataclass(frozen=True)
class SessionKeys:
    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    rmac: bytes = field(repr=False)


def session_keys(enc: bytes, mac: bytes, host_challenge: bytes, card_challenge: bytes) -> SessionKeys:
    ctx = host_challenge + card_challenge
    bits = len(enc) * 8
    return SessionKeys(kdf(enc, S_ENC, ctx, bits), kdf(mac, S_MAC, ctx, bits), kdf(mac, S_RMAC, ctx, len(mac) * 8))


def card_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes, n: int = 8) -> bytes:
    return kdf(s_mac, CARD_CRYPTOGRAM, host_challenge + card_challenge, n * 8)


def host_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes, n: int = 8) -> bytes:
    return kdf(s_mac, HOST_CRYPTOGRAM, host_challenge + card_challenge, n * 8)


def pseudo_random_challenge(enc: bytes, sequence_counter: bytes, isd_aid: bytes, n: int = 8) -> bytes:
    """Card challenge of a card with pseudo-random challenges (§6.2.2.1)."""
    return kdf(enc, CARD_CHALLENGE, sequence_counter + isd_aid, n * 8)


def kcv(key: bytes, aes: bool = True) -> bytes:
    """Key check value: AES-ECB(key, 01×16)[:3] (Amendment D §7.2.2) for AES
    keys, 3DES-ECB(key, 00×8)[:3] for DES keys (``aes=False``)."""
    if aes:
        return _aes_ecb(key, b"\x01" * 16)[:3]
    return DES3.new(_des3_key(key), DES3.MODE_ECB).encrypt(bytes(8))[:3]


def _des3_key(key: bytes) -> bytes:
    if len(key) not in (16, 24):
        raise ValueError("a DES3 key is 16 or 24 bytes")
    return key


# -- key diversification -----------------------------------------------------------------

KEY_TYPES = {"enc": 0x01, "mac": 0x02, "dek": 0x03}
SCHEMES = ("EMV", "VISA2", "KDF3")


@dataclass(frozen=True)
class CardKeys:
    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    dek: bytes = field(repr=False)
    scheme: str = ""


def _tdes_ecb(key: bytes, data: bytes) -> bytes:
    return DES3.new(_des3_key(key), DES3.MODE_ECB).encrypt(data)


def diversify(kmc: bytes, scheme: str, kdd: bytes) -> CardKeys:
    """Card static keys from a master key by the 10-byte KDD (templates of
    GlobalPlatformPro's PlaintextKeys): EMV and VISA2 with a DES3 KMC, KDF3
    with an AES KMC (output as long as the KMC)."""
    s = scheme.upper()
    if len(kdd) != 10:
        raise ValueError("the key diversification data is 10 bytes")
    out: list[bytes] = []
    for kk in (0x01, 0x02, 0x03):
        if s == "EMV":
            part = kdd[4:10]
            out.append(_tdes_ecb(kmc, part + bytes((0xF0, kk)) + part + bytes((0x0F, kk))))
        elif s == "VISA2":
            part = kdd[0:2] + kdd[4:8]
            out.append(_tdes_ecb(kmc, part + bytes((0xF0, kk)) + part + bytes((0x0F, kk))))
        elif s == "KDF3":
            key = b""
            i = 1
            while len(key) < len(kmc):
                key += aes_cmac(kmc, bytes((i,)) + bytes(3) + bytes((kk, 0x00)) + kdd)
                i += 1
            out.append(key[: len(kmc)])
        else:
            raise ValueError(f"unknown diversification scheme {scheme!r} (EMV, VISA2, KDF3)")
    return CardKeys(out[0], out[1], out[2], s)


# -- APDU helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None: no Le field; 0..256 (256 encoded 00)

    @classmethod
    def parse(cls, raw: bytes) -> Apdu:
        """Short APDUs (cases 1–4)."""
        if len(raw) < 4:
            raise ValueError("APDU shorter than 4 bytes")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        lc = body[0]
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, body[1:])
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, body[1:-1], body[-1] or 256)
        raise ValueError("inconsistent Lc")

    def encode(self) -> bytes:
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            if len(self.data) > 255:
                raise ValueError("command data over 255 bytes (short APDU)")
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le & 0xFF,))
        return out


# -- the host session --------------------------------------------------------------------


@dataclass
class InitUpdateResponse:
    kdd: bytes
    kvn: int
    scp: int
    i: int
    card_challenge: bytes
    card_cryptogram: bytes
    sequence_counter: bytes

    @classmethod
    def parse(cls, data: bytes) -> InitUpdateResponse:
        if len(data) < 13:
            raise Scp03Error(f"INITIALIZE UPDATE response too short ({len(data)} bytes)")
        kdd, kvn, scp, i = data[:10], data[10], data[11], data[12]
        if scp != 0x03:
            raise Scp03Error(f"card answers SCP{scp:02X}, not SCP03")
        n = 16 if i & I_S16 else 8
        rest = data[13:]
        if len(rest) not in (2 * n, 2 * n + 3):
            raise Scp03Error(f"INITIALIZE UPDATE response of {len(data)} bytes for i={i:02X}")
        return cls(kdd, kvn, scp, i, rest[:n], rest[n : 2 * n], rest[2 * n :])


Transmit = Callable[[bytes], bytes]


class Scp03Session:
    """One authenticated SCP03 session, host side. ``open`` sends INITIALIZE
    UPDATE and EXTERNAL AUTHENTICATE; ``send`` wraps a plain command APDU
    (C-MAC, C-DEC) and unwraps the response (R-MAC checked, R-ENC
    decrypted), returning plain data ‖ SW.

    ``keys``: the card's static keys, or a callable that receives the KDD the
    card answers and gives them (diversification from a KMC)."""

    def __init__(self, transmit: Transmit, keys: CardKeys | Callable[[bytes], CardKeys], *, level: int = 0x01,
                 key_version: int = 0x00, host_challenge: bytes | None = None, isd_aid: bytes | None = None) -> None:  # fmt: skip
        if level not in LEVELS:
            raise ValueError(f"security level {level:02X} is not one of 01 03 11 13 33")
        self._transmit = transmit
        self._keys = keys
        self.level = level
        self.key_version = key_version
        self._host_challenge = host_challenge
        self.isd_aid = isd_aid
        self.init: InitUpdateResponse | None = None
        self._s: SessionKeys | None = None
        self.n = 8
        self.chaining = bytes(16)
        self.counter = 0
        self.authenticated = False

    # -- opening ---------------------------------------------------------------
    def initialize_update(self) -> InitUpdateResponse:
        hc = self._host_challenge if self._host_challenge is not None else os.urandom(8)
        self._host_challenge = hc
        resp = self._transmit(Apdu(0x80, 0x50, self.key_version, 0x00, hc, 256).encode())
        sw = int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0
        if sw != 0x9000:
            raise Scp03Error(f"INITIALIZE UPDATE answered {sw:04X}", sw)
        self.init = InitUpdateResponse.parse(resp[:-2])
        return self.init

    def open(self) -> Scp03Session:
        init = self.initialize_update()
        hc = self._host_challenge
        assert hc is not None
        if init.i & I_S16:
            raise Scp03Error("S16 mode needs a 16-byte host challenge; this session sent 8")
        if self.level & R_MAC and not init.i & I_RMAC or self.level & R_ENC and not init.i & I_RENC:
            raise Scp03Error(f"security level {self.level:02X} beyond the card's i parameter {init.i:02X}")
        keys = self._keys(init.kdd) if callable(self._keys) else self._keys
        self._dek = keys.dek
        s = session_keys(keys.enc, keys.mac, hc, init.card_challenge)
        expected = card_cryptogram(s.mac, hc, init.card_challenge, self.n)
        if not hmac.compare_digest(expected, init.card_cryptogram):
            raise Scp03Error("card cryptogram does not verify (wrong keys or key version)")
        if init.sequence_counter and self.isd_aid is not None:
            challenge = pseudo_random_challenge(keys.enc, init.sequence_counter, self.isd_aid, self.n)
            if not hmac.compare_digest(challenge, init.card_challenge):
                raise Scp03Error("pseudo-random card challenge does not match the sequence counter")
        self._s = s
        cryptogram = host_cryptogram(s.mac, hc, init.card_challenge, self.n)
        ea = self._mac_command(Apdu(0x80, 0x82, self.level, 0x00, cryptogram))
        resp = self._transmit(ea.encode())
        sw = int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0
        if sw != 0x9000:
            raise Scp03Error(f"EXTERNAL AUTHENTICATE answered {sw:04X}", sw)
        self.authenticated = True
        self.counter = 0
        return self

    # -- wrapping --------------------------------------------------------------
    def _mac_command(self, apdu: Apdu) -> Apdu:
        """C-MAC over chaining value ‖ header (CLA with b3 set) ‖ Lc' ‖ data."""
        assert self._s is not None
        cla = (apdu.cla | 0x04) & 0xFF
        lc = len(apdu.data) + self.n
        mac = aes_cmac(self._s.mac, self.chaining + bytes((cla, apdu.ins, apdu.p1, apdu.p2, lc)) + apdu.data)
        self.chaining = mac
        return Apdu(cla, apdu.ins, apdu.p1, apdu.p2, apdu.data + mac[: self.n], apdu.le)

    def wrap(self, command: bytes) -> bytes:
        """The secured form of a plain command APDU (counter advanced)."""
        if not self.authenticated or self._s is None:
            raise Scp03Error("no authenticated session")
        apdu = Apdu.parse(command)
        self.counter += 1
        data = apdu.data
        if self.level & C_DEC and data:
            icv = _aes_ecb(self._s.enc, self.counter.to_bytes(16, "big"))
            data = AES.new(self._s.enc, AES.MODE_CBC, iv=icv).encrypt(pad80(data))
        return self._mac_command(Apdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, data, apdu.le)).encode()

    def unwrap(self, response: bytes) -> bytes:
        """Plain data ‖ SW of a secured response: R-MAC verified (levels 1x,
        3x) and R-ENC data decrypted (level 33). Error responses (SW other
        than 9000 / 62xx / 63xx) carry no R-MAC."""
        assert self._s is not None
        if len(response) < 2:
            raise Scp03Error("response without status word")
        body, sw = response[:-2], response[-2:]
        if not self.level & R_MAC or not (sw == b"\x90\x00" or sw[0] in (0x62, 0x63)):
            return response
        if len(body) < self.n:
            raise Scp03Error("R-MAC missing", int.from_bytes(sw, "big"))
        data, received = body[: -self.n], body[-self.n :]
        expected = aes_cmac(self._s.rmac, self.chaining + data + sw)[: self.n]
        if not hmac.compare_digest(expected, received):
            raise Scp03Error("R-MAC does not verify", int.from_bytes(sw, "big"))
        if self.level & R_ENC and data:
            icv = _aes_ecb(self._s.enc, b"\x80" + self.counter.to_bytes(15, "big"))
            if len(data) % 16:
                raise Scp03Error("R-ENC data is not whole AES blocks")
            data = unpad80(AES.new(self._s.enc, AES.MODE_CBC, iv=icv).decrypt(data))
        return data + sw

    def send(self, command: bytes) -> bytes:
        """Wrap, transmit, unwrap."""
        return self.unwrap(self._transmit(self.wrap(command)))

    def encrypt_key(self, key: bytes) -> bytes:
        """A key for PUT KEY: AES-CBC(DEK, IV 0) (§7.2.2), whole blocks."""
        if len(key) % 16:
            raise ValueError("key length is not whole AES blocks")
        return AES.new(self._dek, AES.MODE_CBC, iv=bytes(16)).encrypt(key)

"""The issuer key store: named keys and the operations data preparation needs,
without the clear key ever leaving the back end.

Two back ends implement :class:`KeyStore`:

* :class:`SoftwareKeyStore` — a JSON file (``docs/keystore.md``). Clear keys
  only in files marked ``"test_only": true``; otherwise every key value is
  encrypted with AES-256-GCM under a key derived from a passphrase by scrypt.
* :class:`cardlab.personalizer.keystore_pkcs11.Pkcs11KeyStore` — a PKCS#11 token
  (SoftHSM2 in the tests); derivations, signatures and encryptions are token
  operations.

Key types and usages (a key can only be used for its usage's operations):

=========  ===========  ==================================================
usage      type         operations
=========  ===========  ==================================================
IMK-AC     DES3 16/24   :meth:`KeyStore.derive_icc_master_key` (EMV Book 2
IMK-SMI                 A1.4, Option A / B), result wrapped under a KEK
IMK-SMC
KMC        DES3 or AES  :meth:`KeyStore.diversify_card_keys` (GP: EMV and
                        VISA2 need DES3, KDF3 needs AES)
KEK        AES          :meth:`KeyStore.encrypt` / :meth:`KeyStore.decrypt`
                        (AES-CBC, no padding), wrapping, :meth:`translate`
ISSUER     RSA private  :meth:`KeyStore.rsa_sign_raw` (raw RSA, no padding:
CA                      EMV Book 2 §5.3/§6.3 recovery format)
=========  ===========  ==================================================

ICC master keys are card data: they leave the back end only encrypted under a
transport key (:class:`WrappedKey`) together with their check value (CPS DGI
9000 needs it). GP card keys (:class:`CardKeys`) are returned in clear: the
host side of SCP03 needs them for the session with that one card.

>>> y = option_a_input("12345678901234567", "01")
>>> y.hex().upper()
'4567890123456701'
>>> option_b_input("12345678901234567", "01").hex().upper()
'4201892658095334'
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

from Crypto.Cipher import AES, DES3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardlab.cardspec.keys import diversify

KeyType = Literal["DES3", "AES", "RSA"]
Usage = Literal["IMK-AC", "IMK-SMI", "IMK-SMC", "KMC", "KEK", "ISSUER", "CA"]
Option = Literal["A", "B"]
Scheme = Literal["EMV", "VISA2", "KDF3"]
TargetMode = Literal["DES3-ECB", "AES-CBC"]

KEY_TYPES: tuple[KeyType, ...] = ("DES3", "AES", "RSA")
USAGES: tuple[Usage, ...] = ("IMK-AC", "IMK-SMI", "IMK-SMC", "KMC", "KEK", "ISSUER", "CA")
IMK_USAGES = ("IMK-AC", "IMK-SMI", "IMK-SMC")
#: which key types each usage allows
USAGE_TYPES: Mapping[str, tuple[KeyType, ...]] = {
    "IMK-AC": ("DES3",),
    "IMK-SMI": ("DES3",),
    "IMK-SMC": ("DES3",),
    "KMC": ("DES3", "AES"),
    "KEK": ("AES",),
    "ISSUER": ("RSA",),
    "CA": ("RSA",),
}
#: the wrapping of :class:`WrappedKey` and of :meth:`KeyStore.encrypt`
WRAP_MECHANISM = "AES-CBC-IV0"
FORMAT = "cardlab-keystore"
FORMAT_VERSION = 1
_SYMMETRIC_LENGTHS: Mapping[str, tuple[int, ...]] = {"DES3": (16, 24), "AES": (16, 24, 32)}


# --------------------------------------------------------------------------- errors


class KeyStoreError(Exception):
    """Anything wrong with a key store; the message names the key and the
    problem, never a key value."""


class KeyNotFoundError(KeyStoreError, KeyError):
    """No key of that name in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "key not found"


class KeyUsageError(KeyStoreError):
    """The key exists but its type or usage does not allow the operation."""


class WrongPassphraseError(KeyStoreError):
    """The passphrase does not open the key store file."""


class KeyStoreFormatError(KeyStoreError):
    """The key store file is malformed, tampered with, or not allowed (clear
    keys in a file not marked test-only)."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class KeyInfo:
    """What may be known about a key without its value."""

    name: str
    type: KeyType
    usage: Usage
    #: bytes for DES3/AES, modulus bits for RSA
    length: int
    #: 3 bytes for symmetric keys (GP Amendment D §7.2.2), ``None`` for RSA
    kcv: bytes | None


class RsaPublicKey(NamedTuple):
    """An RSA public key; unpacks as ``(modulus, exponent)``."""

    modulus: int
    exponent: int

    @property
    def modulus_bytes(self) -> bytes:
        """The modulus big-endian, as long as the key (EMV ``N``)."""
        return self.modulus.to_bytes((self.modulus.bit_length() + 7) // 8, "big")

    @property
    def exponent_bytes(self) -> bytes:
        """The exponent as EMV stores it (``03`` or ``010001``)."""
        return self.exponent.to_bytes((self.exponent.bit_length() + 7) // 8, "big")


@dataclass(frozen=True)
class WrappedKey:
    """A key that is card data (an ICC master key), encrypted under a
    transport key: ``value = AES-CBC(KEK, IV = 0, key)`` (a 16-byte DES key
    is one AES block, so this is also AES-ECB).

    ``kcv`` is the 3DES check value of the clear key (3DES-ECB(key, 00×8)[:3]),
    ``kek_kcv`` that of the transport key, so a consumer can tell which
    transport key it needs and check what it unwraps.
    """

    kek: str
    kek_kcv: bytes
    value: bytes
    kcv: bytes
    key_type: KeyType = "DES3"
    mechanism: str = WRAP_MECHANISM

    def to_json(self) -> dict[str, str]:
        """A JSON-friendly form (all public: the key is encrypted)."""
        return {
            "kek": self.kek,
            "kek_kcv": self.kek_kcv.hex().upper(),
            "value": self.value.hex().upper(),
            "kcv": self.kcv.hex().upper(),
            "key_type": self.key_type,
            "mechanism": self.mechanism,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, str]) -> WrappedKey:
        """Inverse of :meth:`to_json`."""
        key_type = doc.get("key_type", "DES3")
        if key_type not in KEY_TYPES:
            raise KeyStoreFormatError(f"wrapped key: unknown key type {key_type!r}")
        return cls(
            kek=doc["kek"],
            kek_kcv=bytes.fromhex(doc["kek_kcv"]),
            value=bytes.fromhex(doc["value"]),
            kcv=bytes.fromhex(doc["kcv"]),
            key_type=key_type,
            mechanism=doc.get("mechanism", WRAP_MECHANISM),
        )


@dataclass(frozen=True)
class IccKeys:
    """The three ICC master keys of one card, wrapped under one KEK."""

    ac: WrappedKey
    smi: WrappedKey
    smc: WrappedKey


@dataclass(frozen=True)
class CardKeys:
    """A card's GP static keys diversified from the KMC. Clear values (the
    host side of SCP03 needs them); never printed."""

    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    dek: bytes = field(repr=False)
    scheme: str = "KDF3"


# --------------------------------------------------------------------------- pure helpers


def adjust_parity(key: bytes) -> bytes:
    """Give every byte odd parity (DES keys; the low bit of each byte).

    >>> adjust_parity(bytes.fromhex("0000FEFF")).hex().upper()
    '0101FEFE'
    """
    return bytes((b & 0xFE) | (((b >> 1).bit_count() + 1) & 1) for b in key)


def des_kcv(key: bytes) -> bytes:
    """3DES check value: 3DES-ECB(key, 00×8)[:3]."""
    return _des3_ecb_encrypt(key, bytes(8))[:3]


def aes_kcv(key: bytes) -> bytes:
    """AES check value per GP Amendment D §7.2.2: AES-ECB(key, 01×16)[:3]."""
    return bytes(AES.new(key, AES.MODE_ECB).encrypt(b"\x01" * 16)[:3])


def symmetric_kcv(key_type: KeyType, key: bytes) -> bytes:
    """The check value for a key of ``key_type`` (DES3 or AES)."""
    return des_kcv(key) if key_type == "DES3" else aes_kcv(key)


def _des3_key(key: bytes) -> bytes:
    # pycryptodome refuses a key whose halves are equal (single DES);
    # such keys are still valid EMV keys in tests: expand to 24 bytes.
    return key + key[:8] if len(key) == 16 else key


def _des3_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    try:
        return bytes(DES3.new(_des3_key(key), DES3.MODE_ECB).encrypt(data))
    except ValueError:  # degenerate (single-DES) key: do it by hand
        from Crypto.Cipher import DES

        k1, k2, k3 = key[:8], key[8:16], (key[16:24] if len(key) == 24 else key[:8])
        out = b""
        for i in range(0, len(data), 8):
            block = DES.new(k1, DES.MODE_ECB).encrypt(data[i : i + 8])
            block = DES.new(k2, DES.MODE_ECB).decrypt(block)
            out += DES.new(k3, DES.MODE_ECB).encrypt(block)
        return out


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
    """AES-CBC without padding (``data`` a multiple of 16 bytes)."""
    _check_blocks(data, 16, "data to encrypt")
    return bytes(AES.new(key, AES.MODE_CBC, iv=iv).encrypt(data))


def aes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """Inverse of :func:`aes_cbc_encrypt`."""
    _check_blocks(data, 16, "data to decrypt")
    return bytes(AES.new(key, AES.MODE_CBC, iv=iv).decrypt(data))


def reencrypt(clear: bytes, target_key: bytes, target: TargetMode) -> bytes:
    """Encrypt card data under a card key: ``"DES3-ECB"`` (EMV CPS with a
    SCP02/3DES DEK) or ``"AES-CBC"`` (SCP03 DEK, IV zero). No padding."""
    if target == "DES3-ECB":
        _check_blocks(clear, 8, "data to re-encrypt")
        return _des3_ecb_encrypt(target_key, clear)
    if target == "AES-CBC":
        return aes_cbc_encrypt(target_key, clear)
    raise ValueError(f"unknown re-encryption mode {target!r} (DES3-ECB or AES-CBC)")


def _check_blocks(data: bytes, size: int, what: str) -> None:
    if not data or len(data) % size:
        raise ValueError(f"{what} must be a non-empty multiple of {size} bytes, not {len(data)}")


# --------------------------------------------------------------------------- interface


class KeyStore(abc.ABC):
    """Named issuer keys and the operations on them.

    Public methods check names, usages and inputs here; back ends implement the
    ``_``-prefixed primitives and never return a clear issuer key.
    """

    # -- what is in the store

    @abc.abstractmethod
    def names(self) -> tuple[str, ...]:
        """The key names, sorted."""

    @abc.abstractmethod
    def info(self, name: str) -> KeyInfo:
        """Type, usage, length and check value of key ``name``
        (:class:`KeyNotFoundError` if there is none)."""

    def close(self) -> None:
        """Release the back end (a token session); no-op for files."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def kcv(self, name: str) -> bytes:
        """The 3-byte check value of symmetric key ``name`` (3DES: ECB of
        00×8; AES: ECB of 01×16, GP Amendment D §7.2.2)."""
        info = self.info(name)
        if info.kcv is None:
            raise KeyUsageError(f"key {name!r} is an {info.type} key and has no check value")
        return info.kcv

    def _require(self, name: str, usages: Iterable[str], operation: str) -> KeyInfo:
        info = self.info(name)
        allowed = tuple(usages)
        if info.usage not in allowed:
            raise KeyUsageError(
                f"key {name!r} has usage {info.usage}; {operation} needs a key of usage "
                + " or ".join(allowed)
            )
        return info

    # -- ICC master keys (EMV Book 2 A1.4)

    def derive_icc_master_key(
        self, imk_name: str, pan: str, psn: str | int | None, kek_name: str, option: Option = "A"
    ) -> WrappedKey:
        """The ICC master key derived from IMK ``imk_name`` for ``pan``/``psn``
        by Option A or B (B falls back to A for PANs of 16 digits or fewer),
        odd parity, returned wrapped under transport key ``kek_name``."""
        self._require(imk_name, IMK_USAGES, "ICC master key derivation")
        kek = self._require(kek_name, ("KEK",), "wrapping")
        y = icc_mk_input(pan, psn, option)
        return self._derive_wrapped(imk_name, icc_mk_block(y), kek_name, kek)

    def derive_icc_keys(
        self,
        pan: str,
        psn: str | int | None,
        kek_name: str,
        option: Option = "A",
        imk_ac: str = "IMK-AC",
        imk_smi: str = "IMK-SMI",
        imk_smc: str = "IMK-SMC",
    ) -> IccKeys:
        """The card's three ICC master keys (AC, SMI, SMC), wrapped."""
        return IccKeys(
            ac=self.derive_icc_master_key(imk_ac, pan, psn, kek_name, option),
            smi=self.derive_icc_master_key(imk_smi, pan, psn, kek_name, option),
            smc=self.derive_icc_master_key(imk_smc, pan, psn, kek_name, option),
        )

    @abc.abstractmethod
    def _derive_wrapped(self, imk_name: str, block: bytes, kek_name: str, kek: KeyInfo) -> WrappedKey:
        """parity(3DES-ECB(imk, block)) wrapped under the KEK."""

    # -- GP card keys

    def diversify_card_keys(self, kmc_name: str, scheme: str, kdd: bytes) -> CardKeys:
        """The card's static (ENC, MAC, DEK) from KMC ``kmc_name`` and the
        card's 10-byte KDD (``cardlab.cardspec.keys.diversify``). EMV and VISA2 need a
        DES3 KMC, KDF3 an AES KMC."""
        info = self._require(kmc_name, ("KMC",), "GP key diversification")
        scheme = scheme.upper()
        if scheme not in ("EMV", "VISA2", "KDF3"):
            raise ValueError(f"unknown diversification scheme {scheme!r} (EMV, VISA2 or KDF3)")
        wanted: KeyType = "AES" if scheme == "KDF3" else "DES3"
        if info.type != wanted:
            raise KeyUsageError(
                f"key {kmc_name!r} is an {info.type} key; {scheme} diversification needs {wanted}"
            )
        if len(kdd) != 10:
            raise ValueError(f"key diversification data is 10 bytes, not {len(kdd)}")
        enc, mac, dek = self._diversify(kmc_name, scheme, kdd)
        return CardKeys(enc=enc, mac=mac, dek=dek, scheme=scheme)

    @abc.abstractmethod
    def _diversify(self, kmc_name: str, scheme: str, kdd: bytes) -> tuple[bytes, bytes, bytes]:
        """``cardlab.cardspec.keys.diversify`` inside the back end."""

    # -- RSA

    def rsa_sign_raw(self, name: str, block: bytes) -> bytes:
        """Raw RSA private operation ``block^d mod n`` (no padding: EMV
        certificates and signed data carry their own format, EMV Book 2 §5.3,
        §6.3; PKCS#11 ``CKM_RSA_X_509``). ``block`` is exactly as long as the
        modulus and numerically below it."""
        self._require(name, ("ISSUER", "CA"), "RSA signing")
        n, _ = self.public_key(name)
        size = (n.bit_length() + 7) // 8
        if len(block) != size:
            raise ValueError(f"key {name!r}: block to sign is {len(block)} bytes, the modulus {size}")
        if int.from_bytes(block, "big") >= n:
            raise ValueError(f"key {name!r}: block to sign is not below the modulus")
        return self._rsa_sign_raw(name, block)

    @abc.abstractmethod
    def _rsa_sign_raw(self, name: str, block: bytes) -> bytes: ...

    @abc.abstractmethod
    def public_key(self, name: str) -> RsaPublicKey:
        """The public half of RSA key ``name``."""

    # -- transport key

    def encrypt(self, kek_name: str, data: bytes, iv: bytes = bytes(16)) -> bytes:
        """AES-CBC encryption under transport key ``kek_name``, no padding."""
        self._require(kek_name, ("KEK",), "transport encryption")
        _check_blocks(data, 16, f"data to encrypt under {kek_name!r}")
        return self._crypt(kek_name, data, iv, encrypt=True)

    def decrypt(self, kek_name: str, data: bytes, iv: bytes = bytes(16)) -> bytes:
        """Inverse of :meth:`encrypt`."""
        self._require(kek_name, ("KEK",), "transport decryption")
        _check_blocks(data, 16, f"data to decrypt under {kek_name!r}")
        return self._crypt(kek_name, data, iv, encrypt=False)

    @abc.abstractmethod
    def _crypt(self, kek_name: str, data: bytes, iv: bytes, encrypt: bool) -> bytes: ...

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """The clear value of a wrapped card key, checked against its KCV.
        For the software re-encryption path; prefer :meth:`translate`."""
        info = self._require(wrapped.kek, ("KEK",), "unwrapping")
        if wrapped.mechanism != WRAP_MECHANISM:
            raise KeyStoreError(f"wrapped key under {wrapped.kek!r}: unknown mechanism {wrapped.mechanism!r}")
        if info.kcv != wrapped.kek_kcv:
            raise KeyStoreError(f"wrapped key: transport key {wrapped.kek!r} has another check value")
        clear = self._crypt(wrapped.kek, wrapped.value, bytes(16), encrypt=False)
        if symmetric_kcv(wrapped.key_type, clear) != wrapped.kcv:
            raise KeyStoreError(f"wrapped key under {wrapped.kek!r} does not match its check value")
        return clear

    def translate(self, wrapped: WrappedKey, target_key: bytes, target: TargetMode) -> bytes:
        """Re-encrypt a wrapped card key from the transport key to a card key
        (the session DEK): ``"DES3-ECB"`` or ``"AES-CBC"`` (IV zero). The
        clear card key exists only inside this call."""
        return reencrypt(self.unwrap(wrapped), target_key, target)


# --------------------------------------------------------------------------- software back end


@dataclass(frozen=True)
class _Entry:
    info: KeyInfo
    value: bytes = field(repr=False)  # symmetric key, or PKCS#8 DER of an RSA key
    public: RsaPublicKey | None = None


@dataclass(frozen=True)
class ScryptParams:
    """scrypt parameters of an encrypted key store file (RFC 7914)."""

    salt: bytes
    n: int = 2**15
    r: int = 8
    p: int = 1

    def derive(self, passphrase: str) -> bytes:
        return hashlib.scrypt(
            passphrase.encode("utf-8"), salt=self.salt, n=self.n, r=self.r, p=self.p,
            maxmem=256 * 1024 * 1024, dklen=32,
        )  # fmt: skip


_VERIFIER = b"cardlab key store passphrase check"


def _aad(name: str, doc: Mapping[str, Any]) -> bytes:
    """What a key's AES-GCM tag also authenticates: its name and metadata."""
    meta = {k: doc[k] for k in ("type", "usage", "kcv", "modulus", "exponent") if k in doc}
    return json.dumps({"name": name, **meta}, sort_keys=True).encode()


class SoftwareKeyStore(KeyStore):
    """Keys held in this process, loaded from / saved to a JSON file."""

    def __init__(self, entries: Iterable[_Entry] = (), *, test_only: bool = False) -> None:
        self._entries: dict[str, _Entry] = {}
        self.test_only = test_only
        #: public data stored with the keys (certificates, CA keys) — not secret
        self.extra: dict[str, Any] = {}
        self._rsa_numbers: dict[str, tuple[_Entry, rsa.RSAPrivateNumbers]] = {}
        for entry in entries:
            self._entries[entry.info.name] = entry

    # -- building

    def add_symmetric(self, name: str, key_type: KeyType, usage: Usage, value: bytes) -> KeyInfo:
        """Add (or replace) a DES3 or AES key."""
        _check_name(name)
        if key_type not in _SYMMETRIC_LENGTHS:
            raise KeyStoreError(f"key {name!r}: {key_type} is not a symmetric key type")
        if len(value) not in _SYMMETRIC_LENGTHS[key_type]:
            raise KeyStoreError(
                f"key {name!r}: a {key_type} key is "
                + " or ".join(map(str, _SYMMETRIC_LENGTHS[key_type]))
                + f" bytes, not {len(value)}"
            )
        _check_usage(name, key_type, usage)
        info = KeyInfo(name, key_type, usage, len(value), symmetric_kcv(key_type, value))
        self._entries[name] = _Entry(info, bytes(value))
        return info

    def add_rsa(self, name: str, usage: Usage, private_key: rsa.RSAPrivateKey) -> KeyInfo:
        """Add (or replace) an RSA private key."""
        _check_name(name)
        _check_usage(name, "RSA", usage)
        numbers = private_key.public_key().public_numbers()
        der = private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        info = KeyInfo(name, "RSA", usage, numbers.n.bit_length(), None)
        self._entries[name] = _Entry(info, der, RsaPublicKey(numbers.n, numbers.e))
        return info

    # -- KeyStore

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def info(self, name: str) -> KeyInfo:
        return self._entry(name).info

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyNotFoundError(f"no key {name!r} in the key store") from None

    def _derive_wrapped(self, imk_name: str, block: bytes, kek_name: str, kek: KeyInfo) -> WrappedKey:
        icc_mk = adjust_parity(_des3_ecb_encrypt(self._entry(imk_name).value, block))
        assert kek.kcv is not None
        return WrappedKey(
            kek=kek_name,
            kek_kcv=kek.kcv,
            value=aes_cbc_encrypt(self._entry(kek_name).value, icc_mk),
            kcv=des_kcv(icc_mk),
        )

    def _diversify(self, kmc_name: str, scheme: str, kdd: bytes) -> tuple[bytes, bytes, bytes]:
        return diversify(scheme, self._entry(kmc_name).value, kdd)

    def _rsa_sign_raw(self, name: str, block: bytes) -> bytes:
        entry = self._entry(name)
        # parsing (and validating) the PKCS#8 DER costs ~18 ms: keep the numbers per entry
        cached = self._rsa_numbers.get(name)
        if cached is not None and cached[0] is entry:  # (a replaced key is parsed again)
            priv = cached[1]
        else:
            priv = self._private_key(name).private_numbers()
            self._rsa_numbers[name] = (entry, priv)
        n = priv.public_numbers.n
        c = int.from_bytes(block, "big")
        # CRT: m = m2 + q·(qinv·(m1 − m2) mod p)
        m1, m2 = pow(c, priv.dmp1, priv.p), pow(c, priv.dmq1, priv.q)
        m = m2 + priv.q * ((priv.iqmp * (m1 - m2)) % priv.p)
        return m.to_bytes((n.bit_length() + 7) // 8, "big")

    def _private_key(self, name: str) -> rsa.RSAPrivateKey:
        key = serialization.load_der_private_key(self._entry(name).value, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover - add_rsa only stores RSA
            raise KeyStoreFormatError(f"key {name!r} is not an RSA key")
        return key

    def public_key(self, name: str) -> RsaPublicKey:
        entry = self._entry(name)
        if entry.public is None:
            raise KeyUsageError(f"key {name!r} is an {entry.info.type} key, not an RSA key")
        return entry.public

    def _crypt(self, kek_name: str, data: bytes, iv: bytes, encrypt: bool) -> bytes:
        key = self._entry(kek_name).value
        return aes_cbc_encrypt(key, data, iv) if encrypt else aes_cbc_decrypt(key, data, iv)

    def clear_value(self, name: str) -> bytes:
        """The clear key (symmetric) or PKCS#8 DER (RSA) — for
        :func:`cardlab.personalizer.keystore_pkcs11.import_keystore_into_token` and
        tests; never log it."""
        return self._entry(name).value

    # -- files

    def to_json(
        self, passphrase: str | None = None, *, scrypt_n: int = 2**15, note: str = ""
    ) -> dict[str, Any]:
        """The key store file's content. With ``passphrase`` every key value is
        encrypted; without it the store must be ``test_only``."""
        if passphrase is None and not self.test_only:
            raise KeyStoreFormatError(
                "refusing to write clear keys: the key store is not marked test_only (give a passphrase)"
            )
        doc: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "test_only": self.test_only}
        if note:
            doc["note"] = note
        aead: AESGCM | None = None
        if passphrase is not None:
            params = ScryptParams(os.urandom(16), n=scrypt_n)
            aead = AESGCM(params.derive(passphrase))
            nonce = os.urandom(12)
            doc["kdf"] = {
                "name": "scrypt",
                "salt": params.salt.hex(),
                "n": params.n,
                "r": params.r,
                "p": params.p,
                "cipher": "AES-256-GCM",
                "check": (nonce + aead.encrypt(nonce, _VERIFIER, None)).hex(),
            }
        keys: dict[str, Any] = {}
        for name in self.names():
            entry = self._entries[name]
            kd: dict[str, Any] = {"type": entry.info.type, "usage": entry.info.usage}
            if entry.info.kcv is not None:
                kd["kcv"] = entry.info.kcv.hex().upper()
            if entry.public is not None:
                kd["modulus"] = entry.public.modulus_bytes.hex().upper()
                kd["exponent"] = entry.public.exponent_bytes.hex().upper()
            if aead is None:
                kd["value"] = entry.value.hex().upper()
            else:
                nonce = os.urandom(12)
                kd["encrypted"] = (nonce + aead.encrypt(nonce, entry.value, _aad(name, kd))).hex()
            keys[name] = kd
        doc["keys"] = keys
        doc.update({k: v for k, v in self.extra.items() if k not in doc})
        return doc

    def save(
        self, path: str | Path, passphrase: str | None = None, *, scrypt_n: int = 2**15, note: str = ""
    ) -> None:
        """Write the key store file (atomically: temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(passphrase, scrypt_n=scrypt_n, note=note), indent=1) + "\n")
        os.replace(tmp, path)

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], passphrase: str | None = None, *, source: str = "key store"
    ) -> SoftwareKeyStore:
        """Load from a parsed key store file; ``source`` names it in errors."""
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise KeyStoreFormatError(f"{source}: not a {FORMAT} version {FORMAT_VERSION} file")
        test_only = doc.get("test_only") is True
        keys = doc.get("keys")
        if not isinstance(keys, dict):
            raise KeyStoreFormatError(f"{source}: no 'keys' object")
        clear = [name for name, kd in keys.items() if isinstance(kd, dict) and "value" in kd]
        if clear and not test_only:
            raise KeyStoreFormatError(
                f"{source}: key {clear[0]!r} is stored in clear but the file is not marked "
                '"test_only": true; refusing to load it'
            )
        aead = _open_kdf(doc, passphrase, source) if any("encrypted" in kd for kd in keys.values()) else None
        store = cls(test_only=test_only)
        store.extra = {
            k: v for k, v in doc.items() if k not in ("format", "version", "test_only", "kdf", "keys")
        }
        for name, kd in keys.items():
            store._load_entry(name, kd, aead, source)
        return store

    @classmethod
    def load(cls, path: str | Path, passphrase: str | None = None) -> SoftwareKeyStore:
        """Load a key store file (see :meth:`from_json`)."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise KeyStoreFormatError(
                f"key store {str(path)!r}: cannot read it ({type(exc).__name__})"
            ) from None
        return cls.from_json(doc, passphrase, source=f"key store {str(path)!r}")

    def _load_entry(self, name: str, kd: Any, aead: AESGCM | None, source: str) -> None:
        where = f"{source}: key {name!r}"
        if not isinstance(kd, dict):
            raise KeyStoreFormatError(f"{where}: not an object")
        key_type, usage = kd.get("type"), kd.get("usage")
        if key_type not in KEY_TYPES:
            raise KeyStoreFormatError(f"{where}: unknown type {key_type!r}")
        if usage not in USAGES:
            raise KeyStoreFormatError(f"{where}: unknown usage {usage!r}")
        try:
            if "value" in kd:
                value = bytes.fromhex(kd["value"])
            elif "encrypted" in kd and aead is not None:
                blob = bytes.fromhex(kd["encrypted"])
                value = aead.decrypt(blob[:12], blob[12:], _aad(name, kd))
            else:
                raise KeyStoreFormatError(f"{where}: no value")
        except InvalidTag:
            raise KeyStoreFormatError(
                f"{where}: value or metadata tampered with (authentication failed)"
            ) from None
        except (ValueError, TypeError):
            raise KeyStoreFormatError(f"{where}: value is not hex") from None
        try:
            if key_type == "RSA":
                key = serialization.load_der_private_key(value, password=None)
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise ValueError
                info = self.add_rsa(name, usage, key)
                pub = self._entries[name].public
                assert pub is not None
                if kd.get("modulus", "").upper() != pub.modulus_bytes.hex().upper() or (
                    kd.get("exponent", "").upper() != pub.exponent_bytes.hex().upper()
                ):
                    raise KeyStoreFormatError(f"{where}: public key does not match the private key")
            else:
                info = self.add_symmetric(name, key_type, usage, value)
                if kd.get("kcv", "").upper() != (info.kcv or b"").hex().upper():
                    raise KeyStoreFormatError(f"{where}: check value does not match the key")
        except KeyStoreFormatError:
            raise
        except KeyStoreError as exc:
            raise KeyStoreFormatError(f"{source}: {exc}") from None
        except ValueError:
            raise KeyStoreFormatError(f"{where}: not a valid RSA private key") from None


def _open_kdf(doc: Mapping[str, Any], passphrase: str | None, source: str) -> AESGCM:
    kdf = doc.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt" or kdf.get("cipher") != "AES-256-GCM":
        raise KeyStoreFormatError(f"{source}: encrypted keys but no scrypt / AES-256-GCM 'kdf' section")
    if passphrase is None:
        raise WrongPassphraseError(f"{source}: keys are encrypted; a passphrase is needed")
    try:
        params = ScryptParams(bytes.fromhex(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        check = bytes.fromhex(kdf["check"])
        aead = AESGCM(params.derive(passphrase))
    except (KeyError, ValueError, TypeError):
        raise KeyStoreFormatError(f"{source}: malformed 'kdf' section") from None
    try:
        ok = hmac.compare_digest(aead.decrypt(check[:12], check[12:], None), _VERIFIER)
    except InvalidTag:
        ok = False
    if not ok:
        raise WrongPassphraseError(f"{source}: wrong passphrase (or a tampered 'kdf' section)")
    return aead


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", name):
        raise KeyStoreError(f"key name {name!r} is not 1–64 letters, digits, '_', '.', ':' or '-'")


def _check_usage(name: str, key_type: KeyType, usage: str) -> None:
    if usage not in USAGE_TYPES:
        raise KeyStoreError(f"key {name!r}: unknown usage {usage!r} (one of {', '.join(USAGES)})")
    if key_type not in USAGE_TYPES[usage]:
        raise KeyStoreError(
            f"key {name!r}: usage {usage} needs a key of type {' or '.join(USAGE_TYPES[usage])}, not {key_type}"
        )


# --------------------------------------------------------------------------- opening by name

PASSPHRASE_ENV = "CARDLAB_KEYSTORE_PASSPHRASE"
PIN_ENV = "CARDLAB_PKCS11_PIN"


def open_keystore(spec: str, passphrase: str | None = None) -> KeyStore:
    """Open the key store a command line names (``--keys K``):

    * a path: a software key store file; the passphrase is ``passphrase`` or
      the environment variable ``CARDLAB_KEYSTORE_PASSPHRASE``;
    * ``pkcs11:token=LABEL[;pin-env=VAR][;module=PATH]``: a PKCS#11 token; the
      PIN is read from the environment variable VAR (default
      ``CARDLAB_PKCS11_PIN``), never from the command line.
    """
    if spec.startswith("pkcs11:"):
        from cardlab.personalizer.keystore_pkcs11 import DEFAULT_LIBRARY, Pkcs11KeyStore

        fields: dict[str, str] = {}
        for part in spec[len("pkcs11:") :].split(";"):
            key, sep, value = part.partition("=")
            if not sep or key not in ("token", "pin-env", "module"):
                raise KeyStoreError(f"key store {spec!r}: expected token=, pin-env= or module=, not {part!r}")
            fields[key] = value
        if "token" not in fields:
            raise KeyStoreError(f"key store {spec!r}: no token=LABEL")
        pin_env = fields.get("pin-env", PIN_ENV)
        pin = os.environ.get(pin_env)
        if pin is None:
            raise KeyStoreError(f"key store {spec!r}: the PIN is read from ${pin_env}, which is not set")
        return Pkcs11KeyStore.open(fields["token"], pin, fields.get("module", DEFAULT_LIBRARY))
    return SoftwareKeyStore.load(
        spec, passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
    )

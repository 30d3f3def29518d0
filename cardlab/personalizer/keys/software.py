"""The software back end of the key store: keys held in this process, loaded
from and saved to a JSON file (``docs/keystore.md``). Clear keys only in files
marked ``"test_only": true``; otherwise every key value is encrypted with
AES-256-GCM under a key derived from a passphrase by scrypt (RFC 7914).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardlab.cardspec.keys import diversify
from cardlab.cardspec.rsa import CrtKey

from ..files import write_private
from .crypto import adjust_parity, aes_cbc_decrypt, aes_cbc_encrypt, des3_ecb_encrypt, des_kcv, symmetric_kcv
from .model import (
    FORMAT,
    FORMAT_VERSION,
    KEY_TYPES,
    USAGE_TYPES,
    USAGES,
    KeyInfo,
    KeyNotFoundError,
    KeyStoreError,
    KeyStoreFormatError,
    KeyType,
    KeyUsageError,
    RsaPublicKey,
    Usage,
    WrappedKey,
    WrongPassphraseError,
)
from .store import KeyStore

_SYMMETRIC_LENGTHS: Mapping[str, tuple[int, ...]] = {"DES3": (16, 24), "AES": (16, 24, 32)}


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
        self._rsa_numbers: dict[str, tuple[_Entry, CrtKey, int]] = {}
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
        icc_mk = adjust_parity(des3_ecb_encrypt(self._entry(imk_name).value, block))
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
            _, crt, size = cached
        else:
            priv = self._private_key(name).private_numbers()
            crt = CrtKey(priv.p, priv.q, priv.dmp1, priv.dmq1, priv.iqmp)
            size = (priv.public_numbers.n.bit_length() + 7) // 8
            self._rsa_numbers[name] = (entry, crt, size)
        # the raw private operation on GMP (cardlab.cardspec.rsa: OpenSSL offers no unpadded one)
        return crt.private(int.from_bytes(block, "big")).to_bytes(size, "big")

    def _private_key(self, name: str) -> rsa.RSAPrivateKey:
        # the entry was made by add_rsa from a key OpenSSL or _consistent_rsa checked
        key = serialization.load_der_private_key(self._entry(name).value, password=None,
                                                 unsafe_skip_rsa_key_validation=True)
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
        :func:`.pkcs11_token.import_keystore_into_token` and
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
        """Write the key store file: private (0600) from its first byte, atomically."""
        doc = json.dumps(self.to_json(passphrase, scrypt_n=scrypt_n, note=note), indent=1) + "\n"
        write_private(Path(path), doc.encode(), durable=True)

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
                info = self.add_rsa(name, usage, _consistent_rsa(value))
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


def _consistent_rsa(der: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key ``der`` (PKCS #1 or #8), its parts checked for consistency: n = p·q,
    d·e ≡ 1 modulo p−1 and q−1, the CRT exponents d mod (p−1) and d mod (q−1), and
    q·qInv ≡ 1 mod p. That is what a damaged or mismatched key would break. OpenSSL's own check at
    load also tests p and q for primality, 13–25 ms a key (a whole run's start for a key store
    of four issuer and CA keys); the keys were checked that way when they were made or imported
    (``ValueError``: not a consistent RSA key)."""
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    k = key.private_numbers()
    n, e = k.public_numbers.n, k.public_numbers.e
    p, q, d = k.p, k.q, k.d
    if not (
        p > 1 and q > 1 and p != q and p * q == n and e > 1
        and d * e % (p - 1) == 1 and d * e % (q - 1) == 1
        and k.dmp1 == d % (p - 1) and k.dmq1 == d % (q - 1) and q * k.iqmp % p == 1
    ):
        raise ValueError("inconsistent RSA key")
    return key


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

"""The issuer key store (JSON, docs/keystore.md; clear test keys or scrypt +
AES-256-GCM encrypted keys) → :class:`KeyStore`: only what certification needs
(IMKs, RSA public keys, CA public keys).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .fields import SourceError


@dataclass(frozen=True)
class CaKey:
    rid: bytes
    index: int
    modulus: int
    exponent: int


@dataclass
class KeyStore:
    """What certification may use of the issuer's key store. Secret values are
    kept out of ``repr`` and never enter evidence."""

    symmetric: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)  # name → (usage, key)
    rsa_public: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name → (usage, n, e)
    ca_keys: list[CaKey] = field(default_factory=list)
    issuer_certificates: list[dict[str, str]] = field(default_factory=list)
    path: str = ""

    def names(self) -> list[str]:
        return sorted(set(self.symmetric) | set(self.rsa_public))

    def symmetric_key(self, name: str | None, usage: str) -> tuple[str, bytes] | None:
        """(name actually used, key): by name; when the name is not in the store,
        the only key of that usage (noted in the evidence by the caller)."""
        if name and name in self.symmetric and self.symmetric[name][0] == usage:
            return name, self.symmetric[name][1]
        same = [(n, v) for n, (u, v) in self.symmetric.items() if u == usage]
        if len(same) == 1:
            return same[0]
        return None

    def rsa_key(self, name: str | None, usage: str) -> tuple[str, int, int] | None:
        if name and name in self.rsa_public and self.rsa_public[name][0] == usage:
            return name, self.rsa_public[name][1], self.rsa_public[name][2]
        same = [(n, k[1], k[2]) for n, k in self.rsa_public.items() if k[0] == usage]
        return same[0] if len(same) == 1 else None

    def ca_key(self, rid: bytes, index: int) -> CaKey | None:
        for k in self.ca_keys:
            if k.rid == rid and k.index == index:
                return k
        for k in self.ca_keys:  # a test CA under another RID (test AIDs)
            if k.index == index and not rid:
                return k
        return None


_AAD_FIELDS = ("type", "usage", "kcv", "modulus", "exponent")


def load_keystore(path: str | os.PathLike[str], passphrase: str | None = None) -> KeyStore:
    """Read the key store file of docs/keystore.md. Encrypted values need the
    passphrase (argument or ``$CARDLAB_KEYSTORE_PASSPHRASE``)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != "cardlab-keystore":
        raise SourceError(f"{path}: not a cardlab key store")
    aead: AESGCM | None = None
    entries = doc.get("keys") or {}
    if any("encrypted" in e for e in entries.values()):
        passphrase = passphrase if passphrase is not None else os.environ.get("CARDLAB_KEYSTORE_PASSPHRASE")
        kdf = doc.get("kdf") or {}
        if passphrase is None:
            raise SourceError(f"{path}: keys are encrypted; a passphrase is needed")
        if kdf.get("name") != "scrypt" or kdf.get("cipher") != "AES-256-GCM":
            raise SourceError(f"{path}: no scrypt / AES-256-GCM 'kdf' section")
        key = hashlib.scrypt(
            passphrase.encode(), salt=bytes.fromhex(kdf["salt"]), n=int(kdf["n"]), r=int(kdf["r"]),
            p=int(kdf["p"]), maxmem=256 * 1024 * 1024, dklen=32,
        )  # fmt: skip
        aead = AESGCM(key)
        check = bytes.fromhex(kdf["check"])
        try:
            aead.decrypt(check[:12], check[12:], None)
        except InvalidTag:
            raise SourceError(f"{path}: wrong passphrase") from None
    ks = KeyStore(path=str(path))
    test_only = bool(doc.get("test_only"))
    for name, e in entries.items():
        if "value" in e:
            if not test_only:
                raise SourceError(f"{path}: key {name!r} is in clear but the file is not test_only")
            value = bytes.fromhex(e["value"])
        elif "encrypted" in e and aead is not None:
            blob = bytes.fromhex(e["encrypted"])
            aad = json.dumps({"name": name, **{k: e[k] for k in _AAD_FIELDS if k in e}}, sort_keys=True).encode()
            try:
                value = aead.decrypt(blob[:12], blob[12:], aad)
            except InvalidTag:
                raise SourceError(f"{path}: key {name!r} tampered with") from None
        else:
            value = b""
        usage, ktype = str(e.get("usage", "")), str(e.get("type", ""))
        if ktype == "RSA":
            if "modulus" in e:
                ks.rsa_public[name] = (usage, int(e["modulus"], 16), int(e.get("exponent", "03"), 16))
            elif value:
                priv = serialization.load_der_private_key(value, None)
                assert isinstance(priv, rsa.RSAPrivateKey)
                pub = priv.public_key().public_numbers()
                ks.rsa_public[name] = (usage, pub.n, pub.e)
        elif value:
            ks.symmetric[name] = (usage, value)
    for c in doc.get("ca_public_keys") or []:
        ks.ca_keys.append(CaKey(bytes.fromhex(c["rid"]), int(c["index"], 16), int(c["modulus"], 16), int(c["exponent"], 16)))
    ks.issuer_certificates = list(doc.get("issuer_certificates") or [])
    return ks

"""What the key store deals in, without any key value: key types and usages,
the errors (their messages name keys, never values) and the values operations
return — :class:`KeyInfo`, :class:`RsaPublicKey`, :class:`WrappedKey` (a card key
under a transport key), :class:`IccKeys` and :class:`CardKeys`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

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

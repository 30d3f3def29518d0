"""The key store interface: :class:`KeyStore` checks names, usages and inputs,
and its back ends (:mod:`.software`, :mod:`.pkcs11_token`) implement the
``_``-prefixed primitives without ever returning a clear issuer key.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from .crypto import check_blocks, icc_mk_block, icc_mk_input, reencrypt, symmetric_kcv
from .model import (
    IMK_USAGES,
    WRAP_MECHANISM,
    CardKeys,
    IccKeys,
    KeyInfo,
    KeyStoreError,
    KeyType,
    KeyUsageError,
    Option,
    RsaPublicKey,
    TargetMode,
    WrappedKey,
)


#: diversified card keys kept by a key store (one per station's card in hand, and some)
_CARD_KEYS_KEPT = 8


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
        # the card in hand asks twice (the blank check's session, then the script's): the last few
        # cards' keys are kept, in memory only, for the life of this key store
        cache: dict[tuple[str, str, bytes], CardKeys] = self.__dict__.setdefault("_card_keys", {})
        found = cache.get((kmc_name, scheme, kdd))
        if found is None:
            enc, mac, dek = self._diversify(kmc_name, scheme, kdd)
            found = CardKeys(enc=enc, mac=mac, dek=dek, scheme=scheme)
            if len(cache) >= _CARD_KEYS_KEPT:
                del cache[next(iter(cache))]
            cache[(kmc_name, scheme, kdd)] = found
        return found

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
        check_blocks(data, 16, f"data to encrypt under {kek_name!r}")
        return self._crypt(kek_name, data, iv, encrypt=True)

    def decrypt(self, kek_name: str, data: bytes, iv: bytes = bytes(16)) -> bytes:
        """Inverse of :meth:`encrypt`."""
        self._require(kek_name, ("KEK",), "transport decryption")
        check_blocks(data, 16, f"data to decrypt under {kek_name!r}")
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

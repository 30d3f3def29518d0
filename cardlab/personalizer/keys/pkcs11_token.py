"""PKCS#11 back end of the key store (python-pkcs11; SoftHSM2 in the tests).

Issuer keys stay inside the token (``CKA_SENSITIVE``, not extractable) and
every operation is a token operation:

==========================  ===================================================
operation                   token mechanism
==========================  ===================================================
ICC master key (Option A/B) ``C_DeriveKey(CKM_DES3_ECB_ENCRYPT_DATA, Y ‖ Y⊕FF)``
                            → a session key (SoftHSM2 gives it odd parity), its
                            check value (``C_Encrypt(CKM_DES3_ECB, 00×8)``),
                            then ``C_WrapKey(CKM_AES_CBC,
                            IV 0)`` under the KEK; the session key is destroyed
GP EMV / VISA2 card keys    ``C_Encrypt(CKM_DES3_ECB)`` of the GP template
GP KDF3 card keys           ``C_Sign(CKM_AES_CMAC)`` of the KDF3 blocks
issuer / CA RSA             ``C_Sign(CKM_RSA_X_509)`` (raw RSA)
transport encrypt/decrypt   ``C_Encrypt/C_Decrypt(CKM_AES_CBC)``
check values                DES3: ``CKA_CHECK_VALUE``; AES: ``C_Encrypt(CKM_AES_ECB,
                            01×16)`` (the GP convention, not PKCS#11's 00×16)
==========================  ===================================================

A key is found by ``CKA_LABEL`` (its name); ``CKA_ID`` is ``b"cardlab:" +
usage``. SoftHSM2 2.6 wraps with AES-CBC / AES key wrap but not with DES3,
hence an AES transport key; GP card keys come out of the token in clear
because the host side of SCP03 uses them (see ``docs/keystore.md``).

python-pkcs11 0.10 only marshals ``CK_KEY_DERIVATION_STRING_DATA`` for
``CKM_AES_ECB_ENCRYPT_DATA``; for the DES3 mechanism we pass the structure as
raw parameter bytes built with :mod:`ctypes`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11.exceptions import GeneralError, NoSuchToken, PKCS11Error, UserAlreadyLoggedIn

from cardlab.cardspec.keys import KEY_TYPES as GP_KEY_TYPES
from .model import USAGES, KeyInfo, KeyNotFoundError, KeyStoreError, KeyType, RsaPublicKey, Usage, WrappedKey
from .software import SoftwareKeyStore
from .store import KeyStore

DEFAULT_LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"

_OPEN_ATTEMPTS = 6

#: library path → the process that initialised it (C_Initialize)
_INITIALISED_BY: dict[str, int] = {}


def _library(path: str) -> Any:
    """The PKCS#11 library, initialised in *this* process: a process forked after
    the parent used the library (the perso engine's stations) must call
    C_Finalize/C_Initialize again (PKCS#11 v2.40 §6.7.7) — SoftHSM2 otherwise
    fails now and then with CKR_GENERAL_ERROR."""
    lib = pkcs11.lib(path)
    pid = os.getpid()
    if _INITIALISED_BY.setdefault(path, pid) != pid:
        lib.reinitialize()
        _INITIALISED_BY[path] = pid
    return lib
ID_PREFIX = b"cardlab:"


class _DerivationString(ctypes.Structure):
    """CK_KEY_DERIVATION_STRING_DATA {CK_BYTE_PTR pData; CK_ULONG ulLen}."""

    _fields_ = [("pData", ctypes.c_void_p), ("ulLen", ctypes.c_ulong)]


class Pkcs11KeyStore(KeyStore):
    """A key store on a PKCS#11 token, through one logged-in session."""

    def __init__(self, session: pkcs11.Session) -> None:
        self._session = session
        self._infos: dict[str, KeyInfo] = {}
        self.refresh()

    @classmethod
    def open(cls, token_label: str, pin: str, library: str = DEFAULT_LIBRARY) -> Pkcs11KeyStore:
        """Log in to token ``token_label`` of PKCS#11 ``library``."""
        # SoftHSM2's file object store is read by every process that opens the token; when
        # several processes (the engine's stations) do so at the same moment, token discovery
        # now and then fails (CKR_GENERAL_ERROR, or the token is not listed). Opening is
        # read-only, so it is retried a few times with the library initialised afresh.
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                token = _library(library).get_token(token_label=token_label)
                try:
                    session = token.open(rw=True, user_pin=pin)
                except UserAlreadyLoggedIn:  # login is per process: another session of ours did it
                    session = token.open(rw=True)
                return cls(session)
            except (GeneralError, NoSuchToken) as exc:
                if attempt + 1 == _OPEN_ATTEMPTS:
                    raise KeyStoreError(
                        f"PKCS#11 token {token_label!r}: cannot open it ({type(exc).__name__})"
                    ) from None
                time.sleep(0.02 * (attempt + 1))
                with contextlib.suppress(PKCS11Error):
                    pkcs11.lib(library).reinitialize()
            except PKCS11Error as exc:
                raise KeyStoreError(
                    f"PKCS#11 token {token_label!r}: cannot open it ({type(exc).__name__})"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def session(self) -> pkcs11.Session:
        """The token session (for :func:`import_keystore_into_token`)."""
        return self._session

    def close(self) -> None:
        """Close the session."""
        self._session.close()

    # -- discovery

    def refresh(self) -> None:
        """Re-read the token's cardlab keys (after importing keys)."""
        infos: dict[str, KeyInfo] = {}
        for cls in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
            for obj in list(self._session.get_objects({Attribute.CLASS: cls})):  # no C_Encrypt while finding
                ident = bytes(obj[Attribute.ID])
                if not ident.startswith(ID_PREFIX):
                    continue
                usage = ident[len(ID_PREFIX) :].decode("ascii", "replace")
                name = str(obj[Attribute.LABEL])
                if usage not in USAGES:
                    raise KeyStoreError(f"token key {name!r}: unknown usage {usage!r}")
                infos[name] = self._read_info(obj, name, usage)
        self._infos = infos

    def _read_info(self, obj: Any, name: str, usage: Usage) -> KeyInfo:
        if obj[Attribute.CLASS] == ObjectClass.PRIVATE_KEY:
            return KeyInfo(
                name, "RSA", usage, int.from_bytes(obj[Attribute.MODULUS], "big").bit_length(), None
            )
        p11type = obj[Attribute.KEY_TYPE]
        key_type: KeyType
        if p11type in (P11KeyType.DES2, P11KeyType.DES3):  # no CKA_VALUE_LEN for DES keys
            key_type, kcv = "DES3", bytes(obj[Attribute.CHECK_VALUE])[:3]
            length = 16 if p11type == P11KeyType.DES2 else 24
        elif p11type == P11KeyType.AES:
            key_type, length = "AES", int(obj[Attribute.VALUE_LEN])
            kcv = bytes(obj.encrypt(b"\x01" * 16, mechanism=Mechanism.AES_ECB))[:3]
        else:
            raise KeyStoreError(f"token key {name!r}: unsupported key type {p11type!r}")
        return KeyInfo(name, key_type, usage, length, kcv)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._infos))

    def info(self, name: str) -> KeyInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyNotFoundError(f"no key {name!r} on the token") from None

    def _key(self, name: str) -> Any:
        info = self.info(name)
        cls = ObjectClass.PRIVATE_KEY if info.type == "RSA" else ObjectClass.SECRET_KEY
        try:
            return self._session.get_key(object_class=cls, label=name, id=ID_PREFIX + info.usage.encode())
        except PKCS11Error as exc:
            raise KeyStoreError(f"token key {name!r}: {type(exc).__name__}") from None

    def _token_error(self, name: str, operation: str, exc: PKCS11Error) -> KeyStoreError:
        return KeyStoreError(f"token key {name!r}: {operation} failed ({type(exc).__name__})")

    # -- operations

    def _derive_wrapped(self, imk_name: str, block: bytes, kek_name: str, kek: KeyInfo) -> WrappedKey:
        imk, kek_obj = self._key(imk_name), self._key(kek_name)
        buffer = ctypes.create_string_buffer(block, len(block))
        param = bytes(_DerivationString(ctypes.cast(buffer, ctypes.c_void_p), len(block)))
        try:
            icc_mk = imk.derive_key(
                P11KeyType.DES2,
                128,
                mechanism=Mechanism.DES3_ECB_ENCRYPT_DATA,
                mechanism_param=param,
                template={
                    Attribute.VALUE_LEN: pkcs11.DEFAULT,  # SoftHSM2 refuses VALUE_LEN for DES keys
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: True,
                    Attribute.ENCRYPT: True,  # for its check value only; the object lives for this call
                    Attribute.DECRYPT: False,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                    Attribute.DERIVE: False,
                },
            )
        except PKCS11Error as exc:
            raise self._token_error(imk_name, "ICC master key derivation", exc) from None
        finally:
            del buffer
        try:
            # SoftHSM2's CKA_CHECK_VALUE of a derived DES key is not 3DES(key, 00×8): compute it
            kcv = bytes(icc_mk.encrypt(bytes(8), mechanism=Mechanism.DES3_ECB))[:3]
            value = kek_obj.wrap_key(icc_mk, mechanism=Mechanism.AES_CBC, mechanism_param=bytes(16))
        except PKCS11Error as exc:
            raise self._token_error(kek_name, "wrapping the ICC master key", exc) from None
        finally:
            icc_mk.destroy()
        assert kek.kcv is not None
        return WrappedKey(kek=kek_name, kek_kcv=kek.kcv, value=bytes(value), kcv=kcv)

    def _diversify(self, kmc_name: str, scheme: str, kdd: bytes) -> tuple[bytes, bytes, bytes]:
        kmc, length = self._key(kmc_name), self.info(kmc_name).length
        out: list[bytes] = []
        try:
            for key_type in (GP_KEY_TYPES["ENC"], GP_KEY_TYPES["MAC"], GP_KEY_TYPES["DEK"]):
                if scheme == "KDF3":
                    value = b""
                    counter = 1
                    while len(value) < length:
                        data = bytes((counter, 0, 0, 0, key_type, 0)) + kdd
                        value += bytes(kmc.sign(data, mechanism=Mechanism.AES_CMAC))
                        counter += 1
                    out.append(value[:length])
                else:
                    part = kdd[4:10] if scheme == "EMV" else kdd[0:2] + kdd[4:8]
                    template = part + bytes((0xF0, key_type)) + part + bytes((0x0F, key_type))
                    out.append(bytes(kmc.encrypt(template, mechanism=Mechanism.DES3_ECB)))
        except PKCS11Error as exc:
            raise self._token_error(kmc_name, f"{scheme} diversification", exc) from None
        return out[0], out[1], out[2]

    def _rsa_sign_raw(self, name: str, block: bytes) -> bytes:
        try:
            return bytes(self._key(name).sign(block, mechanism=Mechanism.RSA_X_509))
        except PKCS11Error as exc:
            raise self._token_error(name, "RSA signing", exc) from None

    def public_key(self, name: str) -> RsaPublicKey:
        info = self.info(name)
        if info.type != "RSA":
            raise KeyStoreError(f"key {name!r} is an {info.type} key, not an RSA key")
        key = self._key(name)
        return RsaPublicKey(
            int.from_bytes(key[Attribute.MODULUS], "big"),
            int.from_bytes(key[Attribute.PUBLIC_EXPONENT], "big"),
        )

    def _crypt(self, kek_name: str, data: bytes, iv: bytes, encrypt: bool) -> bytes:
        key = self._key(kek_name)
        try:
            if encrypt:
                return bytes(key.encrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=iv))
            return bytes(key.decrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=iv))
        except PKCS11Error as exc:
            raise self._token_error(kek_name, "encryption" if encrypt else "decryption", exc) from None


# --------------------------------------------------------------------------- import


def _capabilities(usage: str, key_type: KeyType) -> dict[Attribute, bool]:
    caps = dict.fromkeys(
        (Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.UNWRAP, Attribute.SIGN, Attribute.VERIFY,
         Attribute.DERIVE),
        False,
    )  # fmt: skip
    if usage.startswith("IMK-"):
        caps[Attribute.DERIVE] = True
    elif usage == "KMC":
        caps[Attribute.ENCRYPT] = True  # DES3 templates; AES: the GP check value
        caps[Attribute.SIGN] = key_type == "AES"  # CMAC for KDF3
    elif usage == "KEK":
        caps.update(
            dict.fromkeys((Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.UNWRAP), True)
        )
    return caps


def import_keystore_into_token(
    soft_store: SoftwareKeyStore, token: pkcs11.Session | Pkcs11KeyStore, names: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Copy keys (all, or ``names``) from a software key store onto a token as
    sensitive, non-extractable token objects; RSA keys also get their public
    key object. ``token`` is a logged-in read-write session or a
    :class:`Pkcs11KeyStore` (refreshed afterwards). Refuses to overwrite a key
    of the same name. Returns the names imported."""
    session = token.session if isinstance(token, Pkcs11KeyStore) else token
    existing = {str(o[Attribute.LABEL]) for o in _cardlab_objects(session)}
    chosen = tuple(soft_store.names() if names is None else names)
    for name in chosen:
        info = soft_store.info(name)
        if name in existing:
            raise KeyStoreError(f"token already holds a key {name!r}; not overwriting it")
        common = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.LABEL: name,
            Attribute.ID: ID_PREFIX + info.usage.encode(),
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
        }
        try:
            if info.type == "RSA":
                _import_rsa(session, soft_store, name, common)
            else:
                value = soft_store.clear_value(name)
                p11type = (
                    P11KeyType.AES
                    if info.type == "AES"
                    else (P11KeyType.DES2 if len(value) == 16 else P11KeyType.DES3)
                )
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: p11type,
                        Attribute.VALUE: value,
                        **common,
                        **_capabilities(info.usage, info.type),
                    }
                )
        except PKCS11Error as exc:
            raise KeyStoreError(
                f"importing key {name!r} into the token failed ({type(exc).__name__})"
            ) from None
    if isinstance(token, Pkcs11KeyStore):
        token.refresh()
    return chosen


def _import_rsa(
    session: pkcs11.Session, soft_store: SoftwareKeyStore, name: str, common: dict[Attribute, Any]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_der_private_key(soft_store.clear_value(name), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    priv = key.private_numbers()
    pub = priv.public_numbers
    size = (pub.n.bit_length() + 7) // 8

    def b(x: int) -> bytes:
        return x.to_bytes(max(1, (x.bit_length() + 7) // 8), "big")

    session.create_object(
        {
            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
            Attribute.KEY_TYPE: P11KeyType.RSA,
            Attribute.MODULUS: pub.n.to_bytes(size, "big"),
            Attribute.PUBLIC_EXPONENT: b(pub.e),
            Attribute.PRIVATE_EXPONENT: b(priv.d),
            Attribute.PRIME_1: b(priv.p),
            Attribute.PRIME_2: b(priv.q),
            Attribute.EXPONENT_1: b(priv.dmp1),
            Attribute.EXPONENT_2: b(priv.dmq1),
            Attribute.COEFFICIENT: b(priv.iqmp),
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
            **common,
        }
    )
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: P11KeyType.RSA,
            Attribute.MODULUS: pub.n.to_bytes(size, "big"),
            Attribute.PUBLIC_EXPONENT: b(pub.e),
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.TOKEN: True,
            Attribute.LABEL: name,
            Attribute.ID: common[Attribute.ID],
        }
    )


def _cardlab_objects(session: pkcs11.Session) -> Iterator[Any]:
    for cls in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
        for obj in session.get_objects({Attribute.CLASS: cls}):
            if bytes(obj[Attribute.ID]).startswith(ID_PREFIX):
                yield obj

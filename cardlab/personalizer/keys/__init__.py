"""The issuer key store: named keys and the operations data preparation needs,
without the clear key ever leaving the back end.

Two back ends implement :class:`KeyStore`:

* :class:`SoftwareKeyStore` (:mod:`.software`) — a JSON file (``docs/keystore.md``). Clear keys
  only in files marked ``"test_only": true``; otherwise every key value is
  encrypted with AES-256-GCM under a key derived from a passphrase by scrypt.
* :class:`.pkcs11_token.Pkcs11KeyStore` — a PKCS#11 token
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


Modules, each importing only those above it (``pkcs11_token`` is imported on
demand: this package does not load python-pkcs11 until a token is opened):

=================  ==========================================================
``model``          key types and usages, errors, the values operations return
``crypto``         pure functions: parity, check values, Option A/B inputs,
                   AES-CBC, re-encryption under a card key
``store``          :class:`KeyStore`, the interface both back ends implement
``software``       :class:`SoftwareKeyStore` and its file format
``pkcs11_token``   :class:`~.pkcs11_token.Pkcs11KeyStore`, token import
``opening``        :func:`open_keystore`: a ``--keys`` argument → a key store
=================  ==========================================================
"""

from __future__ import annotations

from .crypto import (
    adjust_parity,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    aes_kcv,
    des_kcv,
    icc_mk_block,
    icc_mk_input,
    option_a_input,
    option_b_input,
    reencrypt,
    symmetric_kcv,
)
from .model import (
    FORMAT,
    FORMAT_VERSION,
    IMK_USAGES,
    KEY_TYPES,
    USAGE_TYPES,
    USAGES,
    WRAP_MECHANISM,
    CardKeys,
    IccKeys,
    KeyInfo,
    KeyNotFoundError,
    KeyStoreError,
    KeyStoreFormatError,
    KeyType,
    KeyUsageError,
    Option,
    RsaPublicKey,
    Scheme,
    TargetMode,
    Usage,
    WrappedKey,
    WrongPassphraseError,
)
from .opening import PASSPHRASE_ENV, PIN_ENV, open_keystore
from .software import ScryptParams, SoftwareKeyStore
from .store import KeyStore

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IMK_USAGES",
    "KEY_TYPES",
    "PASSPHRASE_ENV",
    "PIN_ENV",
    "USAGES",
    "USAGE_TYPES",
    "WRAP_MECHANISM",
    "CardKeys",
    "IccKeys",
    "KeyInfo",
    "KeyNotFoundError",
    "KeyStore",
    "KeyStoreError",
    "KeyStoreFormatError",
    "KeyType",
    "KeyUsageError",
    "Option",
    "RsaPublicKey",
    "Scheme",
    "ScryptParams",
    "SoftwareKeyStore",
    "TargetMode",
    "Usage",
    "WrappedKey",
    "WrongPassphraseError",
    "adjust_parity",
    "aes_cbc_decrypt",
    "aes_cbc_encrypt",
    "aes_kcv",
    "des_kcv",
    "icc_mk_block",
    "icc_mk_input",
    "open_keystore",
    "option_a_input",
    "option_b_input",
    "reencrypt",
    "symmetric_kcv",
]

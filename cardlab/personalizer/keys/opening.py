"""Opening the key store a command line names (``--keys K``): a software key
store file, or a PKCS#11 token (whose module, :mod:`.pkcs11_token`, is imported
only when one is named).
"""

from __future__ import annotations

import os

from .model import KeyStoreError
from .software import SoftwareKeyStore
from .store import KeyStore

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
        from .pkcs11_token import DEFAULT_LIBRARY, Pkcs11KeyStore

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

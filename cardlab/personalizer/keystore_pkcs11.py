"""The PKCS#11 back end of the key store moved to
:mod:`cardlab.personalizer.keys.pkcs11_token`; this name stays importable for
existing scripts (README, ``docs/keystore.md``)."""

from __future__ import annotations

from cardlab.personalizer.keys.pkcs11_token import (
    DEFAULT_LIBRARY,
    ID_PREFIX,
    Pkcs11KeyStore,
    import_keystore_into_token,
)

__all__ = ["DEFAULT_LIBRARY", "ID_PREFIX", "Pkcs11KeyStore", "import_keystore_into_token"]

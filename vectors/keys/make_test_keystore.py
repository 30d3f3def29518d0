"""Regenerate ``vectors/test-keystore.json`` — TEST ONLY keys, all public.

    /tmp/venv/bin/python vectors/keys/make_test_keystore.py

The CA and issuer RSA keys are those of ``vectors/test-ca.json`` (shared with
the EMV tests, not generated again); the symmetric keys are public test values
(``/work/shared/reference-vectors.md``). The issuer public key certificate is
built here per EMV 4.4 Book 2 §5.3 Table 13 and signed through the key store's
``rsa_sign_raw`` with the test CA key. Running it twice gives the same file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from cardlab.personalizer.keys import SoftwareKeyStore

VECTORS = Path(__file__).resolve().parents[1]

NOTE = (
    "TEST ONLY — THESE KEYS ARE PUBLIC. NEVER USE THEM FOR REAL CARDS. "
    "cardlab's test key store: clear keys are allowed only because this file is marked test_only. "
    "Test CA: RID F000000001 (no payment system uses the F0 prefix), index F1; "
    "issuer BIN 999999 (issuer identifier 999999FF)."
)
SOURCE = (
    "IMK-AC/SMI/SMC: Visa CVN10 example of pyemv tests/test_cvn_hsm.py; KMC: GlobalPlatform test key "
    "404142…4F (GlobalPlatformPro); KEK: the AES-128 key of NIST SP 800-38A F.1; CA and issuer RSA keys: "
    "vectors/test-ca.json; issuer certificate: EMV 4.4 Book 2 §5.3 Table 13, made by vectors/keys/make_test_keystore.py"
)

SYMMETRIC = (
    ("IMK-AC", "DES3", "IMK-AC", "0123456789ABCDEFFEDCBA9876543210"),
    ("IMK-SMI", "DES3", "IMK-SMI", "FEDCBA98765432100123456789ABCDEF"),
    ("IMK-SMC", "DES3", "IMK-SMC", "89ABCDEF0123456776543210FEDCBA98"),
    ("KMC", "AES", "KMC", "404142434445464748494A4B4C4D4E4F"),
    ("KMC-3DES", "DES3", "KMC", "404142434445464748494A4B4C4D4E4F"),
    ("KEK", "AES", "KEK", "2B7E151628AED2A6ABF7158809CF4F3C"),
)

#: the per-product key names of the sample profiles (vectors/profiles/*.yaml), so that
#: ``cardlab perso prepare --keys vectors/test-keystore.json`` works on them as shipped:
#: each is the same TEST key as the generic name it copies (alias → generic name).
ALIASES = (
    *((f"TEST-VISA-{app}-IMK-{k}", f"IMK-{k}") for app in ("CREDIT", "DEBIT") for k in ("AC", "SMI", "SMC")),
    *((f"TEST-MC-IMK-{k}", f"IMK-{k}") for k in ("AC", "SMI", "SMC")),
    ("TEST-KMC-VISA", "KMC"),  # AES, KDF3 (visa-cvn18.yaml)
    ("TEST-KMC-MC", "KMC-3DES"),  # DES3, EMV diversification (mastercard-cvn16.yaml)
    ("TEST-VISA-ISSUER-RSA", "ISSUER"),
    ("TEST-MC-ISSUER-RSA", "ISSUER"),
)

ISSUER_BIN = "999999"
CERT_EXPIRY = "1249"  # MMYY: December 2049
CERT_SERIAL = "000001"


def _rsa_key(doc: dict[str, str]) -> rsa.RSAPrivateKey:
    n, e, d = int(doc["modulus"], 16), int(doc["exponent"], 16), int(doc["d"], 16)
    p, q = int(doc["p"], 16), int(doc["q"], 16)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n),
    )
    return numbers.private_key()


def issuer_certificate(store: SoftwareKeyStore, ca: str, issuer: str) -> dict[str, str]:
    """EMV Book 2 §5.3 Table 13, signed with ``ca``'s private key."""
    n_ca = (store.public_key(ca).modulus.bit_length() + 7) // 8
    pub = store.public_key(issuer)
    modulus, exponent = pub.modulus_bytes, pub.exponent_bytes
    issuer_id = bytes.fromhex(ISSUER_BIN.ljust(8, "F"))
    room = n_ca - 36
    leftmost, remainder = modulus[:room], modulus[room:]
    header = (
        b"\x02" + issuer_id + bytes.fromhex(CERT_EXPIRY) + bytes.fromhex(CERT_SERIAL)
        + b"\x01\x01" + bytes((len(modulus), len(exponent)))
    )  # fmt: skip
    body = header + leftmost.ljust(room, b"\xbb")
    digest = hashlib.sha1(body + remainder + exponent).digest()
    certificate = store.rsa_sign_raw(ca, b"\x6a" + body + digest + b"\xbc")
    return {
        "issuer_key": issuer,
        "ca_key": ca,
        "ca_index": "F1",
        "issuer_identifier": issuer_id.hex().upper(),
        "expiry_mmyy": CERT_EXPIRY,
        "serial": CERT_SERIAL,
        "hash_algorithm": "01",
        "pk_algorithm": "01",
        "certificate_90": certificate.hex().upper(),
        "remainder_92": remainder.hex().upper(),
        "exponent_9F32": exponent.hex().upper(),
    }


def build() -> SoftwareKeyStore:
    """The test key store, in memory."""
    ca_doc = json.loads((VECTORS / "test-ca.json").read_text())
    store = SoftwareKeyStore(test_only=True)
    for name, key_type, usage, value in SYMMETRIC:
        store.add_symmetric(name, key_type, usage, bytes.fromhex(value))  # type: ignore[arg-type]
    store.add_rsa("CA", "CA", _rsa_key(ca_doc["ca"]))
    store.add_rsa("ISSUER", "ISSUER", _rsa_key(ca_doc["issuer"]))
    for alias, name in ALIASES:
        info = store.info(name)
        if info.type == "RSA":
            store.add_rsa(alias, info.usage, _rsa_key(ca_doc["issuer"]))  # type: ignore[arg-type]
        else:
            store.add_symmetric(alias, info.type, info.usage, store.clear_value(name))  # type: ignore[arg-type]
    rid, index = ca_doc["ca"]["rid"], ca_doc["ca"]["index"]
    ca = store.public_key("CA")
    checksum = hashlib.sha1(bytes.fromhex(rid + index) + ca.modulus_bytes + ca.exponent_bytes).hexdigest()
    store.extra = {
        "source": SOURCE,
        "ca_public_keys": [
            {
                "key": "CA",
                "rid": rid,
                "index": index,
                "modulus": ca.modulus_bytes.hex().upper(),
                "exponent": ca.exponent_bytes.hex().upper(),
                "checksum": checksum.upper(),
            }
        ],
        "issuer_certificates": [issuer_certificate(store, "CA", "ISSUER")],
    }
    return store


def main() -> None:
    build().save(VECTORS / "test-keystore.json", note=NOTE)


if __name__ == "__main__":
    main()

"""Key store: software file format (test-only clear, passphrase-encrypted),
known answers (ICC master keys, GP diversification, the shipped issuer
certificate recovered with plain integer RSA), and the same operations through
a SoftHSM2 token created here.

(Named test_keystore.py: tests/cardspec/test_keys.py already uses the basename
and the test directories are not packages.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.cardspec.keys import diversify
from cardlab.cardspec.keys import kcv as gp_kcv
from cardlab.personalizer.keys import (
    KeyNotFoundError,
    KeyStore,
    KeyStoreError,
    KeyStoreFormatError,
    KeyUsageError,
    Option,
    SoftwareKeyStore,
    WrappedKey,
    WrongPassphraseError,
    adjust_parity,
    des_kcv,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
KEYSTORE = VECTORS / "test-keystore.json"
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
FAST_SCRYPT = 2**10  # tests only: the default (2**15) costs ~0.1 s per load

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN17, PSN = "12345678901234567", "01"
ICC_MK_A = "73AD54688CEF2934B0979857E3C719F1"  # reference-vectors.md (pyemv docstrings)
ICC_MK_B = "AD406D7F6D7570916D75E5DCAB8CF737"
KDD = bytes.fromhex("00010203040506070809")


@pytest.fixture(scope="module")
def soft() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(KEYSTORE)


# --------------------------------------------------------------------------- the shipped file


def test_shipped_file_is_marked_test_only() -> None:
    doc = json.loads(KEYSTORE.read_text())
    assert doc["test_only"] is True
    assert doc["note"].startswith("TEST ONLY — THESE KEYS ARE PUBLIC")
    assert "source" in doc


def test_shipped_file_is_reproducible() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_test_keystore", VECTORS / "keys" / "make_test_keystore.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build().to_json(note=module.NOTE) == json.loads(KEYSTORE.read_text())


def test_rsa_keys_are_those_of_test_ca_json(soft: SoftwareKeyStore) -> None:
    ca_doc = json.loads((VECTORS / "test-ca.json").read_text())
    for name, part in (("CA", "ca"), ("ISSUER", "issuer")):
        n, e = soft.public_key(name)
        assert (n, e) == (int(ca_doc[part]["modulus"], 16), int(ca_doc[part]["exponent"], 16))


def test_names_and_kcvs(soft: SoftwareKeyStore) -> None:
    generic = ("CA", "IMK-AC", "IMK-SMC", "IMK-SMI", "ISSUER", "KEK", "KMC", "KMC-3DES")
    # plus the sample profiles' per-product names, each a copy of a generic test key
    assert tuple(n for n in soft.names() if not n.startswith("TEST-")) == generic
    assert {n for n in soft.names() if n.startswith("TEST-")} >= {"TEST-KMC-VISA", "TEST-MC-IMK-AC"}
    # independent check values (pycryptodome via cardspec)
    assert soft.kcv("IMK-AC") == gp_kcv("DES", IMK)
    assert soft.kcv("KMC") == gp_kcv("AES", bytes.fromhex("404142434445464748494A4B4C4D4E4F"))
    assert (
        soft.kcv("KEK").hex().upper()
        == gp_kcv("AES", bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")).hex().upper()
    )
    assert soft.info("ISSUER").length == 1152 and soft.info("CA").length == 1408
    with pytest.raises(KeyUsageError, match="'ISSUER'.*no check value"):
        soft.kcv("ISSUER")


# --------------------------------------------------------------------------- file format


def test_round_trip_test_only(soft: SoftwareKeyStore, tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    soft.save(path)
    again = SoftwareKeyStore.load(path)
    assert again.names() == soft.names()
    assert [again.info(n) for n in again.names()] == [soft.info(n) for n in soft.names()]
    assert again.extra["issuer_certificates"] == soft.extra["issuer_certificates"]


def test_passphrase_round_trip(soft: SoftwareKeyStore, tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    prod = SoftwareKeyStore.from_json(soft.to_json())
    prod.test_only = False
    prod.save(path, "correct horse", scrypt_n=FAST_SCRYPT)
    text = path.read_text()
    doc = json.loads(text)
    assert doc["test_only"] is False and doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == FAST_SCRYPT
    assert all("value" not in kd and "encrypted" in kd for kd in doc["keys"].values())
    for name in ("IMK-AC", "KMC", "KEK"):
        assert soft.clear_value(name).hex().upper() not in text.upper()
    again = SoftwareKeyStore.load(path, "correct horse")
    assert [again.info(n) for n in again.names()] == [soft.info(n) for n in soft.names()]
    assert again.rsa_sign_raw("ISSUER", b"\x6a" + bytes(143)) == soft.rsa_sign_raw(
        "ISSUER", b"\x6a" + bytes(143)
    )


@pytest.fixture(scope="module")
def encrypted_doc(soft: SoftwareKeyStore) -> dict[str, Any]:
    store = SoftwareKeyStore.from_json(soft.to_json())
    store.test_only = False
    return store.to_json("s3cret", scrypt_n=FAST_SCRYPT)


def test_wrong_or_missing_passphrase(encrypted_doc: dict[str, Any]) -> None:
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        SoftwareKeyStore.from_json(encrypted_doc, "S3cret")
    with pytest.raises(WrongPassphraseError, match="passphrase is needed"):
        SoftwareKeyStore.from_json(encrypted_doc)


def test_tampered_value_or_metadata(encrypted_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(encrypted_doc))
    blob = bytearray(bytes.fromhex(doc["keys"]["IMK-SMI"]["encrypted"]))
    blob[20] ^= 1
    doc["keys"]["IMK-SMI"]["encrypted"] = blob.hex()
    with pytest.raises(KeyStoreFormatError, match="'IMK-SMI'.*tampered") as err:
        SoftwareKeyStore.from_json(doc, "s3cret")
    assert "s3cret" not in str(err.value)
    # swapping usages (metadata is authenticated with the value)
    doc = json.loads(json.dumps(encrypted_doc))
    doc["keys"]["IMK-AC"]["usage"] = "KEK"
    with pytest.raises(KeyStoreFormatError, match="'IMK-AC'"):
        SoftwareKeyStore.from_json(doc, "s3cret")
    # moving an encrypted value under another name
    doc = json.loads(json.dumps(encrypted_doc))
    doc["keys"]["IMK-SMC"]["encrypted"] = doc["keys"]["IMK-AC"]["encrypted"]
    with pytest.raises(KeyStoreFormatError, match="'IMK-SMC'.*tampered"):
        SoftwareKeyStore.from_json(doc, "s3cret")


def test_refuses_clear_keys_in_non_test_file(soft: SoftwareKeyStore, tmp_path: Path) -> None:
    doc = soft.to_json()
    doc["test_only"] = False
    path = tmp_path / "prod.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyStoreFormatError, match=r"key 'CA' is stored in clear.*not marked"):
        SoftwareKeyStore.load(path)
    del doc["test_only"]
    with pytest.raises(KeyStoreFormatError, match="stored in clear"):
        SoftwareKeyStore.from_json(doc)
    prod = SoftwareKeyStore()
    prod.add_symmetric("KEK", "AES", "KEK", bytes(16))
    with pytest.raises(KeyStoreFormatError, match="refusing to write clear keys"):
        prod.save(tmp_path / "x.json")


def test_clear_kcv_mismatch_and_malformed(soft: SoftwareKeyStore) -> None:
    doc = soft.to_json()
    doc["keys"]["KMC"]["kcv"] = "000000"
    with pytest.raises(KeyStoreFormatError, match="'KMC': check value does not match"):
        SoftwareKeyStore.from_json(doc)
    doc = soft.to_json()
    doc["keys"]["IMK-AC"]["value"] = "0123"
    with pytest.raises(KeyStoreFormatError, match="'IMK-AC'.*16 or 24 bytes"):
        SoftwareKeyStore.from_json(doc)
    doc = soft.to_json()
    doc["keys"]["ISSUER"]["modulus"] = doc["keys"]["CA"]["modulus"]
    with pytest.raises(KeyStoreFormatError, match="'ISSUER': public key does not match"):
        SoftwareKeyStore.from_json(doc)
    with pytest.raises(KeyStoreFormatError, match="not a cardlab-keystore"):
        SoftwareKeyStore.from_json({"keys": {}})


def test_an_inconsistent_rsa_key_is_refused(soft: SoftwareKeyStore) -> None:
    """The store checks each RSA key's parts for consistency when it loads (n = p·q, d against
    e, the CRT exponents and coefficient), not primality (OpenSSL's check, tens of ms a key):
    a key with any part damaged is refused, naming the key and never a value."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    good = serialization.load_der_private_key(bytes.fromhex(soft.to_json()["keys"]["ISSUER"]["value"]), None)
    assert isinstance(good, rsa.RSAPrivateKey)
    k = good.private_numbers()
    pub = k.public_numbers
    damaged = {
        "iqmp": rsa.RSAPrivateNumbers(k.p, k.q, k.d, k.dmp1, k.dmq1, k.iqmp + 1, pub),
        "dmp1": rsa.RSAPrivateNumbers(k.p, k.q, k.d, k.dmp1 ^ 2, k.dmq1, k.iqmp, pub),
        "d": rsa.RSAPrivateNumbers(k.p, k.q, k.d + 2, k.dmp1, k.dmq1, k.iqmp, pub),
    }
    for what, numbers in damaged.items():
        der = numbers.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        doc = soft.to_json()
        doc["keys"]["ISSUER"]["value"] = der.hex().upper()
        with pytest.raises(KeyStoreFormatError, match="'ISSUER': not a valid RSA private key") as err:
            SoftwareKeyStore.from_json(doc)
        assert der.hex().upper()[-40:] not in str(err.value), what
    # and the consistent key loads and signs as before
    assert SoftwareKeyStore.from_json(soft.to_json()).rsa_sign_raw("ISSUER", b"\x01" * (good.key_size // 8)) \
        == soft.rsa_sign_raw("ISSUER", b"\x01" * (good.key_size // 8))


def test_usage_and_type_rules() -> None:
    store = SoftwareKeyStore(test_only=True)
    with pytest.raises(KeyStoreError, match="'X': usage KEK needs a key of type AES, not DES3"):
        store.add_symmetric("X", "DES3", "KEK", IMK)
    with pytest.raises(KeyStoreError, match="'X': a AES key is 16 or 24 or 32 bytes, not 8"):
        store.add_symmetric("X", "AES", "KEK", bytes(8))


# --------------------------------------------------------------------------- errors never show keys


def test_errors_name_the_key_not_the_value(soft: SoftwareKeyStore) -> None:
    with pytest.raises(KeyNotFoundError, match="no key 'IMK-XX'"):
        soft.info("IMK-XX")
    with pytest.raises(KeyUsageError, match="key 'KEK' has usage KEK; ICC master key derivation needs"):
        soft.derive_icc_master_key("KEK", PAN17, PSN, "KEK")
    with pytest.raises(KeyUsageError, match="key 'IMK-AC' has usage IMK-AC; wrapping needs"):
        soft.derive_icc_master_key("IMK-AC", PAN17, PSN, "IMK-AC")
    with pytest.raises(KeyUsageError, match="'KMC' is an AES key; EMV diversification needs DES3"):
        soft.diversify_card_keys("KMC", "EMV", KDD)
    with pytest.raises(ValueError, match="'ISSUER': block to sign is 3 bytes, the modulus 144"):
        soft.rsa_sign_raw("ISSUER", b"abc")
    with pytest.raises(ValueError, match="not below the modulus"):
        soft.rsa_sign_raw("ISSUER", b"\xff" * 144)
    with pytest.raises(ValueError, match="PAN must be"):
        soft.derive_icc_master_key("IMK-AC", "12a4", PSN, "KEK")
    card = soft.diversify_card_keys("KMC", "KDF3", KDD)
    assert card.enc.hex() not in repr(card) and card.enc.hex().upper() not in repr(card)


# --------------------------------------------------------------------------- known answers


def _imk_store() -> SoftwareKeyStore:
    store = SoftwareKeyStore(test_only=True)
    store.add_symmetric("IMK", "DES3", "IMK-AC", IMK)
    store.add_symmetric("KEK", "AES", "KEK", bytes(range(16)))
    return store


@pytest.mark.parametrize(("option", "expected"), [("A", ICC_MK_A), ("B", ICC_MK_B)])
def test_icc_master_key_known_answers(option: str, expected: str) -> None:
    store = _imk_store()
    wrapped = store.derive_icc_master_key("IMK", PAN17, PSN, "KEK", option)  # type: ignore[arg-type]
    assert store.decrypt("KEK", wrapped.value).hex().upper() == expected
    assert wrapped.kcv == des_kcv(bytes.fromhex(expected))
    assert wrapped.kek == "KEK" and wrapped.kek_kcv == store.kcv("KEK")
    assert store.unwrap(wrapped).hex().upper() == expected
    assert WrappedKey.from_json(wrapped.to_json()) == wrapped


def test_icc_keys_of_the_visa_cvn10_card(soft: SoftwareKeyStore) -> None:
    from pyemv import kd

    keys = soft.derive_icc_keys("1234567890123456", "00", "KEK")
    for wrapped, name in ((keys.ac, "IMK-AC"), (keys.smi, "IMK-SMI"), (keys.smc, "IMK-SMC")):
        assert soft.unwrap(wrapped) == kd.derive_icc_mk_a(soft.clear_value(name), "1234567890123456", "00")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    imk=st.binary(min_size=16, max_size=16),
    pan=st.text("0123456789", min_size=12, max_size=19),
    psn=st.integers(0, 99),
    option=st.sampled_from(["A", "B"]),
)
def test_icc_master_key_agrees_with_pyemv(imk: bytes, pan: str, psn: int, option: str) -> None:
    from pyemv import kd

    store = SoftwareKeyStore(test_only=True)
    store.add_symmetric("IMK", "DES3", "IMK-SMC", imk)
    store.add_symmetric("KEK", "AES", "KEK", bytes(16))
    wrapped = store.derive_icc_master_key("IMK", pan, psn, "KEK", option)  # type: ignore[arg-type]
    derive = kd.derive_icc_mk_a if option == "A" else kd.derive_icc_mk_b
    assert store.unwrap(wrapped) == derive(imk, pan, f"{psn:02d}")


@pytest.mark.parametrize(
    "vec", json.loads((VECTORS / "diversification.json").read_text())["vectors"][:3], ids=lambda v: v["name"]
)
def test_gp_diversification_kcvs(soft: SoftwareKeyStore, vec: dict[str, Any]) -> None:
    kmc = "KMC" if vec["scheme"] == "KDF3" else "KMC-3DES"
    assert soft.clear_value(kmc).hex().upper() == vec["master"]
    keys = soft.diversify_card_keys(kmc, vec["scheme"], bytes.fromhex(vec["kdd"]))
    assert [gp_kcv(vec["kcv_kind"], k).hex().upper() for k in (keys.enc, keys.mac, keys.dek)] == vec["kcv"]
    if "enc" in vec:
        assert keys.enc.hex().upper() == vec["enc"]


def test_transport_encryption_and_translate(soft: SoftwareKeyStore) -> None:
    from Crypto.Cipher import AES, DES3

    data = bytes(range(48))
    kek = soft.clear_value("KEK")
    assert soft.encrypt("KEK", data) == AES.new(kek, AES.MODE_CBC, iv=bytes(16)).encrypt(data)
    assert soft.decrypt("KEK", soft.encrypt("KEK", data, iv=b"\x11" * 16), iv=b"\x11" * 16) == data
    with pytest.raises(ValueError, match="multiple of 16"):
        soft.encrypt("KEK", b"abc")
    wrapped = soft.derive_icc_master_key("IMK-AC", "1234567890123456", "00", "KEK")
    clear = soft.unwrap(wrapped)
    dek3, dek_aes = bytes.fromhex("0123456789ABCDEF1032547698BADCFE"), bytes(range(16, 32))
    assert soft.translate(wrapped, dek3, "DES3-ECB") == DES3.new(dek3, DES3.MODE_ECB).encrypt(clear)
    assert soft.translate(wrapped, dek_aes, "AES-CBC") == AES.new(
        dek_aes, AES.MODE_CBC, iv=bytes(16)
    ).encrypt(clear)
    bad = WrappedKey(wrapped.kek, wrapped.kek_kcv, bytes(16), wrapped.kcv)
    with pytest.raises(KeyStoreError, match="under 'KEK' does not match its check value"):
        soft.unwrap(bad)


def test_issuer_certificate_recovered(soft: SoftwareKeyStore) -> None:
    """EMV Book 2 §5.3 Table 13, recovered with plain integer RSA."""
    doc = json.loads(KEYSTORE.read_text())
    (capk,) = doc["ca_public_keys"]
    (cert,) = doc["issuer_certificates"]
    assert (capk["rid"], capk["index"]) == ("F000000001", "F1")
    n_ca, e_ca = int(capk["modulus"], 16), int(capk["exponent"], 16)
    assert (
        hashlib.sha1(bytes.fromhex(capk["rid"] + capk["index"] + capk["modulus"] + capk["exponent"]))
        .hexdigest()
        .upper()
        == capk["checksum"]
    )
    size = len(capk["modulus"]) // 2
    signed = bytes.fromhex(cert["certificate_90"])
    assert len(signed) == size == 176
    x = pow(int.from_bytes(signed, "big"), e_ca, n_ca).to_bytes(size, "big")
    remainder, exponent = bytes.fromhex(cert["remainder_92"]), bytes.fromhex(cert["exponent_9F32"])
    issuer_n, issuer_e = soft.public_key("ISSUER")
    n_i = (issuer_n.bit_length() + 7) // 8
    assert x[0] == 0x6A and x[-1] == 0xBC  # header, trailer
    assert x[1] == 0x02  # certificate format
    assert x[2:6] == bytes.fromhex("999999FF")  # issuer identifier: BIN 999999, F-padded
    assert x[6:8] == bytes.fromhex("1249")  # expiry MMYY
    assert x[8:11] == bytes.fromhex("000001")  # serial number
    assert x[11] == 0x01 and x[12] == 0x01  # hash algorithm SHA-1, public key algorithm RSA
    assert x[13] == n_i == 144 and x[14] == len(exponent) == 3
    leftmost = x[15 : size - 21]
    assert len(leftmost) == size - 36 == 140
    assert leftmost + remainder == issuer_n.to_bytes(n_i, "big")  # N_I > N_CA − 36: no 'BB' padding
    assert int.from_bytes(exponent, "big") == issuer_e == 0x010001
    assert x[size - 21 : size - 1] == hashlib.sha1(x[1 : size - 21] + remainder + exponent).digest()
    assert (cert["ca_index"], cert["issuer_identifier"], cert["expiry_mmyy"], cert["serial"]) == (
        "F1",
        "999999FF",
        "1249",
        "000001",
    )


def test_rsa_sign_raw_is_textbook_rsa(soft: SoftwareKeyStore) -> None:
    n, e = soft.public_key("CA")
    block = b"\x6a" + bytes(range(174)) + b"\xbc"
    sig = soft.rsa_sign_raw("CA", block)
    assert pow(int.from_bytes(sig, "big"), e, n).to_bytes(176, "big") == block


# --------------------------------------------------------------------------- PKCS#11 (SoftHSM2)


@pytest.fixture(scope="module")
def token(soft: SoftwareKeyStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyStore]:
    util = shutil.which("softhsm2-util")
    if util is None or not os.path.exists(SOFTHSM_LIB):
        pytest.skip(
            "SoftHSM2 is not installed (softhsm2-util / libsofthsm2.so missing; Debian package softhsm2)"
        )
    import pkcs11

    from cardlab.personalizer.keys.pkcs11_token import Pkcs11KeyStore, import_keystore_into_token

    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        subprocess.run(
            [util, "--init-token", "--free", "--label", "cardlab-test", "--pin", "1234", "--so-pin", "5678"],
            check=True, capture_output=True, env=os.environ.copy(),
        )  # fmt: skip
        lib = pkcs11.lib(SOFTHSM_LIB)
        try:
            lib.get_token(token_label="cardlab-test")
        except pkcs11.exceptions.NoSuchToken:  # the library was initialised with another config
            lib.reinitialize()
        store = Pkcs11KeyStore.open("cardlab-test", "1234", SOFTHSM_LIB)
        assert import_keystore_into_token(soft, store) == soft.names()
        yield store
        store.close()
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def test_token_holds_the_same_keys(soft: SoftwareKeyStore, token: KeyStore) -> None:
    assert token.names() == soft.names()
    for name in soft.names():
        assert token.info(name) == soft.info(name), name
        if soft.info(name).type == "RSA":
            assert token.public_key(name) == soft.public_key(name)


def test_token_keys_are_not_extractable(token: KeyStore) -> None:
    import pkcs11
    from pkcs11 import Attribute

    from cardlab.personalizer.keys.pkcs11_token import Pkcs11KeyStore

    assert isinstance(token, Pkcs11KeyStore)
    for obj in token.session.get_objects({Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY}):
        assert obj[Attribute.SENSITIVE] and not obj[Attribute.EXTRACTABLE]
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            obj[Attribute.VALUE]


def test_token_refuses_duplicate_import(soft: SoftwareKeyStore, token: KeyStore) -> None:
    from cardlab.personalizer.keys.pkcs11_token import Pkcs11KeyStore, import_keystore_into_token

    assert isinstance(token, Pkcs11KeyStore)
    with pytest.raises(KeyStoreError, match="already holds a key 'KEK'"):
        import_keystore_into_token(soft, token, ["KEK"])


@pytest.mark.parametrize(
    ("pan", "psn", "option"),
    [(PAN17, PSN, "A"), (PAN17, PSN, "B"), ("1234567890123456", "00", "A"), ("476173900101001", 3, "B")],
)
def test_token_icc_master_keys_identical(
    soft: SoftwareKeyStore, token: KeyStore, pan: str, psn: Any, option: Option
) -> None:
    for imk in ("IMK-AC", "IMK-SMI", "IMK-SMC"):
        ours = soft.derive_icc_master_key(imk, pan, psn, "KEK", option)
        theirs = token.derive_icc_master_key(imk, pan, psn, "KEK", option)
        assert theirs == ours  # same ciphertext: the token also gives the key odd parity
        assert token.unwrap(theirs) == adjust_parity(token.unwrap(theirs))
    if pan == PAN17:  # the shipped IMK-AC is the known-answer IMK
        wrapped = token.derive_icc_master_key("IMK-AC", pan, psn, "KEK", option)
        assert soft.decrypt("KEK", wrapped.value).hex().upper() == (ICC_MK_A if option == "A" else ICC_MK_B)


@pytest.mark.parametrize(("kmc", "scheme"), [("KMC-3DES", "EMV"), ("KMC-3DES", "VISA2"), ("KMC", "KDF3")])
def test_token_gp_diversification_identical(
    soft: SoftwareKeyStore, token: KeyStore, kmc: str, scheme: str
) -> None:
    for kdd in (KDD, bytes.fromhex("000050C7606A8CF64800")):
        keys = token.diversify_card_keys(kmc, scheme, kdd)
        assert keys == soft.diversify_card_keys(kmc, scheme, kdd)
        assert (keys.enc, keys.mac, keys.dek) == diversify(scheme, soft.clear_value(kmc), kdd)


def test_token_rsa_and_transport_identical(soft: SoftwareKeyStore, token: KeyStore) -> None:
    for name, size in (("ISSUER", 144), ("CA", 176)):
        block = b"\x6a" + hashlib.sha256(name.encode()).digest() * 5 + b"\xbc"
        block = block[:1] + block[1 : size - 1].ljust(size - 2, b"\xbb") + b"\xbc"
        assert token.rsa_sign_raw(name, block) == soft.rsa_sign_raw(name, block)
    data = bytes(range(64))
    assert token.encrypt("KEK", data) == soft.encrypt("KEK", data)
    assert token.decrypt("KEK", data, iv=b"\x07" * 16) == soft.decrypt("KEK", data, iv=b"\x07" * 16)
    wrapped = token.derive_icc_master_key("IMK-AC", "1234567890123456", "00", "KEK")
    dek = bytes(range(16))
    assert token.translate(wrapped, dek, "AES-CBC") == soft.translate(wrapped, dek, "AES-CBC")
    assert token.translate(wrapped, dek, "DES3-ECB") == soft.translate(wrapped, dek, "DES3-ECB")


def test_token_refuses_what_the_software_store_refuses(token: KeyStore) -> None:
    with pytest.raises(KeyUsageError, match="key 'IMK-AC' has usage IMK-AC; transport encryption needs"):
        token.encrypt("IMK-AC", bytes(16))
    with pytest.raises(KeyNotFoundError, match="no key 'NOPE' on the token"):
        token.kcv("NOPE")
    with pytest.raises(KeyUsageError, match="'KMC-3DES' is an DES3 key; KDF3"):
        token.diversify_card_keys("KMC-3DES", "KDF3", KDD)


def test_open_keystore_by_name(
    soft: SoftwareKeyStore, token: KeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cardlab.personalizer.keys import open_keystore

    assert open_keystore(str(KEYSTORE)).names() == soft.names()
    prod = SoftwareKeyStore.from_json(soft.to_json())
    prod.test_only = False
    prod.save(tmp_path / "prod.json", "pw", scrypt_n=FAST_SCRYPT)
    monkeypatch.setenv("CARDLAB_KEYSTORE_PASSPHRASE", "pw")
    assert open_keystore(str(tmp_path / "prod.json")).kcv("KEK") == soft.kcv("KEK")
    monkeypatch.setenv("MY_PIN", "1234")
    with open_keystore("pkcs11:token=cardlab-test;pin-env=MY_PIN") as other:
        assert other.kcv("IMK-AC") == soft.kcv("IMK-AC")
    monkeypatch.delenv("CARDLAB_PKCS11_PIN", raising=False)
    with pytest.raises(KeyStoreError, match=r"PIN is read from \$CARDLAB_PKCS11_PIN, which is not set"):
        open_keystore("pkcs11:token=cardlab-test")
    with pytest.raises(KeyStoreError, match="expected token="):
        open_keystore("pkcs11:slot=1")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8),
       st.sampled_from(["two-key", "three-key", "single"]), st.integers(min_value=1, max_value=4))
def test_3des_through_openssl_is_3des(k1: bytes, k2: bytes, k3: bytes, shape: str, blocks: int) -> None:
    """des3_ecb_encrypt (OpenSSL) equals E(K1) D(K2) E(K3) block by block with single DES from
    pycryptodome, for two-key, three-key and degenerate (single-DES) keys."""
    from Crypto.Cipher import DES

    from cardlab.personalizer.keys.crypto import des3_ecb_encrypt

    key = {"two-key": k1 + k2, "three-key": k1 + k2 + k3, "single": k1 + k1}[shape]
    data = (k3 + k2 + k1 + k3)[: 8 * blocks]
    third = key[16:24] if len(key) == 24 else key[:8]
    want = b"".join(
        DES.new(third, DES.MODE_ECB).encrypt(DES.new(key[8:16], DES.MODE_ECB).decrypt(
            DES.new(key[:8], DES.MODE_ECB).encrypt(data[i:i + 8])))
        for i in range(0, len(data), 8))
    assert des3_ecb_encrypt(key, data) == want

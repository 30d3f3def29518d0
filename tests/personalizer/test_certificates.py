"""EMV certificates and SDA (Book 2 §5.3, §5.4, §6.4): built with the key
store's signer, recovered here with plain integer RSA (pow) and every field
checked; then the same on a prepared card."""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from prepkit import VECTORS, VISA, clear_dgis, make_keystore

from cardlab.cardspec import tlv
from cardlab.personalizer import certificates as certs
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.prepare import CardPreparer, generate_icc_key
from cardlab.personalizer.profile import load_profile
from cardlab.personalizer.records import Record, YearMonth

SHA1 = hashlib.sha1


@pytest.fixture(scope="module")
def ks() -> SoftwareKeyStore:
    return make_keystore()


@pytest.fixture(scope="module")
def icc_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=1024)


def _pow(sig: bytes, n: int, e: int) -> bytes:
    size = (n.bit_length() + 7) // 8
    assert len(sig) == size
    return pow(int.from_bytes(sig, "big"), e, n).to_bytes(size, "big")


def _bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def test_issuer_certificate_known_answer(ks: SoftwareKeyStore) -> None:
    """Raw RSA is deterministic: the key store's shipped certificate for BIN 999999 is rebuilt byte for byte."""
    shipped = json.loads((VECTORS / "test-keystore.json").read_text())["issuer_certificates"][0]
    n_ca, _ = ks.public_key("CA")
    iss = ks.public_key("ISSUER")
    cert, rem = certs.issuer_certificate(
        functools.partial(ks.rsa_sign_raw, "CA"), len(_bytes(n_ca)), iss.modulus_bytes, iss.exponent_bytes,
        bytes.fromhex("999999FF"), bytes.fromhex("1249"), bytes.fromhex("000001"),
    )  # fmt: skip
    assert cert.hex().upper() == shipped["certificate_90"]
    assert rem.hex().upper() == shipped["remainder_92"]


def test_issuer_certificate_every_field(ks: SoftwareKeyStore) -> None:
    n_ca, e_ca = ks.public_key("CA")
    iss = ks.public_key("ISSUER")
    n_i = iss.modulus_bytes
    cert, rem = certs.issuer_certificate(
        functools.partial(ks.rsa_sign_raw, "CA"), len(_bytes(n_ca)), n_i, iss.exponent_bytes,
        certs.issuer_identifier("476173"), bytes.fromhex("1245"), bytes.fromhex("0A0B0C"),
    )  # fmt: skip
    rec = _pow(cert, n_ca, e_ca)
    n_ca_len = len(rec)  # 176
    assert rec[0] == 0x6A and rec[-1] == 0xBC
    assert rec[1] == 0x02  # certificate format
    assert rec[2:6] == bytes.fromhex("476173FF")  # issuer identifier
    assert rec[6:8] == bytes.fromhex("1245")  # expiry MMYY
    assert rec[8:11] == bytes.fromhex("0A0B0C")  # serial
    assert rec[11] == 0x01 and rec[12] == 0x01  # SHA-1, RSA
    assert rec[13] == len(n_i) == 144 and rec[14] == 3  # N_I, exponent length (010001)
    field = rec[15 : n_ca_len - 21]
    assert len(field) == n_ca_len - 36 == 140
    assert field == n_i[:140] and rem == n_i[140:] and len(rem) == 4
    assert rec[-21:-1] == SHA1(rec[1:15] + field + rem + iss.exponent_bytes).digest()
    got = certs.recover_issuer_certificate(cert, rem, iss.exponent_bytes, n_ca, e_ca)
    assert got.modulus == n_i and got.issuer_id == bytes.fromhex("476173FF")
    with pytest.raises(certs.CertificateError, match="hash"):
        certs.recover_issuer_certificate(cert, bytes(4), iss.exponent_bytes, n_ca, e_ca)


@pytest.mark.parametrize("bits", [1024, 768])
def test_icc_certificate_every_field(ks: SoftwareKeyStore, icc_key: rsa.RSAPrivateKey, bits: int) -> None:
    if bits == 1024:
        pub = icc_key.public_key().public_numbers()
        n, e = pub.n, pub.e
    else:  # cryptography refuses keys below 1024 bits: prepare's own generator
        small = generate_icc_key(768, 65537)
        n, e = small.n, small.e
        assert n.bit_length() == 768 and pow(pow(12345, e, n), small.d, n) == 12345
    n_ic, e_ic = _bytes(n), _bytes(e)
    iss = ks.public_key("ISSUER")
    static = b"\x5a\x08" + bytes.fromhex("4761739001010101") + b"\x58\x00"
    cert, rem = certs.icc_certificate(
        functools.partial(ks.rsa_sign_raw, "ISSUER"), len(iss.modulus_bytes), "4761739001010101",
        bytes.fromhex("1230"), bytes.fromhex("000007"), n_ic, e_ic, static,
    )  # fmt: skip
    rec = _pow(cert, iss.modulus, iss.exponent)
    assert len(rec) == 144
    assert rec[0] == 0x6A and rec[-1] == 0xBC and rec[1] == 0x04
    assert rec[2:12] == bytes.fromhex("4761739001010101FFFF")  # PAN, F-padded
    assert rec[12:14] == bytes.fromhex("1230") and rec[14:17] == bytes.fromhex("000007")
    assert rec[17] == 0x01 and rec[18] == 0x01
    assert rec[19] == len(n_ic) and rec[20] == len(e_ic)
    field = rec[21:-21]
    assert len(field) == 144 - 42
    if bits == 1024:  # 128 > 102: remainder of 26 bytes
        assert field == n_ic[:102] and rem == n_ic[102:] and len(rem) == 26
    else:  # 96 < 102: BB padding, no remainder
        assert field == n_ic + b"\xbb" * 6 and rem == b""
    assert rec[-21:-1] == SHA1(rec[1:21] + field + rem + e_ic + static).digest()
    got = certs.recover_icc_certificate(cert, rem, e_ic, static, iss.modulus, iss.exponent)
    assert got.modulus == n_ic and got.pan == "4761739001010101"
    with pytest.raises(certs.CertificateError, match="hash"):
        certs.recover_icc_certificate(cert, rem, e_ic, static + b"\x00", iss.modulus, iss.exponent)


def test_signed_static_data(ks: SoftwareKeyStore) -> None:
    iss = ks.public_key("ISSUER")
    static = bytes(range(200)) + b"\x5c\x00"
    ssad = certs.signed_static_data(functools.partial(ks.rsa_sign_raw, "ISSUER"), 144, static, b"\xda\xc1")
    rec = _pow(ssad, iss.modulus, iss.exponent)
    assert rec[0] == 0x6A and rec[1] == 0x03 and rec[2] == 0x01 and rec[3:5] == b"\xda\xc1"
    assert rec[5:-21] == b"\xbb" * (144 - 26) and rec[-1] == 0xBC
    assert rec[-21:-1] == SHA1(rec[1:-21] + static).digest()
    assert certs.recover_signed_static_data(ssad, static, iss.modulus, iss.exponent).dac == b"\xda\xc1"
    with pytest.raises(certs.CertificateError):
        certs.recover_signed_static_data(ssad, static[1:], iss.modulus, iss.exponent)


def test_prepared_card_sda_and_dda_objects(ks: SoftwareKeyStore) -> None:
    """A prepared Visa card: the static data is rebuilt here from the record DGIs
    and the AFL in 9104; 93, 90 and 9F46 recover and hash over it."""
    profile = load_profile(VISA)
    rec = Record(index=9, line=10, pan="4761739001010101", psn="01", expiry=YearMonth(2030, 11),
                 effective=None, name="TEST/CARD", pin="1234")  # fmt: skip
    card = CardPreparer(profile, ks, today=date(2026, 1, 15)).prepare(rec)
    n_ca, e_ca = ks.public_key("CA")
    for app, pd in zip(profile.applications, card.apps, strict=True):
        d = dict(clear_dgis(ks, pd))
        gpo = tlv.to_dict(d[0x9104])
        aip, afl = gpo[0x82], gpo[0x94]
        static = b""
        objs: dict[int, bytes] = {}
        for i in range(0, len(afl), 4):
            sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for r in range(first, last + 1):
                body = d[(sfi << 8) | r]
                inner = tlv.parse(body)[0].value
                objs.update(tlv.to_dict(inner))
                if r < first + n_oda:
                    static += inner if sfi <= 10 else body
        assert objs[0x9F4A] == b"\x82"
        static += aip
        assert objs[0x8F] == b"\x7e"  # the sample profiles' test CA index
        issuer = certs.recover_issuer_certificate(objs[0x90], objs.get(0x92, b""), objs[0x9F32], n_ca, e_ca)
        assert issuer.issuer_id == bytes.fromhex("476173FF")
        n_i, e_i = int.from_bytes(issuer.modulus, "big"), int.from_bytes(issuer.exponent, "big")
        ssad = certs.recover_signed_static_data(objs[0x93], static, n_i, e_i)
        assert ssad.dac == b"\x00\x09"
        icc = certs.recover_icc_certificate(objs[0x9F46], objs.get(0x9F48, b""), objs[0x9F47], static, n_i, e_i)
        assert icc.pan == rec.pan and icc.expiry_mmyy == bytes.fromhex("1130") and icc.serial == b"\x00\x00\x09"
        assert objs[0x9F47] == _bytes(app.icc_key.exponent if app.icc_key else 0)
        # the CRT parts belong to the certified key
        q_inv, dq, dp, q, p = (int.from_bytes(d[g], "big") for g in range(0x8201, 0x8206))
        assert p * q == int.from_bytes(icc.modulus, "big") and q * q_inv % p == 1
        e = int.from_bytes(objs[0x9F47], "big")
        assert e * dp % (p - 1) == 1 and e * dq % (q - 1) == 1

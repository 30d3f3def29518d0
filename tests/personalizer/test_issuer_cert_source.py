"""The issuer certificate the scheme returned, given with the profile
(``keys.issuer_certificate``, docs/profile.md): placed on the cards byte for byte,
verified once per batch before any card (EMV Book 2 §5.3), and the only source of
90/92/9F32 for a key store that has neither ready-made certificates nor a CA
private key (a PKCS#11 token). All keys and certificates here are TEST data."""

from __future__ import annotations

import copy
import functools
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prepkit import ROOT, VECTORS, VISA, clear_dgis, make_keystore

from cardlab.cardspec import tlv
from cardlab.personalizer import certificates
from cardlab.personalizer.batch import CardPersoData, Rejection
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.prepare import CardPreparer, PrepareError, iter_prepared, load_ca_public_keys, prepare
from cardlab.personalizer.profile import ISSUER_CERTIFICATE_FORMAT, ProfileError, load_profile, parse_profile
from cardlab.personalizer.records import luhn_ok, read_records

TODAY = date(2026, 1, 15)
SAMPLE = VECTORS / "records" / "sample.csv"
DOCUMENT = VECTORS / "issuer-certificates" / "visa-cvn18.json"
ISSUER = "TEST-VISA-ISSUER-RSA"
#: the sample Visa profile's CA: the test CA registered under Visa's RID with index 7E
RID, CA_INDEX = "A000000003", "7E"


@pytest.fixture(scope="module")
def ks() -> SoftwareKeyStore:
    return make_keystore()


def scheme_certificate(ks: SoftwareKeyStore, ident: str, *, expiry: str = "1249", serial: str = "000002",
                       issuer: tuple[bytes, bytes] | None = None) -> dict[str, str]:  # fmt: skip
    """What a scheme CA returns (Book 2 §5.3 Table 13), signed here with the TEST CA."""
    ca = ks.public_key("CA")
    pub = ks.public_key(ISSUER)
    modulus, exponent = issuer or (pub.modulus_bytes, pub.exponent_bytes)
    cert, rem = certificates.issuer_certificate(
        functools.partial(ks.rsa_sign_raw, "CA"), len(ca.modulus_bytes), modulus, exponent,
        certificates.issuer_identifier(ident), bytes.fromhex(expiry), bytes.fromhex(serial),
    )  # fmt: skip
    return {"issuer_identifier": ident, "certificate_90": cert.hex().upper(), "remainder_92": rem.hex().upper(),
            "exponent_9F32": exponent.hex().upper()}  # fmt: skip


def write_document(path: Path, certs: list[dict[str, str]]) -> Path:
    doc = {"format": ISSUER_CERTIFICATE_FORMAT, "version": 1, "note": "TEST ONLY", "rid": RID,
           "ca_index": CA_INDEX, "certificates": certs}  # fmt: skip
    path.write_text(json.dumps(doc, indent=1))
    return path


def visa_with(tmp: Path, source: Any, *, bins: list[str] | None = ["476173"]) -> Path:  # noqa: B006
    """The sample Visa profile with ``keys.issuer_certificate: source`` on both applications
    (``None``: without one, as before the sample had its own)."""
    doc: dict[str, Any] = yaml.safe_load(VISA.read_text())
    for app in doc["applications"]:
        app["keys"]["issuer_certificate"] = copy.deepcopy(source)
        if source is None:
            app["keys"].pop("issuer_certificate")
    if bins is None:
        doc.pop("bins")
    else:
        doc["bins"] = bins
    path = tmp / "profile.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def without_ca(ks: SoftwareKeyStore) -> SoftwareKeyStore:
    """Like a PKCS#11 token: the same keys, but no CA private key and no extra data."""
    out = SoftwareKeyStore(test_only=True)
    for name in ks.names():
        info = ks.info(name)
        if info.usage == "CA":
            continue
        if info.type == "RSA":
            key = serialization.load_der_private_key(ks.clear_value(name), None)
            assert isinstance(key, rsa.RSAPrivateKey)
            out.add_rsa(name, info.usage, key)
        else:
            out.add_symmetric(name, info.type, info.usage, ks.clear_value(name))
    assert out.extra == {} and not any(out.info(n).usage == "CA" for n in out.names())
    return out


def ca_public_keys(ks: SoftwareKeyStore) -> list[dict[str, str]]:
    ca = ks.public_key("CA")
    return [{"rid": RID, "index": CA_INDEX, "modulus": ca.modulus_bytes.hex(), "exponent": ca.exponent_bytes.hex()}]


def records(n: int = 2) -> list[Any]:
    return list(read_records(SAMPLE, today=TODAY))[:n]


def tag_values(ks: SoftwareKeyStore, card: CardPersoData, app: int) -> dict[int, bytes]:
    """Every data object of application ``app``'s record DGIs (SFI 1..30), opened."""
    out: dict[int, bytes] = {}
    for dgi, value in clear_dgis(ks, card.apps[app]):
        if 0x0100 <= dgi <= 0x1EFF and (dgi & 0xFF) and value[:1] == b"\x70":
            out.update(tlv.to_dict(tlv.find(value, 0x70).value))  # type: ignore[union-attr]
    return out


def pan_with(prefix: str, length: int = 16) -> str:
    body = prefix.ljust(length - 1, "0")
    return next(body + str(d) for d in range(10) if luhn_ok(body + str(d)))


# ----------------------------------------------------------------------------- the shipped document


def test_shipped_document_is_the_test_ca_certificate_of_the_visa_sample_key(ks: SoftwareKeyStore) -> None:
    """vectors/issuer-certificates/visa-cvn18.json is what scheme_certificate signs (deterministic raw
    RSA), read relative to the profile's directory, and it verifies for the sample Visa profile."""
    doc = json.loads(DOCUMENT.read_text())
    assert doc["format"] == ISSUER_CERTIFICATE_FORMAT and "TEST ONLY" in doc["note"]
    assert (doc["rid"], doc["ca_index"]) == (RID, CA_INDEX)
    assert doc["certificates"] == [scheme_certificate(ks, "476173")]
    text: dict[str, Any] = yaml.safe_load(VISA.read_text())
    for app in text["applications"]:
        app["keys"]["issuer_certificate"] = f"../issuer-certificates/{DOCUMENT.name}"
    prof = parse_profile(text, base_dir=VISA.parent)
    (c,) = prof.applications[0].keys.issuer_certificates
    assert (c.issuer_identifier, c.certificate.hex().upper()) == ("476173", doc["certificates"][0]["certificate_90"])
    assert CardPreparer(prof, ks, today=TODAY).verify_issuer_certificates(
        prof.applications[0], ks.public_key(ISSUER), "applications[0] (credit)") == []
    # the sample profile carries the same certificate inline (a copied profile stays complete)
    for app in load_profile(VISA).applications:
        (inline,) = app.keys.issuer_certificates
        assert (inline.issuer_identifier, inline.certificate, inline.remainder, inline.exponent) == (
            c.issuer_identifier, c.certificate, c.remainder, c.exponent)


# ----------------------------------------------------------------------------- profile validation


def test_profile_forms_and_field_errors(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    cert = scheme_certificate(ks, "476173")
    # a file relative to the profile, the document inline, one certificate inline, a list: the same certificate
    write_document(tmp_path / "cert.json", [cert])
    forms = ["cert.json", {"certificates": [cert]}, cert, [cert]]
    for form in forms:
        (c,) = load_profile(visa_with(tmp_path, form)).applications[1].keys.issuer_certificates
        assert (c.certificate.hex().upper(), c.remainder.hex().upper(), c.exponent.hex().upper()) == (
            cert["certificate_90"], cert["remainder_92"], cert["exponent_9F32"])
    assert load_profile(visa_with(tmp_path, "cert.json")).applications[0].keys.issuer_certificate_file == "cert.json"
    # parse_profile without the profile's directory does not read the file (and prepare refuses it)
    unread = parse_profile(yaml.safe_load(visa_with(tmp_path, "cert.json").read_text()))
    assert unread.applications[0].keys.issuer_certificates == ()
    with pytest.raises(PrepareError, match=r"applications\[0\] \(credit\)\.keys\.issuer_certificate: cert\.json was not read"):
        CardPreparer(unread, ks, today=TODAY)

    bad = dict(cert, certificate_90=cert["certificate_90"][:-1] + "G", exponent_9F32="02", issuer_identifier="47617X")
    bad.pop("remainder_92")
    bad["serial"] = "01"
    with pytest.raises(ProfileError) as e:
        load_profile(visa_with(tmp_path, [bad, dict(cert, remainder_92="00" * 37), dict(cert, certificate_90="00" * 60)]))
    p = "applications[0].keys.issuer_certificate"
    problems = e.value.problems
    for expected in (f"{p}[0].serial: unknown field (expected one of",
                     f"{p}[0].issuer_identifier: '47617X' is not an issuer identifier",
                     f"{p}[0].certificate_90: ",
                     f"{p}[0].exponent_9F32: 02: EMV allows 03 or 010001",
                     f"{p}[1].remainder_92: 37 bytes, expected 0..36",
                     f"{p}[2].certificate_90: 60 bytes, expected 64..248"):
        assert any(q.startswith(expected) for q in problems), (expected, problems)
    with pytest.raises(ProfileError, match=r"issuer_certificate\[1\]\.issuer_identifier: 476173 is also"):
        load_profile(visa_with(tmp_path, [cert, cert]))
    with pytest.raises(ProfileError, match=r"issuer_certificate\.certificate_90: missing"):
        load_profile(visa_with(tmp_path, {"issuer_identifier": "476173", "exponent_9F32": "03"}))
    with pytest.raises(ProfileError, match=r"issuer_certificate\.issuer_identifier: 541333 covers none of the profile's bins \(476173\)"):
        load_profile(visa_with(tmp_path, dict(cert, issuer_identifier="541333")))
    with pytest.raises(ProfileError, match=r"issuer_certificate: cannot read the certificate document nope\.json"):
        load_profile(visa_with(tmp_path, "nope.json"))
    # the document: its format, and RID / CA index that must be the application's
    (tmp_path / "other.json").write_text(json.dumps({"format": "x", "rid": "A000000004", "ca_index": "F1",
                                                     "certificates": [cert]}))  # fmt: skip
    with pytest.raises(ProfileError) as e:
        load_profile(visa_with(tmp_path, "other.json"))
    q = "applications[0].keys.issuer_certificate (other.json)"
    assert f"{q}.format: 'x', expected 'cardlab-issuer-certificate'" in e.value.problems
    assert f"{q}.rid: A000000004, but the application's RID is A000000003" in e.value.problems
    assert f"{q}.ca_index: F1, but keys.ca_index is 7E" in e.value.problems


# ----------------------------------------------------------------------------- prepare


def test_profile_certificate_is_placed_byte_for_byte(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """The profile's certificate wins over signing with the key store's CA key: 90/92/9F32 on the
    card are the document's bytes (serial 000002: the key store would have signed another one)."""
    cert = json.loads(DOCUMENT.read_text())["certificates"][0]
    prof = load_profile(visa_with(tmp_path, str(DOCUMENT)))  # an absolute path works too
    out = list(iter_prepared(CardPreparer(prof, ks, today=TODAY), iter(records())))
    assert all(isinstance(c, CardPersoData) for c in out)
    for card in out:
        assert isinstance(card, CardPersoData)
        for i in range(2):
            v = tag_values(ks, card, i)
            assert v[0x90].hex().upper() == cert["certificate_90"]
            assert v[0x92].hex().upper() == cert["remainder_92"]
            assert v[0x9F32].hex().upper() == cert["exponent_9F32"]
            assert v[0x8F] == bytes.fromhex(CA_INDEX)
    rec = certificates.recover_issuer_certificate(v[0x90], v[0x92], v[0x9F32], *ks.public_key("CA"))
    assert rec.serial == bytes.fromhex("000002")

    # the order of sources: the profile's, then the key store's ready-made one, then signing
    store = make_keystore()
    ready = scheme_certificate(ks, "476173", serial="000009")
    store.extra["issuer_certificates"] = [{"issuer_key": ISSUER, "ca_index": CA_INDEX, **ready}]
    rec1 = records(1)[0]
    for profile, expected in ((prof, cert), (load_profile(visa_with(tmp_path, None)), ready)):
        card = CardPreparer(profile, store, today=TODAY).prepare(rec1)
        assert tag_values(store, card, 0)[0x90].hex().upper() == expected["certificate_90"]
    signed = CardPreparer(load_profile(visa_with(tmp_path, None)), ks, today=TODAY).prepare(rec1)
    assert tag_values(ks, signed, 0)[0x90].hex().upper() not in (cert["certificate_90"], ready["certificate_90"])


@pytest.mark.parametrize("what", ["certificate_90", "remainder_92", "exponent_9F32"])
def test_tampered_certificate_is_refused_naming_the_field(tmp_path: Path, ks: SoftwareKeyStore, what: str) -> None:
    cert = scheme_certificate(ks, "476173")
    value = bytearray(bytes.fromhex(cert[what]))
    if what == "exponent_9F32":
        value = bytearray(b"\x03")  # a valid exponent, but not the certified one
    else:
        value[len(value) // 2] ^= 0x01
    write_document(tmp_path / "cert.json", [dict(cert, **{what: value.hex()})])
    prof = load_profile(visa_with(tmp_path, "cert.json"))
    with pytest.raises(PrepareError) as e:
        CardPreparer(prof, ks, today=TODAY)
    msg = str(e.value)
    assert msg.startswith("applications[0].keys.issuer_certificate (cert.json).certificates[0] "
                          "(credit, issuer identifier 476173): issuer certificate: ")
    assert "applications[1].keys.issuer_certificate (cert.json).certificates[0] (debit" in msg
    assert {"certificate_90": "header/trailer", "remainder_92": "hash differs",
            "exponent_9F32": "exponent length differs"}[what] in msg


def test_certificate_of_another_issuer_key_is_refused(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=1152).public_key().public_numbers()
    cert = scheme_certificate(ks, "476173", issuer=(other.n.to_bytes(144, "big"), b"\x01\x00\x01"))
    prof = load_profile(visa_with(tmp_path, cert))
    with pytest.raises(PrepareError, match=r"applications\[0\]\.keys\.issuer_certificate \(credit, issuer identifier "
                       r"476173\): issuer certificate: certifies another key .*\[issuer key 'TEST-VISA-ISSUER-RSA'"):
        CardPreparer(prof, ks, today=TODAY)


def test_expired_certificate_is_refused(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    prof = load_profile(visa_with(tmp_path, scheme_certificate(ks, "476173", expiry="1225")))
    with pytest.raises(PrepareError, match=r"issuer certificate: expired at the end of 12/2025 \(today is 2026-01-15\)"):
        CardPreparer(prof, ks, today=TODAY)
    CardPreparer(prof, ks, today=date(2025, 12, 31))  # valid through the last day of its month


def test_identifier_must_be_the_certified_one(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    cert = dict(scheme_certificate(ks, "476173"), issuer_identifier="4761")
    with pytest.raises(PrepareError, match=r"issuer identifier 476173FF, expected 4761FFFF"):
        CardPreparer(load_profile(visa_with(tmp_path, cert)), ks, today=TODAY)


def test_records_on_no_certificate_are_rejected_for_pan(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """Certificates per issuer identifier: the longest one that starts the PAN is used; a PAN on
    none (here: no profile bins, so only the certificates decide) is rejected with field pan."""
    narrow, other = scheme_certificate(ks, "47617391", serial="000003"), scheme_certificate(ks, "999999")
    prof_path = visa_with(tmp_path, [narrow, other, scheme_certificate(ks, "4761")], bins=None)
    pans = [pan_with("47617391"), pan_with("47617390"), pan_with("999999"), pan_with("541333")]
    csv = tmp_path / "cards.csv"
    csv.write_text("pan,psn,expiry,name,pin\n" + "".join(f"{p},00,2030-01,TEST/CARD,1234\n" for p in pans))
    prepare(prof_path, csv, ks, tmp_path / "batch", today=TODAY)
    from cardlab.personalizer.batch import iter_cards, iter_rejections

    cards = {c.record_index: c for c in iter_cards(tmp_path / "batch")}
    assert sorted(cards) == [1, 2, 3]
    assert tag_values(ks, cards[1], 0)[0x90].hex().upper() == narrow["certificate_90"]
    assert tag_values(ks, cards[3], 1)[0x90].hex().upper() == other["certificate_90"]
    assert tag_values(ks, cards[2], 0)[0x90] != tag_values(ks, cards[1], 0)[0x90]  # the 4761 certificate
    (rej,) = iter_rejections(tmp_path / "batch")
    assert (rej.record_index, rej.field) == (4, "pan")
    assert "on no issuer identifier of credit's keys.issuer_certificate (47617391, 999999, 4761)" in rej.message
    assert pans[3] not in rej.message

    # with one certificate for another BIN only, every record is rejected (field pan), none prepared
    prof = load_profile(visa_with(tmp_path, scheme_certificate(ks, "999999"), bins=None))
    out = list(iter_prepared(CardPreparer(prof, ks, today=TODAY), iter(records(3))))
    assert [(r.record_index, r.field) for r in out if isinstance(r, Rejection)] == [(1, "pan"), (2, "pan"), (3, "pan")]


def test_token_like_store_without_ca_key_works_with_the_profile_certificate(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """No extra data and no CA private key (a PKCS#11 token): the profile's certificate is the
    only source; it is verified with a CA public key given to prepare, and refused without one."""
    token = without_ca(ks)
    plain = load_profile(visa_with(tmp_path, None))
    with pytest.raises(PrepareError, match=r"applications\[0\] \(credit\)\.keys\.issuer_certificate: missing: the key "
                       r"store has no issuer certificate for key 'TEST-VISA-ISSUER-RSA' and CA index 7E, and no CA "
                       r"private key to sign one"):
        CardPreparer(plain, token, today=TODAY)
    prof = load_profile(visa_with(tmp_path, str(DOCUMENT)))
    with pytest.raises(PrepareError, match=r"applications\[0\] \(credit\)\.keys\.issuer_certificate: cannot verify it: "
                       r"no CA public key for RID A000000003 index 7E .*--ca-public-keys FILE"):
        CardPreparer(prof, token, today=TODAY)
    # a CA public key file (a key store file's ca_public_keys list works too): checksum checked
    capk = tmp_path / "capk.json"
    entry = ca_public_keys(ks)[0]
    capk.write_text(json.dumps({"ca_public_keys": [dict(entry, checksum="00" * 20)]}))
    with pytest.raises(PrepareError, match=r"ca_public_keys\[0\]: checksum does not match"):
        load_ca_public_keys(capk)
    capk.write_text(json.dumps({"ca_public_keys": [entry]}))
    prepare(visa_with(tmp_path, str(DOCUMENT)), SAMPLE, token, tmp_path / "batch", today=TODAY,
            ca_public_keys=load_ca_public_keys(capk))
    from cardlab.personalizer.batch import iter_cards

    cert = json.loads(DOCUMENT.read_text())["certificates"][0]
    cards = list(iter_cards(tmp_path / "batch"))
    assert [c.record_index for c in cards] == [1, 2, 3, 4, 5, 6]
    assert all(tag_values(token, c, 1)[0x90].hex().upper() == cert["certificate_90"] for c in cards)


def test_cli_ca_public_keys_option(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    from test_pipeline import cli

    keys = tmp_path / "token-like.json"
    without_ca(ks).save(keys)
    capk = tmp_path / "capk.json"
    capk.write_text(json.dumps({"ca_public_keys": ca_public_keys(ks)}))
    recs = tmp_path / "two.csv"
    recs.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:3]))
    prof = visa_with(tmp_path, str(DOCUMENT))
    rc, out = cli("perso", "prepare", "--profile", prof, "--records", recs, "--keys", keys,
                  "--out", tmp_path / "refused", "--today", "2026-01-15")  # fmt: skip
    assert rc == 2 and "cannot verify it: no CA public key for RID A000000003 index 7E" in out
    rc, out = cli("perso", "prepare", "--profile", prof, "--records", recs, "--keys", keys,
                  "--out", tmp_path / "batch", "--today", "2026-01-15", "--ca-public-keys", capk)  # fmt: skip
    assert rc == 0 and "2 prepared, 0 rejected" in out, out


# ----------------------------------------------------------------------------- end to end


def test_prepared_card_passes_the_testers_certification(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """A card prepared from the profile's certificate with a token-like key store (no CA key),
    put on an emulated card, certifies clean with the independent tester (CERT-ISS-* pass)."""
    sys.path.insert(0, str(ROOT / "tests" / "tester"))
    import certkit  # type: ignore[import-not-found]

    from cardlab.tester import certify, sources
    from cardlab.tester.rules import PASS

    token = without_ca(ks)
    prof_path = visa_with(tmp_path, str(DOCUMENT))
    card = CardPreparer(load_profile(prof_path), token, today=TODAY, ca_public_keys=ca_public_keys(ks)).prepare(records(1)[0])
    emulated = certkit.card_from_dgis([(a.aid, clear_dgis(token, a)) for a in card.apps])
    keys = tmp_path / "keys.json"
    ks.save(keys)  # the tester's own view: the test key store with the test CA
    rep = certify.certify_card(certkit.channel(emulated), sources.load_profile(prof_path),
                               sources.load_record(SAMPLE, card.record_index), sources.load_keystore(keys),
                               today=TODAY)  # fmt: skip
    assert rep.verdict == PASS, [(r.rule, r.evidence) for r in rep.failed]
    ok = {(r.rule, r.app) for r in rep.results if r.verdict == PASS}
    for app in card.apps:
        for rule in ("CERT-ISS-001", "CERT-ISS-004", "CERT-ICC-PAN-001", "SDA-001", "DDA-001"):
            assert (rule, app.aid.hex().upper()) in ok, rule


def test_bin_with_no_certificate_source_rejects_only_its_records(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """A token-like key store (no CA private key) holding a ready-made certificate for one BIN of
    two: the other BIN's records are rejected (field pan), the batch goes on and is complete (found
    in review: the first such PAN raised PrepareError and left a batch without a manifest)."""
    token = without_ca(ks)
    cert = scheme_certificate(ks, "476173")
    token.extra["issuer_certificates"] = [{
        "issuer_key": ISSUER, "ca_index": CA_INDEX, "issuer_identifier": "476173FF",
        "certificate_90": cert["certificate_90"], "remainder_92": cert["remainder_92"],
        "exponent_9F32": cert["exponent_9F32"]}]  # fmt: skip
    pans = [pan_with("4761731"), pan_with("476174"), pan_with("4761732")]
    csv = tmp_path / "cards.csv"
    csv.write_text("pan,psn,expiry,name,pin\n" + "".join(f"{p},00,2030-01,TEST/CARD,1234\n" for p in pans))
    profile = visa_with(tmp_path, None, bins=["476173", "476174"])
    with pytest.raises(PrepareError, match="key store's issuer_certificates .* cannot verify them: no CA public key"):
        prepare(profile, csv, token, tmp_path / "refused", today=TODAY)  # ready-made ones are verified too
    prepare(profile, csv, token, tmp_path / "batch", today=TODAY, ca_public_keys=ca_public_keys(ks))
    from cardlab.personalizer.batch import iter_cards, iter_rejections, read_manifest

    assert [c.record_index for c in iter_cards(tmp_path / "batch")] == [1, 3]
    (rej,) = iter_rejections(tmp_path / "batch")
    assert (rej.record_index, rej.field) == (2, "pan") and "BIN 476174" in rej.message
    assert read_manifest(tmp_path / "batch")["counts"] == {"input": 3, "accepted": 2, "rejected": 1}


@pytest.mark.parametrize("defect", ["expired", "another issuer key", "flipped byte"])
def test_stale_key_store_certificate_is_refused_before_any_card(tmp_path: Path, ks: SoftwareKeyStore,
                                                                defect: str) -> None:  # fmt: skip
    """The key store's ready-made certificates are checked like the profile's: a stale or foreign
    one would go onto every card and fail every terminal's offline data authentication."""
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_

    token = without_ca(ks)
    if defect == "another issuer key":
        other = rsa_.generate_private_key(public_exponent=65537, key_size=1152).public_key().public_numbers()
        cert = scheme_certificate(ks, "476173", issuer=(other.n.to_bytes(144, "big"), b"\x01\x00\x01"))
    else:
        cert = scheme_certificate(ks, "476173", expiry="1225" if defect == "expired" else "1249")
        if defect == "flipped byte":
            raw = bytearray(bytes.fromhex(cert["certificate_90"]))
            raw[20] ^= 0x01
            cert["certificate_90"] = raw.hex().upper()
    token.extra["issuer_certificates"] = [{
        "issuer_key": ISSUER, "ca_index": CA_INDEX, "issuer_identifier": "476173FF",
        "certificate_90": cert["certificate_90"], "remainder_92": cert["remainder_92"],
        "exponent_9F32": cert["exponent_9F32"]}]  # fmt: skip
    with pytest.raises(PrepareError, match="the key store's issuer_certificates for key 'TEST-VISA-ISSUER-RSA' "
                       r"\(issuer identifier 476173\)"):
        prepare(visa_with(tmp_path, None), SAMPLE, token, tmp_path / "batch", today=TODAY,
                ca_public_keys=ca_public_keys(ks))
    assert not (tmp_path / "batch" / "cards.jsonl").exists()


def test_card_expiring_after_its_issuer_certificate_is_rejected(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """A card valid beyond its issuer certificate would fail every terminal's offline data
    authentication for its last months (Book 2 §5.3): that record is rejected, field expiry."""
    cert = scheme_certificate(ks, "476173", expiry="1231")  # valid to 31 December 2031
    pans = [pan_with("4761731"), pan_with("4761732"), pan_with("4761733")]
    csv = tmp_path / "cards.csv"
    csv.write_text("pan,psn,expiry,name,pin\n" + "".join(
        f"{p},00,{e},TEST/CARD,1234\n" for p, e in zip(pans, ("2031-12", "2032-01", "2030-06"), strict=True)))
    prepare(visa_with(tmp_path, [cert]), csv, ks, tmp_path / "batch", today=TODAY)
    from cardlab.personalizer.batch import iter_cards, iter_rejections

    assert [c.record_index for c in iter_cards(tmp_path / "batch")] == [1, 3]
    (rej,) = iter_rejections(tmp_path / "batch")
    assert (rej.record_index, rej.field) == (2, "expiry")
    assert "2032-01 is after the issuer public key certificate's expiry (12/2031)" in rej.message


def test_certificate_signed_here_outlives_every_card(tmp_path: Path, ks: SoftwareKeyStore) -> None:
    """Test set-ups sign the issuer certificate with the key store's CA key: valid to 12/2049, the
    latest card expiry records may have, so a 2049 card is prepared."""
    csv = tmp_path / "cards.csv"
    csv.write_text(f"pan,psn,expiry,name,pin\n{pan_with('4761731')},00,2049-12,TEST/CARD,1234\n")
    prepare(visa_with(tmp_path, None), csv, ks, tmp_path / "batch", today=TODAY)
    from cardlab.personalizer.batch import iter_cards

    (card,) = iter_cards(tmp_path / "batch")
    values, ca = tag_values(ks, card, 0), ks.public_key("CA")
    rec = certificates.recover_issuer_certificate(values[0x90], values.get(0x92, b""), values[0x9F32],
                                                  ca.modulus, ca.exponent)  # fmt: skip
    assert rec.expiry_mmyy == bytes.fromhex("1249")

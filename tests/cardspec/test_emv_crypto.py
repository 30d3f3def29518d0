"""EMV symmetric cryptography: known answers (vectors/emv_crypto.json) and, for random
inputs, byte-for-byte agreement of every CVN profile with pyemv (the oracle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.cardspec import emv
from cardlab.emulator.applets.emv.cvn import PROFILES, CvnProfile, CvrFacts, profile

pyemv = pytest.importorskip("pyemv")
#: the oracle's TripleDES use warns with recent ``cryptography``; not our concern here
pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

DOC = json.loads((Path(__file__).parents[2] / "vectors" / "emv_crypto.json").read_text())
h = bytes.fromhex

#: pyemv class of each supported CVN
ORACLE = {0x0A: pyemv.cvn.VisaCVN10, 0x12: pyemv.cvn.VisaCVN18, 0x10: pyemv.cvn.MasterCardCVN16}
#: our values dict key (tag) → pyemv keyword
PYEMV_TAGS = {
    0x9F02: "tag_9f02",
    0x9F03: "tag_9f03",
    0x9F1A: "tag_9f1a",
    0x95: "tag_95",
    0x5F2A: "tag_5f2a",
    0x9A: "tag_9a",
    0x9C: "tag_9c",
    0x9F37: "tag_9f37",
}


def _mk(p: CvnProfile, imk: bytes, pan: str, psn: str) -> bytes:
    return (emv.icc_mk_option_a if p.mk_option == "A" else emv.icc_mk_option_b)(imk, pan, psn)


def test_vector_file_cites_its_sources() -> None:
    assert "pyemv" in DOC["source"] and "jPOS" in DOC["source"]
    assert all(v.get("source") for v in DOC["vectors"])


def _check_cvn(v: dict[str, Any]) -> None:
    p = profile(v["cvn"])
    mks = [_mk(p, h(k), v["pan"], v["psn"]) for k in v["imk"]]
    mk_ac, mk_smi, mk_smc = mks
    if "mk_kcv" in v:
        assert [emv.kcv(k, 2).hex().upper() for k in mks] == v["mk_kcv"]
    values = {int(t, 16): h(x) for t, x in v["values"].items()}
    atc, un, cvr = h(v["atc"]), values[0x9F37], h(v["cvr"])
    dki = h(v["iad"])[0 if p.scheme == "mastercard" else 1]  # M/Chip: KDI ‖ CVN …; Visa: 06 ‖ DKI …
    assert p.issuer_application_data(cvr, dki, {}) == h(v["iad"])
    if "ac_kcv" in v:
        assert emv.kcv(p.ac_session_key(mk_ac, atc, un), 2).hex().upper() == v["ac_kcv"]
    arqc = p.application_cryptogram(mk_ac, atc, un, p.ac_input(values, h(v["aip"]), atc, h(v["iad"]), cvr))
    assert arqc.hex().upper() == v["arqc"]
    if "arc" in v:
        arpc = p.arpc(mk_ac, atc, un, arqc, arc=h(v["arc"]))
    else:
        arpc = p.arpc(mk_ac, atc, un, arqc, csu=h(v["csu"]))
        assert p.arpc_method == 2
    assert arpc.hex().upper() == v["arpc"]
    assert p.check_arpc(
        mk_ac,
        atc,
        un,
        arqc,
        arpc,
        arc=h(v["arc"]) if "arc" in v else None,
        csu=h(v["csu"]) if "csu" in v else None,
    )
    smi, smc = p.script_mac_key(mk_smi, atc, arqc), p.script_enc_key(mk_smc, atc, arqc)
    if "smi_kcv" in v:
        assert (emv.kcv(smi, 2).hex().upper(), emv.kcv(smc, 2).hex().upper()) == (v["smi_kcv"], v["smc_kcv"])
    header = h(v["script_header"])
    assert p.script_mac(smi, header, b"", atc, arqc).hex().upper() == v["script_mac"]
    assert p.verify_script_mac(smi, header, b"", atc, arqc, h(v["script_mac"]))
    assert not p.verify_script_mac(smi, header, b"", atc, bytes(8), h(v["script_mac"]))
    for pc in v["pin_change"]:
        command = h(pc["command"])
        hdr, enc, mac = command[:5], command[5:-8], command[-8:]
        assert p.verify_script_mac(smi, hdr, enc, atc, arqc, mac)
        current = pc.get("current_pin")
        assert p.decipher_pin_data(smc, enc, mk_ac=mk_ac, current_pin=current) == pc["pin"]
        assert p.encipher_pin_data(smc, pc["pin"], mk_ac=mk_ac, current_pin=current) == enc


def _check(v: dict[str, Any]) -> None:
    kind = v["kind"]
    if kind == "icc_mk":
        derive = emv.icc_mk_option_a if v["option"] == "A" else emv.icc_mk_option_b
        assert derive(h(v["imk"]), v["pan"], v["psn"]).hex().upper() == v["expect"]
    elif kind == "common_sk":
        assert emv.common_session_key(h(v["mk"]), h(v["r"])).hex().upper() == v["expect"]
    elif kind == "visa_sm_sk":
        assert emv.visa_sm_session_key(h(v["mk"]), int(v["atc"], 16)).hex().upper() == v["expect"]
    elif kind == "cvn":
        _check_cvn(v)
    elif kind == "raw_ac":
        mk = emv.icc_mk_option_a(h(v["imk"]), v["pan"], v["psn"])
        atc, un = int(v["atc"], 16), h(v["un"])
        keys = {
            "mk": mk,
            "common": emv.ac_session_key_common(mk, atc),
            "mastercard": emv.mastercard_session_key(mk, atc, un),
        }
        arqc = emv.retail_mac(keys[v["key_method"]], h(v["data"]), padding=v["padding"])
        assert arqc.hex().upper() == v["arqc"]
        if "arc" in v:
            assert emv.arpc_method1(keys[v["arpc_key"]], arqc, h(v["arc"])).hex().upper() == v["arpc"]
        if "csu" in v:
            assert emv.arpc_method2(keys[v["arpc_key"]], arqc, h(v["csu"])).hex().upper() == v["arpc2"]
    else:  # pragma: no cover
        raise AssertionError(f"unknown vector kind {kind}")


@pytest.mark.parametrize("vec", DOC["vectors"], ids=lambda v: v["name"])
def test_known_answers(vec: dict[str, Any]) -> None:
    _check(vec)


# --------------------------------------------------------------------------- profile table


def test_profile_table() -> None:
    assert set(PROFILES) == {0x0A, 0x12, 0x10}
    with pytest.raises(KeyError):
        profile(0x11)
    assert [profile(c).cvr_length for c in (0x0A, 0x12, 0x10)] == [4, 4, 6]
    assert profile(0x10).response_tags == (0x9F27, 0x9F36, 0x9F26, 0x9F10)


def test_cvr_layouts() -> None:
    visa, mc = profile(0x0A), profile(0x10)
    # VIS CVR of pyemv's vectors: ARQC in 1st GEN AC, 2nd not requested; PTL and velocity exceeded; 1 script
    facts = CvrFacts(
        first_ac=0x80, pin_try_limit_exceeded=True, lower_consecutive_exceeded=True, script_count=1
    )
    assert visa.encode_cvr(facts).hex().upper() == "03A06010"
    facts = CvrFacts(
        first_ac=0x80,
        last_online_not_completed=True,
        upper_consecutive_exceeded=True,
        new_card=True,
        issuer_auth_failed_last=True,
    )
    assert profile(0x12).encode_cvr(facts).hex().upper() == "03A0B800"
    assert visa.encode_cvr(CvrFacts(first_ac=0x80, second_ac=0x40)).hex().upper() == "03600000"
    # M/Chip sample 9F10 0110A00003220000…: ARQC, PTC 3, offline PIN not performed, domestic
    facts = CvrFacts(first_ac=0x80, pin_try_counter=3, domestic=True)
    assert mc.encode_cvr(facts).hex().upper() == "A00003220000"
    with pytest.raises(ValueError):
        visa.encode_cvr(CvrFacts(first_ac=0x80, second_ac=0x80))


def test_pin_errors_do_not_leak_pins() -> None:
    p = profile(0x10)
    key = bytes(range(16))
    with pytest.raises(ValueError) as err:
        p.decipher_pin_data(key, emv.tdes_cbc_encrypt(key, bytes.fromhex("2412345FFFFFFFFF")), mk_ac=key)
    assert "12345" not in str(err.value)


# --------------------------------------------------------------------------- properties vs pyemv

keys = st.binary(min_size=16, max_size=16)
pans = st.text("0123456789", min_size=12, max_size=19)
psns = st.text("0123456789", min_size=2, max_size=2)
pins = st.text("0123456789", min_size=4, max_size=12)


@st.composite
def terminal_values(draw: st.DrawFn) -> dict[int, bytes]:
    lengths = {0x9F02: 6, 0x9F03: 6, 0x9F1A: 2, 0x95: 5, 0x5F2A: 2, 0x9A: 3, 0x9C: 1, 0x9F37: 4}
    return {t: draw(st.binary(min_size=n, max_size=n)) for t, n in lengths.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cvn=st.sampled_from(sorted(PROFILES)),
    imk=st.tuples(keys, keys, keys),
    pan=pans,
    psn=psns,
    atc=st.integers(0, 0xFFFF),
    values=terminal_values(),
    aip=st.binary(min_size=2, max_size=2),
    cvr_seed=st.binary(min_size=6, max_size=6),
    arc=st.binary(min_size=2, max_size=2),
    csu=st.binary(min_size=4, max_size=4),
    pin=pins,
    current=st.one_of(st.none(), pins),
    data=st.binary(max_size=24),
)
def test_profiles_agree_with_pyemv(
    cvn: int,
    imk: tuple[bytes, bytes, bytes],
    pan: str,
    psn: str,
    atc: int,
    values: dict[int, bytes],
    aip: bytes,
    cvr_seed: bytes,
    arc: bytes,
    csu: bytes,
    pin: str,
    current: str | None,
    data: bytes,
) -> None:
    p = profile(cvn)
    oracle = ORACLE[cvn](*imk, pan=pan, psn=psn)
    mk_ac, mk_smi, mk_smc = (_mk(p, k, pan, psn) for k in imk)
    assert (mk_ac, mk_smi, mk_smc) == (oracle.icc_mk_ac, oracle.icc_mk_smi, oracle.icc_mk_smc)
    atc_b, un = atc.to_bytes(2, "big"), values[0x9F37]
    cvr = (b"\x03" + cvr_seed[:3]) if p.scheme == "visa" else cvr_seed
    iad = p.issuer_application_data(cvr, 1, {"cumulative_offline": atc, "consecutive_offline": atc & 0xFF})

    # ARQC
    kw: dict[str, bytes] = {PYEMV_TAGS[t]: v for t, v in values.items()}
    kw.update(tag_82=aip, tag_9f36=atc_b)
    if p.ac_suffix == "iad":
        kw["tag_9f10"] = iad
    else:
        kw["cvr"] = cvr
    arqc = p.application_cryptogram(mk_ac, atc, un, p.ac_input(values, aip, atc, iad, cvr))
    assert arqc == oracle.generate_ac(**kw)

    # ARPC, with the method the CVN uses in pyemv
    if p.arpc_method == 1:
        assert p.arpc(mk_ac, atc, un, arqc, arc=arc) == oracle.generate_arpc(arqc, arc)
    else:
        assert p.arpc(mk_ac, atc, un, arqc, csu=csu) == oracle.generate_arpc(arqc, atc_b, csu)
    # and the other method under the same key (EMV Book 2 §8.2 with pyemv's primitives)
    sk = p.arpc_session_key(mk_ac, atc, un)
    assert p.arpc(mk_ac, atc, un, arqc, arc=arc) == pyemv.ac.generate_arpc_1(sk, arqc, arc)
    assert p.arpc(mk_ac, atc, un, arqc, csu=csu, prop=data[:8]) == pyemv.ac.generate_arpc_2(
        sk, arqc, csu, data[:8]
    )

    # script MAC over a command with data (e.g. PUT DATA / UPDATE RECORD)
    smi = p.script_mac_key(mk_smi, atc, arqc)
    header = bytes((0x84, 0xDA, 0x9F, 0x58, len(data) + 8))
    mac = oracle.generate_command_mac(header, arqc, atc_b, data)
    assert p.script_mac(smi, header, data, atc, arqc) == mac
    assert p.verify_script_mac(smi, header, data, atc, arqc, mac)
    assert not p.verify_script_mac(smi, header, data + b"\x00", atc, arqc, mac)

    # PIN CHANGE/UNBLOCK: pyemv's whole command is reproduced and deciphered
    smc = p.script_enc_key(mk_smc, atc, arqc)
    if p.pin_block == "vis":
        command = oracle.generate_pin_change_command(pin, arqc, atc_b, current_pin=current)
    else:
        current = None
        command = oracle.generate_pin_change_command(pin, arqc, atc_b)
    hdr, enc, mac = command[:5], command[5:-8], command[-8:]
    assert p.encipher_pin_data(smc, pin, mk_ac=mk_ac, current_pin=current) == enc
    assert p.script_mac(smi, hdr, enc, atc, arqc) == mac
    assert p.decipher_pin_data(smc, enc, mk_ac=mk_ac, current_pin=current) == pin


@settings(max_examples=100, deadline=None)
@given(key=keys, data=st.binary(max_size=40), padding=st.sampled_from([1, 2]), length=st.integers(4, 8))
def test_retail_mac_agrees_with_pyemv(key: bytes, data: bytes, padding: int, length: int) -> None:
    assert emv.retail_mac(key, data, padding=padding, length=length) == pyemv.mac.mac_iso9797_3(
        key[:8], key[8:], data, padding, length
    )


@settings(max_examples=100, deadline=None)
@given(
    imk=keys,
    pan=pans,
    psn=psns,
    r=st.binary(min_size=8, max_size=8),
    atc=st.integers(0, 0xFFFF),
    un=st.binary(min_size=4, max_size=4),
)
def test_key_derivations_agree_with_pyemv(
    imk: bytes, pan: str, psn: str, r: bytes, atc: int, un: bytes
) -> None:
    assert emv.icc_mk_option_a(imk, pan, psn) == pyemv.kd.derive_icc_mk_a(imk, pan, psn)
    assert emv.icc_mk_option_b(imk, pan, psn) == pyemv.kd.derive_icc_mk_b(imk, pan, psn)
    assert emv.common_session_key(imk, r) == pyemv.kd.derive_common_sk(imk, r)
    assert emv.visa_sm_session_key(imk, atc) == pyemv.kd.derive_visa_sm_sk(imk, atc.to_bytes(2, "big"))
    a = atc.to_bytes(2, "big")
    assert emv.mastercard_session_key(imk, atc, un) == pyemv.kd.derive_common_sk(imk, a + b"\x00\x00" + un)
    assert emv.adjust_parity(r) == pyemv.tools.adjust_key_parity(r)


@settings(max_examples=100, deadline=None)
@given(key=keys, data=st.binary(max_size=40))
def test_script_encipherment_agrees_with_pyemv(key: bytes, data: bytes) -> None:
    enc = pyemv.sm.encrypt_command_data(key, data, pyemv.sm.EncryptionType.VISA)
    assert emv.encipher_visa(key, data) == enc and emv.decipher_visa(key, enc) == data
    enc = pyemv.sm.encrypt_command_data(key, data, pyemv.sm.EncryptionType.MASTERCARD)
    assert emv.encipher_cbc(key, data) == enc
    enc = pyemv.sm.encrypt_command_data(key, data, pyemv.sm.EncryptionType.EMV)
    assert emv.encipher_cbc(key, data, always_pad=True) == enc
    assert emv.decipher_cbc(key, enc, padded=True) == data


def _single_des_chain(key: bytes, data: bytes, iv: bytes | None) -> bytes:
    """3DES-EDE built from pycryptodome's single DES, block by block (the reference the OpenSSL
    implementation replaced): K1 K2 K3, K3 = K1 for a double-length key."""
    from Crypto.Cipher import DES

    k1, k2 = DES.new(key[:8], DES.MODE_ECB), DES.new(key[8:16], DES.MODE_ECB)
    k3 = DES.new(key[16:24], DES.MODE_ECB) if len(key) == 24 else k1
    out, chain = b"", iv
    for i in range(0, len(data), 8):
        block = data[i : i + 8]
        if chain is not None:
            block = bytes(a ^ b for a, b in zip(block, chain, strict=True))
        enc = k3.encrypt(k2.decrypt(k1.encrypt(block)))
        out += enc
        chain = enc if chain is not None else None
    return out


@settings(max_examples=150, deadline=None)
@given(
    half=st.binary(min_size=8, max_size=8),
    other=st.binary(min_size=8, max_size=16),
    shape=st.sampled_from(["two-key", "three-key", "equal halves", "K2 = K3"]),
    blocks=st.integers(1, 5),
    iv=st.binary(min_size=8, max_size=8),
    data=st.binary(min_size=40, max_size=40),
)
def test_3des_agrees_with_single_des_for_every_key_shape(half: bytes, other: bytes, shape: str, blocks: int,
                                                          iv: bytes, data: bytes) -> None:
    """OpenSSL's 3DES (ECB and CBC, both ways) gives what single DES chained gives, also for keys
    that degenerate to single DES (test keys with equal halves), which an HSM takes as such."""
    k2 = (other + bytes(16))[:8]
    key = {"two-key": half + k2, "three-key": half + k2 + (other + bytes(16))[8:16],
           "equal halves": half + half, "K2 = K3": half + k2 + k2}[shape]
    data = data[: 8 * blocks]
    ecb = _single_des_chain(key, data, None)
    cbc = _single_des_chain(key, data, iv)
    assert emv.tdes_ecb_encrypt(key, data) == ecb and emv.tdes_ecb_decrypt(key, ecb) == data
    assert emv.tdes_cbc_encrypt(key, data, iv) == cbc and emv.tdes_cbc_decrypt(key, cbc, iv) == data
    if shape == "equal halves":
        from Crypto.Cipher import DES

        assert ecb == DES.new(half, DES.MODE_ECB).encrypt(data)

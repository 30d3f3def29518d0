"""The tester's issuer host simulator against cards personalized by the test kit
(tests/emv/cardmaker.py): ARQC verification per cryptogram version, the
policy, ARPCs and the keys kept out of every repr."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from pyemv import kd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emv"))

from cardmaker import IMK_AC, IMK_SMC, IMK_SMI, Profile, build, des_kcv, make_card, personalize

from cardlab.emulator import Card
from cardlab.tester import tlv
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.issuer_host import (
    MASTERCARD,
    VISA,
    AuthorizationRequest,
    CryptogramVersion,
    HostError,
    IssuerHost,
    Policy,
    application_block,
    cryptogram_version,
    derive_icc_mk,
    mask_pan,
    pin_change,
)
from cardlab.tester.state import TransactionState

CVNS = [0x0A, 0x12, 0x10]
WRONG_IMK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


# -- a minimal terminal sequence (until the kernel drives it) -----------------------------------


def terminal_data(amount: int, un: bytes) -> dict[int, bytes]:
    return {
        0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6), 0x9F1A: b"\x02\x50", 0x95: bytes(5),
        0x5F2A: b"\x09\x78", 0x9A: bytes.fromhex("250601"), 0x9C: b"\x00", 0x9F37: un,
        0x9F35: b"\x22", 0x9F33: bytes.fromhex("E0F8C8"),
    }


def build_dol(dol: bytes, values: dict[int, bytes]) -> bytes:
    out = b""
    for tag, n in tlv.parse_dol(dol):
        v = values.get(tag, b"")
        out += v[:n] if len(v) >= n else bytes(n - len(v)) + v
    return out


def ok(channel: RecordingChannel, apdu: bytes) -> bytes:
    resp = channel.transmit(apdu)
    assert resp[-2:] in (b"\x90\x00", b"\x62\x83"), f"{apdu[:4].hex()}: {resp[-2:].hex()}"
    return resp[:-2]


def start(card: Card, aid: bytes, *, amount: int = 1000, un: bytes = b"\x12\x34\x56\x78",
          first: int = 0x80) -> tuple[TransactionState, RecordingChannel]:
    """SELECT, GPO, READ RECORD per AFL and a first GENERATE AC (ARQC by default)."""
    channel = RecordingChannel(card.transmit)
    state = TransactionState(amount=amount, unpredictable_number=un)
    values = terminal_data(amount, un)
    fci = ok(channel, b"\x00\xA4\x04\x00" + bytes((len(aid),)) + aid + b"\x00")
    state.aid, state.fci = aid, fci
    state.card_data.update(tlv.flatten(fci))
    state.pdol_data = build_dol(state.card_data.get(0x9F38, b""), values)
    gpo = ok(channel, b"\x80\xA8\x00\x00" + bytes((len(state.pdol_data) + 2, 0x83, len(state.pdol_data)))
             + state.pdol_data + b"\x00")
    item = tlv.parse(gpo)[0]
    if item.tag == 0x80:
        state.aip, state.afl = item.value[:2], item.value[2:]
    else:
        d = tlv.flatten(gpo)
        state.aip, state.afl = d[0x82], d[0x94]
    state.card_data[0x82], state.card_data[0x94] = state.aip, state.afl
    for i in range(0, len(state.afl), 4):
        sfi, a, b = state.afl[i] >> 3, state.afl[i + 1], state.afl[i + 2]
        for rec in range(a, b + 1):
            body = ok(channel, bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0)))
            state.records[(sfi, rec)] = body
            state.card_data.update(tlv.flatten(body))
    state.cdol1_data = build_dol(state.card_data[0x8C], values)
    body = ok(channel, bytes((0x80, 0xAE, first, 0x00, len(state.cdol1_data))) + state.cdol1_data + b"\x00")
    from cardlab.tester.online import parse_ac_response

    state.ac1 = parse_ac_response(body)
    return state, channel


def host(**kw: object) -> IssuerHost:
    return IssuerHost(IMK_AC, IMK_SMI, IMK_SMC, **kw)  # type: ignore[arg-type]


# -- cryptogram versions --------------------------------------------------------------------


def test_cryptogram_version_from_the_iad() -> None:
    v, why = cryptogram_version(bytes.fromhex("06010A03A00000"))
    assert v is not None and v.cvn == 0x0A and v.arpc_method == 1 and "byte 3" in why
    v, _ = cryptogram_version(bytes.fromhex("06011203A000000F0000000000000000000000000000000000"))
    assert v is not None and v.name == "Visa CVN 18" and v.arpc_method == 2
    v, why = cryptogram_version(bytes.fromhex("0110A00003220000000000000000000000FF"))
    assert v is not None and v.name == "Mastercard CVN 16" and "byte 2" in why
    v, why = cryptogram_version(bytes.fromhex("06017703A00000"))
    assert v is None and "77" in why
    assert cryptogram_version(b"")[0] is None
    # the RID settles the scheme
    v, _ = cryptogram_version(bytes.fromhex("0610A00003220000000000000000000000FF"), bytes.fromhex("A0000000041010"))
    assert v is not None and v.scheme == "Mastercard"


def test_option_a_and_b() -> None:
    assert derive_icc_mk(IMK_AC, "4761739001010010", "01") == kd.derive_icc_mk_a(IMK_AC, "4761739001010010", "01")
    long_pan = "4761739001010010123"
    assert derive_icc_mk(IMK_AC, long_pan, "01") == kd.derive_icc_mk_b(IMK_AC, long_pan, "01")
    assert derive_icc_mk(IMK_AC, long_pan, "01", "A") != derive_icc_mk(IMK_AC, long_pan, "01")
    assert mask_pan("4761739001010010") == "476173******0010"


@pytest.mark.parametrize("version", [*VISA.values(), *MASTERCARD.values()], ids=lambda v: v.name)
def test_pyemv_classes_made_without_their_init_compute_the_same(version: CryptogramVersion) -> None:
    """The host makes pyemv's objects without ``__init__`` (which only derives the ICC MKs with the
    class's own option) and sets the keys itself: that must stay all ``__init__`` does."""
    pan, psn = "4761739001010010", "01"
    made = version.factory(IMK_AC, IMK_SMI, IMK_SMC, pan, psn)
    assert set(vars(made)) == {"icc_mk_ac", "icc_mk_smi", "icc_mk_smc"}
    bare = version.factory.__new__(version.factory)
    for name in ("icc_mk_ac", "icc_mk_smi", "icc_mk_smc"):
        setattr(bare, name, getattr(made, name))
    args = dict(tag_9f02=b"\x00" * 5 + b"\x01", tag_9f03=b"\x00" * 6, tag_9f1a=b"\x08\x40", tag_95=b"\x00" * 5,
                tag_5f2a=b"\x08\x40", tag_9a=b"\x26\x12\x05", tag_9c=b"\x00", tag_9f37=b"\x12\x34\x56\x78",
                tag_82=b"\x18\x00", tag_9f36=b"\x00\x01")
    suffix = bytes.fromhex("06011203A00000") if version.cvn == 0x0A else bytes(32)
    assert bare.generate_ac(**args, **_iad_arg(version, suffix)) == made.generate_ac(**args, **_iad_arg(version, suffix))


def _iad_arg(version: CryptogramVersion, data: bytes) -> dict[str, bytes]:
    import inspect

    last = list(inspect.signature(version.factory.generate_ac).parameters)[-1]
    return {last: version.ac_suffix(data)}


# -- ARQC verification against emulated cards ------------------------------------------------------


@pytest.mark.parametrize("cvn", CVNS)
def test_arqc_verified_and_tampering_detected(cvn: int) -> None:
    p = Profile(cvn=cvn, oda="SDA")
    card, _ = make_card(p)
    state, _ = start(card, p.aid)
    req = AuthorizationRequest.from_state(state)
    assert req.pan == p.pan and req.psn == p.psn and req.amount == 1000
    good, why, expected = host().verify(req)
    assert good is True, why
    assert expected == req.cryptogram
    flipped = replace(req, cryptogram=bytes((req.cryptogram[0] ^ 0x01,)) + req.cryptogram[1:])
    bad, why, _ = host().verify(flipped)
    assert bad is False and "differs" in why and p.pan not in why
    wrong_key, _, _ = IssuerHost(WRONG_IMK, IMK_SMI, IMK_SMC).verify(req)
    assert wrong_key is False
    other_amount = replace(req, dol_values={**req.dol_values, 0x9F02: bytes.fromhex("000000002000")})
    assert host().verify(other_amount)[0] is False


@pytest.mark.parametrize("cvn", CVNS)
def test_authorize_approves_good_and_declines_bad(cvn: int) -> None:
    p = Profile(cvn=cvn, oda="SDA")
    card, _ = make_card(p)
    state, _ = start(card, p.aid)
    req = AuthorizationRequest.from_state(state)
    resp = host().authorize(req)
    assert resp.approved and resp.arc == b"00" and resp.arqc_valid
    assert resp.arpc_method == (2 if cvn == 0x12 else 1)
    assert resp.issuer_authentication_data == resp.arpc + (resp.csu if cvn == 0x12 else b"00")
    assert len(resp.arpc) == (4 if cvn == 0x12 else 8)
    bad = IssuerHost(WRONG_IMK, IMK_SMI, IMK_SMC).authorize(req)
    assert not bad.approved and bad.arc == b"05" and bad.arqc_valid is False
    assert "cryptogram not verified" in bad.reason


@pytest.mark.parametrize("cvn", [0x0A, 0x12, 0x10])
def test_imk_ac_alone_verifies_and_answers_but_sends_no_script(cvn: int) -> None:
    """An issuer sharing only IMK-AC: ARQC and ARPC as with all three keys;
    a script needs IMK-SMI, a PIN change IMK-SMC too (HostError, nothing sent)."""
    p = Profile(cvn=cvn, oda="SDA")
    card, _ = make_card(p)
    state, _ = start(card, p.aid)
    req = AuthorizationRequest.from_state(state)
    full, ac_only = host().authorize(req), IssuerHost(IMK_AC).authorize(req)
    assert ac_only.arqc_valid and ac_only.approved
    assert ac_only.issuer_authentication_data == full.issuer_authentication_data
    assert "no IMK-SMI" in IssuerHost(IMK_AC).can_send(application_block())
    assert IssuerHost(IMK_AC, IMK_SMI).can_send(application_block()) == ""
    assert "no IMK-SMC" in IssuerHost(IMK_AC, IMK_SMI).can_send(pin_change("4321"))
    with pytest.raises(HostError, match="no IMK-SMI"):
        IssuerHost(IMK_AC).authorize(req, [application_block()])
    with pytest.raises(HostError, match="no IMK-SMC"):
        IssuerHost(IMK_AC, IMK_SMI).authorize(req, [pin_change("4321")])
    block = [application_block()]
    assert IssuerHost(IMK_AC, IMK_SMI).authorize(req, block).scripts_after == host().authorize(req, block).scripts_after


def test_policy_amount_limit_and_forced() -> None:
    p = Profile(cvn=0x12, oda="SDA")
    card, _ = make_card(p)
    state, _ = start(card, p.aid, amount=5000)
    req = AuthorizationRequest.from_state(state)
    resp = host(decide=Policy(amount_limit=4999)).authorize(req)
    assert not resp.approved and resp.arc == b"05" and "above the limit" in resp.reason
    assert host(decide=Policy(amount_limit=5000)).authorize(req).approved
    assert not host(decide=Policy(force="decline")).authorize(req).approved
    forced = IssuerHost(WRONG_IMK, IMK_SMI, IMK_SMC, decide=Policy(force="approve")).authorize(req)
    assert forced.approved and forced.arqc_valid is False


def test_a_tc_is_not_an_online_request() -> None:
    p = Profile(cvn=0x0A, oda="SDA", lcol=3, ucol=5, lower_cumulative=50_000, upper_cumulative=100_000)
    card, _ = make_card(p)
    state, _ = start(card, p.aid, first=0x40)
    req = AuthorizationRequest.from_state(state)
    assert req.cid[0] & 0xC0 == 0x40
    resp = host().authorize(req)
    assert resp.arqc_valid is True and "TC verified" in resp.arqc_reason
    assert not resp.approved and "not an ARQC" in resp.reason


def test_option_b_for_a_19_digit_pan() -> None:
    """A card whose ICC master keys were derived with Option B (EMV A1.4.2)."""
    pan = "4761739001010010123"
    p = Profile(cvn=0x12, oda="SDA", pan=pan)
    cd = build(p)
    mks = [kd.derive_icc_mk_b(k, pan, p.psn) for k in (IMK_AC, IMK_SMI, IMK_SMC)]
    dgis = [(d, b"".join(mks) if d == 0x8000 else b"".join(des_kcv(k) for k in mks) if d == 0x9000 else v)
            for d, v in cd.dgis]
    card = Card.create()
    personalize(card, dgis, p.aid)
    state, _ = start(card, p.aid)
    req = AuthorizationRequest.from_state(state)
    assert req.pan == pan
    assert host().verify(req)[0] is True
    assert host(derivation="A").verify(req)[0] is False


def test_keys_never_in_reprs_or_reasons() -> None:
    h = host()
    text = repr(h)
    for k in (IMK_AC, IMK_SMI, IMK_SMC):
        assert k.hex() not in text.lower() and k.hex().upper() not in text
    p = Profile(cvn=0x10, oda="SDA")
    card, _ = make_card(p)
    state, _ = start(card, p.aid)
    resp = h.authorize(AuthorizationRequest.from_state(state))
    blob = repr(resp) + repr(resp.as_dict())
    for k in (IMK_AC, IMK_SMI, IMK_SMC, *p.mk()):
        assert k.hex() not in blob.lower()
    assert p.pan not in resp.reason + resp.arqc_reason

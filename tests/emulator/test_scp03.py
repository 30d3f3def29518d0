"""SCP03 (GP Amendment D): known answers end to end, negative cases, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.cardspec import scp03
from cardlab.cardspec.keys import kcv
from cardlab.cardspec.scp03 import HostSession, ScpError, StaticKeys
from cardlab.emulator import apdu
from cardlab.emulator.card import Card
from cardlab.emulator.gp.manager import new_card_state
from cardlab.emulator.gp.scp03 import CardSession

DOC = json.loads((Path(__file__).parents[2] / "vectors" / "scp03.json").read_text())
h = bytes.fromhex

KEY = h("404142434445464748494A4B4C4D4E4F")
# a harmless command every card answers with data: MANAGE CHANNEL open (ISO 7816-4 §11.1.2)
OPEN_CHANNEL = h("0070000001")


def make_card(vec: dict[str, Any] | None = None, **options: Any) -> Card:
    if vec is not None:
        options = dict(
            isd_aid=h(vec["isd_aid"]),
            keys=(h(vec["enc"]), h(vec["mac"]), h(vec["dek"])),
            kvn=vec["kvn"],
            kdd=h(vec["kdd"]),
            scp_i=vec["scp_i"],
            sequence_counter=vec["sequence_counter"],
        )
    card = Card(new_card_state(**options))
    card.power_on()
    return card


class Recorder:
    def __init__(self, card: Card) -> None:
        self.card = card
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    def __call__(self, command: bytes) -> bytes:
        self.sent.append(command)
        out = self.card.transmit(command)
        self.received.append(out)
        return out


def session_of(card: Card, channel: int = 0) -> CardSession:
    session = card.channels[channel].session
    assert session is not None
    return session


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def test_vector_file_cites_its_sources() -> None:
    assert "Amendment D" in DOC["source"]
    assert all(s["source"] for s in DOC["sets"])


@pytest.mark.parametrize("vec", DOC["sets"], ids=lambda v: v["name"])
def test_known_answers_end_to_end(vec: dict[str, Any]) -> None:
    """Each session starts on a fresh card (the vectors share one counter value)."""
    keys = StaticKeys(h(vec["enc"]), h(vec["mac"]), h(vec["dek"]), vec["kvn"])
    if "s_enc" in vec:
        enc, mac = h(vec["enc"]), h(vec["mac"])
        challenge = scp03.pseudo_random_challenge(enc, vec["sequence_counter"], h(vec["isd_aid"]))
        assert challenge.hex().upper() == vec["card_challenge"]
        sk = scp03.derive_session_keys(enc, mac, h(vec["host_challenge"]), challenge)
        assert (sk.enc.hex().upper(), sk.mac.hex().upper(), sk.rmac.hex().upper()) == (
            vec["s_enc"], vec["s_mac"], vec["s_rmac"])
        hc = h(vec["host_challenge"])
        assert scp03.card_cryptogram(sk.mac, hc, challenge).hex().upper() == vec["card_cryptogram"]
        assert scp03.host_cryptogram(sk.mac, hc, challenge).hex().upper() == vec["host_cryptogram"]
    for sess in vec["sessions"]:
        card = make_card(vec)
        link = Recorder(card)
        host = HostSession(link, keys)
        iu = h(vec["initialize_update"])
        host.open(sess["level"], h(vec["host_challenge"]), key_version=iu[2])
        # the exact INITIALIZE UPDATE, its exact response, the counter moved on
        assert link.sent[0] == iu
        assert link.received[0] == h(vec["initialize_update_response"]) + b"\x90\x00"
        assert card.state.sequence_counter == vec["sequence_counter"] + 1
        if sess["external_authenticate"]:
            assert link.sent[1] == h(sess["external_authenticate"])
        assert link.received[1] == b"\x90\x00"
        card_session = session_of(card)
        assert card_session.authenticated and card_session.level == sess["level"]
        for step in sess["commands"]:
            wrapped = host.wrap(h(step["plain"]))
            assert wrapped.hex().upper() == step["wrapped"]
            assert card_session.unwrap(apdu.parse(wrapped)) == apdu.parse(h(step["plain"]))
            if "response_plain" in step:
                plain = h(step["response_plain"])
                protected = card_session.wrap(plain, 0x9000)
                expected = h(step["response_wrapped"]) if "response_wrapped" in step else plain
                assert protected == expected
                assert host.unwrap(protected + b"\x90\x00") == plain + b"\x90\x00"


def test_kdf_known_answers() -> None:
    vec = DOC["kdf_vectors"]
    for constant, expected in vec["kcv"].items():
        key = scp03.kdf(h(vec["key"]), int(constant, 16), h(vec["context"]), 128)
        assert kcv("AES", key).hex().upper() == expected


# -- end to end through the card ------------------------------------------------------------


def open_session(level: int, *, card: Card | None = None, keys: bytes = KEY, **options: Any) -> tuple[Card, HostSession]:
    card = card or make_card(keys=(keys, keys, keys), **options)
    host = HostSession(card.transmit, StaticKeys(keys, keys, keys, 0x30))
    host.open(level)
    return card, host


@pytest.mark.parametrize("level", [0x01, 0x03, 0x11, 0x13, 0x33])
def test_wrapped_traffic_through_the_card(level: int) -> None:
    card, host = open_session(level)
    assert host.send(OPEN_CHANNEL) == b"\x01\x90\x00"
    assert host.send(OPEN_CHANNEL) == b"\x02\x90\x00"
    assert host.send(h("00708001")) == b"\x90\x00"  # close channel 1
    # an error answer is not protected and does not end the session
    assert host.send(h("00708001")) == h("6A86")
    assert host.send(OPEN_CHANNEL) == b"\x01\x90\x00"


def test_random_challenge_and_s16_modes() -> None:
    card, host = open_session(0x33, scp_i=0x60)  # random challenge: no sequence counter
    assert host.sequence_counter is None and card.state.sequence_counter == 0
    assert host.send(OPEN_CHANNEL) == b"\x01\x90\x00"
    card = make_card(scp_i=0x71)  # S16 mode
    host_s16 = HostSession(card.transmit, StaticKeys(KEY, KEY, KEY, 0x30))
    host_s16.open(0x33, bytes(range(16)))
    assert host_s16.mac_length == 16
    assert host_s16.send(OPEN_CHANNEL) == b"\x01\x90\x00"
    with pytest.raises(ScpError):  # an S16 card needs a 16-byte host challenge
        HostSession(card.transmit, StaticKeys(KEY, KEY, KEY, 0x30)).open(0x01, bytes(8))


def test_sequence_counter_persisted_before_the_response() -> None:
    seen: list[int] = []
    card = Card(new_card_state(sequence_counter=7), on_commit=lambda c: seen.append(c.state.sequence_counter))
    host = HostSession(card.transmit, StaticKeys(KEY, KEY, KEY, 0x30))
    host.open(0x01)
    assert host.sequence_counter == 7 and seen == [8]


def test_level_00_authenticates_without_secure_messaging() -> None:
    card, host = open_session(0x00)
    assert session_of(card).authenticated
    assert card.transmit(OPEN_CHANNEL) == b"\x01\x90\x00"
    assert session_of(card).authenticated  # unsecured commands keep a level-00 session


# -- negative cases -------------------------------------------------------------------------


def test_initialize_update_errors() -> None:
    card = make_card()
    assert sw(card.transmit(h("8050310008" + "00" * 8 + "00"))) == 0x6A88  # unknown key version
    assert sw(card.transmit(h("8050300108" + "00" * 8 + "00"))) == 0x6A86  # P2
    assert sw(card.transmit(h("8050300007" + "00" * 7 + "00"))) == 0x6700  # Lc
    assert card.state.sequence_counter == 0
    with pytest.raises(ScpError) as err:
        HostSession(card.transmit, StaticKeys(KEY, KEY, KEY, 0x31)).open(0x01)
    assert err.value.sw == 0x6A88


def test_wrong_static_keys_fail_the_card_cryptogram() -> None:
    card = make_card()
    other = bytes(16)
    with pytest.raises(ScpError) as err:
        HostSession(card.transmit, StaticKeys(other, other, other, 0x30)).open(0x01)
    assert err.value.sw is None and other.hex() not in str(err.value)


def external_authenticate(card: Card, level: int, cryptogram_flip: int = 0, mac_flip: int = 0) -> bytes:
    """INITIALIZE UPDATE by hand, then an EXTERNAL AUTHENTICATE with an
    optionally corrupted host cryptogram (correctly MACed) or C-MAC."""
    hc = bytes(8)
    resp = card.transmit(h("8050000008") + hc + b"\x00")
    cc = resp[13:21]
    sk = scp03.derive_session_keys(KEY, KEY, hc, cc)
    crypto = bytearray(scp03.host_cryptogram(sk.mac, hc, cc))
    crypto[0] ^= cryptogram_flip
    header = bytes((0x84, 0x82, level, 0x00))
    mac = bytearray(scp03.c_mac(sk.mac, bytes(16), header, b"\x10", bytes(crypto))[:8])
    mac[-1] ^= mac_flip
    return card.transmit(header + b"\x10" + bytes(crypto) + bytes(mac))


def assert_session_closed(card: Card) -> None:
    assert card.channels[0].session is None
    assert sw(card.transmit(h("84CA006608") + bytes(8) + b"\x00")) == 0x6882


def test_external_authenticate_checks() -> None:
    card = make_card()
    assert external_authenticate(card, 0x01) == b"\x90\x00"
    card = make_card()
    assert external_authenticate(card, 0x01, cryptogram_flip=0x01) == h("6982")
    assert_session_closed(card)
    card = make_card()
    assert external_authenticate(card, 0x01, mac_flip=0x80) == h("6982")
    assert_session_closed(card)
    for level in (0x31, 0x02, 0x12, 0x80):  # not in Amendment D table 7-3
        card = make_card()
        assert external_authenticate(card, level) == h("6A86")
        assert_session_closed(card)
    card = make_card(scp_i=0x10)  # no R-MAC support in i
    assert external_authenticate(card, 0x11) == h("6A86")


def test_external_authenticate_without_initialize_update() -> None:
    card = make_card()
    assert card.transmit(h("8482010010") + bytes(16)) == h("6882")  # wrapped, no session
    assert card.transmit(h("8082010010") + bytes(16)) == h("6985")
    card, host = open_session(0x01)
    # a second EXTERNAL AUTHENTICATE inside the session is refused and ends it
    assert sw(card.transmit(host.wrap(h("8082010010") + bytes(16)))) == 0x6985
    assert_session_closed(card)


def test_wrapped_command_without_session() -> None:
    card = make_card()
    assert card.transmit(h("84CA006608") + bytes(8) + b"\x00") == h("6882")


def test_flipped_mac_bit_closes_the_session() -> None:
    card, host = open_session(0x01)
    wrapped = bytearray(host.wrap(OPEN_CHANNEL))
    wrapped[-2] ^= 0x01  # last MAC byte (before Le)
    assert card.transmit(bytes(wrapped)) == h("6982")
    assert_session_closed(card)


def test_replayed_command_is_refused() -> None:
    card, host = open_session(0x11)
    wrapped = host.wrap(OPEN_CHANNEL)
    assert sw(card.transmit(wrapped)) == 0x9000
    assert card.transmit(wrapped) == h("6982")
    assert_session_closed(card)


def test_skipped_command_breaks_the_mac_chain() -> None:
    card, host = open_session(0x03)
    host.wrap(OPEN_CHANNEL)  # never sent
    assert card.transmit(host.wrap(OPEN_CHANNEL)) == h("6982")
    assert_session_closed(card)


def test_tampered_ciphertext_and_response() -> None:
    card, host = open_session(0x33)
    wrapped = bytearray(host.wrap(h("80CA00660401020304")))
    wrapped[6] ^= 0x01
    assert card.transmit(bytes(wrapped)) == h("6982")
    card, host = open_session(0x11)
    response = bytearray(card.transmit(host.wrap(OPEN_CHANNEL)))
    response[0] ^= 0x01
    with pytest.raises(ScpError):
        host.unwrap(bytes(response))


def test_unsecured_command_ends_a_cmac_session() -> None:
    card, host = open_session(0x01)
    assert card.transmit(OPEN_CHANNEL) == b"\x01\x90\x00"
    assert_session_closed(card)


def test_dek_helpers() -> None:
    dek = h("202122232425262728292A2B2C2D2E2F")
    host = HostSession(lambda c: b"", StaticKeys(KEY, KEY, dek, 0x30))
    assert scp03.dek_decrypt(dek, host.dek_encrypt(bytes(range(32)))) == bytes(range(32))
    assert len(host.encrypt_key(bytes(16))) == 16
    block = host.encrypt_key(bytes(range(5)))
    assert block[0] == 5 and scp03.dek_decrypt(dek, block[1:])[:5] == bytes(range(5))
    with pytest.raises(ValueError):
        scp03.dek_encrypt(dek, bytes(15))


# -- property: host and card sessions agree --------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    level=st.sampled_from([0x01, 0x03, 0x11, 0x13, 0x33]),
    key_length=st.sampled_from([16, 24, 32]),
    key_seed=st.binary(min_size=32, max_size=32),
    traffic=st.lists(
        st.tuples(st.binary(max_size=300), st.sampled_from([None, 0, 17]), st.binary(max_size=200)),
        min_size=1, max_size=4,
    ),
)
def test_host_card_round_trip(
    level: int, key_length: int, key_seed: bytes, traffic: list[tuple[bytes, int | None, bytes]]
) -> None:
    enc, mac, dek = key_seed[:key_length], key_seed[::-1][:key_length], bytes(key_length)
    card = Card(new_card_state(keys=(enc, mac, dek)))
    card.power_on()
    host = HostSession(card.transmit, StaticKeys(enc, mac, dek, 0x30))
    host.open(level)
    session = session_of(card)
    for data, le, response in traffic:
        plain = apdu.Command(0x80, 0xCA, 0x00, 0x66, data, None if le is None else (le or 256))
        raw = plain.encode()
        unwrapped = session.unwrap(apdu.parse(host.wrap(raw)))
        assert (unwrapped.cla, unwrapped.ins, unwrapped.p1, unwrapped.p2) == (0x80, 0xCA, 0x00, 0x66)
        assert unwrapped.data == data and unwrapped.ne == plain.ne
        protected = session.wrap(response, 0x9000)
        assert host.unwrap(protected + b"\x90\x00") == response + b"\x90\x00"
    # and one command through the whole card
    assert host.send(OPEN_CHANNEL) == b"\x01\x90\x00"

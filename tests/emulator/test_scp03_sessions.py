"""SCP03 sessions per logical channel, every i parameter the card implements,
and INITIALIZE UPDATE ending the session of its channel (GP Card Spec 2.3
§10.2, Amendment D §5.1, §6.2, §7.1.1)."""

from __future__ import annotations

import pytest

from cardlab.cardspec.scp03 import I_PSEUDO_RANDOM, I_RENC, I_RMAC, I_S16, HostSession, ScpError, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator.gp.manager import DEFAULT_KEY, new_card_state
from cardlab.emulator.gp.scp03 import SUPPORTED_I

KEYS = StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)
GET_CARD_DATA = bytes.fromhex("80CA006600")
GET_STATUS_ISD = bytes.fromhex("80F28002024F0000")  # P2 02: E3 templates
OK = b"\x90\x00"


def new_card(**options: int) -> Card:
    card = Card(new_card_state(**options))  # type: ignore[arg-type]
    card.power_on()
    return card


def data_ok(response: bytes) -> bytes:
    assert response[-2:] == OK, response.hex()
    return response[:-2]


# -- two channels, two sessions ------------------------------------------------------------


def test_sessions_on_two_channels_at_different_levels() -> None:
    card = new_card()
    assert card.transmit(bytes.fromhex("0070000001")) == b"\x01" + OK  # ISD selected on channel 1
    plain_card_data = data_ok(card.transmit(GET_CARD_DATA))
    s0 = HostSession(card.transmit, KEYS)
    s1 = HostSession(card.transmit, KEYS, channel=1)
    s0.open(0x33)  # C-DEC, R-ENC, C-MAC, R-MAC
    s1.open(0x01)  # C-MAC only
    # each INITIALIZE UPDATE took the next value of the card-wide sequence counter
    assert (s0.sequence_counter, s1.sequence_counter) == (0, 1)
    sessions = card.channels[0].session, card.channels[1].session
    assert sessions[0] is not None and sessions[1] is not None and sessions[0] is not sessions[1]
    assert (sessions[0].level, sessions[1].level) == (0x33, 0x01)
    # interleaved: each channel's MAC chain and counter are its own
    for _ in range(3):
        assert data_ok(s0.send(GET_CARD_DATA)) == plain_card_data
        assert data_ok(s1.send(GET_CARD_DATA)) == plain_card_data
        assert data_ok(s1.send(GET_STATUS_ISD)) == data_ok(s0.send(GET_STATUS_ISD))
    wrapped1 = s1.wrap(GET_CARD_DATA)
    assert wrapped1[0] == 0x85  # GP CLA with secure messaging and channel 1
    assert data_ok(s0.send(GET_CARD_DATA)) == plain_card_data  # channel 0 between wrap and send
    assert data_ok(s1.unwrap(card.transmit(wrapped1))) == plain_card_data
    # closing channel 1 (a command of channel 0's session) ends only channel 1's session
    assert s0.send(bytes.fromhex("00708001")) == OK
    assert 1 not in card.channels
    assert data_ok(s0.send(GET_CARD_DATA)) == plain_card_data
    assert s0.send(bytes.fromhex("00700001")) == OK  # channel 1 again: no session on it
    assert card.channels[1].session is None
    assert card.transmit(s1.wrap(GET_CARD_DATA)) == b"\x68\x82"
    assert data_ok(s0.send(GET_CARD_DATA)) == plain_card_data


def test_a_command_wrapped_for_one_channel_fails_on_the_other() -> None:
    """The C-MAC leaves the channel number out (Amendment D §6.2.4), but each
    channel's session has its own keys and chain: a command moved to another
    channel fails its C-MAC and ends that channel's session only."""
    card = new_card()
    assert card.transmit(bytes.fromhex("0070000001")) == b"\x01" + OK
    s0, s1 = HostSession(card.transmit, KEYS), HostSession(card.transmit, KEYS, channel=1)
    s0.open(0x01)
    s1.open(0x01)
    moved = bytearray(s1.wrap(GET_CARD_DATA))
    moved[0] &= ~0x03 & 0xFF  # same command, channel 0
    assert card.transmit(bytes(moved)) == b"\x69\x82"
    assert card.channels[0].session is None
    assert card.channels[1].session is not None
    # channel 1's chain never saw the moved command: rebuild it by opening again
    s1.open(0x01)
    assert data_ok(s1.send(GET_CARD_DATA))


def test_plain_command_ends_only_its_channels_session() -> None:
    card = new_card()
    assert card.transmit(bytes.fromhex("0070000001")) == b"\x01" + OK
    s0, s1 = HostSession(card.transmit, KEYS), HostSession(card.transmit, KEYS, channel=1)
    s0.open(0x01)
    s1.open(0x03)
    data_ok(card.transmit(bytes.fromhex("81CA006600")))  # unsecured on channel 1 (Amendment D §6.2.4)
    assert card.channels[1].session is None
    assert data_ok(s0.send(GET_CARD_DATA))


# -- every i parameter the card implements ---------------------------------------------------


def levels_for(i: int) -> list[int]:
    """Security levels (Amendment D table 7-3) the i parameter allows."""
    out = [0x00, 0x01, 0x03]
    if i & I_RMAC:
        out += [0x11, 0x13]
    if i & I_RENC:
        out += [0x33]
    return out


@pytest.mark.parametrize(
    ("i", "level"),
    [(i, level) for i in sorted(SUPPORTED_I) for level in levels_for(i)],
    ids=lambda v: f"{v:02X}",
)
def test_every_i_parameter_opens_and_carries_wrapped_commands(i: int, level: int) -> None:
    card = new_card(scp_i=i, sequence_counter=5)
    host = HostSession(card.transmit, KEYS)
    host.open(level, bytes(range(16 if i & I_S16 else 8)))
    assert host.i == i and host.mac_length == (16 if i & I_S16 else 8)
    if i & I_PSEUDO_RANDOM:
        assert host.sequence_counter == 5 and card.state.sequence_counter == 6
    else:
        assert host.sequence_counter is None and card.state.sequence_counter == 5
    # wrapped commands with data in (C-DEC at level 03 and up) and data out
    # (R-MAC / R-ENC as the level says), several so that the MAC chain runs
    plain_status = data_ok(card.transmit(GET_STATUS_ISD)) if level == 0x00 else None
    for _ in range(2):
        status = data_ok(host.send(GET_STATUS_ISD))
        assert status[:1] == b"\xe3" and (plain_status is None or status == plain_status)
        assert data_ok(host.send(GET_CARD_DATA))[:1] == b"\x66"
    assert card.channels[0].session is not None and card.channels[0].session.level == level


@pytest.mark.parametrize("i", [0x00, 0x01, 0x20, 0x60])
def test_random_card_challenge_differs_between_sessions(i: int) -> None:
    card = new_card(scp_i=i)
    n = 16 if i & I_S16 else 8
    answers = [card.transmit(bytes.fromhex(f"80500000{n:02X}") + bytes(n) + b"\x00") for _ in range(2)]
    assert all(a[-2:] == OK and len(a) == 2 + 13 + 2 * n for a in answers)  # no sequence counter
    assert answers[0][13 : 13 + n] != answers[1][13 : 13 + n]


@pytest.mark.parametrize("i", [0x00, 0x10, 0x01, 0x11])
def test_levels_beyond_the_i_parameter_are_refused(i: int) -> None:
    card = new_card(scp_i=i)
    for level in (0x11, 0x13, 0x33):
        with pytest.raises(ScpError, match="does not support level"):
            HostSession(card.transmit, KEYS).open(level, bytes(16 if i & I_S16 else 8))


# -- INITIALIZE UPDATE with a wrong key version --------------------------------------------


def test_initialize_update_wrong_key_version_closes_the_open_session() -> None:
    """6A88 (Amendment D §7.1.1.5), and the session that was open on that
    channel is over: INITIALIZE UPDATE starts a new session whatever its outcome."""
    card = new_card()
    assert card.transmit(bytes.fromhex("0070000001")) == b"\x01" + OK
    s0, s1 = HostSession(card.transmit, KEYS), HostSession(card.transmit, KEYS, channel=1)
    s0.open(0x01)
    s1.open(0x01)
    counter = card.state.sequence_counter
    # sent wrapped inside channel 0's C-MAC session, so that only the
    # INITIALIZE UPDATE itself can end it (a plain command would anyway)
    assert s0.send(bytes.fromhex("8050310008") + bytes(8) + b"\x00") == b"\x6a\x88"
    assert card.channels[0].session is None
    assert card.state.sequence_counter == counter  # no challenge was made
    assert s0.send(GET_CARD_DATA) == b"\x68\x82"  # the next wrapped command is refused
    assert data_ok(s1.send(GET_CARD_DATA))  # channel 1's session is untouched


def test_initialize_update_wrong_key_version_closes_a_level_00_session() -> None:
    """A level-00 session survives plain commands; a plain INITIALIZE UPDATE
    with an unknown key version still ends it."""
    card = new_card()
    host = HostSession(card.transmit, KEYS)
    host.open(0x00)
    data_ok(card.transmit(GET_CARD_DATA))
    assert card.channels[0].session is not None
    with pytest.raises(ScpError) as err:
        HostSession(card.transmit, StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x31)).open(0x00)
    assert err.value.sw == 0x6A88
    assert card.channels[0].session is None
    assert card.transmit(bytes.fromhex("84CA006608") + bytes(8) + b"\x00") == b"\x68\x82"

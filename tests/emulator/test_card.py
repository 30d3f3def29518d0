"""Card-level behaviour: classes, logical channels, error mapping, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardlab.emulator import Card
from cardlab.emulator.applet import Applet
from cardlab.emulator.image import ImageError, load_state, save_state
from cardlab.emulator.gp.manager import new_card_state

ISD = "A000000151000000"


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


def send(card: Card, hexstr: str) -> bytes:
    return card.transmit(bytes.fromhex(hexstr.replace(" ", "")))


@pytest.fixture
def card() -> Card:
    c = Card.create()
    c.power_on()
    return c


def test_atr_and_default_selection(card: Card) -> None:
    assert card.power_on()[0] == 0x3B
    assert card.channels[0].selected == bytes.fromhex(ISD)


@pytest.mark.parametrize("cla", ["20", "30", "90", "A0", "B0", "D0", "F0", "FE"])
def test_unsupported_class_is_6e00(card: Card, cla: str) -> None:
    assert sw(send(card, cla + "A4040000")) == 0x6E00


def test_chaining_not_supported(card: Card) -> None:
    assert sw(send(card, "10A4040008" + ISD)) == 0x6884


def test_secure_messaging_without_session_is_6882(card: Card) -> None:
    assert sw(send(card, "84CA006600")) == 0x6882
    assert sw(send(card, "0CB0000000")) == 0x6882


def test_manage_channel_open_use_close(card: Card) -> None:
    opened = [send(card, "0070000001") for _ in range(3)]
    assert [r.hex() for r in opened] == ["019000", "029000", "039000"]
    # each channel has its own selection
    assert sw(send(card, "01A4040008" + ISD)) == 0x9000
    assert card.channels[1].selected == bytes.fromhex(ISD)
    assert sw(send(card, "0270800200")) == 0x6700  # close takes no Le
    assert sw(send(card, "00708002")) == 0x9000
    assert 2 not in card.channels
    assert sw(send(card, "02A4040008" + ISD)) == 0x6881  # closed channel
    assert sw(send(card, "00708000")) == 0x6A86  # basic channel cannot be closed
    assert sw(send(card, "00700002")) == 0x9000  # open channel 2 explicitly
    assert sw(send(card, "00700002")) == 0x6985  # already open
    assert sw(send(card, "00709900")) == 0x6A86


def test_all_channels_used(card: Card) -> None:
    for _ in range(7):
        assert sw(send(card, "0070000001")) == 0x9000
    assert sw(send(card, "0070000001")) == 0x6A81


def test_power_on_closes_channels(card: Card) -> None:
    send(card, "0070000001")
    card.power_on()
    assert list(card.channels) == [0]


def test_internal_error_becomes_6f00(card: Card, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    isd = card.applets[bytes.fromhex(ISD)]

    def boom(self: Applet, ctx: object, cmd: object) -> bytes:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(type(isd), "process", boom)
    monkeypatch.setattr(type(isd), "handles", lambda self, cmd: True)
    assert send(card, "80CA006600").hex() == "6f00"
    assert "internal error" in caplog.text


def test_commit_hook_runs_before_response_after_state_change(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = Card.create()
    card.save(path)
    calls: list[int] = []

    def commit(c: Card) -> None:
        c.save(path)
        calls.append(c.state.sequence_counter)

    card.on_commit = commit
    card.power_on()
    resp = send(card, "8050000008" + "11" * 8 + "00")  # INITIALIZE UPDATE moves the counter
    assert sw(resp) == 0x9000
    assert calls == [1]
    assert load_state(path).sequence_counter == 1
    send(card, "00A4040008" + ISD)  # no state change: no save
    assert calls == [1]


def test_image_round_trip_and_atomic_write(tmp_path: Path) -> None:
    state = new_card_state(kdd=bytes(range(10)), sequence_counter=42)
    path = tmp_path / "img.json"
    save_state(state, path)
    assert load_state(path) == state
    assert [p.name for p in tmp_path.iterdir()] == ["img.json"]  # no temporary left
    doc = json.loads(path.read_text())
    assert doc["scp"]["sequence_counter"] == 42
    card = Card.load(path)
    card.save(path)
    assert load_state(path) == Card.load(path).state


@pytest.mark.parametrize("text", ["", "{}", '{"format": "cardlab-card-image", "version": 99}', "[1]",
                                  '{"format": "cardlab-card-image", "version": 1}'])
def test_bad_images_are_refused_clearly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ImageError):
        load_state(path)


def test_selecting_a_file_keeps_the_application_and_its_session(card: Card) -> None:
    from cardlab.cardspec.scp03 import HostSession, StaticKeys
    from cardlab.emulator.gp.manager import DEFAULT_KEY

    scp = HostSession(card.transmit, StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30))
    scp.open(0x03)
    assert scp.send(bytes.fromhex("00A40000023F00"))[-2:] == b"\x90\x00"  # MF by FID, wrapped
    assert card.channels[0].selected == bytes.fromhex(ISD)
    assert card.channels[0].session is not None
    assert scp.send(bytes.fromhex("80F28002024F0000"))[-2:] == b"\x90\x00"  # still authenticated
    # selecting an application (or a DF by name) ends the session
    assert sw(send(card, "00A4040008" + ISD)) == 0x9000
    assert card.channels[0].session is None


@pytest.mark.parametrize("text", ["{}", '{"format": "cardlab-card-image", "version": 99}', "[1]",
                                  '{"format": "cardlab-card-image", "version": 1}'])
def test_a_bad_snapshot_is_named_before_its_journal(tmp_path: Path, text: str) -> None:
    """A journal beside a bad snapshot does not change the error: the snapshot's own comes first."""
    from cardlab.emulator.journalfile import FORMAT, VERSION, frame, journal_path, snapshot_id

    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ImageError) as alone:
        load_state(path)
    journal_path(path).write_bytes(frame({"format": FORMAT, "version": VERSION, "image": snapshot_id(text.encode())})
                                   + frame([[["card", "lifecycle"], "SECURED"]]))
    with pytest.raises(ImageError) as with_journal:
        load_state(path)
    assert str(with_journal.value) == str(alone.value)

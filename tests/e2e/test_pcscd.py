"""The emulated card through a real pcscd and vsmartcard's vpcd driver, used
with pyscard's PC/SC reader "Virtual PCD 00 00" like any physical card."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cardlab.emulator import Card

from pcscd_helper import CardServer, Pcscd, close, connect_reader, transmit, wait_for

pytestmark = pytest.mark.pcscd

SELECT_ISD = bytes.fromhex("00A4040008A000000151000000")
DEFAULT_KEY = bytes(range(0x40, 0x50))


def test_atr_and_select(card_server: CardServer, card_image: Path) -> None:
    conn = connect_reader()
    try:
        assert bytes(conn.getATR()) == Card.load(card_image).power_on()
        assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
    finally:
        close(conn)


def test_same_answers_as_in_process(card_server: CardServer, card_image: Path) -> None:
    """pcscd + vpcd change nothing: every answer equals the in-process card's."""
    commands = [
        SELECT_ISD,
        bytes.fromhex("80CA006600"),  # GET DATA card data
        bytes.fromhex("0070000001"),  # MANAGE CHANNEL open
        bytes.fromhex("0070800100"),  # MANAGE CHANNEL close 1 (wrong Le: an error SW)
        bytes.fromhex("0070800100")[:4],  # MANAGE CHANNEL close 1
        bytes.fromhex("00A4000C023F00"),  # SELECT MF by FID
        bytes.fromhex("FFFF0000"),  # bad class
        bytes.fromhex("00A40400"),  # SELECT without data: the ISD
        bytes.fromhex("00A4040010") + bytes(16) + b"\x00",
    ]
    local = Card.load(card_image)
    local.power_on()
    expected = [local.transmit(c) for c in commands]
    conn = connect_reader()
    try:
        assert [transmit(conn, c) for c in commands] == expected
    finally:
        close(conn)


def test_many_apdus(card_server: CardServer) -> None:
    conn = connect_reader()
    try:
        for _ in range(200):
            assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
    finally:
        close(conn)


def test_sigterm_stops_and_saves(card_server: CardServer, card_image: Path) -> None:
    conn = connect_reader()
    transmit(conn, SELECT_ISD)
    close(conn)
    before = card_image.stat().st_mtime_ns
    card_server.proc.send_signal(signal.SIGTERM)
    assert card_server.proc.wait(timeout=10) == 0
    assert card_image.stat().st_mtime_ns >= before
    Card.load(card_image)  # still a valid image
    log = card_server.log()
    assert "saved" in log and "Traceback" not in log


def test_server_waits_for_pcscd_then_survives_restart(pcscd: Pcscd, card_image: Path, tmp_path: Path) -> None:
    pcscd.stop()
    server = CardServer(card_image, tmp_path / "server.log")
    try:
        wait_for("the server to wait for pcscd", lambda: "waiting for pcscd" in server.log(), timeout=10)
        assert server.proc.poll() is None
        pcscd.start()
        conn = connect_reader()
        assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        close(conn)
        # pcscd goes away and comes back: the server reconnects by itself
        pcscd.stop()
        pcscd.start()
        conn = connect_reader()
        assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        close(conn)
        assert "reconnecting" in server.log()
    finally:
        assert server.stop() == 0
        if pcscd.proc is None:
            pcscd.start()


@pytest.mark.parametrize("level", [0x03, 0x33], ids=["C-MAC+C-DEC", "level-33"])
def test_scp03_session(card_server: CardServer, card_image: Path, level: int) -> None:
    """An SCP03 session opened and used through pcscd: the same answers as the
    in-process card gives to the same host session (fixed host challenge)."""
    scp03 = pytest.importorskip("cardlab.cardspec.scp03")
    pytest.importorskip("cardlab.emulator.gp.scp03")  # the card side
    conn = connect_reader()
    try:
        assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        keys = scp03.StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)
        session = scp03.HostSession(lambda apdu: transmit(conn, apdu), keys)
        session.open(level, host_challenge=bytes(8))
        # GET STATUS of the ISD
        response = session.send(bytes.fromhex("80F28002024F0000"))
        assert response[-2:] in (b"\x90\x00", b"\x63\x10")
        local = Card.load(card_image)
        local.power_on()
        local.transmit(SELECT_ISD)
        twin = scp03.HostSession(local.transmit, keys)
        twin.open(level, host_challenge=bytes(8))
        assert twin.send(bytes.fromhex("80F28002024F0000")) == response
    finally:
        close(conn)


def test_image_saved_as_the_card_changes(card_server: CardServer, card_image: Path) -> None:
    """A persistent change (the SCP03 sequence counter, bumped by INITIALIZE
    UPDATE) reaches the image file while the server keeps running."""
    pytest.importorskip("cardlab.emulator.gp.scp03")
    before = Card.load(card_image).state.sequence_counter
    conn = connect_reader()
    try:
        assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        assert transmit(conn, bytes.fromhex("8050300008") + bytes(8) + b"\x00")[-2:] == b"\x90\x00"
        wait_for(
            "the image to be saved",
            lambda: Card.load(card_image).state.sequence_counter == before + 1,
            timeout=5,
        )
        assert card_server.proc.poll() is None
    finally:
        close(conn)


def test_cli_serve(pcscd: Pcscd, card_image: Path, tmp_path: Path) -> None:
    """``cardlab card serve IMAGE --vpcd`` serves the card and stops on SIGTERM."""
    pytest.importorskip("cardlab.cli")
    server = CardServer(card_image, tmp_path / "cli.log", cli=True)
    try:
        conn = connect_reader()
        try:
            assert transmit(conn, SELECT_ISD)[-2:] == b"\x90\x00"
        finally:
            close(conn)
    finally:
        assert server.stop() == 0, server.log()

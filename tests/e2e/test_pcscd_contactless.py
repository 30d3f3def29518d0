"""The card served as a contactless card (issue 16) through a real pcscd + vpcd:
``cardlab card serve IMAGE --vpcd --interface contactless`` presents the PC/SC Part 3
contactless ATR and the reader's GET DATA UID answers the card image's UID; the same image
served on the contact interface keeps its contact ATR."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardlab.emulator import Card
from cardlab.emulator import contactless as cl

from pcscd_helper import CardServer, Pcscd, close, connect_reader, transmit

pytestmark = pytest.mark.pcscd


def test_contactless_atr_and_uid(pcscd: Pcscd, card_image: Path, tmp_path: Path) -> None:
    state = Card.load(card_image).state
    server = CardServer(card_image, tmp_path / "server.log", cli=True, extra=("--interface", "contactless"))
    try:
        conn = connect_reader()
        try:
            atr = bytes(conn.getATR())
            assert atr == cl.atr(state) and atr[:4] == bytes.fromhex("3B868001")
            uid = transmit(conn, bytes.fromhex("FFCA000000"))
            assert uid == cl.uid(state) + b"\x90\x00" and len(uid) == 9
            assert transmit(conn, bytes.fromhex("FFCA000000")) == uid  # stable
            assert transmit(conn, bytes.fromhex("00A4040008A000000151000000"))[-2:] == b"\x90\x00"
        finally:
            close(conn)
    finally:
        server.stop()
    server = CardServer(card_image, tmp_path / "server2.log", cli=True)
    try:
        conn = connect_reader()
        try:
            assert bytes(conn.getATR()) == state.atr  # the contact interface keeps its ATR
        finally:
            close(conn)
    finally:
        server.stop()

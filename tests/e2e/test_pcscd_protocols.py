"""T=0 and T=1 cards through a real pcscd + vpcd: the reader reports the card's own ATR and the
protocol it offers; a T=0 card answers case 4 commands with 61xx and the tester's and the
personalizer's transports fetch the data with GET RESPONSE (a whole EMV transaction runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cardlab.cardspec import atr as A
from pcscd_helper import READER, CardServer, Pcscd, close, connect_reader, transmit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tester"))

pytestmark = pytest.mark.pcscd

SELECT_ISD = bytes.fromhex("00A4040008A00000015100000000")


def _personalized_image(path: Path, protocol: int) -> Path:
    import kernelkit  # type: ignore[import-not-found]

    card, _ = kernelkit.card_for(kernelkit.P())
    card.state.atr = A.basic(protocol)
    card.save(path)
    return path


@pytest.mark.parametrize("protocol", [0, 1])
def test_protocols_through_pcscd(pcscd: Pcscd, tmp_path: Path, protocol: int) -> None:
    from smartcard.CardConnection import CardConnection

    from cardlab.personalizer.engine.channel import PcscChannel
    from cardlab.tester.channel import PyscardChannel, RecordingChannel
    from cardlab.tester.kernel import run_transaction
    from cardlab.tester.terminal import load_terminal

    image = _personalized_image(tmp_path / "card.json", protocol)
    server = CardServer(image, tmp_path / "server.log")
    try:
        conn = connect_reader()
        try:
            assert bytes(conn.getATR()) == A.basic(protocol)
            assert conn.getProtocol() == (CardConnection.T0_protocol if protocol == 0 else CardConnection.T1_protocol)
            first = transmit(conn, SELECT_ISD)
            if protocol == 0:  # the data waits for GET RESPONSE
                assert first[0] == 0x61 and len(first) == 2
                assert transmit(conn, bytes.fromhex("00C00000") + first[1:])[-2:] == b"\x90\x00"
                assert transmit(conn, bytes.fromhex("00C00000") + first[1:]) == b"\x69\x85"
            else:
                assert first[-2:] == b"\x90\x00" and len(first) > 2
        finally:
            close(conn)
        perso = PcscChannel(READER)
        try:
            assert perso.transmit(SELECT_ISD)[-2:] == b"\x90\x00" and len(perso.transmit(SELECT_ISD)) > 2
        finally:
            close(perso._conn)
        channel = PyscardChannel(READER)
        try:
            assert channel.protocol == f"T={protocol}"
            recorder = RecordingChannel(channel.transmit, channel.atr(), protocol=channel.protocol)
            state = run_transaction(recorder, load_terminal(), amount=1500, seed=7)
            assert state.aid and state.outcome and not state.outcome.startswith("terminated"), state.outcome
            assert state.events[0].step == "Answer to reset"
        finally:
            close(channel.connection)
    finally:
        server.stop()

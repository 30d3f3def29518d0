"""The vpcd client against a fake vpcd (a TCP server in the test playing
pcscd's part): framing, controls, reconnection, stop, image saving."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardlab.emulator import Card
from cardlab.emulator.transports import vpcd

SELECT_ISD = bytes.fromhex("00A4040008A000000151000000")


class FakeVpcd:
    """The reader side of the vpcd protocol, listening like pcscd does."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(struct.pack(">H", len(payload)) + payload)

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        out = b""
        while len(out) < n:
            chunk = self.conn.recv(n - len(out))
            assert chunk, "card closed the connection"
            out += chunk
        return out

    def receive(self) -> bytes:
        (length,) = struct.unpack(">H", self._exact(2))
        return self._exact(length)

    def exchange(self, apdu: bytes) -> bytes:
        self.send(apdu)
        return self.receive()

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()
        self.listener.close()


@pytest.fixture
def fake() -> Iterator[FakeVpcd]:
    server = FakeVpcd()
    yield server
    server.close()


def start(card: object, port: int) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=vpcd.serve, args=(card, "127.0.0.1", port, stop), daemon=True)
    thread.start()
    return thread, stop


def test_controls_and_apdus(fake: FakeVpcd) -> None:
    card = Card.create()
    twin = Card.create()
    thread, stop = start(card, fake.port)
    try:
        fake.accept()
        fake.send(b"\x01")  # power on: not answered
        fake.send(b"\x04")  # get ATR
        assert fake.receive() == twin.power_on()
        assert fake.exchange(SELECT_ISD) == twin.transmit(SELECT_ISD)
        # two messages in one TCP segment are both answered, in order
        assert fake.conn is not None
        fake.conn.sendall(b"".join(struct.pack(">H", len(m)) + m for m in (SELECT_ISD, b"\x80\xca\x00\x66\x00")))
        assert fake.receive() == twin.transmit(SELECT_ISD)
        assert fake.receive() == twin.transmit(b"\x80\xca\x00\x66\x00")
        fake.send(b"\x02")  # reset
        fake.send(b"\x00")  # power off
        fake.send(b"\x04")
        assert fake.receive() == twin.state.atr
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_socket_options(fake: FakeVpcd, monkeypatch: pytest.MonkeyPatch) -> None:
    links: list[vpcd._Link] = []
    original_init = vpcd._Link.__init__

    def recording_init(self: vpcd._Link, sock: socket.socket, stop_event: threading.Event) -> None:
        original_init(self, sock, stop_event)
        links.append(self)

    monkeypatch.setattr(vpcd._Link, "__init__", recording_init)
    thread, stop = start(Card.create(), fake.port)
    try:
        fake.accept()
        assert fake.exchange(SELECT_ISD)[-2:] == b"\x90\x00"
        assert links[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        stop.set()
        thread.join(5)


def test_reconnects_after_the_reader_goes_away(fake: FakeVpcd) -> None:
    thread, stop = start(Card.create(), fake.port)
    try:
        fake.accept()
        assert fake.exchange(SELECT_ISD)[-2:] == b"\x90\x00"
        fake.drop()  # pcscd restarting
        fake.accept()
        fake.send(b"\x04")
        assert fake.receive()[:1] == b";"
        assert fake.exchange(SELECT_ISD)[-2:] == b"\x90\x00"
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_waits_for_the_reader_and_stops_while_waiting() -> None:
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    thread, stop = start(Card.create(), port)
    threading.Event().wait(0.2)
    assert thread.is_alive()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_image_is_saved_on_stop(fake: FakeVpcd, tmp_path: Path) -> None:
    image = tmp_path / "card.json"
    Card.create().save(image)
    before = image.stat().st_mtime_ns
    thread, stop = start(image, fake.port)
    try:
        fake.accept()
        assert fake.exchange(SELECT_ISD)[-2:] == b"\x90\x00"
    finally:
        stop.set()
        thread.join(5)
    assert image.stat().st_mtime_ns >= before
    Card.load(image)


def test_missing_image_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        vpcd.serve(tmp_path / "missing.json", "127.0.0.1", 1, threading.Event())

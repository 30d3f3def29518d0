"""Serve an emulated card to pcscd through vsmartcard's vpcd reader driver.

pcscd's vpcd driver listens on TCP (default 127.0.0.1:35963; slot *n* on
35963+n, reader "Virtual PCD 00 0n") and the card connects to it. Each message,
both ways, is a 2-byte big-endian length and a payload (frankmorgner/vsmartcard
``vpcd.c``): a 1-byte payload from the reader is a control — 00 power off,
01 power on, 02 reset, 04 get ATR; only 04 is answered (with the ATR) — and a
longer payload is a command APDU, answered with the response APDU.

Latency: pcscd waits for each answer before it sends the next command, so
delayed ACKs on the card's side cost ~40 ms per APDU. The client sets
``TCP_NODELAY`` and re-arms ``TCP_QUICKACK`` (which Linux clears again) before
every ``recv``: ~21 APDU/s without it, thousands with it.

Every command that changed persistent state is journaled next to the card image
(:mod:`cardlab.emulator.journal`, synced before the answer), and the image is saved
whole when the server stops. When pcscd goes away the client
reconnects with exponential backoff. :func:`run` (used by ``cardlab card serve
IMAGE --vpcd``) stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cardlab.emulator import Card

log = logging.getLogger("cardlab.emulator.transports.vpcd")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

#: reader → card controls (vpcd.h)
POWER_OFF = 0x00
POWER_ON = 0x01
RESET = 0x02
GET_ATR = 0x04

#: how often a blocked ``recv`` wakes up to look at ``stop_event``
POLL_INTERVAL = 0.25
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class CardLike(Protocol):
    """What the server needs from a card (:class:`emulator.Card` and test doubles)."""

    def power_on(self) -> bytes: ...

    def transmit(self, command: bytes) -> bytes: ...


class _Stopped(Exception):
    pass


class _Disconnected(Exception):
    pass


class _Link:
    """One TCP connection to vpcd: framing, no-delay, quick ACKs."""

    def __init__(self, sock: socket.socket, stop_event: threading.Event) -> None:
        self.sock = sock
        self.stop_event = stop_event
        self.buffer = bytearray()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(POLL_INTERVAL)

    def _fill(self) -> None:
        sock = self.sock
        while True:
            if self.stop_event.is_set():
                raise _Stopped
            if _TCP_QUICKACK is not None:
                # Linux turns quick-ACK mode off again after a while: re-arm each time
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            try:
                chunk = sock.recv(65536 + 2)
            except TimeoutError:
                continue
            except OSError as exc:
                raise _Disconnected(str(exc)) from exc
            if not chunk:
                raise _Disconnected("connection closed by pcscd")
            self.buffer += chunk
            return

    def receive(self) -> bytes:
        """The next message's payload."""
        buf = self.buffer
        while len(buf) < 2:
            self._fill()
        (length,) = struct.unpack_from(">H", buf)
        while len(buf) < 2 + length:
            self._fill()
        payload = bytes(buf[2 : 2 + length])
        del buf[: 2 + length]
        return payload

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(struct.pack(">H", len(payload)) + payload)
        except OSError as exc:
            raise _Disconnected(str(exc)) from exc


def _reader(card: CardLike) -> Callable[[bytes], bytes | None] | None:
    """On the contactless interface the PC/SC reader answers its own pseudo-APDUs (GET DATA
    UID, PC/SC Part 3 §3.2.2.1): :func:`cardlab.emulator.contactless.reader_command`."""
    from cardlab.emulator import Card

    if not isinstance(card, Card) or card.interface != "contactless":
        return None
    from cardlab.emulator.contactless import reader_command

    state = card.state
    return lambda command: reader_command(state, command)


def _session(link: _Link, card: CardLike) -> None:
    """Answer vpcd until the connection ends (raises _Disconnected or _Stopped)."""
    atr: bytes | None = None
    reader = _reader(card)
    while True:
        payload = link.receive()
        if len(payload) == 1:
            control = payload[0]
            if control in (POWER_ON, RESET):
                atr = card.power_on()
                log.debug("vpcd: %s", "power on" if control == POWER_ON else "reset")
            elif control == POWER_OFF:
                atr = None
                log.debug("vpcd: power off")
            elif control == GET_ATR:
                if atr is None:
                    atr = card.power_on()
                link.send(atr)
            else:
                log.warning("vpcd: unknown control byte %02X ignored", control)
        elif payload:
            if atr is None:  # a command without power-on: power the card first
                atr = card.power_on()
            answer = reader(payload) if reader is not None else None
            link.send(answer if answer is not None else card.transmit(payload))
        else:
            log.warning("vpcd: empty message ignored")


def _connect(host: str, port: int, stop_event: threading.Event) -> socket.socket:
    backoff = BACKOFF_START
    announced = False
    while True:
        if stop_event.is_set():
            raise _Stopped
        try:
            return socket.create_connection((host, port), timeout=2.0)
        except OSError as exc:
            if not announced:
                log.info("waiting for pcscd's vpcd driver on %s:%d (%s)", host, port, exc)
                announced = True
            if stop_event.wait(backoff):
                raise _Stopped from None
            backoff = min(backoff * 2, BACKOFF_MAX)


def _open_card(
    card_or_path: CardLike | str | os.PathLike[str], interface: str = "contact"
) -> tuple[CardLike, Path | None]:
    if isinstance(card_or_path, (str, os.PathLike)):
        from cardlab.emulator import Card

        from cardlab.emulator.journal import ImageJournal

        path = Path(card_or_path)
        card = Card.load(path, interface=interface)
        ImageJournal.attach(card, path)  # each change journaled, synced, before the answer leaves
        return card, path
    return card_or_path, None


def serve(
    card_or_path: CardLike | str | os.PathLike[str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    stop_event: threading.Event | None = None,
    *,
    on_connect: Callable[[], None] | None = None,
    interface: str = "contact",
) -> None:
    """Serve a card to pcscd's vpcd driver until ``stop_event`` is set.

    ``card_or_path`` is a card (anything with ``power_on``/``transmit``), or the
    path of a card image: it is then loaded, every persistent change journaled
    (synced) before the answer, and the image saved whole on return. Lost connections (pcscd
    restarting) are retried with backoff. Without ``stop_event`` this runs until
    the process ends. ``interface`` (for an image path) is the card's interface: ``contactless``
    presents the PC/SC contactless ATR and answers the reader's GET DATA UID (issue 16).
    """
    stop = stop_event if stop_event is not None else threading.Event()
    card, path = _open_card(card_or_path, interface)
    try:
        while not stop.is_set():
            try:
                sock = _connect(host, port, stop)
            except _Stopped:
                break
            log.info("connected to vpcd at %s:%d", host, port)
            if on_connect is not None:
                on_connect()
            try:
                _session(_Link(sock, stop), card)
            except _Stopped:
                break
            except _Disconnected as exc:
                log.warning("vpcd connection lost (%s); reconnecting", exc)
            finally:
                sock.close()
    finally:
        if path is not None:
            from cardlab.emulator import Card

            assert isinstance(card, Card)
            card.save(path)
            log.info("card image saved to %s", path)
    log.info("vpcd server stopped")


def run(
    image_path: str | os.PathLike[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
    *, interface: str = "contact",
) -> None:
    """Blocking entry point for ``cardlab card serve IMAGE --vpcd``: serve the
    image until SIGINT or SIGTERM, then save it and return."""
    stop = threading.Event()
    previous: dict[int, object] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        serve(image_path, host, port, stop, interface=interface)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cardlab.emulator.transports.vpcd", description="Serve a card image to pcscd through vpcd."
    )
    parser.add_argument("image", help="card image (JSON); saved as the card changes")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--interface", choices=("contact", "contactless"), default="contact")
    parser.add_argument("--create", action="store_true", help="create a fresh card image if the file is missing")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if args.create and not os.path.exists(args.image):
        from cardlab.emulator import Card

        Card.create().save(args.image)
    run(args.image, args.host, args.port, interface=args.interface)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

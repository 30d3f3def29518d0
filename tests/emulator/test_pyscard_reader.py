"""The pyscard reader plug-in: an emulated card in smartcard.System.readers()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from smartcard.CardConnectionObserver import CardConnectionObserver
from smartcard.Exceptions import CardConnectionException, NoCardException
from smartcard.reader.ReaderFactory import ReaderFactory
from smartcard.sw.ISO7816_4ErrorChecker import ISO7816_4ErrorChecker
from smartcard.sw.ErrorCheckingChain import ErrorCheckingChain
from smartcard.sw.SWExceptions import CheckingErrorException
from smartcard.System import readers

from cardlab.emulator import Card
from cardlab.emulator.transports import pyscard_reader
from cardlab.emulator.transports.pyscard_reader import EmulatedReader, insert, remove

SELECT_ISD = [0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00]
NAME = "cardlab test reader"


@pytest.fixture
def card() -> Iterator[Card]:
    yield Card.create()
    remove(NAME)
    remove(NAME + " 2")
    pyscard_reader.unregister()


def test_inserted_card_is_listed_and_answers(card: Card) -> None:
    reader = insert(card, name=NAME)
    assert reader in readers()
    assert NAME in [str(r) for r in readers()]
    conn = reader.createConnection()
    conn.connect()
    assert bytes(conn.getATR()) == card.state.atr
    data, sw1, sw2 = conn.transmit(SELECT_ISD)
    assert (sw1, sw2) == (0x90, 0x00)
    assert isinstance(data, list)
    conn.disconnect()


def test_same_answers_as_the_card(card: Card) -> None:
    twin = Card.create()
    twin.power_on()
    conn = insert(card, name=NAME).createConnection()
    conn.connect()
    for command in (SELECT_ISD, [0x80, 0xCA, 0x00, 0x66, 0x00], [0x00, 0x70, 0x00, 0x00, 0x01], [0xFF, 0, 0, 0]):
        data, sw1, sw2 = conn.transmit(command)
        assert bytes(data) + bytes([sw1, sw2]) == twin.transmit(bytes(command))


def test_pyscard_observers_and_error_checking_still_run(card: Card) -> None:
    events: list[tuple[str, Any]] = []

    class Recorder(CardConnectionObserver):  # type: ignore[misc]
        def update(self, connection: Any, event: Any) -> None:
            events.append((event.type, event.args))

    conn = insert(card, name=NAME).createConnection()
    conn.addObserver(Recorder())
    conn.connect()
    data, sw1, sw2 = conn.transmit(SELECT_ISD)
    assert [t for t, _ in events] == ["connect", "command", "response"]
    assert events[1][1][0] == SELECT_ISD
    assert events[2][1] == [data, 0x90, 0x00]
    chain: list[Any] = []
    chain = [ErrorCheckingChain(chain, ISO7816_4ErrorChecker())]
    conn.setErrorCheckingChain(chain)
    with pytest.raises(CheckingErrorException):
        conn.transmit([0x00, 0xA4, 0x00, 0x00, 0x02, 0x12, 0x34])  # 6A82: file not found


def test_two_readers_and_groups(card: Card) -> None:
    first = insert(card, name=NAME)
    # the plug-in's registry is process-wide: other tests may have left readers
    before = set(readers(["cardlab"])) - {first}
    second = insert(Card.create(), name=NAME + " 2")
    assert {first, second} <= set(readers())
    assert set(readers(["cardlab"])) - before == {first, second}
    second.removefromreadergroup("cardlab")
    assert set(readers(["cardlab"])) - before == {first}


def test_remove_and_reinsert(card: Card) -> None:
    reader = insert(card, name=NAME)
    conn = reader.createConnection()
    conn.connect()
    remove(NAME)
    assert NAME not in [str(r) for r in readers()]
    with pytest.raises(CardConnectionException):
        conn.transmit(SELECT_ISD)
    with pytest.raises(NoCardException):
        reader.createConnection().connect()
    again = insert(card, name=NAME)
    conn = again.createConnection()
    conn.connect()
    assert conn.transmit(SELECT_ISD)[1:] == (0x90, 0x00)


def test_transmit_needs_connect(card: Card) -> None:
    conn = insert(card, name=NAME).createConnection()
    with pytest.raises(CardConnectionException):
        conn.transmit(SELECT_ISD)


def test_reader_factory_create_reader(card: Card) -> None:
    reader = insert(card, name=NAME)
    made = ReaderFactory.createReader("cardlab.emulator.transports.pyscard_reader.EmulatedReader", NAME)
    assert made is reader


def test_unregister_restores_pyscard(card: Card) -> None:
    before = list(ReaderFactory.factorymethods)
    pyscard_reader.unregister()
    original = list(ReaderFactory.factorymethods)
    insert(card, name=NAME)
    assert len(ReaderFactory.factorymethods) == len(original) + 1
    pyscard_reader.unregister()
    assert ReaderFactory.factorymethods == original
    assert len(before) >= len(original)


def test_reconnect_resets_the_card(card: Card) -> None:
    reader = insert(card, name=NAME)
    conn = reader.createConnection()
    conn.connect()
    assert conn.transmit([0x00, 0x70, 0x00, 0x00, 0x01]) == ([1], 0x90, 0x00)  # open channel 1
    conn.reconnect()  # pyscard's default disposition: reset
    assert conn.transmit([0x00, 0x70, 0x00, 0x00, 0x01]) == ([1], 0x90, 0x00)
    assert isinstance(reader, EmulatedReader)

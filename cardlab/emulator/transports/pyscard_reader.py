"""An emulated card as a pyscard reader, with no daemon in between.

pyscard builds ``smartcard.System.readers()`` by calling every function in
``smartcard.reader.ReaderFactory.ReaderFactory.factorymethods`` with the reader
groups and concatenating the results. :func:`insert` registers this module's
function there once, so that every card inserted here appears next to the PC/SC
readers; ``reader.createConnection()`` gives a :class:`EmulatedConnection`
whose ``doTransmit`` hands the command APDU to :meth:`emulator.Card.transmit`.
pyscard's own ``CardConnection.transmit`` (observers, error-checking chain)
stays in charge; only the ``do*`` hooks, ``connect``, ``disconnect`` and
``getATR`` are overridden.

Without a running pcscd, pyscard's PC/SC factory raises; by default
:func:`insert` wraps it so that a missing daemon counts as "no PC/SC readers".

>>> from cardlab.emulator import Card
>>> from smartcard.System import readers
>>> reader = insert(Card.create(), name="doctest card")
>>> "doctest card" in [str(r) for r in readers()]
True
>>> conn = reader.createConnection()
>>> conn.connect()
>>> data, sw1, sw2 = conn.transmit([0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 0x01, 0x51, 0, 0, 0, 0x00])
>>> f"{sw1:02X}{sw2:02X}"
'9000'
>>> conn.disconnect()
>>> remove("doctest card")
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from smartcard.CardConnection import CardConnection
from smartcard.Exceptions import CardConnectionException, NoCardException
from smartcard.reader.Reader import Reader
from smartcard.reader.ReaderFactory import ReaderFactory

if TYPE_CHECKING:
    from cardlab.emulator import Card

log = logging.getLogger(__name__)

#: reader group every emulated reader belongs to, besides the PC/SC default group
GROUP = "cardlab"
DEFAULT_GROUPS = frozenset({"SCard$DefaultReaders", GROUP})

#: SCARD_E_NO_SMARTCARD, the hresult pyscard's NoCardException carries
_NO_SMARTCARD = 0x8010000C
#: SCARD_E_PROTO_MISMATCH: the card does not offer the protocol asked for
_PROTO_MISMATCH = 0x8010000F

_lock = threading.RLock()
_readers: dict[str, EmulatedReader] = {}
_registered = False
_wrapped_pcsc: tuple[Callable[..., Any], Callable[..., Any]] | None = None


class _Slot:
    """The card currently in one emulated reader, shared by its connections.

    ``lock`` serialises APDUs: a card processes one command at a time."""

    def __init__(self, card: Card | None, interface: str = "contact") -> None:
        self.card = card
        self.lock = threading.Lock()
        self.atr: bytes | None = None
        #: a contact reader (ISO/IEC 7816-3 slot) or a contactless one (ISO/IEC 14443 field)
        self.interface = interface

    def power_on(self) -> bytes:
        if self.card is None:
            raise NoCardException("no card in the emulated reader", _NO_SMARTCARD)
        with self.lock:
            self.card.interface = self.interface
            self.atr = self.card.power_on()
        return self.atr

    def here(self, card: Card) -> None:
        """The card was last used through the other interface (a dual-interface card in two
        readers, one at a time): it is powered again on this reader's interface, as a card taken
        from one reader's field to the other's slot is. Called with ``lock`` held."""
        if card.interface != self.interface:
            card.interface = self.interface
            card.power_on()


class EmulatedConnection(CardConnection):  # type: ignore[misc]
    """A pyscard card connection to an emulated card."""

    def __init__(self, reader: str, slot: _Slot) -> None:
        super().__init__(reader)
        self._slot = slot
        self._connected = False
        # until connected: whatever the card offers; connect() settles on one (getProtocol())
        self.defaultprotocol = CardConnection.T0_protocol | CardConnection.T1_protocol

    def _negotiate(self, protocol: int | None) -> None:
        """Settle on the protocol as a PC/SC reader does (ISO/IEC 7816-3 §6.3.1, §9): the card's
        default (the first its ATR offers) when the mask allows it, else another the ATR offers
        (PPS), else SCARD_E_PROTO_MISMATCH."""
        from cardlab.emulator.card import offered_protocols

        card = self._slot.card
        assert card is not None
        mask = protocol or (CardConnection.T0_protocol | CardConnection.T1_protocol)
        bits = {0: CardConnection.T0_protocol, 1: CardConnection.T1_protocol}
        with self._slot.lock:
            self._slot.here(card)
            # ISO/IEC 14443-4 appears as T=1 (PC/SC Part 3 §3.1.3.2.3)
            offered = [1] if self._slot.interface == "contactless" else offered_protocols(card.state.atr)
            usable = [t for t in offered if mask & bits[t]]
            if not usable:
                raise CardConnectionException(
                    f"the card offers {', '.join(f'T={t}' for t in offered)} only", _PROTO_MISMATCH)
            if card.protocol != usable[0]:
                card.select_protocol(usable[0])
        self.setProtocol(bits[usable[0]])

    def connect(self, protocol: int | None = None, mode: int | None = None, disposition: int | None = None) -> None:
        if self._slot.card is None:
            raise NoCardException("no card in the emulated reader", _NO_SMARTCARD)
        super().connect(protocol, mode, disposition)
        if self._slot.atr is None:  # first connection after insertion powers the card
            self._slot.power_on()
        self._negotiate(protocol)
        self._connected = True

    def reconnect(self, protocol: int | None = None, mode: int | None = None, disposition: int | None = None) -> None:
        from smartcard.scard import SCARD_LEAVE_CARD

        if self._slot.card is None:
            raise NoCardException("no card in the emulated reader", _NO_SMARTCARD)
        super().reconnect(protocol, mode, disposition)
        # pyscard's default disposition for reconnect is a reset
        if disposition != SCARD_LEAVE_CARD or self._slot.atr is None:
            self._slot.power_on()
        self._negotiate(protocol)
        self._connected = True

    def disconnect(self) -> None:
        super().disconnect()
        self._connected = False

    def release(self) -> None:
        super().release()
        self._connected = False

    def getATR(self) -> list[int]:  # noqa: N802 - pyscard's name
        if not self._connected:
            raise CardConnectionException("card not connected")
        atr = self._slot.atr
        return list(atr) if atr is not None else []

    def doTransmit(self, command: Sequence[int], protocol: int | None = None) -> tuple[list[int], int, int]:  # noqa: N802
        slot = self._slot
        card = slot.card
        if not self._connected:
            raise CardConnectionException("card not connected")
        if card is None:
            raise CardConnectionException("card removed")
        with slot.lock:
            slot.here(card)
            response = None
            if slot.interface == "contactless":  # the reader's own pseudo-APDUs (GET DATA UID, CLA FF)
                from cardlab.emulator.contactless import reader_command

                response = reader_command(card.state, bytes(command))
            if response is None:
                response = card.transmit(bytes(command))
        return list(response[:-2]), response[-2], response[-1]

    def doControl(self, controlCode: int, command: Sequence[int]) -> list[int]:  # noqa: N802,N803
        raise CardConnectionException("no reader control codes on an emulated reader")

    def doGetAttrib(self, attribId: int) -> list[int]:  # noqa: N802,N803
        from smartcard.scard import SCARD_ATTR_ATR_STRING

        if attribId == SCARD_ATTR_ATR_STRING and self._slot.atr is not None:
            return list(self._slot.atr)
        raise CardConnectionException(f"attribute {attribId:#x} not supported")


class EmulatedReader(Reader):  # type: ignore[misc]
    """A pyscard reader holding (at most) one emulated card."""

    def __init__(self, name: str, card: Card | None = None, interface: str = "contact") -> None:
        super().__init__(name)
        self.groups: set[str] = set(DEFAULT_GROUPS)
        self._slot = _Slot(card, interface)

    @property
    def card(self) -> Card | None:
        return self._slot.card

    def insert(self, card: Card) -> None:
        """Put ``card`` in the reader (powered on at the next connect)."""
        with self._slot.lock:
            self._slot.card = card
            self._slot.atr = None

    def eject(self) -> None:
        """Take the card out; open connections fail from now on."""
        with self._slot.lock:
            self._slot.card = None
            self._slot.atr = None

    def addtoreadergroup(self, groupname: str) -> None:
        self.groups.add(groupname)

    def removefromreadergroup(self, groupname: str) -> None:
        self.groups.discard(groupname)

    def createConnection(self) -> EmulatedConnection:  # noqa: N802
        return EmulatedConnection(self.name, self._slot)

    class Factory:
        """For ``ReaderFactory.createReader("cardlab.emulator.transports.pyscard_reader.EmulatedReader", name)``."""

        @staticmethod
        def create(readername: str) -> EmulatedReader:
            with _lock:
                reader = _readers.get(readername)
            return reader if reader is not None else EmulatedReader(readername)


def emulated_readers(groups: Sequence[str] | str | None = None) -> list[EmulatedReader]:
    """The factory method registered with pyscard: inserted readers in ``groups``
    (all of them when ``groups`` is empty)."""
    if isinstance(groups, str):
        groups = [groups]
    with _lock:
        found = list(_readers.values())
    if groups:
        wanted = set(groups)
        found = [r for r in found if r.groups & wanted]
    return found


def _tolerant(pcsc_readers: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap pyscard's PC/SC factory method so that no daemon means no readers."""
    from smartcard.Exceptions import CardServiceNotFoundException, CardServiceStoppedException
    from smartcard.pcsc.PCSCExceptions import BaseSCardException

    def pcsc_readers_or_none(groups: Any = None) -> Any:
        try:
            return pcsc_readers(groups)
        except (BaseSCardException, CardServiceNotFoundException, CardServiceStoppedException) as exc:
            log.debug("no PC/SC readers: %s", exc)
            return []

    return pcsc_readers_or_none


def register(*, tolerate_missing_pcscd: bool = True) -> None:
    """Add :func:`emulated_readers` to pyscard's factory methods (idempotent)."""
    global _registered, _wrapped_pcsc
    with _lock:
        methods = ReaderFactory.factorymethods
        if tolerate_missing_pcscd and _wrapped_pcsc is None:
            from smartcard.pcsc.PCSCReader import PCSCReader

            original = PCSCReader.readers
            if original in methods:
                wrapper = _tolerant(original)
                methods[methods.index(original)] = wrapper
                _wrapped_pcsc = (original, wrapper)
        if not _registered:
            methods.append(emulated_readers)
            _registered = True


def unregister() -> None:
    """Undo :func:`register` (the inserted readers stay known to this module)."""
    global _registered, _wrapped_pcsc
    with _lock:
        methods = ReaderFactory.factorymethods
        if _registered:
            methods[:] = [m for m in methods if m is not emulated_readers]
            _registered = False
        if _wrapped_pcsc is not None:
            original, wrapper = _wrapped_pcsc
            if wrapper in methods:
                methods[methods.index(wrapper)] = original
            _wrapped_pcsc = None


def insert(card: Card, name: str = "cardlab emulated 0", *, tolerate_missing_pcscd: bool = True,
           interface: str = "contact") -> EmulatedReader:
    """Make ``card`` visible in ``smartcard.System.readers()`` as reader ``name``: a contact reader,
    or with ``interface="contactless"`` a contactless one (the card's contactless ATR, T=1, and
    the reader's GET DATA UID). One card may be in a contact and a contactless reader at once:
    used through one, then the other, it is powered again on the other's interface.

    Inserting under an existing name replaces the card in that reader.
    """
    register(tolerate_missing_pcscd=tolerate_missing_pcscd)
    with _lock:
        reader = _readers.get(name)
        if reader is None or reader._slot.interface != interface:
            reader = _readers[name] = EmulatedReader(name, card, interface)
        else:
            reader.insert(card)
    log.info("emulated card inserted in reader %r", name)
    return reader


def remove(name: str) -> None:
    """Eject the card and remove reader ``name``; unknown names are ignored."""
    with _lock:
        reader = _readers.pop(name, None)
    if reader is not None:
        reader.eject()
        log.info("emulated reader %r removed", name)

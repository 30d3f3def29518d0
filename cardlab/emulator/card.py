"""The card: ``power_on()`` and ``transmit()`` and nothing else (sans-I/O).

Command flow for one APDU (ISO 7816-4 §5, GP Card Spec 2.3 §10 and §11):

1. parse (6700 on malformed lengths), class check (6E00), channel check (6881),
2. secure messaging: unwrap with the channel's SCP03 session (6882 without one),
3. card life cycle gate (GP §5.1: TERMINATED, CARD_LOCKED; an application
   selected before it or the card was locked answers only SELECT and
   MANAGE CHANNEL),
4. card-level commands (MANAGE CHANNEL, SELECT, INITIALIZE UPDATE, EXTERNAL
   AUTHENTICATE), then the selected application's table, then the file system,
5. wrap the response for the session, persist dirty state, answer.

Every :class:`StatusError` becomes its status word; any other exception is
logged and answered with 6F00.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cardlab.cardspec.atr import AtrError
from cardlab.cardspec.atr import parse as parse_atr

from . import apdu
from .apdu import SW, Command, StatusError
from .contactless import INTERFACES
from .contactless import atr as contactless_atr
from .applet import Applet, Channel, Context, Security
from .gp import lifecycle
from .state import CardState
from .t0 import T0Layer

if TYPE_CHECKING:
    from .image import ImageRead



class SaveListener(Protocol):
    """Told of every whole save (an image journal starts anew on the new snapshot); asked
    whether a command that changed only these applications may be journaled later."""

    def saved(self, path: str | os.PathLike[str]) -> None: ...

    def defers(self, applets: list[Applet]) -> bool: ...

log = logging.getLogger(__name__)

#: channels 0 (basic) .. MAX_CHANNEL-1 (ISO 7816-4 §5.4.1; further
#: interindustry CLA codes channels up to 19)
MAX_CHANNEL = 8

#: CLA values the card accepts (ISO 7816-4 §5.4.1, GP Card Spec 2.3 §11.1.4):
#: 00-1F first interindustry, 40-7F further interindustry, 80-8F GP first
#: proprietary, C0-CF and E0-EF GP further proprietary (plain / secured).
_CLASS_OK = [
    c <= 0x1F or 0x40 <= c <= 0x7F or 0x80 <= c <= 0x8F or 0xC0 <= c <= 0xCF or 0xE0 <= c <= 0xEF
    for c in range(256)
]


@functools.lru_cache(maxsize=64)  # every power-on asks; a batch has a handful of ATRs
def offered_protocols(atr: bytes) -> tuple[int, ...]:
    """The protocols ``atr`` offers, first the default (ISO/IEC 7816-3 §8.2.3); an ATR too broken
    to parse (only with ``--allow-non-emv-atr``) leaves the card on T=1, as before ATRs were chosen."""
    try:
        return tuple(t for t in parse_atr(atr).protocols if t in (0, 1)) or (1,)
    except AtrError:
        return (1,)


class Card:
    """An emulated smart card.

    >>> card = Card.create()
    >>> card.power_on()[:1]
    b';'
    >>> card.transmit(bytes.fromhex("00A4040008A000000151000000")).hex()[-4:]
    '9000'
    """

    def __init__(
        self,
        state: CardState,
        *,
        random: Callable[[int], bytes] = os.urandom,
        on_commit: Callable[[Card], None] | None = None,
        interface: str = "contact",
    ) -> None:
        from .filesystem import FileSystem

        self.state = state
        self.random = random
        if interface not in INTERFACES:
            raise ValueError(f"interface {interface!r}: contact or contactless")
        #: the interface the card is reached through (one card, one state, two interfaces:
        #: issue 16); the applications read it from the Context (``ctx.card.interface``)
        self.interface = interface
        #: called with the card before any response that follows a state change
        self.on_commit = on_commit
        #: the image journal keeping this card's image (cardlab.emulator.journal), told of full saves
        self.journal: SaveListener | None = None
        #: what :meth:`load` read of the image (a journal attached next need not read it again)
        self.image_read: ImageRead | None = None
        self.fs = FileSystem.load(state.filesystem)
        #: ``state.filesystem`` describes :attr:`fs` (it was loaded from it, or dumped since the
        #: last change): a save need not rebuild every FCP (about 1.5 ms a card)
        self._fs_synced = bool(state.filesystem)
        self.applets: dict[bytes, Applet] = {}
        self._dirty = False
        self.security = Security()
        self.channels: dict[int, Channel] = {}
        for rec in state.instances:
            self._instantiate(rec)
        self.powered = False
        #: the transmission protocol in use: the first the ATR offers (ISO/IEC 7816-3 §6.3.1),
        #: or the one a reader negotiated with :meth:`select_protocol`
        self.protocol = 1
        self._t0 = T0Layer()

    # -- construction ----------------------------------------------------------
    @classmethod
    def create(cls, **options: object) -> Card:
        """A fresh card with the built-in load files and an ISD; see
        :func:`cardlab.emulator.gp.manager.new_card_state` for the options."""
        from .gp.manager import new_card_state

        return cls(new_card_state(**options))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, interface: str = "contact") -> Card:
        from .image import load_image

        state, read = load_image(path)
        card = cls(state, interface=interface)
        card.image_read = read
        return card

    def save(self, path: str | os.PathLike[str]) -> None:
        from .image import save_state

        self.sync_state()
        save_state(self.state, path)
        if self.journal is not None:
            self.journal.saved(path)

    def sync_state(self) -> None:
        """Copy live objects' data back into :attr:`state`."""
        for applet in self.applets.values():
            applet.record.state = applet.dump()
        if self.fs.dirty or not self._fs_synced:
            self.state.filesystem = self.fs.dump()
            self._fs_synced = True

    def applet_class(self, module_aid: bytes) -> type[Applet]:
        """The built-in application class of an executable module (GP §5.3; 6A82 if none)."""
        from .registry import applet_class

        return applet_class(module_aid)

    def _instantiate(self, rec: object) -> Applet:
        assert hasattr(rec, "module_aid")
        klass = self.applet_class(rec.module_aid)
        applet = klass(rec)  # type: ignore[arg-type]
        self.applets[rec.aid] = applet  # type: ignore[attr-defined]
        return applet

    def mark_dirty(self) -> None:
        self._dirty = True

    # -- the interface ------------------------------------------------------------
    def power_on(self) -> bytes:
        """Cold reset: close every channel and session, select the ISD on the
        basic channel (GP §10.2: the ISD is the default selected application)."""
        from .filesystem import FsCursor

        self.security = Security()
        self.channels = {0: Channel(0, selected=self.state.isd_aid, fs=FsCursor.at_mf(self.fs))}
        self.powered = True
        self._t0.reset()
        if self.interface == "contactless":
            # ISO/IEC 14443-4 is a block protocol: PC/SC presents it as T=1 (PC/SC Part 3 §3.1.3.2.3)
            self.protocol = 1
            return contactless_atr(self.state)
        self.protocol = offered_protocols(self.state.atr)[0]
        return self.state.atr

    def select_protocol(self, protocol: int) -> None:
        """PPS after the ATR (ISO/IEC 7816-3 §9): ``protocol`` must be one the ATR offers."""
        if protocol not in ((1,) if self.interface == "contactless" else offered_protocols(self.state.atr)):
            raise ValueError(f"T={protocol} is not offered by the card's ATR")
        self.protocol = protocol
        self._t0.reset()

    def transmit(self, command: bytes) -> bytes:
        if not self.powered:
            self.power_on()
        if self.protocol == 0:
            return self._t0.transmit(command, self._answer)
        return self._answer(command)

    def _answer(self, command: bytes) -> bytes:
        """The response APDU as the application layer gives it (data ‖ SW), before T=0."""
        try:
            out = self._transmit(command)
        except StatusError as err:
            out = apdu.response(b"", err.sw)
        except Exception:  # noqa: BLE001 - the card must never crash
            log.exception("internal error on INS %s", command[1:2].hex() if len(command) > 1 else "?")
            out = apdu.response(b"", SW.UNKNOWN)
        self._commit()
        return out

    # -- pipeline -----------------------------------------------------------------
    def flush(self) -> None:
        """Dump and report (:attr:`on_commit`) what deferred commands changed: the image journal
        calls it when it closes."""
        self._commit(defer=False)

    def _commit(self, *, defer: bool = True) -> None:
        """After each command: the live objects that changed dumped into :attr:`state`, then
        :attr:`on_commit` (the image journal) told, before the response leaves. A command that
        changed only applications its journal defers (being personalized, see
        :meth:`cardlab.emulator.journal.ImageJournal.defers`) is dumped with the next command
        that changes anything else, or when the journal closes (:meth:`flush`)."""
        if defer and not self._dirty and not self.fs.dirty and self.journal is not None:
            changed = [a for a in self.applets.values() if a.record.dirty]
            if changed and self.journal.defers(changed):
                return
        dirty = self._dirty
        for applet in self.applets.values():
            if applet.record.dirty:
                applet.record.state = applet.dump()
                applet.record.dirty = False
                dirty = True
        if self.fs.dirty:
            self.state.filesystem = self.fs.dump()
            self.fs.dirty = False
            self._fs_synced = True
            dirty = True
        self._dirty = False
        if dirty and self.on_commit is not None:
            self.on_commit(self)

    def _end_session_of(self, raw: bytes) -> None:
        """A command refused before secure messaging (malformed, class or
        chaining not supported) ends the session of the channel its CLA names
        (GP Amendment D §6.2.4: fail closed; a tampered Lc or CLA must not
        leave the session open)."""
        if raw:
            cla = raw[0]
            channel = self.channels.get(4 + (cla & 0x0F) if cla & 0x40 else cla & 0x03)
            if channel is not None:
                channel.session = None

    def _transmit(self, raw: bytes) -> bytes:
        try:
            cmd = apdu.parse(raw)
            cla = cmd.cla
            if not _CLASS_OK[cla]:
                raise StatusError(SW.CLA_NOT_SUPPORTED)
            if cmd.chained:
                raise StatusError(SW.CHAINING_NOT_SUPPORTED)
        except StatusError:
            self._end_session_of(raw)
            raise
        channel = self.channels.get(cmd.channel)
        if channel is None:
            raise StatusError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
        session = channel.session
        secured = cmd.secure_messaging  # unwrap() clears the SM bit of cmd
        if secured and session is None and self._applet_secures(channel, cmd):
            # the application checks its own secure messaging (EMV issuer scripts)
            secured = False
        elif secured:
            # only GP SCP03 wrapping (CLA b4b3 = 01, GP Amendment D §6.2.4) is
            # supported; b4 set (ISO SM) is refused and ends the session: the
            # C-MAC does not cover b4, so accepting it would accept a changed CLA
            if session is None or (cla & 0x40 == 0 and cla & 0x08):
                channel.session = None
                raise StatusError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
            if session.authenticated:
                try:
                    cmd = session.unwrap(cmd)
                except StatusError:
                    channel.session = None
                    raise
            elif not (cmd.ins == 0x82 and cmd.cla & 0x80):
                # only EXTERNAL AUTHENTICATE (which checks its own C-MAC) may
                # be wrapped before the session is authenticated
                channel.session = None
                raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "session not authenticated")
        elif session is not None and session.authenticated and session.requires_cmac:
            # GP Amendment D §6.2.4: an unsecured command ends a C-MAC session
            channel.session = None
            session = None
        ctx = Context(self, channel, session.level if session is not None else 0)
        data = self._dispatch(ctx, cmd)
        # a handler may answer data with a warning (e.g. GET STATUS 6310)
        sw = int(ctx.notes.get("sw", SW.OK))
        session = channel.session
        if session is not None and session.authenticated and secured:
            return session.wrap(data, sw) + sw.to_bytes(2, "big")
        return apdu.response(data, sw)

    def _applet_secures(self, channel: Channel, cmd: Command) -> bool:
        applet = self.applets.get(channel.selected) if channel.selected is not None else None
        return applet is not None and (cmd.cla & 0x80, cmd.ins) in applet.OWN_SECURE_MESSAGING

    def _dispatch(self, ctx: Context, cmd: Command) -> bytes:
        lifecycle.gate_card_command(self.state.lifecycle, cmd, ctx.channel.selected == self.state.isd_aid)
        ins = cmd.ins
        if ins == 0x70 and cmd.cla & 0x80 == 0:
            return self._manage_channel(ctx, cmd)
        if ins == 0xA4 and cmd.cla & 0x80 == 0:
            return self._select(ctx, cmd)
        selected = ctx.channel.selected
        if selected is not None and selected != self.state.isd_aid and selected in self.applets:
            # locked since it was selected here (GP §5.1.1.4, §5.3.1)
            lifecycle.gate_selected_application(self.state, self.applets[selected].record)
        if cmd.cla & 0x80 and ins in (0x50, 0x82) and ctx.channel.selected is not None:
            return self._secure_channel_command(ctx, cmd)
        target = ctx.channel.selected
        if target is not None:
            applet = self.applets.get(target)
            if applet is not None and applet.handles(cmd):
                return applet.process(ctx, cmd)
            if cmd.cla & 0x80:
                raise StatusError(SW.INS_NOT_SUPPORTED)
        return self.fs.process(ctx, cmd)

    # -- card-level commands ------------------------------------------------------
    def _manage_channel(self, ctx: Context, cmd: Command) -> bytes:
        """MANAGE CHANNEL (ISO 7816-4 §11.1.2)."""
        from .filesystem import FsCursor

        if cmd.p1 == 0x00:  # open
            if cmd.data:
                raise StatusError(SW.WRONG_LENGTH)
            if cmd.p2 == 0:
                if cmd.ne is None or cmd.ne < 1:
                    raise StatusError(SW.WRONG_LENGTH)
                free = [n for n in range(1, MAX_CHANNEL) if n not in self.channels]
                if not free:
                    raise StatusError(SW.FUNCTION_NOT_SUPPORTED, "no free logical channel")
                number = free[0]
            else:
                number = cmd.p2
                if number >= MAX_CHANNEL:
                    raise StatusError(SW.INCORRECT_P1P2)
                if number in self.channels:
                    raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "channel already open")
            # the new channel starts with the origin channel's selection
            # when opened from a supplementary channel, else with the ISD (§5.4.1)
            origin = ctx.channel
            selected = origin.selected if origin.number != 0 else self.state.isd_aid
            self.channels[number] = Channel(number, selected=selected, fs=FsCursor.at_mf(self.fs))
            return bytes([number]) if cmd.p2 == 0 else b""
        if cmd.p1 == 0x80:  # close
            if cmd.data or cmd.ne is not None:
                raise StatusError(SW.WRONG_LENGTH)
            number = cmd.p2 if cmd.p2 else ctx.channel.number
            if number == 0:
                raise StatusError(SW.INCORRECT_P1P2, "the basic channel cannot be closed")
            closing = self.channels.get(number)
            if closing is None:
                raise StatusError(SW.INCORRECT_P1P2, "channel not open")
            self._deselect(Context(self, closing), closing)
            del self.channels[number]
            return b""
        raise StatusError(SW.INCORRECT_P1P2)

    def _deselect(self, ctx: Context, channel: Channel) -> None:
        if channel.selected is not None:
            applet = self.applets.get(channel.selected)
            if applet is not None:
                applet.deselect(ctx)
        channel.session = None
        channel.perso_target = None

    def _select(self, ctx: Context, cmd: Command) -> bytes:
        """SELECT (ISO 7816-4 §11.1.1). P1=04 looks in the GP registry first
        (GP §11.9), then at DF names of the file system."""
        channel = ctx.channel
        if cmd.p1 == 0x04:
            # P2: b1b2 occurrence (00 first, 10 next), b3b4 answer (FCI/FCP/FMD/none)
            if cmd.p2 & 0xF0 or cmd.p2 & 0x03 not in (0x00, 0x02):
                raise StatusError(SW.INCORRECT_P1P2)
            if not cmd.data:
                if cmd.p2 & 0x03:
                    raise StatusError(SW.INCORRECT_P1P2)
                aid = self.state.isd_aid  # empty name selects the ISD (GP §11.9.2.3)
                return self._select_applet(ctx, cmd, aid)
            if not 1 <= len(cmd.data) <= 16:
                raise StatusError(SW.WRONG_LENGTH)
            from .registry import find_selectable

            following = cmd.p2 & 0x03 == 0x02
            # registry applications come before file-system DFs: "next" after a
            # DF (nothing selected in the registry) stays in the file system
            found = (
                None
                if following and channel.selected is None
                else find_selectable(self, cmd.data, channel.selected if following else None)
            )
            if found is not None:
                return self._select_applet(ctx, cmd, found)
        # the file system answers (by FID, path, or DF name), or 6A82
        self.fs.check_select(ctx, cmd)
        if cmd.p1 == 0x04:
            # a DF selected by name replaces the application on this channel
            self._deselect(ctx, channel)
            channel.selected = None
        # selecting a file by identifier or path only moves the channel's
        # file cursor: the selected application and its secure channel
        # session stay (GP §10.2: the session ends when the SD is deselected)
        return self.fs.select(ctx, cmd)

    def _select_applet(self, ctx: Context, cmd: Command, aid: bytes) -> bytes:
        channel = ctx.channel
        applet = self.applets[aid]
        lifecycle.check_selectable(self.state, applet.record, aid == self.state.isd_aid)
        # GP §11.9.2.2: a multi-selectable check — one application per channel;
        # the same instance may be selected on several channels.
        self._deselect(ctx, channel)
        channel.selected = aid
        return applet.select(ctx, cmd)

    def _secure_channel_command(self, ctx: Context, cmd: Command) -> bytes:
        """INITIALIZE UPDATE / EXTERNAL AUTHENTICATE, answered by the selected
        application's associated security domain (the ISD here; EMV CPS §3)."""
        from .gp.scp03 import CardSession

        channel = ctx.channel
        if cmd.ins == 0x50:
            if cmd.cla & 0x0C:
                raise StatusError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
            channel.session = None
            new_session, data = CardSession.initialize_update(self, cmd)
            channel.session = new_session
            return data
        session = channel.session
        if session is None or session.authenticated:
            channel.session = None
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE")
        try:
            session.external_authenticate(cmd)
        except StatusError:
            channel.session = None
            raise
        return b""

"""The Issuer Security Domain: GP card manager commands (GP Card Spec 2.3 §11).

Commands (all CLA 80/84 after unwrapping; GET DATA also CLA 00):

=========  ====  ==============================================================
DELETE     E4    §11.2  instance, or load file (+ related objects with P2=80)
GET DATA   CA    §11.3  CPLC, card data, key info, IIN, CIN, counter, capability
GET STATUS F2    §11.4  registry, TLV (E3) or deprecated format, 6310 paging
INSTALL    E6    §11.5  for install / make selectable / personalization
LOAD       E8    §11.6  answered 6A81: load files are built in (no CAP loading)
PUT KEY    D8    §11.8  AES keys under the static DEK, with KCVs
SET STATUS F0    §11.10 card, application, SD + applications life cycles
STORE DATA E2    §11.11 ISD data (DGI or BER-TLV), or routed to an application
=========  ====  ==============================================================

Everything but GET DATA needs an authenticated secure channel (GP §10.2:
card content management and key management are SD operations).
LOAD and INSTALL [for load] answer 6A81 "function not supported": the card
has no loader, its load files are the built-in Python applications
(:func:`builtin_applets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cardlab.cardspec import tlv

from ..apdu import SW, Command, StatusError
from ..applet import INTERINDUSTRY, PROPRIETARY, Applet, Channel, Context, command
from ..applets.builtin import APPLICATIONS
from ..state import DEFAULT_ISD_AID, CardState, InstanceRecord, KeyEntry, LoadFileRecord
from . import data as gpdata
from . import lifecycle
from . import status as gpstatus
from .lifecycle import AppLife, CardLife
from .put_key import decrypt_under_dek, put_key

ISD_LOAD_FILE_AID = bytes.fromhex("A0000001515350")  # GP "SD package" style AID
ISD_MODULE_AID = bytes.fromhex("A000000151535041")
ISD_PRIVILEGES = bytes.fromhex("9EFE80")

DEFAULT_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
DEFAULT_IIN = bytes.fromhex("999999")  # test issuer (not an assigned IIN)

#: privilege bits, byte 1 (GP §6.6.1, table 6-1)
PRIV_SECURITY_DOMAIN = 0x80
PRIV_CARD_LOCK = 0x10
PRIV_CARD_TERMINATE = 0x08

#: GET STATUS response budget: 224 bytes leaves room for R-MAC and R-ENC
#: padding within a short response (256 bytes).
STATUS_BUDGET = 224
#: STORE DATA bytes buffered for the ISD until the last block
STORE_LIMIT = 4096


@dataclass
class _Work:
    """Transient per-channel command state (lost at power-on / deselect)."""

    channel: Channel
    status: tuple[int, int, bytes, list[bytes]] | None = None  # P1, format, data, rest
    next_block: int = 0
    buffer: bytearray = field(default_factory=bytearray)


def _lv_fields(data: bytes, count: int) -> list[bytes]:
    """``count`` length-prefixed fields filling ``data`` exactly (INSTALL, §11.5.2.3)."""
    out: list[bytes] = []
    i = 0
    for _ in range(count):
        if i >= len(data) or i + 1 + data[i] > len(data):
            raise StatusError(SW.WRONG_DATA, "truncated INSTALL data")
        out.append(data[i + 1 : i + 1 + data[i]])
        i += 1 + data[i]
    if i != len(data):
        raise StatusError(SW.WRONG_DATA, "trailing INSTALL data")
    return out


def _aid(value: bytes, *, empty: bool = False) -> bytes:
    if (empty and not value) or 5 <= len(value) <= 16:
        return value
    raise StatusError(SW.WRONG_DATA, "AID must have 5 to 16 bytes")


def _privileges(value: bytes) -> bytes:
    """1 or 3 bytes (§11.5.2.3.5); a single byte is padded with 00 00."""
    if len(value) == 1:
        return value + b"\x00\x00"
    if len(value) == 3:
        return value
    raise StatusError(SW.WRONG_DATA, "privileges must have 1 or 3 bytes")


def _install_params(value: bytes) -> bytes:
    """The install parameters field (§11.5.2.3.7): C9 application specific
    parameters (mandatory for [for install], may be empty), EF system
    specific parameters, CA/EA ETSI parameters; returns the content of C9."""
    if not value:
        return b""
    try:
        items = tlv.parse(value)
    except tlv.TlvError as exc:
        raise StatusError(SW.WRONG_DATA, "malformed install parameters") from exc
    found = [t for t in items if t.tag == 0xC9]
    if len(found) != 1 or any(t.tag not in (0xC9, 0xEF, 0xCA, 0xEA) for t in items):
        raise StatusError(SW.WRONG_DATA, "install parameters need one C9 (and EF/CA/EA only)")
    return found[0].value


class IssuerSecurityDomain(Applet):
    NAME = "Issuer Security Domain"
    LOAD_FILE_AID = ISD_LOAD_FILE_AID
    MODULE_AID = ISD_MODULE_AID

    def load(self, state: dict[str, Any]) -> None:
        self._work: dict[int, _Work] = {}

    # -- helpers --------------------------------------------------------------
    def work(self, ctx: Context) -> _Work:
        w = self._work.get(ctx.channel.number)
        if w is None or w.channel is not ctx.channel:  # new channel or power cycle
            w = self._work[ctx.channel.number] = _Work(ctx.channel)
        return w

    def deselect(self, ctx: Context) -> None:
        self._work.pop(ctx.channel.number, None)

    def static_dek(self, ctx: Context) -> bytes:
        """The static DEK of the key set that opened the session (Amendment D
        §7.2.2: sensitive data is encrypted with it, AES-CBC, ICV zero). The
        session keeps it, so replacing its key set (PUT KEY) does not break
        it (§11.8.2.1)."""
        session = ctx.channel.session
        if session is None or not session.authenticated:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "secure channel required")
        if session.dek is None:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "the session's key set has no DEK")
        return session.dek

    @staticmethod
    def _not_locked(state: CardState) -> None:
        if state.lifecycle == CardLife.CARD_LOCKED:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "card locked")

    # -- SELECT (§11.9.3.1) ---------------------------------------------------
    def select(self, ctx: Context, cmd: Command) -> bytes:
        if cmd.p2 & 0x0C == 0x0C:  # no response data requested
            return b""
        state = ctx.card.state
        a5 = gpdata.card_recognition_data(state.scp_i) + tlv.encode(0x9F65, b"\xff")
        return tlv.encode(0x6F, tlv.encode(0x84, state.isd_aid) + tlv.encode(0xA5, a5))

    # -- GET DATA (§11.3) -----------------------------------------------------
    @command(INTERINDUSTRY, 0xCA)
    @command(PROPRIETARY, 0xCA)
    def get_data(self, ctx: Context, cmd: Command) -> bytes:
        state = ctx.card.state
        tag = (cmd.p1 << 8) | cmd.p2
        if tag in state.isd_data:
            return tlv.encode(tag, state.isd_data[tag])
        if tag == 0x9F7F:
            return tlv.encode(tag, state.cplc)
        if tag == 0x66:
            return gpdata.card_data(state.scp_i)
        if tag == 0xE0:
            return gpdata.key_information(state.keys)
        if tag == 0x67:
            return gpdata.card_capability(state.scp_i)
        if tag == 0xC1:  # SCP03 sequence counter, 3 bytes (Amendment D §6.2.2)
            return tlv.encode(tag, state.sequence_counter.to_bytes(3, "big"))
        if tag == 0xCF:  # key diversification data
            return tlv.encode(tag, state.kdd)
        value = {0x42: state.iin, 0x45: state.cin}.get(tag)
        if value:
            return tlv.encode(tag, value)
        raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, f"no data object {tag:04X}")

    # -- GET STATUS (§11.4) ---------------------------------------------------
    @command(PROPRIETARY, 0xF2)
    def get_status(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        if cmd.p2 & 0xFC:
            raise StatusError(SW.INCORRECT_P1P2)
        work = self.work(ctx)
        tlv_format = bool(cmd.p2 & 0x02)
        if cmd.p2 & 0x01:  # get next occurrence(s)
            pending = work.status
            if pending is None or pending[:3] != (cmd.p1, cmd.p2 & 0x02, cmd.data):
                raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no GET STATUS to continue")
            items = pending[3]
        else:
            items = gpstatus.entries(ctx.card.state, cmd.p1, tlv_format, gpstatus.Query.parse(cmd.data))
        budget = min(cmd.ne or 256, STATUS_BUDGET)
        out, rest = gpstatus.page(items, budget)
        if rest:
            work.status = (cmd.p1, cmd.p2 & 0x02, cmd.data, rest)
            ctx.notes["sw"] = SW.MORE_DATA
        else:
            work.status = None
        return out

    # -- SET STATUS (§11.10) --------------------------------------------------
    @command(PROPRIETARY, 0xF0)
    def set_status(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        card = ctx.card
        state = card.state
        if cmd.p1 == 0x80:
            if cmd.data not in (b"", state.isd_aid):
                raise StatusError(SW.WRONG_DATA, "SET STATUS 80 takes the ISD AID or nothing")
            new = lifecycle.card_transition(state.lifecycle, cmd.p2)
            isd = state.instance(state.isd_aid)
            assert isd is not None
            need = {CardLife.CARD_LOCKED: PRIV_CARD_LOCK, CardLife.TERMINATED: PRIV_CARD_TERMINATE}.get(
                new, 0
            )
            if need and not isd.privileges[0] & need:
                raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "ISD lacks the privilege")
            state.lifecycle = int(new)
            isd.lifecycle = int(new)  # the ISD's entry mirrors the card (§5.1)
            card.mark_dirty()
            return b""
        if cmd.p1 not in (0x40, 0x60):
            raise StatusError(SW.INCORRECT_P1P2)
        rec = state.instance(_aid(cmd.data))
        if rec is None:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no such application")
        is_isd = rec.aid == state.isd_aid
        if cmd.p1 == 0x60:
            # a security domain and its associated applications (§11.10.2.1):
            # every application is associated with the ISD on this card; the
            # ISD's own state is the card's (use P1=80 for it)
            if not rec.privileges[0] & PRIV_SECURITY_DOMAIN:
                raise StatusError(SW.WRONG_DATA, "not a security domain")
            if cmd.p2 not in (0x00, 0x80):
                raise StatusError(SW.WRONG_DATA, "P2 must be 80 (lock) or 00 (unlock)")
            for app in state.instances:
                if app.aid == state.isd_aid or lifecycle.app_is_locked(app.lifecycle) == bool(cmd.p2):
                    continue
                app.lifecycle = lifecycle.app_transition(app.lifecycle, app.lifecycle ^ 0x80, {})
            card.mark_dirty()
            return b""
        if is_isd:
            raise StatusError(SW.WRONG_DATA, "the ISD follows the card life cycle (P1=80)")
        specific = card.applets[rec.aid].SPECIFIC_STATES
        if cmd.p2 == 0x80:  # lock (table 11-80)
            target = rec.lifecycle | AppLife.LOCKED_BIT
        elif cmd.p2 == 0x00:  # unlock
            if not lifecycle.app_is_locked(rec.lifecycle):
                raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "application not locked")
            target = rec.lifecycle & 0x7F
        elif cmd.p2 in specific:
            target = cmd.p2
        else:
            raise StatusError(SW.WRONG_DATA, "not a life cycle state SET STATUS may set")
        rec.lifecycle = lifecycle.app_transition(rec.lifecycle, target, specific)
        card.mark_dirty()
        return b""

    # -- INSTALL (§11.5) ------------------------------------------------------
    @command(PROPRIETARY, 0xE6)
    def install_cmd(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        if cmd.p2 != 0x00:
            raise StatusError(SW.INCORRECT_P1P2)
        kind = cmd.p1 & 0x7F  # b8: more INSTALL commands follow
        if kind & 0x02 or kind in (0x10, 0x40):
            raise StatusError(
                SW.FUNCTION_NOT_SUPPORTED, "load files are built in; no load/extradition/update"
            )
        if kind not in (0x04, 0x08, 0x0C, 0x20):
            raise StatusError(SW.INCORRECT_P1P2)
        self._not_locked(ctx.card.state)
        if kind == 0x20:
            return self._install_for_perso(ctx, cmd)
        if kind & 0x04:
            return self._install_for_install(ctx, cmd, selectable=bool(kind & 0x08))
        return self._make_selectable(ctx, cmd)

    def _install_for_install(self, ctx: Context, cmd: Command, *, selectable: bool) -> bytes:
        card = ctx.card
        state = card.state
        lf_aid, module_aid, aid, privs, params, _token = _lv_fields(cmd.data, 6)
        # the token (delegated management, §11.5.2.3.8) is not verified by the ISD
        lf_aid, module_aid, aid = _aid(lf_aid), _aid(module_aid), _aid(aid)
        privileges = _privileges(privs)
        c9 = _install_params(params)
        lf = state.load_file(lf_aid)
        if lf is None or module_aid not in lf.modules:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no such load file / module")
        if module_aid == ISD_MODULE_AID:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "the card has one ISD")
        if state.instance(aid) is not None or state.load_file(aid) is not None:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "AID already in the registry")
        if privileges[0] & PRIV_SECURITY_DOMAIN:
            raise StatusError(SW.WRONG_DATA, "supplementary security domains are not supported")
        klass = card.applet_class(module_aid)
        rec = InstanceRecord(
            aid,
            lf_aid,
            module_aid,
            privileges,
            AppLife.SELECTABLE if selectable else AppLife.INSTALLED,
            install_params=params,
        )
        applet = klass(rec)
        applet.install(c9)  # may refuse with 6A80
        rec.state = applet.dump()
        state.instances.append(rec)
        card.applets[aid] = applet
        card.mark_dirty()
        return b"\x00"

    def _make_selectable(self, ctx: Context, cmd: Command) -> bytes:
        lf_aid, module_aid, aid, privs, params, _token = _lv_fields(cmd.data, 6)
        if lf_aid or module_aid or params:
            raise StatusError(SW.WRONG_DATA, "[for make selectable] takes only the instance AID")
        rec = ctx.card.state.instance(_aid(aid))
        if rec is None:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no such application")
        if rec.lifecycle != AppLife.INSTALLED:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "application is not INSTALLED")
        if privs:
            privileges = _privileges(privs)
            if privileges[0] & PRIV_SECURITY_DOMAIN:
                raise StatusError(SW.WRONG_DATA, "supplementary security domains are not supported")
            rec.privileges = privileges
        rec.lifecycle = lifecycle.app_transition(rec.lifecycle, AppLife.SELECTABLE, {})
        ctx.card.mark_dirty()
        return b"\x00"

    def _install_for_perso(self, ctx: Context, cmd: Command) -> bytes:
        """§11.5.2.3.4: following STORE DATA on this channel go to the application."""
        lf_aid, module_aid, aid, privs, params, token = _lv_fields(cmd.data, 6)
        if lf_aid or module_aid or privs or params or token:
            raise StatusError(SW.WRONG_DATA, "[for personalization] takes only the application AID")
        state = ctx.card.state
        rec = state.instance(_aid(aid))
        if rec is None:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no such application")
        if (
            rec.aid == state.isd_aid
            or lifecycle.app_is_locked(rec.lifecycle)
            or rec.lifecycle == AppLife.INSTALLED
        ):
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "application cannot be personalized")
        ctx.channel.perso_target = rec.aid
        self.work(ctx).next_block = 0
        return b"\x00"

    # -- LOAD (§11.6) ---------------------------------------------------------
    @command(PROPRIETARY, 0xE8)
    def load_cmd(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        raise StatusError(SW.FUNCTION_NOT_SUPPORTED, "load files are built in")

    # -- DELETE (§11.2) -------------------------------------------------------
    @command(PROPRIETARY, 0xE4)
    def delete(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        if cmd.p1 & 0x7F or cmd.p2 not in (0x00, 0x80):
            raise StatusError(SW.INCORRECT_P1P2)
        card = ctx.card
        state = card.state
        self._not_locked(state)
        try:
            items = tlv.parse(cmd.data)
        except tlv.TlvError as exc:
            raise StatusError(SW.WRONG_DATA, "malformed DELETE data") from exc
        aids = [t.value for t in items if t.tag == 0x4F]
        if len(aids) != 1 or any(t.tag not in (0x4F, 0xB6, 0x9E) for t in items):
            raise StatusError(SW.WRONG_DATA, "DELETE takes one 4F (and optional B6/9E)")
        aid = _aid(aids[0])
        if aid in (state.isd_aid, ISD_LOAD_FILE_AID):
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "the ISD cannot be deleted")
        rec = state.instance(aid)
        if rec is not None:
            self._delete_instances(ctx, [rec])
            return b"\x00"
        lf = state.load_file(aid)
        if lf is None:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no such AID in the registry")
        related = [r for r in state.instances if r.load_file_aid == lf.aid]
        if related and cmd.p2 != 0x80:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "load file has instances (use P2=80)")
        self._delete_instances(ctx, related)
        state.load_files.remove(lf)
        card.mark_dirty()
        return b"\x00"

    def _delete_instances(self, ctx: Context, recs: list[InstanceRecord]) -> None:
        card = ctx.card
        doomed = {r.aid for r in recs}
        if any(ch.selected in doomed for ch in card.channels.values()):
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "application selected on a channel")
        card.state.instances = [r for r in card.state.instances if r.aid not in doomed]
        for aid in doomed:
            card.applets.pop(aid, None)
        for ch in card.channels.values():
            if ch.perso_target in doomed:
                ch.perso_target = None
        card.mark_dirty()

    # -- PUT KEY (§11.8) ------------------------------------------------------
    @command(PROPRIETARY, 0xD8)
    def put_key(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        answer = put_key(ctx.card.state, cmd, self.static_dek(ctx))
        ctx.card.mark_dirty()
        return answer

    # -- STORE DATA (§11.11) --------------------------------------------------
    @command(PROPRIETARY, 0xE2)
    def store_data_cmd(self, ctx: Context, cmd: Command) -> bytes:
        ctx.require_secure_channel()
        card = ctx.card
        work = self.work(ctx)
        if cmd.p2 != work.next_block:
            raise StatusError(SW.INCORRECT_P1P2, "STORE DATA block out of sequence")
        last = bool(cmd.p1 & 0x80)
        encryption = (cmd.p1 >> 5) & 0x03  # b7b6: 00 none, 01 application, 11 DEK
        fmt = (cmd.p1 >> 3) & 0x03  # b5b4: 00 none, 01 DGI, 10 BER-TLV
        if encryption == 0x02 or fmt == 0x03:
            raise StatusError(SW.INCORRECT_P1P2, "RFU STORE DATA coding")
        data = cmd.data
        if encryption == 0x03:
            data = self._unpad(decrypt_under_dek(self.static_dek(ctx), data))
        target = ctx.channel.perso_target
        if target is not None:
            applet = card.applets.get(target)
            if applet is None or lifecycle.app_is_locked(applet.record.lifecycle):
                ctx.channel.perso_target = None
                raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "personalization target gone")
            out = applet.store_data(ctx, cmd.with_data(data))
            self._advance(ctx, work, last)
            return out
        if encryption == 0x01:
            raise StatusError(SW.INCORRECT_P1P2, "application dependent encryption for the ISD")
        if len(work.buffer) + len(data) > STORE_LIMIT:
            raise StatusError(SW.NOT_ENOUGH_MEMORY)
        work.buffer += data
        out = b""
        if last:
            buffered = bytes(work.buffer)
            work.buffer.clear()
            work.next_block = 0
            out = self._store_isd(card.state, buffered, dgi=fmt == 0x01)
            card.mark_dirty()
            return out
        work.next_block = (work.next_block + 1) & 0xFF
        return out

    def _advance(self, ctx: Context, work: _Work, last: bool) -> None:
        if last:
            work.next_block = 0
            ctx.channel.perso_target = None
        else:
            work.next_block = (work.next_block + 1) & 0xFF

    @staticmethod
    def _unpad(data: bytes) -> bytes:
        """Remove ISO/IEC 9797-1 method 2 padding (80 00..) if present."""
        stripped = data.rstrip(b"\x00")
        if stripped.endswith(b"\x80") and len(data) - len(stripped) < 16:
            return stripped[:-1]
        return data

    @staticmethod
    def _store_isd(state: CardState, data: bytes, *, dgi: bool) -> bytes:
        """Apply ISD data objects: 42 IIN, 45 CIN, CF KDD, anything else into
        ``isd_data`` (66 card data, 5A EID...). BF3E with a 5C tag list reads
        objects back (SGP.22 style retrieval, used by pySim)."""
        try:
            objects = (
                [(d, v) for d, v in tlv.parse_dgis(data)]
                if dgi
                else [(t.tag, t.value) for t in tlv.parse(data)]
            )
        except tlv.TlvError as exc:
            raise StatusError(SW.WRONG_DATA, "malformed STORE DATA") from exc
        out = b""
        for tag, value in objects:
            if tag == 0xBF3E and not dgi:
                wanted = tlv.find(value, 0x5C)
                if wanted is None:
                    raise StatusError(SW.WRONG_DATA, "BF3E without a tag list")
                found = [
                    (t, state.isd_data[t]) for t in gpstatus.tag_list(wanted.value) if t in state.isd_data
                ]
                out += tlv.encode(0xBF3E, tlv.encode_all(found))
            elif tag in (0x9F7F, 0xE0, 0x67, 0xC1):
                raise StatusError(SW.WRONG_DATA, f"data object {tag:04X} is not writable")
            elif tag == 0x42:
                state.iin = value
            elif tag == 0x45:
                state.cin = value
            elif tag == 0xCF:
                if len(value) != 10:
                    raise StatusError(SW.WRONG_DATA, "KDD must have 10 bytes")
                state.kdd = value
            else:
                state.isd_data[tag] = value
        return out


def builtin_applets() -> list[type[Applet]]:
    """Every application class the card's ROM holds: the ISD, then the applications."""
    return [IssuerSecurityDomain, *APPLICATIONS]


def new_card_state(
    *,
    isd_aid: bytes = DEFAULT_ISD_AID,
    keys: tuple[bytes, bytes, bytes] | None = None,
    kvn: int = 0x30,
    kdd: bytes | None = None,
    scp_i: int = 0x70,
    sequence_counter: int = 0,
    lifecycle: int = CardLife.OP_READY,
    serial: int | None = None,
    iin: bytes = DEFAULT_IIN,
    cin: bytes | None = None,
    eid: bytes | None = None,
    atr: bytes | None = None,
) -> CardState:
    """A blank card: built-in load files, the ISD, a key set (ENC, MAC, DEK).

    CPLC is derived from ``serial`` (default: the last 4 bytes of the KDD);
    the CIN defaults to the KDD (GP §H.1 leaves its format to the issuer); ``atr`` defaults to
    EMV's basic T=1 ATR (cardlab.cardspec.atr; the caller checks a chosen one)."""
    enc, mac, dek = keys or (DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY)
    state = CardState(isd_aid=isd_aid, lifecycle=lifecycle, scp_i=scp_i, sequence_counter=sequence_counter)
    state.kdd = kdd if kdd is not None else bytes(10)
    if atr is not None:
        state.atr = atr
    state.keys = [KeyEntry(kvn, i + 1, "AES", k) for i, k in enumerate((enc, mac, dek))]
    if serial is None:
        serial = int.from_bytes(state.kdd[-4:], "big")
    state.cplc = gpdata.cplc(serial)
    state.iin = iin
    state.cin = cin if cin is not None else state.kdd
    if eid is not None:
        state.isd_data[0x5A] = eid
    for klass in builtin_applets():
        lf = state.load_file(klass.LOAD_FILE_AID)
        if lf is None:  # a load file may hold several modules (GP §5.3)
            state.load_files.append(LoadFileRecord(klass.LOAD_FILE_AID, [klass.MODULE_AID]))
        else:
            lf.modules.append(klass.MODULE_AID)
    state.instances.append(
        InstanceRecord(isd_aid, ISD_LOAD_FILE_AID, ISD_MODULE_AID, ISD_PRIVILEGES, lifecycle)
    )
    return state

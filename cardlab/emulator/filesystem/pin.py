"""The global PIN (ISO 7816-4 §11.5): VERIFY (20), CHANGE REFERENCE DATA (24),
RESET RETRY COUNTER (2C). Formats and try counters: :mod:`.model`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..apdu import SW, Command, StatusError
from .core import FileSystemCore
from .model import PIN_LENGTH, PIN_REF, valid_pin_format

if TYPE_CHECKING:
    from ..applet import Context


def _pin_reference(cmd: Command) -> None:
    if cmd.p2 != PIN_REF:
        raise StatusError(SW.REFERENCED_DATA_NOT_FOUND)


def verify(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    """VERIFY (§11.5.6): P1=00 with the PIN, or empty data for the status
    (9000 verified, 63Cx tries left, 6983 blocked); P1=FF resets the status."""
    verified = ctx.card.security.pin_verified
    if cmd.p1 == 0xFF:
        _pin_reference(cmd)
        if cmd.data:
            raise StatusError(SW.WRONG_LENGTH)
        verified.discard(PIN_REF)
        return b""
    if cmd.p1:
        raise StatusError(SW.INCORRECT_P1P2)
    _pin_reference(cmd)
    if not cmd.data:
        if PIN_REF in verified:
            return b""
        if fs.pin.tries <= 0:
            raise StatusError(SW.AUTH_METHOD_BLOCKED)
        raise fs.pin.failed()
    if len(cmd.data) != PIN_LENGTH:
        raise StatusError(SW.WRONG_LENGTH)
    _check_pin(fs, ctx, cmd.data)
    verified.add(PIN_REF)
    return b""


def _check_pin(fs: FileSystemCore, ctx: Context, offered: bytes) -> None:
    if not fs.pin.check(fs, offered):
        ctx.card.security.pin_verified.discard(PIN_REF)
        raise fs.pin.failed()


def change_reference_data(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    """CHANGE REFERENCE DATA (§11.5.7): P1=00 old PIN ‖ new PIN; P1=01 new
    PIN only, when the PIN is already verified."""
    _pin_reference(cmd)
    if cmd.p1 == 0x00:
        if len(cmd.data) != 2 * PIN_LENGTH:
            raise StatusError(SW.WRONG_LENGTH)
        old, new = cmd.data[:PIN_LENGTH], cmd.data[PIN_LENGTH:]
    elif cmd.p1 == 0x01:
        if len(cmd.data) != PIN_LENGTH:
            raise StatusError(SW.WRONG_LENGTH)
        if PIN_REF not in ctx.card.security.pin_verified:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        old, new = None, cmd.data
    else:
        raise StatusError(SW.INCORRECT_P1P2)
    if not valid_pin_format(new):
        raise StatusError(SW.WRONG_DATA, "new PIN format")
    if old is not None:
        _check_pin(fs, ctx, old)
    fs.pin.value = new
    fs.pin.tries = fs.pin.max_tries
    ctx.card.security.pin_verified.add(PIN_REF)
    fs.dirty = True
    return b""


def reset_retry_counter(fs: FileSystemCore, ctx: Context, cmd: Command) -> bytes:
    """RESET RETRY COUNTER (§11.5.10): P1=00 PUK ‖ new PIN, P1=01 PUK only."""
    _pin_reference(cmd)
    if cmd.p1 == 0x00 and len(cmd.data) == len(fs.puk.value) + PIN_LENGTH:
        puk, new = cmd.data[: -PIN_LENGTH], cmd.data[-PIN_LENGTH:]
    elif cmd.p1 == 0x01 and len(cmd.data) == len(fs.puk.value):
        puk, new = cmd.data, None
    elif cmd.p1 in (0x00, 0x01):
        raise StatusError(SW.WRONG_LENGTH)
    else:
        raise StatusError(SW.INCORRECT_P1P2)
    if new is not None and not valid_pin_format(new):
        raise StatusError(SW.WRONG_DATA, "new PIN format")
    if not fs.puk.check(fs, puk):
        raise fs.puk.failed()
    if new is not None:
        fs.pin.value = new
    fs.pin.tries = fs.pin.max_tries
    fs.dirty = True
    return b""

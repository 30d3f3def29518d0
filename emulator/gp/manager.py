"""The Issuer Security Domain: GP card manager commands (GP Card Spec 2.3 §11).

SKELETON — the GP helper fills the command handlers in.
"""

from __future__ import annotations

from typing import Any

from ..apdu import Command
from ..applet import Applet, Context
from ..state import DEFAULT_ISD_AID, CardState, InstanceRecord, KeyEntry, LoadFileRecord
from .lifecycle import CardLife

ISD_LOAD_FILE_AID = bytes.fromhex("A0000001515350")  # GP "SD package" style AID
ISD_MODULE_AID = bytes.fromhex("A000000151535041")
ISD_PRIVILEGES = bytes.fromhex("9EFE80")

DEFAULT_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")


class IssuerSecurityDomain(Applet):
    NAME = "Issuer Security Domain"
    LOAD_FILE_AID = ISD_LOAD_FILE_AID
    MODULE_AID = ISD_MODULE_AID

    def select(self, ctx: Context, cmd: Command) -> bytes:
        return b""

    def load(self, state: dict[str, Any]) -> None:
        pass


def new_card_state(
    *,
    isd_aid: bytes = DEFAULT_ISD_AID,
    keys: tuple[bytes, bytes, bytes] | None = None,
    kvn: int = 0x30,
    kdd: bytes | None = None,
    scp_i: int = 0x70,
    sequence_counter: int = 0,
    lifecycle: int = CardLife.OP_READY,
) -> CardState:
    """A blank card: built-in load files, the ISD, a key set (ENC, MAC, DEK)."""
    from ..registry import builtin_applets

    enc, mac, dek = keys or (DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY)
    state = CardState(isd_aid=isd_aid, lifecycle=lifecycle, scp_i=scp_i, sequence_counter=sequence_counter)
    state.kdd = kdd if kdd is not None else bytes(10)
    state.keys = [KeyEntry(kvn, i + 1, "AES", k) for i, k in enumerate((enc, mac, dek))]
    for klass in builtin_applets():
        if klass is not IssuerSecurityDomain:
            state.load_files.append(LoadFileRecord(klass.LOAD_FILE_AID, [klass.MODULE_AID]))
    state.instances.append(
        InstanceRecord(isd_aid, ISD_LOAD_FILE_AID, ISD_MODULE_AID, ISD_PRIVILEGES, lifecycle)
    )
    return state

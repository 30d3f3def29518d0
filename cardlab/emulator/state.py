"""The card's persistent state: everything a power cut must not lose.

It is plain data; :mod:`cardlab.emulator.image` turns it into a readable JSON file.
Transient state (selected applications, secure channel sessions, PIN
verification status) lives in :class:`cardlab.emulator.applet.Channel` and the card
object and is lost at power-off, as on a real card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cardlab.cardspec.atr import DEFAULT as DEFAULT_ATR  # noqa: F401 - re-exported

DEFAULT_ISD_AID = bytes.fromhex("A000000151000000")


@dataclass
class KeyEntry:
    """One key of a key set (GP Card Spec 2.3 §11.8: key version + key identifier)."""

    kvn: int
    kid: int
    kind: str  # "AES" (GP key type 88) or "DES" (80)
    value: bytes
    #: (kind, value, check value) of the last :meth:`kcv`: computed once per key, not per save
    _kcv: tuple[str, bytes, bytes] | None = field(default=None, compare=False, repr=False)

    def kcv(self) -> bytes:
        cached = self._kcv
        if cached is not None and cached[0] == self.kind and cached[1] == self.value:
            return cached[2]
        from cardlab.cardspec.keys import kcv

        value = kcv(self.kind, self.value)
        self._kcv = (self.kind, self.value, value)
        return value


@dataclass
class InstanceRecord:
    """A registry entry for an application or security domain instance."""

    aid: bytes
    load_file_aid: bytes
    module_aid: bytes
    privileges: bytes  # 3 bytes, GP Card Spec 2.3 §6.6.1 table 6-1
    lifecycle: int
    install_params: bytes = b""
    state: dict[str, Any] = field(default_factory=dict)
    #: set when ``state`` changed and the image must be written (not saved)
    dirty: bool = field(default=False, compare=False, repr=False)


@dataclass
class LoadFileRecord:
    """A built-in Executable Load File and its modules (GP §5.3)."""

    aid: bytes
    modules: list[bytes]
    lifecycle: int = 0x01  # LOADED
    version: bytes = b"\x01\x00"


@dataclass
class CardState:
    isd_aid: bytes = DEFAULT_ISD_AID
    lifecycle: int = 0x01  # OP_READY
    keys: list[KeyEntry] = field(default_factory=list)
    scp_i: int = 0x70
    sequence_counter: int = 0
    kdd: bytes = bytes(10)
    iin: bytes = b""
    cin: bytes = b""
    cplc: bytes = b""
    #: EMV's basic T=1 ATR unless the profile or ``card new`` chose another (cardlab.cardspec.atr)
    atr: bytes = DEFAULT_ATR
    load_files: list[LoadFileRecord] = field(default_factory=list)
    instances: list[InstanceRecord] = field(default_factory=list)
    #: the ISO file system tree, owned by cardlab.emulator.filesystem (dump/load)
    filesystem: dict[str, Any] = field(default_factory=dict)
    #: ISO/IEC 14443-3 UID on the contactless interface; empty: derived (cardlab.emulator.contactless)
    uid: bytes = b""
    #: other data stored in the ISD by STORE DATA (tag → value, both hex-free bytes)
    isd_data: dict[int, bytes] = field(default_factory=dict)

    def instance(self, aid: bytes) -> InstanceRecord | None:
        for rec in self.instances:
            if rec.aid == aid:
                return rec
        return None

    def load_file(self, aid: bytes) -> LoadFileRecord | None:
        for rec in self.load_files:
            if rec.aid == aid:
                return rec
        return None

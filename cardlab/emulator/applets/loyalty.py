"""A small loyalty-points application, so the registry holds a real second
load file.

* INSTALL: application specific parameters (C9 content) = empty, or the
  maximum balance on 4 bytes (default 100000 points).
* Personalization (GP Card Spec 2.3 §11.11, DGI format, routed by the ISD
  after INSTALL [for personalization]): DGI 0101 holder identifier (1..16
  bytes), optional DGI 0102 opening balance (4 bytes). The last block moves the
  instance from SELECTABLE to PERSONALIZED (0F, an application specific state,
  GP §5.3.1).
* Commands (CLA 80): CREDIT (30) and DEBIT (32), data = amount (4 bytes),
  answer the new balance; GET BALANCE (34) answers balance ‖ holder id.
  Before personalization they answer 6985.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cardlab.cardspec import tlv

from ..apdu import SW, Command, StatusError
from ..applet import PROPRIETARY, Applet, Context, command
from ..gp import lifecycle

PERSONALIZED = 0x0F
DEFAULT_MAX = 100_000
DGI_HOLDER = 0x0101
DGI_BALANCE = 0x0102


class LoyaltyApplet(Applet):
    NAME = "Loyalty points"
    LOAD_FILE_AID = bytes.fromhex("A0000006474C59")
    MODULE_AID = bytes.fromhex("A0000006474C5901")
    SPECIFIC_STATES: ClassVar[dict[int, str]] = {PERSONALIZED: "PERSONALIZED"}

    # -- persistence --------------------------------------------------------
    def load(self, state: dict[str, Any]) -> None:
        self.max_balance = int(state.get("max_balance", DEFAULT_MAX))
        self.balance = int(state.get("balance", 0))
        self.holder = bytes.fromhex(str(state.get("holder", "")))
        self._perso: dict[int, bytes] = {}

    def dump(self) -> dict[str, Any]:
        return {"max_balance": self.max_balance, "balance": self.balance, "holder": self.holder.hex()}

    # -- life events --------------------------------------------------------
    def install(self, params: bytes) -> None:
        if params and len(params) != 4:
            raise StatusError(SW.WRONG_DATA, "C9 must be empty or a 4-byte maximum balance")
        if params:
            self.max_balance = int.from_bytes(params, "big")
        self.mark_dirty()

    def select(self, ctx: Context, cmd: Command) -> bytes:
        return tlv.encode(0x6F, tlv.encode(0x84, self.aid))

    def store_data(self, ctx: Context, cmd: Command) -> bytes:
        if self.record.lifecycle != lifecycle.AppLife.SELECTABLE:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "already personalized")
        if (cmd.p1 >> 3) & 0x03 != 0x01:
            raise StatusError(SW.INCORRECT_P1P2, "personalization data is in DGI format")
        try:
            dgis = tlv.parse_dgis(cmd.data)
        except tlv.TlvError as exc:
            raise StatusError(SW.WRONG_DATA, "malformed DGI") from exc
        for dgi, value in dgis:
            if (dgi == DGI_HOLDER and 1 <= len(value) <= 16) or (dgi == DGI_BALANCE and len(value) == 4):
                self._perso[dgi] = value
            else:
                raise StatusError(SW.WRONG_DATA, f"unexpected DGI {dgi:04X}")
        if cmd.p1 & 0x80:  # last block
            perso, self._perso = self._perso, {}
            if DGI_HOLDER not in perso:
                raise StatusError(SW.WRONG_DATA, "holder identifier missing")
            balance = int.from_bytes(perso.get(DGI_BALANCE, bytes(4)), "big")
            if balance > self.max_balance:
                raise StatusError(SW.WRONG_DATA, "opening balance above the maximum")
            self.holder, self.balance = perso[DGI_HOLDER], balance
            self.record.lifecycle = lifecycle.app_transition(
                self.record.lifecycle, PERSONALIZED, self.SPECIFIC_STATES
            )
            self.mark_dirty()
        return b""

    # -- commands -----------------------------------------------------------
    def _ready(self) -> None:
        if self.record.lifecycle != PERSONALIZED:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "not personalized")

    @staticmethod
    def _amount(cmd: Command) -> int:
        if len(cmd.data) != 4:
            raise StatusError(SW.WRONG_LENGTH, "amount is 4 bytes")
        amount = int.from_bytes(cmd.data, "big")
        if amount == 0:
            raise StatusError(SW.WRONG_DATA, "amount must be positive")
        return amount

    @command(PROPRIETARY, 0x30)
    def credit(self, ctx: Context, cmd: Command) -> bytes:
        self._ready()
        amount = self._amount(cmd)
        if self.balance + amount > self.max_balance:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "maximum balance exceeded")
        self.balance += amount
        self.mark_dirty()
        return self.balance.to_bytes(4, "big")

    @command(PROPRIETARY, 0x32)
    def debit(self, ctx: Context, cmd: Command) -> bytes:
        self._ready()
        amount = self._amount(cmd)
        if amount > self.balance:
            raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "insufficient balance")
        self.balance -= amount
        self.mark_dirty()
        return self.balance.to_bytes(4, "big")

    @command(PROPRIETARY, 0x34)
    def get_balance(self, ctx: Context, cmd: Command) -> bytes:
        self._ready()
        if cmd.data:
            raise StatusError(SW.WRONG_LENGTH)
        return self.balance.to_bytes(4, "big") + self.holder

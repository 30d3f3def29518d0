"""The EMV payment application: dispatch table and shared helpers.

SKELETON (lead). Owners:
- this file, perso.py, selection/GPO/READ RECORD/GET DATA/GET CHALLENGE/VERIFY/
  INTERNAL AUTHENTICATE (core.py), emulator/applets/pse.py: the "core" engineer;
- ac.py (GENERATE AC, card risk management, CDA, transaction log) and
  issuer.py (EXTERNAL AUTHENTICATE, issuer script commands): the "AC" engineer;
- cardspec/emv.py and cvn.py (cryptogram versions): the "crypto" engineer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...apdu import Command
from ...applet import INTERINDUSTRY, PROPRIETARY, Applet, Context, command
from . import ac, core, issuer, perso, qvsdc
from .state import EmvData, Transaction

PERSONALIZED = 0x0F  # application specific life cycle state (GP §5.3.1)


class EmvApplet(Applet):
    NAME = "EMV payment"
    LOAD_FILE_AID = bytes.fromhex("A0000006474D56")
    MODULE_AID = bytes.fromhex("A0000006474D5601")
    SPECIFIC_STATES: ClassVar[dict[int, str]] = {PERSONALIZED: "PERSONALIZED"}
    PERSONALIZED_STATE: ClassVar[int] = PERSONALIZED
    #: commands that carry EMV secure messaging (issuer scripts, EMV Book 2 §9)
    #: rather than GP SCP03: the card lets these through without a GP session.
    OWN_SECURE_MESSAGING: ClassVar[frozenset[tuple[int, int]]] = frozenset(
        {(PROPRIETARY, 0x1E), (PROPRIETARY, 0x18), (PROPRIETARY, 0x16), (PROPRIETARY, 0x24),
         (INTERINDUSTRY, 0xDA), (INTERINDUSTRY, 0xDC), (PROPRIETARY, 0xDA), (PROPRIETARY, 0xDC)}
    )

    def load(self, state: dict[str, Any]) -> None:
        self.data = EmvData.load(state)
        self.tx = Transaction()
        #: RSA CRT components and key check values of a personalization in
        #: progress, until their DGI set is complete (transient: a
        #: personalization runs within one SCP03 session, lost at power-off)
        self.perso_parts: dict[int, bytes] = {}

    def dump(self) -> dict[str, Any]:
        return self.data.dump()

    def install(self, params: bytes) -> None:
        perso.install(self, params)

    def select(self, ctx: Context, cmd: Command) -> bytes:
        self.tx = Transaction()
        return core.select(self, ctx, cmd)

    def store_data(self, ctx: Context, cmd: Command) -> bytes:
        return perso.store_data(self, ctx, cmd)

    # -- core ----------------------------------------------------------------
    @command(PROPRIETARY, 0xA8)
    def get_processing_options(self, ctx: Context, cmd: Command) -> bytes:
        if core.on_contactless(ctx):
            return qvsdc.get_processing_options(self, ctx, cmd)
        return core.get_processing_options(self, ctx, cmd)

    @command(INTERINDUSTRY, 0xB2)
    def read_record(self, ctx: Context, cmd: Command) -> bytes:
        return core.read_record(self, ctx, cmd)

    @command(PROPRIETARY, 0xCA)
    def get_data(self, ctx: Context, cmd: Command) -> bytes:
        return core.get_data(self, ctx, cmd)

    @command(INTERINDUSTRY, 0x84)
    def get_challenge(self, ctx: Context, cmd: Command) -> bytes:
        return core.get_challenge(self, ctx, cmd)

    @command(INTERINDUSTRY, 0x20)
    def verify(self, ctx: Context, cmd: Command) -> bytes:
        return core.verify(self, ctx, cmd)

    @command(INTERINDUSTRY, 0x88)
    def internal_authenticate(self, ctx: Context, cmd: Command) -> bytes:
        return core.internal_authenticate(self, ctx, cmd)

    # -- cryptograms and issuer ------------------------------------------------
    @command(PROPRIETARY, 0xAE)
    def generate_ac(self, ctx: Context, cmd: Command) -> bytes:
        return ac.generate_ac(self, ctx, cmd)

    @command(INTERINDUSTRY, 0x82)
    def external_authenticate(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.external_authenticate(self, ctx, cmd)

    @command(PROPRIETARY, 0x1E)
    def application_block(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.application_block(self, ctx, cmd)

    @command(PROPRIETARY, 0x18)
    def application_unblock(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.application_unblock(self, ctx, cmd)

    @command(PROPRIETARY, 0x16)
    def card_block(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.card_block(self, ctx, cmd)

    @command(PROPRIETARY, 0x24)
    def pin_change_unblock(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.pin_change_unblock(self, ctx, cmd)

    @command(INTERINDUSTRY, 0xDA)
    def put_data(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.put_data(self, ctx, cmd)

    @command(INTERINDUSTRY, 0xDC)
    def update_record(self, ctx: Context, cmd: Command) -> bytes:
        return issuer.update_record(self, ctx, cmd)

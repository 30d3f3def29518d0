"""Payment System Environment directories (EMV 4.4 Book 1 §12.2.2–12.3.2;
EMV Contactless Book B §3.3 for the PPSE).

One built-in load file with two modules:

* PSE  (instance AID ``1PAY.SYS.DDF01``): FCI 6F {84 DF name, A5 {88 SFI of
  the directory = 01, 5F2D, 9F11, BF0C}}; READ RECORD SFI 1 answers
  70 {61 {4F, 50, 9F12, 87}…} records, 6A83 after the last.
* PPSE (instance AID ``2PAY.SYS.DDF01``): FCI 6F {84, A5 {BF0C {61 {4F, 50,
  87, 9F2A}…}}}: 9F2A (Kernel Identifier, EMV Contactless Book B, PPSE directory entry) for an
  application with a contactless section (DGI 0D03); on the contactless interface
  the contact-only applications are left out.

Both are *computed* at SELECT / READ RECORD time from the card's registry, so
they always match the payment applications on the card: every EMV instance
that is selectable (not INSTALLED, not LOCKED) and personalized, in registry
order; label (50), priority (87) and preferred name (9F12) come from the
instance's FCI (DGI 9102; the PPSE prefers the contactless DGI 9103).

Install parameters (C9 content, optional): BER-TLV with 5F2D language
preference and 9F11 issuer code table index, added to the A5 template.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cardlab.cardspec import tlv

from ..apdu import SW, Command, StatusError
from ..applet import INTERINDUSTRY, Applet, Context, command
from ..gp import lifecycle

PSE_NAME = b"1PAY.SYS.DDF01"
PPSE_NAME = b"2PAY.SYS.DDF01"
DIRECTORY_SFI = 1
#: largest record value (70 template content) a PSE record carries
RECORD_LIMIT = 250
#: install parameters allowed in A5
FCI_OPTIONS = (0x5F2D, 0x9F11)


def directory_entries(ctx: Context, *, contactless: bool) -> list[bytes]:
    """61 Application Templates (EMV Book 1 §12.2.3 table 47) of the payment
    applications the card holds now."""
    from .emv.applet import EmvApplet
    from .emv.core import fci_proprietary

    card = ctx.card
    out: list[bytes] = []
    for rec in card.state.instances:
        app = card.applets.get(rec.aid)
        if not isinstance(app, EmvApplet) or not app.data.personalized:
            continue
        if rec.lifecycle == lifecycle.AppLife.INSTALLED or lifecycle.app_is_locked(rec.lifecycle):
            continue
        if contactless and not app.data.kernel and ctx.card.interface == "contactless":
            continue  # a contact-only application is not reachable over the air
        try:
            fci = tlv.to_dict(fci_proprietary(app, contactless=contactless))
        except tlv.TlvError:
            fci = {}
        tags = (0x50, 0x9F12, 0x87) if not contactless else (0x50, 0x87)
        body = tlv.encode(0x4F, rec.aid) + b"".join(tlv.encode(t, fci[t]) for t in tags if t in fci)
        if contactless and app.data.kernel:
            body += tlv.encode(0x9F2A, bytes([app.data.kernel]))  # Kernel Identifier (Book B, PPSE directory entry)
        out.append(tlv.encode(0x61, body))
    return out


class _Directory(Applet):
    LOAD_FILE_AID: ClassVar[bytes] = bytes.fromhex("A0000006475053")

    def load(self, state: dict[str, Any]) -> None:
        self.options = bytes.fromhex(str(state.get("options", "")))

    def dump(self) -> dict[str, Any]:
        return {"options": self.options.hex().upper()}

    def install(self, params: bytes) -> None:
        try:
            items = tlv.parse(params)
        except tlv.TlvError as exc:
            raise StatusError(SW.WRONG_DATA, "install parameters are BER-TLV") from exc
        if any(t.tag not in FCI_OPTIONS for t in items):
            raise StatusError(SW.WRONG_DATA, "install parameters: only 5F2D and 9F11")
        self.options = params
        self.mark_dirty()

    @staticmethod
    def _check_p2(cmd: Command) -> bool:
        """P2 b3b4: 00 FCI, 0C no answer; anything else 6A86. True for an FCI."""
        answer = cmd.p2 & 0x0C
        if answer not in (0x00, 0x0C):
            raise StatusError(SW.INCORRECT_P1P2)
        return answer == 0x00


class PseApplet(_Directory):
    """The contact PSE, a DDF whose directory is the record file SFI 1."""

    NAME = "PSE directory"
    MODULE_AID: ClassVar[bytes] = bytes.fromhex("A000000647505301")

    def select(self, ctx: Context, cmd: Command) -> bytes:
        if not self._check_p2(cmd):
            return b""
        a5 = tlv.encode(0x88, bytes([DIRECTORY_SFI])) + self.options
        return tlv.encode(0x6F, tlv.encode(0x84, self.aid) + tlv.encode(0xA5, a5))

    def records(self, ctx: Context) -> list[bytes]:
        """Directory entries packed into records, as many per record as fit."""
        records: list[bytes] = []
        current = b""
        for entry in directory_entries(ctx, contactless=False):
            if current and len(current) + len(entry) > RECORD_LIMIT:
                records.append(tlv.encode(0x70, current))
                current = b""
            current += entry
        if current:
            records.append(tlv.encode(0x70, current))
        return records

    @command(INTERINDUSTRY, 0xB2)
    def read_record(self, ctx: Context, cmd: Command) -> bytes:
        """READ RECORD (EMV Book 1 §11.2, §12.3.2): the terminal reads records
        1, 2… of SFI 1 until 6A83."""
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            raise StatusError(SW.INCORRECT_P1P2)
        if cmd.p2 >> 3 != DIRECTORY_SFI:
            raise StatusError(SW.FILE_NOT_FOUND)
        records = self.records(ctx)
        if cmd.p1 > len(records):
            raise StatusError(SW.RECORD_NOT_FOUND)
        return records[cmd.p1 - 1]


class PpseApplet(_Directory):
    """The contactless PPSE: the directory is in the FCI (BF0C)."""

    NAME = "PPSE directory"
    MODULE_AID: ClassVar[bytes] = bytes.fromhex("A000000647505302")

    def select(self, ctx: Context, cmd: Command) -> bytes:
        if not self._check_p2(cmd):
            return b""
        entries = b"".join(directory_entries(ctx, contactless=True))
        a5 = self.options + tlv.encode(0xBF0C, entries)
        return tlv.encode(0x6F, tlv.encode(0x84, self.aid) + tlv.encode(0xA5, a5))

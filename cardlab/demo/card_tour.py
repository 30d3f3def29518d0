"""``cardlab card demo`` (:func:`run_card_demo`): a scripted card-management session against a
fresh card — how a GlobalPlatform card is managed over SCP03, every command by name, in plain and
wrapped form, with the decoded answer."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator.gp.lifecycle import CardLife, app_state_name
from cardlab.emulator.journal import ImageJournal
from cardlab.emulator.gp.manager import DEFAULT_KEY, new_card_state

from ..display import split_response, sw_text, tlv_lines


KDD = bytes.fromhex("0000C0DE0001DEADBEEF")
LOYALTY_LOAD_FILE = bytes.fromhex("A0000006474C59")
LOYALTY_MODULE = bytes.fromhex("A0000006474C5901")
LOYALTY_INSTANCE = bytes.fromhex("A0000006474C590101")


class DemoFailure(Exception):
    """A step answered something other than what the script expects."""


def _lv(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def _hex_chunks(data: bytes, width: int = 32) -> list[str]:
    """Hex in lines of ``width`` bytes (at least one, possibly empty, line)."""
    return [data[i : i + width].hex().upper() for i in range(0, len(data), width)] or [""]


class Session:
    """Sends named commands, through SCP03 once it is open, and prints them."""

    def __init__(self, card: Card, out: Console) -> None:
        self.card = card
        self.out = out
        self.scp: HostSession | None = None
        self.step = 0

    def raw(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu)

    def send(self, name: str, apdu: bytes, expect: int = 0x9000, *, decode: bool = True) -> bytes:
        self.step += 1
        self.out.print(f"\n[bold]{self.step:2}. {escape(name)}[/bold]")
        for chunk in _hex_chunks(apdu):
            self.out.print(f"    >> {chunk}")
        if self.scp is not None:
            wrapped = self.scp.wrap(apdu)
            for chunk in _hex_chunks(wrapped):
                self.out.print(f"    => {chunk}")
            resp = self.scp.unwrap(self.card.transmit(wrapped))
        else:
            resp = self.card.transmit(apdu)
        data, sw = split_response(resp)
        colour = "green" if sw == expect else "red"
        chunks = _hex_chunks(data)
        for chunk in chunks[:-1]:
            self.out.print(f"    << {chunk}")
        self.out.print(f"    << {chunks[-1]} [{colour}]{sw:04X}[/{colour}] {sw_text(sw)}")
        if decode:
            for line in tlv_lines(data)[:24]:
                self.out.print("       " + line)
        if sw != expect:
            raise DemoFailure(f"{name}: expected {expect:04X}, card answered {sw:04X}")
        return data


def _registry_table(data_by_kind: dict[str, bytes], card: Card) -> Table:
    table = Table(title="GET STATUS (GP Card Spec 2.3 §11.4)")
    for col in ("kind", "AID", "life cycle", "privileges", "load file / modules"):
        table.add_column(col)
    for kind, data in data_by_kind.items():
        for entry in tlv.parse(data):
            if entry.tag != 0xE3:
                continue
            fields = {t.tag: t.value for t in entry.children}
            modules = " ".join(t.value.hex().upper() for t in entry.children if t.tag == 0x84)
            aid = fields.get(0x4F, b"")
            life = fields.get(0x9F70, b"\x00")[0]
            if kind == "ISD":
                life_text = CardLife(life).name
            elif kind.startswith("load"):
                life_text = "LOADED" if life == 1 else f"{life:02X}"
            else:
                applet = card.applets.get(aid)
                life_text = app_state_name(life, applet.SPECIFIC_STATES if applet else {})
            table.add_row(kind, aid.hex().upper(), life_text, fields.get(0xC5, b"").hex().upper(),
                          modules or fields.get(0xC4, b"").hex().upper())
    return table


def _install_for_perso(aid: bytes) -> bytes:
    """INSTALL [for personalization] (GP §11.5.2.3): empty load file and module
    AIDs, the instance AID, empty privileges, parameters and token."""
    data = b"\x00\x00" + _lv(aid) + b"\x00\x00\x00"
    return bytes([0x80, 0xE6, 0x20, 0x00, len(data)]) + data


def _get_status(s: Session, p1: int, label: str) -> bytes:
    return s.send(f"GET STATUS {label}", bytes([0x80, 0xF2, p1, 0x02, 0x02, 0x4F, 0x00, 0x00]), decode=False)


def run_card_demo(out: Console, keep: Path | None = None) -> int:
    out.rule("cardlab card demo — managing a fresh GlobalPlatform card over SCP03")
    state = new_card_state(kdd=KDD, sequence_counter=1)
    card = Card(state)
    image = None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        image = keep / "card.json"
        card.save(image)
        ImageJournal.attach(card, image)
    atr = card.power_on()
    out.print(f"ATR {atr.hex().upper()}   card life cycle {CardLife(state.lifecycle).name}")
    out.print("[dim]>> command   => the same command wrapped by SCP03   << response data and status word[/dim]")
    s = Session(card, out)
    try:
        s.send("SELECT the Issuer Security Domain", bytes.fromhex("00A4040008") + state.isd_aid + b"\x00")
        s.send("GET DATA card production life cycle (CPLC)", bytes.fromhex("80CA9F7F00"))
        s.send("GET DATA card recognition data", bytes.fromhex("80CA006600"))
        s.send("GET DATA key information template", bytes.fromhex("80CA00E000"))
        s.send("GET STATUS outside a secure channel is refused", bytes.fromhex("80F28002024F0000"), 0x6982)

        out.print("\n[bold]Opening SCP03 at security level 33 (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION)[/bold]")
        keys = StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)
        scp = HostSession(s.raw, keys)
        scp.open(0x33)
        out.print(f"    session open; sequence counter now {card.state.sequence_counter}")
        s.scp = scp

        found = {
            "ISD": _get_status(s, 0x80, "— Issuer Security Domain"),
            "load file": _get_status(s, 0x10, "— load files and their modules"),
        }
        out.print(_registry_table(found, card))
        s.send("GET STATUS — applications: none installed yet",
               bytes.fromhex("80F24002024F0000"), 0x6A88)

        params = tlv.encode(0xC9, bytes.fromhex("00002710"))  # loyalty: balance ceiling 10000
        install = (_lv(LOYALTY_LOAD_FILE) + _lv(LOYALTY_MODULE) + _lv(LOYALTY_INSTANCE) + _lv(b"\x00")
                   + _lv(params) + b"\x00")
        s.send("INSTALL [for install and make selectable] a loyalty instance",
               bytes([0x80, 0xE6, 0x0C, 0x00, len(install)]) + install + b"\x00")
        s.send("INSTALL [for personalization] the loyalty instance",
               _install_for_perso(LOYALTY_INSTANCE))
        perso = tlv.encode_dgi(0x0101, b"MEMBER-0001") + tlv.encode_dgi(0x0102, (500).to_bytes(4, "big"))
        s.send("STORE DATA: DGI 0101 holder id, DGI 0102 opening balance (last block)",
               bytes([0x80, 0xE2, 0x88, 0x00, len(perso)]) + perso)
        found["application"] = _get_status(s, 0x40, "— the new instance is PERSONALIZED")
        out.print(_registry_table({"application": found["application"]}, card))

        s.scp = None  # selecting another application ends the session (GP §10.2)
        s.send("SELECT the loyalty instance",
               bytes([0x00, 0xA4, 0x04, 0x00, len(LOYALTY_INSTANCE)]) + LOYALTY_INSTANCE + b"\x00")
        s.send("CREDIT 250 points", bytes.fromhex("8030000004000000FA00"))
        s.send("DEBIT 100 points", bytes.fromhex("803200000400000064" "00"))
        s.send("DEBIT more than the balance is refused", bytes.fromhex("80320000040000FFFF00"), 0x6985)
        balance = s.send("GET BALANCE", bytes.fromhex("8034000000"), decode=False)
        out.print(f"    balance {int.from_bytes(balance[:4], 'big')} points for {balance[4:].decode(errors='replace')}")
        s.send("SELECT the Issuer Security Domain", bytes.fromhex("00A4040008") + state.isd_aid + b"\x00",
               decode=False)
        scp = HostSession(s.raw, keys)
        scp.open(0x33)
        s.scp = scp

        s.send("SET STATUS card → INITIALIZED", bytes.fromhex("80F0800700"))
        s.send("SET STATUS card → SECURED", bytes.fromhex("80F0800F00"))
        s.send("SET STATUS card → OP_READY is not a legal transition", bytes.fromhex("80F0800100"), 0x6985)
        s.send("SET STATUS lock the loyalty instance",
               bytes([0x80, 0xF0, 0x40, 0x80, len(LOYALTY_INSTANCE)]) + LOYALTY_INSTANCE)
        s.scp = None
        s.send("SELECT the locked instance is refused",
               bytes([0x00, 0xA4, 0x04, 0x00, len(LOYALTY_INSTANCE)]) + LOYALTY_INSTANCE + b"\x00", 0x6A81)
        s.send("SELECT the Issuer Security Domain again", bytes.fromhex("00A4040008") + state.isd_aid + b"\x00",
               decode=False)
        scp = HostSession(s.raw, keys)
        scp.open(0x33)
        s.scp = scp
        s.send("SET STATUS unlock the loyalty instance",
               bytes([0x80, 0xF0, 0x40, 0x00, len(LOYALTY_INSTANCE)]) + LOYALTY_INSTANCE)
        s.send("SET STATUS card → CARD_LOCKED", bytes.fromhex("80F0807F00"))
        s.scp = None
        s.send("SELECT an application on a locked card is refused",
               bytes([0x00, 0xA4, 0x04, 0x00, len(LOYALTY_INSTANCE)]) + LOYALTY_INSTANCE + b"\x00", 0x6A81)
        s.send("SELECT the Issuer Security Domain (still allowed)",
               bytes.fromhex("00A4040008") + state.isd_aid + b"\x00", decode=False)
        scp = HostSession(s.raw, keys)
        scp.open(0x33)
        s.scp = scp
        s.send("SET STATUS card → SECURED (unlock)", bytes.fromhex("80F0800F00"))
        found["ISD"] = _get_status(s, 0x80, "— Issuer Security Domain")
        out.print(_registry_table({"ISD": found["ISD"]}, card))
    except DemoFailure as exc:
        out.print(f"[red]demo failed: {exc}[/red]")
        return 1
    if image is not None:
        card.save(image)
        out.print(f"\ncard image kept in {image} (try: cardlab card show {image})")
    out.rule("done")
    return 0

"""``cardlab card show`` prints each EMV application's counters and flags from
the image, and never a key, the PIN or its PIN block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cardlab.cli import main
from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator.applets.emv.applet import EmvApplet
from cardlab.emulator.gp.manager import DEFAULT_KEY

CREDIT, DEBIT = bytes.fromhex("A0000000031010"), bytes.fromhex("A0000000032010")
PIN = "9731"
PIN_BLOCK = bytes.fromhex("24" + PIN + "FFFFFFFFFF")  # ISO 9564 format 2 (EMV Book 3 §6.5.12)
MK = bytes(range(0x51, 0x51 + 16))


def lv(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def emv_image(tmp_path: Path) -> Path:
    """Two EMV instances installed through SCP03; the credit one with counters
    as a few transactions would leave them, the debit one locked and fresh."""
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), "--kdd", "00" * 10]) == 0
    card = Card.load(image)
    host = HostSession(card.transmit, StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30))
    host.open(0x01)
    for aid in (CREDIT, DEBIT):
        data = (lv(EmvApplet.LOAD_FILE_AID) + lv(EmvApplet.MODULE_AID) + lv(aid) + lv(b"\x00")
                + lv(tlv.encode(0xC9, b"")) + b"\x00")
        assert host.send(bytes.fromhex("80E60C00") + lv(data) + b"\x00")[-2:] == b"\x90\x00"
    assert host.send(bytes.fromhex("80F04080") + lv(DEBIT))[-2:] == b"\x90\x00"  # lock
    app = card.applets[CREDIT]
    assert isinstance(app, EmvApplet)
    d = app.data
    d.personalized, d.blocked = True, True
    d.mk_ac = d.mk_smi = d.mk_smc = MK
    d.pin_block, d.pin_try_limit, d.pin_try_counter = PIN_BLOCK, 3, 1
    d.atc, d.last_online_atc = 4660, 4608
    d.consecutive_offline, d.cumulative_offline = 2, 4500
    d.risk.lower_consecutive_offline, d.risk.upper_consecutive_offline = 3, 5
    d.risk.lower_cumulative_offline, d.risk.upper_cumulative_offline = 10000, 20000
    d.risk.log_sfi, d.risk.log_records = 11, 10
    d.log = [bytes(8), bytes(8), bytes(8)]
    card.save(image)
    return image


def section(out: str, title: str) -> dict[str, str]:
    lines = out.splitlines()
    start = lines.index(title)
    facts: dict[str, str] = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        key, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        facts[key] = value
    return facts


def test_show_prints_emv_counters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = emv_image(tmp_path)
    capsys.readouterr()
    assert main(["card", "show", str(image)]) == 0
    out = capsys.readouterr().out
    credit = section(out, "EMV application A0000000031010")
    assert credit == {
        "life cycle": "SELECTABLE, BLOCKED",
        "ATC (9F36)": "4660 of 65535",
        "last online ATC (9F13)": "4608",
        "PIN try counter (9F17)": "1 of 3 tries left",
        "consecutive offline": "2 (limits 3/5)",
        "cumulative offline": "4500 (limits 10000/20000, minor units)",
        "log entries": "3 of 10 (SFI 11)",
    }
    debit = section(out, "EMV application A0000000032010")
    assert debit["life cycle"] == "LOCKED(SELECTABLE), not blocked, not personalized"
    assert debit["ATC (9F36)"] == "0 of 65535"
    assert debit["PIN try counter (9F17)"] == "no offline PIN"
    assert debit["log entries"] == "0 (no log file)"
    # secrets: KCVs only, no master key, no PIN or PIN block
    assert MK.hex().upper() not in out and MK.hex() not in out
    assert PIN_BLOCK.hex().upper() not in out and not re.search(rf"(?<![0-9A-F]){PIN}(?![0-9A-F])", out)
    for key in Card.load(image).state.keys:
        assert key.value.hex().upper() not in out and key.kcv().hex().upper() in out


def test_show_without_emv_application(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image)]) == 0
    capsys.readouterr()
    assert main(["card", "show", str(image)]) == 0
    out = capsys.readouterr().out
    assert "EMV application" not in out and "next sequence counter 0" in out

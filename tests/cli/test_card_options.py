"""``cardlab card`` options: a value the card cannot work with is a one-line
usage error (exit 2, nothing written); every value accepted gives a card whose
secure channel opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardlab.cli import main
from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.emulator import Card
from cardlab.emulator.gp.manager import DEFAULT_KEY
from cardlab.emulator.gp.scp03 import SUPPORTED_I

KEYS = StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key-version", "1FF"], "--key-version: expected a key version number 01-7F"),  # was accepted: IU answered 6F00
        (["--key-version", "00"], "--key-version: expected a key version number 01-7F"),  # P1 00 = "any key set"
        (["--key-version", "80"], "--key-version: expected"),
        (["--kvn", "0x30"], "--kvn: expected"),  # the deprecated spelling checks the same
        (["--sequence-counter", "99999999"], "--sequence-counter: expected a decimal number 0-16777215"),
        (["--sequence-counter", "16777216"], "--sequence-counter: expected"),
        (["--sequence-counter", "-1"], "--sequence-counter: expected"),
        (["--sequence-counter", "ten"], "--sequence-counter: expected"),
        (["--scp-i", "zz"], "--scp-i: expected an SCP03 i parameter"),  # was a traceback, exit 1
        (["--scp-i", "40"], "--scp-i: expected"),  # R-ENC without R-MAC (Amendment D table 5-1)
        (["--scp-i", "02"], "--scp-i: expected"),  # RFU bit
        (["--scp-i", "F0"], "--scp-i: expected"),
        (["--scp-i", "170"], "--scp-i: expected"),
        (["--isd-aid", "A0000001"], "--isd-aid: expected 5-16 bytes, got 4"),
        (["--isd-aid", "A0" * 17], "--isd-aid: expected 5-16 bytes"),
        (["--isd-aid", "A00000015G"], "--isd-aid: not hex"),
        (["--kdd", "0102"], "--kdd: expected 10 bytes"),
        (["--kmc-hex", "00" * 15], "--kmc-hex: expected 16 or 24 or 32 bytes"),
        (["--kmc", "00" * 15], "--kmc: expected 16 or 24 or 32 bytes"),  # deprecated: a hex KMC without --keys
        (["--isd-keys", "00" * 16 + ":" + "00" * 16 + ":" + "00" * 24], "--isd-keys: the three keys must have the same length"),
        (["--keys", "00" * 16 + ":" + "00" * 16 + ":" + "00" * 24], "--keys: the three keys must have the same length"),
        (["--diversification", "visa"], "--diversification: expected emv, visa2 or kdf3 (any case)"),
        (["--lifecycle", "TERMINATED"], "--lifecycle: invalid choice"),
    ],
)
def test_card_new_refuses_values_the_card_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("cardlab card new: ") and "Traceback" not in err
    assert not image.exists()


def test_send_and_serve_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), "--kdd", "00" * 10]) == 0
    before = image.read_bytes()
    capsys.readouterr()
    # a bad APDU anywhere in the list: refused before any is sent
    assert main(["card", "send", str(image), "8050000008000102030405060700", "00A4zz"]) == 2
    err = capsys.readouterr()
    assert err.err.count("\n") == 1 and "HEX: not hex" in err.err and not err.out
    assert image.read_bytes() == before  # the INITIALIZE UPDATE did not run
    for port in ("0", "65536", "http"):
        assert main(["card", "serve", str(image), "--vpcd", "--port", port]) == 2
        assert "--port: expected a TCP port 1-65535" in capsys.readouterr().err


@pytest.mark.parametrize("i", sorted(SUPPORTED_I), ids=lambda i: f"i{i:02X}")
def test_every_accepted_i_opens_a_session(tmp_path: Path, i: int) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), "--scp-i", f"{i:02x}"]) == 0
    card = Card.load(image)
    assert card.state.scp_i == i
    host = HostSession(card.transmit, KEYS)
    host.open(0x01 | (0x10 if i & 0x20 else 0), bytes(16 if i & 0x01 else 8))
    assert host.send(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"


def test_extreme_accepted_values_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), "--kvn", "7F", "--sequence-counter", "16777215"]) == 0
    assert "key set 7F" in capsys.readouterr().out
    card = Card.load(image)
    host = HostSession(card.transmit, StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x7F))
    host.open(0x01)
    assert (host.key_version, host.sequence_counter) == (0x7F, 0xFFFFFF)
    assert host.send(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"
    # the last sequence counter value was used: the card now refuses (Amendment D §6.2.2.1)
    assert card.transmit(bytes.fromhex("8050000008") + bytes(8) + b"\x00")[-2:] == b"\x69\x85"


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "new", "--help"]) == 0
    assert "--scp-i" in capsys.readouterr().out

"""The ``cardlab`` command line: card new/send/show, errors, the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardlab.cli import main
from cardlab.cardspec.keys import kcv
from cardlab.emulator import Card

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "diversification.json").read_text())["vectors"]


def test_card_new_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), "--kdd", "00010203040506070809", "--sequence-counter", "7"]) == 0
    card = Card.load(image)
    assert card.state.isd_aid.hex().upper() == "A000000151000000"
    assert card.state.sequence_counter == 7
    assert card.state.kdd == bytes(range(10))
    assert "KDD 00010203040506070809" in capsys.readouterr().out


def test_card_new_explicit_keys(tmp_path: Path) -> None:
    image = tmp_path / "c.json"
    enc, mac, dek = "11" * 16, "22" * 16, "33" * 16
    assert main(["card", "new", str(image), "--isd-keys", f"{enc}:{mac}:{dek}", "--key-version", "31",
                 "--isd-aid", "A0000001510000", "--scp-i", "10", "--lifecycle", "SECURED"]) == 0
    st = Card.load(image).state
    assert [(k.kvn, k.kid, k.value.hex()) for k in st.keys] == [(0x31, 1, enc), (0x31, 2, mac), (0x31, 3, dek)]
    assert (st.scp_i, st.lifecycle, st.isd_aid.hex()) == (0x10, 0x0F, "a0000001510000")


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["scheme"] in ("EMV", "VISA2", "KDF3")
                                    and "kcv" in v], ids=lambda v: v["name"])
def test_card_new_diversified_from_kmc(tmp_path: Path, vector: dict[str, object]) -> None:
    """Card keys diversified from a KMC match the public KCVs (GlobalPlatformPro)."""
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), "--kmc-hex", str(vector["master"]), "--kdd", str(vector["kdd"]),
                 "--diversification", str(vector["scheme"]).lower()]) == 0
    keys = Card.load(image).state.keys
    got = [kcv(str(vector["kcv_kind"]), k.value).hex().upper() for k in keys]
    assert got == vector["kcv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keys", "00:11"], "ENC:MAC:DEK"),
        (["--keys", "zz:11:22"], "not hex"),
        (["--kmc-hex", "0011"], "--kmc-hex: expected"),
        (["--kdd", "0102"], "--kdd: expected 10 bytes"),
        (["--isd-keys", ("00" * 16 + ":") * 2 + "00" * 16, "--kmc-hex", "00" * 16], "exclude"),
    ],
)
def test_card_new_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    image = tmp_path / "c.json"
    assert main(["card", "new", str(image), *args]) == 2
    assert message in capsys.readouterr().err
    assert not image.exists()


def test_card_send_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "c.json"
    main(["card", "new", str(image)])
    capsys.readouterr()
    assert main(["card", "send", str(image), "00A4040008A000000151000000", "80CA9F7F00"]) == 0
    out = capsys.readouterr().out
    assert "9000 (OK)" in out and "9F7F" in out
    # INITIALIZE UPDATE moves the sequence counter; send saves the image
    assert main(["card", "send", str(image), "8050000008000102030405060700"]) == 0
    assert Card.load(image).state.sequence_counter == 1
    assert main(["card", "send", str(image), "00B0"]) == 1  # 6700 reported, exit 1
    assert "6700 (wrong length)" in capsys.readouterr().out
    assert main(["card", "show", str(image)]) == 0
    shown = capsys.readouterr().out
    assert "OP_READY" in shown and "A000000151000000" in shown and "2F00" in shown
    for key in Card.load(image).state.keys:
        assert key.value.hex().upper() not in shown  # only check values are shown
        assert key.kcv().hex().upper() in shown


def test_missing_or_bad_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "show", str(tmp_path / "none.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["card", "show", str(bad)]) == 2
    assert "not a cardlab card image" in capsys.readouterr().err


def test_demo_runs_and_keeps_the_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "INSTALL [for install and make selectable]" in out
    card = Card.load(tmp_path / "card.json")
    assert card.state.lifecycle == 0x0F  # SECURED at the end of the script

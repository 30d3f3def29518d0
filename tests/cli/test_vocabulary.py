"""One command-line vocabulary (issue 12): the same option means the same thing in every command,
choices in any case, old spellings still work for one release with one deprecation line."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import cardlab
from cardlab import exitcodes
from cardlab.cli import build_parser, iter_parsers, main
from cardlab.emulator import Card

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
KEYSTORE = VECTORS / "test-keystore.json"


def _options(option: str) -> list[tuple[str, argparse.Action]]:
    return [(p.prog, a) for p in iter_parsers(build_parser()) for a in p._actions if option in a.option_strings]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cardlab {cardlab.__version__}"


@pytest.mark.parametrize("argv", [[], ["card"], ["perso"], ["test"], ["perso", "script"]])
def test_a_group_without_its_command_prints_its_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == exitcodes.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {' '.join(['cardlab', *argv])} ") and "positional arguments" in err
    assert "required" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    image = str(tmp_path / "c.json")
    argv = ["-v", "card", "new", image] if where == "before" else ["card", "new", image, "-v"]
    assert main(argv) == 0


def test_every_positional_argument_has_help() -> None:
    missing = [f"{p.prog} {a.dest}" for p in iter_parsers(build_parser()) for a in p._actions
               if not a.option_strings and not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []


def test_no_type_without_a_name() -> None:
    """argparse names a ``type=`` that raises ValueError in its message: never ``<lambda>``."""
    bad = [f"{p.prog} {a.dest}" for p in iter_parsers(build_parser()) for a in p._actions
           if a.type is not None and getattr(a.type, "__name__", "") in ("<lambda>", "int", "float")]
    assert bad == []


def test_diversification_is_one_type_everywhere() -> None:
    found = _options("--diversification")
    assert len(found) >= 2
    assert {getattr(a.type, "__name__", "") for _, a in found} == {"diversification"}


def test_keys_is_a_key_store_and_kmc_a_key_name_everywhere() -> None:
    for option in ("--keys", "--kmc"):
        for prog, action in _options(option):
            assert action.type is None, (prog, option)  # a path / pkcs11 spec / key name, never hex
            assert "hex" not in (action.help or "").lower(), (prog, option)
    assert all(a.type is not None for _, a in _options("--key-version"))


@pytest.mark.parametrize("spelling", ["kdf3", "KDF3", "Kdf3"])
def test_card_new_from_a_key_store_kmc(tmp_path: Path, spelling: str, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    kdd = "00112233445566778899"
    assert main(["card", "new", str(a), "--keys", str(KEYSTORE), "--kmc", "KMC", "--diversification", spelling,
                 "--kdd", kdd]) == 0
    from cardlab.personalizer.keys import open_keystore

    with open_keystore(str(KEYSTORE)) as ks:
        k = ks.diversify_card_keys("KMC", "KDF3", bytes.fromhex(kdd))
    assert main(["card", "new", str(b), "--isd-keys", f"{k.enc.hex()}:{k.mac.hex()}:{k.dek.hex()}", "--kdd", kdd]) == 0
    assert [x.value for x in Card.load(a).state.keys] == [x.value for x in Card.load(b).state.keys]
    assert capsys.readouterr().err == ""


def test_perso_stock_takes_any_case(tmp_path: Path) -> None:
    assert main(["perso", "stock", str(tmp_path / "s"), "--count", "1", "--keys", str(KEYSTORE),
                 "--diversification", "kdf3", "--lifecycle", "op_ready"]) == 0


@pytest.mark.parametrize(
    ("old", "new", "instead"),
    [
        (["--kvn", "31"], ["--key-version", "31"], "--key-version"),
        (["--keys", ":".join(["11" * 16] * 3)], ["--isd-keys", ":".join(["11" * 16] * 3)], "--isd-keys"),
        (["--kmc", "40" * 16], ["--kmc-hex", "40" * 16], "--kmc-hex"),
    ],
)
def test_old_spellings_work_with_one_deprecation_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      old: list[str], new: list[str], instead: str) -> None:
    kdd = ["--kdd", "00" * 10]
    assert main(["card", "new", str(tmp_path / "old.json"), *old, *kdd]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(rf"cardlab card new: {old[0]} .*deprecated, use {instead}", err)
    assert main(["card", "new", str(tmp_path / "new.json"), *new, *kdd]) == 0
    assert capsys.readouterr().err == ""
    keys = [(k.kvn, k.value) for k in Card.load(tmp_path / "old.json").state.keys]
    assert keys == [(k.kvn, k.value) for k in Card.load(tmp_path / "new.json").state.keys]


def test_card_send_masks_the_pan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README: no command prints a full PAN — not in the raw hex, not in the decoded TLV."""
    from cardlab.display import masked_hex, tlv_lines

    pan = bytes.fromhex("5413330089010434")
    body = b"\x5a\x08" + pan + bytes.fromhex("5F2403271231") + bytes.fromhex("9F0702FF00")
    data = b"\x70" + bytes([len(body)]) + body
    shown = masked_hex(data) + "\n" + "\n".join(tlv_lines(data))
    assert "5413330089010434" not in shown and "541333******0434" in shown
    track2 = bytes.fromhex("5413330089010434D27122010000000000000F")
    t2 = masked_hex(b"\x57" + bytes([len(track2)]) + track2)
    assert "5413330089010434" not in t2 and "D27122010000" not in t2


def test_exit_codes_are_listed_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Exit status"):]
    for code in exitcodes.MEANINGS:
        assert re.search(rf"^\|? *`?{code}`? *\|", section, re.M), code

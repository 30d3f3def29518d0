"""Perso scripts: loading errors, rendering (masked), checking, and running
the EMV CPS script against an emulated card."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import pad80
from cardlab.emulator import Card
from cardlab.personalizer.batch import AppPersoData, CardPersoData, Sealed
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.script import (
    ScriptError,
    StepEvent,
    StepFailed,
    check,
    execute,
    load_script,
    render,
)
from cardlab.personalizer.script.storedata import plan_store_blocks
from cardlab.personalizer.script.values import Data

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"
EMV_SCRIPT = VECTORS / "scripts" / "emv-cps.yaml"
sys.path.insert(0, str(ROOT / "tests" / "emv"))

import cardmaker  # type: ignore[import-not-found]  # noqa: E402

KDD = bytes.fromhex("0102030405060708090A")
PROFILE: dict[str, Any] = {
    "card": {
        "isd_aid": "A000000151000000",
        "kmc": "KMC",
        "diversification": "kdf3",
        "key_version": 0x30,
        "target_life_cycle": "SECURED",
    }
}


@pytest.fixture(scope="module")
def ks() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(VECTORS / "test-keystore.json")


def seal(ks: SoftwareKeyStore, clear: bytes) -> Sealed:
    return Sealed("KEK", ks.kcv("KEK"), ks.encrypt("KEK", pad80(clear)))


@pytest.fixture(scope="module")
def emv(ks: SoftwareKeyStore) -> tuple[CardPersoData, cardmaker.CardData]:
    from cardlab.emulator.applets.emv.applet import EmvApplet

    made = cardmaker.build(cardmaker.Profile())
    dgis = tuple((d, seal(ks, v) if 0x8000 <= d <= 0x8FFF else v) for d, v in made.dgis)
    app = AppPersoData(made.profile.aid, EmvApplet.LOAD_FILE_AID, EmvApplet.MODULE_AID, b"\x00",
                       bytes.fromhex("C900"), dgis)  # fmt: skip
    pan = made.profile.pan
    card = CardPersoData("000001", 1, pan[:6] + "*" * (len(pan) - 10) + pan[-4:], (app,), {"name": "CARDLAB/TEST"})
    return card, made


def stock(ks: SoftwareKeyStore) -> Card:
    k = ks.diversify_card_keys("KMC", "KDF3", KDD)
    card = Card.create(keys=(k.enc, k.mac, k.dek), kdd=KDD)
    card.power_on()
    return card


def write(tmp_path: Path, doc: Any, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False) if not isinstance(doc, str) else doc)
    return path


# -- EMV end to end -------------------------------------------------------------------------


def test_emv_cps_personalizes_and_transacts(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any]) -> None:
    data, made = emv
    card = stock(ks)
    events: list[StepEvent] = []
    result = execute(load_script(EMV_SCRIPT), data, card.transmit, ks, profile=PROFILE, on_step=events.append)
    assert result.kdd == KDD
    assert result.apdus == sum(e.apdus for e in events) and result.apdus > 8
    assert [e.step_name for e in events][:3] == ["select ISD", "open secure channel", "install PSE"]
    assert card.state.lifecycle == 0x0F  # SECURED
    aid = made.profile.aid
    resp = card.transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00")
    assert resp[-2:] == b"\x90\x00"
    gpo = card.transmit(bytes.fromhex("80A8000004830208260 0".replace(" ", "")))
    assert gpo[-2:] == b"\x90\x00"
    assert tlv.find(gpo[:-2], 0x82) is not None or gpo[0] == 0x80
    # the PSE lists the application
    pse = card.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100"))
    assert pse[-2:] == b"\x90\x00"
    # no event description holds a secret or the full PAN
    text = " ".join(e.description for e in events)
    assert made.profile.pan not in text


def test_store_data_blocks_and_flags(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any]) -> None:
    data, _ = emv
    lines = [ln for ln in render(load_script(EMV_SCRIPT), data, profile=PROFILE) if ln.startswith("80E2")]
    assert lines
    p1s = [int(ln[4:6], 16) for ln in lines]
    p2s = [int(ln[6:8], 16) for ln in lines]
    assert p2s == list(range(len(lines)))  # block counter
    assert all(p & 0x18 == 0x08 for p in p1s)  # DGI format
    assert [p & 0x80 for p in p1s] == [0] * (len(p1s) - 1) + [0x80]  # only the last block
    for ln, p1 in zip(lines, p1s):
        assert bool(p1 & 0x60 == 0x60) == ("<sealed:" in ln)
        if "<sealed:" not in ln:
            assert int(ln.split()[1], 16) <= 239
    assert any("8000" in ln and "<sealed:" in ln for ln in lines)


def test_plan_store_blocks_limits() -> None:
    items = [(0x0100 + i, Data.of(bytes(100)), False) for i in range(1, 6)]
    items += [(0x8201 + i, Data.of(bytes(120)), True) for i in range(5)]
    blocks = plan_store_blocks(items)
    for b in blocks:
        size = b.size()
        assert (((size // 16) + 1) * 16 if b.encrypted else size) <= 239
    assert {d for b in blocks if b.encrypted for d, _ in b.items} == {0x8201 + i for i in range(5)}
    assert all(not any(0x8000 <= d <= 0x8FFF for d, _ in b.items) for b in blocks if not b.encrypted)


def test_render_masks_secrets_and_pan(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any]) -> None:
    data, made = emv
    out = "\n".join(render(load_script(EMV_SCRIPT), data, profile=PROFILE))
    assert made.profile.pan not in out
    assert "476173" in out and "******" in out  # the PAN in records is masked, not removed
    mk = dict(made.dgis)[0x8000]
    assert mk.hex().upper() not in out
    assert cardmaker.pin_block(made.profile.pin).hex().upper() not in out
    assert "<sealed:" in out and "INITIALIZE UPDATE" in out and "wrapped" in out
    # unmasked: the PAN shows, secrets still do not (no key store in render)
    raw = "\n".join(render(load_script(EMV_SCRIPT), data, masked=False, profile=PROFILE))
    assert mk.hex().upper() not in raw


# -- failures --------------------------------------------------------------------------------


def test_unexpected_sw_raises_step_failed(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any],
                                          tmp_path: Path) -> None:  # fmt: skip
    doc = {"steps": [
        {"name": "select ISD", "select": {"aid": "A000000151000000"}},
        {"name": "select missing", "select": {"aid": "A0000009999999"}},
    ]}  # fmt: skip
    card = stock(ks)
    with pytest.raises(StepFailed) as info:
        execute(load_script(write(tmp_path, doc)), emv[0], card.transmit, ks)
    err = info.value
    assert (err.step_index, err.step_name, err.sw, err.expected) == (2, "select missing", 0x6A82, ("9000",))
    assert "select missing" in str(err) and "6A82" in str(err)


def test_wrong_kmc_fails_in_open(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any], tmp_path: Path) -> None:
    doc = {"steps": [{"select": {"aid": "A000000151000000"}},
                     {"name": "scp", "open_scp03": {"level": 0x33, "keys": {"enc": "00" * 16, "mac": "00" * 16,
                                                                               "dek": "00" * 16}}}]}  # fmt: skip
    with pytest.raises(StepFailed) as info:
        execute(load_script(write(tmp_path, doc)), emv[0], stock(ks).transmit, ks)
    assert info.value.step_name == "scp" and "cryptogram" in str(info.value)


def test_open_scp03_honours_expect_when_the_channel_opens(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any],
                                                          tmp_path: Path) -> None:  # fmt: skip
    data, _ = emv
    sent: list[bytes] = []
    card = stock(ks)

    def spy(apdu: bytes) -> bytes:
        sent.append(apdu)
        return card.transmit(apdu)

    doc: dict[str, Any] = {"steps": [
        {"select": {"aid": "A000000151000000"}},
        {"name": "must be refused", "expect": ["6A80"], "open_scp03": {"level": 1, "kmc": "KMC", "scheme": "kdf3"}},
        {"name": "after", "apdu": {"hex": "80CA009F7F00"}},
    ]}  # fmt: skip
    with pytest.raises(StepFailed) as info:
        execute(load_script(write(tmp_path, doc)), data, spy, ks)
    err = info.value
    assert (err.step_index, err.step_name, err.sw, err.expected) == (2, "must be refused", 0x9000, ("6A80",))
    assert "must be refused" in str(err) and "9000" in str(err) and "opened" in err.reason
    assert len(sent) == 3  # SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE: the next step never ran

    # an expectation that includes 9000 still lets the channel open and the script go on
    steps: list[dict[str, Any]] = doc["steps"]
    steps[1]["expect"] = ["6A80", "9000"]
    del steps[2]
    events: list[StepEvent] = []
    execute(load_script(write(tmp_path, doc)), data, stock(ks).transmit, ks, on_step=events.append)
    assert [e.sw for e in events][-1] == 0x9000


def test_secret_never_sent_without_c_dec(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any],
                                         tmp_path: Path) -> None:  # fmt: skip
    data, _ = emv
    sent: list[bytes] = []
    card = stock(ks)

    def spy(apdu: bytes) -> bytes:
        sent.append(apdu)
        return card.transmit(apdu)

    doc = {"steps": [
        {"select": {"aid": "A000000151000000"}},
        {"open_scp03": {"level": 1, "kmc": "KMC", "scheme": "kdf3"}},
        {"name": "leak", "foreach": "app", "apdu": {"hex": "00D60000 10 ${app.dgi.8000}"}},
    ]}  # fmt: skip
    with pytest.raises(StepFailed) as info:
        execute(load_script(write(tmp_path, doc)), data, spy, ks)
    assert info.value.step_name == "leak" and "clear" in info.value.reason
    assert len(sent) == 3  # SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE: nothing more


def test_dek_encrypt_function(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any], tmp_path: Path) -> None:
    data, made = emv
    doc = {"steps": [
        {"select": {"aid": "A000000151000000"}},
        {"open_scp03": {"level": 1, "kmc": "KMC", "scheme": "kdf3"}},
        {"name": "ISD data", "apdu": "80E2F000 20 ${dek_encrypt(concat('CF0A', '0102030405060708090A'))}"},
    ]}  # fmt: skip
    # a DEK-encrypted BER-TLV STORE DATA to the ISD (P1 F0) sets the KDD: the card decrypts what
    # dek_encrypt() produced
    seen: list[str] = []
    card = stock(ks)
    execute(load_script(write(tmp_path, doc)), data, card.transmit, ks, on_step=lambda e: seen.append(e.description))
    assert card.state.kdd == bytes.fromhex("0102030405060708090A")
    out = render(load_script(write(tmp_path, doc)), data)
    assert any("<dek_encrypt:data>" in ln for ln in out)
    # store_data with encrypt: true does the same
    doc["steps"][2] = {"store_data": {"data": "CF0A0A0B0C0D0E0F10111213", "format": "ber", "encrypt": True}}
    card = stock(ks)
    execute(load_script(write(tmp_path, doc)), data, card.transmit, ks)
    assert card.state.kdd == bytes.fromhex("0A0B0C0D0E0F10111213")


# -- loading errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "where", "what"),
    [
        ({"steps": [{"name": "a", "select": {"aid": "A000000151000000"}}, {"name": "b", "frobnicate": {}}]},
         "step 2 (b)", "unknown operation"),
        ({"steps": [{"name": "inst", "install": {"for": "everything", "aid": "A000000151000000"}}]},
         "step 1 (inst).install.for", "not one of"),
        ({"steps": [{"name": "x", "install": {"aid": "A000000151"}}]}, "step 1 (x).install.for", "required"),
        ({"steps": [{"name": "lvl", "open_scp03": {"level": 0x07, "keys": {"enc": "00", "mac": "00", "dek": "00"}}}]},
         "step 1 (lvl).open_scp03.level", "security level"),
        ({"steps": [{"name": "r", "update_binary": {"data": "${app.aid}"}}]},
         "step 1 (r).update_binary.data", "foreach: app"),
        ({"steps": [{"name": "r", "update_binary": {"data": "${frob(record.name)}"}}]},
         "step 1 (r).update_binary.data", "unknown function"),
        ({"steps": [{"name": "r", "update_binary": {"data": "${nowhere.name}"}}]},
         "step 1 (r).update_binary.data", "unknown reference"),
        ({"steps": [{"name": "e", "apdu": "00A40000", "expect": ["90"]}]}, "step 1 (e).expect", "status word"),
        ({"steps": [{"name": "n", "update_binary": {"data": 1234}}]}, "step 1 (n).update_binary.data", "quoted"),
        ({"steps": [{"name": "f", "create_file": {"type": "linear_fixed", "fid": "4201"}}]},
         "step 1 (f).create_file.record_length", "required"),
        ({"steps": [{"name": "u", "update_binary": {"data": "00", "colour": "red"}}]},
         "step 1 (u).update_binary.colour", "unknown field"),
        ({"steps": []}, "steps", "non-empty"),
    ],
)
def test_load_errors_name_step_and_field(tmp_path: Path, doc: Any, where: str, what: str) -> None:
    with pytest.raises(ScriptError) as info:
        load_script(write(tmp_path, doc))
    assert where in str(info.value) and what in str(info.value), str(info.value)


def test_nested_step_numbering(tmp_path: Path) -> None:
    doc = {"steps": [{"select": {"aid": "A000000151000000"}},
                     {"foreach": "app", "steps": [{"name": "in", "install": {"for": "personalization", "aid": "A0"}},
                                                  {"name": "bad", "store_data": {"dgis": "${app.dgis}", "x": 1}}]}]}
    with pytest.raises(ScriptError) as info:
        load_script(write(tmp_path, doc))
    assert "step 4 (bad).store_data.x" in str(info.value)


# -- check ------------------------------------------------------------------------------------


def test_shipped_scripts_check_clean() -> None:
    visa = yaml.safe_load((VECTORS / "profiles" / "visa-cvn18.yaml").read_text())
    assert check(EMV_SCRIPT, visa) == []
    badge = yaml.safe_load((VECTORS / "profiles" / "badge.yaml").read_text())
    assert check(VECTORS / "scripts" / "badge.yaml", badge) == []


def test_check_finds_planted_problems(tmp_path: Path) -> None:
    visa = yaml.safe_load((VECTORS / "profiles" / "visa-cvn18.yaml").read_text())
    doc = yaml.safe_load(EMV_SCRIPT.read_text())
    steps = doc["steps"]
    steps[1]["open_scp03"]["kmc"] = "${profile.card.kmc_name}"  # bad reference
    steps[5]["steps"][1]["store_data"]["last"] = False  # no last block
    steps.insert(2, {"name": "early", "apdu": "${app.dgi.8101}", "foreach": "app"})  # DGI not produced
    steps.insert(0, {"name": "too soon", "set_status": {"card": "SECURED"}})  # before the secure channel
    problems = check(write(tmp_path, doc), visa)
    text = "\n".join(problems)
    assert "profile has no profile.card.kmc_name" in text
    assert "does not produce DGI 8101" in text
    assert "no STORE DATA with the last block" in text
    assert "step 1 (too soon): set_status needs a secure channel" in text
    # unknown operations come back as problems, not exceptions
    steps.append({"name": "zz", "teleport": {}})
    assert any("unknown operation" in p for p in check(write(tmp_path, doc), visa))


def test_cli_check_and_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main

    assert main(["perso", "script", "check", str(EMV_SCRIPT), "--profile",
                 str(VECTORS / "profiles" / "visa-cvn18.yaml")]) == 0  # fmt: skip
    assert "OK" in capsys.readouterr().out
    assert main(["perso", "script", "render", str(VECTORS / "scripts" / "badge.yaml"), "--profile",
                 str(VECTORS / "profiles" / "badge.yaml"), "--records", str(VECTORS / "records" / "badge.csv"),
                 "--record", "2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Grace Hopper".encode().hex().upper() in out.replace(" ", "").replace("\n", "") or "00E00000" in out


def test_cli_render_an_emv_record(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``script render`` for an EMV profile and a records file: the record is prepared (with --keys) in
    a scratch batch, then rendered with its secrets and PAN masked; a rejected record is named."""
    from cardlab.cli import main
    from cardlab.demo import demo_keystore

    import tempfile

    # a temporary directory of this test's own: other runs' scratch batches in /tmp do not count
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    keys = demo_keystore(tmp_path / "keys.json")
    base = ["perso", "script", "render", str(EMV_SCRIPT), "--profile", str(VECTORS / "profiles" / "visa-cvn18.yaml"),
            "--records", str(VECTORS / "records" / "sample.csv")]
    assert main([*base, "--record", "1", "--keys", str(keys)]) == 0
    out = capsys.readouterr().out
    assert "STORE DATA" in out and "80E6" in out.replace(" ", "")  # INSTALL [for personalization]
    assert "4761739001010101" not in out.replace(" ", "")
    assert main([*base, "--record", "1"]) == 2  # one line on stderr (cardlab.errors)
    assert re.search("^cardlab perso script render: .*needs --keys", capsys.readouterr().err)
    assert main([*base, "--record", "7", "--keys", str(keys)]) == 2
    assert re.search("record 7 .* is rejected: pan", capsys.readouterr().err)
    # a key store that is not there: one line
    assert main([*base, "--record", "1", "--keys", str(tmp_path / "absent.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot prepare" in err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"pan,psn,expiry,name,pin\n\xff\xfe\n")
    assert main([*base[:-1], str(bad), "--record", "1", "--keys", str(keys)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot prepare" in err
    assert list(own_tmp.glob("cardlab-render-*")) == []  # scratch batches removed


@pytest.mark.parametrize("size", [16, 24, 32])
def test_put_key_from_a_kmc_of_every_aes_size(ks: SoftwareKeyStore, emv: tuple[CardPersoData, Any],
                                              tmp_path: Path, size: int) -> None:  # fmt: skip
    """put_key replaces the card's key set by keys diversified from another KMC (AES-128/192/256;
    a 256-bit KMC once failed with "negative count" because the key size was fixed at 16)."""
    import os

    from cardlab.cardspec.scp03 import HostSession, StaticKeys

    data, _ = emv
    store = SoftwareKeyStore.load(VECTORS / "test-keystore.json")
    store.add_symmetric("KMC-NEW", "AES", "KMC", os.urandom(size))
    doc = {"steps": [
        {"select": {"aid": "A000000151000000"}},
        {"open_scp03": {"level": 0x33, "kmc": "KMC", "scheme": "kdf3"}},
        {"name": "new keys", "put_key": {"new_version": 0x31, "replace": 0x30, "kmc": "KMC-NEW", "scheme": "kdf3"}},
    ]}  # fmt: skip
    card = stock(ks)
    execute(load_script(write(tmp_path, doc)), data, card.transmit, store)
    new = store.diversify_card_keys("KMC-NEW", "KDF3", KDD)
    assert len(new.enc) == size
    card.transmit(bytes.fromhex("00A4040008A000000151000000"))
    hs = HostSession(card.transmit, StaticKeys(new.enc, new.mac, new.dek, 0x31))
    hs.open(0x33)  # the card now answers to the new key set, version 31
    assert hs.send(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"
    old = ks.diversify_card_keys("KMC", "KDF3", KDD)
    with pytest.raises(Exception):  # the replaced version 30 is gone
        HostSession(card.transmit, StaticKeys(old.enc, old.mac, old.dek, 0x30)).open(0x33)

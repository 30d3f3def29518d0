"""The application cryptogram opened up (issue 17): on the demo's cards (Visa CVN 18,
Mastercard CVN 16) and a test-kit card of Visa CVN 10, every step's result checked
against the card's 9F26 and pyemv's own generate_ac; refused for a key store not
marked test; no PIN and no full PAN in the output; 9F40 decoded."""

from __future__ import annotations

import contextlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyemv import cvn as pyemv_cvn
from pyemv import kd

import kernelkit
from cardmaker import IMK_AC
from cardlab.cli import main
from cardlab.emulator import Card
from cardlab.personalizer.keys.software import SoftwareKeyStore
from cardlab.tester import cryptogram
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.decode import bits
from cardlab.tester.issuer_host import AuthorizationRequest, IssuerHost, dol_values
from cardlab.tester.kernel import run_transaction
from cardlab.tester.online import STEP_OPENED
from cardlab.tester.sources import load_keystore
from cardlab.tester.state import TransactionState
from cardlab.tester.terminal import load_terminal
from cardlab.tester.transaction import KeyStoreHost, keystore_triples

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
PYEMV = {"Visa CVN 10": pyemv_cvn.VisaCVN10, "Visa CVN 18": pyemv_cvn.VisaCVN18,
         "Mastercard CVN 16": pyemv_cvn.MasterCardCVN16}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", "--cards", "4", "--workers", "1", "--out", str(out)]) == 0
    return out


def _card(demo: Path, profile: str) -> Path:
    return sorted((demo / profile / "stock").glob("card-*.json"))[0]


def _pyemv_ac(version: str, imk: bytes, state: TransactionState) -> bytes:
    """pyemv's own generate_ac for the card's first cryptogram, under ``imk``."""
    req = AuthorizationRequest.from_state(state)
    v = dol_values(state.card_data[0x8C], state.cdol1_data)
    obj = PYEMV[version](imk, imk, imk, req.pan, req.psn)
    tail = req.iad[3:7] if version == "Visa CVN 10" else req.iad[2:8] if version.startswith("Master") else req.iad
    return bytes(obj.generate_ac(v[0x9F02], v[0x9F03], v[0x9F1A], v[0x95], v[0x5F2A], v[0x9A], v[0x9C],
                                 v[0x9F37], req.aip, req.atc, tail))


def _opened(state: TransactionState) -> list[str]:
    return [ev.text for ev in state.events if ev.step == STEP_OPENED]


def _check_opened(state: TransactionState, version: str, imks: list[bytes]) -> str:
    """The opened-up text of ``state``: its AC is the card's 9F26 and pyemv's, its data the CDOL1's."""
    card_ac = state.ac1[0x9F26]
    texts = _opened(state)
    text = "\n".join(texts)
    assert len(texts) == 6 and texts[0].startswith("1. ICC master key") and version in texts[0], text
    computed = re.search(r"AC = DES\(K_L\)\[DES⁻¹\(K_R\)\[H\d+\]\] = ([0-9A-F]{16})", text)
    assert computed is not None, text
    # the final MAC is the card's 9F26 and pyemv's generate_ac under one of the key store's IMK-ACs
    assert bytes.fromhex(computed.group(1)) == card_ac
    assert card_ac in {_pyemv_ac(version, imk, state) for imk in imks}
    ac = card_ac.hex().upper()
    assert texts[-1].startswith(f"6. Computed AC {ac} equal to the card's 9F26 {ac} ("), texts[-1]
    # the CDOL1 values, in the version's order, with their lengths
    v = dol_values(state.card_data[0x8C], state.cdol1_data)
    rows = [line.split() for line in texts[2].splitlines()[2:]]
    assert [r[0] for r in rows[:8]] == ["9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37"]
    for r in rows[:8]:
        assert bytes.fromhex(r[2]) == v[int(r[0], 16)] and int(r[1]) == len(v[int(r[0], 16)])
    # the PAN is masked in the key derivation, the PSN shown
    pan = state.card_data[0x5A].hex().upper().rstrip("F")
    assert pan not in text and pan[6:-4] not in text and pan[:6] + "*" * (len(pan) - 10) + pan[-4:] in text
    return text


@pytest.mark.parametrize("profile, version", [("visa-cvn18", "Visa CVN 18"),
                                              ("mastercard-cvn16", "Mastercard CVN 16")])
def test_opened_up_on_demo_cards(demo: Path, profile: str, version: str) -> None:
    keys = demo / "keys.json"
    assert cryptogram.keystore_is_test(keys)
    ks = load_keystore(keys)
    host = KeyStoreHost(keystore_triples(ks), test_keys=True)
    card = Card.load(_card(demo, profile))
    state = run_transaction(RecordingChannel(card.transmit), load_terminal(str(VECTORS / "terminals" / f"{profile}.yaml")),
                            amount=1000, online_host=host, force_online=True, seed=5)
    assert state.outcome == "approved online", state.outcome
    imks = [k for usage, k in ks.symmetric.values() if usage == "IMK-AC"]
    text = _check_opened(state, version, imks)
    session = "EMV common session key derivation" if version == "Visa CVN 18" else "Mastercard session key"
    assert session in text and "method 2" in text and "(the same)" in text and "DIFFERENT" not in text
    assert "TEST key" in text and "IMK-AC = " in text


def test_opened_up_visa_cvn10_no_session_key() -> None:
    card, _cd = kernelkit.card_for(kernelkit.Profile(cvn=0x0A))
    host = IssuerHost(IMK_AC, explain=True, test_keys=True)
    state, _ch = kernelkit.transact(card, online_host=host, pin="1234")
    text = _check_opened(state, "Visa CVN 10", [IMK_AC])
    assert "uses none; the AC is computed under MK-AC itself" in text
    assert "method 1: zeros" in text and "CVR" in text


def test_opened_up_unit_matches_pyemv_for_option_b() -> None:
    """A 19-digit PAN: option B (Book 2 A1.4.2) gives pyemv's ICC master key, and Y is not shown."""
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    pan, psn = "5413330089020011234", "01"
    terminal = {t: bytes(n) for t, n in ((0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2),
                                         (0x9A, 3), (0x9C, 1), (0x9F37, 4))}
    iad = bytes.fromhex("06011203A00000")
    expected = bytes(pyemv_cvn.VisaCVN18(imk, imk, imk, pan, psn).generate_ac(
        *terminal.values(), b"\x1D\x00", b"\x00\x07", iad))
    o = cryptogram.open_cryptogram(scheme="Visa", cvn=0x12, name="Visa CVN 18", imk=imk, pan=pan, psn=psn,
                                   option="auto", terminal=terminal, aip=b"\x1D\x00", atc=b"\x00\x07", iad=iad,
                                   suffix=iad, card_ac=expected, card_ac_source="test", pyemv_ac=expected)
    assert o.option == "B" and o.icc_mk == bytes(kd.derive_icc_mk_b(imk, pan, psn)) and o.final == expected
    text = "\n".join(t for _k, t in cryptogram.lines(o))
    assert pan not in text and "equal to the card's 9F26" in text


def test_refused_for_a_key_store_not_marked_test(demo: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = SoftwareKeyStore.load(demo / "keys.json")
    store.test_only = False
    prod = tmp_path / "prod-keys.json"
    store.save(prod, "correct horse", scrypt_n=2**10)
    monkeypatch.setenv("CARDLAB_KEYSTORE_PASSPHRASE", "correct horse")
    assert not cryptogram.keystore_is_test(prod)
    html = tmp_path / "t.html"
    main(["test", "transaction", "--card", str(_card(demo, "visa-cvn18")), "--keys", str(prod), "--force-online",
          "--terminal", str(VECTORS / "terminals" / "visa-cvn18.yaml"), "--trace", "--trace-html", str(html)])
    out = capsys.readouterr().out
    section = out.split("opened up (TEST keys)")[1].split("\n\n")[0]
    assert len(section.strip().splitlines()) == 2, section  # the title's rest and one line
    assert "cryptogram not opened up: the key store is not marked test" in section
    assert "issuer host: ARQC verified" in out  # the host still works; it just shows nothing
    keys = json.loads((demo / "keys.json").read_text())["keys"]
    for entry in keys.values():
        if "value" in entry and len(entry["value"]) == 32:
            assert entry["value"].upper() not in out and entry["value"].upper() not in html.read_text()


@pytest.mark.parametrize("marking, test", [(True, True), ("true", False), (1, False), (None, False)])
def test_what_marks_a_key_store_test(tmp_path: Path, marking: object, test: bool) -> None:
    doc = json.loads((VECTORS / "test-keystore.json").read_text())
    if marking is None:
        del doc["test_only"]
    else:
        doc["test_only"] = marking
    path = tmp_path / "k.json"
    path.write_text(json.dumps(doc))
    assert cryptogram.keystore_is_test(path) is test
    assert not cryptogram.keystore_is_test(tmp_path / "missing.json")


def test_no_pin_and_no_pan_in_text_or_html(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "t.html"
    pin = "4826"
    main(["test", "transaction", "--card", str(_card(demo, "visa-cvn18")), "--keys", str(demo / "keys.json"),
          "--terminal", str(VECTORS / "terminals" / "visa-cvn18.yaml"), "--pin", pin, "--amount", "9000",
          "--trace", "--trace-html", str(html)])
    out = capsys.readouterr().out
    page = html.read_text()
    assert "opened up (TEST keys)" in out and "equal to the card's 9F26" in out
    for text in (out, page):
        assert not kernelkit.shows_pin(text, pin)
    pans = set(re.findall(r"PAN ([0-9*]{16})", out))
    assert pans and all("*" in p for p in pans)


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.hints = 0
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._h2 = tag == "h2"
        if ("class", "hint") in attrs and any(k == "title" and v for k, v in attrs):
            self.hints += 1

    def handle_data(self, data: str) -> None:
        if self._h2:
            self.titles.append(data)
            self._h2 = False


def test_html_has_the_opened_cryptogram_and_hover_explanations(demo: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "t.html"
    main(["test", "transaction", "--card", str(_card(demo, "mastercard-cvn16")), "--keys", str(demo / "keys.json"),
          "--terminal", str(VECTORS / "terminals" / "mastercard-cvn16.yaml"), "--trace-html", str(html)])
    capsys.readouterr()
    page = html.read_text()
    parser = _Sections()
    parser.feed(page)
    assert any("Application cryptogram, opened up (TEST keys)" in t for t in parser.titles)
    assert len(parser.titles) == len(set(parser.titles))
    assert parser.hints > 5
    assert "equal to the card&#x27;s 9F26" in page or "equal to the card's 9F26" in page
    # a TVR value carries its bits as a title
    assert re.search(r"title='[^']*byte 1 b8 offline data authentication was performed[^']*'>F8", page)


# -- 9F40 additional terminal capabilities (Book 4 Annex A3) ----------------------------------------


def test_additional_terminal_capabilities_known_answer() -> None:
    value = bytes.fromhex("F000F0A001")
    assert bits.set_names(bits.ADDITIONAL_TERMINAL_CAPABILITIES, value) == {
        "cash", "goods", "services", "cashback", "numeric keys", "alphabetic and special characters keys",
        "command keys", "function keys", "print, attendant", "display, attendant", "code table 1"}
    assert bits.rfu_set(bits.ADDITIONAL_TERMINAL_CAPABILITIES, bytes.fromhex("007F000C00")) == [
        (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (2, 7), (4, 3), (4, 4)]


def test_decode_command_knows_9f40(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "decode", "9F40", "6000F0A001"]) == 0
    out = capsys.readouterr().out
    assert "b7       1  goods" in out and "b6       1  services" in out and "b1       1  code table 1" in out


@given(st.sets(st.sampled_from([f.name for f in bits.ADDITIONAL_TERMINAL_CAPABILITIES.fields])))
def test_additional_terminal_capabilities_round_trip(names: set[str]) -> None:
    value = bits.encode(bits.ADDITIONAL_TERMINAL_CAPABILITIES, names)
    assert bits.set_names(bits.ADDITIONAL_TERMINAL_CAPABILITIES, value) == names
    assert bits.rfu_set(bits.ADDITIONAL_TERMINAL_CAPABILITIES, value) == []

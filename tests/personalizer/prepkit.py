"""TEST-ONLY helpers for the data preparation tests and benchmark.

* :func:`make_keystore` — the test key store plus the key names the sample
  profiles use (aliases of its IMKs and issuer key: the sample profiles name
  per-product keys that the shipped test key store does not hold).
* :func:`sda_profile` — a single-application SDA variant of the Visa sample.
* :func:`personalize` — stores one prepared card into an emulated card by hand
  (GP INSTALL, INSTALL [for personalization], STORE DATA over SCP03 level 33;
  sealed DGIs opened with the key store and re-encrypted under the card DEK).
  The perso engine does this for real; this is only the test's own path.
* :func:`run_transaction` — SELECT/GPO/READ RECORD, ODA, offline PIN and a
  first GENERATE AC checked with pyemv under the IMK (tests/emv/terminal.py).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys, pad80, unpad80
from cardlab.personalizer.batch import AppPersoData, CardPersoData, Sealed
from cardlab.personalizer.keys import KeyStore, SoftwareKeyStore
from cardlab.personalizer.profile import Application, load_profile

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"
VISA = VECTORS / "profiles" / "visa-cvn18.yaml"
MASTERCARD = VECTORS / "profiles" / "mastercard-cvn16.yaml"
PROFILES = (VISA, MASTERCARD)

sys.path.insert(0, str(ROOT / "tests" / "emv"))

#: the emulated card's default ISD keys (cardlab.emulator.gp.manager.DEFAULT_KEY)
GP_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
GP_KEYS = StaticKeys(GP_KEY, GP_KEY, GP_KEY, 0x30)


def make_keystore(profiles: Iterable[Path] = PROFILES) -> SoftwareKeyStore:
    ks = SoftwareKeyStore.load(VECTORS / "test-keystore.json")
    for path in profiles:
        for app in load_profile(path).applications:
            for usage, name in (("IMK-AC", app.keys.imk_ac), ("IMK-SMI", app.keys.imk_smi),
                                ("IMK-SMC", app.keys.imk_smc)):  # fmt: skip
                if name not in ks:
                    ks.add_symmetric(name, "DES3", usage, ks.clear_value(usage))  # type: ignore[arg-type]
            if app.keys.issuer_rsa and app.keys.issuer_rsa not in ks:
                key = serialization.load_der_private_key(ks.clear_value("ISSUER"), None)
                ks.add_rsa(app.keys.issuer_rsa, "ISSUER", key)  # type: ignore[arg-type]
    return ks


def sda_profile(out: Path) -> Path:
    """The Visa sample's credit application alone, SDA only (no ICC key)."""
    doc: dict[str, Any] = yaml.safe_load(VISA.read_text())
    app = copy.deepcopy(doc["applications"][0])
    app["oda"] = "SDA"
    app.pop("icc_key")
    app["contactless"]["fdda"] = False  # fDDA signs with the ICC key this variant lacks
    app["cvm_list"]["rules"] = [r for r in app["cvm_list"]["rules"] if r["method"] != "offline_enciphered_pin"]
    for f in app["afl"]:
        f["records"] = [r for r in f["records"] if "9F46" not in r["data"]]
    doc["applications"] = [app]
    doc["profile"] = "visa-sda-test"
    path = out / "visa-sda.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def open_sealed(ks: KeyStore, s: Sealed) -> bytes:
    return unpad80(ks.decrypt(s.kek, s.ciphertext))


def clear_dgis(ks: KeyStore, app: AppPersoData) -> list[tuple[int, bytes]]:
    return [(d, open_sealed(ks, v) if isinstance(v, Sealed) else v) for d, v in app.dgis]


def _lv(b: bytes) -> bytes:
    return bytes((len(b),)) + b


def _apdu(header: str, data: bytes) -> bytes:
    return bytes.fromhex(header) + _lv(data) + b"\x00"


def _ok(resp: bytes, what: str) -> None:
    if resp[-2:] != b"\x90\x00":
        raise AssertionError(f"{what}: SW {resp[-2:].hex().upper()}")


BLOCK = 200


def app_commands(app: AppPersoData, hs: HostSession, ks: KeyStore) -> list[tuple[str, bytes]]:
    """(step name, plain APDU) to install and personalize one application by
    hand: INSTALL [for install and make selectable], INSTALL [for perso], then
    STORE DATA blocks (sealed DGIs opened under the transport key and
    re-encrypted under the session DEK at once, in blocks of their own)."""
    install = (_lv(app.load_file) + _lv(app.module) + _lv(app.aid) + _lv(app.privileges)
               + _lv(app.install_params) + b"\x00")  # fmt: skip
    out = [("install", _apdu("80E60C00", install)),
           ("install for perso", _apdu("80E62000", b"\x00\x00" + _lv(app.aid) + b"\x00\x00\x00"))]
    blocks: list[tuple[bool, bytes]] = []
    current = b""
    for dgi, value in app.dgis:
        if isinstance(value, Sealed):
            blocks.append((True, hs.dek_encrypt(pad80(tlv.encode_dgi(dgi, open_sealed(ks, value))))))
            continue
        enc = tlv.encode_dgi(dgi, value)
        if current and len(current) + len(enc) > BLOCK:
            blocks.append((False, current))
            current = b""
        current += enc
    if current:
        blocks.append((False, current))
    for i, (secret, body) in enumerate(blocks):
        p1 = 0x08 | (0x60 if secret else 0) | (0x80 if i == len(blocks) - 1 else 0)
        out.append(("store data", _apdu(f"80E2{p1:02X}{i:02X}", body)))
    return out


def personalize(card: Any, prepared: CardPersoData, ks: KeyStore) -> None:
    hs = HostSession(card.transmit, GP_KEYS)
    hs.open(0x33)
    for app in prepared.apps:
        for name, apdu in app_commands(app, hs, ks):
            _ok(hs.send(apdu), name)


CVN_CODE = {18: 0x12, 16: 0x10, 10: 0x0A}


def run_transaction(card: Any, app: Application, ks: KeyStore, pan: str, psn: str, pin: str) -> dict[int, bytes]:
    """One offline-capable transaction; returns what the terminal read. Raises on any failure."""
    from terminal import CID_ARQC, Issuer, Terminal

    n_ca, e_ca = ks.public_key("CA")
    assert app.keys.ca_index is not None or not app.oda
    cas = {(app.aid[:5], app.keys.ca_index or 0): (n_ca, e_ca)}
    term = Terminal(card.transmit, cas)
    aip, _afl = term.start(app.aid)
    assert aip == app.aip
    if "SDA" in app.oda:
        term.sda()
    if "DDA" in app.oda:
        term.dda()
    if app.offline_pin:
        assert term.verify_pin(pin) == 0x9000
    cda = "CDA" in app.oda
    resp = term.generate_ac(CID_ARQC | (0x10 if cda else 0))
    if cda:
        assert resp.get(0xDF4C) == b"CDA ok"
    issuer = Issuer(CVN_CODE[app.cvn], ks.clear_value(app.keys.imk_ac), ks.clear_value(app.keys.imk_smi),  # type: ignore[attr-defined]
                    ks.clear_value(app.keys.imk_smc), pan, psn)  # type: ignore[attr-defined]
    assert resp[0x9F26] == issuer.expected_ac(term.values, aip, resp), "ARQC differs from pyemv"
    return term.card

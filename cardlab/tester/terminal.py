"""Terminal profiles: what the terminal is and may do, from a YAML file.

A profile gives the terminal's own data objects (EMV Book 4 Annex A;
Book 3 Annex A for the tags): terminal capabilities 9F33, additional
terminal capabilities 9F40, terminal type 9F35, country 9F1A, currency 5F2A
with its exponent 5F36, the floor limit 9F1B, the random-selection parameters
and velocity checking (Book 3 §10.6), the terminal action codes (Book 3
§10.7), the certification-authority public keys (Book 2 §5.1, Book 4 §11.2.2)
and the supported applications with their partial-selection flag and
terminal application version number 9F09 (Book 1 §12.3.1).

Example::

    name: default
    capabilities: E0F8C8          # 9F33
    additional_capabilities: 6000F0A001
    terminal_type: 0x22
    country: 250                  # ISO 3166 numeric
    currency: 978                 # ISO 4217 numeric
    currency_exponent: 2
    floor_limit: 10000            # minor units
    random_selection: {threshold: 2000, target_percent: 20, max_percent: 50}
    velocity_check: true
    tac: {denial: "0010000000", online: DC4004F800, default: DC4000A800}
    ca_keys:
      - {rid: F000000001, index: F1, modulus: B26A…, exponent: "03", expiry: "2030-12-31"}
      - {file: ../test-ca.json}           # or a key file (see _keys_from_file)
    aids:
      - {aid: F0000000011010, partial: true, version: "0096"}
    application_version: "0096"          # default 9F09
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _terminals_dir() -> Path:
    """The shipped terminal profiles: ``terminals/`` of the code-free data package
    ``cardlab.vectors`` (``vectors/`` of a checkout, package data of an installed
    cardlab; the profiles read ``../test-ca.json`` and ``../test-keystore.json`` there)."""
    root = Path(str(importlib.resources.files("cardlab.vectors")))
    if not root.is_dir():  # e.g. imported from a zip: the profiles name files next to them
        raise FileNotFoundError(f"cardlab's terminal profiles are not in a directory ({root})")
    return root / "terminals"


#: the shipped terminal profiles (vectors/terminals/ of a checkout; installed with cardlab)
TERMINALS_DIR = _terminals_dir()


class TerminalProfileError(ValueError):
    """A terminal profile that cannot be used, with the field that is wrong."""


@dataclass(frozen=True)
class CaKey:
    """A certification authority public key (Book 2 §5.1, Book 4 §11.2.2)."""

    rid: bytes
    index: int
    modulus: int
    exponent: int
    expiry: str = ""  # ISO date, "" = no expiry recorded

    @property
    def size(self) -> int:
        return (self.modulus.bit_length() + 7) // 8


@dataclass(frozen=True)
class TerminalAid:
    """A supported application (Book 1 §12.3.1): partial selection allowed
    means a card ADF name that *begins* with this AID matches."""

    aid: bytes
    partial: bool = True
    version: bytes = b""  # 9F09 for this application ("" → the profile default)
    label: str = ""


# 9F33 bits (Book 4 Annex A2): name → (byte, mask)
CAPABILITY_BITS: dict[str, tuple[int, int]] = {
    "manual key entry": (0, 0x80),
    "magnetic stripe": (0, 0x40),
    "IC with contacts": (0, 0x20),
    "plaintext PIN for ICC verification": (1, 0x80),
    "enciphered PIN for online verification": (1, 0x40),
    "signature (paper)": (1, 0x20),
    "enciphered PIN for offline verification": (1, 0x10),
    "no CVM required": (1, 0x08),
    "SDA": (2, 0x80),
    "DDA": (2, 0x40),
    "card capture": (2, 0x20),
    "CDA": (2, 0x08),
}


@dataclass
class TerminalProfile:
    name: str = "default"
    capabilities: bytes = bytes.fromhex("E0F8C8")
    additional_capabilities: bytes = bytes.fromhex("6000F0A001")
    terminal_type: int = 0x22
    country: int = 250
    currency: int = 978
    currency_exponent: int = 2
    floor_limit: int = 10000
    random_threshold: int = 0
    random_target_percent: int = 0
    random_max_percent: int = 0
    velocity_check: bool = True
    tac_denial: bytes = bytes(5)
    tac_online: bytes = bytes(5)
    tac_default: bytes = bytes(5)
    ca_keys: list[CaKey] = field(default_factory=list)
    aids: list[TerminalAid] = field(default_factory=list)
    application_version: bytes = b"\x00\x96"
    selection: str = "pse"  # "pse" (then the AID list), "ppse" (then the AID list), "aids"
    cardholder_confirmation: bool = True  # can the cardholder pick an application (Book 1 §12.4)
    merchant_category: int = 5999
    terminal_id: str = "CARDLAB1"
    merchant_id: str = "CARDLAB-MERCHANT"
    merchant_name: str = "CARDLAB TEST SHOP"
    source: str = ""  # the file it came from
    #: the contactless reader (``contactless:`` section, :mod:`cardlab.tester.contactless.reader`), None without
    contactless: Any = None

    # -- capabilities ------------------------------------------------------------
    def supports(self, name: str) -> bool:
        i, mask = CAPABILITY_BITS[name]
        return bool(self.capabilities[i] & mask)

    @property
    def online_capable(self) -> bool:
        """Terminal type digit 2 (Book 4 Annex A1): 1/4 online only, 2/5
        offline with online capability, 3/6 offline only."""
        return self.terminal_type % 16 not in (3, 6)

    @property
    def online_only(self) -> bool:
        return self.terminal_type % 16 in (1, 4)

    @property
    def offline_capable(self) -> bool:
        return not self.online_only

    @property
    def unattended(self) -> bool:
        return self.terminal_type % 16 in (4, 5, 6)

    @property
    def is_atm(self) -> bool:
        """An ATM: unattended, financial institution (1x) and cash capable
        (9F40 byte 1 b8) (Book 3 §10.4.2)."""
        return self.terminal_type >> 4 == 1 and self.unattended and bool(self.additional_capabilities[0] & 0x80)

    def ca_key(self, rid: bytes, index: int) -> CaKey | None:
        for key in self.ca_keys:
            if key.rid == rid and key.index == index:
                return key
        return None

    def ca_key_map(self) -> dict[tuple[bytes, int], tuple[int, int]]:
        """(RID, index) → (modulus, exponent): what ODA looks keys up in."""
        return {(k.rid, k.index): (k.modulus, k.exponent) for k in self.ca_keys}

    def version_for(self, aid: bytes) -> bytes:
        best: TerminalAid | None = None
        for entry in self.aids:
            if aid[: len(entry.aid)] == entry.aid and (best is None or len(entry.aid) > len(best.aid)):
                best = entry
        return best.version if best is not None and best.version else self.application_version

    def data(self) -> dict[int, bytes]:
        """The terminal-sourced data objects (Book 3 Annex A)."""
        return {
            0x9F33: self.capabilities,
            0x9F40: self.additional_capabilities,
            0x9F35: bytes((self.terminal_type,)),
            0x9F1A: _bcd(self.country, 2),
            0x5F2A: _bcd(self.currency, 2),
            0x5F36: bytes((self.currency_exponent,)),
            0x9F1B: self.floor_limit.to_bytes(4, "big"),
            0x9F09: self.application_version,
            0x9F15: _bcd(self.merchant_category, 2),
            0x9F1C: self.terminal_id.encode()[:8].ljust(8),
            0x9F16: self.merchant_id.encode()[:15].ljust(15),
            0x9F4E: self.merchant_name.encode(),
        }


def _bcd(value: int, length: int) -> bytes:
    return bytes.fromhex(str(value).zfill(2 * length))


# -- loading -------------------------------------------------------------------------


def _hex(doc: dict[str, Any], key: str, length: int | None, default: bytes, where: str) -> bytes:
    if key not in doc or doc[key] is None:
        return default
    raw = doc[key]
    if isinstance(raw, int):
        raw = format(raw, "X").zfill(2 * (length or 1))
    text = str(raw).replace(" ", "").replace(":", "")
    if len(text) % 2 and length is None:
        text = "0" + text
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise TerminalProfileError(f"{where}: {key} must be hexadecimal, got {raw!r}") from None
    if length is not None and len(value) != length:
        raise TerminalProfileError(f"{where}: {key} must be {length} bytes, got {len(value)} ({text})")
    return value


def _int(doc: dict[str, Any], key: str, default: int, where: str, lo: int = 0, hi: int = 1 << 32) -> int:
    if key not in doc or doc[key] is None:
        return default
    raw = doc[key]
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TerminalProfileError(f"{where}: {key} must be a number, got {raw!r}")
    try:
        value = raw if isinstance(raw, int) else int(str(raw), 0)
    except ValueError:
        raise TerminalProfileError(f"{where}: {key} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise TerminalProfileError(f"{where}: {key} = {value} is outside {lo}..{hi}")
    return value


def _index(raw: Any, where: str) -> int:
    if isinstance(raw, int):  # a YAML number (0xFE or 254); write "FE" for hexadecimal
        if not 0 <= raw <= 0xFF:
            raise TerminalProfileError(f"{where}: CA key index {raw} is not one byte")
        return raw
    try:
        return int(str(raw), 16)
    except ValueError:
        raise TerminalProfileError(f"{where}: CA key index must be hexadecimal, got {raw!r}") from None


def _ca_key(doc: dict[str, Any], where: str) -> CaKey:
    for key in ("rid", "index", "modulus", "exponent"):
        if key not in doc:
            raise TerminalProfileError(f"{where}: CA key needs {key!r}")
    rid = _hex(doc, "rid", 5, b"", where)
    modulus = int.from_bytes(_hex(doc, "modulus", None, b"", where), "big")
    exponent = int.from_bytes(_hex(doc, "exponent", None, b"", where), "big")
    if exponent not in (3, 65537):
        raise TerminalProfileError(f"{where}: CA key exponent must be 3 or 65537 (Book 2 §5.1), got {exponent}")
    if modulus.bit_length() < 512:
        raise TerminalProfileError(f"{where}: CA key modulus is too short")
    return CaKey(rid, _index(doc["index"], where), modulus, exponent, str(doc.get("expiry", "") or ""))


def _keys_from_file(path: Path, entry: dict[str, Any], where: str) -> list[CaKey]:
    """A CA key file: a JSON list of keys like the YAML entries; cardlab's
    ``test-ca.json`` (``ca`` with rid/index/modulus/exponent); or a key store
    (``keys`` → ``CA`` public part), then ``rid`` and ``index`` come from the entry."""
    try:
        doc = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise TerminalProfileError(f"{where}: cannot read CA key file {path}: {exc}") from None
    out: list[CaKey] = []
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            out.append(_ca_key(item, f"{path}[{i}]"))
    elif isinstance(doc, dict) and isinstance(doc.get("ca"), dict):
        ca = {k: doc["ca"][k] for k in ("rid", "index", "modulus", "exponent") if k in doc["ca"]}
        ca.update({k: entry[k] for k in ("rid", "index", "expiry") if k in entry})
        out.append(_ca_key(ca, f"{path} ca"))
    elif isinstance(doc, dict) and isinstance(doc.get("keys"), dict):
        name = str(entry.get("key", "CA"))
        key = doc["keys"].get(name)
        if not isinstance(key, dict):
            raise TerminalProfileError(f"{where}: key store {path} has no key {name!r}")
        pub = {"modulus": key.get("modulus"), "exponent": key.get("exponent")}
        pub.update({k: entry[k] for k in ("rid", "index", "expiry") if k in entry})
        out.append(_ca_key(pub, f"{path} {name}"))  # only the public part is read
    else:
        raise TerminalProfileError(f"{where}: {path} is not a CA key file")
    return out


def parse_terminal(doc: dict[str, Any], base: Path = Path("."), where: str = "terminal profile") -> TerminalProfile:
    if not isinstance(doc, dict):
        raise TerminalProfileError(f"{where}: expected a mapping at the top level")
    known = {
        "name", "description", "capabilities", "additional_capabilities", "terminal_type", "country",
        "currency", "currency_exponent", "floor_limit", "random_selection", "velocity_check", "tac",
        "ca_keys", "ca_key_file", "aids", "application_version", "selection", "cardholder_confirmation",
        "merchant_category", "terminal_id", "merchant_id", "merchant_name", "contactless",
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise TerminalProfileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    p = TerminalProfile(name=str(doc.get("name", "terminal")))
    p.capabilities = _hex(doc, "capabilities", 3, p.capabilities, where)
    p.additional_capabilities = _hex(doc, "additional_capabilities", 5, p.additional_capabilities, where)
    p.terminal_type = _int(doc, "terminal_type", p.terminal_type, where, 0x11, 0x36)
    if p.terminal_type % 16 not in range(1, 7) or p.terminal_type >> 4 not in (1, 2, 3):
        raise TerminalProfileError(f"{where}: terminal_type {p.terminal_type:02X} is not a Book 4 Annex A1 value")
    p.country = _int(doc, "country", p.country, where, 0, 999)
    p.currency = _int(doc, "currency", p.currency, where, 0, 999)
    p.currency_exponent = _int(doc, "currency_exponent", p.currency_exponent, where, 0, 9)
    p.floor_limit = _int(doc, "floor_limit", p.floor_limit, where, 0, 0xFFFFFFFF)
    rs = doc.get("random_selection") or {}
    if not isinstance(rs, dict):
        raise TerminalProfileError(f"{where}: random_selection must be a mapping")
    p.random_threshold = _int(rs, "threshold", 0, where + " random_selection")
    p.random_target_percent = _int(rs, "target_percent", 0, where + " random_selection", 0, 99)
    p.random_max_percent = _int(rs, "max_percent", p.random_target_percent, where + " random_selection", 0, 99)
    if p.random_max_percent < p.random_target_percent:
        raise TerminalProfileError(f"{where}: random_selection max_percent is below target_percent")
    if p.random_threshold > p.floor_limit and p.random_target_percent:
        raise TerminalProfileError(f"{where}: random_selection threshold is above the floor limit")
    p.velocity_check = bool(doc.get("velocity_check", True))
    tac = doc.get("tac") or {}
    if not isinstance(tac, dict):
        raise TerminalProfileError(f"{where}: tac must be a mapping with denial/online/default")
    p.tac_denial = _hex(tac, "denial", 5, p.tac_denial, where + " tac")
    p.tac_online = _hex(tac, "online", 5, p.tac_online, where + " tac")
    p.tac_default = _hex(tac, "default", 5, p.tac_default, where + " tac")
    for i, entry in enumerate(doc.get("ca_keys") or []):
        w = f"{where} ca_keys[{i}]"
        if not isinstance(entry, dict):
            raise TerminalProfileError(f"{w}: expected a mapping")
        if "file" in entry:
            p.ca_keys.extend(_keys_from_file(base / str(entry["file"]), entry, w))
        else:
            p.ca_keys.append(_ca_key(entry, w))
    if doc.get("ca_key_file"):
        p.ca_keys.extend(_keys_from_file(base / str(doc["ca_key_file"]), {}, where))
    seen: set[tuple[bytes, int]] = set()
    for k in p.ca_keys:
        if (k.rid, k.index) in seen:
            raise TerminalProfileError(f"{where}: CA key {k.rid.hex().upper()}/{k.index:02X} is listed twice")
        seen.add((k.rid, k.index))
    p.application_version = _hex(doc, "application_version", 2, p.application_version, where)
    for i, entry in enumerate(doc.get("aids") or []):
        w = f"{where} aids[{i}]"
        if isinstance(entry, str):
            entry = {"aid": entry}
        if not isinstance(entry, dict) or "aid" not in entry:
            raise TerminalProfileError(f"{w}: expected an AID or a mapping with 'aid'")
        aid = _hex(entry, "aid", None, b"", w)
        if not 5 <= len(aid) <= 16:
            raise TerminalProfileError(f"{w}: an AID is 5 to 16 bytes (Book 1 §12.2.1), got {len(aid)}")
        p.aids.append(TerminalAid(aid, bool(entry.get("partial", True)), _hex(entry, "version", 2, b"", w),
                                  str(entry.get("label", ""))))
    if not p.aids:
        raise TerminalProfileError(f"{where}: no supported applications (aids)")
    p.selection = str(doc.get("selection", p.selection)).lower()
    if p.selection not in ("pse", "ppse", "aids"):
        raise TerminalProfileError(f"{where}: selection must be pse, ppse or aids, got {p.selection!r}")
    p.cardholder_confirmation = bool(doc.get("cardholder_confirmation", True))
    p.merchant_category = _int(doc, "merchant_category", p.merchant_category, where, 0, 9999)
    for key in ("terminal_id", "merchant_id", "merchant_name"):
        if key in doc:
            setattr(p, key, str(doc[key]))
    if doc.get("contactless") is not None:
        from .contactless.reader import ReaderConfigError, parse_reader

        try:
            p.contactless = parse_reader(doc["contactless"], f"{where} contactless")
        except ReaderConfigError as exc:
            raise TerminalProfileError(str(exc)) from None
    return p


def load_terminal(path: str | Path | None = None) -> TerminalProfile:
    """Read a terminal profile (YAML); ``None`` → ``vectors/terminals/default.yaml``."""
    file = Path(path) if path is not None else TERMINALS_DIR / "default.yaml"
    try:
        text = file.read_text()
    except OSError as exc:
        raise TerminalProfileError(f"cannot read terminal profile {file}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TerminalProfileError(f"{file}: not valid YAML: {exc}") from None
    profile = parse_terminal(doc, file.parent, str(file))
    profile.source = str(file)
    return profile

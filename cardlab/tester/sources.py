"""The tester's own readers of the certification source data, and what a card
SHOULD hold according to it.

Formats (docs/profile.md, docs/keystore.md) — read here independently of the
personalizer, so that a personalizer mistake shows up as a disagreement:

* issuer profile (YAML) → :class:`IssuerProfile` with one :class:`AppProfile`
  per application;
* cardholder records (CSV with a header, or JSON Lines) → :class:`Record`;
* issuer key store (JSON; clear test keys or scrypt + AES-256-GCM encrypted
  keys) → :class:`KeyStore` (only what certification needs: IMKs, RSA public
  keys, CA public keys).

:func:`expected_objects` derives, for one application and one record, every
data object the card must hold with its exact value and place.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM



class SourceError(ValueError):
    """A source file the tester cannot read (messages never hold keys or PINs)."""


# -- helpers -----------------------------------------------------------------------------


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits (PCI DSS)."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


_PAN_RE = re.compile(r"(?<![0-9A-Fa-f])(\d{12,19})(?![0-9])")


def redact(text: str) -> str:
    """Mask anything that looks like a PAN (12–19 digits) in free text."""
    return _PAN_RE.sub(lambda m: mask_pan(m.group(1)), text)


def bcd(value: int | str, length: int) -> bytes:
    return bytes.fromhex(str(value).zfill(2 * length))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _hex(value: Any, what: str) -> bytes:
    text = str(value).replace(" ", "")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SourceError(f"{what}: not hex") from None


def _tag(value: Any) -> int:
    if isinstance(value, int):  # YAML read an all-digit tag as a number
        return int(str(value), 16)
    return int(str(value), 16)


def encode_dol(items: list[tuple[int, int]]) -> bytes:
    out = b""
    for tag, length in items:
        out += tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big") + bytes((length,))
    return out


def parse_dol_spec(spec: Any, what: str) -> list[tuple[int, int]]:
    """The three DOL spellings of docs/profile.md: hex, ``TAG:LEN`` items, a list."""
    if spec is None:
        return []
    items: list[tuple[int, int]] = []
    if isinstance(spec, list):
        for it in spec:
            if isinstance(it, dict):
                for k, v in it.items():
                    items.append((_tag(k), int(v)))
            else:
                t, _, n = str(it).partition(":")
                items.append((int(t, 16), int(n)))
        return items
    text = str(spec).strip()
    if ":" in text:
        for part in text.split():
            t, _, n = part.partition(":")
            items.append((int(t, 16), int(n)))
        return items
    from .tlv import parse_dol

    return parse_dol(_hex(text, what))


# -- issuer profile ----------------------------------------------------------------------

CVM_METHODS = {
    "fail": 0x00, "offline_plaintext_pin": 0x01, "online_pin": 0x02,
    "offline_plaintext_pin_and_signature": 0x03, "offline_enciphered_pin": 0x04,
    "offline_enciphered_pin_and_signature": 0x05, "signature": 0x1E, "no_cvm": 0x1F,
}  # fmt: skip
CVM_CONDITIONS = {
    "always": 0x00, "unattended_cash": 0x01, "not_cash_or_cashback": 0x02, "terminal_supports": 0x03,
    "manual_cash": 0x04, "purchase_with_cashback": 0x05, "under_x": 0x06, "over_x": 0x07,
    "under_y": 0x08, "over_y": 0x09,
}  # fmt: skip
CVN_CODES = {10: 0x0A, 18: 0x12, 16: 0x10}

#: tags whose value comes from the cardholder record
CARDHOLDER_TAGS = {0x57, 0x5A, 0x5F20, 0x5F24, 0x5F25, 0x5F34, 0x5F30, 0x9F0B, 0x9F1F, 0x9F20}
#: key material placed in records, checked through the certificates (not by value)
KEY_TAGS = {0x90, 0x92, 0x93, 0x9F46, 0x9F48}


@dataclass(frozen=True)
class RecordLayout:
    sfi: int
    number: int
    oda: bool
    tags: tuple[int, ...]


@dataclass(frozen=True)
class CvmRule:
    method: int
    condition: int
    next_on_fail: bool

    def encode(self) -> bytes:
        return bytes((self.method | (0x40 if self.next_on_fail else 0), self.condition))


@dataclass(frozen=True)
class AppProfile:
    name: str
    aid: bytes
    label: str
    preferred_name: str | None
    code_table_index: int | None
    priority: int
    languages: tuple[str, ...]
    pdol: tuple[tuple[int, int], ...]
    cdol1: tuple[tuple[int, int], ...]
    cdol2: tuple[tuple[int, int], ...]
    ddol: tuple[tuple[int, int], ...]
    tdol: tuple[tuple[int, int], ...]
    oda: tuple[str, ...]
    aip: bytes
    cvn: int
    records: tuple[RecordLayout, ...]
    iac_denial: bytes
    iac_online: bytes
    iac_default: bytes
    cvm_amount_x: int
    cvm_amount_y: int
    cvm_rules: tuple[CvmRule, ...]
    auc: bytes
    country: int
    currency: int
    currency_exponent: int
    version: bytes
    risk: dict[str, Any]
    pin_try_limit: int
    log_sfi: int | None
    log_records: int
    log_format: tuple[tuple[int, int], ...]
    response_format: int
    icc_key_bits: int | None
    icc_key_exponent: int | None
    service_code: str
    sda_tag_list: tuple[int, ...]
    data: dict[int, bytes]
    keys: dict[str, str]

    @property
    def cvm_list(self) -> bytes | None:
        if not self.cvm_rules:
            return None
        return (
            self.cvm_amount_x.to_bytes(4, "big") + self.cvm_amount_y.to_bytes(4, "big")
            + b"".join(r.encode() for r in self.cvm_rules)
        )  # fmt: skip

    @property
    def offline_pin(self) -> bool:
        return any(r.method in (0x01, 0x03, 0x04, 0x05) for r in self.cvm_rules)

    @property
    def plaintext_pin(self) -> bool:
        return any(r.method in (0x01, 0x03) for r in self.cvm_rules)

    @property
    def uses_rsa(self) -> bool:
        return "DDA" in self.oda or "CDA" in self.oda

    def afl(self) -> bytes:
        """Tag 94 as docs/profile.md builds it: consecutive records of an SFI share
        an entry; a signed record after an unsigned one starts a new entry."""
        out = b""
        by_sfi: dict[int, list[RecordLayout]] = {}
        for r in self.records:
            by_sfi.setdefault(r.sfi, []).append(r)
        for sfi in by_sfi:  # order of first appearance
            recs = sorted(by_sfi[sfi], key=lambda r: r.number)
            entry: list[RecordLayout] = []

            def flush(entry: list[RecordLayout]) -> bytes:
                n_oda = sum(1 for r in entry if r.oda)
                return bytes((sfi << 3, entry[0].number, entry[-1].number, n_oda))

            for r in recs:
                if entry and (r.number != entry[-1].number + 1 or (r.oda and not entry[-1].oda)):
                    out += flush(entry)
                    entry = []
                entry.append(r)
            if entry:
                out += flush(entry)
        return out

    def place_of(self, tag: int) -> tuple[int, int] | None:
        for r in self.records:
            if tag in r.tags:
                return (r.sfi, r.number)
        return None


@dataclass(frozen=True)
class IssuerProfile:
    name: str
    isd_aid: bytes | None
    kmc: str | None
    target_life_cycle: str
    applications: tuple[AppProfile, ...]
    path: str = ""
    bins: tuple[str, ...] = ()  # issuer BINs the cards' PANs start with; empty: any
    #: ``card.atr``: the whole ATR the card must answer; None when the profile names none
    atr: bytes | None = None
    #: ``card.protocol`` (0 or 1) and ``card.historical_bytes`` when the profile gives them instead
    protocol: int | None = None
    historical_bytes: bytes | None = None

    def pan_on_bin(self, pan: str) -> bool:
        """Whether ``pan`` is on one of the profile's BINs (true without ``bins``)."""
        return not self.bins or any(pan.startswith(b) for b in self.bins)


def _derive_aip(oda: tuple[str, ...], cvm: bool, trm: bool, issuer_auth: bool) -> bytes:
    b1 = (0x40 if "SDA" in oda else 0) | (0x20 if "DDA" in oda else 0) | (0x10 if cvm else 0)
    b1 |= (0x08 if trm else 0) | (0x04 if issuer_auth else 0) | (0x01 if "CDA" in oda else 0)
    return bytes((b1, 0))


def _app(i: int, d: dict[str, Any]) -> AppProfile:
    where = f"applications[{i}]"
    try:
        oda_spec = d.get("oda", "none")
        oda = tuple(str(x).upper() for x in (oda_spec if isinstance(oda_spec, list) else [oda_spec]))
        oda = tuple(x for x in oda if x != "NONE")
        cvm = d.get("cvm_list") or {}
        rules = tuple(
            CvmRule(CVM_METHODS[r["method"]], CVM_CONDITIONS[r.get("condition", "always")], r.get("on_fail", "fail") == "next")
            for r in cvm.get("rules", [])
        )
        records: list[RecordLayout] = []
        for f in d.get("afl", []):
            for r in f.get("records", []):
                records.append(
                    RecordLayout(int(f["sfi"]), int(r["number"]), bool(r.get("oda", False)), tuple(_tag(t) for t in r.get("data", [])))
                )
        aip = (
            _hex(d["aip"], f"{where}.aip") if "aip" in d
            else _derive_aip(oda, bool(rules), d.get("terminal_risk_management", True), d.get("issuer_authentication", True))
        )  # fmt: skip
        iac = d.get("iac") or {}
        log = d.get("log") or {}
        icc = d.get("icc_key") or {}
        return AppProfile(
            name=str(d["name"]),
            aid=_hex(d["aid"], f"{where}.aid"),
            label=str(d["label"]),
            preferred_name=d.get("preferred_name"),
            code_table_index=int(d["issuer_code_table_index"]) if d.get("issuer_code_table_index") is not None else None,
            priority=int(d.get("priority", 1)),
            languages=tuple(str(x) for x in d.get("languages", [])),
            pdol=tuple(parse_dol_spec(d.get("pdol"), f"{where}.pdol")),
            cdol1=tuple(parse_dol_spec(d.get("cdol1"), f"{where}.cdol1")),
            cdol2=tuple(parse_dol_spec(d.get("cdol2"), f"{where}.cdol2")),
            ddol=tuple(parse_dol_spec(d.get("ddol"), f"{where}.ddol")),
            tdol=tuple(parse_dol_spec(d.get("tdol"), f"{where}.tdol")),
            oda=oda,
            aip=aip,
            cvn=int(d["cvn"]),
            records=tuple(records),
            iac_denial=_hex(iac.get("denial", "0000000000"), f"{where}.iac"),
            iac_online=_hex(iac.get("online", "0000000000"), f"{where}.iac"),
            iac_default=_hex(iac.get("default", "0000000000"), f"{where}.iac"),
            cvm_amount_x=int(cvm.get("amount_x", 0)),
            cvm_amount_y=int(cvm.get("amount_y", 0)),
            cvm_rules=rules,
            auc=_hex(d.get("auc", "FF00"), f"{where}.auc"),
            country=int(str(d["country"])),
            currency=int(str(d["currency"])),
            currency_exponent=int(d.get("currency_exponent", 2)),
            version=_hex(str(d["version"]).zfill(4), f"{where}.version"),
            risk=dict(d.get("risk") or {}),
            pin_try_limit=int(d.get("pin_try_limit", 3)),
            log_sfi=int(log["sfi"]) if log else None,
            log_records=int(log.get("records", 0)) if log else 0,
            log_format=tuple(parse_dol_spec(log.get("format"), f"{where}.log")) if log else (),
            response_format=int(d.get("response_format", 2)),
            icc_key_bits=int(icc["size"]) if icc else None,
            icc_key_exponent=int(icc.get("exponent", 3)) if icc else None,
            service_code=str(d.get("service_code", "201")).zfill(3),
            sda_tag_list=tuple(_tag(t) for t in d.get("sda_tag_list", [])),
            data={_tag(k): _hex(v, f"{where}.data") for k, v in (d.get("data") or {}).items()},
            keys={str(k): str(v) for k, v in (d.get("keys") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"profile {where}: {type(exc).__name__}: {exc}") from None


def load_profile(path: str | os.PathLike[str]) -> IssuerProfile:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("applications"), list):
        raise SourceError(f"{path}: not an issuer profile (no 'applications' list)")
    card = doc.get("card") or {}
    return IssuerProfile(
        name=str(doc.get("profile", Path(path).stem)),
        isd_aid=_hex(card["isd_aid"], "card.isd_aid") if card.get("isd_aid") else None,
        kmc=card.get("kmc"),
        target_life_cycle=str(card.get("target_life_cycle", "SECURED")),
        applications=tuple(_app(i, a) for i, a in enumerate(doc["applications"])),
        path=str(path),
        bins=_bins(doc.get("bins"), str(path)),
        **_card_atr(card, str(path)),
    )


def _card_atr(card: dict[str, Any], path: str) -> dict[str, Any]:
    """``card.atr`` / ``card.protocol`` / ``card.historical_bytes``, read the tester's way."""
    out: dict[str, Any] = {}
    if card.get("atr") is not None:
        out["atr"] = _hex(str(card["atr"]).replace(" ", ""), "card.atr")
    if card.get("protocol") is not None:
        text = str(card["protocol"]).upper().replace(" ", "")
        if text not in ("T=0", "T=1"):
            raise SourceError(f"{path}: card.protocol: {card['protocol']!r} is not T=0 or T=1")
        out["protocol"] = int(text[-1])
    if card.get("historical_bytes") is not None:
        out["historical_bytes"] = _hex(str(card["historical_bytes"]).replace(" ", ""), "card.historical_bytes")
    return out


def _bins(raw: Any, path: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    out = tuple(str(b).strip() for b in items)
    for b in out:
        if not re.fullmatch(r"[0-9]{6,8}", b):
            raise SourceError(f"{path}: bins: {b!r} is not a BIN of 6-8 digits")
    return out


# -- cardholder records ------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    index: int  # 1-based position in the file
    pan: str
    psn: str
    expiry: tuple[int, int]  # (year, month)
    effective: tuple[int, int] | None
    name: str
    pin: str = field(repr=False)
    service_code: str | None
    language: str | None
    discretionary: str

    @property
    def masked(self) -> str:
        return mask_pan(self.pan)

    def __repr__(self) -> str:
        return f"Record({self.index}, {self.masked})"


def _ym(text: str, what: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise SourceError(f"{what}: not YYYY-MM")
    return int(m.group(1)), int(m.group(2))


def _record(index: int, row: dict[str, Any]) -> Record:
    r = {str(k).strip().lower(): ("" if v is None else str(v).strip()) for k, v in row.items()}
    pan = r.get("pan", "")
    where = f"record {index} ({mask_pan(pan)})"
    if not pan.isdigit():
        raise SourceError(f"{where}: pan is not digits")
    return Record(
        index=index,
        pan=pan,
        psn=r.get("psn", "0").zfill(2),
        expiry=_ym(r.get("expiry", ""), f"{where}: expiry"),
        effective=_ym(r["effective"], f"{where}: effective") if r.get("effective") else None,
        name=r.get("name", ""),
        pin=r.get("pin", ""),
        service_code=r.get("service_code") or None,
        language=(r.get("language") or "").lower() or None,
        discretionary=r.get("discretionary", ""),
    )


def read_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Every record of a CSV (header row) or JSON Lines file, in order."""
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        n = 0
        for line in text.splitlines():
            if line.strip():
                n += 1
                yield _record(n, json.loads(line))
    else:
        for n, row in enumerate(csv.DictReader(io.StringIO(text)), 1):
            yield _record(n, row)


def load_record(path: str | os.PathLike[str], index: int) -> Record:
    for rec in read_records(path):
        if rec.index == index:
            return rec
    raise SourceError(f"{path}: no record {index}")


# -- key store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CaKey:
    rid: bytes
    index: int
    modulus: int
    exponent: int


@dataclass
class KeyStore:
    """What certification may use of the issuer's key store. Secret values are
    kept out of ``repr`` and never enter evidence."""

    symmetric: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)  # name → (usage, key)
    rsa_public: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name → (usage, n, e)
    ca_keys: list[CaKey] = field(default_factory=list)
    issuer_certificates: list[dict[str, str]] = field(default_factory=list)
    path: str = ""

    def names(self) -> list[str]:
        return sorted(set(self.symmetric) | set(self.rsa_public))

    def symmetric_key(self, name: str | None, usage: str) -> tuple[str, bytes] | None:
        """(name actually used, key): by name; when the name is not in the store,
        the only key of that usage (noted in the evidence by the caller)."""
        if name and name in self.symmetric and self.symmetric[name][0] == usage:
            return name, self.symmetric[name][1]
        same = [(n, v) for n, (u, v) in self.symmetric.items() if u == usage]
        if len(same) == 1:
            return same[0]
        return None

    def rsa_key(self, name: str | None, usage: str) -> tuple[str, int, int] | None:
        if name and name in self.rsa_public and self.rsa_public[name][0] == usage:
            return name, self.rsa_public[name][1], self.rsa_public[name][2]
        same = [(n, k[1], k[2]) for n, k in self.rsa_public.items() if k[0] == usage]
        return same[0] if len(same) == 1 else None

    def ca_key(self, rid: bytes, index: int) -> CaKey | None:
        for k in self.ca_keys:
            if k.rid == rid and k.index == index:
                return k
        for k in self.ca_keys:  # a test CA under another RID (test AIDs)
            if k.index == index and not rid:
                return k
        return None


_AAD_FIELDS = ("type", "usage", "kcv", "modulus", "exponent")


def load_keystore(path: str | os.PathLike[str], passphrase: str | None = None) -> KeyStore:
    """Read the key store file of docs/keystore.md. Encrypted values need the
    passphrase (argument or ``$CARDLAB_KEYSTORE_PASSPHRASE``)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != "cardlab-keystore":
        raise SourceError(f"{path}: not a cardlab key store")
    aead: AESGCM | None = None
    entries = doc.get("keys") or {}
    if any("encrypted" in e for e in entries.values()):
        passphrase = passphrase if passphrase is not None else os.environ.get("CARDLAB_KEYSTORE_PASSPHRASE")
        kdf = doc.get("kdf") or {}
        if passphrase is None:
            raise SourceError(f"{path}: keys are encrypted; a passphrase is needed")
        if kdf.get("name") != "scrypt" or kdf.get("cipher") != "AES-256-GCM":
            raise SourceError(f"{path}: no scrypt / AES-256-GCM 'kdf' section")
        key = hashlib.scrypt(
            passphrase.encode(), salt=bytes.fromhex(kdf["salt"]), n=int(kdf["n"]), r=int(kdf["r"]),
            p=int(kdf["p"]), maxmem=256 * 1024 * 1024, dklen=32,
        )  # fmt: skip
        aead = AESGCM(key)
        check = bytes.fromhex(kdf["check"])
        try:
            aead.decrypt(check[:12], check[12:], None)
        except InvalidTag:
            raise SourceError(f"{path}: wrong passphrase") from None
    ks = KeyStore(path=str(path))
    test_only = bool(doc.get("test_only"))
    for name, e in entries.items():
        if "value" in e:
            if not test_only:
                raise SourceError(f"{path}: key {name!r} is in clear but the file is not test_only")
            value = bytes.fromhex(e["value"])
        elif "encrypted" in e and aead is not None:
            blob = bytes.fromhex(e["encrypted"])
            aad = json.dumps({"name": name, **{k: e[k] for k in _AAD_FIELDS if k in e}}, sort_keys=True).encode()
            try:
                value = aead.decrypt(blob[:12], blob[12:], aad)
            except InvalidTag:
                raise SourceError(f"{path}: key {name!r} tampered with") from None
        else:
            value = b""
        usage, ktype = str(e.get("usage", "")), str(e.get("type", ""))
        if ktype == "RSA":
            if "modulus" in e:
                ks.rsa_public[name] = (usage, int(e["modulus"], 16), int(e.get("exponent", "03"), 16))
            elif value:
                priv = serialization.load_der_private_key(value, None)
                assert isinstance(priv, rsa.RSAPrivateKey)
                pub = priv.public_key().public_numbers()
                ks.rsa_public[name] = (usage, pub.n, pub.e)
        elif value:
            ks.symmetric[name] = (usage, value)
    for c in doc.get("ca_public_keys") or []:
        ks.ca_keys.append(CaKey(bytes.fromhex(c["rid"]), int(c["index"], 16), int(c["modulus"], 16), int(c["exponent"], 16)))
    ks.issuer_certificates = list(doc.get("issuer_certificates") or [])
    return ks


# -- what the card should hold -----------------------------------------------------------


def _last_day(y: int, m: int) -> int:
    return calendar.monthrange(y, m)[1]


def yymmdd(ym: tuple[int, int], last: bool) -> bytes:
    y, m = ym
    return bcd(f"{y % 100:02d}{m:02d}{(_last_day(y, m) if last else 1):02d}", 3)


def service_code(app: AppProfile, rec: Record) -> str:
    return rec.service_code or app.service_code


#: discretionary data of a record that gives none (docs/profile.md "Track data"): no
#: key-derived value (no CVV / iCVV / PVV), the same digits in 57, 9F1F and 9F20
DEFAULT_DISCRETIONARY = "00000000"
#: ISO/IEC 7813 track 2: characters between the sentinels (PAN = YYMM SC DD)
TRACK2_MAX = 37


def discretionary(rec: Record) -> str:
    """The discretionary digits the card carries: the record's, else
    :data:`DEFAULT_DISCRETIONARY`, cut to what track 2 holds (37 − PAN − 8)."""
    dd = rec.discretionary or DEFAULT_DISCRETIONARY
    room = TRACK2_MAX - 8 - len(rec.pan)
    return dd if len(dd) <= room else dd[: max(0, room)]


def track2(app: AppProfile, rec: Record) -> bytes:
    """Track 2 equivalent data (57): PAN ‖ D ‖ YYMM ‖ service code ‖ discretionary, F-padded."""
    y, m = rec.expiry
    digits = f"{rec.pan}D{y % 100:02d}{m:02d}{service_code(app, rec)}{discretionary(rec)}"
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def pan_bytes(pan: str) -> bytes:
    return bcd_f(pan)


def bcd_f(digits: str) -> bytes:
    """Digits as packed BCD, F-padded to a whole byte (cn format)."""
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


@dataclass(frozen=True)
class Expected:
    """One data object the card must hold: where and with which value (None:
    present, value not derivable from the source data)."""

    tag: int
    value: bytes | None
    place: str  # "FCI", "GPO", "record S/R", "GET DATA"
    source: str  # what determined it, in words


def expected_objects(app: AppProfile, rec: Record) -> list[Expected]:
    """Every data object the profile and the record determine, with its place."""
    out: list[Expected] = []
    # FCI (Book 1 §11.3.4; DGI 9102)
    out.append(Expected(0x84, app.aid, "FCI", "profile aid"))
    out.append(Expected(0x50, app.label.encode("ascii"), "FCI", "profile label"))
    out.append(Expected(0x87, bytes((app.priority,)), "FCI", "profile priority"))
    if app.pdol:
        out.append(Expected(0x9F38, encode_dol(list(app.pdol)), "FCI", "profile pdol"))
    langs = app.languages
    if rec.language:  # the cardholder's own preference replaces the profile's
        langs = tuple(rec.language[i : i + 2] for i in range(0, len(rec.language), 2))
    if langs:
        out.append(Expected(0x5F2D, "".join(langs).encode("ascii"), "FCI", "profile languages / record language"))
    if app.preferred_name:
        out.append(Expected(0x9F12, app.preferred_name.encode("ascii"), "FCI", "profile preferred_name"))
    if app.code_table_index is not None:
        out.append(Expected(0x9F11, bytes((app.code_table_index,)), "FCI", "profile issuer_code_table_index"))
    if app.log_sfi is not None:
        out.append(Expected(0x9F4D, bytes((app.log_sfi, app.log_records)), "FCI", "profile log"))
    # GPO
    out.append(Expected(0x82, app.aip, "GPO", "profile aip / oda + cvm_list"))
    out.append(Expected(0x94, app.afl(), "GPO", "profile afl"))
    # records
    values: dict[int, tuple[bytes | None, str]] = {
        0x57: (track2(app, rec), "record pan, expiry, service code, discretionary (default 00000000)"),
        # track 1 / track 2 discretionary data: the same digits as in 57 (ASCII / F-padded BCD)
        0x9F1F: (discretionary(rec).encode("ascii"), "record discretionary (default 00000000), ASCII"),
        0x9F20: (bcd_f(discretionary(rec)), "record discretionary (default 00000000), BCD F-padded"),
        0x5A: (pan_bytes(rec.pan), "record pan"),
        0x5F20: (rec.name.encode("ascii"), "record name"),
        0x5F24: (yymmdd(rec.expiry, True), "record expiry (last day)"),
        0x5F25: (yymmdd(rec.effective, False) if rec.effective else None, "record effective (first day)"),
        0x5F34: (bcd(rec.psn, 1), "record psn"),
        0x5F30: (bcd(service_code(app, rec), 2), "record/profile service code"),
        0x8C: (encode_dol(list(app.cdol1)), "profile cdol1"),
        0x8D: (encode_dol(list(app.cdol2)), "profile cdol2"),
        0x9F49: (encode_dol(list(app.ddol)) if app.ddol else None, "profile ddol"),
        0x97: (encode_dol(list(app.tdol)) if app.tdol else None, "profile tdol"),
        0x8E: (app.cvm_list, "profile cvm_list"),
        0x9F07: (app.auc, "profile auc"),
        0x9F08: (app.version, "profile version"),
        0x9F0D: (app.iac_default, "profile iac.default"),
        0x9F0E: (app.iac_denial, "profile iac.denial"),
        0x9F0F: (app.iac_online, "profile iac.online"),
        0x5F28: (bcd(app.country, 2), "profile country"),
        0x9F42: (bcd(app.currency, 2), "profile currency"),
        0x9F44: (bytes((app.currency_exponent,)), "profile currency_exponent"),
        0x9F14: (bytes((int(app.risk.get("lcol", 0)),)), "profile risk.lcol"),
        0x9F23: (bytes((int(app.risk.get("ucol", 0)),)), "profile risk.ucol"),
        0x9F4A: (bytes(b for t in app.sda_tag_list for b in t.to_bytes(max(1, (t.bit_length() + 7) // 8), "big")), "profile sda_tag_list"),
        0x8F: (_hex(app.keys["ca_index"], "ca_index") if "ca_index" in app.keys else None, "profile keys.ca_index"),
    }
    if app.icc_key_exponent is not None:
        e = app.icc_key_exponent
        values[0x9F47] = (e.to_bytes((e.bit_length() + 7) // 8, "big"), "profile icc_key.exponent")
    for t, v in app.data.items():
        values[t] = (v, "profile data")
    for r in app.records:
        for t in r.tags:
            got: tuple[bytes | None, str] = values.get(t, (None, "key material (checked through the certificates)" if t in KEY_TAGS else "present"))
            out.append(Expected(t, got[0], f"record {r.sfi}/{r.number}", got[1]))
    return out


def today() -> date:
    return date.today()


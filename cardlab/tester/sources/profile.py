"""The issuer profile (YAML, docs/profile.md) → :class:`IssuerProfile` with one
:class:`AppProfile` per application, read independently of the personalizer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .fields import SourceError, _hex, _tag, parse_dol_spec

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
class ContactlessSpec:
    """An application's ``contactless`` section, as the tester reads it (EMV Contactless
    Book C-2 / C-3): the kernel, the contactless PDOL, kernel 3's CTQ and fDDA, the AFL
    entries on contactless (None: the contact AFL) and kernel 2's Third Party Data."""

    kernel: int
    pdol: tuple[tuple[int, int], ...]
    ctq: bytes | None
    fdda: bool
    afl: bytes | None
    third_party_data: bytes | None


def _contactless(raw: Any, where: str) -> ContactlessSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SourceError(f"profile {where}.contactless: not a mapping")
    kernel = int(raw.get("kernel", 0))
    if kernel not in (2, 3):
        raise SourceError(f"profile {where}.contactless.kernel: 2 or 3, got {raw.get('kernel')!r}")
    afl = raw.get("afl")
    afl_bytes = None if afl is None else b"".join(
        bytes((int(e[0]) << 3, int(e[1]), int(e[2]), int(e[3]))) for e in afl)
    return ContactlessSpec(
        kernel=kernel,
        pdol=tuple(parse_dol_spec(raw.get("pdol"), f"{where}.contactless.pdol")),
        ctq=_hex(str(raw["ctq"]), f"{where}.contactless.ctq") if raw.get("ctq") is not None else None,
        fdda=bool(raw.get("fdda", False)),
        afl=afl_bytes,
        third_party_data=(_hex(str(raw["third_party_data"]), f"{where}.contactless.third_party_data")
                          if raw.get("third_party_data") else None),
    )


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
    contactless: ContactlessSpec | None = None

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
    #: ``card.certify_as``: "lived" (default: counters judged against the card's history) or
    #: "fresh" (straight from perso: ATC small, last online ATC 0)
    certify_as: str = "lived"
    #: ``card.diversification`` (upper case) and ``card.key_version``: how the tester's own SCP03
    #: derives the card's keys from the KMC (GP status rules)
    diversification: str = "KDF3"
    key_version: int = 0
    #: ``card.empty_psn``: None (a record needs a PSN), "omit" (no 5F34 on the card) or "00"
    empty_psn: str | None = None

    def pan_on_bin(self, pan: str) -> bool:
        """Whether ``pan`` is on one of the profile's BINs (true without ``bins``)."""
        return not self.bins or any(pan.startswith(b) for b in self.bins)


def _derive_aip(oda: tuple[str, ...], cvm: bool, trm: bool, issuer_auth: bool) -> bytes:
    b1 = (0x40 if "SDA" in oda else 0) | (0x20 if "DDA" in oda else 0) | (0x10 if cvm else 0)
    b1 |= (0x08 if trm else 0) | (0x04 if issuer_auth else 0) | (0x01 if "CDA" in oda else 0)
    return bytes((b1, 0))


#: what every payment application's profile must state: the AFL and both CDOLs are mandatory on
#: the card (EMV 4.4 Book 3 Annex A), so a profile without them is cut short, not a lenient one
_REQUIRED = ("name", "aid", "label", "cvn", "afl", "cdol1", "cdol2", "country", "currency", "version")


def _app(i: int, d: dict[str, Any]) -> AppProfile:
    where = f"applications[{i}]"
    if not isinstance(d, dict):
        raise SourceError(f"profile {where}: not a mapping")
    missing = [k for k in _REQUIRED if d.get(k) in (None, "", [])]
    if missing:
        raise SourceError(f"profile {where}: {', '.join(missing)} missing (a profile cut short?)")
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
            contactless=_contactless(d.get("contactless"), where),
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
        certify_as=_certify_as(card.get("certify_as", "lived"), str(path)),
        diversification=str(card.get("diversification", "KDF3")).upper(),
        key_version=_key_version(card.get("key_version", 0), str(path)),
        empty_psn=_empty_psn(card.get("empty_psn"), str(path)),
        **_card_atr(card, str(path)),
    )


def _empty_psn(raw: Any, path: str) -> str | None:
    if raw is None:
        return None
    value = "00" if raw == 0 and not isinstance(raw, bool) else str(raw).strip().lower()
    if value not in ("omit", "00"):
        raise SourceError(f"{path}: card.empty_psn: {raw!r} is not omit or \"00\"")
    return value


def _key_version(raw: Any, path: str) -> int:
    try:
        return int(raw, 16) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise SourceError(f"{path}: card.key_version: {raw!r} is not a number") from None


def _certify_as(raw: Any, path: str) -> str:
    value = str(raw).strip().lower()
    if value not in ("lived", "fresh"):
        raise SourceError(f"{path}: card.certify_as: {raw!r} is not one of lived, fresh")
    return value


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

"""Certification of a personalized card against its source data.

``certify_card(channel, profile, record, keys)`` derives what the card should
hold from the issuer profile, the cardholder record and the key store
(:mod:`tester.sources`), talks to the card like a terminal, and evaluates
every rule of the catalogue (:mod:`tester.rules`) for every application: each
gives pass / fail / not applicable with evidence (expected vs found; PANs
masked; never a key or a PIN).

``certify_batch`` does it for every emulated card of a perso batch directory
(images mapped to records through the job database or ``cards.jsonl``) or for
cards presented one after another in a reader.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from . import rules as R
from .channel import CardChannel
from .rules import FAIL, NA, PASS, RULES, Result
from .sources import (
    AppProfile,
    Expected,
    IssuerProfile,
    KeyStore,
    Record,
    SourceError,
    encode_dol,
    expected_objects,
    load_keystore,
    load_profile,
    luhn_ok,
    mask_pan,
    read_records,
    redact,
    service_code,
)
from .tlv import TlvError, encode, flatten, parse, parse_dol

# -- reports -----------------------------------------------------------------------------


@dataclass
class CardReport:
    card_id: str
    pan_masked: str
    record_index: int
    profile: str
    source: str  # image path or reader name
    results: list[Result] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    error: str = ""  # a card that could not be certified at all

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.verdict == FAIL]

    @property
    def verdict(self) -> str:
        return FAIL if self.error or self.failed else PASS

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, NA: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out

    def failed_rules(self) -> set[str]:
        return {r.rule for r in self.failed}


# -- talking to the card -----------------------------------------------------------------


class _Card:
    def __init__(self, channel: CardChannel) -> None:
        self.ch = channel

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        resp = self.ch.transmit(apdu)
        sw = int.from_bytes(resp[-2:], "big")
        data = resp[:-2]
        if sw >> 8 == 0x6C:
            resp = self.ch.transmit(apdu[:4] + bytes((sw & 0xFF,)) if len(apdu) <= 5 else apdu[:-1] + bytes((sw & 0xFF,)))
            sw, data = int.from_bytes(resp[-2:], "big"), resp[:-2]
        while sw >> 8 == 0x61:
            resp = self.ch.transmit(bytes((0x00, 0xC0, 0, 0, sw & 0xFF)))
            data += resp[:-2]
            sw = int.from_bytes(resp[-2:], "big")
        return data, sw

    def select(self, aid: bytes) -> tuple[bytes, int]:
        return self.send(bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00")

    def get_data(self, tag: int) -> tuple[bytes, int]:
        return self.send(bytes((0x80, 0xCA)) + tag.to_bytes(2, "big") + b"\x00")

    def read_record(self, sfi: int, rec: int) -> tuple[bytes, int]:
        return self.send(bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0x00)))


def _value_of_get_data(data: bytes, tag: int) -> bytes | None:
    try:
        items = parse(data)
    except TlvError:
        return None
    for t in items:
        if t.tag == tag:
            return t.value
    return None


def _h(b: bytes | None) -> str:
    return "-" if b is None else b.hex().upper()


def _tagname(tag: int) -> str:
    try:
        from .dictionary import name

        return f"{tag:X} {name(tag)}"
    except Exception:
        return f"{tag:X}"


# -- collecting results ------------------------------------------------------------------


class _Collector:
    """Several checks may feed one rule; one Result per rule and application."""

    def __init__(self, app: str, pan: str) -> None:
        self.app = app
        self.pan = pan
        self.checks: dict[str, list[tuple[bool | None, str, str, str]]] = {}

    def _clean(self, text: str) -> str:
        if self.pan:
            text = text.replace(self.pan, mask_pan(self.pan))
        return redact(text)

    def check(self, rule: str, ok: bool, evidence: str, expected: str = "", found: str = "") -> bool:
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((ok, evidence, expected, found))
        return ok

    def na(self, rule: str, why: str) -> None:
        assert rule in RULES, rule
        self.checks.setdefault(rule, []).append((None, why, "", ""))

    def results(self, rule_ids: list[str], unreached: str) -> list[Result]:
        out = []
        for rid in rule_ids:
            items = self.checks.get(rid)
            if not items:
                out.append(Result(rid, NA, self._clean(unreached), app=self.app))
                continue
            fails = [i for i in items if i[0] is False]
            passes = [i for i in items if i[0] is True]
            chosen = fails or passes or items
            verdict = FAIL if fails else PASS if passes else NA
            ev = "; ".join(dict.fromkeys(i[1] for i in chosen))
            exp = "; ".join(i[2] for i in chosen if i[2])
            fnd = "; ".join(i[3] for i in chosen if i[3])
            out.append(Result(rid, verdict, self._clean(ev)[:2000], self._clean(exp)[:1000], self._clean(fnd)[:1000], self.app))
        return out


# -- RSA recovery (Book 2 §5, §6) with plain integers ------------------------------------


def _recover(data: bytes, n: int, e: int) -> bytes:
    size = (n.bit_length() + 7) // 8
    return pow(int.from_bytes(data, "big"), e, n).to_bytes(size, "big")


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _mmyy_ok(mmyy: bytes, today: date) -> bool:
    try:
        mm, yy = int(mmyy[:1].hex()), int(mmyy[1:2].hex())
    except ValueError:
        return False
    return (2000 + yy, mm) >= (today.year, today.month)


# -- terminal values for DOLs ------------------------------------------------------------


def _terminal_value(terminal: Any, name: str, default: bytes) -> bytes:
    v = getattr(terminal, name, None) if terminal is not None else None
    if isinstance(v, bytes):
        return v
    if isinstance(v, int) and name.endswith("code"):
        return bytes.fromhex(f"{v:04d}")
    return default


def _dol_data(dol: list[tuple[int, int]], values: dict[int, bytes]) -> bytes:
    out = b""
    for tag, length in dol:
        v = values.get(tag, b"")
        out += (v + bytes(length))[:length] if len(v) < length or tag not in (0x9F02, 0x9F03) else v[-length:]
    return out


# -- the certification of one application -------------------------------------------------

CARD_RULES = ["LIFE-CARD-001"]
APP_RULES = [r for r in RULES if r not in CARD_RULES]
TEMPLATES = {0x6F, 0xA5, 0xBF0C, 0x70, 0x77, 0x61}
FRESH_ATC_MAX = 10


@dataclass
class _Ctx:
    card: _Card
    app: AppProfile
    rec: Record
    keys: KeyStore
    terminal: Any
    destructive: bool
    today: date
    c: _Collector
    found: dict[str, dict[int, bytes]] = field(default_factory=dict)  # place → tag → value
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)
    aip: bytes = b""
    afl: bytes = b""
    pdol_data: bytes = b""
    issuer_key: tuple[int, int] | None = None
    icc_key: tuple[int, int] | None = None
    static_data: bytes | None = None
    atc: int | None = None

    def all_values(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for objs in self.found.values():
            for t, v in objs.items():
                out.setdefault(t, v)
        return out


def _certify_app(ctx: _Ctx) -> None:
    c, card, app = ctx.c, ctx.card, ctx.app
    data, sw = card.select(app.aid)
    if sw not in (0x9000, 0x6283):
        c.check("LIFE-APP-001", False, f"SELECT {app.aid.hex().upper()} answered {sw:04X}", "9000", f"{sw:04X}")
        raise _Stop(f"application not selectable (SW {sw:04X})")
    c.check("LIFE-APP-001", sw == 0x9000, "SELECT answered 9000" if sw == 0x9000 else "SELECT answered 6283: application blocked", "9000", f"{sw:04X}")
    fci = {}
    try:
        top = parse(data)
        ok = len(top) == 1 and top[0].tag == 0x6F
        inner = {t.tag: t for t in top[0].children()} if ok else {}
        ok = ok and 0x84 in inner and 0xA5 in inner
        c.check("FCI-001", ok, "FCI template 6F with 84 and A5" if ok else "FCI not 6F {84, A5}", "6F{84,A5}", _h(data))
        if ok:
            fci[0x84] = inner[0x84].value
            fci.update(flatten(inner[0xA5].raw))
    except TlvError as exc:
        c.check("FCI-001", False, f"FCI not BER-TLV: {exc}")
    ctx.found["FCI"] = fci

    # state before the transaction
    atc_d, atc_sw = card.get_data(0x9F36)
    atc = _value_of_get_data(atc_d, 0x9F36) if atc_sw == 0x9000 else None
    if atc is None:
        c.na("STATE-ATC-001", f"GET DATA 9F36 answered {atc_sw:04X}")
    else:
        ctx.atc = int.from_bytes(atc, "big")
        c.check("STATE-ATC-001", ctx.atc <= FRESH_ATC_MAX, f"ATC {ctx.atc} (a fresh card: ≤ {FRESH_ATC_MAX})", f"≤ {FRESH_ATC_MAX}", str(ctx.atc))
    lo_d, lo_sw = card.get_data(0x9F13)
    lo = _value_of_get_data(lo_d, 0x9F13) if lo_sw == 0x9000 else None
    if lo is None:
        c.na("STATE-ATC-002", f"GET DATA 9F13 answered {lo_sw:04X}")
    else:
        c.check("STATE-ATC-002", int.from_bytes(lo, "big") == 0, f"last online ATC {int.from_bytes(lo, 'big')}", "0", str(int.from_bytes(lo, "big")))
    ptc_d, ptc_sw = card.get_data(0x9F17)
    ptc = _value_of_get_data(ptc_d, 0x9F17) if ptc_sw == 0x9000 else None
    if app.offline_pin:
        c.check("CVM-006", ptc is not None, f"GET DATA 9F17 answered {ptc_sw:04X}")
        if ptc is None:
            c.check("STATE-PTC-001", False, f"PIN try counter not readable (SW {ptc_sw:04X})", str(app.pin_try_limit), "-")
        else:
            c.check("STATE-PTC-001", ptc[0] == app.pin_try_limit, f"PIN try counter {ptc[0]}, limit {app.pin_try_limit}", str(app.pin_try_limit), str(ptc[0]))
    else:
        c.na("CVM-006", "no offline PIN CVM in the profile")
        c.na("STATE-PTC-001", "no offline PIN CVM in the profile")
    if app.log_sfi is not None:
        lf_d, lf_sw = card.get_data(0x9F4F)
        lf = _value_of_get_data(lf_d, 0x9F4F) if lf_sw == 0x9000 else None
        exp_lf = encode_dol(list(app.log_format))
        c.check("LOG-001", lf == exp_lf, "log format by GET DATA 9F4F", _h(exp_lf), _h(lf) if lf is not None else f"SW {lf_sw:04X}")
    else:
        c.na("LOG-001", "the profile has no log")

    # GET PROCESSING OPTIONS
    values = _terminal_values(ctx)
    pdol = parse_dol(fci[0x9F38]) if 0x9F38 in fci else []
    ctx.pdol_data = _dol_data(pdol, values)
    data, sw = card.send(bytes((0x80, 0xA8, 0, 0, len(ctx.pdol_data) + 2, 0x83, len(ctx.pdol_data))) + ctx.pdol_data + b"\x00")
    if sw == 0x6985:
        c.check("LIFE-APP-002", False, "GET PROCESSING OPTIONS answered 6985: not personalized (or not usable)", "9000", "6985")
        raise _Stop("GPO refused")
    c.check("LIFE-APP-002", sw == 0x9000, f"GET PROCESSING OPTIONS answered {sw:04X}", "9000", f"{sw:04X}")
    if sw != 0x9000:
        raise _Stop(f"GPO answered {sw:04X}")
    gpo: dict[int, bytes] = {}
    try:
        top = parse(data)
        if top and top[0].tag == 0x80:
            v = top[0].value
            gpo = {0x82: v[:2], 0x94: v[2:]}
            fmt = 1
        elif top and top[0].tag == 0x77:
            kids = top[0].children()
            gpo = {t.tag: t.value for t in kids}
            fmt = 2
            tags = sorted(t.tag for t in kids)
            c.check("GPO-002", tags == [0x82, 0x94], f"format 2 holds {' '.join(f'{t:X}' for t in tags)}", "82 94", " ".join(f"{t:X}" for t in tags))
        else:
            fmt = 0
        if fmt != 2:
            c.na("GPO-002", "format 1 response")
        c.check("GPO-001", fmt == app.response_format, f"GPO response format {fmt}", str(app.response_format), str(fmt))
    except TlvError as exc:
        c.check("GPO-001", False, f"GPO response not BER-TLV: {exc}")
    ctx.found["GPO"] = gpo
    ctx.aip, ctx.afl = gpo.get(0x82, b""), gpo.get(0x94, b"")
    _read_records(ctx)
    _data_rules(ctx)
    _consistency_rules(ctx)
    _oda(ctx)
    _pin(ctx)
    _generate_ac(ctx)
    _log_file(ctx)
    _directory(ctx)


class _Stop(Exception):
    pass


def _terminal_values(ctx: _Ctx) -> dict[int, bytes]:
    t, app = ctx.terminal, ctx.app
    country = _terminal_value(t, "country_code", bytes.fromhex(f"{app.country:04d}"))
    currency = _terminal_value(t, "currency_code", bytes.fromhex(f"{app.currency:04d}"))
    today = ctx.today
    return {
        0x9F02: bytes.fromhex("000000000100"), 0x9F03: bytes(6), 0x9F1A: country, 0x95: bytes(5),
        0x5F2A: currency, 0x9A: bytes.fromhex(today.strftime("%y%m%d")), 0x9C: b"\x00",
        0x9F37: os.urandom(4), 0x9F35: _terminal_value(t, "terminal_type", b"\x22"),
        0x9F33: _terminal_value(t, "capabilities", bytes.fromhex("E0F8C8")), 0x9F34: bytes.fromhex("3F0000"),
        0x9F21: bytes.fromhex(time.strftime("%H%M%S")), 0x9F40: bytes.fromhex("6000F0A001"),
        0x9F66: bytes.fromhex("36000000"),
    }  # fmt: skip


# -- records -------------------------------------------------------------------------------


def _read_records(ctx: _Ctx) -> None:
    c, afl = ctx.c, ctx.afl
    ok1 = len(afl) > 0 and len(afl) % 4 == 0
    c.check("AFL-001", ok1, f"AFL of {len(afl)} bytes", "4n bytes, n ≥ 1", _h(afl))
    seen: set[tuple[int, int]] = set()
    dup = False
    static = b""
    static_ok = True
    for i in range(0, len(afl) - len(afl) % 4, 4):
        sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        c.check("AFL-002", 1 <= sfi <= 30 and first >= 1 and last >= first and afl[i] & 7 == 0, f"entry {afl[i:i + 4].hex().upper()}")
        c.check("AFL-003", n_oda <= max(0, last - first + 1), f"entry {afl[i:i + 4].hex().upper()}: {n_oda} ODA records of {last - first + 1}")
        for rec in range(first, last + 1):
            if (sfi, rec) in seen:
                dup = True
                c.check("AFL-006", False, f"record {sfi}/{rec} named twice")
            seen.add((sfi, rec))
            data, sw = ctx.card.read_record(sfi, rec)
            if not c.check("AFL-004", sw == 0x9000, f"READ RECORD {sfi}/{rec} answered {sw:04X}", "9000", f"{sw:04X}"):
                if rec - first < n_oda:
                    static_ok = False
                continue
            ctx.records[(sfi, rec)] = data
            try:
                top = parse(data)
                well = len(top) == 1 and top[0].tag == 0x70 and top[0].raw == data
                c.check("AFL-005", well, f"record {sfi}/{rec}: " + ("one template 70" if well else "not exactly one template 70"))
                objs = flatten(data) if top else {}
                place = f"record {sfi}/{rec}"
                ctx.found[place] = objs
                for t in (t.tag for t in top[0].children() if not t.constructed) if top and top[0].tag == 0x70 else ():
                    for other, o in ctx.found.items():
                        if other != place and other.startswith("record") and t in o:
                            c.check("DATA-DUP-001", False, f"{t:X} in {other} and {place}")
                if rec - first < n_oda:
                    if sfi <= 10:
                        if top and top[0].tag == 0x70:
                            static += top[0].value
                        else:
                            static_ok = False
                    else:
                        static += data
            except TlvError as exc:
                c.check("AFL-005", False, f"record {sfi}/{rec}: not BER-TLV ({exc})")
                if rec - first < n_oda:
                    static_ok = False
    if not dup:
        c.check("AFL-006", True, f"{len(seen)} distinct records")
    c.check("DATA-DUP-001", True, "no object twice in the records")
    if static_ok:
        tl = ctx.all_values().get(0x9F4A, b"")
        try:
            for tag, _ln in parse_dol(tl + b"\x00" * 0):
                pass
        except TlvError:
            pass
        ctx.static_data = static + (ctx.aip if tl == b"\x82" else b"")
        if tl and tl != b"\x82":
            ctx.static_data = None


# -- data objects by value and place ---------------------------------------------------------


def _data_rules(ctx: _Ctx) -> None:
    c = ctx.c
    expected = expected_objects(ctx.app, ctx.rec)
    where: dict[int, list[str]] = {}
    for place, objs in ctx.found.items():
        for t in objs:
            where.setdefault(t, []).append(place)
    wanted: set[int] = set()
    for e in expected:
        wanted.add(e.tag)
        rid = R.rule_for_tag(e.tag)
        places = where.get(e.tag, [])
        name = _tagname(e.tag)
        if not places:
            if e.value is None and e.tag in (0x92, 0x9F48, 0x5F25, 0x9F0B, 0x9F1F, 0x9F20):
                continue  # optional, may be empty
            c.check(rid, False, f"{name} missing (expected in {e.place}; {e.source})", _h(e.value), "absent")
            c.check("DATA-PLACE-001", False, f"{name} missing from {e.place}")
            continue
        if e.place in places:
            c.check("DATA-PLACE-001", True, "objects in their places")
            found = ctx.found[e.place][e.tag]
        else:
            c.check("DATA-PLACE-001", False, f"{name} in {', '.join(places)}, the profile puts it in {e.place}", e.place, ", ".join(places))
            found = ctx.found[places[0]][e.tag]
        if e.value is None:
            if e.tag == 0x57 or rid != R.OTHER_DATA[0]:
                pass
            continue
        _value_check(ctx, rid, e, found)
    for tag, places in where.items():
        if tag in TEMPLATES or tag in wanted:
            continue
        c.check("DATA-UNEXP-001", False, f"unexpected {_tagname(tag)} in {', '.join(places)}", "absent", ", ".join(places))
    c.check("DATA-UNEXP-001", True, "no unexpected objects")
    # 57 with a record without discretionary data: only the prefix is determined
    return


def _value_check(ctx: _Ctx, rid: str, e: Expected, found: bytes) -> None:
    c, name = ctx.c, _tagname(e.tag)
    assert e.value is not None
    if e.tag == 0x57 and not ctx.rec.discretionary:
        exp_digits = e.value.hex().upper().rstrip("F")
        ok = found.hex().upper().startswith(exp_digits)
        c.check(rid, ok, f"{name}: PAN, expiry and service code (the record gives no discretionary data)", exp_digits + "…", found.hex().upper())
        return
    c.check(rid, found == e.value, f"{name} ({e.source})", _h(e.value), _h(found))


# -- consistency ------------------------------------------------------------------------------


CVN_CDOL1 = [0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37]


def _consistency_rules(ctx: _Ctx) -> None:
    c, v, app = ctx.c, ctx.all_values(), ctx.app
    aip = ctx.aip + bytes(2)
    sda, dda, cvm, cda = aip[0] & 0x40, aip[0] & 0x20, aip[0] & 0x10, aip[0] & 0x01
    have = set(v)
    missing = [t for t in (0x5A, 0x5F24, 0x8C, 0x8D) if t not in have]
    c.check("AFL-007", not missing, "mandatory 5A 5F24 8C 8D" + (f": missing {' '.join(f'{t:X}' for t in missing)}" if missing else ""))
    for rid, on, tags, what in (("AIP-001", sda, (0x8F, 0x90, 0x9F32, 0x93), "SDA"), ("AIP-002", dda, (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47), "DDA"),
                                ("AIP-003", cda, (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47), "CDA")):  # fmt: skip
        if not on:
            c.na(rid, f"AIP does not announce {what}")
            continue
        miss = [t for t in tags if t not in have]
        c.check(rid, not miss, f"AIP {ctx.aip.hex().upper()} announces {what}" + (f"; missing {' '.join(f'{t:X}' for t in miss)}" if miss else ""))
    c.check("AIP-004", bool(cvm) == (0x8E in have), f"AIP cardholder verification bit {'set' if cvm else 'clear'}, 8E {'present' if 0x8E in have else 'absent'}")
    certs = [t for t in (0x90, 0x93, 0x9F46) if t in have]
    c.check("AIP-005", not certs or bool(sda or dda or cda), f"certificates {' '.join(f'{t:X}' for t in certs) or 'none'} with AIP {ctx.aip.hex().upper()}")
    # PAN, track 2, dates
    pan = v.get(0x5A, b"").hex().upper()
    pan_digits = pan.rstrip("F")
    if pan:
        c.check("PAN-001", pan_digits.isdigit() and 12 <= len(pan_digits) <= 19 and luhn_ok(pan_digits), f"PAN {pan_digits}: {len(pan_digits)} digits, Luhn {'ok' if pan_digits.isdigit() and luhn_ok(pan_digits) else 'wrong'}")
    t2 = v.get(0x57, b"").hex().upper()
    if t2:
        body = t2.rstrip("F") if t2.endswith("F") else t2
        sep = body.find("D")
        shape = sep > 0 and body.replace("D", "", 1).isdigit() and len(v[0x57]) <= 19 and t2.count("F") == len(t2) - len(body) <= 1
        c.check("TRK2-004", shape, f"track 2 {t2}")
        if sep > 0:
            c.check("TRK2-001", body[:sep] == pan_digits, "track 2 PAN vs 5A", pan_digits, body[:sep])
            if 0x5F24 in v:
                c.check("TRK2-002", body[sep + 1 : sep + 5] == v[0x5F24].hex()[:4], "track 2 expiry vs 5F24", v[0x5F24].hex()[:4], body[sep + 1 : sep + 5])
            if 0x5F30 in v:
                c.check("TRK2-003", body[sep + 5 : sep + 8] == v[0x5F30].hex()[-3:], "track 2 service code vs 5F30", v[0x5F30].hex()[-3:], body[sep + 5 : sep + 8])
            else:
                c.na("TRK2-003", "no 5F30 on the card")
    dates = {}
    for t in (0x5F24, 0x5F25):
        if t in v:
            d = v[t].hex()
            try:
                dates[t] = date(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]))
                c.check("DATE-001", len(v[t]) == 3, f"{t:X} {d}")
            except ValueError:
                c.check("DATE-001", False, f"{t:X} {d.upper()} is not a YYMMDD date")
    if 0x5F24 in dates:
        c.check("DATE-003", dates[0x5F24] >= ctx.today, f"expires {dates[0x5F24].isoformat()}", f"≥ {ctx.today.isoformat()}", dates[0x5F24].isoformat())
        if 0x5F25 in dates:
            c.check("DATE-002", dates[0x5F25] < dates[0x5F24], "effective before expiry", "5F25 < 5F24", f"{dates[0x5F25]} / {dates[0x5F24]}")
        else:
            c.na("DATE-002", "no effective date")
    # CVM list
    cvml = v.get(0x8E)
    if cvml is None:
        for rid in ("CVM-001", "CVM-002", "CVM-003", "CVM-004", "CVM-005"):
            c.na(rid, "no CVM list on the card")
    else:
        ok = len(cvml) >= 10 and len(cvml) % 2 == 0
        c.check("CVM-001", ok, f"CVM list of {len(cvml)} bytes", "8 + 2n bytes, n ≥ 1", _h(cvml))
        rules = [(cvml[i], cvml[i + 1]) for i in range(8, len(cvml) - 1, 2)]
        methods = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1E, 0x1F}
        for code, cond in rules:
            m = code & 0x3F
            c.check("CVM-002", (m in methods or 0x20 <= m <= 0x3E) and (cond <= 0x09 or cond >= 0x80) and not code & 0x80, f"rule {code:02X}{cond:02X}")
        x, y = int.from_bytes(cvml[:4], "big"), int.from_bytes(cvml[4:8], "big")
        uses_x = any(cond in (6, 7) for _, cond in rules)
        uses_y = any(cond in (8, 9) for _, cond in rules)
        c.check("CVM-003", (x == 0 or uses_x) and (y == 0 or uses_y), f"amount X {x} (used: {uses_x}), Y {y} (used: {uses_y})")
        caps = _terminal_value(ctx.terminal, "capabilities", bytes.fromhex("E0F8C8"))
        cvm_caps = caps[1] if len(caps) > 1 else 0
        support = {0x01: 0x80, 0x02: 0x40, 0x03: 0x80 | 0x20, 0x04: 0x10, 0x05: 0x10 | 0x20, 0x1E: 0x20, 0x1F: 0x08}
        usable = [code for code, _ in rules if (code & 0x3F) in support and cvm_caps & support[code & 0x3F] == support[code & 0x3F]]
        c.check("CVM-004", bool(usable), f"terminal CVM capabilities {cvm_caps:02X}: {len(usable)} of {len(rules)} rules supported")
        if any(code & 0x3F in (0x04, 0x05) for code, _ in rules):
            c.check("CVM-005", 0x9F46 in have or 0x9F2D in have, "enciphered PIN: " + ("ICC key certificate present" if 0x9F46 in have else "no ICC (PIN) key certificate"))
        else:
            c.na("CVM-005", "no enciphered offline PIN rule")
    # DOLs
    dols: dict[int, list[int]] = {}
    for t in (0x8C, 0x8D, 0x9F38, 0x9F49):
        raw = v.get(t)
        if raw is None:
            continue
        try:
            dol_items = parse_dol(raw)
            dols[t] = [tag for tag, _ in dol_items]
            c.check("CDOL-003", len(set(dols[t])) == len(dols[t]), f"{t:X} {'has a tag twice' if len(set(dols[t])) != len(dols[t]) else 'well formed'}")
        except TlvError as exc:
            c.check("CDOL-003", False, f"{t:X} malformed: {exc}")
    if 0x8C in dols:
        miss = [t for t in CVN_CDOL1 if t not in dols[0x8C]]
        c.check("CDOL-001", not miss, f"CDOL1 for CVN {app.cvn}" + (f": missing {' '.join(f'{t:X}' for t in miss)}" if miss else ""), " ".join(f"{t:X}" for t in CVN_CDOL1), _h(v[0x8C]))
    if 0x8D in dols:
        c.check("CDOL-002", 0x8A in dols[0x8D], "CDOL2 " + ("contains" if 0x8A in dols[0x8D] else "lacks") + " 8A")
    if dda or cda:
        ddol = dols.get(0x9F49, [0x9F37])
        c.check("DDOL-001", 0x9F37 in ddol, "DDOL " + ("of the card" if 0x9F49 in dols else "default of the terminal (9F3704)") + (" contains" if 0x9F37 in ddol else " lacks") + " 9F37")
    else:
        c.na("DDOL-001", "no DDA/CDA")
    # SDA tag list
    if 0x9F4A in v:
        c.check("SDA-002", v[0x9F4A] == b"\x82", "static data authentication tag list", "82", _h(v[0x9F4A]))
    else:
        c.na("SDA-002", "no 9F4A")


# -- ODA ---------------------------------------------------------------------------------------


def _oda(ctx: _Ctx) -> None:
    c, v, keys, app = ctx.c, ctx.all_values(), ctx.keys, ctx.app
    iss_rules = [f"CERT-ISS-00{i}" for i in range(1, 10)]
    icc_rules = ["CERT-ICC-001", "CERT-ICC-002", "CERT-ICC-003", "CERT-ICC-PAN-001", "CERT-ICC-005", "CERT-ICC-006", "CERT-ICC-007"]
    if 0x90 not in v and 0x8F not in v:
        for rid in iss_rules + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "no ODA data on the card")
        return
    idx = v.get(0x8F, b"\x00")[0] if v.get(0x8F) else -1
    rid_ = app.aid[:5]
    ca = keys.ca_key(rid_, idx)
    note = ""
    if ca is None:
        for k in getattr(ctx.terminal, "ca_keys", None) or []:
            if getattr(k, "rid", None) == rid_ and getattr(k, "index", None) == idx:
                ca = k
    if ca is None:
        cas = [(n, key) for n, key in keys.rsa_public.items() if key[0] == "CA"]
        if len(cas) == 1:
            from .sources import CaKey

            ca = CaKey(rid_, idx, cas[0][1][1], cas[0][1][2])
            note = f" (RID {rid_.hex().upper()} index {idx:02X} not listed; the key store's only CA key {cas[0][0]!r})"
    if not c.check("CERT-ISS-001", ca is not None, f"CA key RID {rid_.hex().upper()} index {idx:02X}" + (note or (" known" if ca else " unknown"))):
        for rid in iss_rules[1:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "CA public key unknown")
        return
    assert ca is not None
    n_ca = (ca.modulus.bit_length() + 7) // 8
    cert = v.get(0x90, b"")
    if not c.check("CERT-ISS-002", len(cert) == n_ca, "issuer certificate length", str(n_ca), str(len(cert))):
        for rid in iss_rules[2:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "issuer certificate unusable")
        return
    x = _recover(cert, ca.modulus, ca.exponent)
    c.check("CERT-ISS-003", x[0] == 0x6A and x[-1] == 0xBC and x[1] == 0x02, "recovered header/format/trailer", "6A 02 … BC", f"{x[0]:02X} {x[1]:02X} … {x[-1]:02X}")
    n_i, e_len = x[13], x[14]
    rem = v.get(0x92, b"")
    exp_i = v.get(0x9F32, b"")
    digest = _sha1(x[1 : n_ca - 21], rem, exp_i)
    c.check("CERT-ISS-004", digest == x[n_ca - 21 : n_ca - 1], "issuer certificate hash", _h(x[n_ca - 21 : n_ca - 1]), _h(digest))
    ident = x[2:6].hex().upper().rstrip("F")
    pan = v.get(0x5A, b"").hex().upper().rstrip("F")
    c.check("CERT-ISS-005", bool(ident) and pan.startswith(ident), "issuer identifier vs PAN", ident, pan[: len(ident)])
    c.check("CERT-ISS-006", _mmyy_ok(x[6:8], ctx.today), f"issuer certificate expiry MMYY {x[6:8].hex()}", f"≥ {ctx.today:%m%y}", x[6:8].hex())
    room = n_ca - 36
    need = max(0, n_i - room)
    c.check("CERT-ISS-007", len(rem) == need, f"N_I {n_i}, room {room}: remainder of {need} bytes needed", str(need), str(len(rem)))
    c.check("CERT-ISS-008", x[11] == 1 and x[12] == 1, "algorithm indicators", "01 01", f"{x[11]:02X} {x[12]:02X}")
    modulus = (x[15 : n_ca - 21][:n_i] if n_i <= room else x[15 : n_ca - 21] + rem)
    n_iss, e_iss = int.from_bytes(modulus, "big"), int.from_bytes(exp_i or b"\x03", "big")
    ctx.issuer_key = (n_iss, e_iss)
    ks_iss = keys.rsa_key(app.keys.get("issuer_rsa"), "ISSUER")
    if ks_iss is None:
        c.na("CERT-ISS-009", "the key store does not hold the issuer key")
    else:
        c.check("CERT-ISS-009", (ks_iss[1], ks_iss[2]) == (n_iss, e_iss) and len(exp_i) == e_len, f"issuer key {ks_iss[0]!r} of the key store vs the certified key",
                f"{ks_iss[1].bit_length()} bits, e={ks_iss[2]}", f"{n_iss.bit_length()} bits, e={e_iss}")  # fmt: skip
    size_i = len(modulus)
    sd = ctx.static_data
    # SDA
    if 0x93 in v:
        if sd is None:
            c.check("SDA-001", False, "static data to be authenticated could not be built (ODA records / 9F4A)")
        else:
            s = v[0x93]
            y = _recover(s, n_iss, e_iss) if len(s) == size_i else b""
            ok = bool(y) and y[0] == 0x6A and y[1] == 0x03 and y[-1] == 0xBC and _sha1(y[1 : size_i - 21], sd) == y[size_i - 21 : size_i - 1]
            c.check("SDA-001", ok, "signed static application data " + ("verifies" if ok else "does not verify"))
    else:
        c.na("SDA-001", "no 93 on the card")
    # ICC certificate
    if 0x9F46 not in v:
        for rid in icc_rules + ["DDA-001"]:
            c.na(rid, "no ICC certificate on the card")
        return
    ic = v[0x9F46]
    if not c.check("CERT-ICC-001", len(ic) == size_i, "ICC certificate length", str(size_i), str(len(ic))):
        for rid in icc_rules[1:] + ["DDA-001"]:
            c.na(rid, "ICC certificate unusable")
        return
    y = _recover(ic, n_iss, e_iss)
    c.check("CERT-ICC-002", y[0] == 0x6A and y[1] == 0x04 and y[-1] == 0xBC, "recovered header/format/trailer", "6A 04 … BC", f"{y[0]:02X} {y[1]:02X} … {y[-1]:02X}")
    n_ic = y[19]
    rem_ic, exp_ic = v.get(0x9F48, b""), v.get(0x9F47, b"")
    if sd is None:
        c.check("CERT-ICC-003", False, "static data to be authenticated could not be built")
    else:
        dg = _sha1(y[1 : size_i - 21], rem_ic, exp_ic, sd)
        c.check("CERT-ICC-003", dg == y[size_i - 21 : size_i - 1], "ICC certificate hash over the static data", _h(y[size_i - 21 : size_i - 1]), _h(dg))
    cert_pan = y[2:12].hex().upper().rstrip("F")
    c.check("CERT-ICC-PAN-001", cert_pan == pan, "PAN in the ICC certificate vs 5A", pan, cert_pan)
    exp_card = v.get(0x5F24, b"\x00\x00")
    cert_ym = (int(y[13:14].hex() or 0), int(y[12:13].hex() or 0)) if y[12:14].hex().isdigit() else (0, 0)
    card_ym = (int(exp_card[:1].hex()), int(exp_card[1:2].hex())) if exp_card[:2].hex().isdigit() else (0, 0)
    c.check("CERT-ICC-005", _mmyy_ok(y[12:14], ctx.today) and cert_ym >= card_ym, f"ICC certificate expiry MMYY {y[12:14].hex()}, application expires {exp_card[:2].hex()} (YYMM)",
            f"≥ {exp_card[1:2].hex()}{exp_card[:1].hex()}", y[12:14].hex())  # fmt: skip
    room_ic = size_i - 42
    need_ic = max(0, n_ic - room_ic)
    c.check("CERT-ICC-006", len(rem_ic) == need_ic, f"N_IC {n_ic}, room {room_ic}", str(need_ic), str(len(rem_ic)))
    mod_ic = y[21 : size_i - 21][:n_ic] if n_ic <= room_ic else y[21 : size_i - 21] + rem_ic
    n_icc, e_icc = int.from_bytes(mod_ic, "big"), int.from_bytes(exp_ic or b"\x03", "big")
    ctx.icc_key = (n_icc, e_icc)
    if app.icc_key_bits is not None:
        c.check("CERT-ICC-007", n_ic * 8 == app.icc_key_bits and e_icc == app.icc_key_exponent, "ICC key size/exponent", f"{app.icc_key_bits} bits, e={app.icc_key_exponent}", f"{n_ic * 8} bits, e={e_icc}")
    else:
        c.na("CERT-ICC-007", "the profile gives no icc_key")
    # DDA
    aip = ctx.aip + bytes(2)
    if aip[0] & 0x20:
        ddol = parse_dol(v[0x9F49]) if 0x9F49 in v else [(0x9F37, 4)]
        ddata = _dol_data(ddol, _terminal_values(ctx))
        data, sw = ctx.card.send(bytes((0x00, 0x88, 0, 0, len(ddata))) + ddata + b"\x00")
        sdad = b""
        if sw == 0x9000:
            top = parse(data)
            sdad = top[0].value if top and top[0].tag == 0x80 else flatten(data).get(0x9F4B, b"")
        size_ic = (n_icc.bit_length() + 7) // 8
        z = _recover(sdad, n_icc, e_icc) if len(sdad) == size_ic else b""
        ok = bool(z) and z[0] == 0x6A and z[1] == 0x05 and z[-1] == 0xBC and _sha1(z[1 : size_ic - 21], ddata) == z[size_ic - 21 : size_ic - 1]
        c.check("DDA-001", ok, f"INTERNAL AUTHENTICATE {sw:04X}: signature " + ("verifies" if ok else "does not verify"))
    else:
        c.na("DDA-001", "AIP does not announce DDA")


# -- PIN ---------------------------------------------------------------------------------------


def _pin_block(pin: str) -> bytes:
    return bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))


def _verify(ctx: _Ctx, pin: str) -> int:
    """VERIFY with plaintext PIN if the list allows, else enciphered under the ICC key."""
    rules = ctx.all_values().get(0x8E, b"")
    codes = {rules[i] & 0x3F for i in range(8, len(rules) - 1, 2)}
    if codes & {0x01, 0x03} or ctx.icc_key is None:
        _d, sw = ctx.card.send(bytes.fromhex("0020008008") + _pin_block(pin))
        return sw
    chal, sw = ctx.card.send(bytes.fromhex("0084000000"))
    if sw != 0x9000:
        return sw
    n, e = ctx.icc_key
    size = (n.bit_length() + 7) // 8
    block = b"\x7F" + _pin_block(pin) + chal[:8]
    block += os.urandom(size - len(block))
    enc = pow(int.from_bytes(block, "big"), e, n).to_bytes(size, "big")
    _d, sw = ctx.card.send(bytes((0x00, 0x20, 0x00, 0x88, size)) + enc)
    return sw


def _pin(ctx: _Ctx) -> None:
    c, app = ctx.c, ctx.app
    if not app.offline_pin:
        for rid in ("KEY-PIN-001", "KEY-PIN-002", "KEY-PIN-003"):
            c.na(rid, "no offline PIN CVM in the profile")
        return
    if ctx.destructive:
        sw = _verify(ctx, "0000" if ctx.rec.pin != "0000" else "1111")
        c.check("KEY-PIN-003", sw == 0x63C0 | (app.pin_try_limit - 1), f"a wrong PIN answered {sw:04X}", f"63C{app.pin_try_limit - 1:X}", f"{sw:04X}")
    else:
        c.na("KEY-PIN-003", "destructive checks not requested (--destructive)")
    sw = _verify(ctx, ctx.rec.pin)
    c.check("KEY-PIN-001", sw == 0x9000, f"VERIFY with the record's PIN answered {sw:04X}", "9000", f"{sw:04X}")
    d, sw2 = ctx.card.get_data(0x9F17)
    ptc = _value_of_get_data(d, 0x9F17) if sw2 == 0x9000 else None
    c.check("KEY-PIN-002", ptc is not None and ptc[0] == app.pin_try_limit, "PIN try counter after VERIFY", str(app.pin_try_limit), str(ptc[0]) if ptc else f"SW {sw2:04X}")


# -- GENERATE AC -------------------------------------------------------------------------------


def _generate_ac(ctx: _Ctx) -> None:
    c, app, v = ctx.c, ctx.app, ctx.all_values()
    if 0x8C not in v:
        for rid in ("GENAC-001", "GENAC-002", "GENAC-003", "KEY-AC-001", "KEY-AC-002", "CDA-001", "KEY-SMI-001"):
            c.na(rid, "no CDOL1")
        return
    values = _terminal_values(ctx)
    values[0x82], values[0x9F36] = ctx.aip, (ctx.atc or 0).to_bytes(2, "big")
    cdol1 = parse_dol(v[0x8C])
    data1 = _dol_data(cdol1, values)
    cda = bool((ctx.aip + b"\x00")[0] & 0x01) and ctx.icc_key is not None
    p1 = 0x80 | (0x10 if cda else 0)
    data, sw = ctx.card.send(bytes((0x80, 0xAE, p1, 0, len(data1))) + data1 + b"\x00")
    if not c.check("GENAC-001", sw == 0x9000, f"GENERATE AC (ARQC{'+CDA' if cda else ''}) answered {sw:04X}", "9000", f"{sw:04X}"):
        c.check("KEY-AC-001", False, f"no ARQC to verify: GENERATE AC answered {sw:04X}")
        for rid in ("GENAC-002", "GENAC-003", "KEY-AC-002", "CDA-001", "KEY-SMI-001"):
            c.na(rid, "GENERATE AC failed")
        return
    top = parse(data)
    resp: dict[int, bytes] = {}
    fmt = 0
    if top and top[0].tag == 0x80:
        fmt, val = 1, top[0].value
        resp = {0x9F27: val[:1], 0x9F36: val[1:3], 0x9F26: val[3:11], 0x9F10: val[11:]}
    elif top and top[0].tag == 0x77:
        fmt = 2
        resp = {t.tag: t.value for t in top[0].children()}
    c.check("GENAC-002", fmt == app.response_format or (cda and fmt == 2), f"response format {fmt}", str(app.response_format), str(fmt))
    cid = resp.get(0x9F27, b"\x00")[0]
    ac = resp.get(0x9F26)
    if cda:
        sdad = resp.get(0x9F4B, b"")
        n, e = ctx.icc_key  # type: ignore[misc]
        size = (n.bit_length() + 7) // 8
        z = _recover(sdad, n, e) if len(sdad) == size else b""
        ok = bool(z) and z[0] == 0x6A and z[1] == 0x05 and z[-1] == 0xBC
        if ok:
            ok = _sha1(z[1 : size - 21], values[0x9F37]) == z[size - 21 : size - 1]
        if ok:
            ldd = z[3]
            dyn = z[4 : 4 + ldd]
            k = dyn[0]
            ac = dyn[2 + k : 10 + k]
            tdhc = dyn[10 + k : 30 + k]
            cover = b"".join(t.raw for t in top[0].children() if t.tag != 0x9F4B)
            ok = dyn[1 + k] == cid and tdhc == _sha1(ctx.pdol_data, data1, cover)
        c.check("CDA-001", ok, "CDA signed dynamic data " + ("verifies (CID, AC, transaction data hash)" if ok else "does not verify"))
    else:
        c.na("CDA-001", "AIP does not announce CDA" if not (ctx.aip + b"\x00")[0] & 1 else "no ICC key recovered")
    atc = resp.get(0x9F36, b"")
    if ctx.atc is not None and atc:
        c.check("GENAC-003", int.from_bytes(atc, "big") == ctx.atc + 1, "ATC after GPO", str(ctx.atc + 1), str(int.from_bytes(atc, "big")))
    else:
        c.na("GENAC-003", "ATC not readable before the transaction")
    iad = resp.get(0x9F10, b"")
    cvn_code = {10: 0x0A, 18: 0x12, 16: 0x10}.get(app.cvn, app.cvn)
    dki = int(app.risk.get("dki", 1))
    if app.cvn in (10, 18):
        got = (iad[2], iad[1]) if len(iad) >= 3 else None
    else:
        got = (iad[1], iad[0]) if len(iad) >= 2 else None
    c.check("KEY-AC-002", got == (cvn_code, dki), "IAD CVN and DKI", f"CVN {cvn_code:02X} DKI {dki:02X}", f"CVN {got[0]:02X} DKI {got[1]:02X}" if got else _h(iad))
    if cid & 0xC0 != 0x80 or ac is None:
        c.check("KEY-AC-001", False, f"no ARQC to verify (CID {cid:02X})")
    else:
        _verify_ac(ctx, values, resp, ac, iad, atc)
    if ctx.destructive:
        _script(ctx, values, ac or b"", atc)
    else:
        c.na("KEY-SMI-001", "destructive checks not requested (--destructive): a script changes card state")
    # complete the transaction: second GENERATE AC asking for an AAC (unable to go online)
    if 0x8D in v:
        values[0x8A] = b"Z3"
        data2 = _dol_data(parse_dol(v[0x8D]), values)
        ctx.card.send(bytes((0x80, 0xAE, 0x00, 0, len(data2))) + data2 + b"\x00")


def _imks(ctx: _Ctx) -> tuple[tuple[str, bytes] | None, tuple[str, bytes] | None, tuple[str, bytes] | None]:
    k, a = ctx.keys, ctx.app.keys
    return k.symmetric_key(a.get("imk_ac"), "IMK-AC"), k.symmetric_key(a.get("imk_smi"), "IMK-SMI"), k.symmetric_key(a.get("imk_smc"), "IMK-SMC")


def _cvn_object(ctx: _Ctx) -> Any:
    from pyemv import cvn

    ac, smi, smc = _imks(ctx)
    if ac is None or smi is None or smc is None:
        return None
    klass = {10: cvn.VisaCVN10, 18: cvn.VisaCVN18, 16: cvn.MasterCardCVN16}.get(ctx.app.cvn)
    if klass is None:
        return None
    return klass(ac[1], smi[1], smc[1], ctx.rec.pan, ctx.rec.psn)


def _verify_ac(ctx: _Ctx, values: dict[int, bytes], resp: dict[int, bytes], ac: bytes, iad: bytes, atc: bytes) -> None:
    c = ctx.c
    obj = _cvn_object(ctx)
    if obj is None:
        c.na("KEY-AC-001", f"no IMK-AC/SMI/SMC in the key store for {ctx.app.keys.get('imk_ac')!r} or CVN {ctx.app.cvn} unsupported")
        return
    args = [values[t] for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)] + [ctx.aip, atc]
    try:
        if ctx.app.cvn == 18:
            exp = obj.generate_ac(*args, iad)
        elif ctx.app.cvn == 10:
            exp = obj.generate_ac(*args, iad[3:7])
        else:
            exp = obj.generate_ac(*args, iad[2:8])
    except Exception as exc:  # pyemv refuses malformed input
        c.check("KEY-AC-001", False, f"ARQC could not be computed: {type(exc).__name__}")
        return
    name = _imks(ctx)[0]
    c.check("KEY-AC-001", exp == ac, f"ARQC under IMK-AC {name[0] if name else '?'!r} (CVN {ctx.app.cvn}) " + ("verifies" if exp == ac else "does not verify"),
            "ARQC = pyemv(IMK)", "match" if exp == ac else "mismatch")  # fmt: skip


def _script(ctx: _Ctx, values: dict[int, bytes], ac: bytes, atc: bytes) -> None:
    """Online approval then a MACed PUT DATA of an unchanged value (state-changing in
    principle: script counters); the card accepting it proves the SMI key."""
    c, v = ctx.c, ctx.all_values()
    obj = _cvn_object(ctx)
    if obj is None or 0x8D not in v:
        c.na("KEY-SMI-001", "no IMKs in the key store or no CDOL2")
        return
    try:
        arpc = obj.generate_arpc(ac, b"00") if ctx.app.cvn != 18 else obj.generate_arpc(ac, b"\x00\x00\x00\x00")
    except Exception:
        arpc = b""
    values[0x8A] = b"00"
    values[0x91] = arpc + (b"00" if ctx.app.cvn != 18 else b"\x00\x00\x00\x00")
    data2 = _dol_data(parse_dol(v[0x8D]), values)
    ctx.card.send(bytes((0x80, 0xAE, 0x40, 0, len(data2))) + data2 + b"\x00")
    target = 0x9F42 if 0x9F42 in v else 0x5F28
    value = v.get(target, b"")
    header = bytes((0x04, 0xDA)) + target.to_bytes(2, "big") + bytes((len(value) + 8,))
    try:
        mac = obj.generate_command_mac(header, ac, atc, value)
    except Exception as exc:
        c.na("KEY-SMI-001", f"script MAC not computable: {type(exc).__name__}")
        return
    _d, sw = ctx.card.send(header + value + mac[:8])
    c.check("KEY-SMI-001", sw == 0x9000, f"PUT DATA {target:X} with a MAC under the SMI key answered {sw:04X}", "9000", f"{sw:04X}")


# -- log, directory -----------------------------------------------------------------------------


def _log_file(ctx: _Ctx) -> None:
    c, app = ctx.c, ctx.app
    if app.log_sfi is None:
        c.na("LOG-002", "the profile has no log")
        c.na("LOG-003", "the profile has no log")
        return
    in_afl = any(ctx.afl[i] >> 3 == app.log_sfi for i in range(0, len(ctx.afl), 4))
    data, sw = ctx.card.read_record(app.log_sfi, 1)
    c.check("LOG-002", not in_afl and sw in (0x9000, 0x6A83), f"log SFI {app.log_sfi} {'in' if in_afl else 'not in'} the AFL; READ RECORD {app.log_sfi}/1 answered {sw:04X}")
    if sw == 0x9000:
        want = sum(n for _t, n in app.log_format)
        c.check("LOG-003", len(data) == want, "log record length", str(want), str(len(data)))
    else:
        c.na("LOG-003", "the log is empty")


def _directory(ctx: _Ctx) -> None:
    c, app = ctx.c, ctx.app
    data, sw = ctx.card.select(b"1PAY.SYS.DDF01")
    if sw != 0x9000:
        c.na("DIR-001", f"no PSE (SELECT answered {sw:04X})")
        return
    sfi = flatten(data).get(0x88, b"\x01")[0]
    entries = []
    for rec in range(1, 32):
        d, sw = ctx.card.read_record(sfi, rec)
        if sw != 0x9000:
            break
        try:
            for t in parse(d)[0].children():
                if t.tag == 0x61:
                    entries.append({k.tag: k.value for k in t.children()})
        except (TlvError, IndexError):
            c.check("DIR-001", False, f"PSE record {sfi}/{rec} malformed")
    mine = [e for e in entries if e.get(0x4F) == app.aid]
    if not mine:
        c.check("DIR-001", False, f"{app.aid.hex().upper()} not in the PSE directory ({len(entries)} entries)")
        return
    e = mine[0]
    ok = e.get(0x50) == app.label.encode() and e.get(0x87, bytes((app.priority,))) == bytes((app.priority,))
    c.check("DIR-001", ok, "PSE entry label and priority", f"{app.label} / {app.priority}", f"{e.get(0x50, b'').decode(errors='replace')} / {_h(e.get(0x87))}")


# -- public API ----------------------------------------------------------------------------


def certify_card(
    channel: CardChannel,
    profile: IssuerProfile,
    record: Record,
    keys: KeyStore,
    *,
    terminal: Any = None,
    destructive: bool = False,
    today: date | None = None,
    card_id: str = "",
    source: str = "",
) -> CardReport:
    """Certify one card; every rule of the catalogue gives one result per application."""
    start = time.perf_counter()
    report = CardReport(card_id or f"{record.index:06d}", record.masked, record.index, profile.name, source,
                        started=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    card = _Card(channel)
    day = today or date.today()
    for app in profile.applications:
        col = _Collector(app.aid.hex().upper(), record.pan)
        ctx = _Ctx(card, app, record, keys, terminal, destructive, day, col)
        reason = "nothing on this card or in its source data for this rule to check"
        try:
            _certify_app(ctx)
        except _Stop as exc:
            reason = f"not reached: {exc}"
        except Exception as exc:  # a card answer the tester could not digest is a finding
            col.check("AFL-005" if isinstance(exc, TlvError) else "LIFE-APP-002", False, f"certification stopped: {type(exc).__name__}: {exc}")
            reason = f"not reached: {type(exc).__name__}"
        report.results.extend(col.results(APP_RULES, reason))
    card_col = _Collector("", record.pan)
    card_col.na("LIFE-CARD-001", "GET STATUS needs an SCP03 session with the GP keys; the tester has no SCP03 host implementation yet")
    report.results.extend(card_col.results(CARD_RULES, "not reached"))
    report.seconds = time.perf_counter() - start
    return report


def map_images(directory: Path) -> list[tuple[Path, int, str]]:
    """(image, record index, card id) for the emulated cards of a batch directory:
    from the job database (jobs.sqlite: cards.location ↔ records), else images whose
    name holds a card_id of cards.jsonl, else images in name order ↔ records 1, 2, …"""
    images = sorted(p for p in directory.glob("card-*.json") if not p.name.startswith("."))
    db = directory / "jobs.sqlite"
    out: list[tuple[Path, int, str]] = []
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT c.location, r.record_index, r.card_id FROM cards c JOIN records r ON r.record_index = c.record_index"
                " WHERE c.kind = 'image' AND c.status = 'personalized' ORDER BY r.record_index"
            ).fetchall()
        finally:
            con.close()
        for loc, idx, cid in rows:
            p = Path(loc)
            out.append((p if p.is_absolute() else directory / p, int(idx), str(cid or f"{idx:06d}")))
        if out:
            return out
    ids: dict[str, int] = {}
    cards = directory / "cards.jsonl"
    if cards.exists():
        for line in cards.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                ids[str(d["card_id"])] = int(d["record_index"])
    if not images:
        images = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".img") and p.name not in ("manifest.json",) and not p.name.startswith("."))
    for n, img in enumerate(images, 1):
        match = [(cid, idx) for cid, idx in ids.items() if cid in img.stem]
        if match:
            cid, idx = max(match, key=lambda m: len(m[0]))
            out.append((img, idx, cid))
        elif not ids:
            out.append((img, n, f"{n:06d}"))
    return out


def certify_batch(
    cards: list[tuple[Callable[[], CardChannel], int, str, str]],
    profile: IssuerProfile,
    records_path: str | os.PathLike[str],
    keys: KeyStore,
    **kw: Any,
) -> list[CardReport]:
    """Certify cards one after another: each item is (open channel, record
    index, card id, source description)."""
    recs = {r.index: r for r in read_records(records_path)}
    out = []
    for opener, idx, cid, src in cards:
        rec = recs.get(idx)
        if rec is None:
            rep = CardReport(cid, "-", idx, profile.name, src, error=f"no record {idx} in the records file")
        else:
            try:
                ch = opener()
            except Exception as exc:
                rep = CardReport(cid, rec.masked, idx, profile.name, src, error=redact(f"cannot open card: {exc}"))
            else:
                rep = certify_card(ch, profile, rec, keys, card_id=cid, source=src, **kw)
                close = getattr(ch, "close", None)
                if callable(close):
                    close()
        out.append(rep)
    return out


def iter_reader(reader: str, records: list[Record], wait: Callable[[str], None] | None = None) -> Iterator[tuple[Callable[[], CardChannel], int, str, str]]:
    from .channel import PyscardChannel

    for rec in records:
        if wait is not None:
            wait(f"present the card for record {rec.index} ({rec.masked}) and press Enter")
        yield (lambda: PyscardChannel(reader)), rec.index, f"{rec.index:06d}", reader


# -- command line ---------------------------------------------------------------------------


def add_commands(sub: Any, open_image: Callable[[str], CardChannel]) -> None:
    p = sub.add_parser("certify", help="certify personalized cards against the issuer's source data")
    p.add_argument("--profile", required=True, help="issuer profile YAML")
    p.add_argument("--records", required=True, help="cardholder records (CSV / JSON Lines)")
    p.add_argument("--keys", required=True, help="issuer key store (JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cards", metavar="DIR", help="perso batch directory / directory of emulated card images")
    src.add_argument("--card", metavar="IMAGE", help="one emulated card image")
    src.add_argument("--reader", metavar="NAME", help="PC/SC reader: cards one after another")
    p.add_argument("--record", type=int, help="record number (1-based) for --card / --reader")
    p.add_argument("--report-dir", default="reports", help="where the reports go (default reports/)")
    p.add_argument("--destructive", action="store_true", help="also run state-changing checks (wrong PIN, scripts)")
    p.add_argument("--terminal", help="terminal profile YAML (capabilities, CA keys)")
    p.add_argument("--today", help="date for expiry checks, YYYY-MM-DD")
    p.set_defaults(func=lambda a, *_out: _run(a, open_image))


def _opener(open_image: Callable[[str], CardChannel], path: str) -> Callable[[], CardChannel]:
    return lambda: open_image(path)


def _prompt(msg: str) -> None:
    input(msg)


def _run(a: argparse.Namespace, open_image: Callable[[str], CardChannel]) -> int:
    from .report import write_reports

    try:
        profile = load_profile(a.profile)
        keys = load_keystore(a.keys)
        records = list(read_records(a.records))
    except (SourceError, OSError) as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return 2
    terminal = None
    if a.terminal:
        try:
            from .terminal import load_terminal

            terminal = load_terminal(a.terminal)
        except Exception as exc:
            print(f"certify: terminal profile: {exc}", file=sys.stderr)
            return 2
    kw: dict[str, Any] = {"terminal": terminal, "destructive": a.destructive}
    if a.today:
        kw["today"] = date.fromisoformat(a.today)
    items: list[tuple[Callable[[], CardChannel], int, str, str]]
    if a.card:
        idx = a.record or 1
        items = [(_opener(open_image, a.card), idx, f"{idx:06d}", a.card)]
    elif a.cards:
        mapped = map_images(Path(a.cards))
        if a.record:
            mapped = [m for m in mapped if m[1] == a.record]
        items = [(_opener(open_image, str(img)), idx, cid, str(img)) for img, idx, cid in mapped]
        if not items:
            print(f"certify: no card images found in {a.cards}", file=sys.stderr)
            return 2
    else:
        chosen = [r for r in records if a.record is None or r.index == a.record]
        items = list(iter_reader(a.reader, chosen, wait=_prompt))
    reports = certify_batch(items, profile, a.records, keys, **kw)
    paths = write_reports(reports, a.report_dir, echo=True)
    print("reports: " + ", ".join(str(p) for p in paths))
    return 1 if any(r.verdict == FAIL for r in reports) else 0

"""What the card should hold for one application and one record: dates, service
code, track 2 and its discretionary data, and :func:`expected_objects`, every
data object with its exact value and place (EMV Book 3 Annex A, EMV CPS).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date

from .fields import _hex, bcd, encode_dol
from .profile import KEY_TAGS, AppProfile
from .records import Record


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
        0x5F34: (bcd(rec.psn or "00", 1), "record psn"),
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
            if t == 0x5F34 and not rec.psn:
                continue  # omitted with the record's empty PSN: its absence is a rule of its own
            got: tuple[bytes | None, str] = values.get(t, (None, "key material (checked through the certificates)" if t in KEY_TAGS else "present"))
            out.append(Expected(t, got[0], f"record {r.sfi}/{r.number}", got[1]))
    return out


def today() -> date:
    return date.today()

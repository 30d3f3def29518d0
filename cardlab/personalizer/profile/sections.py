"""Readers for the sections of an application in the profile, each YAML → model
part with its problems named by field path: DOLs (EMV 4.4 Book 3 §5.4), the
``card`` section, the AFL layout (§10.2), the CVM list (Annex C3), ODA methods,
IACs, card risk management (cardlab DGIs 0D01/0D02, ``docs/dgi-map.md``), the
transaction log and the ICC key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .atr import KEYS as ATR_KEYS
from .atr import read_card_atr
from .checker import HEX, Checker, join_path, kind, seq
from .model import (
    ConversionRate,
    CvmList,
    CvmRule,
    DolEntry,
    GpDetails,
    Iacs,
    IccKey,
    LogSettings,
    RecordLayout,
    RiskManagement,
)
from .tables import (
    CVM_CONDITIONS,
    CVM_METHODS,
    DIVERSIFICATIONS,
    LIFE_CYCLES,
    NOT_IN_RECORDS,
    ODA_METHODS,
    RECORD_SOURCES,
    TAGS,
    fmt_tag,
)

_DOL_ITEM = re.compile(r"^\s*([0-9A-Fa-f]{2,4})\s*[:/ ]\s*(\d{1,3})\s*$")
_CARD_KEYS = ("isd_aid", "kmc", "diversification", "key_version", "target_life_cycle", "certify_as", "empty_psn",
              *ATR_KEYS)
#: ``card.certify_as``: how certification judges the counters — ``lived`` (default: against the
#: card's own history) or ``fresh`` (straight from perso: ATC small, last online ATC 0). The
#: personalizer only checks the value; the tester reads it (cardlab/tester/sources/profile.py).
CERTIFY_AS = ("lived", "fresh")
_RISK_KEYS = (
    "lcol", "ucol", "lower_cumulative", "upper_cumulative", "default_action", "issuer_auth_required",
    "arpc_method", "max_atc", "dki", "currency_conversion",
)  # fmt: skip
#: DGI 0D02 limits (docs/dgi-map.md): entries, n 8 mantissa, decimal exponent
_CONVERSION_ENTRIES = 8
_CONVERSION_MANTISSA = 99_999_999
_CONVERSION_EXPONENT = 12
_RATE = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
#: records whose DGI number is a card-internal DGI (0D01, 0D02, 0D03, 0E01; docs/dgi-map.md)
_INTERNAL_RECORDS = {(13, 1): "0D01", (13, 2): "0D02", (13, 3): "0D03", (14, 1): "0E01"}


def parse_dol(ck: Checker, value: object, p: str, *, allow_profile: bool = False) -> tuple[DolEntry, ...]:
    """A DOL written as hex (``9F0206 9F3704``) or a list of ``TAG:LENGTH`` items."""
    items: list[tuple[str, object]] = []
    if value is None:
        return ()
    if isinstance(value, str) and (":" in value or "/" in value):
        value = [v for v in re.split(r"[\s,]+", value) if v]
    if isinstance(value, str):
        compact = re.sub(r"\s", "", value)
        if not HEX.match(compact):
            ck.err(p, f"{value!r} is neither DOL hex nor a list of TAG:LENGTH")
            return ()
        raw = bytes.fromhex(compact)
        i = 0
        while i < len(raw):
            t = raw[i]
            j = i + 1
            if t & 0x1F == 0x1F:
                if j >= len(raw):
                    ck.err(p, "DOL ends inside a tag")
                    return ()
                t = (t << 8) | raw[j]
                j += 1
            if j >= len(raw):
                ck.err(p, f"DOL entry {fmt_tag(t)} has no length")
                return ()
            items.append((fmt_tag(t), raw[j]))
            i = j + 1
    elif isinstance(value, list):
        for k, item in enumerate(value):
            m = _DOL_ITEM.match(str(item)) if isinstance(item, (str, int)) else None
            if isinstance(item, Mapping) and len(item) == 1:
                ((t, ln),) = item.items()
                items.append((str(t), ln))
            elif m:
                items.append((m.group(1), int(m.group(2))))
            else:
                ck.err(f"{p}[{k}]", f"{item!r} is not TAG:LENGTH (e.g. '9F02:6')")
                items.append(("", 0))
    else:
        ck.err(p, f"expected a DOL (hex string or list of TAG:LENGTH), got {kind(value)}")
        return ()
    out: list[DolEntry] = []
    seen: set[int] = set()
    for k, (tag_text, length) in enumerate(items):
        ip = f"{p}[{k}]"
        if tag_text == "":
            continue
        tag = ck.tag(tag_text, ip)
        if tag is None:
            continue
        info = TAGS[tag]
        if info.source not in ("terminal", "card") and not allow_profile:
            ck.err(
                ip,
                f"tag {fmt_tag(tag)} ({info.name}) is card data from the {info.source}; "
                "a DOL asks the terminal for data",
            )
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 255:
            ck.err(ip, f"length {length!r} of {fmt_tag(tag)} is not 1..255")
            continue
        if info.length is not None and length != info.length:
            ck.err(ip, f"tag {fmt_tag(tag)} ({info.name}) is {info.length} bytes, not {length}")
        if tag in seen:
            ck.err(ip, f"tag {fmt_tag(tag)} appears twice")
        seen.add(tag)
        out.append(DolEntry(tag, length))
    if sum(e.length for e in out) > 252:
        ck.err(p, "the data it asks for exceeds 252 bytes")
    return tuple(out)


def parse_card(ck: Checker, raw: object) -> GpDetails:
    p = "card"
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, _CARD_KEYS)
    isd = ck.hexbytes(m, "isd_aid", p, range(5, 17))
    kmc = ck.key_name(m, "kmc", p, required=True) or ""
    div = ck.string(m, "diversification", p, default="kdf3").lower()
    if div not in DIVERSIFICATIONS:
        ck.err(f"{p}.diversification", f"{div!r} is not one of {', '.join(DIVERSIFICATIONS)}")
    kv = ck.integer(m, "key_version", p, 1, 0x7F, default=0x30)
    lc = ck.string(m, "target_life_cycle", p, default="SECURED").upper()
    if lc not in LIFE_CYCLES:
        ck.err(f"{p}.target_life_cycle", f"{lc!r} is not one of {', '.join(LIFE_CYCLES)}")
    certify_as = ck.string(m, "certify_as", p, default="lived").lower()
    if certify_as not in CERTIFY_AS:
        ck.err(f"{p}.certify_as", f"{certify_as!r} is not one of {', '.join(CERTIFY_AS)}")
    atr = read_card_atr(m, ck.err, p)  # card.atr / card.protocol (.atr)
    return GpDetails(isd, kmc, div, kv, lc, atr, empty_psn(ck, m, p))


def empty_psn(ck: Checker, m: Mapping[str, Any], p: str) -> str | None:
    """``card.empty_psn``: ``omit`` or ``"00"`` (YAML's 00 / 0 taken as "00"); absent: refused."""
    raw = m.get("empty_psn")
    if raw is None:
        return None
    value = "00" if raw == 0 and not isinstance(raw, bool) else str(raw).strip().lower()
    if value not in ("omit", "00"):
        ck.err(f"{p}.empty_psn", f"{raw!r} is not omit or \"00\"")
        return None
    return value


def parse_records(
    ck: Checker, m: Mapping[str, Any], p: str, extra: Mapping[int, bytes]
) -> tuple[RecordLayout, ...]:
    out: list[RecordLayout] = []
    seen_place: dict[tuple[int, int], str] = {}
    seen_tag: dict[int, str] = {}
    afl = seq(ck, m, "afl", p)
    if not afl:
        ck.err(join_path(p, "afl"), "missing: at least one file with records")
    for i, f in enumerate(afl):
        fp = f"{p}.afl[{i}]"
        fm = ck.mapping(f, fp)
        ck.known_keys(fm, fp, ("sfi", "records"))
        sfi = ck.integer(fm, "sfi", fp, 1, 30)
        recs = seq(ck, fm, "records", fp)
        if not recs:
            ck.err(join_path(fp, "records"), "missing: at least one record")
        for j, r in enumerate(recs):
            rp = f"{fp}.records[{j}]"
            rm = ck.mapping(r, rp)
            ck.known_keys(rm, rp, ("number", "oda", "data"))
            number = ck.integer(rm, "number", rp, 1, 254, default=j + 1)
            oda = ck.boolean(rm, "oda", rp, default=False)
            place = (sfi, number)
            if place in _INTERNAL_RECORDS:
                ck.err(
                    rp,
                    f"SFI {sfi} record {number} cannot be personalized: its DGI {_INTERNAL_RECORDS[place]} "
                    "is card-internal data (docs/dgi-map.md)",
                )
            if place in seen_place:
                ck.err(rp, f"SFI {sfi} record {number} is already defined at {seen_place[place]}")
            seen_place[place] = rp
            tags: list[int] = []
            data = seq(ck, rm, "data", rp)
            if not data:
                ck.err(join_path(rp, "data"), "missing: the data objects of the record")
            for k, t in enumerate(data):
                tp = f"{rp}.data[{k}]"
                tag = ck.tag(t, tp)
                if tag is None:
                    continue
                info = TAGS[tag]
                if (info.source not in RECORD_SOURCES or tag in NOT_IN_RECORDS) and tag not in extra:
                    ck.err(
                        tp,
                        f"tag {fmt_tag(tag)} ({info.name}) is not record data "
                        f"(it comes from the {info.source})",
                    )
                    continue
                if tag in seen_tag:
                    ck.err(tp, f"tag {fmt_tag(tag)} is already placed at {seen_tag[tag]}")
                    continue
                seen_tag[tag] = tp
                tags.append(tag)
            out.append(RecordLayout(sfi, number, tuple(tags), oda))
    return tuple(out)


def parse_conversion(
    ck: Checker, rm: Mapping[str, Any], rp: str, currency: int, cexp: int
) -> tuple[ConversionRate, ...]:
    """``risk.currency_conversion``: ``[{currency: 978, rate: "1.0850", exponent: 2}]``.

    ``rate`` is how many units of the application currency one unit of ``currency``
    is worth (a quoted decimal, kept exact); ``exponent`` is that currency's minor
    unit exponent (ISO 4217, default 2). The card's factor works on minor units:
    rate · 10^(application exponent − exponent), written as an n 8 mantissa and a
    decimal exponent 0..12 (DGI 0D02) without rounding.
    """
    p = f"{rp}.currency_conversion"
    entries = seq(ck, rm, "currency_conversion", rp)
    if len(entries) > _CONVERSION_ENTRIES:
        ck.err(p, f"{len(entries)} entries, at most {_CONVERSION_ENTRIES} (DGI 0D02)")
    out: list[ConversionRate] = []
    seen: dict[int, str] = {}
    for i, raw in enumerate(entries):
        ep = f"{p}[{i}]"
        em = ck.mapping(raw, ep)
        ck.known_keys(em, ep, ("currency", "rate", "exponent"))
        code = ck.integer(em, "currency", ep, 1, 999)
        exponent = ck.integer(em, "exponent", ep, 0, 9, default=2)
        if code == currency:
            ck.err(f"{ep}.currency", f"{code} is the application currency: it needs no conversion")
        elif code in seen:
            ck.err(f"{ep}.currency", f"{code} is already converted at {seen[code]}")
        seen.setdefault(code, ep)
        rate = _rate(ck, em.get("rate"), f"{ep}.rate")
        if rate is None:
            continue
        factor = rate * Fraction(10) ** (cexp - exponent)  # minor units per minor unit
        places = next((e for e in range(_CONVERSION_EXPONENT + 1) if (factor * 10**e).denominator == 1), None)
        if places is None:
            ck.err(
                f"{ep}.rate",
                f"{em['rate']} needs more than {_CONVERSION_EXPONENT} decimal places per minor unit "
                "(DGI 0D02 exponent 0..12)",
            )
            continue
        mantissa = int(factor * 10**places)
        if mantissa > _CONVERSION_MANTISSA:
            ck.err(
                f"{ep}.rate",
                f"{em['rate']} is {mantissa}/10^{places} per minor unit: more than 8 digits (DGI 0D02 n 8)",
            )
            continue
        out.append(ConversionRate(code, mantissa, places))
    return tuple(out)


def _rate(ck: Checker, v: object, p: str) -> Fraction | None:
    """A positive decimal written as a string (``"1.0850"``) or an integer, kept exact."""
    if v is None:
        ck.err(p, 'missing (units of the application currency per unit of the currency, e.g. "1.0850")')
        return None
    if isinstance(v, float):
        ck.err(p, f'{v!r} is a YAML number: quote the rate (e.g. "1.0850") to keep it exact')
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)) or not _RATE.match(str(v).strip()):
        ck.err(p, f'{v!r} is not a decimal rate (digits with an optional decimal point, e.g. "1.0850")')
        return None
    rate = Fraction(str(v).strip())
    if rate == 0:
        ck.err(p, "0: a rate must be above zero")
        return None
    return rate


def parse_cvm(ck: Checker, raw: object, p: str) -> CvmList | None:
    if raw is None:
        return None
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, ("amount_x", "amount_y", "rules"))
    x = ck.integer(m, "amount_x", p, 0, 0xFFFFFFFF, default=0)
    y = ck.integer(m, "amount_y", p, 0, 0xFFFFFFFF, default=0)
    rules: list[CvmRule] = []
    raw_rules = seq(ck, m, "rules", p)
    if not raw_rules:
        ck.err(join_path(p, "rules"), "missing: at least one rule")
    for i, r in enumerate(raw_rules):
        rp = f"{p}.rules[{i}]"
        rm = ck.mapping(r, rp)
        ck.known_keys(rm, rp, ("method", "condition", "on_fail"))
        method = ck.string(rm, "method", rp)
        cond = ck.string(rm, "condition", rp, default="always")
        on_fail = ck.string(rm, "on_fail", rp, default="next")
        ok = True
        if method and method not in CVM_METHODS:
            ck.err(f"{rp}.method", f"{method!r} is not one of {', '.join(CVM_METHODS)}")
            ok = False
        if cond not in CVM_CONDITIONS:
            ck.err(f"{rp}.condition", f"{cond!r} is not one of {', '.join(CVM_CONDITIONS)}")
            ok = False
        if on_fail not in ("next", "fail"):
            ck.err(f"{rp}.on_fail", f"{on_fail!r} is not 'next' or 'fail'")
            ok = False
        if ok and method:
            rules.append(CvmRule(method, cond, on_fail == "next"))
    if len(rules) > 30:
        ck.err(join_path(p, "rules"), f"{len(rules)} rules do not fit in a CVM list (at most 30)")
    return CvmList(x, y, tuple(rules))


def parse_languages(ck: Checker, m: Mapping[str, Any], p: str) -> tuple[str, ...]:
    """``languages``: up to 4 ISO 639-1 codes, the value of 5F2D."""
    languages: list[str] = []
    for i, lang in enumerate(seq(ck, m, "languages", p)):
        if not isinstance(lang, str) or not re.fullmatch(r"[a-z]{2}", lang):
            ck.err(f"{p}.languages[{i}]", f"{lang!r} is not an ISO 639-1 code (two lowercase letters)")
        else:
            languages.append(lang)
    if len(languages) > 4:
        ck.err(f"{p}.languages", "at most 4 languages (5F2D is 2..8 characters)")
    return tuple(languages)


def parse_oda(ck: Checker, m: Mapping[str, Any], p: str) -> tuple[str, ...]:
    """``oda``: SDA, DDA, CDA, none or a list of them, returned in ODA_METHODS order."""
    oda_raw = m.get("oda", "none")
    oda_list = [oda_raw] if isinstance(oda_raw, str) else oda_raw
    oda: list[str] = []
    if not isinstance(oda_list, list):
        ck.err(f"{p}.oda", f"expected SDA, DDA, CDA, none or a list of them, got {kind(oda_raw)}")
        oda_list = []
    for i, o in enumerate(oda_list):
        up = str(o).upper()
        if up == "NONE":
            if len(oda_list) > 1:
                ck.err(f"{p}.oda", "'none' cannot be combined with other methods")
            continue
        if up not in ODA_METHODS:
            ck.err(
                f"{p}.oda" + (f"[{i}]" if not isinstance(oda_raw, str) else ""),
                f"{o!r} is not one of SDA, DDA, CDA, none",
            )
        elif up in oda:
            ck.err(f"{p}.oda", f"{up} listed twice")
        else:
            oda.append(up)
    return tuple(m for m in ODA_METHODS if m in oda)


def parse_iac(ck: Checker, raw: object, p: str) -> Iacs:
    """``iac``: the Issuer Action Codes, 5 bytes each, zeros when not given."""
    iac_m = ck.mapping(raw, p)
    ck.known_keys(iac_m, p, ("denial", "online", "default"))
    return Iacs(
        ck.hexbytes(iac_m, "denial", p, (5,), default=bytes(5)),
        ck.hexbytes(iac_m, "online", p, (5,), default=bytes(5)),
        ck.hexbytes(iac_m, "default", p, (5,), default=bytes(5)),
    )


def parse_risk(ck: Checker, raw: object, rp: str, currency: int, cexp: int, issuer_auth: bool) -> RiskManagement:
    """``risk``: card risk management parameters (cardlab DGIs 0D01 and 0D02)."""
    rm = ck.mapping(raw, rp)
    ck.known_keys(rm, rp, _RISK_KEYS)
    risk = RiskManagement(
        lcol=ck.integer(rm, "lcol", rp, 0, 255, default=0),
        ucol=ck.integer(rm, "ucol", rp, 0, 255, default=0),
        lower_cumulative=ck.integer(rm, "lower_cumulative", rp, 0, 999_999_999_999, default=0),
        upper_cumulative=ck.integer(rm, "upper_cumulative", rp, 0, 999_999_999_999, default=0),
        default_action=ck.hexbytes(rm, "default_action", rp, (2,), default=b"\x00\x00"),
        issuer_auth_required=ck.boolean(rm, "issuer_auth_required", rp, default=False),
        arpc_method=ck.integer(rm, "arpc_method", rp, 1, 2, default=1),
        max_atc=ck.integer(rm, "max_atc", rp, 1, 0xFFFF, default=0xFFFF),
        dki=ck.integer(rm, "dki", rp, 0, 255, default=1),
        currency_conversion=parse_conversion(ck, rm, rp, currency, cexp),
    )
    if risk.ucol < risk.lcol:
        ck.err(f"{rp}.ucol", f"{risk.ucol} is below lcol {risk.lcol}")
    if risk.upper_cumulative < risk.lower_cumulative:
        ck.err(
            f"{rp}.upper_cumulative",
            f"{risk.upper_cumulative} is below lower_cumulative {risk.lower_cumulative}",
        )
    if risk.issuer_auth_required and not issuer_auth:
        ck.err(f"{rp}.issuer_auth_required", "true, but issuer_authentication is false (AIP b3)")
    return risk


def parse_log(ck: Checker, raw: object, lp: str) -> LogSettings | None:
    """``log``: the transaction log file (9F4D) and its record format (9F4F)."""
    if raw is None:
        return None
    lm = ck.mapping(raw, lp)
    ck.known_keys(lm, lp, ("sfi", "records", "format"))
    fmt = parse_dol(ck, lm.get("format"), f"{lp}.format")
    if not fmt:
        ck.err(f"{lp}.format", "missing: the data each log record holds")
    return LogSettings(ck.integer(lm, "sfi", lp, 11, 30), ck.integer(lm, "records", lp, 1, 255), fmt)


def parse_icc_key(ck: Checker, raw: object, kp: str, dynamic: bool) -> IccKey | None:
    """``icc_key``: size and exponent of the per-card RSA key, needed exactly when ``dynamic``
    (DDA or CDA)."""
    if raw is None:
        if dynamic:
            ck.err(kp, "missing: DDA/CDA need an ICC key (size, exponent)")
        return None
    km = ck.mapping(raw, kp)
    ck.known_keys(km, kp, ("size", "exponent"))
    size = ck.integer(km, "size", kp, 512, 1984)
    if size % 8:
        ck.err(f"{kp}.size", f"{size} is not a whole number of bytes")
    exp = ck.integer(km, "exponent", kp, 3, 65537, default=65537)
    if exp not in (3, 65537):
        ck.err(f"{kp}.exponent", f"{exp}: EMV allows 3 or 65537 (Book 2 §5.1)")
    if not dynamic:
        ck.err(kp, "given, but oda has neither DDA nor CDA")
    return IccKey(size, exp)


def parse_sda_tag_list(ck: Checker, m: Mapping[str, Any], p: str) -> tuple[int, ...]:
    """``sda_tag_list`` (9F4A): only 82, the AIP, may be signed besides the records (Book 3 §10.3)."""
    sda_tag_list: list[int] = []
    for i, t in enumerate(seq(ck, m, "sda_tag_list", p)):
        tag = ck.tag(t, f"{p}.sda_tag_list[{i}]")
        if tag is not None and tag != 0x82:
            ck.err(f"{p}.sda_tag_list[{i}]", "only 82 (AIP) may be listed (Book 3 §10.3)")
        elif tag is not None:
            sda_tag_list.append(tag)
    return tuple(sda_tag_list)


def parse_data(ck: Checker, raw: object, p: str) -> dict[int, bytes]:
    """``data``: constant data objects ({tag: hex}) of the profile that records may place."""
    extra: dict[int, bytes] = {}
    dm = ck.mapping(raw, p)
    for t, v in dm.items():
        tp = f"{p}.{t}"
        tag = ck.tag(t, tp)
        if tag is None:
            continue
        info = TAGS[tag]
        if info.source != "profile" or tag in NOT_IN_RECORDS:
            hint = " (give the scheme's certificate as keys.issuer_certificate)" if tag in (0x90, 0x92, 0x9F32) else ""
            ck.err(tp, f"tag {fmt_tag(tag)} ({info.name}) is not a constant the profile may set here{hint}")
            continue
        extra[tag] = ck.hexvalue(v, tp, (info.length,) if info.length else range(1, 253))
    return extra


"""hypothesis strategies for testing perso scripts, issuer profiles and cards.

Shipped with cardlab (``docs/testing-kit.md``); needs ``hypothesis`` (the
``test`` extra). Everything drawn is plain data — dicts ready for
:func:`cardlab.personalizer.records.validate`, profile and perso-script documents ready
for ``yaml.safe_dump``, APDUs as bytes — so the strategies combine with the
``cardlab`` pytest fixtures and with anything else.

* records: :func:`valid_records`, :func:`invalid_records` (one field
  corrupted; the field the rejection must name is returned with it);
* issuer profiles: :func:`profile_variations` of a base profile, within what a
  profile allows (labels, priorities, limits, CVN, ODA method, log on/off…);
* perso scripts: :func:`perso_scripts` (valid EMV CPS scripts for a profile),
  :func:`script_corruptions` (one corruption: wrong SW expectation, dropped
  step, altered literal data, swapped DGI) and :func:`all_single_corruptions`;
  DGI sets: :func:`dgi_sets`;
* APDUs: :func:`valid_apdus` (the card's command set), :func:`random_apdus`,
  :func:`mutated_apdus`, :func:`apdus`.

Card numbers drawn here are random test numbers with a correct Luhn digit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from .records_gen import luhn_digit

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "DEFAULT_TODAY",
    "all_single_corruptions",
    "apdus",
    "dgi_sets",
    "emv_cps_script",
    "invalid_records",
    "luhn_complete",
    "mutated_apdus",
    "perso_scripts",
    "profile_variations",
    "random_apdus",
    "script_corruptions",
    "valid_apdus",
    "valid_records",
]

DEFAULT_TODAY = date(2026, 1, 15)

# =========================================================================== records

_DIGITS = "0123456789"
NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ .,-/'"


def luhn_complete(body: str) -> str:
    """``body`` followed by its Luhn check digit."""
    return body + luhn_digit(body)


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


@st.composite
def valid_records(
    draw: st.DrawFn,
    today: date = DEFAULT_TODAY,
    *,
    bin_prefix: str = "",
    pan_lengths: tuple[int, int] = (12, 19),
    optional: bool = True,
    max_expiry_year: int = 2049,
) -> dict[str, str]:
    """A cardholder record (field → text) that :func:`cardlab.personalizer.records.validate`
    accepts on ``today``. ``bin_prefix`` fixes the first PAN digits (e.g. the
    issuer BIN the profile's keys are for); ``optional=False`` leaves out the
    optional fields. Expiry dates stop at ``max_expiry_year`` (at most 2049:
    EMV reads two-digit years 50-99 as 19YY, Book 4 §6.7.3, and the records
    validation refuses later expiry dates)."""
    lo, hi = max(pan_lengths[0], len(bin_prefix) + 1), pan_lengths[1]
    length = draw(st.integers(lo, hi))
    body = bin_prefix + draw(st.text(_DIGITS, min_size=length - 1 - len(bin_prefix), max_size=length - 1 - len(bin_prefix)))
    pan = luhn_complete(body)
    first = _month_index(today.year, today.month)
    exp_i = draw(st.integers(first, _month_index(max_expiry_year, 12)))
    exp_y, exp_m = divmod(exp_i, 12)
    rec = {
        "pan": pan,
        "psn": f"{draw(st.integers(0, 99)):02d}",
        "expiry": f"{exp_y:04d}-{exp_m + 1:02d}",
        "name": draw(
            st.text(NAME_ALPHABET, min_size=2, max_size=26).filter(lambda s: s.strip() == s and len(s) >= 2)
        ),
        "pin": draw(st.text(_DIGITS, min_size=4, max_size=12)),
    }
    if optional and draw(st.booleans()) and exp_i > _month_index(2000, 1):
        eff_y, eff_m = divmod(draw(st.integers(_month_index(2000, 1), min(exp_i - 1, first))), 12)
        rec["effective"] = f"{eff_y:04d}-{eff_m + 1:02d}"
    if optional and draw(st.booleans()):
        rec["service_code"] = draw(st.sampled_from("125679")) + draw(st.text(_DIGITS, min_size=2, max_size=2))
    if optional and draw(st.booleans()):
        rec["language"] = "".join(draw(st.lists(st.sampled_from(["en", "fr", "de", "es"]), min_size=1, max_size=4)))
    if optional and draw(st.booleans()):
        room = 37 - len(pan) - 8
        rec["discretionary"] = draw(st.text(_DIGITS, min_size=1, max_size=room))
    return rec


#: per field: (bad value, the field the rejection names). The values are the
#: same on any valid record (``effective`` ones are drawn with an expiry of 2098-01).
CORRUPTIONS: Mapping[str, Sequence[tuple[str, str]]] = {
    "pan": [("4761739001010118", "pan"), ("12345678901", "pan"), ("1" * 20, "pan"),
            ("47617X9001010119", "pan"), ("", "pan")],
    "psn": [("100", "psn"), ("-1", "psn"), ("x", "psn")],
    "expiry": [("2030-13", "expiry"), ("2030-00", "expiry"), ("2025-12", "expiry"), ("2030/01", "expiry"),
               ("30-01", "expiry")],
    "effective": [("2020-13", "effective"), ("20-01", "effective"), ("2099-12", "expiry")],
    "name": [("a", "name"), ("lowercase", "name"), ("TOO LONG NAME FOR TRACK ONE X", "name"), ("BAD@CHAR", "name"),
             ("X", "name")],
    "pin": [("123", "pin"), ("1234567890123", "pin"), ("12 34", "pin"), ("abcd", "pin")],
    "service_code": [("301", "service_code"), ("2010", "service_code"), ("4a1", "service_code"),
                     ("801", "service_code")],
    "language": [("e", "language"), ("eng", "language"), ("12", "language"), ("enfrdeitx", "language")],
    "discretionary": [("12AB", "discretionary"), ("1" * 30, "discretionary")],
    "unknown": [("blue", "colour")],
}  # fmt: skip


@st.composite
def invalid_records(
    draw: st.DrawFn, today: date = DEFAULT_TODAY, *, fields: Sequence[str] | None = None, bin_prefix: str = ""
) -> tuple[dict[str, str], str]:
    """(record, field): a valid record with one field corrupted, and the field
    the rejection must name. ``fields`` limits which fields are corrupted
    (``unknown`` adds a field the format does not have). The expiry
    corruption "in the past" assumes ``today`` is after 2025-12."""
    rec = draw(valid_records(today, bin_prefix=bin_prefix))
    field = draw(st.sampled_from(sorted(fields if fields is not None else CORRUPTIONS)))
    bad, named = draw(st.sampled_from(list(CORRUPTIONS[field])))
    if field == "unknown":
        return {**rec, named: bad}, named
    out = {**rec, field: bad}
    if field == "effective":
        out["expiry"] = "2098-01"
    if field == "expiry":
        out.pop("effective", None)
    return out, named


# =========================================================================== profiles

_LABEL_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LABEL_CHARS = _LABEL_START + "0123456789 "
_ODA_TAGS = {"SDA": {0x93}, "DDA": {0x9F46, 0x9F47, 0x9F48, 0x9F49}}


def _load_doc(base: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(base, Mapping):
        return copy.deepcopy(dict(base))
    import yaml

    doc = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{base}: not an issuer profile")
    return doc


def _tag(text: object) -> int:
    return int(str(text), 16)


def _oda_list(app: Mapping[str, Any]) -> list[str]:
    raw = app.get("oda", [])
    items = [raw] if isinstance(raw, str) else list(raw or [])
    return [str(m).upper() for m in items if str(m).lower() != "none"]


def _drop_tags(app: dict[str, Any], tags: set[int]) -> None:
    for f in app.get("afl", []):
        kept = []
        for r in f["records"]:
            r["data"] = [t for t in r["data"] if _tag(t) not in tags]
            if r["data"]:
                kept.append(r)
        f["records"] = kept
    app["afl"] = [f for f in app.get("afl", []) if f["records"]]


def _set_oda(app: dict[str, Any], methods: list[str]) -> None:
    have = _oda_list(app)
    if "SDA" in have and "SDA" not in methods:
        _drop_tags(app, _ODA_TAGS["SDA"])
    if any(m in have for m in ("DDA", "CDA")) and not any(m in methods for m in ("DDA", "CDA")):
        _drop_tags(app, _ODA_TAGS["DDA"])
        app.pop("icc_key", None)
        app.pop("ddol", None)
        cvm = app.get("cvm_list")
        if isinstance(cvm, dict):
            cvm["rules"] = [r for r in cvm["rules"] if r.get("method") != "offline_enciphered_pin"]
    contactless = app.get("contactless")
    if "DDA" not in methods and isinstance(contactless, dict):
        contactless.pop("fdda", None)  # the AIP's DDA bit announces fDDA (EMV Contactless Book C-3)
    app["oda"] = methods


def _oda_choices(app: Mapping[str, Any]) -> list[list[str]]:
    have = _oda_list(app)
    pool = [m for m in ("SDA", "DDA", "CDA") if m in have or (m == "CDA" and "DDA" in have)]
    out: list[list[str]] = []
    for mask in range(1, 1 << len(pool)):
        chosen: list[str] = [m for i, m in enumerate(pool) if mask >> i & 1]
        needs_key = any(m in ("DDA", "CDA") for m in chosen)
        if needs_key and "DDA" not in have and "CDA" not in have:
            continue
        out.append(chosen)
    return out or [have]


@st.composite
def profile_variations(
    draw: st.DrawFn,
    base: Mapping[str, Any] | str | Path,
    *,
    oda: bool = True,
    cvn: bool = True,
) -> dict[str, Any]:
    """A variation of the issuer profile ``base`` (a document or a YAML file) that
    :func:`cardlab.personalizer.profile.parse_profile` accepts: per application the
    label and preferred name, the priority (distinct 1..15 with several
    applications), card risk limits (LCOL ≤ UCOL, cumulative limits), the PIN
    try limit, the CVN (within the base CVN's scheme), the ODA method (subsets
    of what the base's records and ICC key allow, CDA where DDA is) and the
    transaction log on or off. Key names, AIDs and the record layout of data
    other than ODA stay as in ``base`` so the key store still fits."""
    doc = _load_doc(base)
    apps: list[dict[str, Any]] = doc["applications"]
    label = st.builds(lambda a, b: (a + b).rstrip(), st.sampled_from(_LABEL_START),
                      st.text(_LABEL_CHARS, max_size=15))  # fmt: skip
    if len(apps) > 1:
        priorities = draw(st.permutations(list(range(1, 16))))[: len(apps)]
    else:
        priorities = [draw(st.integers(1, 15))]
    for i, app in enumerate(apps):
        app["label"] = draw(label)
        if draw(st.booleans()):
            app["preferred_name"] = draw(label)
            app.setdefault("issuer_code_table_index", 1)
        app["priority"] = priorities[i]
        risk = dict(app.get("risk") or {})
        lcol = draw(st.integers(0, 255))
        risk["lcol"], risk["ucol"] = lcol, draw(st.integers(lcol, 255))
        lower = draw(st.integers(0, 10**9))
        risk["lower_cumulative"], risk["upper_cumulative"] = lower, draw(st.integers(lower, 10**10))
        app["risk"] = risk
        app["pin_try_limit"] = draw(st.integers(1, 15))
        if cvn and app.get("cvn") in (10, 18):
            app["cvn"] = draw(st.sampled_from([10, 18]))
        if oda:
            _set_oda(app, draw(st.sampled_from(_oda_choices(app))))
        used = {int(f["sfi"]) for f in app.get("afl", [])}
        if draw(st.booleans()):
            app.pop("log", None)
        else:
            free = [s for s in range(11, 31) if s not in used]
            fmt = (app.get("log") or {}).get("format", "9A:3 9F21:3 9F02:6 5F2A:2 9F1A:2 9C:1 9F36:2")
            app["log"] = {"sfi": draw(st.sampled_from(free)), "records": draw(st.integers(1, 30)), "format": fmt}
    return doc


# =========================================================================== perso scripts

_PSE = {"load_file": "A0000006475053", "module": "A000000647505301", "aid": "315041592E5359532E4444463031"}
_PPSE = {"load_file": "A0000006475053", "module": "A000000647505302", "aid": "325041592E5359532E4444463031"}


def emv_cps_script(
    *,
    level: int = 0x33,
    dgi_order: Sequence[int] | None = None,
    blocks: int = 1,
    directories: bool = True,
) -> dict[str, Any]:
    """The EMV CPS personalization as a perso script document (the structure of
    cardlab's ``vectors/scripts/emv-cps.yaml``). ``dgi_order`` lists the DGIs
    explicitly (``${app.dgi.XXXX}``, same set for every application) instead
    of ``${app.dgis}``; ``blocks`` splits them over that many STORE DATA steps."""
    steps: list[dict[str, Any]] = [
        {"name": "select ISD", "select": {"aid": "${profile.card.isd_aid}"}},
        {"name": "open secure channel", "open_scp03": {
            "level": level, "kmc": "${profile.card.kmc}", "scheme": "${profile.card.diversification}",
            "key_version": "${profile.card.key_version}"}},
    ]  # fmt: skip
    if directories:
        for what, ids in (("PSE", _PSE), ("PPSE", _PPSE)):
            steps.append({"name": f"install {what}", "install": {"for": "install_and_make_selectable", **ids,
                                                                  "privileges": "00"}, "expect": ["9000", "6985"]})
    steps.append({"name": "install application", "foreach": "app", "install": {
        "for": "install_and_make_selectable", "load_file": "${app.load_file}", "module": "${app.module}",
        "aid": "${app.aid}", "privileges": "${app.privileges}", "params": "${app.install_params}"}})  # fmt: skip
    perso: list[dict[str, Any]] = [
        {"name": "INSTALL for personalization", "install": {"for": "personalization", "aid": "${app.aid}"}}
    ]
    if dgi_order is None:
        perso.append({"name": "store DGIs", "store_data": {"dgis": "${app.dgis}"}})
    else:
        order = list(dgi_order)
        n = max(1, min(blocks, len(order)))
        cuts = [len(order) * k // n for k in range(n + 1)]
        for k in range(n):
            items = [{"dgi": f"{d:04X}", "value": f"${{app.dgi.{d:04X}}}"} for d in order[cuts[k] : cuts[k + 1]]]
            step: dict[str, Any] = {"name": f"store DGIs {k + 1}", "store_data": {"dgis": items}}
            if k < n - 1:
                step["store_data"]["last"] = False
            perso.append(step)
    steps.append({"name": "personalize application", "foreach": "app", "steps": perso})
    steps.append({"name": "card secured", "set_status": {"card": "${profile.card.target_life_cycle}"}})
    return {"script": "emv-cps-generated", "description": "EMV CPS personalization (generated)", "steps": steps}


def _common_dgis(profile: Mapping[str, Any]) -> set[int] | None:
    from cardlab.personalizer.script import expected_dgis

    per_app = expected_dgis(profile)
    if not per_app:
        return None
    sets = list(per_app.values())
    return sets[0] if all(s == sets[0] for s in sets) else None


@st.composite
def dgi_sets(
    draw: st.DrawFn, profile: Mapping[str, Any] | str | Path | None = None, *, dgis: Sequence[int] | None = None
) -> list[int]:
    """The DGIs every application gets, in a random order (the order a script
    stores them): ``dgis`` (e.g. ``[d for d, _ in perso_data.apps[0].dgis]``,
    what data preparation really produced), else what
    :func:`cardlab.personalizer.script.expected_dgis` says for ``profile``."""
    common = set(dgis) if dgis is not None else _common_dgis(_load_doc(profile)) if profile is not None else None
    if common is None:
        raise ValueError("the profile's applications get different DGI sets: no common DGI list")
    return list(draw(st.permutations(sorted(common))))


@st.composite
def perso_scripts(
    draw: st.DrawFn, profile: Mapping[str, Any] | str | Path | None = None, *, dgis: Sequence[int] | None = None
) -> dict[str, Any]:
    """A valid EMV CPS perso script document: security level (C-MAC, C-DEC,
    R-MAC…), STORE DATA of ``${app.dgis}`` or of an explicit DGI list in any
    order, split over 1–3 STORE DATA commands. Explicit lists need the DGIs
    every application gets: ``dgis`` (best: from the prepared card data) or
    ``profile`` (:func:`cardlab.personalizer.script.expected_dgis`, when all its
    applications get the same set)."""
    level = draw(st.sampled_from([0x33, 0x13, 0x03, 0x01]))
    common = set(dgis) if dgis is not None else _common_dgis(_load_doc(profile)) if profile is not None else None
    if common is not None and draw(st.booleans()):
        order = draw(dgi_sets(dgis=sorted(common)))
        return emv_cps_script(level=level, dgi_order=order, blocks=draw(st.integers(1, 3)))
    return emv_cps_script(level=level)


@dataclass(frozen=True)
class Corruption:
    """One corruption of a perso script: ``kind`` (``wrong_sw``, ``dropped_step``,
    ``altered_literal``, ``swapped_dgi``), the step it touches and what changed."""

    kind: str
    step: str
    detail: str
    script: dict[str, Any]

    def __repr__(self) -> str:
        return f"Corruption({self.kind}, {self.step!r}, {self.detail})"


def _leaves(steps: list[dict[str, Any]], path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
    for i, s in enumerate(steps):
        if "steps" in s:
            yield from _leaves(s["steps"], (*path, i))
        else:
            yield (*path, i), s


def _at(doc: dict[str, Any], path: tuple[int, ...]) -> tuple[list[dict[str, Any]], int]:
    steps: list[dict[str, Any]] = doc["steps"]
    for i in path[:-1]:
        steps = steps[i]["steps"]
    return steps, path[-1]


_OPS = ("select", "open_scp03", "install", "store_data", "create_file", "update_binary", "update_record",
        "append_record", "put_key", "set_status", "apdu")  # fmt: skip
_WRONG_SWS = ("6A80", "6985", "6982", "6A88", "6D00", "6700")


def _op_of(step: Mapping[str, Any]) -> str | None:
    return next((k for k in _OPS if k in step), None)


def _is_hex_literal(value: object) -> bool:
    if not isinstance(value, str) or "${" in value or len(value) < 2 or len(value) % 2:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def all_single_corruptions(script: Mapping[str, Any]) -> list[Corruption]:
    """Every single corruption of a perso script document: for each operation
    step a wrong status-word expectation (one the card does not answer on
    success) and its removal; each literal hex argument with its last byte
    changed; and, where a STORE DATA lists DGIs explicitly, each pair of DGIs
    with their values swapped."""
    base = copy.deepcopy(dict(script))
    out: list[Corruption] = []
    for path, step in _leaves(base["steps"]):
        name = str(step.get("name", _op_of(step)))
        current = {str(s).upper() for s in step.get("expect", ["9000"])}
        wrong = [sw for sw in _WRONG_SWS if sw not in current][0]
        doc = copy.deepcopy(base)
        steps, i = _at(doc, path)
        steps[i]["expect"] = [wrong]
        out.append(Corruption("wrong_sw", name, f"expect {wrong}", doc))
        doc = copy.deepcopy(base)
        steps, i = _at(doc, path)
        del steps[i]
        out.append(Corruption("dropped_step", name, "removed", doc))
        op = _op_of(step)
        if op is None or not isinstance(step[op], dict):
            continue
        for key, value in step[op].items():
            if _is_hex_literal(value):
                raw = bytearray(bytes.fromhex(value))
                raw[-1] ^= 0x01
                doc = copy.deepcopy(base)
                steps, i = _at(doc, path)
                steps[i][op][key] = raw.hex().upper()
                out.append(Corruption("altered_literal", name, f"{key} last byte changed", doc))
        items = step[op].get("dgis") if op == "store_data" else None
        if isinstance(items, list):
            for a in range(len(items)):
                for b in range(a + 1, len(items)):
                    doc = copy.deepcopy(base)
                    steps, i = _at(doc, path)
                    lst = steps[i][op]["dgis"]
                    lst[a]["value"], lst[b]["value"] = lst[b]["value"], lst[a]["value"]
                    out.append(Corruption("swapped_dgi", name, f"DGI {items[a]['dgi']} <-> {items[b]['dgi']}", doc))
    return out


def script_corruptions(script: Mapping[str, Any], kinds: Sequence[str] | None = None) -> st.SearchStrategy[Corruption]:
    """One single corruption of ``script`` (see :func:`all_single_corruptions`),
    optionally of the given kinds only."""
    every = [c for c in all_single_corruptions(script) if kinds is None or c.kind in kinds]
    if not every:
        raise ValueError("this script has no corruption of the kinds asked")
    return st.sampled_from(every)


# =========================================================================== APDUs

ISD_AID = bytes.fromhex("A000000151000000")

#: the card's command set: (name, APDU) of well-formed commands
COMMANDS: Sequence[tuple[str, str]] = (
    ("SELECT ISD", "00A4040008A00000015100000000"),
    ("SELECT PSE", "00A404000E315041592E5359532E444446303100"),
    ("SELECT PPSE", "00A404000E325041592E5359532E444446303100"),
    ("SELECT MF", "00A40000023F00"),
    ("SELECT EF", "00A4000C022F00"),
    ("READ BINARY", "00B0000000"),
    ("READ RECORD", "00B2010C00"),
    ("GET DATA CPLC", "80CA9F7F00"),
    ("GET DATA CRD", "80CA006600"),
    ("GET DATA KIT", "80CA00E000"),
    ("GET DATA ATC", "80CA9F3600"),
    ("GET DATA PIN try counter", "80CA9F1700"),
    ("GET STATUS ISD", "80F28002024F0000"),
    ("GET STATUS apps", "80F24002024F0000"),
    ("INITIALIZE UPDATE", "8050000008111111111111111100"),
    ("MANAGE CHANNEL open", "0070000001"),
    ("MANAGE CHANNEL close", "0070800100"),
    ("GET PROCESSING OPTIONS", "80A8000002830000"),
    ("GET CHALLENGE", "0084000008"),
    ("VERIFY plaintext PIN", "0020008008241234FFFFFFFFFF"),
    ("GENERATE AC", "80AE80001D" + "00" * 29 + "00"),
    ("INTERNAL AUTHENTICATE", "008800000411223344" + "00"),
    ("INSTALL", "80E60C00"),
    ("STORE DATA", "80E2800003010203"),
    ("PUT KEY", "80D8000000"),
    ("SET STATUS", "80F0800F00"),
    ("GET RESPONSE", "00C0000000"),
)


def valid_apdus() -> st.SearchStrategy[bytes]:
    """Well-formed commands of the card's command set (ISO 7816-4, GP, EMV)."""
    return st.sampled_from([bytes.fromhex(h) for _, h in COMMANDS])


def random_apdus(max_data: int = 300) -> st.SearchStrategy[bytes]:
    """Random bytes, and random headers with random data and Le."""
    header = st.tuples(st.sampled_from([0x00, 0x01, 0x04, 0x0C, 0x80, 0x84, 0x41]), st.integers(0, 255),
                       st.integers(0, 255), st.integers(0, 255))  # fmt: skip
    structured = st.tuples(header, st.binary(max_size=min(max_data, 255)), st.none() | st.integers(0, 255)).map(
        lambda t: bytes(t[0]) + (bytes((len(t[1]),)) + t[1] if t[1] else b"") + (b"" if t[2] is None else bytes((t[2],)))
    )
    return st.one_of(st.binary(max_size=40), structured)


def _mutate(raw: bytes, how: int, pos: int, value: int) -> bytes:
    pos = pos % (len(raw) + 1)
    if how == 0:  # replace a byte
        return raw[:pos] + bytes((value,)) + raw[pos + 1 :]
    if how == 1:  # flip one bit
        if pos >= len(raw):
            return raw
        return raw[:pos] + bytes((raw[pos] ^ (1 << (value % 8)),)) + raw[pos + 1 :]
    if how == 2:  # insert
        return raw[:pos] + bytes((value,)) + raw[pos:]
    if how == 3:  # delete
        return raw[:pos] + raw[pos + 1 :]
    return raw[:pos]  # truncate


def mutated_apdus(base: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[bytes]:
    """A valid command with one mutation: a byte replaced, a bit flipped, a byte
    inserted or deleted, or the command truncated."""
    return st.builds(_mutate, base if base is not None else valid_apdus(), st.integers(0, 4), st.integers(0, 300),
                     st.integers(0, 255))  # fmt: skip


def apdus() -> st.SearchStrategy[bytes]:
    """Valid, mutated and random command APDUs."""
    return st.one_of(valid_apdus(), mutated_apdus(), random_apdus())

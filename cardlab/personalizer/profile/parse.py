"""Issuer profile: YAML → :class:`.model.Profile`, every problem named by its path.

An issuer profile is a YAML file (format in ``docs/profile.md``) describing the
card's GlobalPlatform details and one or more EMV application templates: AID,
labels, DOLs, AIP, the AFL layout (which data objects go in which SFI/record
and which records are signed for offline data authentication), IACs, CVM list,
card risk management parameters (cardlab DGI 0D01, ``docs/dgi-map.md``),
cryptogram version, ODA method, ICC key, PIN try limit, log settings and the
names of the keys in the key store.

``load_profile(path)`` parses and validates it and returns a frozen
:class:`.model.Profile`, or raises :class:`.checker.ProfileError` listing *every*
problem with its path in the document, e.g. ``applications[1].cdol1[2]: unknown
tag 9F99``. Each section has its reader in :mod:`.sections` (``keys`` in
:mod:`.keyrefs`); :mod:`.validate` checks the sections against each other.

Encodings follow EMV 4.4 Book 3: DOLs (§5.4), AFL (§10.2), AIP (Annex C1),
CVM list (Annex C3, §10.5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .checker import Checker, ProfileError, kind, seq
from .contactless import parse_contactless
from .derive import derive_aip
from .keyrefs import parse_keys
from .model import Application, GpDetails, Profile
from .sections import (
    parse_card,
    parse_cvm,
    parse_data,
    parse_dol,
    parse_iac,
    parse_icc_key,
    parse_languages,
    parse_log,
    parse_oda,
    parse_records,
    parse_risk,
    parse_sda_tag_list,
)
from .tables import CDOL1_REQUIRED, CVNS, TAGS, fmt_tag
from .validate import cross_check

_TOP_KEYS = ("profile", "description", "bins", "card", "applications")
_BIN = re.compile(r"^[0-9]{6,8}$")
_APP_KEYS = (
    "name", "aid", "label", "preferred_name", "issuer_code_table_index", "priority", "languages",
    "pdol", "oda", "aip", "cvn", "afl", "cdol1", "cdol2", "ddol", "tdol", "iac", "cvm_list", "auc",
    "country", "currency", "currency_exponent", "version", "risk", "pin_try_limit", "log",
    "response_format", "icc_key", "keys", "service_code", "sda_tag_list", "data",
    "terminal_risk_management", "issuer_authentication", "contactless",
)  # fmt: skip
_LABEL = re.compile(r"^[\x20-\x7E]{1,16}$")


def _application(ck: Checker, raw: object, p: str) -> Application:
    """One entry of ``applications``; the order of the readers is the order of the problems."""
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, _APP_KEYS)
    name = ck.string(m, "name", p)
    aid = ck.hexbytes(m, "aid", p, range(5, 17))
    label = ck.string(m, "label", p)
    if label and not _LABEL.match(label):
        ck.err(f"{p}.label", "1 to 16 printable ASCII characters (an 16)")
    preferred = ck.opt_string(m, "preferred_name", p)
    if preferred is not None and not _LABEL.match(preferred):
        ck.err(f"{p}.preferred_name", "1 to 16 printable characters")
    cti = None
    if m.get("issuer_code_table_index") is not None:
        cti = ck.integer(m, "issuer_code_table_index", p, 1, 10)
    elif preferred is not None:
        ck.err(
            f"{p}.issuer_code_table_index", "missing: needed with preferred_name (ISO/IEC 8859 part 1..10)"
        )
    priority = ck.integer(m, "priority", p, 0, 0xFF, default=1)
    if priority & 0x70:
        ck.err(f"{p}.priority", f"{priority:#04x} sets RFU bits b7..b5 (b8: ask cardholder, b4..b1: order)")
    languages = parse_languages(ck, m, p)

    pdol = parse_dol(ck, m.get("pdol"), f"{p}.pdol")
    cdol1 = parse_dol(ck, m.get("cdol1"), f"{p}.cdol1")
    cdol2 = parse_dol(ck, m.get("cdol2"), f"{p}.cdol2")
    ddol = parse_dol(ck, m.get("ddol"), f"{p}.ddol")
    tdol = parse_dol(ck, m.get("tdol"), f"{p}.tdol")
    if m.get("cdol1") is None:
        ck.err(f"{p}.cdol1", "missing")
    if m.get("cdol2") is None:
        ck.err(f"{p}.cdol2", "missing")
    cdol1_tags = {e.tag for e in cdol1}
    if cdol1:
        missing = [t for t in CDOL1_REQUIRED if t not in cdol1_tags]
        if missing:
            ck.err(
                f"{p}.cdol1",
                "lacks "
                + ", ".join(f"{fmt_tag(t)} ({TAGS[t].name})" for t in missing)
                + " that the application cryptogram covers",
            )

    oda = parse_oda(ck, m, p)
    dynamic = "DDA" in oda or "CDA" in oda

    cvm = parse_cvm(ck, m.get("cvm_list"), f"{p}.cvm_list")
    trm = ck.boolean(m, "terminal_risk_management", p, default=True)
    issuer_auth = ck.boolean(m, "issuer_authentication", p, default=True)
    raw_cl = m.get("contactless")
    emv_mode = isinstance(raw_cl, dict) and raw_cl.get("kernel") == 2
    derived = derive_aip(oda, cvm is not None, trm, issuer_auth, emv_mode=emv_mode)
    aip = ck.hexbytes(m, "aip", p, (2,), default=derived)
    if m.get("aip") is not None and len(aip) == 2:
        for bit, meth in ((0x40, "SDA"), (0x20, "DDA"), (0x01, "CDA")):
            if bool(aip[0] & bit) != (meth in oda):
                ck.err(
                    f"{p}.aip",
                    f"{aip.hex().upper()} {'announces' if aip[0] & bit else 'lacks'} {meth} "
                    f"but oda is {', '.join(oda) or 'none'} (derived AIP would be {derived.hex().upper()})",
                )
        if bool(aip[0] & 0x10) != (cvm is not None):
            ck.err(f"{p}.aip", "cardholder verification bit (b5) disagrees with the presence of cvm_list")

    cvn = ck.integer(m, "cvn", p, 0, 255)
    if cvn and cvn not in CVNS:
        ck.err(f"{p}.cvn", f"{cvn} is not a supported cryptogram version ({', '.join(map(str, CVNS))})")

    iac = parse_iac(ck, m.get("iac", {}), f"{p}.iac")
    auc = ck.hexbytes(m, "auc", p, (2,), default=b"\xff\x00")
    country = ck.integer(m, "country", p, 1, 999)
    currency = ck.integer(m, "currency", p, 1, 999)
    cexp = ck.integer(m, "currency_exponent", p, 0, 9, default=2)
    version = ck.hexbytes(m, "version", p, (2,))
    risk = parse_risk(ck, m.get("risk", {}), f"{p}.risk", currency, cexp, issuer_auth)
    pin_try_limit = ck.integer(m, "pin_try_limit", p, 1, 15, default=3)
    response_format = ck.integer(m, "response_format", p, 1, 2, default=2)
    log = parse_log(ck, m.get("log"), f"{p}.log")
    icc = parse_icc_key(ck, m.get("icc_key"), f"{p}.icc_key", dynamic)
    keys = parse_keys(ck, m.get("keys"), f"{p}.keys", aid, bool(oda))

    service_code = ck.string(m, "service_code", p, default="201")
    if not re.fullmatch(r"[125679]\d\d", service_code):
        ck.err(f"{p}.service_code", f"{service_code!r} is not 3 digits starting with 1, 2, 5, 6, 7 or 9")
    sda_tag_list = parse_sda_tag_list(ck, m, p)
    extra = parse_data(ck, m.get("data", {}), f"{p}.data")
    records = parse_records(ck, m, p, extra)
    contactless = parse_contactless(ck, raw_cl, f"{p}.contactless", records, aip, icc is not None)

    app = Application(
        name=name, aid=aid, label=label, preferred_name=preferred, issuer_code_table_index=cti,
        priority=priority, languages=languages, pdol=pdol, oda=oda, aip=aip, cvn=cvn,
        records=records, cdol1=cdol1, cdol2=cdol2, ddol=ddol, tdol=tdol, iac=iac, cvm_list=cvm, auc=auc,
        country=country, currency=currency, currency_exponent=cexp, version=version, risk=risk,
        pin_try_limit=pin_try_limit, log=log, response_format=response_format, icc_key=icc, keys=keys,
        service_code=service_code, sda_tag_list=sda_tag_list, extra_data=tuple(sorted(extra.items())),
        contactless=contactless,
    )  # fmt: skip
    cross_check(ck, app, p)
    return app


def parse_profile(document: object, source: str = "<profile>", *, base_dir: Path | None = None) -> Profile:
    """Validate an already parsed YAML document (see :func:`load_profile`).

    ``base_dir`` is the profile's directory, which a certificate document named by
    ``keys.issuer_certificate`` is relative to; without it such a file is not read
    (``KeyRefs.issuer_certificate_file`` is set, ``issuer_certificates`` empty, and data
    preparation refuses the profile).
    """
    ck = Checker(base_dir)
    top = ck.mapping(document, "(top)")
    ck.known_keys(top, "", _TOP_KEYS)
    name = ck.string(top, "profile", "")
    description = ck.string(top, "description", "", default="")
    bins = _bins(ck, top)
    card = parse_card(ck, top.get("card"))
    apps: list[Application] = []
    raw_apps = seq(ck, top, "applications", "")
    if not raw_apps:
        ck.err("applications", "missing: at least one application")
    for i, a in enumerate(raw_apps):
        apps.append(_application(ck, a, f"applications[{i}]"))
    seen_aid: dict[bytes, int] = {}
    seen_name: dict[str, int] = {}
    for i, app in enumerate(apps):
        if app.aid and app.aid in seen_aid:
            ck.err(
                f"applications[{i}].aid", f"{app.aid.hex().upper()} is also applications[{seen_aid[app.aid]}]"
            )
        seen_aid.setdefault(app.aid, i)
        if app.name and app.name in seen_name:
            ck.err(f"applications[{i}].name", f"{app.name!r} is also applications[{seen_name[app.name]}]")
        seen_name.setdefault(app.name, i)
        if card.isd_aid and app.aid == card.isd_aid:
            ck.err(f"applications[{i}].aid", "equals the ISD AID")
        for c in app.keys.issuer_certificates:
            ident = c.issuer_identifier
            if bins and not any(b.startswith(ident) or ident.startswith(b) for b in bins):
                ck.err(f"{c.where}.issuer_identifier", f"{ident} covers none of the profile's bins ({', '.join(bins)})")
    if len(apps) > 1:
        prios = [a.priority & 0x0F for a in apps]
        if len(set(prios)) != len(prios) or 0 in prios:
            ck.err("applications", "with several applications each needs its own priority 1..15")
    if ck.problems:
        raise ProfileError(source, ck.problems)
    return Profile(name, description, card, tuple(apps), bins)


def _bins(ck: Checker, top: Mapping[str, Any]) -> tuple[str, ...]:
    """``bins``: a list of 6–8 digit issuer BINs (quote them, or YAML may read numbers)."""
    out: list[str] = []
    raw = top.get("bins")
    if raw is not None and not isinstance(raw, list):
        raw = [raw]  # a single BIN written without a list
    for i, v in enumerate(raw or []):
        p = f"bins[{i}]"
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            ck.err(p, f"expected a BIN of 6-8 digits, got {kind(v)}")
            continue
        b = str(v).strip()
        if not _BIN.fullmatch(b):
            ck.err(p, f"{b!r} is not a BIN of 6-8 digits")
        elif b in out:
            ck.err(p, f"{b} is listed twice")
        else:
            out.append(b)
    if raw is not None and not raw:
        ck.err("bins", "empty list: give at least one BIN or leave bins out")
    return tuple(out)


def load_card_details(path: str | Path) -> GpDetails:
    """The ``card`` section (ISD AID, KMC, diversification, key version, target
    life cycle) of a profile of any kind, EMV or badge: what its blank card
    stock must be made with. :class:`ProfileError` names the field."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ProfileError(str(p), [f"(file): cannot read: {e}"]) from e
    ck = Checker(p.parent)
    card = parse_card(ck, ck.mapping(doc, "(top)").get("card"))
    if ck.problems:
        raise ProfileError(str(p), ck.problems)
    return card


def load_profile(path: str | Path) -> Profile:
    """Read and validate an issuer profile; :class:`ProfileError` lists every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(str(p), [f"(file): cannot read: {e}"]) from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(str(p), [f"(yaml): {e}"]) from e
    return parse_profile(doc, str(p), base_dir=p.parent)

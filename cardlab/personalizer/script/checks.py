"""Checking a perso script without a card (:func:`check`): references
against a profile, the DGIs the profile produces, record fields, and the order
of secure channel, INSTALL [for personalization] and STORE DATA."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .expressions import Expr, Path_, Template, walk_expr
from .loader import parse_script
from .model import SECURE_OPS, Script, Step, dgi_number

__all__ = ["check", "expected_dgis"]


def expected_dgis(profile: Mapping[str, Any]) -> dict[str, set[int]] | None:
    """The DGIs each application of ``profile`` gets from data preparation
    (``docs/dgi-map.md``), by application name; ``None`` when the profile does
    not say (a profile may list them itself under ``applications[].dgis``)."""
    apps = profile.get("applications")
    if not isinstance(apps, list):
        return None
    explicit = {str(a.get("name", i)): {d for d in (dgi_number(x) for x in a["dgis"]) if d is not None}
                for i, a in enumerate(apps) if isinstance(a, dict) and isinstance(a.get("dgis"), list)}
    if explicit:
        return explicit
    try:
        from ..profile import parse_profile

        parsed = parse_profile(profile)
    except Exception:  # noqa: BLE001 - not an EMV profile we can read
        return None
    out: dict[str, set[int]] = {}
    for app in parsed.applications:
        dgis = {0x9102, 0x9103, 0x9104, 0x8000, 0x9000, 0x0D01, 0x0E01}
        dgis |= {r.dgi for r in app.records}
        if app.risk.currency_conversion:
            dgis.add(0x0D02)
        if app.offline_pin:
            dgis |= {0x8010, 0x9010}
        if app.contactless is not None:
            dgis |= {0x9207, 0x0D03}
        if app.icc_key is not None or any(m in ("DDA", "CDA") for m in app.oda):
            dgis |= {0x8201, 0x8202, 0x8203, 0x8204, 0x8205}
        out[app.name] = dgis
    return out


def _profile_has(profile: Mapping[str, Any], parts: Sequence[str]) -> bool:
    node: Any = profile
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list):
            # a list: any element (by index, or every element for a name)
            if part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return False
        else:
            return False
    return True


def check(script: Script | str | Path, profile: Mapping[str, Any] | None) -> list[str]:
    """Problems found without a card: load errors (unknown operations, bad
    fields and references), profile references the profile lacks, DGIs the
    profile does not produce, record fields it does not declare, card
    management before a secure channel, STORE DATA without INSTALL [for
    personalization] or without a last block."""
    if not isinstance(script, Script):
        path = Path(script)
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            return [f"{path}: cannot read script: {exc}"]
        parsed, problems = parse_script(document, str(path))
        if problems or parsed is None:
            return problems
        script = parsed
    found: list[str] = []
    where = script.source
    dgis_by_app = expected_dgis(profile) if profile is not None else None
    all_dgis = set().union(*dgis_by_app.values()) if dgis_by_app else None
    declared_fields: set[str] | None = None
    if profile is not None and isinstance(profile.get("record_fields"), list):
        declared_fields = {str(f) for f in profile["record_fields"]}

    def refs(step: Step) -> Iterator[tuple[str, Expr]]:
        def from_value(key: str, v: Any) -> Iterator[tuple[str, Expr]]:
            if isinstance(v, Template):
                for e in v.exprs():
                    for sub in walk_expr(e):
                        yield key, sub
            elif isinstance(v, dict):
                for k, vv in v.items():
                    yield from from_value(f"{key}.{k}", vv)
            elif isinstance(v, tuple):
                for item in v:
                    if isinstance(item, tuple) and len(item) == 2:
                        yield from from_value(f"{key}[{item[0]:04X}]", item[1])

        for key, v in step.args.items():
            yield from from_value(f"{step.op}.{key}", v)
        if step.when is not None:
            yield from from_value("when", step.when)

    for step in script.walk():
        label = f"{where}: step {step.index} ({step.name})"
        for key, e in refs(step):
            if not isinstance(e, Path_):
                continue
            head, rest = e.parts[0], e.parts[1:]
            if head == "profile" and profile is not None and not _profile_has(profile, rest):
                found.append(f"{label}: {key}: the profile has no {e.text()}")
            if head == "profile" and profile is None:
                found.append(f"{label}: {key}: {e.text()} needs a profile")
            if head == "app" and rest[:1] == ("dgi",) and len(rest) == 2 and all_dgis is not None:
                number = dgi_number(rest[1])
                if number is None or number not in all_dgis:
                    found.append(f"{label}: {key}: the profile does not produce DGI {rest[1].upper()}")
            if head == "app" and rest[0] not in ("aid", "load_file", "module", "privileges", "install_params",
                                                 "dgis", "dgi", "index"):
                found.append(f"{label}: {key}: unknown application field {rest[0]!r}")
            if head == "card" and rest[0] not in ("card_id", "record_index", "pan_masked", "fields", "dgi"):
                found.append(f"{label}: {key}: unknown card field {rest[0]!r}")
            field_name = rest[0] if head == "record" else (rest[1] if head == "card" and rest[0] == "fields"
                                                           and len(rest) > 1 else None)
            if field_name is not None and declared_fields is not None and field_name not in declared_fields:
                found.append(f"{label}: {key}: the profile's records have no field {field_name!r}")
        if step.op == "store_data":
            raw = step.args.get("dgis")
            if isinstance(raw, tuple) and all_dgis is not None:
                for dgi, _ in raw:
                    if dgi not in all_dgis:
                        found.append(f"{label}: store_data.dgis: the profile does not produce DGI {dgi:04X}")
    found += _check_flow(script)
    return found


def _check_flow(script: Script) -> list[str]:
    """Secure channel, INSTALL [for personalization] and last-block order, in
    document order (a foreach body counts once)."""
    problems: list[str] = []
    channel = False
    perso: Step | None = None  # INSTALL [for personalization] waiting for its last block
    where = script.source
    for step in script.walk():
        label = f"{where}: step {step.index} ({step.name})"
        if step.op is None:
            continue
        if step.op == "select":
            channel = False
        elif step.op == "open_scp03":
            channel = True
        elif step.op in SECURE_OPS and not channel:
            problems.append(f"{label}: {step.op} needs a secure channel (open_scp03 first, after any select)")
        if step.op == "install" and step.args.get("for") == "personalization":
            if perso is not None:
                problems.append(f"{where}: step {perso.index} ({perso.name}): no STORE DATA with the last block "
                                "before the next INSTALL [for personalization]")
            perso = step
        elif step.op == "store_data":
            if perso is None:
                problems.append(f"{label}: STORE DATA without INSTALL [for personalization] goes to the ISD")
            if step.args.get("last", True):
                perso = None
        elif step.op == "select" and perso is not None:
            problems.append(f"{where}: step {perso.index} ({perso.name}): no STORE DATA with the last block "
                            f"before the SELECT of step {step.index}")
            perso = None
        if not step.expect:
            problems.append(f"{label}: expect is empty")
    if perso is not None:
        problems.append(f"{where}: step {perso.index} ({perso.name}): no STORE DATA with the last block "
                        "after INSTALL [for personalization]")
    return problems

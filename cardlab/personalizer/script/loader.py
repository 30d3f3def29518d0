"""Loading a perso script: YAML → :class:`~.model.Script`, validated
against each operation's schema; every problem names the step and the
field path (``step 4 (store DGIs).store_data.last``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cardlab.cardspec.scp03 import SECURITY_LEVELS

from .errors import ScriptError
from .expressions import ExprError, Template, compile_template, validate_expr
from .model import (
    APP_STATES,
    CARD_STATES,
    CONDITIONS,
    DF_MODES,
    EF_MODES,
    FILE_TYPES,
    INSTALL_KINDS,
    OPERATIONS,
    Script,
    Step,
    dgi_number,
)

__all__ = ["load_script", "parse_script"]


# kinds: "bytes" (template giving bytes), "int", "str", "bool", "dgis",
# "keys" (mapping enc/mac/dek → bytes), "access" (mapping mode → condition)
_SCHEMAS: Mapping[str, Mapping[str, str]] = {
    "select": {"aid": "bytes", "fid": "bytes", "path": "bytes", "p2": "int"},
    "open_scp03": {
        "level": "int",
        "kmc": "str",
        "scheme": "str",
        "key_version": "int",
        "keys": "keys",
        "host_challenge": "bytes",
    },
    "install": {
        "for": "str",
        "load_file": "bytes",
        "module": "bytes",
        "aid": "bytes",
        "privileges": "bytes",
        "params": "bytes",
    },
    "store_data": {"dgis": "dgis", "data": "bytes", "format": "str", "encrypt": "bool", "last": "bool"},
    "create_file": {
        "fcp": "bytes",
        "type": "str",
        "fid": "bytes",
        "name": "bytes",
        "size": "int",
        "record_length": "int",
        "records": "int",
        "sfi": "int",
        "access": "access",
    },
    "update_binary": {"data": "bytes", "offset": "int", "sfi": "int"},
    "update_record": {"data": "bytes", "record": "int", "sfi": "int"},
    "append_record": {"data": "bytes", "sfi": "int"},
    "put_key": {"new_version": "int", "replace": "int", "kmc": "str", "scheme": "str", "keys": "keys"},
    "set_status": {"card": "str", "app": "bytes", "state": "str"},
    "apdu": {"hex": "bytes", "plain": "bool"},
}
_REQUIRED: Mapping[str, tuple[tuple[str, ...], ...]] = {
    # each inner tuple: one of these is required
    "select": (("aid", "fid", "path"),),
    "open_scp03": (("level",), ("kmc", "keys")),
    "install": (("for",), ("aid",)),
    "store_data": (("dgis", "data"),),
    "create_file": (("fcp", "type"),),
    "update_binary": (("data",),),
    "update_record": (("data",), ("record",)),
    "append_record": (("data",),),
    "put_key": (("new_version",), ("kmc", "keys")),
    "set_status": (("card", "app"),),
    "apdu": (("hex",),),
}
_STEP_KEYS = {"name", "expect", "foreach", "steps", "when"}
_SW_PATTERN = re.compile(r"^[0-9A-F]{2}([0-9A-F]{2}|XX)$")


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.count = 0

    def err(self, where: str, msg: str) -> None:
        self.problems.append(f"{self.source}: {where}: {msg}")

    def value(self, where: str, kind: str, raw: Any, in_app: frozenset[str]) -> Any:
        if kind in ("bytes", "dgis"):
            if isinstance(raw, bool) or raw is None:
                self.err(where, f"expected a hex string or ${{...}}, not {raw!r}")
                return None
            if isinstance(raw, int):
                self.err(where, f"write hex values as quoted strings ({raw!r} was read as a number)")
                return None
            if kind == "dgis" and isinstance(raw, list):
                return self.dgi_items(where, raw, in_app)
            if not isinstance(raw, str):
                self.err(where, f"expected a string, not {type(raw).__name__}")
                return None
            return self.template(where, raw, in_app)
        if kind == "int":
            if isinstance(raw, bool):
                self.err(where, f"expected a number, not {raw!r}")
                return None
            if isinstance(raw, int):
                return raw
            if isinstance(raw, str):
                if "${" in raw:
                    return self.template(where, raw, in_app)
                try:
                    return int(raw, 0)
                except ValueError:
                    self.err(where, f"expected a number, not {raw!r}")
                    return None
            self.err(where, f"expected a number, not {type(raw).__name__}")
            return None
        if kind == "str":
            if not isinstance(raw, str):
                self.err(where, f"expected a string, not {raw!r}")
                return None
            return self.template(where, raw, in_app) if "${" in raw else raw
        if kind == "bool":
            if not isinstance(raw, bool):
                self.err(where, f"expected true or false, not {raw!r}")
                return None
            return raw
        if kind == "keys":
            if not isinstance(raw, dict) or set(raw) != {"enc", "mac", "dek"}:
                self.err(where, "expected a mapping with enc, mac and dek")
                return None
            return {k: self.value(f"{where}.{k}", "bytes", v, in_app) for k, v in raw.items()}
        if kind == "access":
            if not isinstance(raw, dict):
                self.err(where, "expected a mapping of access mode to condition")
                return None
            out: dict[str, str] = {}
            for mode, cond in raw.items():
                if mode not in EF_MODES and mode not in DF_MODES:
                    self.err(f"{where}.{mode}", f"unknown access mode (one of {', '.join([*EF_MODES, *DF_MODES])})")
                elif not isinstance(cond, str) or cond not in CONDITIONS:
                    self.err(f"{where}.{mode}", f"unknown condition {cond!r} (one of {', '.join(CONDITIONS)})")
                else:
                    out[mode] = cond
            return out
        raise AssertionError(kind)

    def dgi_items(self, where: str, raw: list[Any], in_app: frozenset[str]) -> Any:
        items: list[tuple[int, Template]] = []
        for n, item in enumerate(raw):
            w = f"{where}[{n}]"
            if not isinstance(item, dict) or set(item) != {"dgi", "value"}:
                self.err(w, "expected {dgi: XXXX, value: ...}")
                continue
            dgi = dgi_number(item["dgi"])
            if dgi is None:
                self.err(f"{w}.dgi", f"a DGI is 4 hex digits (quote it), not {item['dgi']!r}")
                continue
            t = self.value(f"{w}.value", "bytes", item["value"], in_app)
            if isinstance(t, Template):
                items.append((dgi, t))
        return tuple(items)

    def template(self, where: str, raw: str, in_app: frozenset[str]) -> Template | None:
        try:
            t = compile_template(raw)
        except ExprError as exc:
            self.err(where, str(exc))
            return None
        for e in t.exprs():
            problem = validate_expr(e, in_app)
            if problem:
                self.err(where, problem)
                return None
        return t

    def steps(self, raw: Any, where: str, in_app: frozenset[str]) -> tuple[Step, ...]:
        if not isinstance(raw, list) or not raw:
            self.err(where, "expected a non-empty list of steps")
            return ()
        return tuple(s for n, item in enumerate(raw) if (s := self.step(item, f"{where}[{n}]", in_app)))

    def step(self, raw: Any, path: str, in_app: frozenset[str]) -> Step | None:
        self.count += 1
        index = self.count
        if not isinstance(raw, dict):
            self.err(f"step {index} ({path})", "expected a mapping")
            return None
        ops = [k for k in raw if k not in _STEP_KEYS]
        name_raw = raw.get("name")
        label = f"step {index} ({name_raw or path})"
        if name_raw is not None and not isinstance(name_raw, str):
            self.err(f"{label}.name", "expected a string")
        unknown = [k for k in ops if k not in OPERATIONS]
        for k in unknown:
            self.err(f"{label}", f"unknown operation or field {k!r} (operations: {', '.join(OPERATIONS)})")
        ops = [k for k in ops if k in OPERATIONS]
        if len(ops) > 1:
            self.err(label, f"one operation per step, found {', '.join(ops)}")
        has_steps = "steps" in raw
        if not ops and not has_steps and not unknown:
            self.err(label, "no operation")
        if ops and has_steps:
            self.err(label, "a step has either an operation or 'steps', not both")
        foreach = raw.get("foreach")
        if foreach is not None and not (
            foreach == "app"
            or (isinstance(foreach, str) and re.fullmatch(r"(record|card\.fields)\.[A-Za-z0-9_]+", foreach))
        ):
            self.err(f"{label}.foreach", f"'app' or 'record.FIELD' (a ';'-separated list), not {foreach!r}")
            foreach = None
        inner_app = in_app | ({"app"} if foreach == "app" else {"item"} if foreach else set())
        op = ops[0] if len(ops) == 1 else None
        name = name_raw if isinstance(name_raw, str) else (op or "block")
        when = None
        if "when" in raw:
            w = raw["when"]
            when = self.template(f"{label}.when", w, inner_app) if isinstance(w, str) else None
            if not isinstance(w, str):
                self.err(f"{label}.when", "expected a ${...} expression")
        expect = self.expect(raw.get("expect", ["9000"]), f"{label}.expect")
        args: dict[str, Any] = {}
        if op is not None:
            args = self.args(op, raw[op], label, inner_app)
        sub: tuple[Step, ...] = ()
        if has_steps:
            sub = self.steps(raw["steps"], f"{label}.steps", inner_app)
        return Step(index, name, op, args, expect, foreach, sub, when)

    def expect(self, raw: Any, where: str) -> tuple[str, ...]:
        items = raw if isinstance(raw, list) else [raw]
        out: list[str] = []
        for item in items:
            text = (f"{item:04d}" if isinstance(item, int) and not isinstance(item, bool) else str(item)).upper()
            if not _SW_PATTERN.match(text):
                self.err(where, f"{item!r} is not a status word (4 hex digits, 'XX' for any second byte)")
            else:
                out.append(text)
        if not out:
            self.err(where, "expect at least one status word")
        return tuple(out) or ("9000",)

    def args(self, op: str, raw: Any, label: str, in_app: frozenset[str]) -> dict[str, Any]:
        schema = _SCHEMAS[op]
        if op == "apdu" and isinstance(raw, str):
            raw = {"hex": raw}
        if not isinstance(raw, dict):
            self.err(f"{label}.{op}", "expected a mapping of fields")
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in schema:
                self.err(f"{label}.{op}.{key}", f"unknown field (fields of {op}: {', '.join(schema)})")
                continue
            v = self.value(f"{label}.{op}.{key}", schema[key], value, in_app)
            if v is not None:
                out[key] = v
        for group in _REQUIRED[op]:
            present = [k for k in group if k in raw]
            if not present:
                self.err(f"{label}.{op}.{group[0]}", "required" if len(group) == 1 else f"one of {', '.join(group)} is required")
            elif len(present) > 1 and len(group) > 1:
                self.err(f"{label}.{op}.{present[1]}", f"give only one of {', '.join(group)}")
        self.semantic(op, out, f"{label}.{op}")
        return out

    def semantic(self, op: str, a: dict[str, Any], where: str) -> None:
        if op == "open_scp03":
            lvl = a.get("level")
            if isinstance(lvl, int) and lvl not in SECURITY_LEVELS:
                self.err(f"{where}.level", f"{lvl:#04x} is not an SCP03 security level (00 01 03 11 13 33)")
            if "kmc" in a and "scheme" not in a:
                self.err(f"{where}.scheme", "required with kmc (kdf3, emv, visa2 or none)")
        elif op == "install":
            kind = a.get("for")
            if isinstance(kind, str) and kind not in INSTALL_KINDS:
                self.err(f"{where}.for", f"{kind!r} is not one of {', '.join(INSTALL_KINDS)}")
            if kind in ("install", "install_and_make_selectable"):
                for k in ("load_file", "module"):
                    if k not in a:
                        self.err(f"{where}.{k}", f"required for INSTALL [for {kind}]")
        elif op == "store_data":
            fmt = a.get("format", "dgi")
            if isinstance(fmt, str) and fmt not in ("dgi", "ber", "none"):
                self.err(f"{where}.format", f"{fmt!r} is not dgi, ber or none")
            if "dgis" in a and ("format" in a or "encrypt" in a):
                self.err(f"{where}.format", "format/encrypt apply to literal data only")
        elif op == "create_file":
            t = a.get("type")
            if isinstance(t, str) and t not in FILE_TYPES:
                self.err(f"{where}.type", f"{t!r} is not one of {', '.join(FILE_TYPES)}")
            if "type" in a and "fid" not in a:
                self.err(f"{where}.fid", "required")
            if t == "transparent" and "size" not in a:
                self.err(f"{where}.size", "required for a transparent EF")
            if t in ("linear_fixed", "linear_variable", "cyclic"):
                for k in ("record_length", "records"):
                    if k not in a:
                        self.err(f"{where}.{k}", f"required for a {t} EF")
            acc = a.get("access")
            if isinstance(acc, dict) and isinstance(t, str):
                modes = DF_MODES if t == "df" else EF_MODES
                for mode in acc:
                    if mode not in modes:
                        self.err(f"{where}.access.{mode}", f"not an access mode of a {'DF' if t == 'df' else 'EF'}")
        elif op == "set_status":
            card = a.get("card")
            if isinstance(card, str) and card.upper() not in CARD_STATES:
                self.err(f"{where}.card", f"{card!r} is not one of {', '.join(CARD_STATES)}")
            if "app" in a:
                st = a.get("state")
                if not isinstance(st, str):
                    self.err(f"{where}.state", "required with app")
                elif st.upper() not in APP_STATES and not re.fullmatch(r"[0-9A-Fa-f]{2}", st):
                    self.err(f"{where}.state", f"{st!r} is not one of {', '.join(APP_STATES)} or a hex byte")
        elif op == "put_key":
            if "kmc" in a and "scheme" not in a:
                self.err(f"{where}.scheme", "required with kmc")


def parse_script(document: Any, source: str = "<script>") -> tuple[Script | None, list[str]]:
    """Parse a loaded YAML document; returns the script (when it parsed) and
    every problem found."""
    ld = _Loader(source)
    if not isinstance(document, dict):
        ld.err("script", "expected a mapping with 'steps'")
        return None, ld.problems
    for key in document:
        if key not in ("script", "description", "steps", "requires"):
            ld.err(str(key), "unknown top-level field (script, description, requires, steps)")
    requires = document.get("requires", {}) or {}
    fields: tuple[str, ...] = ()
    if not isinstance(requires, dict) or not all(isinstance(v, list) for v in requires.values()):
        ld.err("requires", "expected {fields: [...]}")
    else:
        fields = tuple(str(f) for f in requires.get("fields", []))
    steps = ld.steps(document.get("steps"), "steps", frozenset())
    script = Script(
        str(document.get("script", Path(source).stem)),
        str(document.get("description", "")),
        steps,
        source,
        fields,
    )
    return script, ld.problems


def load_script(path: str | Path) -> Script:
    """Load and validate a perso script; :class:`ScriptError` (naming the step
    and the field) when anything is wrong."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScriptError(f"{path}: cannot read script: {exc}") from exc
    script, problems = parse_script(document, str(path))
    if problems or script is None:
        raise ScriptError(problems[0] if problems else f"{path}: empty script", problems)
    return script

"""Perso scripts: the personalization algorithm as data (background 004's "ScApp").

One interpreter, many card types: a perso script (YAML, ``docs/perso-scripts.md``)
is a list of card operations — SELECT, open an SCP03 secure channel, INSTALL,
STORE DATA of prepared DGIs, CREATE FILE, UPDATE BINARY / RECORD, PUT KEY,
SET STATUS, raw APDUs — each with the status words it expects and values drawn
from the card's prepared data (``${record.name}``, ``${app.dgis}``,
``${profile.card.kmc}``, ``${dek_encrypt(...)}``).

API used by the perso engine:

* :func:`load_script` — parse and validate (:class:`ScriptError` names the step
  and the field);
* :func:`execute` — run a script for one card over ``transmit``; the first
  unexpected status word (or any failure) raises :class:`StepFailed`;
* :func:`render` — the concrete APDU sequence for one card without a card
  (secrets masked);
* :func:`check` — problems found without a card, against a profile.

Secrets (:class:`cardlab.personalizer.batch.Sealed`, encrypted under the batch
transport key) are unsealed by the key store only while the step that sends
them is being built, and leave the host only re-encrypted for the card: under
the static DEK (encrypted STORE DATA blocks, ``dek_encrypt()``, PUT KEY) or
inside a C-DECRYPTION secure channel. Descriptions, events and errors never
hold a key, a PIN or a full PAN.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import (
    LEVEL_CDEC,
    SECURITY_LEVELS,
    HostSession,
    ScpError,
    StaticKeys,
    dek_encrypt,
    pad80,
    unpad80,
)

from .batch import AppPersoData, CardPersoData, Sealed

if TYPE_CHECKING:
    from .keys import KeyStore

__all__ = [
    "OPERATIONS",
    "Script",
    "ScriptError",
    "ScriptResult",
    "Step",
    "StepEvent",
    "StepFailed",
    "add_commands",
    "check",
    "execute",
    "load_script",
    "render",
]

#: maximum data bytes per STORE DATA command (before secure messaging); with
#: C-DEC padding and an 8-byte C-MAC the command stays a short APDU
STORE_DATA_BLOCK = 239
#: maximum data bytes per UPDATE BINARY command
UPDATE_BINARY_CHUNK = 239

OPERATIONS = (
    "select",
    "open_scp03",
    "install",
    "store_data",
    "create_file",
    "update_binary",
    "update_record",
    "append_record",
    "put_key",
    "set_status",
    "apdu",
)
#: operations that need an open secure channel (GP card content management)
_SECURE_OPS = frozenset({"install", "store_data", "put_key", "set_status"})

CARD_STATES = {"OP_READY": 0x01, "INITIALIZED": 0x07, "SECURED": 0x0F, "CARD_LOCKED": 0x7F, "TERMINATED": 0xFF}
APP_STATES = {"PERSONALIZED": 0x0F, "LOCKED": 0x80, "UNLOCKED": 0x00}
FILE_TYPES = {"df": 0x38, "transparent": 0x01, "linear_fixed": 0x02, "linear_variable": 0x04, "cyclic": 0x06}
#: access mode bits of the compact 8C coding, per file kind (ISO 7816-4 §7.4.3)
EF_MODES = {"read": 0x01, "update": 0x02, "write": 0x04, "append": 0x04}
DF_MODES = {"delete": 0x01, "create_ef": 0x02, "create_df": 0x04}
CONDITIONS = {
    "always": 0x00,
    "never": 0xFF,
    "secure_channel": 0x40,
    "sm": 0x40,
    "pin": 0x10,
    "sm_or_pin": 0x50,
    "sm_and_pin": 0xD0,
}


# =========================================================================== errors


class ScriptError(ValueError):
    """A script that does not load or validate; the message names the step and
    the field. ``problems`` holds every problem found (the message the first)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class StepFailed(Exception):
    """A step did not get a status word it expects (or could not be carried
    out); the engine stops that card. Never carries secrets."""

    def __init__(
        self,
        step_index: int,
        step_name: str,
        sw: int | None,
        expected: Sequence[str],
        reason: str = "",
    ) -> None:
        self.step_index = step_index
        self.step_name = step_name
        self.sw = sw
        self.expected = tuple(expected)
        self.reason = reason
        got = "no status word" if sw is None else f"SW {sw:04X}"
        text = f"step {step_index} ({step_name}): {got}"
        if sw is not None and expected:
            text += f", expected {' or '.join(expected)}"
        if reason:
            text += f": {reason}"
        super().__init__(text)


# =========================================================================== expressions


@dataclass(frozen=True)
class Path_:
    parts: tuple[str, ...]

    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Expr, ...]

    def text(self) -> str:
        return f"{self.fn}({', '.join(a.text() for a in self.args)})"


@dataclass(frozen=True)
class Lit:
    value: str | int

    def text(self) -> str:
        return repr(self.value) if isinstance(self.value, str) else str(self.value)


Expr = Path_ | Call | Lit

NAMESPACES = ("record", "card", "app", "item", "profile", "session")
#: function name → (min args, max args)
FUNCTIONS: Mapping[str, tuple[int, int]] = {
    "dek_encrypt": (1, 1),
    "utf8": (1, 1),
    "ascii": (1, 1),
    "hex": (1, 1),
    "bcd": (1, 2),
    "pad": (2, 3),
    "tlv": (2, 2),
    "lv": (1, 1),
    "concat": (1, 16),
    "u8": (1, 1),
    "u16": (1, 1),
}

_TOKEN = re.compile(r"\s*(?:(?P<str>'[^']*')|(?P<seg>[A-Za-z0-9_\-]+)|(?P<punct>[().,]))")


class _ExprError(ValueError):
    pass


def parse_expr(text: str) -> Expr:
    """Parse the inside of ``${...}``.

    >>> parse_expr("dek_encrypt(app.dgi.8000)").text()
    'dek_encrypt(app.dgi.8000)'
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _ExprError(f"unexpected {text[pos:pos + 10]!r} in ${{{text}}}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    expr, rest = _parse_tokens(tokens, text)
    if rest:
        raise _ExprError(f"unexpected {rest[0][1]!r} in ${{{text}}}")
    return expr


def _parse_tokens(tokens: list[tuple[str, str]], text: str) -> tuple[Expr, list[tuple[str, str]]]:
    if not tokens:
        raise _ExprError(f"empty expression in ${{{text}}}")
    kind, value = tokens[0]
    if kind == "str":
        return Lit(value[1:-1]), tokens[1:]
    if kind != "seg":
        raise _ExprError(f"unexpected {value!r} in ${{{text}}}")
    parts = [value]
    rest = tokens[1:]
    while len(rest) >= 2 and rest[0] == ("punct", ".") and rest[1][0] == "seg":
        parts.append(rest[1][1])
        rest = rest[2:]
    if rest and rest[0] == ("punct", "("):
        if len(parts) != 1:
            raise _ExprError(f"bad function name {'.'.join(parts)!r} in ${{{text}}}")
        rest = rest[1:]
        args: list[Expr] = []
        if rest and rest[0] == ("punct", ")"):
            return Call(parts[0], ()), rest[1:]
        while True:
            arg, rest = _parse_tokens(rest, text)
            args.append(arg)
            if rest and rest[0] == ("punct", ","):
                rest = rest[1:]
                continue
            if rest and rest[0] == ("punct", ")"):
                return Call(parts[0], tuple(args)), rest[1:]
            raise _ExprError(f"missing ')' in ${{{text}}}")
    if len(parts) == 1 and parts[0].isdigit():
        return Lit(int(parts[0])), rest
    return Path_(tuple(parts)), rest


def _walk_expr(expr: Expr) -> Iterator[Expr]:
    yield expr
    if isinstance(expr, Call):
        for a in expr.args:
            yield from _walk_expr(a)


def _validate_expr(expr: Expr, scope: frozenset[str]) -> str | None:
    for e in _walk_expr(expr):
        if isinstance(e, Call):
            if e.fn not in FUNCTIONS:
                return f"unknown function {e.fn}() (known: {', '.join(sorted(FUNCTIONS))})"
            low, high = FUNCTIONS[e.fn]
            if not low <= len(e.args) <= high:
                return f"{e.fn}() takes {low}–{high} arguments, not {len(e.args)}"
        elif isinstance(e, Path_):
            head = e.parts[0]
            if head not in NAMESPACES:
                return f"unknown reference {e.text()!r} (names start with {', '.join(NAMESPACES)})"
            if head == "app" and "app" not in scope:
                return f"${{{e.text()}}} is only defined inside 'foreach: app'"
            if head == "item":
                if "item" not in scope:
                    return f"${{{e.text()}}} is only defined inside 'foreach: record.FIELD'"
                if len(e.parts) > 2 or e.parts[1:] not in ((), ("number",), ("index",)):
                    return f"${{{e.text()}}}: item fields are item, item.number, item.index"
                continue
            if len(e.parts) == 1:
                return f"${{{head}}} needs a field (e.g. {head}.name)"
    return None


_REF = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Template:
    """A value with ``${...}`` references: literal text and expressions."""

    parts: tuple[str | Expr, ...]
    source: str

    @property
    def single(self) -> Expr | None:
        """The expression when the whole value is one ``${...}``."""
        if len(self.parts) == 1 and not isinstance(self.parts[0], str):
            return self.parts[0]
        return None

    def exprs(self) -> Iterator[Expr]:
        for p in self.parts:
            if not isinstance(p, str):
                yield p


def compile_template(source: str) -> Template:
    parts: list[str | Expr] = []
    pos = 0
    for m in _REF.finditer(source):
        if m.start() > pos:
            parts.append(source[pos : m.start()])
        parts.append(parse_expr(m.group(1)))
        pos = m.end()
    if pos < len(source):
        parts.append(source[pos:])
    if "${" in "".join(p for p in parts if isinstance(p, str)):
        raise _ExprError("unclosed ${")
    return Template(tuple(parts), source)


# =========================================================================== data values


@dataclass(frozen=True)
class Secret:
    """A secret piece of command data. ``value`` is what goes to the card:
    clear (``encrypted=False``: only inside a C-DEC channel) or already
    encrypted for the card; ``None`` when rendering (no key store)."""

    label: str
    length: int  # exact when value is set, an upper bound otherwise
    value: bytes | None = field(default=None, repr=False)
    encrypted: bool = False


Piece = bytes | Secret


@dataclass(frozen=True)
class Data:
    """Command data: clear bytes and secret pieces."""

    pieces: tuple[Piece, ...] = ()

    @classmethod
    def of(cls, *items: Piece | Data) -> Data:
        out: list[Piece] = []
        for item in items:
            for p in item.pieces if isinstance(item, Data) else (item,):
                if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
                    out[-1] = out[-1] + p
                elif not (isinstance(p, bytes) and not p):
                    out.append(p)
        return cls(tuple(out))

    def __len__(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.length for p in self.pieces)

    @property
    def exact(self) -> bool:
        return all(isinstance(p, bytes) or p.value is not None for p in self.pieces)

    @property
    def has_clear_secret(self) -> bool:
        return any(isinstance(p, Secret) and not p.encrypted for p in self.pieces)

    @property
    def secret(self) -> bool:
        return any(isinstance(p, Secret) for p in self.pieces)

    def clear(self) -> bytes | None:
        """The bytes when there is no secret piece."""
        if self.secret:
            return None
        return b"".join(p for p in self.pieces if isinstance(p, bytes))

    def materialize(self) -> bytes:
        out = b""
        for p in self.pieces:
            if isinstance(p, bytes):
                out += p
            elif p.value is None:
                raise _EvalError(f"{p.label} is not available")
            else:
                out += p.value
        return out

    def show(self, mask: Callable[[str], str]) -> str:
        out = []
        for p in self.pieces:
            out.append(mask(p.hex().upper()) if isinstance(p, bytes) else f"<{p.label}>")
        return " ".join(out)


@dataclass(frozen=True)
class DgiList:
    """An application's prepared DGIs (``${app.dgis}``)."""

    items: tuple[tuple[int, bytes | Sealed], ...]


class _EvalError(ValueError):
    pass


@dataclass(frozen=True)
class _Lazy:
    """A runtime-only value (``session.*``) while rendering."""

    label: str


# =========================================================================== the script


@dataclass(frozen=True)
class Step:
    """One step: an operation with its arguments, or a block of steps."""

    index: int  # 1-based, depth-first over the whole script
    name: str
    op: str | None  # None for a block (``steps:``)
    args: Mapping[str, Any] = field(default_factory=dict)
    expect: tuple[str, ...] = ("9000",)
    #: "app", or a card field holding a ';'-separated list ("record.premises")
    foreach: str | None = None
    steps: tuple[Step, ...] = ()
    when: Template | None = None


@dataclass(frozen=True)
class Script:
    name: str
    description: str
    steps: tuple[Step, ...]
    source: str = "<script>"
    requires_fields: tuple[str, ...] = ()

    def walk(self) -> Iterator[Step]:
        def rec(steps: Sequence[Step]) -> Iterator[Step]:
            for s in steps:
                yield s
                yield from rec(s.steps)

        return rec(self.steps)


# -- argument schemas ------------------------------------------------------------------

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
_INSTALL_KINDS = {
    "install": 0x04,
    "install_and_make_selectable": 0x0C,
    "make_selectable": 0x08,
    "personalization": 0x20,
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
            dgi = _dgi_number(item["dgi"])
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
        except _ExprError as exc:
            self.err(where, str(exc))
            return None
        for e in t.exprs():
            problem = _validate_expr(e, in_app)
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
            if isinstance(kind, str) and kind not in _INSTALL_KINDS:
                self.err(f"{where}.for", f"{kind!r} is not one of {', '.join(_INSTALL_KINDS)}")
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


def _dgi_number(raw: Any) -> int | None:
    text = f"{raw:04d}" if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1000 else str(raw)
    if re.fullmatch(r"[0-9A-Fa-f]{4}", text):
        return int(text, 16)
    return None


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


# =========================================================================== evaluation


@dataclass
class _Env:
    card: CardPersoData
    profile: Mapping[str, Any] | None
    keystore: KeyStore | None  # None while rendering
    app: AppPersoData | None = None
    app_index: int = 0
    item: tuple[str, int] | None = None  # (text, 0-based index) in a foreach over a field
    session: HostSession | None = None
    rendering: bool = False

    # -- secrets
    def unseal(self, sealed: Sealed, label: str) -> Secret:
        if self.keystore is None:
            return Secret(label, max(len(sealed.ciphertext) - 1, 0))
        try:
            if self.keystore.kcv(sealed.kek) != sealed.kek_kcv:
                raise _EvalError(f"{label}: transport key {sealed.kek!r} has another check value")
            clear = unpad80(self.keystore.decrypt(sealed.kek, sealed.ciphertext))
        except _EvalError:
            raise
        except Exception as exc:  # key store errors name keys, never values
            raise _EvalError(f"{label}: cannot unseal ({type(exc).__name__}: {exc})") from None
        return Secret(label, len(clear), clear)

    def dek(self) -> bytes | None:
        if self.session is None or not self.session.authenticated:
            return None
        return self.session.keys.dek


def _label_of(expr: Expr) -> str:
    if isinstance(expr, Path_):
        parts = expr.parts
        if parts[1:2] == ("dgi",) and len(parts) == 3:
            return f"sealed:{parts[2].upper()}"
        return f"sealed:{'.'.join(parts[1:])}"
    return "sealed"


def _evaluate(expr: Expr, env: _Env) -> Any:
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Path_):
        value = _resolve(expr, env)
        if isinstance(value, Sealed):
            return env.unseal(value, _label_of(expr))
        return value
    args = [_evaluate(a, env) for a in expr.args]
    return _call(expr.fn, args, env)


def _resolve(expr: Path_, env: _Env) -> Any:
    head, *rest = expr.parts
    card = env.card
    if head == "record":
        return _field(card, rest[0]) if len(rest) == 1 else _fail(expr, "record.NAME has one field name")
    if head == "card":
        key = rest[0]
        if key == "fields" and len(rest) == 2:
            return _field(card, rest[1])
        if key in ("card_id", "pan_masked") and len(rest) == 1:
            return getattr(card, key)
        if key == "record_index" and len(rest) == 1:
            return card.record_index
        if key == "dgi" and len(rest) == 2:  # a DGI of any application of the card
            number = _dgi_number(rest[1])
            for app_data in card.apps:
                for dgi, value in app_data.dgis:
                    if dgi == number:
                        return value
            return _fail(expr, f"the card data has no DGI {rest[1].upper()}")
        return _fail(expr, "card fields: card_id, record_index, pan_masked, fields.NAME, dgi.XXXX")
    if head == "app":
        app = env.app
        if app is None:
            return _fail(expr, "no current application")
        key = rest[0]
        if key in ("aid", "load_file", "module", "privileges", "install_params") and len(rest) == 1:
            return getattr(app, key)
        if key == "dgis" and len(rest) == 1:
            return DgiList(app.dgis)
        if key == "index" and len(rest) == 1:
            return env.app_index
        if key == "dgi" and len(rest) == 2:
            number = _dgi_number(rest[1])
            for dgi, value in app.dgis:
                if dgi == number:
                    return value
            return _fail(expr, f"the application has no DGI {rest[1].upper()}")
        return _fail(expr, "app fields: aid, load_file, module, privileges, install_params, dgis, dgi.XXXX, index")
    if head == "item":
        if env.item is None:
            return _fail(expr, "no current item")
        if not rest:
            return env.item[0]
        return env.item[1] + 1 if rest[0] == "number" else env.item[1]
    if head == "profile":
        node: Any = env.profile
        if node is None:
            return _fail(expr, "no profile given")
        for i, part in enumerate(rest):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return _fail(expr, f"the profile has no {'.'.join(['profile', *rest[: i + 1]])}")
        return node
    if head == "session":
        key = rest[0]
        if env.session is None or not env.session.authenticated:
            if env.rendering:
                return _Lazy(f"session.{key}")
            return _fail(expr, "no secure channel is open")
        if key == "kdd":
            return env.session.kdd
        if key == "key_version":
            return env.session.key_version
        if key == "level":
            return env.session.level
        return _fail(expr, "session fields: kdd, key_version, level")
    return _fail(expr, "unknown reference")


def _field(card: CardPersoData, name: str) -> str:
    if name not in card.fields:
        known = ", ".join(sorted(card.fields)) or "none"
        raise _EvalError(f"the card data has no field {name!r} (fields: {known})")
    return card.fields[name]


def _fail(expr: Path_, msg: str) -> Any:
    raise _EvalError(f"${{{expr.text()}}}: {msg}")


def _as_data(value: Any, what: str) -> Data:
    """A value in a bytes context."""
    if isinstance(value, Data):
        return value
    if isinstance(value, (bytes, Secret)):
        return Data.of(value)
    if isinstance(value, _Lazy):
        return Data.of(Secret(value.label, 0, None, encrypted=True))
    if isinstance(value, str):
        compact = re.sub(r"\s+", "", value)
        if re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", compact):
            return Data.of(bytes.fromhex(compact))
        raise _EvalError(f"{what}: text is not hex; use utf8(...) or ascii(...) for text")
    if isinstance(value, int) and not isinstance(value, bool):
        raise _EvalError(f"{what}: a number is not bytes; use u8(...) or u16(...)")
    raise _EvalError(f"{what}: {type(value).__name__} is not bytes")


def _as_bytes(value: Any, what: str) -> bytes:
    data = _as_data(value, what)
    clear = data.clear()
    if clear is None:
        raise _EvalError(f"{what}: secret data cannot be used here")
    return clear


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _EvalError(f"{what}: expected a number")


def _as_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _EvalError(f"{what}: expected text")


def _call(fn: str, args: list[Any], env: _Env) -> Any:
    if fn in ("utf8", "ascii"):
        text = _as_text(args[0], f"{fn}()")
        try:
            return text.encode("utf-8" if fn == "utf8" else "ascii")
        except UnicodeEncodeError:
            raise _EvalError(f"{fn}(): text is not ASCII") from None
    if fn == "hex":
        return _as_data(_as_text(args[0], "hex()"), "hex()")
    if fn == "bcd":
        digits = _as_text(args[0], "bcd()")
        if not digits.isdigit():
            raise _EvalError("bcd(): expected digits")
        n = _as_int(args[1], "bcd() length") if len(args) > 1 else (len(digits) + 1) // 2
        if len(digits) > 2 * n:
            raise _EvalError(f"bcd(): {len(digits)} digits do not fit in {n} bytes")
        return bytes.fromhex(digits.rjust(2 * n, "0"))
    if fn == "u8":
        v = _as_int(args[0], "u8()")
        if not 0 <= v <= 0xFF:
            raise _EvalError("u8(): out of range")
        return bytes((v,))
    if fn == "u16":
        v = _as_int(args[0], "u16()")
        if not 0 <= v <= 0xFFFF:
            raise _EvalError("u16(): out of range")
        return v.to_bytes(2, "big")
    if fn == "pad":
        data = _as_data(args[0], "pad()")
        n = _as_int(args[1], "pad() length")
        fill = _as_bytes(args[2], "pad() fill") if len(args) > 2 else b"\x00"
        if len(fill) != 1:
            raise _EvalError("pad(): the fill is one byte")
        if len(data) > n:
            raise _EvalError(f"pad(): {len(data)} bytes do not fit in {n}")
        return Data.of(data, fill * (n - len(data)))
    if fn == "lv":
        data = _as_data(args[0], "lv()")
        if len(data) > 0xFF:
            raise _EvalError("lv(): longer than 255 bytes")
        return Data.of(bytes((len(data),)), data)
    if fn == "tlv":
        tag = _as_bytes(args[0], "tlv() tag")
        data = _as_data(args[1], "tlv() value")
        return Data.of(tag, _ber_length(len(data)), data)
    if fn == "concat":
        return Data.of(*(_as_data(a, "concat()") for a in args))
    if fn == "dek_encrypt":
        data = _as_data(args[0], "dek_encrypt()")
        labels = ",".join(p.label for p in data.pieces if isinstance(p, Secret)) or "data"
        length = (len(data) // 16 + 1) * 16
        dek = env.dek()
        if dek is None or not data.exact:
            if not env.rendering:
                raise _EvalError("dek_encrypt() needs an open secure channel")
            return Secret(f"dek_encrypt:{labels}", length, None, encrypted=True)
        return Secret(f"dek_encrypt:{labels}", length, dek_encrypt(dek, pad80(data.materialize())), encrypted=True)
    raise _EvalError(f"unknown function {fn}()")


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return b"\x81" + bytes((n,))
    return b"\x82" + n.to_bytes(2, "big")


def _eval_value(value: Any, env: _Env, what: str) -> Any:
    """A step argument's value: templates evaluated (a lone ``${...}`` keeps
    its type; text around references concatenates bytes)."""
    if isinstance(value, Template):
        single = value.single
        if single is not None:
            return _evaluate(single, env)
        parts: list[Data] = []
        for p in value.parts:
            parts.append(_as_data(p, what) if isinstance(p, str) else _as_data(_evaluate(p, env), what))
        return Data.of(*parts)
    if isinstance(value, dict):
        return {k: _eval_value(v, env, f"{what}.{k}") for k, v in value.items()}
    return value


# =========================================================================== commands


@dataclass(frozen=True)
class Command:
    """One command APDU before secure messaging."""

    header: bytes
    data: Data = Data()
    le: bytes = b""
    note: str = ""
    plain: bool = False  # never wrapped (raw APDU with plain: true)

    def build(self) -> bytes:
        body = self.data.materialize()
        if not body:
            return self.header + self.le
        if len(body) > 0xFF:
            return self.header + b"\x00" + len(body).to_bytes(2, "big") + body + (self.le and b"\x00\x00")
        return self.header + bytes((len(body),)) + body + self.le

    def show(self, mask: Callable[[str], str]) -> str:
        text = self.header.hex().upper()
        if self.data.pieces:
            n = len(self.data)
            lc = f"{n:02X}" if self.data.exact else "xx"
            text += f" {lc} {self.data.show(mask)}"
        if self.le:
            text += f" {self.le.hex().upper()}"
        if self.note:
            text += f"   ; {self.note}"
        return text


def _lv(b: bytes) -> bytes:
    return bytes((len(b),)) + b


def _install_params(params: bytes) -> bytes:
    """The install parameters field: kept when it already is a C9/EF/CA/EA
    TLV list, else wrapped as the C9 application specific parameters."""
    if params:
        try:
            items = tlv.parse(params)
            if any(t.tag == 0xC9 for t in items) and all(t.tag in (0xC9, 0xEF, 0xCA, 0xEA) for t in items):
                return params
        except tlv.TlvError:
            pass
    return tlv.encode(0xC9, params)


def _is_secret_dgi(value: bytes | Sealed) -> bool:
    return isinstance(value, Sealed)


@dataclass
class _Block:
    encrypted: bool
    items: list[tuple[int, Data]] = field(default_factory=list)

    def size(self) -> int:
        return sum(len(tlv.encode_dgi(d, b"")) + len(v) + (2 if len(v) >= 0xFF else 0) for d, v in self.items)


def _encoded_size(block: _Block, extra: int) -> int:
    n = block.size() + extra
    return (n // 16 + 1) * 16 if block.encrypted else n


def plan_store_blocks(dgis: Sequence[tuple[int, Data, bool]]) -> list[_Block]:
    """Group DGIs into STORE DATA blocks: whole DGIs, at most
    :data:`STORE_DATA_BLOCK` bytes of command data (encrypted blocks counted
    after ISO padding), secret DGIs in blocks of their own; blocks keep the
    order of their first DGI. A DGI too long for any block goes alone."""
    blocks: list[_Block] = []
    open_: dict[bool, _Block] = {}
    for dgi, value, secret in dgis:
        item_size = len(tlv.encode_dgi(dgi, b"")) + len(value) + (2 if len(value) >= 0xFF else 0)
        current = open_.get(secret)
        if current is None or _encoded_size(current, item_size) > STORE_DATA_BLOCK:
            current = open_[secret] = _Block(secret)
            blocks.append(current)
        current.items.append((dgi, value))
    return blocks


def _dgi_data(dgi: int, value: Data) -> Data:
    n = len(value)
    length = bytes((n,)) if n < 0xFF else b"\xff" + n.to_bytes(2, "big")
    return Data.of(dgi.to_bytes(2, "big"), length, value)


# =========================================================================== execution


@dataclass(frozen=True)
class StepEvent:
    """What one step did (for the engine's progress and audit): no secrets."""

    step_index: int
    step_name: str
    operation: str
    apdus: int
    description: str
    sw: int | None = None
    app: str | None = None  # AID (hex) of the current application in a foreach


@dataclass(frozen=True)
class ScriptResult:
    script: str
    card_id: str
    apdus: int
    steps: int
    events: tuple[StepEvent, ...]
    kdd: bytes = b""


def _sw_matches(sw: int, patterns: Sequence[str]) -> bool:
    text = f"{sw:04X}"
    return any(p == text or (p.endswith("XX") and p[:2] == text[:2]) for p in patterns)


class _Runner:
    """Walks the steps; ``send`` is None when rendering."""

    def __init__(
        self,
        script: Script,
        env: _Env,
        transmit: Callable[[bytes], bytes] | None,
        on_step: Callable[[StepEvent], None] | None,
        mask: Callable[[str], str],
    ) -> None:
        self.script = script
        self.env = env
        self.transmit = transmit
        self.on_step = on_step
        self.mask = mask
        self.lines: list[str] = []
        self.events: list[StepEvent] = []
        self.apdus = 0
        self.steps_run = 0
        self.block_counter = 0
        self.channel_open = False
        self.kdd = b""

    # -- walking
    def run(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if step.foreach == "app":
                for i, app in enumerate(self.env.card.apps):
                    saved = (self.env.app, self.env.app_index)
                    self.env.app, self.env.app_index = app, i
                    try:
                        self.one(step)
                    finally:
                        self.env.app, self.env.app_index = saved
            elif step.foreach is not None:
                try:
                    items = _field(self.env.card, step.foreach.split(".")[-1])
                except _EvalError as exc:
                    raise StepFailed(step.index, step.name, None, step.expect, str(exc)) from None
                for i, text in enumerate(t.strip() for t in items.split(";") if t.strip()):
                    saved_item = self.env.item
                    self.env.item = (text, i)
                    try:
                        self.one(step)
                    finally:
                        self.env.item = saved_item
            else:
                self.one(step)

    def one(self, step: Step) -> None:
        if step.when is not None:
            try:
                cond = _eval_value(step.when, self.env, "when")
            except _EvalError as exc:
                raise StepFailed(step.index, step.name, None, step.expect, str(exc)) from None
            if isinstance(cond, _Lazy):
                cond = True
            if not cond or (isinstance(cond, str) and cond.lower() in ("false", "no", "0")):
                if self.transmit is None:
                    self.lines.append(f"# {step.index} {step.name}: skipped (when)")
                return
        if step.op is None:
            self.run(step.steps)
            return
        app = self.env.app.aid.hex().upper() if self.env.app is not None else None
        if self.transmit is None:
            where = f" [app {app}]" if app else ""
            self.lines.append(f"# {step.index} {step.name}{where}")
        try:
            count, sw, description = self.operate(step)
        except _EvalError as exc:
            raise StepFailed(step.index, step.name, None, step.expect, str(exc)) from None
        self.steps_run += 1
        event = StepEvent(step.index, step.name, step.op, count, description, sw, app)
        self.events.append(event)
        if self.on_step is not None:
            self.on_step(event)

    # -- sending
    def exchange(self, step: Step, cmd: Command, expect: Sequence[str] | None = None) -> tuple[bytes, int | None]:
        """Send one command (through the secure channel when open); check SW."""
        expect = step.expect if expect is None else expect
        self.apdus += 1
        if self.transmit is None:
            self.lines.append(cmd.show(self.mask))
            return b"", None
        session = self.env.session
        wrapped = session is not None and session.authenticated and not cmd.plain
        if cmd.data.has_clear_secret and not (wrapped and session is not None and session.level & LEVEL_CDEC):
            raise StepFailed(
                step.index, step.name, None, expect,
                "secret data would leave in clear: open the secure channel with C-DECRYPTION "
                "(level 03, 13 or 33) or use dek_encrypt()",
            )
        raw = cmd.build()
        try:
            resp = session.send(raw) if wrapped and session is not None else self.transmit(raw)
        except ScpError as exc:
            raise StepFailed(step.index, step.name, exc.sw, expect, str(exc)) from None
        if len(resp) < 2:
            raise StepFailed(step.index, step.name, None, expect, "response without a status word")
        sw = int.from_bytes(resp[-2:], "big")
        if not _sw_matches(sw, expect):
            raise StepFailed(step.index, step.name, sw, expect, cmd.note)
        return resp[:-2], sw

    def value(self, step: Step, key: str, default: Any = None) -> Any:
        raw = step.args.get(key, default)
        return _eval_value(raw, self.env, f"{step.op}.{key}")

    def bytes_arg(self, step: Step, key: str, default: bytes | None = None) -> bytes:
        if key not in step.args:
            if default is None:
                raise _EvalError(f"{step.op}.{key} is missing")
            return default
        return _as_bytes(self.value(step, key), f"{step.op}.{key}")

    def data_arg(self, step: Step, key: str) -> Data:
        return _as_data(self.value(step, key), f"{step.op}.{key}")

    def int_arg(self, step: Step, key: str, default: int) -> int:
        if key not in step.args:
            return default
        return _as_int(self.value(step, key), f"{step.op}.{key}")

    def str_arg(self, step: Step, key: str, default: str = "") -> str:
        if key not in step.args:
            return default
        return _as_text(self.value(step, key), f"{step.op}.{key}")

    # -- operations
    def operate(self, step: Step) -> tuple[int, int | None, str]:
        op = step.op
        before = self.apdus
        sw: int | None = None
        handler = getattr(self, f"op_{op}")
        description, sw = handler(step)
        return self.apdus - before, sw, description

    def op_select(self, step: Step) -> tuple[str, int | None]:
        self.close_channel()
        if "aid" in step.args:
            aid = self.bytes_arg(step, "aid")
            cmd = Command(b"\x00\xa4\x04" + bytes((self.int_arg(step, "p2", 0),)), Data.of(aid), b"\x00",
                          "SELECT by name")
            desc = f"SELECT {aid.hex().upper()}"
        elif "fid" in step.args:
            fid = self.bytes_arg(step, "fid")
            cmd = Command(b"\x00\xa4\x00" + bytes((self.int_arg(step, "p2", 0x0C),)), Data.of(fid), b"",
                          "SELECT by file identifier")
            desc = f"SELECT FID {fid.hex().upper()}"
        else:
            path = self.bytes_arg(step, "path")
            cmd = Command(b"\x00\xa4\x08" + bytes((self.int_arg(step, "p2", 0x0C),)), Data.of(path), b"",
                          "SELECT by path from the MF")
            desc = f"SELECT path {path.hex().upper()}"
        _, sw = self.exchange(step, cmd)
        return desc, sw

    def close_channel(self) -> None:
        """Selecting ends the secure channel (GP §10.2, Amendment D §6.2.4)."""
        if self.env.session is not None and self.transmit is None and self.channel_open:
            self.lines.append("# (the secure channel ends here)")
        self.env.session = None
        self.channel_open = False

    def op_open_scp03(self, step: Step) -> tuple[str, int | None]:
        level = self.int_arg(step, "level", 0x33)
        kvn = self.int_arg(step, "key_version", 0)
        host_challenge = self.bytes_arg(step, "host_challenge", b"") or None
        if "kmc" in step.args:
            kmc = self.str_arg(step, "kmc")
            scheme = self.str_arg(step, "scheme").upper()
            source = f"KMC {kmc} diversified ({scheme}) by the card's KDD" if scheme != "NONE" else f"KMC {kmc}"
        else:
            kmc, scheme = "", ""
            source = "static keys"
        level_text = f"{level:02X}"
        desc = f"open SCP03 level {level_text} ({source})"
        self.block_counter = 0
        if self.transmit is None:
            self.apdus += 2
            self.lines.append(f"80 50 {kvn:02X} 00 08 <host challenge> 00   ; INITIALIZE UPDATE ({source})")
            self.lines.append(f"84 82 {level_text} 00 10 <host cryptogram> <C-MAC>   ; EXTERNAL AUTHENTICATE")
            self.lines.append(f"# commands below are sent wrapped at level {level_text} ({_level_text(level)});"
                              " shown before wrapping")
            self.channel_open = True
            return desc, None
        keystore = self.env.keystore
        runner = self
        static: StaticKeys | None = None
        if not kmc:
            keys = {k: _as_bytes(v, f"open_scp03.keys.{k}") for k, v in self.value(step, "keys").items()}
            try:
                static = StaticKeys(keys["enc"], keys["mac"], keys["dek"], kvn)
            except ValueError as exc:
                raise _EvalError(f"open_scp03.keys: {exc}") from None
        transmit = self.transmit
        assert transmit is not None

        def card_keys(kdd: bytes, answered_kvn: int) -> StaticKeys:
            if static is not None:
                return static
            assert keystore is not None
            try:
                if scheme == "NONE":
                    clear = getattr(keystore, "clear_value", None)
                    if clear is None:
                        raise _EvalError("scheme none needs a key store that can use the KMC as a static key")
                    k = clear(kmc)
                    return StaticKeys(k, k, k, answered_kvn)
                ck = keystore.diversify_card_keys(kmc, scheme, kdd)
                return StaticKeys(ck.enc, ck.mac, ck.dek, answered_kvn)
            except _EvalError:
                raise
            except Exception as exc:
                raise _EvalError(f"card keys from {kmc!r}: {type(exc).__name__}: {exc}") from None

        placeholder = StaticKeys(bytes(16), bytes(16), bytes(16), kvn)
        session = HostSession(lambda apdu: b"", placeholder)

        def hooked(apdu: bytes) -> bytes:
            runner.apdus += 1
            resp = transmit(apdu)
            if len(apdu) > 1 and apdu[1] == 0x50 and resp[-2:] == b"\x90\x00" and len(resp) >= 13:
                # the KDD of INITIALIZE UPDATE's answer chooses the card's keys
                session.keys = card_keys(resp[:10], resp[10])
            return resp

        session.transmit = hooked
        try:
            session.open(level, host_challenge, kvn)
        except ScpError as exc:
            if exc.sw is not None and _sw_matches(exc.sw, step.expect) and exc.sw != 0x9000:
                return desc + f": refused {exc.sw:04X} (expected)", exc.sw
            raise StepFailed(step.index, step.name, exc.sw, step.expect, str(exc)) from None
        if not _sw_matches(0x9000, step.expect):
            # the channel opened (9000) but the script expected it to be refused
            raise StepFailed(step.index, step.name, 0x9000, step.expect, "the secure channel opened")
        session.transmit = transmit
        self.env.session = session
        self.channel_open = True
        self.kdd = session.kdd
        return desc, 0x9000

    def need_channel(self, step: Step) -> None:
        if self.transmit is not None and (self.env.session is None or not self.env.session.authenticated):
            raise StepFailed(step.index, step.name, None, step.expect, f"{step.op} needs an open secure channel")

    def op_install(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        kind = self.str_arg(step, "for")
        p1 = _INSTALL_KINDS[kind]
        aid = self.bytes_arg(step, "aid")
        if kind == "personalization":
            data = b"\x00\x00" + _lv(aid) + b"\x00\x00\x00"
            self.block_counter = 0
        elif kind == "make_selectable":
            priv = self.bytes_arg(step, "privileges", b"")
            data = b"\x00\x00" + _lv(aid) + _lv(priv) + b"\x00\x00"
        else:
            lf = self.bytes_arg(step, "load_file")
            module = self.bytes_arg(step, "module")
            priv = self.bytes_arg(step, "privileges", b"\x00")
            params = _install_params(self.bytes_arg(step, "params", b""))
            data = _lv(lf) + _lv(module) + _lv(aid) + _lv(priv) + _lv(params) + b"\x00"
        cmd = Command(bytes((0x80, 0xE6, p1, 0x00)), Data.of(data), b"\x00", f"INSTALL [for {kind.replace('_', ' ')}]")
        _, sw = self.exchange(step, cmd)
        return f"INSTALL [for {kind.replace('_', ' ')}] {aid.hex().upper()}", sw

    def op_store_data(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        last = bool(step.args.get("last", True))
        if "dgis" in step.args:
            dgis = self.dgi_values(step)
            blocks = plan_store_blocks(dgis)
            if not blocks:
                raise _EvalError("no DGIs to store")
            sw: int | None = None
            for n, block in enumerate(blocks):
                is_last = last and n == len(blocks) - 1
                body = Data.of(*(_dgi_data(d, v) for d, v in block.items))
                p1 = 0x08 | (0x80 if is_last else 0)
                names = " ".join(f"{d:04X}" for d, _ in block.items)
                if block.encrypted:
                    p1 |= 0x60
                    body = self.dek_block(body, names)
                note = f"STORE DATA DGI {names}" + (" (encrypted under the DEK)" if block.encrypted else "")
                if is_last:
                    note += " (last block)"
                sw = self.store(step, p1, body, note)
            secret = sum(1 for b in blocks if b.encrypted)
            return (f"STORE DATA {sum(len(b.items) for b in blocks)} DGIs in {len(blocks)} blocks "
                    f"({secret} encrypted)"), sw
        fmt = step.args.get("format", "dgi")
        encrypt = bool(step.args.get("encrypt", False))
        data = self.data_arg(step, "data")
        p1 = {"none": 0x00, "dgi": 0x08, "ber": 0x10}[fmt] | (0x80 if last else 0)
        if encrypt:
            p1 |= 0x60
            data = self.dek_block(data, "data")
        if len(data) > 0xFF:
            raise _EvalError(f"store_data.data: {len(data)} bytes do not fit in one STORE DATA")
        sw = self.store(step, p1, data, "STORE DATA" + (" (encrypted)" if encrypt else ""))
        return f"STORE DATA {len(data)} bytes" + (" (last)" if last else ""), sw

    def dgi_values(self, step: Step) -> list[tuple[int, Data, bool]]:
        raw = step.args["dgis"]
        out: list[tuple[int, Data, bool]] = []
        if isinstance(raw, tuple):  # literal list of {dgi, value}
            for dgi, template in raw:
                value = _eval_value(template, self.env, f"store_data.dgis {dgi:04X}")
                data = _as_data(value, f"store_data.dgis {dgi:04X}")
                out.append((dgi, data, data.secret))
            return out
        value = _eval_value(raw, self.env, "store_data.dgis")
        if not isinstance(value, DgiList):
            raise _EvalError("store_data.dgis: expected ${app.dgis} or a list of {dgi, value}")
        for dgi, v in value.items:
            if isinstance(v, Sealed):
                out.append((dgi, Data.of(self.env.unseal(v, f"sealed:{dgi:04X}")), True))
            else:
                out.append((dgi, Data.of(v), False))
        return out

    def dek_block(self, body: Data, names: str) -> Data:
        """Encrypt a STORE DATA data field under the session's static DEK
        (ISO 9797-1 method 2 padding over the whole field, docs/dgi-map.md)."""
        length = (len(body) // 16 + 1) * 16
        dek = self.env.dek()
        if dek is None or not body.exact:
            return Data.of(Secret(f"sealed:{names.replace(' ', ',')}", length, None, encrypted=True))
        clear = body.materialize()
        return Data.of(Secret(f"sealed:{names.replace(' ', ',')}", length, dek_encrypt(dek, pad80(clear)), True))

    def store(self, step: Step, p1: int, body: Data, note: str) -> int | None:
        cmd = Command(bytes((0x80, 0xE2, p1, self.block_counter & 0xFF)), body, b"\x00", note)
        _, sw = self.exchange(step, cmd)
        self.block_counter = 0 if p1 & 0x80 else self.block_counter + 1
        return sw

    def op_create_file(self, step: Step) -> tuple[str, int | None]:
        if "fcp" in step.args:
            fcp = self.bytes_arg(step, "fcp")
            desc = "CREATE FILE (FCP given)"
        else:
            fcp, desc = self.build_fcp(step)
        _, sw = self.exchange(step, Command(b"\x00\xe0\x00\x00", Data.of(fcp), b"", desc))
        return desc, sw

    def build_fcp(self, step: Step) -> tuple[bytes, str]:
        kind = self.str_arg(step, "type")
        fdb = FILE_TYPES[kind]
        fid = self.bytes_arg(step, "fid")
        if len(fid) != 2:
            raise _EvalError("create_file.fid: a file identifier is 2 bytes")
        items: list[tuple[int, bytes]] = []
        if kind == "df":
            items.append((0x82, bytes((fdb, 0x41))))
        elif kind == "transparent":
            size = self.int_arg(step, "size", 0)
            items.append((0x80, size.to_bytes(2, "big")))
            items.append((0x82, bytes((fdb, 0x41))))
        else:
            rec_len = self.int_arg(step, "record_length", 0)
            count = self.int_arg(step, "records", 0)
            if not (1 <= rec_len <= 255 and 1 <= count <= 254):
                raise _EvalError("create_file: record_length 1–255 and records 1–254")
            items.append((0x82, bytes((fdb, 0x41)) + rec_len.to_bytes(2, "big") + bytes((count,))))
        items.append((0x83, fid))
        if "name" in step.args:
            items.append((0x84, self.bytes_arg(step, "name")))
        if "sfi" in step.args:
            sfi = self.int_arg(step, "sfi", 0)
            items.append((0x88, bytes((sfi << 3,)) if sfi else b""))
        items.append((0x8A, b"\x05"))
        access = step.args.get("access")
        if access:
            modes = DF_MODES if kind == "df" else EF_MODES
            rules = {modes[m]: CONDITIONS[c] for m, c in access.items()}
            items.append((0x8C, compact_acl(rules)))
        fcp = tlv.encode(0x62, tlv.encode_all(items))
        acl = ", ".join(f"{m}: {c}" for m, c in (access or {}).items())
        return fcp, f"CREATE FILE {kind} {fid.hex().upper()}" + (f" ({acl})" if acl else "")

    def op_update_binary(self, step: Step) -> tuple[str, int | None]:
        data = self.data_arg(step, "data")
        offset = self.int_arg(step, "offset", 0)
        sfi = step.args.get("sfi")
        sw: int | None = None
        chunks = _chunks(data, UPDATE_BINARY_CHUNK)
        for n, (start, chunk) in enumerate(chunks):
            pos = offset + start
            if sfi is not None and n == 0:
                if pos > 0xFF:
                    raise _EvalError("update_binary: with an SFI the offset is at most 255")
                p1p2 = bytes((0x80 | self.int_arg(step, "sfi", 0), pos))
            else:
                if pos > 0x7FFF:
                    raise _EvalError("update_binary: offset beyond 32767")
                p1p2 = pos.to_bytes(2, "big")
            _, sw = self.exchange(step, Command(b"\x00\xd6" + p1p2, chunk, b"", "UPDATE BINARY"))
        return f"UPDATE BINARY {len(data)} bytes at {offset}", sw

    def op_update_record(self, step: Step) -> tuple[str, int | None]:
        data = self.data_arg(step, "data")
        number = self.int_arg(step, "record", 1)
        sfi = self.int_arg(step, "sfi", 0)
        p2 = (sfi << 3) | 0x04
        _, sw = self.exchange(step, Command(bytes((0x00, 0xDC, number, p2)), data, b"", "UPDATE RECORD"))
        return f"UPDATE RECORD {number} ({len(data)} bytes)", sw

    def op_append_record(self, step: Step) -> tuple[str, int | None]:
        data = self.data_arg(step, "data")
        sfi = self.int_arg(step, "sfi", 0)
        _, sw = self.exchange(step, Command(bytes((0x00, 0xE2, 0x00, sfi << 3)), data, b"", "APPEND RECORD"))
        return f"APPEND RECORD ({len(data)} bytes)", sw

    def op_put_key(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        new_kvn = self.int_arg(step, "new_version", 0)
        old_kvn = self.int_arg(step, "replace", 0)
        if not 1 <= new_kvn <= 0x7F:
            raise _EvalError("put_key.new_version: 01–7F")
        if "kmc" in step.args:
            kmc = self.str_arg(step, "kmc")
            scheme = self.str_arg(step, "scheme").upper()
            source = f"KMC {kmc} diversified ({scheme})"
            values: list[Data] = []
            if self.transmit is not None:
                session = self.env.session
                assert session is not None and self.env.keystore is not None
                try:
                    ck = self.env.keystore.diversify_card_keys(kmc, scheme, session.kdd)
                except Exception as exc:
                    raise _EvalError(f"put_key: {type(exc).__name__}: {exc}") from None
                values = [Data.of(Secret(f"key:{n}", len(k), k))
                          for n, k in zip(("enc", "mac", "dek"), (ck.enc, ck.mac, ck.dek), strict=True)]
            else:  # dry run: the size is the KMC's (diversified keys have the master key's length)
                size = 16
                if self.env.keystore is not None:
                    with contextlib.suppress(Exception):
                        size = self.env.keystore.info(kmc).length
                values = [Data.of(Secret(f"key:{n}", size)) for n in ("enc", "mac", "dek")]
        else:
            source = "given keys"
            keys = self.value(step, "keys")
            values = [_as_data(keys[n], f"put_key.keys.{n}") for n in ("enc", "mac", "dek")]
        body: list[Piece | Data] = [bytes((new_kvn,))]
        dek = self.env.dek()
        for name, key in zip(("enc", "mac", "dek"), values, strict=True):
            size = len(key)
            padded = -(-size // 16) * 16 or 16
            if dek is not None and key.exact:
                clear = key.materialize()
                if len(clear) not in (16, 24, 32):
                    raise _EvalError(f"put_key.keys.{name}: an AES key is 16, 24 or 32 bytes")
                enc = dek_encrypt(dek, clear + bytes(padded - len(clear)))
                check = _aes_kcv(clear)
                body += [b"\x88", bytes((1 + padded, len(clear))), Secret(f"dek_encrypt:key.{name}", padded, enc, True),
                         b"\x03", check]
            else:
                body += [b"\x88", bytes((1 + padded, size)), Secret(f"dek_encrypt:key.{name}", padded, None, True),
                         b"\x03", Secret(f"kcv:{name}", 3, None, True)]
        cmd = Command(bytes((0x80, 0xD8, old_kvn, 0x81)), Data.of(*body), b"\x00", f"PUT KEY version {new_kvn:02X}")
        _, sw = self.exchange(step, cmd)
        return f"PUT KEY version {new_kvn:02X} ({source})", sw

    def op_set_status(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        if "card" in step.args:
            name = self.str_arg(step, "card").upper()
            state = CARD_STATES[name]
            cmd = Command(bytes((0x80, 0xF0, 0x80, state)), Data(), b"", f"SET STATUS card {name}")
            desc = f"SET STATUS card {name}"
        else:
            aid = self.bytes_arg(step, "app")
            st = self.str_arg(step, "state").upper()
            state = APP_STATES[st] if st in APP_STATES else int(st, 16)
            cmd = Command(bytes((0x80, 0xF0, 0x40, state)), Data.of(aid), b"", f"SET STATUS application {st}")
            desc = f"SET STATUS {aid.hex().upper()} {st}"
        _, sw = self.exchange(step, cmd)
        return desc, sw

    def op_apdu(self, step: Step) -> tuple[str, int | None]:
        raw = self.data_arg(step, "hex")
        plain = bool(step.args.get("plain", False))
        clear = raw.clear()
        if clear is not None:
            if len(clear) < 4:
                raise _EvalError("apdu.hex: shorter than a command header")
            cmd = _parse_command(clear, plain)
            desc = f"APDU {clear[:4].hex().upper()}"
        else:
            head = raw.pieces[0]
            if not isinstance(head, bytes) or len(head) < 5:
                raise _EvalError("apdu.hex: the header and Lc must be literal")
            rest = Data(raw.pieces[1:])
            cmd = Command(head[:4], Data.of(head[5:], rest), b"", "", plain)
            desc = f"APDU {head[:4].hex().upper()} (with secret data)"
        _, sw = self.exchange(step, cmd)
        return desc, sw


def _parse_command(raw: bytes, plain: bool) -> Command:
    header, body = raw[:4], raw[4:]
    if not body:
        return Command(header, Data(), b"", "", plain)
    if len(body) == 1:
        return Command(header, Data(), body, "", plain)
    lc = body[0]
    if lc and len(body) in (1 + lc, 2 + lc):
        return Command(header, Data.of(body[1 : 1 + lc]), body[1 + lc :], "", plain)
    raise _EvalError("apdu.hex: Lc does not match the data")


def _chunks(data: Data, size: int) -> list[tuple[int, Data]]:
    clear = data.clear()
    if clear is None or len(clear) <= size:
        if len(data) > 0xFF:
            raise _EvalError("secret data longer than one command")
        return [(0, data)]
    return [(i, Data.of(clear[i : i + size])) for i in range(0, len(clear), size)]


def _aes_kcv(key: bytes) -> bytes:
    from Crypto.Cipher import AES

    return bytes(AES.new(key, AES.MODE_ECB).encrypt(b"\x01" * 16)[:3])


def compact_acl(rules: Mapping[int, int]) -> bytes:
    """An 8C value from {AM bit: SC byte} (ISO 7816-4 §7.4.3: SC bytes from b7 to b1).

    >>> compact_acl({0x01: 0xFF, 0x02: 0x40}).hex().upper()
    '0340FF'
    """
    am = 0
    for bit in rules:
        am |= bit
    return bytes((am,)) + bytes(rules[1 << b] for b in range(6, -1, -1) if am & (1 << b))


def _level_text(level: int) -> str:
    names = [("C-MAC", 0x01), ("C-DEC", 0x02), ("R-MAC", 0x10), ("R-ENC", 0x20)]
    return ", ".join(n for n, bit in names if level & bit) or "no secure messaging"


# =========================================================================== PAN masking


def pan_masker(card: CardPersoData) -> Callable[[str], str]:
    """A function masking the card's PAN wherever it appears in hex text (BCD
    in 5A / 57 / track data): the first six and last four digits of
    ``pan_masked`` locate it, its length bounds it."""
    masked = card.pan_masked
    if len(masked) < 12 or not masked[:6].isdigit() or not masked[-4:].isdigit():
        return lambda text: text
    bin6, last4, n = masked[:6], masked[-4:], len(masked)
    pattern = re.compile(re.escape(bin6) + r"(\d{" + str(n - 10) + r"})" + re.escape(last4))

    def mask(text: str) -> str:
        return pattern.sub(lambda m: bin6 + "*" * (n - 10) + last4, text)

    return mask


# =========================================================================== public API


def execute(
    script: Script,
    card: CardPersoData,
    transmit: Callable[[bytes], bytes],
    keystore: KeyStore,
    *,
    profile: dict[str, Any] | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
) -> ScriptResult:
    """Run every step of ``script`` for ``card`` over ``transmit`` (command
    APDU → response APDU). Raises :class:`StepFailed` at the first step whose
    status word is not expected (or that cannot be carried out)."""
    env = _Env(card, profile, keystore)
    runner = _Runner(script, env, transmit, on_step, pan_masker(card))
    runner.run(script.steps)
    return ScriptResult(script.name, card.card_id, runner.apdus, runner.steps_run, tuple(runner.events), runner.kdd)


def render(
    script: Script, card: CardPersoData, *, masked: bool = True, profile: dict[str, Any] | None = None
) -> list[str]:
    """The concrete APDU sequence ``script`` produces for ``card``, without a
    card: comment lines (``#``) name the steps; commands inside a secure
    channel are shown before wrapping. Secret data always shows as
    ``<sealed:DGI>`` / ``<dek_encrypt:...>`` (there is no key store here);
    ``masked`` also masks the PAN in clear data (records, track data)."""
    env = _Env(card, profile, None, rendering=True)
    mask = pan_masker(card) if masked else (lambda text: text)
    runner = _Runner(script, env, None, None, mask)
    lines = [f"# script {script.name} for card {card.card_id} ({card.pan_masked})"]
    try:
        runner.run(script.steps)
    except StepFailed as exc:
        runner.lines.append(f"# cannot render further: {exc}")
    return lines + runner.lines


# =========================================================================== check


def expected_dgis(profile: Mapping[str, Any]) -> dict[str, set[int]] | None:
    """The DGIs each application of ``profile`` gets from data preparation
    (``docs/dgi-map.md``), by application name; ``None`` when the profile does
    not say (a profile may list them itself under ``applications[].dgis``)."""
    apps = profile.get("applications")
    if not isinstance(apps, list):
        return None
    explicit = {str(a.get("name", i)): {d for d in (_dgi_number(x) for x in a["dgis"]) if d is not None}
                for i, a in enumerate(apps) if isinstance(a, dict) and isinstance(a.get("dgis"), list)}
    if explicit:
        return explicit
    try:
        from .profile import parse_profile

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
                    for sub in _walk_expr(e):
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
                number = _dgi_number(rest[1])
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
        elif step.op in _SECURE_OPS and not channel:
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


# =========================================================================== command line


def _card_from_args(args: argparse.Namespace) -> tuple[CardPersoData, dict[str, Any] | None]:
    profile: dict[str, Any] | None = None
    if args.profile:
        profile = yaml.safe_load(Path(args.profile).read_text())
    if args.batch:
        from .batch import iter_cards

        batch = Path(args.batch)
        if profile is None and (batch / "profile.yaml").exists():
            profile = yaml.safe_load((batch / "profile.yaml").read_text())
        for card in iter_cards(batch):
            if args.card in (card.card_id, str(card.record_index)):
                return card, profile
        raise SystemExit(f"no card {args.card!r} in {batch}")
    if args.records:
        from .badge import is_badge_profile, prepare_badges

        if profile is None:
            raise SystemExit("--records needs --profile")
        number = int(args.record or "1")
        if is_badge_profile(profile):
            cards = list(prepare_badges(profile, Path(args.records), None))
        else:  # an EMV issuer profile: data preparation first (ICC keys, certificates), in a scratch batch
            import shutil
            import tempfile

            from .batch import iter_cards, iter_rejections
            from .keys import KeyStoreError
            from .prepare import PrepareError, prepare
            from .profile import ProfileError
            from .records import RecordsError

            if not args.keys:
                raise SystemExit("--records with an EMV profile needs --keys (the record is prepared first), "
                                 "or render a prepared batch with --batch")
            scratch = Path(tempfile.mkdtemp(prefix="cardlab-render-"))
            try:
                prepare(args.profile, args.records, args.keys, scratch / "batch")
                cards = list(iter_cards(scratch / "batch"))
                refused = {r.record_index: f"{r.field}: {r.message}" for r in iter_rejections(scratch / "batch")}
            except (PrepareError, ProfileError, KeyStoreError, RecordsError, OSError) as exc:
                raise SystemExit(f"cannot prepare {args.records}: {exc}") from None
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            if number in refused:
                raise SystemExit(f"record {number} of {args.records} is rejected: {refused[number]}")
        for c in cards:
            if c.record_index == number:
                return c, profile
        raise SystemExit(f"no valid record {number} in {args.records}")
    raise SystemExit("give --batch BATCH --card ID, or --profile P --records R [--record N]")


def _say(out: Any, text: str) -> None:
    """Write one line to the command's output (a rich Console or a text stream)."""
    if hasattr(out, "print"):
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        print(text, file=out)


def _cmd_render(args: argparse.Namespace, out: Any) -> int:
    try:
        script = load_script(args.script)
    except ScriptError as exc:
        for p in exc.problems:
            _say(out, p)
        return 2
    card, profile = _card_from_args(args)
    for line in render(script, card, masked=True, profile=profile):
        _say(out, line)
    return 0


def _cmd_check(args: argparse.Namespace, out: Any) -> int:
    profile = yaml.safe_load(Path(args.profile).read_text()) if args.profile else None
    problems = check(Path(args.script), profile)
    for p in problems:
        _say(out, p)
    if not problems:
        _say(out, f"{args.script}: OK")
    return 1 if problems else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cardlab perso script render|check``."""
    script = sub.add_parser("script", help="perso scripts: render the APDUs for one card, check a script")
    ssub = script.add_subparsers(dest="script_command", required=True)
    r = ssub.add_parser("render", help="print the APDU sequence of a script for one card (secrets masked)")
    r.add_argument("script")
    r.add_argument("--batch", help="a prepared batch directory")
    r.add_argument("--card", help="card id (or record number) in the batch")
    r.add_argument("--profile", help="issuer profile (default: the batch's profile.yaml)")
    r.add_argument("--records", help="cardholder or badge records instead of a batch; needs --profile "
                   "(and --keys for an EMV profile: the record is prepared first)")
    r.add_argument("--record", help="record number in --records (default 1)")
    r.add_argument("--keys", help="key store for preparing an EMV record (file or pkcs11:…)")
    r.set_defaults(func=_cmd_render)
    c = ssub.add_parser("check", help="validate a script against a profile without a card")
    c.add_argument("script")
    c.add_argument("--profile", help="issuer profile (YAML)")
    c.set_defaults(func=_cmd_check)

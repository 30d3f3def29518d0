"""The ``${...}`` expression language of perso scripts: references
(``record.name``, ``app.dgi.8000``, ``profile.card.kmc``), function calls
(``dek_encrypt(...)``, ``tlv(...)``) and literals; templates mix them with text.

Syntax and static validation only: what a reference means for one card is
:mod:`.evaluation`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "FUNCTIONS",
    "NAMESPACES",
    "Call",
    "Expr",
    "ExprError",
    "Lit",
    "Path_",
    "Template",
    "compile_template",
    "parse_expr",
    "validate_expr",
    "walk_expr",
]


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


class ExprError(ValueError):
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
            raise ExprError(f"unexpected {text[pos:pos + 10]!r} in ${{{text}}}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    expr, rest = _parse_tokens(tokens, text)
    if rest:
        raise ExprError(f"unexpected {rest[0][1]!r} in ${{{text}}}")
    return expr


def _parse_tokens(tokens: list[tuple[str, str]], text: str) -> tuple[Expr, list[tuple[str, str]]]:
    if not tokens:
        raise ExprError(f"empty expression in ${{{text}}}")
    kind, value = tokens[0]
    if kind == "str":
        return Lit(value[1:-1]), tokens[1:]
    if kind != "seg":
        raise ExprError(f"unexpected {value!r} in ${{{text}}}")
    parts = [value]
    rest = tokens[1:]
    while len(rest) >= 2 and rest[0] == ("punct", ".") and rest[1][0] == "seg":
        parts.append(rest[1][1])
        rest = rest[2:]
    if rest and rest[0] == ("punct", "("):
        if len(parts) != 1:
            raise ExprError(f"bad function name {'.'.join(parts)!r} in ${{{text}}}")
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
            raise ExprError(f"missing ')' in ${{{text}}}")
    if len(parts) == 1 and parts[0].isdigit():
        return Lit(int(parts[0])), rest
    return Path_(tuple(parts)), rest


def walk_expr(expr: Expr) -> Iterator[Expr]:
    yield expr
    if isinstance(expr, Call):
        for a in expr.args:
            yield from walk_expr(a)


def validate_expr(expr: Expr, scope: frozenset[str]) -> str | None:
    for e in walk_expr(expr):
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
        raise ExprError("unclosed ${")
    return Template(tuple(parts), source)

"""Reading a YAML document with every problem named by its field path.

:class:`Checker` collects problems (``applications[1].cdol1[2]: unknown tag
9F99``) while typed accessors return a harmless default, so one pass reports
them all; :class:`ProfileError` carries the list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .tables import TAGS, fmt_tag


class ProfileError(ValueError):
    """The profile is invalid; ``problems`` lists each one as ``path: message``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))


_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,63}$")
HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})*$")


class Checker:
    """Collects problems while a profile is read, so all of them are reported at once."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.problems: list[str] = []
        #: the profile's directory: files the profile names are relative to it
        self.base_dir = base_dir

    def err(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    # -- typed accessors (return a default after recording a problem) --

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        self.err(path, f"expected a mapping, got {kind(value)}")
        return {}

    def known_keys(self, m: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
        for key in m:
            if key not in allowed:
                self.err(join_path(path, str(key)), f"unknown field (expected one of: {', '.join(allowed)})")

    def string(self, m: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        p = join_path(path, key)
        if key not in m or m[key] is None:
            if default is None:
                self.err(p, "missing")
                return ""
            return default
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            self.err(p, f"expected a string, got {kind(v)}")
            return ""
        return str(v)

    def opt_string(self, m: Mapping[str, Any], key: str, path: str) -> str | None:
        if m.get(key) is None:
            return None
        return self.string(m, key, path)

    def integer(
        self, m: Mapping[str, Any], key: str, path: str, lo: int, hi: int, default: int | None = None
    ) -> int:
        p = join_path(path, key)
        if key not in m or m[key] is None:
            if default is None:
                self.err(p, "missing")
                return lo
            return default
        v = m[key]
        if isinstance(v, str) and re.fullmatch(r"0[xX][0-9A-Fa-f]+", v.strip()):
            v = int(v, 16)
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(p, f"expected an integer, got {kind(v)}")
            return lo
        if not lo <= v <= hi:
            self.err(p, f"{v} is out of range {lo}..{hi}")
            return lo
        return v

    def boolean(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in m or m[key] is None:
            return default
        v = m[key]
        if not isinstance(v, bool):
            self.err(join_path(path, key), f"expected true or false, got {kind(v)}")
            return default
        return v

    def hexbytes(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        lengths: range | tuple[int, ...],
        default: bytes | None = None,
    ) -> bytes:
        p = join_path(path, key)
        if key not in m or m[key] is None:
            if default is None:
                self.err(p, "missing")
                return b""
            return default
        return self.hexvalue(m[key], p, lengths)

    def hexvalue(self, v: object, p: str, lengths: range | tuple[int, ...]) -> bytes:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # YAML read an all-digit hex string as a number; quote it to keep leading zeros
        if not isinstance(v, str):
            self.err(p, f"expected a hex string, got {kind(v)}")
            return b""
        compact = re.sub(r"\s", "", v)
        if not HEX.match(compact):
            self.err(p, f"{v!r} is not hex (pairs of 0-9 A-F)")
            return b""
        b = bytes.fromhex(compact)
        if len(b) not in lengths:
            self.err(p, f"{len(b)} bytes, expected {describe_lengths(lengths)}")
        return b

    def key_name(self, m: Mapping[str, Any], key: str, path: str, required: bool) -> str | None:
        p = join_path(path, key)
        if m.get(key) is None:
            if required:
                self.err(p, "missing (name of a key in the key store)")
            return None
        v = m[key]
        if not isinstance(v, str) or not _KEY_NAME.match(v):
            self.err(p, f"{v!r} is not a key name (letters, digits, . _ / : -)")
            return None
        return v

    def tag(self, v: object, p: str) -> int | None:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not re.fullmatch(r"[0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}", v.strip()):
            self.err(p, f"{v!r} is not a tag (2 or 4 hex digits)")
            return None
        tag = int(v, 16)
        if tag not in TAGS:
            self.err(p, f"unknown tag {fmt_tag(tag)}")
            return None
        return tag


def kind(v: object) -> str:
    if v is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "a number",
        bool: "a boolean",
        float: "a number",
    }.get(type(v), type(v).__name__)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe_lengths(lengths: range | tuple[int, ...]) -> str:
    if isinstance(lengths, range):
        if len(lengths) == 1:
            return str(lengths.start)
        return f"{lengths.start}..{lengths.stop - 1}"
    return " or ".join(str(n) for n in lengths)


def seq(ck: Checker, m: Mapping[str, Any], key: str, path: str) -> list[Any]:
    v = m.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        ck.err(join_path(path, key), f"expected a list, got {kind(v)}")
        return []
    return v

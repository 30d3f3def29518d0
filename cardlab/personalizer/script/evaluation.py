"""Evaluating expressions for one card: references resolved against the
card's prepared data, the profile and the open secure channel; sealed secrets
unsealed by the key store only while a step is built; the functions of the
expression language."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cardlab.cardspec.scp03 import HostSession, dek_encrypt, pad80, unpad80

from ..batch import AppPersoData, CardPersoData, Sealed
from .expressions import Expr, Lit, Path_, Template
from .model import dgi_number
from .values import Data, DgiList, EvalError, Lazy, Secret

if TYPE_CHECKING:
    from ..keys import KeyStore

__all__ = ["Env", "as_bytes", "as_data", "as_int", "as_text", "card_field", "eval_value", "evaluate"]


@dataclass
class Env:
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
                raise EvalError(f"{label}: transport key {sealed.kek!r} has another check value")
            clear = unpad80(self.keystore.decrypt(sealed.kek, sealed.ciphertext))
        except EvalError:
            raise
        except Exception as exc:  # key store errors name keys, never values
            raise EvalError(f"{label}: cannot unseal ({type(exc).__name__}: {exc})") from None
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


def evaluate(expr: Expr, env: Env) -> Any:
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Path_):
        value = _resolve(expr, env)
        if isinstance(value, Sealed):
            return env.unseal(value, _label_of(expr))
        return value
    args = [evaluate(a, env) for a in expr.args]
    return _call(expr.fn, args, env)


def _resolve(expr: Path_, env: Env) -> Any:
    head, *rest = expr.parts
    card = env.card
    if head == "record":
        return card_field(card, rest[0]) if len(rest) == 1 else _fail(expr, "record.NAME has one field name")
    if head == "card":
        key = rest[0]
        if key == "fields" and len(rest) == 2:
            return card_field(card, rest[1])
        if key in ("card_id", "pan_masked") and len(rest) == 1:
            return getattr(card, key)
        if key == "record_index" and len(rest) == 1:
            return card.record_index
        if key == "dgi" and len(rest) == 2:  # a DGI of any application of the card
            number = dgi_number(rest[1])
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
            number = dgi_number(rest[1])
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
                return Lazy(f"session.{key}")
            return _fail(expr, "no secure channel is open")
        if key == "kdd":
            return env.session.kdd
        if key == "key_version":
            return env.session.key_version
        if key == "level":
            return env.session.level
        return _fail(expr, "session fields: kdd, key_version, level")
    return _fail(expr, "unknown reference")


def card_field(card: CardPersoData, name: str) -> str:
    if name not in card.fields:
        known = ", ".join(sorted(card.fields)) or "none"
        raise EvalError(f"the card data has no field {name!r} (fields: {known})")
    return card.fields[name]


def _fail(expr: Path_, msg: str) -> Any:
    raise EvalError(f"${{{expr.text()}}}: {msg}")


def as_data(value: Any, what: str) -> Data:
    """A value in a bytes context."""
    if isinstance(value, Data):
        return value
    if isinstance(value, (bytes, Secret)):
        return Data.of(value)
    if isinstance(value, Lazy):
        return Data.of(Secret(value.label, 0, None, encrypted=True))
    if isinstance(value, str):
        compact = re.sub(r"\s+", "", value)
        if re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", compact):
            return Data.of(bytes.fromhex(compact))
        raise EvalError(f"{what}: text is not hex; use utf8(...) or ascii(...) for text")
    if isinstance(value, int) and not isinstance(value, bool):
        raise EvalError(f"{what}: a number is not bytes; use u8(...) or u16(...)")
    raise EvalError(f"{what}: {type(value).__name__} is not bytes")


def as_bytes(value: Any, what: str) -> bytes:
    data = as_data(value, what)
    clear = data.clear()
    if clear is None:
        raise EvalError(f"{what}: secret data cannot be used here")
    return clear


def as_int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise EvalError(f"{what}: expected a number")


def as_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise EvalError(f"{what}: expected text")


def _call(fn: str, args: list[Any], env: Env) -> Any:
    if fn in ("utf8", "ascii"):
        text = as_text(args[0], f"{fn}()")
        try:
            return text.encode("utf-8" if fn == "utf8" else "ascii")
        except UnicodeEncodeError:
            raise EvalError(f"{fn}(): text is not ASCII") from None
    if fn == "hex":
        return as_data(as_text(args[0], "hex()"), "hex()")
    if fn == "bcd":
        digits = as_text(args[0], "bcd()")
        if not digits.isdigit():
            raise EvalError("bcd(): expected digits")
        n = as_int(args[1], "bcd() length") if len(args) > 1 else (len(digits) + 1) // 2
        if len(digits) > 2 * n:
            raise EvalError(f"bcd(): {len(digits)} digits do not fit in {n} bytes")
        return bytes.fromhex(digits.rjust(2 * n, "0"))
    if fn == "u8":
        v = as_int(args[0], "u8()")
        if not 0 <= v <= 0xFF:
            raise EvalError("u8(): out of range")
        return bytes((v,))
    if fn == "u16":
        v = as_int(args[0], "u16()")
        if not 0 <= v <= 0xFFFF:
            raise EvalError("u16(): out of range")
        return v.to_bytes(2, "big")
    if fn == "pad":
        data = as_data(args[0], "pad()")
        n = as_int(args[1], "pad() length")
        fill = as_bytes(args[2], "pad() fill") if len(args) > 2 else b"\x00"
        if len(fill) != 1:
            raise EvalError("pad(): the fill is one byte")
        if len(data) > n:
            raise EvalError(f"pad(): {len(data)} bytes do not fit in {n}")
        return Data.of(data, fill * (n - len(data)))
    if fn == "lv":
        data = as_data(args[0], "lv()")
        if len(data) > 0xFF:
            raise EvalError("lv(): longer than 255 bytes")
        return Data.of(bytes((len(data),)), data)
    if fn == "tlv":
        tag = as_bytes(args[0], "tlv() tag")
        data = as_data(args[1], "tlv() value")
        return Data.of(tag, _ber_length(len(data)), data)
    if fn == "concat":
        return Data.of(*(as_data(a, "concat()") for a in args))
    if fn == "dek_encrypt":
        data = as_data(args[0], "dek_encrypt()")
        labels = ",".join(p.label for p in data.pieces if isinstance(p, Secret)) or "data"
        length = (len(data) // 16 + 1) * 16
        dek = env.dek()
        if dek is None or not data.exact:
            if not env.rendering:
                raise EvalError("dek_encrypt() needs an open secure channel")
            return Secret(f"dek_encrypt:{labels}", length, None, encrypted=True)
        return Secret(f"dek_encrypt:{labels}", length, dek_encrypt(dek, pad80(data.materialize())), encrypted=True)
    raise EvalError(f"unknown function {fn}()")


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return b"\x81" + bytes((n,))
    return b"\x82" + n.to_bytes(2, "big")


def eval_value(value: Any, env: Env, what: str) -> Any:
    """A step argument's value: templates evaluated (a lone ``${...}`` keeps
    its type; text around references concatenates bytes)."""
    if isinstance(value, Template):
        single = value.single
        if single is not None:
            return evaluate(single, env)
        parts: list[Data] = []
        for p in value.parts:
            parts.append(as_data(p, what) if isinstance(p, str) else as_data(evaluate(p, env), what))
        return Data.of(*parts)
    if isinstance(value, dict):
        return {k: eval_value(v, env, f"{what}.{k}") for k, v in value.items()}
    return value

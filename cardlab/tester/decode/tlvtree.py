"""A BER-TLV tree, each element named (the tester's dictionary, Book 3
Annex A) and, where a decoder knows it, explained; PANs masked.

Privacy: the PAN is shown as its first 6 and last 4 digits wherever it
occurs (5A, track 2 equivalent 57, and any hex that contains it); track 1
data (56, 9F1F, 9F6B) is withheld; the ICC public key certificates 9F46 /
9F2D are withheld, since the PAN is recoverable from them with the CA key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import dictionary, tlv
from ..exchange import mask_pan
from .elements import Context, explain
from .values import value_text


def tag_name(tag: int) -> str:
    return dictionary.name(tag)


def pans_in(data: bytes) -> list[str]:
    """The PANs a TLV blob holds (5A, and the PAN of track 2 equivalent 57)."""
    try:
        found = tlv.flatten(data)
    except tlv.TlvError:
        return []
    pans = []
    if 0x5A in found:
        pans.append(found[0x5A].hex().upper().rstrip("F"))
    if 0x57 in found:
        pans.append(found[0x57].hex().upper().split("D")[0])
    return [p for p in pans if len(p) >= 12]


def masker(pans: Iterable[str]) -> Callable[[str], str]:
    """Masks every one of ``pans`` in a piece of text (hex or digits)."""
    known = sorted(set(pans), key=len, reverse=True)

    def mask(text: str) -> str:
        for pan in known:
            idx = text.upper().find(pan)
            while idx >= 0:
                text = text[:idx] + mask_pan(pan) + text[idx + len(pan):]
                idx = text.upper().find(pan)
        return text

    return mask


def context_for(data: bytes, base: Context | None = None) -> Context:
    """The context a blob gives its own elements: currency 9F42, exponent 9F44, AID 4F/84."""
    base = base or Context()
    try:
        found = tlv.flatten(data)
    except tlv.TlvError:
        return base
    cur, exp = found.get(0x9F42), found.get(0x9F44)
    return Context(currency=int(cur.hex()) if cur and cur.hex().isdigit() else base.currency,
                   exponent=exp[0] if exp else base.exponent,
                   aid=found.get(0x4F) or found.get(0x84) or base.aid, dol_data=None, mask=base.mask)


def lines(data: bytes, mask: Callable[[str], str], ctx: Context | None = None, depth: int = 0,
          *, explained: bool = True) -> Iterator[str]:
    """Lines of the TLV tree: ``tag name [length] = value``, then (indented,
    marked ``·``) what a decoder makes of the value."""
    ctx = ctx or Context(mask=mask)
    try:
        items = tlv.parse(data)
    except tlv.TlvError:
        yield "  " * depth + f"(not BER-TLV) {mask(data.hex().upper())}"
        return
    pad = "  " * depth
    for item in items:
        name = tag_name(item.tag)
        if item.constructed:
            yield pad + f"{item.tag:X} {name}"
            yield from lines(item.value, mask, ctx, depth + 1, explained=explained)
            continue
        yield pad + f"{item.tag:X} {name} [{len(item.value)}] = {value_text(item.tag, item.value, mask)}"
        if explained:
            yield from (pad + "    · " + mask(line) for line in explain(item.tag, item.value, ctx))


def to_json(data: bytes, mask: Callable[[str], str], ctx: Context | None = None) -> list[dict[str, Any]]:
    from .elements import BY_TAG

    ctx = ctx or Context(mask=mask)
    out: list[dict[str, Any]] = []
    for item in tlv.parse(data):
        node: dict[str, Any] = {"tag": f"{item.tag:X}", "name": tag_name(item.tag), "length": len(item.value)}
        if item.constructed:
            node["children"] = to_json(item.value, mask, ctx)
        else:
            node["value"] = value_text(item.tag, item.value, mask)
            e = BY_TAG.get(item.tag)
            if e is not None:
                try:
                    node["decoded"] = e.json(item.value, ctx)
                except ValueError as exc:
                    node["decoded"] = {"error": str(exc)}
        out.append(node)
    return out

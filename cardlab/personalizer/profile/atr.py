"""The card's ATR in an issuer profile (``card.atr`` or ``card.protocol`` + ``card.historical_bytes``).

Kept apart from the other sections (:mod:`.sections` only calls :func:`read_card_atr`):
the profile names the product ATR of its card stock, as a bureau's order does.

* ``card.atr``: the whole ATR in hex; it must be an EMV basic ATR (EMV 4.4 Book 1 §8.3)
  unless ``card.allow_non_emv_atr: true`` (negative testing only);
* ``card.protocol``: ``T=0`` or ``T=1`` — EMV's basic ATR for it, with
  ``card.historical_bytes`` (hex, ISO/IEC 7816-4 §8.1.1; default cardlab's ``8031C0829000``);
* neither: the card keeps its default ATR (EMV's basic T=1 ATR).

>>> read_card_atr({"protocol": "T=0"}, lambda p, m: None).hex().upper()
'3B6600008031C0829000'
>>> problems = []
>>> read_card_atr({"atr": "3B8880010000000000718100F9"}, lambda p, m: problems.append(f"{p}: {m}"))
>>> problems[0][:45]
'card.atr: not an EMV basic ATR: TB1 missing: '
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cardlab.cardspec import atr as atrs

#: the keys of the profile's ``card`` section this module reads
KEYS = ("atr", "protocol", "historical_bytes", "allow_non_emv_atr")


def _hex(value: Any) -> bytes:
    return bytes.fromhex(str(value).replace(" ", ""))


def read_card_atr(card: Mapping[str, Any], err: Callable[[str, str], None], path: str = "card") -> bytes | None:
    """The ATR the profile's ``card`` section chooses, None for the default; problems go to ``err``."""
    given, protocol, hist = card.get("atr"), card.get("protocol"), card.get("historical_bytes")
    allow = card.get("allow_non_emv_atr", False)
    if not isinstance(allow, bool):
        err(f"{path}.allow_non_emv_atr", "expected true or false")
        allow = False
    if given is not None and (protocol is not None or hist is not None):
        err(f"{path}.atr", "gives the whole ATR: leave out card.protocol and card.historical_bytes")
        return None
    try:
        if given is not None:
            raw = _hex(given)
            if not allow:
                atrs.check(raw)
            return raw
        if protocol is None and hist is None:
            return None
        text = str(protocol if protocol is not None else "T=1").upper().replace(" ", "")
        if text not in ("T=0", "T=1"):
            err(f"{path}.protocol", f"{protocol!r} is not T=0 or T=1")
            return None
        return atrs.for_protocol(text, None if hist is None else _hex(hist))
    except ValueError as exc:  # AtrError is a ValueError; so is bad hex
        where = "atr" if given is not None else "historical_bytes" if "historical" in str(exc) else "protocol"
        err(f"{path}.{where}", str(exc) if str(exc) else "not hex")
        return None

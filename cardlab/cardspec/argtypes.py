"""Command-line value types shared by the ``cardlab card`` and ``cardlab perso``
commands: hex bytes of given lengths, one hex byte in a range, a GP key
version number. Each parser is an argparse ``type=``: a bad value becomes a
one-line usage error (exit status 2), never a traceback."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence


def parse_hex(value: str, what: str, lengths: Sequence[int] | None = None) -> bytes:
    """``value`` as bytes (spaces allowed); ``ValueError("what: …")`` when it is
    not hex or not one of ``lengths`` bytes long."""
    try:
        raw = bytes.fromhex(value.replace(" ", ""))
    except ValueError:
        raise ValueError(f"{what}: not hex") from None
    if lengths is not None and len(raw) not in lengths:
        expected = (f"{lengths.start}-{lengths.stop - 1}" if isinstance(lengths, range)
                    else " or ".join(str(n) for n in lengths))
        raise ValueError(f"{what}: expected {expected} bytes, got {len(raw)}")
    return raw


def hex_bytes(what: str, lengths: Sequence[int] | None = None) -> Callable[[str], bytes]:
    """An argparse type: hex bytes, ``lengths`` long when given."""

    def parse(value: str) -> bytes:
        try:
            return parse_hex(value, what, lengths)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None

    parse.__name__ = what.lstrip("-")
    return parse


def hex_byte(what: str, allowed: Callable[[int], bool], expected: str) -> Callable[[str], int]:
    """An argparse type: one byte written as 1 or 2 hex digits (no ``0x``) that ``allowed`` accepts."""

    def parse(value: str) -> int:
        if not re.fullmatch(r"[0-9A-Fa-f]{1,2}", value) or not allowed(int(value, 16)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return int(value, 16)

    parse.__name__ = what
    return parse


def key_version(value: str) -> int:
    """A GP key version number 01-7F (GP Card Spec 2.3 §11.8.2.1: 7 bits, b8 of PUT KEY's P1
    says "more commands"; 00 asks the card for a new key set)."""
    return hex_byte("kvn", lambda n: 0x01 <= n <= 0x7F, "a key version number 01-7F (hex)")(value)


#: an AID: 5 to 16 bytes (ISO/IEC 7816-4 §8.2.1.2, 12.2.3)
aid = hex_bytes("aid", range(5, 17))


def atr(value: str) -> bytes:
    """An argparse type: a whole ATR in hex, parsed (ISO/IEC 7816-3 §8.2) but not yet held to EMV's
    rules — the command does that unless ``--allow-non-emv-atr`` (:func:`cardlab.cardspec.atr.check`)."""
    raw = hex_bytes("atr", range(2, 34))(value)
    return raw


def protocol(value: str) -> int:
    """An argparse type: ``T=0`` or ``T=1`` (also ``0`` / ``1``) → 0 or 1."""
    text = value.upper().replace(" ", "").removeprefix("T=")
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected T=0 or T=1, got {value!r}")
    return int(text)


def choose_atr(given: bytes | None, protocol: int | None, historical: bytes | None = None,
               *, allow_non_emv: bool = False) -> bytes | None:
    """The ATR a new card gets from ``--atr`` or ``--protocol`` (+ historical bytes), checked;
    None for the default. ``ValueError`` with one line naming the byte."""
    from cardlab.cardspec import atr as atrs

    if given is not None and (protocol is not None or historical is not None):
        raise ValueError("--atr gives the whole ATR: leave out --protocol and the historical bytes")
    if given is not None:
        if not allow_non_emv:  # a deliberately broken ATR (negative tests) only when asked for
            atrs.check(given)
        return given
    if protocol is None and historical is None:
        return None
    return atrs.for_protocol(1 if protocol is None else protocol, historical)


# -- numbers and names: argparse ``type=`` checks with a message that says what is expected ----------


def integer(value: str) -> int:
    """An argparse type: a decimal integer."""
    try:
        return int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def number(value: str) -> float:
    """An argparse type: a decimal number (seconds, …)."""
    try:
        n = float(value)
    except ValueError:
        n = float("nan")
    if n != n or n in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}")
    return n


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a decimal integer ``>= minimum`` (a count of cards, stations, …)."""

    def parse(value: str) -> int:
        n = integer(value)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {value!r}")
        return n

    parse.__name__ = f"at_least_{minimum}"
    return parse


positive = at_least(1)
non_negative = at_least(0)

#: GP card key diversification schemes (GP Card Spec 2.3 Amendment D / GlobalPlatformPro names), canonical case
DIVERSIFICATIONS = ("EMV", "VISA2", "KDF3")


def diversification(value: str) -> str:
    """An argparse type: a key diversification scheme in any case → ``EMV``, ``VISA2`` or ``KDF3``."""
    if value.upper() not in DIVERSIFICATIONS:
        raise argparse.ArgumentTypeError(f"expected emv, visa2 or kdf3 (any case), got {value!r}")
    return value.upper()


def any_case(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse type for ``choices=``: the choice spelled in any case → its canonical spelling
    (an unknown word is returned as given, for argparse's own "invalid choice" message)."""
    canonical = {c.casefold(): c for c in choices}

    def parse(value: str) -> str:
        return canonical.get(value.casefold(), value)

    parse.__name__ = "choice"
    return parse


def directory(value: str) -> str:
    """An argparse type: an existing directory (a batch, a card stock)."""
    from pathlib import Path

    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: no such directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: not a directory")
    return value

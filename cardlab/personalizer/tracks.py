"""Magnetic-stripe images, Track 2 Equivalent Data and embossing lines.

One cardholder record yields consistent chip, stripe and surface data: the
same PAN, expiry (YYMM), service code and discretionary data go into

* Track 2 Equivalent Data, tag ``57`` (EMV 4.4 Book 3 Annex A: PAN ‖ ``D`` ‖
  YYMM ‖ service code ‖ discretionary data, packed BCD, ``F``-padded to a
  whole byte);
* track 2 of the stripe (ISO/IEC 7813: ``;`` PAN ``=`` YYMM SC DD ``?``, at
  most 37 characters between the sentinels);
* track 1 (ISO/IEC 7813 format B: ``%B`` PAN ``^`` NAME ``^`` YYMM SC DD ``?``,
  at most 79 characters including sentinels);
* the embossed / printed lines (PAN in groups, name, validity).

The stripe's LRC is written by the encoder, not here. Pure functions; the
results hold the full PAN, so callers seal them (``batch.Sealed``) before they
are stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DISCRETIONARY",
    "Stripe",
    "embossing_lines",
    "format_pan",
    "service_code_bytes",
    "stripe",
    "track1",
    "track1_discretionary",
    "track2",
    "track2_equivalent",
]

#: discretionary data when the record gives none (no PVV/CVV: no such keys here)
DEFAULT_DISCRETIONARY = "00000000"
TRACK1_MAX = 79
TRACK2_MAX = 37  # characters between the sentinels

_DIGITS = re.compile(r"\d*")


def _check(pan: str, yymm: str, service_code: str, discretionary: str) -> None:
    if not (pan.isdigit() and 12 <= len(pan) <= 19):
        raise ValueError("PAN must be 12-19 digits")
    if not (len(yymm) == 4 and yymm.isdigit()):
        raise ValueError("expiry must be YYMM")
    if not (len(service_code) == 3 and service_code.isdigit()):
        raise ValueError("service code must be 3 digits")
    if not _DIGITS.fullmatch(discretionary):
        raise ValueError("discretionary data must be digits")


def _track2_digits(pan: str, yymm: str, service_code: str, discretionary: str) -> str:
    _check(pan, yymm, service_code, discretionary)
    body = f"{pan}={yymm}{service_code}{discretionary}"
    if len(body) > TRACK2_MAX:
        raise ValueError(f"track 2 would hold {len(body)} characters (at most {TRACK2_MAX})")
    return body


def track2_equivalent(pan: str, yymm: str, service_code: str, discretionary: str = DEFAULT_DISCRETIONARY) -> bytes:
    """Value of tag 57 (Book 3 Annex A), separator ``D``, ``F``-padded.

    >>> track2_equivalent("4761739001010010", "3012", "201", "0000").hex().upper()
    '4761739001010010D30122010000'
    """
    digits = _track2_digits(pan, yymm, service_code, discretionary).replace("=", "D")
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def track2(pan: str, yymm: str, service_code: str, discretionary: str = DEFAULT_DISCRETIONARY) -> str:
    """Track 2 with its sentinels (ISO/IEC 7813), without the LRC.

    >>> track2("4761739001010010", "3012", "201", "0000")
    ';4761739001010010=30122010000?'
    """
    return ";" + _track2_digits(pan, yymm, service_code, discretionary) + "?"


def track1_discretionary(discretionary: str = DEFAULT_DISCRETIONARY) -> str:
    """Track 1 discretionary data (9F1F holds it in ASCII): the same digits as track 2."""
    return discretionary


def track1(
    pan: str, name: str, yymm: str, service_code: str, discretionary: str = DEFAULT_DISCRETIONARY
) -> str:
    """Track 1, format code B (ISO/IEC 7813), with sentinels, without the LRC.

    >>> track1("4761739001010010", "CARDLAB/TEST", "3012", "201", "0000")
    '%B4761739001010010^CARDLAB/TEST^30122010000?'
    """
    _check(pan, yymm, service_code, discretionary)
    if not 2 <= len(name) <= 26 or "^" in name or "%" in name or "?" in name:
        raise ValueError("name must be 2-26 characters without ^ % ?")
    out = f"%B{pan}^{name}^{yymm}{service_code}{track1_discretionary(discretionary)}?"
    if len(out) > TRACK1_MAX:
        raise ValueError(f"track 1 would hold {len(out)} characters (at most {TRACK1_MAX})")
    return out


def service_code_bytes(service_code: str) -> bytes:
    """Value of 5F30 (n 3 in two bytes).

    >>> service_code_bytes("201").hex()
    '0201'
    """
    if not (len(service_code) == 3 and service_code.isdigit()):
        raise ValueError("service code must be 3 digits")
    return bytes.fromhex("0" + service_code)


def format_pan(pan: str) -> str:
    """The PAN as embossed: groups of 4 (16 digits), 4-6-5 (15), 4-4-4-4-3 (19) …

    >>> format_pan("4761739001010010")
    '4761 7390 0101 0010'
    >>> format_pan("371449635398431")
    '3714 496353 98431'
    """
    if len(pan) == 15:
        return f"{pan[:4]} {pan[4:10]} {pan[10:]}"
    return " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))


def embossing_lines(pan: str, name: str, expiry_mm_yy: str, effective_mm_yy: str | None = None) -> tuple[str, ...]:
    """Embossed / printed front lines: PAN, validity, name.

    >>> embossing_lines("4761739001010010", "CARDLAB/TEST", "12/30", "01/25")
    ('4761 7390 0101 0010', 'VALID FROM 01/25 THRU 12/30', 'CARDLAB/TEST')
    """
    validity = f"VALID FROM {effective_mm_yy} THRU {expiry_mm_yy}" if effective_mm_yy else f"VALID THRU {expiry_mm_yy}"
    return (format_pan(pan), validity, name)


@dataclass(frozen=True)
class Stripe:
    """What the other stations need for one card (all of it secret: full PAN)."""

    track1: str
    track2: str
    embossing: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"track1": self.track1, "track2": self.track2, "embossing": list(self.embossing)}


def stripe(
    pan: str,
    name: str,
    expiry: tuple[int, int],
    service_code: str,
    discretionary: str = DEFAULT_DISCRETIONARY,
    effective: tuple[int, int] | None = None,
) -> Stripe:
    """Tracks 1 and 2 and the embossing lines; dates as (year, month).

    >>> s = stripe("4761739001010010", "CARDLAB/TEST", (2030, 12), "201", "0000")
    >>> s.track2, s.embossing[1]
    (';4761739001010010=30122010000?', 'VALID THRU 12/30')
    """
    yymm = f"{expiry[0] % 100:02d}{expiry[1]:02d}"
    exp = f"{expiry[1]:02d}/{expiry[0] % 100:02d}"
    eff = f"{effective[1]:02d}/{effective[0] % 100:02d}" if effective else None
    return Stripe(
        track1(pan, name, yymm, service_code, discretionary),
        track2(pan, yymm, service_code, discretionary),
        embossing_lines(pan, name, exp, eff),
    )

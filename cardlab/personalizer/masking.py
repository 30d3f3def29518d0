"""Masking of primary account numbers for messages, logs and reports.

cardlab never writes a full PAN, a PIN or a key into a log, an error or a
report (docs/ARCHITECTURE "never a key/PIN/full PAN in logs or errors").
``mask_pan`` keeps what PCI DSS (Requirement 3.4) allows to be shown — at most
the first six and the last four digits — and replaces the rest with ``*``.

>>> mask_pan("4761739001010119")
'476173******0119'
>>> mask_pan("5413 3300 8901 0434")
'541333******0434'
>>> mask_pan("123456789")
'*****6789'
>>> redact_pans("card 4761739001010119 refused")
'card 476173******0119 refused'
"""

from __future__ import annotations

import re

__all__ = ["mask_pan", "one_line", "redact_pans"]

_SEPARATORS = re.compile(r"[\s-]")
_DIGIT_RUN = re.compile(r"(?<!\d)\d{12,19}(?!\d)")


def mask_pan(pan: str) -> str:
    """``pan`` with all but the first 6 and last 4 characters replaced by ``*``.

    Spaces and dashes are dropped first. Shorter values never reveal more
    than a third of their characters: from 8 to 11 characters only the last 4
    stay, below 8 nothing does. Non-digit input is masked the same way (it
    may be a mistyped PAN).
    """
    compact = _SEPARATORS.sub("", pan)
    n = len(compact)
    if n >= 12:
        return compact[:6] + "*" * (n - 10) + compact[-4:]
    if n >= 8:
        return "*" * (n - 4) + compact[-4:]
    return "*" * n


def redact_pans(text: str) -> str:
    """``text`` with every run of 12 to 19 digits masked by :func:`mask_pan`."""
    return _DIGIT_RUN.sub(lambda m: mask_pan(m.group(0)), text)


def one_line(text: str) -> str:
    """``text`` (a message listing problems one per line) as one line, PANs masked: what a
    command prints on stderr."""
    return redact_pans("; ".join(line.strip() for line in text.strip().splitlines() if line.strip()))

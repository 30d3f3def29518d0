"""Sample cardholder records: valid, deterministic for a seed, on the sample BINs.

TEST DATA ONLY. The PANs are test card numbers on the test BINs of the sample
issuer profiles (``vectors/profiles/*.yaml``: Visa-like 476173, Mastercard-like
541333); names and PINs are made up.

:func:`generate` yields one dict per record with the fields of
``cardlab.personalizer.records`` (``pan, psn, expiry, effective, name, pin,
service_code, language, discretionary``); :func:`write_csv` writes them as the
CSV the personalizer (``cardlab perso prepare``) and the tester (``cardlab test
certify``) read. The same ``seed``, ``count`` and ``today`` give the same file.

Every record passes ``cardlab.personalizer.records.validate``: Luhn-valid 16-digit
PANs (unique per file), PSN 00–03, effective 1–24 months before ``today``,
expiry in year + 2 to year + 5, ISO/IEC 7813 names of 2–26 characters, 4–6 digit
PINs, an empty service code (the profile's applies), languages the profile
knows, and discretionary data that fits track 2.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path

__all__ = ["BINS", "FIELDS", "generate", "luhn_digit", "write_csv"]

#: sample profile name → (test BIN, languages the profile lists)
BINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "visa-cvn18": ("476173", ("en", "fr")),
    "mastercard-cvn16": ("541333", ("de", "en")),
}

FIELDS = ("pan", "psn", "expiry", "effective", "name", "pin", "service_code", "language", "discretionary")

_SURNAMES = ("SMITH", "DOE", "NGUYEN", "GARCIA", "MULLER", "ROSSI", "DUBOIS", "KOWALSKI", "TANAKA", "SILVA",
             "O'BRIEN", "VAN DAM", "NOVAK", "LARSEN", "MORENO", "KIM", "SCHMIDT", "BERNARD", "COHEN", "PATEL")
_GIVEN = ("JOHN", "JANE", "AN", "PAT", "MARIA", "LUCA", "CHLOE", "PIOTR", "YUKI", "ANA", "SEAN", "EVA",
          "ALI", "MEI", "JONAS", "SOFIA", "OMAR", "LEA", "RAVI", "IDA")


def luhn_digit(body: str) -> str:
    """The Luhn check digit that completes ``body`` (ISO/IEC 7812-1 Annex B)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def generate(bin_: str, count: int, *, seed: int = 0, today: date | None = None,
             languages: tuple[str, ...] = ("en",)) -> Iterator[dict[str, str]]:
    """``count`` valid records for the 6-digit test BIN ``bin_``."""
    if len(bin_) != 6 or not bin_.isdigit():
        raise ValueError("the BIN is 6 digits")
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(f"cardlab-records:{bin_}:{seed}")
    day = today or date.today()
    year, this_month = day.year, day.year * 12 + day.month - 1
    # unique account numbers: a random permutation step over the 9-digit account space
    start = rng.randrange(10**8, 10**9)
    step = 7919  # prime, so start + k·step never repeats within 10**9
    for k in range(count):
        body = bin_ + f"{(start + k * step) % 10**9:09d}"
        pan = body + luhn_digit(body)
        effective = this_month - rng.randrange(1, 25)  # 1 to 24 months ago: already effective
        month = rng.randrange(1, 13)
        given = rng.choice(_GIVEN)
        name = f"{rng.choice(_SURNAMES)}/{given}"
        if rng.random() < 0.3:
            name += f" {chr(65 + rng.randrange(26))}"
        yield {
            "pan": pan,
            "psn": f"{rng.randrange(0, 4):02d}",
            "expiry": f"{year + rng.randrange(2, 6)}-{month:02d}",
            "effective": f"{effective // 12}-{effective % 12 + 1:02d}",
            "name": name[:26],
            "pin": "".join(str(rng.randrange(10)) for _ in range(rng.choice((4, 4, 4, 5, 6)))),
            "service_code": "",
            "language": rng.choice(languages + ("",)),
            "discretionary": f"{rng.randrange(10**6):06d}",
        }


def write_csv(path: str | Path, bin_: str, count: int, *, seed: int = 0, today: date | None = None,
              languages: tuple[str, ...] = ("en",)) -> Path:
    """Write :func:`generate`'s records as CSV with a header row; returns the path.

    The file holds full PANs and PINs: it is created 0600 from its first byte (and truncated if it exists)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        for row in generate(bin_, count, seed=seed, today=today, languages=languages):
            w.writerow(row)
    return out

"""Properties of the whole personalizer (hypothesis): records → prepare → perso
engine (the shipped EMV CPS script) → emulated cards → terminal.

* Any valid cardholder record (Luhn-valid PAN of 13–19 digits on the profile's
  BIN, a track-1 name, dates, a 4–12 digit PIN) prepares, personalizes and
  reads back: PAN, name and expiry by READ RECORD, VERIFY with the PIN → 9000,
  SDA, and an ARQC pyemv confirms (Option B ICC keys above 16 digits).
* Any single-field corruption of one record in a batch is rejected with a
  message naming that field; every other record of the batch is still done.

The profile is the SDA-only variant of the Visa sample (no per-card RSA key
generation), so an example costs one small batch.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prepkit import run_transaction, sda_profile
from test_pipeline import KEYSTORE, load_card, personalized

from cardlab.personalizer import engine
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.prepare import prepare
from cardlab.personalizer.profile import load_profile
from cardlab.personalizer.records import Record, read_records
from cardlab.personalizer.stock import make_stock

TODAY = date(2026, 1, 15)
BIN = "476173"  # the Visa sample profile's test BIN
KS = SoftwareKeyStore.load(KEYSTORE)
NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ .,-/'"
FIELDS = ("pan", "psn", "expiry", "effective", "name", "pin", "service_code")
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = BIN + draw(st.text("0123456789", min_size=length - 7, max_size=length - 7))
    return body + luhn_digit(body)


@st.composite
def names(draw: st.DrawFn) -> str:
    edge = st.sampled_from(NAME_CHARS.replace(" ", ""))
    middle = draw(st.text(NAME_CHARS, max_size=24))
    return draw(edge) + middle + draw(edge)


@st.composite
def records(draw: st.DrawFn) -> dict[str, str]:
    expiry = draw(st.tuples(st.integers(2026, 2049), st.integers(1, 12)).filter(lambda ym: ym >= (2026, 2)))
    rec = {
        "pan": draw(pans()),
        "psn": f"{draw(st.integers(0, 99)):02d}",
        "expiry": f"{expiry[0]}-{expiry[1]:02d}",
        "effective": "",
        "name": draw(names()),
        "pin": draw(st.text("0123456789", min_size=4, max_size=12)),
        "service_code": draw(st.sampled_from(["", "201", "101", "221"])),
    }
    if draw(st.booleans()):
        eff = draw(st.tuples(st.integers(2015, expiry[0]), st.integers(1, 12)).filter(lambda ym: ym < expiry))
        rec["effective"] = f"{eff[0]}-{eff[1]:02d}"
    return rec


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def run_batch(work: Path, rows: list[dict[str, str]]) -> tuple[Path, engine.RunReport]:
    profile = sda_profile(work)
    csv_path = write_csv(work / "records.csv", rows)
    prepare(profile, csv_path, str(KEYSTORE), work / "batch", today=TODAY)
    kmc = KS.clear_value(load_profile(profile).card.kmc)
    make_stock(work / "stock", len(rows), kmc, "kdf3")
    report = engine.run(work / "batch", cards=work / "stock")
    return work / "batch", report


def statuses(batch: Path) -> dict[int, tuple[str, str | None]]:
    db = sqlite3.connect(f"file:{batch / 'jobs.sqlite'}?mode=ro", uri=True)
    try:
        return {int(i): (s, r) for i, s, r in db.execute("SELECT record_index, status, reason FROM records")}
    finally:
        db.close()


def read_back(batch: Path, rows: list[dict[str, str]], indexes: list[int]) -> None:
    """Each given record (1-based) is on its card: the terminal reads and checks it."""
    app = load_profile(batch / "profile.yaml").applications[0]
    recs = {r.index: r for r in read_records(batch.parent / "records.csv", today=TODAY) if isinstance(r, Record)}
    cards = personalized(batch)
    for i in indexes:
        rec = recs[i]
        seen = run_transaction(load_card(cards[i]), app, KS, rec.pan, rec.psn, rec.pin)  # VERIFY → 9000 inside
        assert seen[0x5A].hex().upper().rstrip("F") == rows[i - 1]["pan"]
        assert seen[0x5F20].decode().rstrip() == rows[i - 1]["name"]
        assert seen[0x5F24].hex()[:4] == rows[i - 1]["expiry"][2:4] + rows[i - 1]["expiry"][5:7]


@SETTINGS
@given(st.lists(records(), min_size=1, max_size=2, unique_by=lambda r: r["pan"]))
def test_any_valid_record_personalizes_and_reads_back(rows: list[dict[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        batch, report = run_batch(Path(tmp), rows)
        assert report.exit_code == 0 and report.counts["done"] == len(rows), report
        assert {s for s, _ in statuses(batch).values()} == {"done"}
        read_back(batch, rows, list(range(1, len(rows) + 1)))


#: (field, corruption of a valid value, field(s) the rejection may name)
def _bad_luhn(pan: str) -> str:
    return pan[:-1] + str((int(pan[-1]) + 1) % 10)


CORRUPTIONS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("pan", _bad_luhn, ("pan",)),
    ("pan", lambda v: v[:5] + "A" + v[6:], ("pan",)),
    ("pan", lambda v: (v + "0000000")[:20], ("pan",)),
    ("pan", lambda v: v[:10] + luhn_digit(v[:10]), ("pan",)),
    ("psn", lambda v: "1" + v, ("psn",)),
    ("psn", lambda v: "A" + v[1:], ("psn",)),
    ("expiry", lambda v: v[:5] + "13", ("expiry",)),
    ("expiry", lambda v: "2025-12", ("expiry",)),
    ("expiry", lambda v: v.replace("-", "/"), ("expiry",)),
    ("effective", lambda v: "2049-12" if v else "2020-00", ("effective", "expiry")),
    ("name", lambda v: v.lower() + "x", ("name",)),
    ("name", lambda v: v[:1], ("name",)),
    ("name", lambda v: (v * 27)[:27], ("name",)),
    ("name", lambda v: v[:1] + "|" + v[1:], ("name",)),
    ("name", lambda v: "", ("name",)),
    ("pin", lambda v: v[:3], ("pin",)),
    ("pin", lambda v: (v * 13)[:13], ("pin",)),
    ("pin", lambda v: v[:-1] + "X", ("pin",)),
    ("pin", lambda v: "", ("pin",)),
    ("service_code", lambda v: "301", ("service_code",)),
]


@SETTINGS
@given(
    st.lists(records(), min_size=2, max_size=3, unique_by=lambda r: r["pan"]),
    st.integers(0, 2),
    st.sampled_from(range(len(CORRUPTIONS))),
)
def test_a_malformed_record_is_rejected_by_field_and_the_rest_is_done(
    rows: list[dict[str, str]], where: int, which: int
) -> None:
    field, corrupt, named = CORRUPTIONS[which]
    where %= len(rows)
    good = dict(rows[where])
    rows[where] = dict(good, **{field: corrupt(good[field])})
    with tempfile.TemporaryDirectory() as tmp:
        batch, report = run_batch(Path(tmp), rows)
        rejected = [json.loads(line) for line in (batch / "rejected.jsonl").read_text().splitlines()]
        assert len(rejected) == 1, rejected
        rej = rejected[0]
        assert rej["record_index"] == where + 1 and rej["field"] in named, rej
        assert any(n in rej["message"] for n in named), rej
        for secret in (good["pan"], rows[where]["pan"]):
            assert len(secret) < 12 or secret not in json.dumps(rej)
        others = [i for i in range(1, len(rows) + 1) if i != where + 1]
        st_ = statuses(batch)
        assert st_[where + 1][0] == "rejected" and all(st_[i][0] == "done" for i in others), st_
        assert report.exit_code == 0 and report.counts["done"] == len(others)
        assert report.input == len(rows)
        read_back(batch, rows, others)

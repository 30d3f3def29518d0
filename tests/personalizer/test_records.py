"""Cardholder records: validation per field, streaming, no PAN/PIN leaks, hypothesis properties."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.strategies import invalid_records as kit_invalid_records
from cardlab.strategies import valid_records as kit_valid_records
from cardlab.personalizer.masking import mask_pan, redact_pans
from cardlab.personalizer.records import (
    FIELDS,
    Record,
    RecordsError,
    Rejected,
    YearMonth,
    luhn_ok,
    read_records,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 1, 15)
GOOD = {
    "pan": "4761739001010119",
    "psn": "01",
    "expiry": "2030-12",
    "effective": "2025-01",
    "name": "DOE/JANE",
    "pin": "1234",
    "service_code": "201",
    "language": "en",
    "discretionary": "000123",
}


def check(**changes: object) -> Record | Rejected:
    raw = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    return validate(raw, today=TODAY, index=3, line=4)


def write_csv(path: Path, rows: list[dict[str, object]], fields: tuple[str, ...] = FIELDS) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


# --------------------------------------------------------------------------- masking


def test_mask_pan() -> None:
    assert mask_pan("4761739001010119") == "476173******0119"
    assert mask_pan("4761739001010119123") == "476173*********9123"
    assert mask_pan("476173900101") == "476173**0101"
    assert mask_pan("12345") == "*****"
    assert redact_pans("x 5413339001010166 y 12") == "x 541333******0166 y 12"


# --------------------------------------------------------------------------- validation


def test_good_record() -> None:
    r = check()
    assert isinstance(r, Record)
    assert r.expiry == YearMonth(2030, 12) and r.expiry.yymm == "3012"
    assert r.expiry.last_day() == date(2030, 12, 31) and YearMonth(2028, 2).last_day() == date(2028, 2, 29)
    assert r.effective is not None and r.effective.first_day() == date(2025, 1, 1)
    assert r.masked_pan == "476173******0119"
    text = repr(r)
    assert "4761739001010119" not in text and "1234" not in text and "476173******0119" in text


def test_optional_fields_and_normalisation() -> None:
    r = check(effective=None, service_code=None, language="ENFR", discretionary=None, psn="7")
    assert isinstance(r, Record)
    assert r.psn == "07" and r.language == "enfr" and r.effective is None and r.service_code is None


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"pan": "4761739001010118"}, "pan", "Luhn"),
        ({"pan": "47617390010"}, "pan", "11 digits, expected 12-19"),
        ({"pan": "47617390010101190000"}, "pan", "20 digits"),
        ({"pan": "4761 7390 0101 0119"}, "pan", "digits only"),
        ({"pan": None}, "pan", "missing"),
        ({"psn": "100"}, "psn", "not 00-99"),
        ({"psn": "A1"}, "psn", "not 00-99"),
        ({"expiry": "2030-13"}, "expiry", "month 13 is not 01-12"),
        ({"expiry": "2030-00"}, "expiry", "month 00"),
        ({"expiry": "12/30"}, "expiry", "is not YYYY-MM"),
        ({"expiry": "2025-12"}, "expiry", "in the past"),
        ({"expiry": "2025-01", "effective": "2025-01"}, "expiry", "in the past"),
        ({"expiry": "2027-01", "effective": "2027-02"}, "expiry", "2027-01 is before effective 2027-02"),
        ({"effective": "2025-1"}, "effective", "not YYYY-MM"),
        ({"name": "Doe/Jane"}, "name", "uppercase only"),
        ({"name": "DOE@JANE"}, "name", "character '@' at position 4"),
        ({"name": "X"}, "name", "1 characters, expected 2-26"),
        ({"name": "A" * 27}, "name", "27 characters"),
        ({"name": "MÜLLER"}, "name", "'Ü'"),
        ({"pin": "123"}, "pin", "4-12 digits"),
        ({"pin": "1234567890123"}, "pin", "4-12 digits"),
        ({"pin": "12a4"}, "pin", "4-12 digits"),
        ({"service_code": "301"}, "service_code", "'301'"),
        ({"service_code": "20"}, "service_code", "'20'"),
        ({"language": "e"}, "language", "ISO 639-1"),
        ({"language": "eng"}, "language", "ISO 639-1"),
        ({"language": "enfrdeitx"}, "language", "ISO 639-1"),
        ({"discretionary": "12AB"}, "discretionary", "digits only"),
        ({"discretionary": "1" * 22}, "discretionary", "track 2 holds at most 13"),
        ({"colour": "blue"}, "colour", "unknown field"),
    ],
)
def test_each_rule_names_record_and_field(changes: dict[str, object], field: str, fragment: str) -> None:
    r = check(**changes)
    assert isinstance(r, Rejected), r
    assert r.field == field, r
    assert fragment in r.message, r.message
    assert r.index == 3 and r.line == 4
    assert r.message.startswith("line 4")
    if changes.get("pan", GOOD["pan"]) == GOOD["pan"]:
        assert r.record_id == "476173******0119" and "(476173******0119)" in r.message
    assert "4761739001010119" not in r.message and GOOD["pin"] not in r.message.replace("2030", "")


def test_pin_never_echoed() -> None:
    r = check(pin="98765432109876")
    assert isinstance(r, Rejected) and "98765432109876" not in r.message and "98765432109876" not in repr(r)


def test_several_problems_listed() -> None:
    r = check(psn="XYZ", pin="1")
    assert isinstance(r, Rejected)
    assert [f for f, _ in r.problems] == ["psn", "pin"]
    assert "psn:" in r.message and "pin:" in r.message


def test_luhn() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")


# --------------------------------------------------------------------------- reading files


def test_samples_read_identically() -> None:
    from_csv = list(read_records(ROOT / "vectors/records/sample.csv", today=TODAY))
    from_jsonl = list(read_records(ROOT / "vectors/records/sample.jsonl", today=TODAY))
    assert len(from_csv) == 10 and all(isinstance(r, Record) for r in from_csv)
    assert [(r.pan, r.name) for r in from_csv if isinstance(r, Record)] == [
        (r.pan, r.name) for r in from_jsonl if isinstance(r, Record)
    ]


def test_bad_records_do_not_stop_the_stream(tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    p.write_text(
        "pan,psn,expiry,name,pin\n"
        "4761739001010119,01,2030-01,DOE/JANE,1234\n"
        "4761739001010118,01,2030-01,DOE/JANE,1234\n"  # Luhn
        'broken,"unclosed\n'
        "4761739001010127,00,2030-01,SMITH/J,1234,EXTRA\n"  # column count
        "\n"
        "4761739001010119,01,2031-01,DOE/JANE B,9999\n"  # duplicate PAN+PSN
        "4761739001010119,02,2031-01,DOE/JANE B,9999\n"
    )
    out = list(read_records(p, today=TODAY))
    kinds = [type(r).__name__ for r in out]
    # the unclosed quote swallows the rest of the file as one field: one rejection, stream ends cleanly
    assert kinds[:3] == ["Record", "Rejected", "Rejected"]
    rej = [r for r in out if isinstance(r, Rejected)]
    assert rej[0].field == "pan" and rej[0].message.startswith("line 3 (476173******0118): pan: Luhn")
    assert rej[1].field == "record"


def test_duplicates_and_column_count(tmp_path: Path) -> None:
    p = tmp_path / "dup.csv"
    p.write_text(
        "pan,psn,expiry,name,pin\n"
        "4761739001010119,01,2030-01,DOE/JANE,1234\n"
        "4761739001010127,00,2030-01,SMITH/J,1234,EXTRA\n"
        "\n"
        "4761739001010119,1,2031-01,DOE/JANE B,9999\n"
        "4761739001010119,02,2031-01,DOE/JANE B,9999\n"
    )
    out = list(read_records(p, today=TODAY))
    assert [type(r).__name__ for r in out] == ["Record", "Rejected", "Rejected", "Record"]
    assert (
        isinstance(out[1], Rejected)
        and out[1].field == "record"
        and "6 columns, the header has 5" in out[1].message
    )
    dup = out[2]
    assert isinstance(dup, Rejected) and dup.field == "pan+psn" and dup.line == 5
    assert "duplicate of line 2" in dup.message and dup.record_id == "476173******0119"
    assert [r.index for r in out] == [1, 2, 3, 4]


def test_jsonl_malformed_lines(tmp_path: Path) -> None:
    good = json.dumps({k: GOOD[k] for k in ("pan", "psn", "expiry", "name", "pin")})
    p = tmp_path / "r.jsonl"
    p.write_text(f"{good}\n{{not json\n[1,2]\n{json.dumps({**GOOD, 'psn': 3, 'pan': 4761739001010127})}\n")
    out = list(read_records(p, today=TODAY))
    assert [type(r).__name__ for r in out] == ["Record", "Rejected", "Rejected", "Record"]
    assert isinstance(out[1], Rejected) and out[1].message.startswith("line 2: record: not JSON")
    assert isinstance(out[3], Record) and out[3].psn == "03"


def test_file_level_errors(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("pan,psn,expiry,name,colour\n")
    with pytest.raises(RecordsError, match="missing column.* pin; unknown column.* colour"):
        list(read_records(p, today=TODAY))
    q = tmp_path / "r.txt"
    q.write_text("")
    with pytest.raises(RecordsError, match="cannot tell the format"):
        list(read_records(q, today=TODAY))
    with pytest.raises(RecordsError, match="no records"):  # an empty batch is an input error, not a batch
        list(read_records(q, today=TODAY, format="csv"))
    b = tmp_path / "b.csv"
    b.write_bytes(b"pan,psn,expiry,name,pin\n\xff\xfe\n")
    with pytest.raises(RecordsError, match="not UTF-8"):
        list(read_records(b, today=TODAY))


def test_streaming_is_lazy(tmp_path: Path) -> None:
    gen = read_records(tmp_path / "absent.csv", today=TODAY)  # nothing happens before the first next()
    p = write_csv(tmp_path / "absent.csv", [dict(GOOD)])
    assert isinstance(next(gen), Record) and p.exists()


def _luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def _peak_reading(path: Path, n: int, duplicates: bool = True) -> int:
    with open(path, "w") as f:
        f.write("pan,psn,expiry,name,pin\n")
        f.writelines(
            f"{_luhn_complete(f'476173{i:09d}')},00,2030-01,CARDHOLDER/NUMBER,1234\n" for i in range(n)
        )
    tracemalloc.start()
    count = 0
    for r in read_records(path, today=TODAY, duplicates=duplicates):
        count += isinstance(r, Record)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    return peak


def test_reading_stays_flat_in_memory(tmp_path: Path) -> None:
    """Streaming: without the duplicate check, 8× more records cost no more memory."""
    small = _peak_reading(tmp_path / "small.csv", 1_000, duplicates=False)
    big = _peak_reading(tmp_path / "big.csv", 8_000, duplicates=False)
    assert big < small * 1.2 + 10_000, (small, big)
    assert big < 400_000, (
        big
    )  # the file is ~420 kB; this is the fixed cost of one 64 kB chunk and the parsers


def test_duplicate_table_is_compact(tmp_path: Path) -> None:
    """The duplicate check costs at most ~36 bytes a record at its peak (a 12-byte slot table at
    most half full, old and new table alive while it grows), less than the file's ~52."""
    n = 8_000
    peak = _peak_reading(tmp_path / "d.csv", n)
    assert peak < 400_000 + 36 * n, peak


# --------------------------------------------------------------------------- hypothesis

# the generators are shipped in cardlab.strategies (the testing kit); records valid on TODAY,
# with expiry dates up to 2049 (later ones are refused: EMV two-digit years)


def valid_records() -> st.SearchStrategy[dict[str, str]]:
    return kit_valid_records(TODAY)  # expiry up to 2049: EMV's two-digit years


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_records())
def test_any_valid_record_passes(rec: dict[str, str]) -> None:
    r = validate(rec, today=TODAY)
    assert isinstance(r, Record), r
    assert r.pan == rec["pan"] and r.name == rec["name"] and r.pin == rec["pin"]


@settings(max_examples=200, deadline=None)
@given(kit_invalid_records(TODAY))
def test_any_single_field_corruption_is_named(case: tuple[dict[str, str], str]) -> None:
    corrupted, field = case
    r = validate(corrupted, today=TODAY)
    assert isinstance(r, Rejected), (field, corrupted.get(field))
    assert r.field == field, (r, field)
    pan = corrupted.get("pan", "")
    assert len(pan) < 12 or (pan not in r.message and pan not in repr(r))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(valid_records(), st.booleans()), min_size=1, max_size=12),
    st.sampled_from(["csv", "jsonl"]),
)
def test_malformed_records_do_not_stop_the_stream(
    tmp_path: Path, rows: list[tuple[dict[str, str], bool]], fmt: str
) -> None:
    # make PANs unique per row so duplicates do not interfere
    lines: list[str] = []
    buf = io.StringIO()
    for i, (rec, corrupt) in enumerate(rows):
        rec = {**rec, "psn": f"{i:02d}"}
        if corrupt:
            rec["pin"] = "12"
        if fmt == "csv":
            w = csv.DictWriter(buf, fieldnames=list(FIELDS), lineterminator="\n")
            if i == 0:
                w.writeheader()
            w.writerow(rec)
        else:
            lines.append(json.dumps(rec) + "\n" if not corrupt or i % 2 else "{garbage\n")
    p = tmp_path / f"h.{fmt}"
    p.write_text(buf.getvalue() if fmt == "csv" else "".join(lines))
    out = list(read_records(p, today=TODAY))
    assert len(out) == len(rows)
    assert [isinstance(r, Rejected) for r in out] == [c for _, c in rows]
    assert [r.index for r in out] == list(range(1, len(rows) + 1))
    for r in out:
        if isinstance(r, Rejected):
            assert r.field in ("pin", "record")

"""Cards matched to records by the PAN and PSN they hold (issue 11, cardlab/tester/certify/match.py):
a records file in any order certifies the same cards; a missing record, an extra record and a
duplicate card each give one clear finding (MATCH-001/002/003), never a cascade of data rules;
the report's PAN is the card's."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import certkit  # type: ignore[import-not-found]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlab.cli import main
from cardlab.tester.certify.match import Matcher, key_of
from cardlab.tester.sources import Record

HEADER = "pan,psn,expiry,effective,name,pin,service_code,language,discretionary\n"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> certkit.Prepared:
    return certkit.prepare_sample("visa-cvn18", tmp_path_factory.mktemp("match"))


@pytest.fixture(scope="module")
def images(prepared: certkit.Prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cards")
    for n in range(3):  # no cards.jsonl, no job database: nothing but the cards themselves
        certkit.card_from_dgis(prepared.clear(n)).save(d / f"card-{n + 1:02d}.json")
    return d


def _rows() -> list[str]:
    return certkit.SAMPLE.read_text().splitlines()[1:]


def _pan(row: str) -> str:
    return row.split(",")[0]


def _records(tmp_path: Path, rows: list[str], name: str = "records.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "".join(r + "\n" for r in rows))
    return p


def _certify(prepared: certkit.Prepared, cards: Path, records: Path, out: Path) -> tuple[int, list[dict[str, object]]]:
    rc = main(["test", "certify", "--profile", str(prepared.profile_path), "--records", str(records), "--keys",
               str(prepared.keys_path), "--today", "2026-01-15", "--cards", str(cards), "--report-dir", str(out),
               "--quiet"])  # fmt: skip
    lines = (out / "certification.jsonl").read_text().splitlines()
    return rc, [d for d in map(json.loads, lines) if "verdict" in d and "card_id" in d]


def _card_rows(prepared: certkit.Prepared) -> list[str]:
    """The sample records the three cards were prepared from."""
    rows = _rows()
    return [rows[prepared.cards[n].record_index - 1] for n in range(3)]


def test_records_in_random_order_certify_the_same_cards(prepared: certkit.Prepared, images: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rows = _card_rows(prepared)
    rc, in_order = _certify(prepared, images, _records(tmp_path, rows), tmp_path / "a")
    assert rc == 0 and [c["verdict"] for c in in_order] == ["pass"] * 3
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != rows
    rc, again = _certify(prepared, images, _records(tmp_path, shuffled, "shuffled.csv"), tmp_path / "b")
    assert rc == 0
    assert [(c["source"], c["pan"], c["verdict"]) for c in again] == [(c["source"], c["pan"], c["verdict"]) for c in in_order]
    # the record each card was matched to is the one holding its PAN, wherever it sits in the file
    for c in again:
        row = shuffled[int(str(c["record_index"])) - 1]
        assert str(c["pan"]).endswith(_pan(row)[-4:])
    capsys.readouterr()


def test_missing_extra_and_duplicate_each_one_finding(prepared: certkit.Prepared, images: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rows = _card_rows(prepared)
    others = [r for r in _rows() if r not in rows and _pan(r).startswith("476173")]
    cards = tmp_path / "cards"
    shutil.copytree(images, cards)
    shutil.copy(cards / "card-01.json", cards / "card-04.json")  # a second card with card 1's data
    # the records file lacks card 2's record and holds one record no card has
    records = _records(tmp_path, [rows[0], rows[2], others[0]])
    rc, reps = _certify(prepared, cards, records, tmp_path / "r")
    out = capsys.readouterr().out
    assert rc == 1
    by_src = {Path(str(c["source"])).name: c for c in reps}
    # missing record: card 2 fails on MATCH-001 alone, showing the card's own (masked) PAN
    c2 = by_src["card-02.json"]
    assert c2["verdict"] == "fail" and [r["rule"] for r in c2["results"]] == ["MATCH-001"]
    assert "no record of the records file has this PAN and PSN" in c2["results"][0]["evidence"]
    assert str(c2["pan"]).endswith(_pan(rows[1])[-4:]) and _pan(rows[1]) not in out
    # duplicate: the second card holding card 1's PAN and PSN fails MATCH-002 naming the first
    c4 = by_src["card-04.json"]
    failed = [r for r in c4["results"] if r["verdict"] == "fail"]
    assert [r["rule"] for r in failed] == ["MATCH-002"] and "two cards, one record" in failed[0]["evidence"]
    assert by_src["card-01.json"]["verdict"] == by_src["card-03.json"]["verdict"] == "pass"
    # extra record: one MATCH-003 finding for the record with no card
    extra = [c for c in reps if c["source"] == "records file"]
    assert len(extra) == 1 and extra[0]["results"][0]["rule"] == "MATCH-003"
    assert str(extra[0]["pan"]).endswith(_pan(others[0])[-4:])


def test_identity_reading_stops_once_pan_and_psn_are_read(prepared: certkit.Prepared) -> None:
    """read_identity reads the AFL's records in order and stops at the one that completes the
    PAN and PSN (the certification reads every record again); the key is what the card holds."""
    from cardlab.tester.certify.match import key_of, read_identity

    profile, record, _keys = certkit.sources_for(prepared)
    ch = certkit.channel(certkit.card_from_dgis(prepared.clear(0)))
    key, why = read_identity(ch, profile)
    assert key == key_of(record.pan, record.psn) and why == ""
    reads = [x for x in ch.log if x.command[1] == 0xB2]
    afl = profile.applications[0].afl()
    every = sum(afl[i + 2] - afl[i + 1] + 1 for i in range(0, len(afl) - 3, 4))
    assert 0 < len(reads) <= every
    # the last record read is the first that held what was still missing
    from cardlab.tester.tlv import flatten

    seen: set[int] = set()
    for n, x in enumerate(reads):
        found = set(flatten(x.response[:-2])) & {0x5A, 0x5F34}
        assert n == len(reads) - 1 or not (seen | found) >= {0x5A, 0x5F34}
        seen |= found
    assert seen >= {0x5A, 0x5F34}


def _record(index: int) -> Record:
    return Record(index=index, pan=f"47617390{index:08d}", psn="01", expiry=(2030, 12), effective=None, name="A",
                  pin="1234", service_code=None, language=None, discretionary="")  # fmt: skip


@given(st.lists(st.integers(min_value=1, max_value=60), unique=True), st.booleans(), st.integers(min_value=-2, max_value=63))
def test_the_hinted_record_is_found_by_its_index_in_any_order(indexes: list[int], in_order: bool, hint: int) -> None:
    """Matcher.record (the batch's hint) names the record at that position of the file, whether the
    records come in file order (binary search) or not (a dict), and None when no record has it."""
    records = [_record(i) for i in (sorted(indexes) if in_order else indexes)]
    m = Matcher(records)
    want = next((r for r in records if r.index == hint), None)
    assert m.record(hint) is want
    key = key_of(records[0].pan, "01") if records else None
    if records and hint == records[0].index:
        rec, found = m.match(key, "", "card-1", hint)
        assert rec is records[0] and [r.verdict for r in found] == ["pass", "pass"]


def test_a_key_held_by_two_or_three_records_names_them_all() -> None:
    """The index holds a record per key, and a tuple when the records file holds a key more than
    once: MATCH-001 names every record that has it."""
    import dataclasses

    one, two, three = _record(1), _record(2), _record(3)
    twice = dataclasses.replace(two, pan=one.pan)
    thrice = dataclasses.replace(three, pan=one.pan)
    for records, ids in (([one, twice, three], "1, 2"), ([one, twice, thrice], "1, 2, 3")):
        rec, found = Matcher(records).match(key_of(one.pan, "01"), "", "card-1", None)
        assert rec is None and [r.rule for r in found] == ["MATCH-001"] and found[0].verdict == "fail"
        assert f"records {ids} all have it" in found[0].evidence
    rec, _found = Matcher([one, twice, three]).match(key_of(three.pan, "01"), "", "card-3", None)
    assert rec is three


def test_values_that_repeat_are_held_once_per_file(tmp_path: Path) -> None:
    """read_records keeps one copy of what repeats from record to record (PSN, dates, service
    code, language); each record's own values are read as they are."""
    from cardlab.tester.sources import read_records

    n = 600  # more records than distinct values kept per field: the discretionary data is each record's own
    rows = [f"47617390{i:08d},01,2030-12,2025-01,NAME {i},{1000 + i},201,en,DD{i}" for i in range(n)]
    recs = list(read_records(_records(tmp_path, rows)))
    assert [r.pan for r in recs] == [row.split(",")[0] for row in rows] and [r.pin for r in recs] == [str(1000 + i) for i in range(n)]
    assert [r.discretionary for r in recs] == [f"DD{i}" for i in range(n)]
    for attr in ("psn", "expiry", "effective", "service_code", "language"):
        assert len({id(getattr(r, attr)) for r in recs}) == 1, attr
    assert recs[0].expiry == (2030, 12) and recs[0].effective == (2025, 1) and recs[0].language == "en"

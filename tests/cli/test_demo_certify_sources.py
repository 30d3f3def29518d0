"""The demo's certify workers read a batch's profile, key store and records once per process
(cardlab/demo/pipeline.py ``_certify_sources``), and again as soon as any of the files changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cardlab.demo import pipeline

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def test_sources_are_read_once_and_again_when_a_file_changes(tmp_path: Path) -> None:
    profile = tmp_path / "visa.yaml"
    records = tmp_path / "records.csv"
    shutil.copyfile(VECTORS / "profiles" / "visa-cvn18.yaml", profile)
    shutil.copyfile(VECTORS / "records" / "sample.csv", records)
    keys = str(pipeline.demo_keystore(tmp_path / "keys.json"))
    first = pipeline._certify_sources(str(profile), str(records), keys)
    assert pipeline._certify_sources(str(profile), str(records), keys) is first
    assert [r.index for r in first[2].records] == list(range(1, len(first[2].records) + 1))
    # one record less: read again (and only the current batch is kept)
    lines = records.read_text().splitlines(keepends=True)
    records.write_text("".join(lines[:-1]))
    second = pipeline._certify_sources(str(profile), str(records), keys)
    assert second is not first and len(second[2].records) == len(first[2].records) - 1
    assert len(pipeline._SOURCES) == 1
    # the same size but a new modification time: read again
    st = os.stat(profile)
    os.utime(profile, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert pipeline._certify_sources(str(profile), str(records), keys) is not second


def test_each_chunk_gets_a_matcher_that_has_seen_no_card(tmp_path: Path) -> None:
    """A chunk's MATCH-002 sees only its own cards: fresh() shares the records and their index
    (built once per process) but not what an earlier chunk's cards held."""
    from cardlab.tester.certify.match import key_of

    records = tmp_path / "records.csv"
    shutil.copyfile(VECTORS / "records" / "sample.csv", records)
    keys = str(pipeline.demo_keystore(tmp_path / "keys.json"))
    shutil.copyfile(VECTORS / "profiles" / "visa-cvn18.yaml", tmp_path / "visa.yaml")
    template = pipeline._certify_sources(str(tmp_path / "visa.yaml"), str(records), keys)[2]
    rec = template.records[0]
    one, two = template.fresh(), template.fresh()
    assert one.by_key is template.by_key and one.records is template.records
    for m in (one, two):  # the same card in two chunks: a pass in each
        assert [r.verdict for r in m.match(key_of(rec.pan, rec.psn), "", "card-1", rec.index)[1]] == ["pass", "pass"]
    found = one.match(key_of(rec.pan, rec.psn), "", "card-2", rec.index)[1]  # a second card in one chunk
    assert [(r.rule, r.verdict) for r in found] == [("MATCH-001", "pass"), ("MATCH-002", "fail")]
    assert not template.seen and one.seen == {rec.index: "card-1"}

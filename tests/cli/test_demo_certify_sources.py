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
    assert [r.index for r in first[2]] == list(range(1, len(first[2]) + 1))
    # one record less: read again (and only the current batch is kept)
    lines = records.read_text().splitlines(keepends=True)
    records.write_text("".join(lines[:-1]))
    second = pipeline._certify_sources(str(profile), str(records), keys)
    assert second is not first and len(second[2]) == len(first[2]) - 1
    assert len(pipeline._SOURCES) == 1
    # the same size but a new modification time: read again
    st = os.stat(profile)
    os.utime(profile, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert pipeline._certify_sources(str(profile), str(records), keys) is not second

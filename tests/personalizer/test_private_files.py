"""No secret is readable by others (issue 13): every file of a run that holds a key, a PIN, a
PIN block, a private key or a full PAN is 0600 — checked by content over all the outputs of a
demo run and of a personalization killed mid-batch, whose half-saved images are removed on resume."""

from __future__ import annotations

import csv
import json
import os
import random
import stat
from pathlib import Path

from enginekit import kill_during_batch, make_batch, make_cards

from cardlab.cli import main
from cardlab.personalizer import engine

RUNNER = """
import sys
sys.path.insert(0, {here!r})
from cardlab.personalizer import engine
engine.run({batch!r}, cards={cards!r}, keys={keys!r}, stations=1)
"""


def _secrets(keys: Path, records: list[Path]) -> set[str]:
    """What must not be readable by others: clear key values, full PANs (a PIN alone is too short to
    search for, so the records files and PIN blocks are covered by the files that hold the PANs)."""
    doc = json.loads(keys.read_text())
    found = {str(entry[part]).upper() for entry in doc["keys"].values() for part in ("value", "d", "p", "q")
             if len(str(entry.get(part, ""))) >= 32}  # fmt: skip
    for path in records:
        with path.open(newline="") as f:
            found |= {row["pan"] for row in csv.DictReader(f)}
    return {s for s in found if s}


def _readable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _leaks(root: Path, secrets: set[str]) -> list[str]:
    out = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_bytes().decode("latin-1").upper()
        held = [s for s in secrets if s in text]
        if held and _readable_by_others(path):
            out.append(f"{path.relative_to(root)} ({oct(path.stat().st_mode & 0o777)}) holds a secret")
    return out


def test_every_file_of_a_demo_run_that_holds_a_secret_is_private(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    old = os.umask(0o022)  # the usual umask: files created plainly would be 0644
    try:
        assert main(["demo", "--cards", "4", "--workers", "1", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    secrets = _secrets(out / "keys.json", sorted((out / "records").glob("*.csv")))
    assert len(secrets) > 10
    holders = [p for p in out.rglob("*") if p.is_file() and any(s in p.read_bytes().decode("latin-1").upper()
                                                                 for s in secrets)]  # fmt: skip
    assert len(holders) >= 6  # key store, records, card images: the check has something to check
    assert _leaks(out, secrets) == []


def test_a_killed_personalization_leaves_only_private_files_and_resume_cleans_up(tmp_path: Path) -> None:
    batch, keys = make_batch(tmp_path, count=12, bad=())
    cards = make_cards(tmp_path, keys, 16)
    code = RUNNER.format(here=str(Path(__file__).parent), batch=str(batch), cards=str(cards), keys=str(keys))
    old = os.umask(0o022)
    try:
        killed, err = kill_during_batch(code, dict(os.environ), batch / "jobs.sqlite", random.Random(7).uniform(0, 0.2))
    finally:
        os.umask(old)
    assert killed, err
    for image in cards.iterdir():  # images and half-saved temporary files alike
        assert not _readable_by_others(image), f"{image.name} {oct(image.stat().st_mode & 0o777)}"
    # by content, over every output of the killed run: the batch, the stock and its claim markers
    secrets = _secrets(keys, [tmp_path / "records.csv"])
    held = [p for p in [*batch.rglob("*"), *cards.rglob("*")] if p.is_file()
            and any(s in p.read_bytes().decode("latin-1").upper() for s in secrets)]  # fmt: skip
    assert held  # the killed run left card images holding keys and PANs: the check has something to check
    assert _leaks(batch, secrets) + _leaks(cards, secrets) == []
    # a temporary file a killed station left (as its pid is gone) is removed by the next run
    stale = cards / ".card-000001.json.999999.tmp"
    stale.write_bytes(b"{}")
    os.chmod(stale, 0o600)
    (cards / ".claims" / ".card-000002.json.999999.tmp").write_bytes(b"")  # a claim marker being noted
    report = engine.run(batch, cards=cards, keys=str(keys))
    assert report.exit_code == 0, (report.failures, report.errors)
    assert [p.name for p in cards.rglob(".*.tmp")] == [] and [p.name for p in batch.rglob("*.tmp")] == []
    assert all(not _readable_by_others(p) for p in cards.iterdir())
    assert _leaks(batch, secrets) + _leaks(cards, secrets) == []

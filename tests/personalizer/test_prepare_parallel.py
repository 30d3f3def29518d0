"""Preparation of one batch on many processes (``--workers N``) or a Dask cluster (``--dask
local:N``): the same batch as one process — card order, rejections and their messages, every
clear DGI of an SDA profile (nothing fresh per card there but the IVs of sealed values) — and
clear errors for an unreachable scheduler or a bad value (cardlab/personalizer/prepare/parallel.py)."""

from __future__ import annotations

import json
from pathlib import Path

import prepkit  # type: ignore[import-not-found]
import pytest

from cardlab.cli import main
from cardlab.personalizer.batch import iter_cards

HEADER = "pan,psn,expiry,effective,name,pin,service_code,language,discretionary"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("parallel")
    keys = tmp / "keys.json"
    ks = prepkit.make_keystore()
    ks.save(keys)
    profile = prepkit.sda_profile(tmp)
    from cardlab.records_gen import write_csv

    records = tmp / "records.csv"
    write_csv(records, "476173", 70, seed=5)
    lines = records.read_text().splitlines()
    bad = lines[10].split(",")
    bad[2] = "2019-13"  # a bad expiry among good records: rejected, the rest goes on
    lines[10] = ",".join(bad)
    records.write_text("\n".join(lines) + "\n")
    return profile, records, keys


def _prepare(inputs: tuple[Path, Path, Path], out: Path, *extra: str) -> int:
    profile, records, keys = inputs
    return main(["perso", "prepare", "--profile", str(profile), "--records", str(records), "--keys", str(keys),
                 "--out", str(out), "--today", "2026-01-15", "--quiet", *extra])


def _batch(out: Path) -> tuple[list[tuple[object, ...]], str]:
    ks = prepkit.make_keystore()
    cards = [(c.card_id, c.record_index, c.pan_masked, json.dumps(c.fields, sort_keys=True),
              [(a.aid, prepkit.clear_dgis(ks, a)) for a in c.apps]) for c in iter_cards(out)]
    return cards, (out / "rejected.jsonl").read_text()


@pytest.mark.parametrize("how", [["--workers", "2"], ["--dask", "local:2"]], ids=["workers", "dask"])
def test_the_same_batch_as_one_process(inputs: tuple[Path, Path, Path], tmp_path: Path, how: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _prepare(inputs, tmp_path / "one") == 0
    assert _prepare(inputs, tmp_path / "many", *how) == 0
    capsys.readouterr()
    one, many = _batch(tmp_path / "one"), _batch(tmp_path / "many")
    assert len(one[0]) == 69 and one[1].count("\n") == 1 and "expiry" in one[1]
    assert many == one
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert m1["counts"] == m2["counts"] and m1["inputs"] == m2["inputs"]


def test_unreachable_scheduler_and_bad_values(inputs: tuple[Path, Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _prepare(inputs, tmp_path / "x", "--dask", "tcp://127.0.0.1:9") == 2
    err = capsys.readouterr().err
    assert "cannot reach the scheduler" in err and "Traceback" not in err and not (tmp_path / "x").exists()
    assert _prepare(inputs, tmp_path / "y", "--dask", "local:0") == 2
    assert "local:N" in capsys.readouterr().err
    assert _prepare(inputs, tmp_path / "z", "--workers", "0") == 2
    assert "worker processes 1-256" in capsys.readouterr().err


def test_dda_batch_on_dask_equals_one_process_apart_from_icc_keys(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """DDA (issue 15): one fresh ICC RSA key per card. Two one-process runs show which DGIs are
    fresh per card (ICC key and its certificate); ``--dask local:2`` must equal the one-process
    batch byte for byte on every other DGI, and match the fresh ones in number and length."""
    import yaml

    keys = tmp_path / "keys.json"
    prepkit.make_keystore().save(keys)
    doc = yaml.safe_load(prepkit.VISA.read_text())
    doc["applications"] = doc["applications"][:1]  # the credit application: SDA + DDA
    profile = tmp_path / "dda.yaml"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    from cardlab.records_gen import write_csv

    records = tmp_path / "records.csv"
    write_csv(records, "476173", 12, seed=7)
    lines = records.read_text().splitlines()
    bad = lines[4].split(",")
    bad[2] = "2019-13"
    lines[4] = ",".join(bad)
    records.write_text("\n".join(lines) + "\n")
    ins = (profile, records, keys)
    for name, extra in (("a", []), ("b", []), ("dask", ["--dask", "local:2"])):
        assert _prepare(ins, tmp_path / name, *extra) == 0
    capsys.readouterr()
    a, b, d = (_batch(tmp_path / n) for n in ("a", "b", "dask"))
    assert len(a[0]) == 11 and a[1] == b[1] == d[1] and "expiry" in d[1]
    fresh = {(i, aid, dgi) for i, (ca, cb) in enumerate(zip(a[0], b[0], strict=True))
             for (aid, da), (_, db) in zip(ca[4], cb[4], strict=True)
             for (dgi, va), (_, vb) in zip(da, db, strict=True) if va != vb}  # fmt: skip
    assert fresh, "a DDA profile must give fresh ICC key material per card"

    def shape(cards: list[tuple[object, ...]]) -> list[object]:
        return [(c[:4], [(aid, [(i, aid, dgi) in fresh and len(v) or v for dgi, v in dgis])
                         for aid, dgis in c[4]]) for i, c in enumerate(cards)]  # type: ignore[attr-defined]

    assert shape(d[0]) == shape(a[0])
    m1 = json.loads((tmp_path / "a" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert m1["counts"] == m2["counts"] and m1["inputs"] == m2["inputs"]

"""Data preparation: batch output, rejections, sealing, and prepared cards that
personalize an emulated card and transact (cryptogram checked with pyemv)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from prepkit import MASTERCARD, PROFILES, VECTORS, VISA, clear_dgis, make_keystore, open_sealed, personalize, run_transaction, sda_profile

from cardlab.cardspec import emv, tlv
from cardlab.personalizer.batch import CardPersoData, Sealed, iter_cards, iter_rejections, read_manifest
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.prepare import PrepareError, prepare
from cardlab.personalizer.profile import load_profile
from cardlab.personalizer.records import read_records

TODAY = date(2026, 1, 15)
SAMPLE = VECTORS / "records" / "sample.csv"
#: the sample records on each sample profile's BIN (476173: records 1-6, 541333: records 7-10)
ON_BIN = {"visa-cvn18": [1, 2, 3, 4, 5, 6], "mastercard-cvn16": [7, 8, 9, 10]}


@pytest.fixture(scope="module")
def ks() -> SoftwareKeyStore:
    return make_keystore()


@pytest.fixture(scope="module")
def batches(ks: SoftwareKeyStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for profile in PROFILES:
        d = tmp_path_factory.mktemp(profile.stem)
        prepare(profile, SAMPLE, ks, d / "batch", today=TODAY)
        out[profile.stem] = d / "batch"
    return out


def _cards(batch: Path) -> list[CardPersoData]:
    return list(iter_cards(batch))


def test_manifest_counts_and_hashes(batches: dict[str, Path]) -> None:
    import hashlib

    for stem, batch in batches.items():
        m = read_manifest(batch)
        n = sum(1 for _ in read_records(SAMPLE, today=TODAY))
        accepted = len(ON_BIN[stem])  # sample.csv mixes both BINs: the others are rejected (field pan)
        assert m["counts"] == {"input": n, "accepted": accepted, "rejected": n - accepted}
        assert m["cards_sha256"] == hashlib.sha256((batch / "cards.jsonl").read_bytes()).hexdigest()
        assert m["inputs"]["records"]["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
        assert m["transport_key"] == {"name": "KEK", "kcv": "2CF6A4"}
        assert m["profile"] == load_profile(batch / "profile.yaml").name
        assert len(_cards(batch)) == accepted
        assert [c.record_index for c in _cards(batch)] == ON_BIN[stem]


def test_records_on_another_bin_are_rejected_for_pan(batches: dict[str, Path]) -> None:
    """Each profile lists its BINs; a record whose PAN is on none of them is rejected (the batch goes on)."""
    records = {r.index: r for r in read_records(SAMPLE, today=TODAY)}
    for stem, batch in batches.items():
        bins = load_profile(batch / "profile.yaml").bins
        assert bins == {"visa-cvn18": ("476173",), "mastercard-cvn16": ("541333",)}[stem]
        rejected = list(iter_rejections(batch))
        assert [(r.record_index, r.field) for r in rejected] == [(i, "pan") for i in records if i not in ON_BIN[stem]]
        for r in rejected:
            pan = records[r.record_index].pan  # type: ignore[union-attr]
            assert not pan.startswith(bins[0])
            assert r.message == (
                f"record {r.record_index} ({pan[:6]}******{pan[-4:]}): pan: "
                f"not on a BIN of profile {load_profile(batch / 'profile.yaml').name} ({bins[0]})"
            )
            assert pan not in r.message


def test_every_application_gets_every_dgi(batches: dict[str, Path], ks: SoftwareKeyStore) -> None:
    for profile in PROFILES:
        prof = load_profile(profile)
        for card in _cards(batches[profile.stem]):
            assert [a.aid for a in card.apps] == [a.aid for a in prof.applications]
            for app, pd in zip(prof.applications, card.apps, strict=True):
                dgis = dict(pd.dgis)
                for r in app.records:
                    assert r.dgi in dgis
                for g in (0x9102, 0x9104, 0x9000, 0x0D01, 0x0E01, 0x8000):
                    assert g in dgis
                assert (0x0D02 in dgis) == bool(app.risk.currency_conversion)  # the Mastercard sample has one
                assert (0x8010 in dgis) == (0x9010 in dgis) == app.offline_pin
                assert all(g in dgis for g in range(0x8201, 0x8206)) == (app.icc_key is not None)
                pan_records = {r.dgi for r in app.records if {0x57, 0x5A, 0x9F46, 0x9F2D} & set(r.tags)}
                assert pan_records
                cert_records = {r.dgi for r in app.records if 0x9F46 in r.tags}  # the PAN is recoverable
                assert bool(cert_records) == (app.icc_key is not None)
                assert all(isinstance(dgis[g], Sealed) for g in cert_records)
                for g, v in pd.dgis:  # secrets and PAN-bearing records sealed, everything else clear
                    assert isinstance(v, Sealed) == (g & 0xF000 == 0x8000 or g in pan_records), hex(g)
                assert pd.load_file == bytes.fromhex("A0000006474D56")
                assert pd.module == bytes.fromhex("A0000006474D5601")


def test_icc_master_keys_known_answer(batches: dict[str, Path], ks: SoftwareKeyStore) -> None:
    """Sealed 8000 opens to Option A ICC MKs (cardlab.cardspec.emv, independent of cardlab.personalizer.keys) and 9000 holds their KCVs."""
    records = [r for r in read_records(SAMPLE, today=TODAY) if not hasattr(r, "problems")]
    by_index = {r.index: r for r in records}  # type: ignore[union-attr]
    imks = [ks.clear_value(n) for n in ("IMK-AC", "IMK-SMI", "IMK-SMC")]
    for card in _cards(batches["visa-cvn18"]):
        rec = by_index[card.record_index]
        for pd in card.apps:
            d = dict(clear_dgis(ks, pd))
            expect = [emv.icc_mk_option_a(k, rec.pan, rec.psn) for k in imks]  # type: ignore[union-attr]
            assert d[0x8000] == b"".join(expect)
            assert d[0x9000] == b"".join(emv.kcv(k) for k in expect)
            if 0x8010 in d:
                assert d[0x8010] == emv.plaintext_pin_block(rec.pin)  # type: ignore[union-attr]


def test_option_b_for_long_pans(ks: SoftwareKeyStore, tmp_path: Path) -> None:
    pan = "4761739001010000001"
    pan = pan[:-1] + str((10 - _luhn_sum(pan[:-1])) % 10)
    csv = tmp_path / "r.csv"
    csv.write_text(f"pan,psn,expiry,name,pin\n{pan},01,2030-12,LONG/PAN,1234\n")
    prepare(sda_profile(tmp_path), csv, ks, tmp_path / "b", today=TODAY)
    (card,) = iter_cards(tmp_path / "b")
    d = dict(clear_dgis(ks, card.apps[0]))
    assert d[0x8000][:16] == emv.icc_mk_option_b(ks.clear_value("IMK-AC"), pan, "01")
    assert d[0x8000][:16] != emv.icc_mk_option_a(ks.clear_value("IMK-AC"), pan, "01")
    assert d[0x0101].hex().upper().find(pan + "D3012201") > 0  # 57 with the service code


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        v = int(ch) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return total


def test_bad_records_rejected_good_ones_prepared(ks: SoftwareKeyStore, tmp_path: Path) -> None:
    good = ["4761739001010101", "4761739001010119", "4761739001010127"]
    csv = tmp_path / "r.csv"
    csv.write_text(
        "pan,psn,expiry,name,pin\n"
        f"{good[0]},00,2030-01,GOOD/ONE,1234\n"
        "4761739001010102,00,2030-01,BAD/LUHN,1234\n"
        f"{good[1]},01,2030-13,BAD/MONTH,1234\n"
        f"{good[1]},02,2030-02,GOOD/TWO,1234\n"
        f"{good[2]},03,2030-02,bad name ~,1234\n"
        f"{good[2]},04,2030-02,BAD/PIN,12\n"
        f"{good[2]},05,2030-03,GOOD/THREE,98765\n"
    )
    s = prepare(sda_profile(tmp_path), csv, ks, tmp_path / "b", today=TODAY)
    assert (s.input_count, s.accepted, s.rejected) == (7, 3, 4)
    rej = list(iter_rejections(tmp_path / "b"))
    assert [(r.record_index, r.field) for r in rej] == [(2, "pan"), (3, "expiry"), (5, "name"), (6, "pin")]
    assert rej[0].record_id == "476173******0102"
    for r in rej:
        assert "4761739001010" not in r.message
    assert [c.record_index for c in iter_cards(tmp_path / "b")] == [1, 4, 7]
    assert read_manifest(tmp_path / "b")["counts"] == {"input": 7, "accepted": 3, "rejected": 4}


def test_no_clear_secret_in_the_batch(batches: dict[str, Path], ks: SoftwareKeyStore) -> None:
    records = [r for r in read_records(SAMPLE, today=TODAY) if not hasattr(r, "problems")]
    for batch in batches.values():
        blob = b"".join(p.read_bytes() for p in sorted(batch.iterdir()))
        text = blob.decode().upper()
        secrets: list[str] = []
        for rec in records:
            secrets += [rec.pan, emv.plaintext_pin_block(rec.pin).hex().upper()]  # type: ignore[union-attr]
        for card in iter_cards(batch):
            for pd in card.apps:
                for g, v in clear_dgis(ks, pd):
                    if g & 0xF000 == 0x8000:
                        secrets += [v.hex().upper(), v[:16].hex().upper()]
                        if g in (0x8204, 0x8205):
                            secrets.append(v.lstrip(b"\x00")[:16].hex().upper())
            assert card.stations is not None
            stations = json.loads(open_sealed(ks, card.stations))
            assert stations["track2"].startswith(";" + stations["pan"] + "=")
            secrets += [stations["track1"].upper(), stations["embossing"][0]]
        for s in secrets:
            assert s not in text
        # the PIN digits never appear in a clear field either
        for card in iter_cards(batch):
            assert "pin" not in card.fields


def test_stations_consistent_with_chip(batches: dict[str, Path], ks: SoftwareKeyStore) -> None:
    for card in iter_cards(batches["mastercard-cvn16"]):
        assert card.stations is not None
        st = json.loads(open_sealed(ks, card.stations))
        d = dict(clear_dgis(ks, card.apps[0]))
        t57 = tlv.find(d[0x0101], 0x57)
        assert t57 is not None
        assert t57.value.hex().upper().rstrip("F") == st["track2"][1:-1].replace("=", "D")
        assert st["track1"].startswith("%B" + st["pan"] + "^" + card.fields["name"] + "^")
        assert st["embossing"][0].replace(" ", "") == st["pan"]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_prepared_card_personalizes_and_transacts(
    profile: Path, batches: dict[str, Path], ks: SoftwareKeyStore
) -> None:
    from cardlab.emulator import Card

    prof = load_profile(profile)
    card_data = next(iter_cards(batches[profile.stem]))
    rec = next(r for r in read_records(SAMPLE, today=TODAY) if r.index == card_data.record_index)
    card = Card.create()
    personalize(card, card_data, ks)
    for app in prof.applications:
        seen = run_transaction(card, app, ks, rec.pan, rec.psn, rec.pin)  # type: ignore[union-attr]
        assert seen[0x5A].hex().upper().rstrip("F") == rec.pan  # type: ignore[union-attr]
        assert seen[0x5F20].decode() == rec.name  # type: ignore[union-attr]
        assert seen[0x5F24].hex()[:4] == rec.expiry.yymm  # type: ignore[union-attr]


def test_refuses_to_overwrite_and_unknown_keys(ks: SoftwareKeyStore, batches: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="already holds a batch"):
        prepare(VISA, SAMPLE, ks, batches["visa-cvn18"], today=TODAY)
    plain = SoftwareKeyStore.load(VECTORS / "test-keystore.json")
    unknown = tmp_path / "unknown-key.yaml"
    unknown.write_text(MASTERCARD.read_text().replace("TEST-MC-IMK-AC", "NO-SUCH-IMK-AC"))
    with pytest.raises(PrepareError, match="NO-SUCH-IMK-AC"):
        prepare(unknown, SAMPLE, plain, tmp_path / "x", today=TODAY)


def test_cli(ks: SoftwareKeyStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main

    store = tmp_path / "keys.json"
    ks.save(store)
    profile = sda_profile(tmp_path)
    rc = main(["perso", "prepare", "--profile", str(profile), "--records", str(SAMPLE), "--keys", str(store),
               "--out", str(tmp_path / "b"), "--today", "2026-01-15"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "10 records, 6 prepared, 4 rejected" in out.out  # records 7-10 are on the Mastercard BIN
    for rec in read_records(SAMPLE, today=TODAY):
        assert rec.pan not in out.out + out.err  # type: ignore[union-attr]
    assert read_manifest(tmp_path / "b")["counts"] == {"input": 10, "accepted": 6, "rejected": 4}


def test_a_failed_preparation_leaves_no_batch(ks: SoftwareKeyStore, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Ctrl-C (or any error) in the middle of a batch leaves neither a half-made batch that blocks the
    next attempt nor a staging directory; the next attempt then succeeds."""
    from cardlab.personalizer import prepare as prepare_module

    real = prepare_module.CardPreparer.prepare
    calls = {"n": 0}

    def interrupted(self: object, record: object) -> CardPersoData:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, record)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare_module.CardPreparer, "prepare", interrupted)
    out = tmp_path / "batch"
    with pytest.raises(KeyboardInterrupt):
        prepare(VISA, SAMPLE, ks, out, today=TODAY)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    summary = prepare(VISA, SAMPLE, ks, out, today=TODAY)
    assert summary.accepted == len(ON_BIN["visa-cvn18"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch"]


def test_batch_into_an_existing_empty_directory_and_private_files(ks: SoftwareKeyStore, tmp_path: Path) -> None:
    out = tmp_path / "given"
    out.mkdir()
    prepare(VISA, SAMPLE, ks, out, today=TODAY)
    assert (out / "manifest.json").exists()
    for name in ("cards.jsonl", "rejected.jsonl"):
        assert (out / name).stat().st_mode & 0o077 == 0, name
    with pytest.raises(PrepareError, match="not a directory"):
        prepare(VISA, SAMPLE, ks, out / "manifest.json", today=TODAY)


def test_stale_staging_of_a_killed_preparation_is_removed(ks: SoftwareKeyStore, tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".batch.preparing-{dead}"
    stale.mkdir()
    (stale / "cards.jsonl").write_text("{}\n")
    prepare(VISA, SAMPLE, ks, tmp_path / "batch", today=TODAY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch"]


def test_a_profile_naming_a_kmc_the_key_store_lacks_is_refused(ks: SoftwareKeyStore, tmp_path: Path) -> None:
    """perso prepare used to exit 0 and leave perso run to fail every card: the KMC is checked up front."""
    profile = tmp_path / "no-kmc.yaml"
    profile.write_text(VISA.read_text().replace("kmc: TEST-KMC-VISA", "kmc: NO-SUCH-KMC"))
    assert "NO-SUCH-KMC" in profile.read_text()
    with pytest.raises(PrepareError, match="lacks key 'NO-SUCH-KMC'"):
        prepare(profile, SAMPLE, ks, tmp_path / "batch", today=TODAY)
    assert not (tmp_path / "batch").exists()

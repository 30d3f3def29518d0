"""The personalizer end to end, through the command line exactly as a user runs it.

``cardlab perso prepare`` (shipped profile, shipped records, shipped test key
store) → ``cardlab perso stock`` → ``cardlab perso run BATCH --cards DIR
--stations 2`` → ``perso status`` → ``perso audit --verify``; then an in-test
EMV terminal (tests/emv/terminal.py) reads every personalized card image: the
record's PAN, name and expiry, offline PIN, SDA/DDA (CDA for the Mastercard
profile) and an ARQC that pyemv confirms under the IMK of the key store.

Also: the badge (non-EMV) sample through the same engine, and no full PAN, PIN
or clear key anywhere in the batch directory, the job database/audit log or
the command output.

The helpers here (``cli``, ``run_pipeline``, ``personalized``, ``secrets_of``,
``assert_no_secrets``) are used by test_pkcs11_batch.py and test_properties.py.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from prepkit import MASTERCARD, VECTORS, VISA, run_transaction

from cardlab.emulator import Card
from cardlab.personalizer.batch import Sealed, iter_cards, read_manifest
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.profile import Profile, load_profile
from cardlab.personalizer.records import Record, read_records

KEYSTORE = VECTORS / "test-keystore.json"
SAMPLE = VECTORS / "records" / "sample.csv"
BADGE_PROFILE = VECTORS / "profiles" / "badge.yaml"
BADGE_RECORDS = VECTORS / "records" / "badge.csv"
#: the sample records on each sample profile's BIN (476173: records 1-6, 541333: records 7-10)
ON_BIN = {"visa-cvn18": [1, 2, 3, 4, 5, 6], "mastercard-cvn16": [7, 8, 9, 10]}


# ----------------------------------------------------------------------------- helpers


def cli(*args: str | Path) -> tuple[int, str]:
    """``cardlab ARGS`` in this process (cardlab.cli.main); exit code and everything printed."""
    from cardlab.cli import main

    buf = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"  # rich: no wrapping inside values
    try:
        with redirect_stdout(buf), redirect_stderr(buf):
            rc = main([str(a) for a in args])
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return rc, buf.getvalue()


@dataclass
class Pipeline:
    profile_path: Path
    profile: Profile
    records_path: Path
    batch: Path
    stock: Path
    output: str  # everything the commands printed


def run_pipeline(profile_path: Path, records_path: Path, keys: str, work: Path, *, stations: int = 2,
                 spare: int = 2) -> Pipeline:  # fmt: skip
    """prepare → stock → run → status → audit --verify, each through the CLI; asserts every exit code."""
    profile = load_profile(profile_path) if profile_path != BADGE_PROFILE else None
    batch, stock = work / "batch", work / "stock"
    out: list[str] = []

    rc, text = cli("perso", "prepare", "--profile", profile_path, "--records", records_path, "--keys", keys,
                   "--out", batch)  # fmt: skip
    out.append(text)
    assert rc == 0, text
    accepted = read_manifest(batch)["counts"]["accepted"]
    if profile is not None:
        kmc, scheme = profile.card.kmc, profile.card.diversification.upper()
    else:
        kmc, scheme = "KMC", "KDF3"
    rc, text = cli("perso", "stock", stock, "--count", str(accepted + spare), "--keys", keys, "--kmc", kmc,
                   "--diversification", scheme)  # fmt: skip
    out.append(text)
    assert rc == 0, text
    # as documented: no --keys, no --script (both come from the batch)
    rc, text = cli("perso", "run", batch, "--cards", stock, "--stations", str(stations), "--quiet")
    out.append(text)
    assert rc == 0, text
    assert f"done {accepted}, failed 0" in text, text
    rc, text = cli("perso", "status", batch)
    out.append(text)
    assert rc == 0, text
    rc, text = cli("perso", "audit", batch, "--verify")
    out.append(text)
    assert rc == 0 and "audit chain verified" in text, text
    rc, text = cli("perso", "audit", batch)  # the whole log as printed
    out.append(text)
    assert rc == 0
    return Pipeline(profile_path, profile, records_path, batch, stock, "\n".join(out))  # type: ignore[arg-type]


def personalized(batch: Path) -> dict[int, Path]:
    """record index → the card image that holds it (from the job database)."""
    db = sqlite3.connect(f"file:{batch / 'jobs.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT r.record_index, c.location FROM records r JOIN cards c ON r.card = c.id "
            "WHERE r.status = 'done' AND c.status = 'personalized'"
        ).fetchall()
    finally:
        db.close()
    return {int(i): Path(loc) for i, loc in rows}


def load_card(path: Path) -> Card:
    card = Card.load(path)
    card.power_on()
    return card


def records_by_index(path: Path) -> dict[int, Record]:
    return {r.index: r for r in read_records(path) if isinstance(r, Record)}


def _icc_mk(imk: bytes, pan: str, psn: str) -> bytes:
    from pyemv import kd

    return bytes(kd.derive_icc_mk_a(imk, pan, psn))


def secrets_of(records: Iterable[Record], ks: SoftwareKeyStore, profile: Profile | None = None) -> dict[str, bytes]:
    """What must never be at rest or printed: name → bytes to look for (as raw bytes and as hex)."""
    found: dict[str, bytes] = {}
    for name in ks.names():
        if ks.info(name).type != "RSA":
            found[f"key {name}"] = ks.clear_value(name)
    for r in records:
        found[f"PAN of record {r.index}"] = r.pan.encode()
        found[f"PAN (BCD) of record {r.index}"] = bytes.fromhex(r.pan + ("F" if len(r.pan) % 2 else ""))
        block = f"2{len(r.pin):X}{r.pin}".ljust(16, "F")  # ISO 9564 format 2 (the card's plain PIN block)
        found[f"PIN block of record {r.index}"] = bytes.fromhex(block)
        found[f"PIN field of record {r.index}"] = f'"pin": "{r.pin}"'.encode()
        if profile is not None:
            for app in profile.applications:
                for usage in ("imk_ac", "imk_smi", "imk_smc"):
                    imk = ks.clear_value(getattr(app.keys, usage))
                    found[f"ICC MK {usage} of record {r.index}"] = _icc_mk(imk, r.pan, r.psn)
    return found


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from (f for f in sorted(p.rglob("*")) if f.is_file())
        elif p.exists():
            yield p


def assert_no_secrets(paths: Iterable[Path], texts: Iterable[str], secrets: dict[str, bytes]) -> int:
    """No secret in any file under ``paths`` (raw, ASCII, hex upper/lower) or in ``texts``
    (also with white space removed: rich may wrap). Returns the number of files searched."""
    forms = {
        what: [v for v in (s, s.hex().encode(), s.hex().upper().encode()) if len(v) >= 4]
        for what, s in secrets.items()
    }
    n = 0
    for f in _files(paths):
        n += 1
        blob = f.read_bytes()
        for what, variants in forms.items():
            for v in variants:
                assert v not in blob, f"{what} found in {f}"
    for text in texts:
        for blob in (text.encode(), "".join(text.split()).encode()):
            for what, variants in forms.items():
                for v in variants:
                    assert v not in blob, f"{what} found in the command output"
    return n


def check_emv_card(card: Card, profile: Profile, ks: SoftwareKeyStore, rec: Record) -> None:
    """The in-test terminal: every application of the card gives the record's data, passes
    offline PIN and ODA, and its ARQC verifies under the key store's IMK (pyemv)."""
    for app in profile.applications:
        seen = run_transaction(card, app, ks, rec.pan, rec.psn, rec.pin)
        assert seen[0x5A].hex().upper().rstrip("F") == rec.pan
        assert seen[0x5F20].decode().rstrip() == rec.name
        assert seen[0x5F24].hex()[:4] == rec.expiry.yymm
        track2 = seen[0x57].hex().upper()
        assert track2.startswith(rec.pan + "D" + rec.expiry.yymm)


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def keystore() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(KEYSTORE)


@pytest.fixture(scope="module", params=[VISA, MASTERCARD], ids=["visa-cvn18", "mastercard-cvn16"])
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    path: Path = request.param
    return run_pipeline(path, SAMPLE, str(KEYSTORE), tmp_path_factory.mktemp(path.stem))


def test_cli_pipeline_cards_read_back_in_a_terminal(pipeline: Pipeline, keystore: SoftwareKeyStore) -> None:
    manifest = read_manifest(pipeline.batch)
    assert manifest["script_source"] == "emv-cps.yaml" and (pipeline.batch / "script.yaml").is_file()
    records = records_by_index(pipeline.records_path)
    cards = personalized(pipeline.batch)
    # sample.csv mixes both BINs: each profile takes the records on its own BIN and rejects the others
    on_bin = ON_BIN[pipeline.profile_path.stem]
    assert sorted(cards) == on_bin, "every sample record on the profile's BIN is on exactly one card"
    rejected = [json.loads(line) for line in (pipeline.batch / "rejected.jsonl").read_text().splitlines()]
    assert [(r["record_index"], r["field"]) for r in rejected] == [(i, "pan") for i in sorted(records) if i not in on_bin]
    assert all("not on a BIN of profile" in r["message"] for r in rejected)
    assert len(set(cards.values())) == len(cards)
    oda = {m for app in pipeline.profile.applications for m in app.oda}
    assert ({"SDA", "DDA"} <= oda) if pipeline.profile_path == VISA else ("CDA" in oda)
    for index, image in sorted(cards.items()):
        card = load_card(image)
        check_emv_card(card, pipeline.profile, keystore, records[index])
        for app in pipeline.profile.applications:  # DGI 0D02 reached the card (the Mastercard sample has one)
            table = card.applets[app.aid].data.currency_conversion  # type: ignore[attr-defined]
            assert [(e.currency, e.mantissa, e.exponent) for e in table] == [
                (c.currency, c.mantissa, c.exponent) for c in app.risk.currency_conversion
            ]
    # the unused stock stays blank
    used = set(cards.values())
    assert len([p for p in pipeline.stock.glob("card-*.json") if p not in used]) == 2


def test_cli_certify_the_batch(pipeline: Pipeline, tmp_path: Path) -> None:
    """The walkthrough's last step (docs/personalizer.md): the tester certifies every card of the batch."""
    rc, text = cli("test", "certify", "--profile", pipeline.profile_path, "--records", pipeline.records_path,
                   "--keys", KEYSTORE, "--cards", pipeline.batch, "--report-dir", tmp_path)  # fmt: skip
    n = len(ON_BIN[pipeline.profile_path.stem])  # the records on the profile's BIN (the others were rejected)
    assert rc == 0 and f"{n} cards: {n} passed, 0 failed" in text, text
    assert (tmp_path / "certification.json").is_file()


def test_cli_pipeline_leaks_no_secret(pipeline: Pipeline, keystore: SoftwareKeyStore) -> None:
    records = records_by_index(pipeline.records_path).values()
    secrets = secrets_of(records, keystore, pipeline.profile)
    searched = assert_no_secrets([pipeline.batch], [pipeline.output], secrets)
    assert searched >= 6  # manifest, profile, script, cards, rejected, jobs.sqlite (+ WAL)
    # the audit log itself, as text
    db = sqlite3.connect(f"file:{pipeline.batch / 'jobs.sqlite'}?mode=ro", uri=True)
    try:
        audit = "\n".join(f"{e} {d}" for e, d in db.execute("SELECT event, details FROM audit"))
    finally:
        db.close()
    assert "card done" in audit
    assert_no_secrets([], [audit], secrets)
    # and the sealed data really is the secret data (the search above would see it in clear)
    first = next(iter_cards(pipeline.batch))
    assert any(isinstance(v, Sealed) for app in first.apps for _d, v in app.dgis)


def test_badge_batch_through_the_engine(tmp_path: Path, keystore: SoftwareKeyStore) -> None:
    """The second sample script: badge profile and records, same commands, same engine."""
    bad = tmp_path / "badges.csv"
    bad.write_text(BADGE_RECORDS.read_text().rstrip("\n") + "\n12,No Number,Research,Lab A\n")
    p = run_pipeline(BADGE_PROFILE, bad, str(KEYSTORE), tmp_path, stations=1, spare=1)
    manifest = read_manifest(p.batch)
    assert manifest["script_source"] == "badge.yaml"
    assert manifest["counts"] == {"input": 4, "accepted": 3, "rejected": 1}
    assert "rejected 1" in p.output
    rejected = [json.loads(line) for line in (p.batch / "rejected.jsonl").read_text().splitlines()]
    assert [(r["record_index"], r["field"]) for r in rejected] == [(4, "badge_number")]
    cards = {c.record_index: c for c in iter_cards(p.batch)}
    done = personalized(p.batch)
    assert sorted(done) == [1, 2, 3]
    df_name = bytes.fromhex("F0000000994241444745")
    for index, image in done.items():
        card = load_card(image)  # a door reader: plain ISO commands, no secure channel

        def ok(apdu: str) -> bytes:
            resp = card.transmit(bytes.fromhex(apdu))
            assert resp[-2:] == b"\x90\x00", f"{apdu}: {resp[-2:].hex()}"
            return resp[:-2]

        fields = cards[index].fields
        ok("00A4040C0A" + df_name.hex())
        assert ok("00B0810000").rstrip(b"\x00").decode() == fields["name"]
        assert ok("00B0820000").rstrip(b"\x00").decode() == fields["department"]
        for i, place in enumerate(fields["premises"].split(";"), start=1):
            assert ok(f"00B2{i:02X}1C00").rstrip(b"\x00").decode() == place
        assert card.transmit(bytes.fromhex("00B0840000"))[-2:] == b"\x69\x82"  # the door key: unreadable
    # the door keys are sealed in the batch, never clear at rest
    keys = {}
    for c in cards.values():
        sealed = dict(c.apps[0].dgis)[0xDF01]
        assert isinstance(sealed, Sealed)
        keys[f"door key of badge {c.card_id}"] = keystore.decrypt(sealed.kek, sealed.ciphertext)[:16]
    assert_no_secrets([p.batch], [p.output], keys | secrets_of([], keystore))


def test_the_secret_search_sees_secrets(keystore: SoftwareKeyStore) -> None:
    """The search used above finds clear keys, PANs and PINs where they are (the inputs)."""
    records = list(records_by_index(SAMPLE).values())
    secrets = secrets_of(records, keystore)
    with pytest.raises(AssertionError, match="key IMK-AC found"):
        assert_no_secrets([KEYSTORE], [], {k: v for k, v in secrets.items() if k == "key IMK-AC"})
    with pytest.raises(AssertionError, match="PAN of record 1 found"):
        assert_no_secrets([SAMPLE], [], {"PAN of record 1": secrets["PAN of record 1"]})
    with pytest.raises(AssertionError, match="command output"):
        assert_no_secrets([], ["card 4761 7390\n0101 0101"], {"PAN": records[0].pan.encode()})

"""The same batch through a PKCS#11 token (SoftHSM2) gives the same cards.

The shipped test key store is imported into a fresh SoftHSM2 token (created
here, as in test_keystore.py); then the command-line pipeline of
test_pipeline.py runs once with ``--keys vectors/test-keystore.json`` and once
with ``--keys pkcs11:token=…;pin-env=…`` (prepare, stock, run with two
stations). The cards must agree in everything but the per-card random ICC RSA
keys: the same DGIs with the same values (ICC master keys and their KCVs, PIN
block, issuer certificate, SDA), the certificates verify, the PIN verifies,
the ARQCs verify under the same IMKs, and the tester's certification gives the
same verdict for every rule.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from prepkit import MASTERCARD, VISA, clear_dgis
from test_pipeline import (
    KEYSTORE,
    ON_BIN,
    SAMPLE,
    Pipeline,
    assert_no_secrets,
    check_emv_card,
    load_card,
    personalized,
    records_by_index,
    run_pipeline,
    secrets_of,
)

from cardlab.cardspec import tlv
from cardlab.personalizer.batch import iter_cards
from cardlab.personalizer.keys import SoftwareKeyStore

SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "cardlab-batch"
PIN_VAR = "CARDLAB_TEST_BATCH_PIN"


@pytest.fixture(scope="module")
def soft() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(KEYSTORE)


@pytest.fixture(scope="module")
def token_spec(soft: SoftwareKeyStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    util = shutil.which("softhsm2-util")
    if util is None or not os.path.exists(SOFTHSM_LIB):
        pytest.skip("SoftHSM2 is not installed (softhsm2-util / libsofthsm2.so missing; Debian package softhsm2)")
    import pkcs11

    from cardlab.personalizer.keys.pkcs11_token import Pkcs11KeyStore, import_keystore_into_token

    base = tmp_path_factory.mktemp("softhsm-batch")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    saved = {k: os.environ.get(k) for k in ("SOFTHSM2_CONF", PIN_VAR)}
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ[PIN_VAR] = "4321"
    try:
        subprocess.run([util, "--init-token", "--free", "--label", TOKEN, "--pin", "4321", "--so-pin", "8765"],
                       check=True, capture_output=True, env=os.environ.copy())  # fmt: skip
        lib = pkcs11.lib(SOFTHSM_LIB)
        try:
            lib.get_token(token_label=TOKEN)
        except pkcs11.exceptions.NoSuchToken:  # the library was initialised with another config
            lib.reinitialize()
        store = Pkcs11KeyStore.open(TOKEN, "4321", SOFTHSM_LIB)
        try:
            assert import_keystore_into_token(soft, store) == soft.names()
        finally:
            store.close()
        yield f"pkcs11:token={TOKEN};pin-env={PIN_VAR}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module", params=[VISA, MASTERCARD], ids=["visa-cvn18", "mastercard-cvn16"])
def both(request: pytest.FixtureRequest, token_spec: str,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Pipeline]:  # fmt: skip
    path: Path = request.param
    software = run_pipeline(path, SAMPLE, str(KEYSTORE), tmp_path_factory.mktemp(f"{path.stem}-soft"))
    token = run_pipeline(path, SAMPLE, token_spec, tmp_path_factory.mktemp(f"{path.stem}-hsm"))
    return software, token


#: DGIs that hold the ICC RSA key pair (private CRT parts) — random per card
ICC_PRIVATE_DGIS = set(range(0x8101, 0x8106)) | set(range(0x8201, 0x8206))
#: data objects that depend on the per-card ICC key
ICC_KEY_TAGS = {0x9F46, 0x9F48}


def _icc_key_dependent(dgi: int, value: bytes) -> bool:
    if dgi in ICC_PRIVATE_DGIS:
        return True
    if dgi >> 8 in range(0x01, 0x1F) and value[:1] == b"\x70":  # a record DGI (SFI, record): template 70
        return any(tlv.find(value, tag) is not None for tag in ICC_KEY_TAGS)
    return False


def test_token_batch_prepares_the_same_data(both: tuple[Pipeline, Pipeline], soft: SoftwareKeyStore) -> None:
    software, token = both
    assert token.output.count("audit chain verified") == 1
    a, b = list(iter_cards(software.batch)), list(iter_cards(token.batch))
    assert [(c.record_index, c.pan_masked) for c in a] == [(c.record_index, c.pan_masked) for c in b]
    oda = {m for app in software.profile.applications for m in app.oda}
    differing: set[int] = set()
    for ca, cb in zip(a, b, strict=True):
        assert ca.fields == cb.fields
        for xa, xb in zip(ca.apps, cb.apps, strict=True):
            assert (xa.aid, xa.load_file, xa.module, xa.install_params) == (xb.aid, xb.load_file, xb.module,
                                                                             xb.install_params)  # fmt: skip
            da, db = clear_dgis(soft, xa), clear_dgis(soft, xb)
            assert [d for d, _ in da] == [d for d, _ in db], "same DGIs, same order"
            for (dgi, va), (_, vb) in zip(da, db, strict=True):
                if va != vb:
                    assert _icc_key_dependent(dgi, va), f"card {ca.card_id} app {xa.aid.hex()}: DGI {dgi:04X} differs"
                    differing.add(dgi)
            # the secrets by name: ICC master keys (8000) and their KCVs (9000), PIN block (8010)
            for dgi in (0x8000, 0x9000, 0x8010):
                assert dict(da).get(dgi) == dict(db).get(dgi) and dict(da).get(dgi), f"DGI {dgi:04X}"
    if "DDA" in oda or "CDA" in oda:
        assert differing, "the ICC RSA keys are random per card, so their DGIs differ"
    else:
        assert not differing


def test_token_cards_read_back_and_certify_identically(both: tuple[Pipeline, Pipeline],
                                                       soft: SoftwareKeyStore) -> None:  # fmt: skip
    from cardlab.tester import certify, sources
    from cardlab.tester.channel import RecordingChannel
    from cardlab.tester.rules import PASS

    software, token = both
    records = records_by_index(SAMPLE)
    cards_a, cards_b = personalized(software.batch), personalized(token.batch)
    # the sample records on the profile's BIN (the others are rejected, field pan, by both)
    assert sorted(cards_a) == sorted(cards_b) == ON_BIN[software.profile_path.stem]
    prof = sources.load_profile(software.profile_path)
    keys = sources.load_keystore(KEYSTORE)
    for index in sorted(cards_a)[:4]:
        rec = records[index]
        verdicts = []
        for image in (cards_a[index], cards_b[index]):
            # the terminal: record data, PIN VERIFY 9000, SDA/DDA/CDA, ARQC under the IMK (pyemv)
            check_emv_card(load_card(image), software.profile, soft, rec)
            report = certify.certify_card(RecordingChannel(load_card(image).transmit), prof,
                                          sources.load_record(SAMPLE, index), keys, today=date.today())  # fmt: skip
            assert report.verdict == PASS, [(r.rule, r.evidence) for r in report.failed]
            verdicts.append(sorted((r.app, r.rule, r.verdict) for r in report.results))
        assert verdicts[0] == verdicts[1], f"record {index}: software and token cards certify differently"


def test_token_batch_leaks_no_secret(both: tuple[Pipeline, Pipeline], soft: SoftwareKeyStore) -> None:
    _software, token = both
    secrets = secrets_of(records_by_index(SAMPLE).values(), soft, token.profile)
    secrets["token PIN"] = b"4321"
    assert_no_secrets([token.batch], [token.output], {k: v for k, v in secrets.items() if k != "token PIN"})
    assert re.search(r"(?<![0-9A-Fa-f.])4321(?![0-9A-Fa-f])", token.output) is None  # not as a figure's digits
    assert "pin-env=" in (token.batch / "manifest.json").read_text()  # the variable's name, not the PIN

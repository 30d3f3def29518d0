"""Testing my own perso script with cardlab's testing kit (docs/testing-kit.md).

The two properties a perso-script developer wants:

1. every valid cardholder record personalizes and certifies;
2. every single corruption of the script is caught — by the card (a step
   fails) or by certification (a rule fails).

Run it with ``pytest examples/test_my_perso_script.py``; add
``--cardlab-reader "NAME"`` to run the emulated-card-independent tests against
a card in a PC/SC reader. Replace PROFILE, MY_SCRIPT and the key store with
your own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.pytest_plugin import Personalizer, RecordRejected
from cardlab.samples import vectors_dir
from cardlab.strategies import Corruption, all_single_corruptions, invalid_records, valid_records
from cardlab.personalizer.script import ScriptError, StepFailed

#: cardlab's sample data as installed (cardlab.vectors): the example runs from any directory
VECTORS = vectors_dir()
#: the issuer profile my script personalizes (cardlab's TEST Mastercard-like profile)
PROFILE = VECTORS / "profiles" / "mastercard-cvn16.yaml"
BIN = "541333"

#: my perso script (normally a file next to the tests: SCRIPT = Path(".../my-script.yaml"))
MY_SCRIPT = """
script: my-emv-script
description: EMV CPS personalization, DGIs listed one by one
steps:
  - name: select ISD
    select: {aid: "${profile.card.isd_aid}"}
  - name: open secure channel
    open_scp03: {level: 0x33, kmc: "${profile.card.kmc}", scheme: "${profile.card.diversification}",
                 key_version: "${profile.card.key_version}"}
  - name: install PPSE
    install: {for: install_and_make_selectable, load_file: A0000006475053, module: A000000647505302,
              aid: 325041592E5359532E4444463031, privileges: "00"}
  - name: install application
    foreach: app
    install: {for: install_and_make_selectable, load_file: "${app.load_file}", module: "${app.module}",
              aid: "${app.aid}", privileges: "${app.privileges}", params: "${app.install_params}"}
  - name: personalize application
    foreach: app
    steps:
      - name: INSTALL for personalization
        install: {for: personalization, aid: "${app.aid}"}
      - name: records and GPO
        store_data:
          last: false
          dgis:
            - {dgi: "0101", value: "${app.dgi.0101}"}
            - {dgi: "0201", value: "${app.dgi.0201}"}
            - {dgi: "0202", value: "${app.dgi.0202}"}
            - {dgi: "9104", value: "${app.dgi.9104}"}
      - name: keys and the rest
        store_data: {dgis: []}                  # filled in by the script fixture below
  - name: card secured
    set_status: {card: "${profile.card.target_life_cycle}"}
"""

#: Corruptions cardlab's certification cannot see yet, and why. Each stays
#: listed until it is caught: ``test_blind_spots_are_still_blind`` fails then,
#: and the entry can go.
BLIND_SPOTS = {
    ("dropped_step", "select ISD", "removed"): "the ISD is the default application at power-on: same card",
}


@pytest.fixture(scope="module")
def keystore() -> Path:
    """My key store file (here cardlab's TEST key store: it holds the keys PROFILE names)."""
    return VECTORS / "test-keystore.json"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory, keystore: Path) -> Path:
    """MY_SCRIPT with the DGIs the second STORE DATA sends written out (the ones
    data preparation gives the application besides the first four)."""
    kit = Personalizer(tmp_path_factory.mktemp("prep"))
    sample = {"pan": "5413339001010166", "psn": "01", "expiry": "2035-12", "name": "TEST/CARD", "pin": "1234"}
    dgis = [d for d, _ in kit.prepare(PROFILE, sample, keystore).apps[0].dgis]
    doc = yaml.safe_load(MY_SCRIPT)
    first = {int(i["dgi"], 16) for i in doc["steps"][4]["steps"][1]["store_data"]["dgis"]}
    doc["steps"][4]["steps"][2]["store_data"]["dgis"] = [
        {"dgi": f"{d:04X}", "value": f"${{app.dgi.{d:04X}}}"} for d in dgis if d not in first
    ]
    path = tmp_path_factory.mktemp("script") / "my-script.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _caught(personalized_card: Personalizer, terminal: Any, script: Path, keystore: Path, record: dict[str, str]) -> str:
    """How a (corrupted) script is caught: 'card: …', 'script: …', 'cert: RULES' or ''."""
    try:
        card = personalized_card(PROFILE, record, keystore, script=script)
    except StepFailed as exc:
        return f"card: {exc}"
    except ScriptError as exc:
        return f"script: {exc}"
    report = terminal(card).certify(gp_status=True)  # GP privileges and life cycles over SCP03 (PRIV-001, LIFE-*)
    return f"cert: {','.join(sorted(report.failed_rules()))}" if report.failed else ""


# --------------------------------------------------------------------------- property 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_valid_record_personalizes_and_certifies(
    personalized_card: Personalizer, terminal: Any, script: Path, keystore: Path, data: st.DataObject
) -> None:
    record = data.draw(valid_records(personalized_card.today, bin_prefix=BIN), label="record")
    card = personalized_card(PROFILE, record, keystore, script=script)
    report = terminal(card).certify(gp_status=True)
    assert report.verdict == "pass", [(r.rule, r.evidence) for r in report.failed]
    assert terminal(card).run_transaction(amount=1500).outcome


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_invalid_record_is_rejected_naming_the_field(
    personalized_card: Personalizer, script: Path, keystore: Path, data: st.DataObject
) -> None:
    record, field = data.draw(invalid_records(personalized_card.today, bin_prefix=BIN), label="record")
    with pytest.raises(RecordRejected) as rejected:
        personalized_card(PROFILE, record, keystore, script=script)
    assert rejected.value.field == field
    assert record.get("pan", "") not in str(rejected.value) or len(record.get("pan", "")) < 12


# --------------------------------------------------------------------------- property 2


def _corruptions(script_path: Path, blind: bool) -> list[Corruption]:
    doc = yaml.safe_load(script_path.read_text())
    return [c for c in all_single_corruptions(doc) if ((c.kind, c.step, c.detail) in BLIND_SPOTS) == blind]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_single_corruption_is_caught(
    personalized_card: Personalizer, terminal: Any, script: Path, keystore: Path, data: st.DataObject,
    tmp_path: Path,
) -> None:
    corruption = data.draw(st.sampled_from(_corruptions(script, blind=False)), label="corruption")
    record = data.draw(valid_records(personalized_card.today, bin_prefix=BIN, optional=False), label="record")
    bad = tmp_path / "corrupted.yaml"
    bad.write_text(yaml.safe_dump(corruption.script, sort_keys=False))
    assert _caught(personalized_card, terminal, bad, keystore, record), f"{corruption} went unnoticed"


def test_blind_spots_are_still_blind(personalized_card: Personalizer, terminal: Any, script: Path, keystore: Path,
                                     tmp_path: Path) -> None:  # fmt: skip
    record = {"pan": "5413339001010166", "psn": "01", "expiry": "2035-12", "name": "TEST/CARD", "pin": "1234"}
    for corruption in _corruptions(script, blind=True):
        bad = tmp_path / "corrupted.yaml"
        bad.write_text(yaml.safe_dump(corruption.script, sort_keys=False))
        how = _caught(personalized_card, terminal, bad, keystore, record)
        assert not how, f"{corruption} is caught now ({how}): remove it from BLIND_SPOTS"

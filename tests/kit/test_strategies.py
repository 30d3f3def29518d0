"""The shipped hypothesis strategies produce what they promise."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.strategies import (
    all_single_corruptions,
    apdus,
    emv_cps_script,
    invalid_records,
    mutated_apdus,
    perso_scripts,
    profile_variations,
    valid_apdus,
    valid_records,
)
from cardlab.emulator import Card
from cardlab.personalizer.profile import parse_profile
from cardlab.personalizer.records import Record, Rejected, validate
from cardlab.personalizer.script import parse_script

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "vectors" / "profiles"
TODAY = date(2026, 1, 15)


@settings(max_examples=60, deadline=None)
@given(valid_records(TODAY))
def test_valid_records_validate(rec: dict[str, str]) -> None:
    assert isinstance(validate(rec, today=TODAY), Record)


@settings(max_examples=60, deadline=None)
@given(invalid_records(TODAY))
def test_invalid_records_name_the_field(case: tuple[dict[str, str], str]) -> None:
    rec, field = case
    r = validate(rec, today=TODAY)
    assert isinstance(r, Rejected) and r.field == field


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["visa-cvn18.yaml", "mastercard-cvn16.yaml"]), st.data())
def test_profile_variations_parse(name: str, data: st.DataObject) -> None:
    doc = data.draw(profile_variations(PROFILES / name))
    parse_profile(yaml.safe_load(yaml.safe_dump(doc)), name)  # raises ProfileError on any problem


@settings(max_examples=25, deadline=None)
@given(perso_scripts(dgis=[0x0101, 0x0201, 0x9104, 0x8000, 0x9000]))
def test_perso_scripts_load(doc: dict[str, object]) -> None:
    script, problems = parse_script(doc)
    assert script is not None and problems == []


def test_corruption_kinds() -> None:
    doc = emv_cps_script(dgi_order=[0x0101, 0x0201, 0x9104], blocks=2)
    kinds = {c.kind for c in all_single_corruptions(doc)}
    assert kinds == {"wrong_sw", "dropped_step", "altered_literal", "swapped_dgi"}
    for c in all_single_corruptions(doc):
        assert c.script != doc
        assert parse_script(c.script)[1] == [], c


@settings(max_examples=150, deadline=None)
@given(st.one_of(apdus(), mutated_apdus(), valid_apdus()))
def test_card_answers_every_apdu_with_a_status_word(apdu: bytes) -> None:
    card = Card.create()
    card.power_on()
    resp = card.transmit(apdu)
    assert len(resp) >= 2 and (resp[-2] == 0x90 or 0x61 <= resp[-2] <= 0x6F)


BINS = {"visa-cvn18.yaml": "476173", "mastercard-cvn16.yaml": "541333"}


@pytest.fixture(scope="module")
def sample_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardlab.demo import demo_keystore

    return demo_keystore(tmp_path_factory.mktemp("keys") / "keys.json")


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(name=st.sampled_from(sorted(BINS)), data=st.data())
def test_profile_variations_personalize_and_certify(personalized_card: Any, terminal: Any, sample_keys: Path,
                                                    tmp_path_factory: pytest.TempPathFactory, name: str,
                                                    data: st.DataObject) -> None:  # fmt: skip
    """Every variation the strategy draws is a profile the whole pipeline accepts: prepared and
    personalized with the shipped EMV CPS script, the card passes certification against it."""
    doc = data.draw(profile_variations(PROFILES / name), label="profile")
    path = tmp_path_factory.mktemp("variation") / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    record = data.draw(valid_records(personalized_card.today, bin_prefix=BINS[name]), label="record")
    card = personalized_card(path, record, sample_keys)
    report = terminal(card).certify()
    assert report.verdict == "pass", [(r.rule, r.evidence) for r in report.failed]

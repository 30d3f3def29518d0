"""Issuer profile: the sample profiles load, encodings are right, and every mistake is named by its path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardlab.personalizer.profile import (
    TAGS,
    CvmList,
    CvmRule,
    DolEntry,
    Profile,
    ProfileError,
    encode_dol,
    load_profile,
    parse_profile,
)

ROOT = Path(__file__).resolve().parents[2]
VISA = ROOT / "vectors/profiles/visa-cvn18.yaml"
MC = ROOT / "vectors/profiles/mastercard-cvn16.yaml"


def visa_doc() -> dict[str, Any]:
    doc = yaml.safe_load(VISA.read_text())
    assert isinstance(doc, dict)
    return doc


def problems_of(doc: object) -> list[str]:
    with pytest.raises(ProfileError) as exc:
        parse_profile(doc, "test.yaml")
    return list(exc.value.problems)


def test_visa_sample_two_applications_sda_dda() -> None:
    p = load_profile(VISA)
    assert isinstance(p, Profile)
    assert [a.name for a in p.applications] == ["credit", "debit"]
    credit, debit = p.applications
    assert credit.aid == bytes.fromhex("A0000000031010") and debit.aid == bytes.fromhex("A0000000032010")
    assert credit.cvn == 18 and credit.oda == ("SDA", "DDA")
    # AIP derived (Book 3 Annex C1): SDA 40 | DDA 20 | CVM 10 | TRM 08 | IA 04
    assert credit.aip == bytes.fromhex("7C00")
    # AFL: SFI 1 rec 1; SFI 2 recs 1-2 both signed; SFI 3 recs 1-4
    assert credit.afl() == bytes.fromhex("080101001001020218010400")
    # signed record after an unsigned one in the same SFI starts a new AFL entry
    assert debit.afl() == bytes.fromhex("080101000802020110010401")
    assert [(r.sfi, r.number) for r in credit.oda_records()] == [(2, 1), (2, 2)]
    assert credit.records[0].dgi == 0x0101
    assert credit.icc_key is not None and credit.icc_key.exponent == 3
    assert credit.keys.ca_index == 0x7E and credit.keys.issuer_rsa == "TEST-VISA-ISSUER-RSA"
    assert credit.language_preference == b"enfr"
    assert credit.offline_pin and credit.cvm_list is not None and credit.cvm_list.enciphered_pin
    assert encode_dol(credit.cdol1).hex().upper() == "9F02069F03069F1A0295055F2A029A039C019F3704"
    assert credit.log is not None and credit.log.log_entry == bytes.fromhex("0B0A")
    assert p.card.diversification == "kdf3" and p.card.target_life_cycle == "SECURED"
    assert debit.risk.issuer_auth_required and debit.response_format == 1


def test_mastercard_sample_cda() -> None:
    p = load_profile(MC)
    (app,) = p.applications
    assert app.cvn == 16 and app.oda == ("CDA",)
    assert app.aip == bytes.fromhex("1D80")  # byte 2 b8: EMV mode for its kernel 2 section (Book C-2)
    assert app.cvm_list is not None
    # 8E: X = 5000 (00001388), Y = 0, rules 5F06 (no CVM if under X, next), 4403, 4203, 5E03, 0000
    assert app.cvm_list.encode().hex().upper() == "00001388000000005F06440342035E030000"
    assert app.extra(0x42) == bytes.fromhex("541333")
    assert p.card.diversification == "emv"
    assert (0x9F4C, 8) in [(e.tag, e.length) for e in app.cdol1]


def test_profiles_are_frozen() -> None:
    p = load_profile(MC)
    with pytest.raises(AttributeError):
        p.applications[0].cvn = 10  # type: ignore[misc]


def test_cvm_rule_encoding() -> None:
    assert CvmRule("signature", "always", False).encode() == bytes.fromhex("1E00")
    assert CvmRule("online_pin", "over_y", True).encode() == bytes.fromhex("4209")
    assert CvmList(1, 2, ()).encode() == bytes.fromhex("0000000100000002")
    assert encode_dol((DolEntry(0x9A, 3),)) == bytes.fromhex("9A03")


def test_unknown_tag_in_cdol1_named_by_path() -> None:
    doc = visa_doc()
    doc["applications"][1]["cdol1"] += " 9F99:2"
    probs = problems_of(doc)
    assert any(p.startswith("applications[1].cdol1[8]: unknown tag 9F99") for p in probs), probs


def test_all_problems_reported_at_once() -> None:
    doc = visa_doc()
    app = doc["applications"][0]
    app["aid"] = "A0000003"  # 4 bytes
    app["cvn"] = 17
    app["pin_try_limit"] = 20
    app["iac"]["online"] = "XYZ"
    app["cvm_list"]["rules"][0]["method"] = "telepathy"
    doc["card"]["diversification"] = "rot13"
    probs = problems_of(doc)
    joined = "\n".join(probs)
    for fragment in (
        "applications[0].aid: 4 bytes, expected 5..16",
        "applications[0].cvn: 17 is not a supported cryptogram version",
        "applications[0].pin_try_limit: 20 is out of range 1..15",
        "applications[0].iac.online: 'XYZ' is not hex",
        "applications[0].cvm_list.rules[0].method: 'telepathy' is not one of",
        "card.diversification: 'rot13' is not one of emv, visa2, kdf3, none",
    ):
        assert fragment in joined, (fragment, joined)
    with pytest.raises(ProfileError) as exc:
        parse_profile(doc, "test.yaml")
    assert str(exc.value).startswith(f"test.yaml: {len(probs)} problems")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda a: a.update(oda=["SDA", "DDA", "XDA"]), "applications[0].oda[2]: 'XDA' is not one of"),
        (lambda a: a.pop("icc_key"), "applications[0].icc_key: missing: DDA/CDA need an ICC key"),
        (lambda a: a.pop("ddol"), "applications[0].ddol: missing: DDA needs a DDOL"),
        (lambda a: a.update(ddol="9F02:6"), "applications[0].ddol: lacks 9F37"),
        (lambda a: a.update(cdol1="9F02:6 9F37:4"), "applications[0].cdol1: lacks 9F03"),
        (
            lambda a: a.update(cdol1=a["cdol1"].replace("9F37:4", "9F37:8")),
            "9F37 (Unpredictable Number) is 4 bytes, not 8",
        ),
        (lambda a: a.update(pdol="5A:8"), "applications[0].pdol[0]: tag 5A (Application PAN) is card data"),
        (lambda a: a["afl"][1]["records"][0]["data"].remove("5A"), "applications[0].afl: no record holds 5A"),
        (lambda a: a["afl"][2]["records"][2]["data"].remove("93"), "SDA needs 93"),
        (
            lambda a: a["afl"][2]["records"][3].update(oda=True),
            "holds 9F46, which is computed over the signed records",
        ),
        (lambda a: a["afl"][0]["records"][0]["data"].append("9F37"), "afl[0].records[0].data[3]: tag 9F37"),
        (
            lambda a: a["afl"][0]["records"][0]["data"].append("5F24"),
            "tag 5F24 is already placed at applications[0].afl[0].records[0].data[3]",
        ),
        (lambda a: a["afl"][1]["records"][1].update(number=1), "SFI 2 record 1 is already defined"),
        (lambda a: a.update(aip="1C00"), "applications[0].aip: 1C00 lacks SDA"),
        (
            lambda a: a.update(oda="none"),
            "a record holds 93 (Signed Static Application Data) but oda is none",
        ),
        (lambda a: a["keys"].pop("imk_smi"), "applications[0].keys.imk_smi: missing"),
        (lambda a: a["keys"].pop("ca_index"), "applications[0].keys.ca_index: missing"),
        (
            lambda a: a.update(log={"sfi": 2, "records": 5, "format": "9A:3"}),
            "applications[0].log.sfi: 2 is out of range 11..30",
        ),
        (lambda a: a.update(risk={"lcol": 9, "ucol": 3}), "applications[0].risk.ucol: 3 is below lcol 9"),
        (lambda a: a.update(risk={"frobnicate": 1}), "applications[0].risk.frobnicate: unknown field"),
        (lambda a: a.update(icc_key={"size": 1024, "exponent": 17}), "applications[0].icc_key.exponent: 17"),
        (lambda a: a.update(service_code="301"), "applications[0].service_code: '301'"),
        (lambda a: a.update(label="X" * 17), "applications[0].label: 1 to 16 printable"),
        (lambda a: a.update(languages=["EN"]), "applications[0].languages[0]: 'EN'"),
        (lambda a: a["cvm_list"].update(amount_x=100), "amount_x: set, but no rule uses under_x/over_x"),
    ],
)
def test_each_mistake_is_named(edit: Any, expected: str) -> None:
    doc = visa_doc()
    edit(doc["applications"][0])
    probs = problems_of(doc)
    assert any(expected in p for p in probs), (expected, probs)


def test_currency_conversion_to_minor_units() -> None:
    """risk.currency_conversion: major-unit rates become exact minor-unit factors (DGI 0D02)."""
    doc = visa_doc()  # credit: USD (840), exponent 2
    doc["applications"][0]["risk"]["currency_conversion"] = [
        {"currency": 978, "rate": "1.0850"},  # 1 EUR = 1.0850 USD: 1.085 cents per euro cent
        {"currency": 392, "rate": "0.0067", "exponent": 0},  # the yen has no minor unit: 0.67 cents
        {"currency": 414, "rate": "3.25", "exponent": 3},  # Kuwaiti dinar (3 decimals): 0.325 cents per fils
        {"currency": 360, "rate": "0.000061"},  # rupiah
        {"currency": 826, "rate": 2},
    ]
    (credit, debit) = parse_profile(doc).applications
    assert [(c.currency, c.mantissa, c.exponent) for c in credit.risk.currency_conversion] == [
        (978, 1085, 3),
        (392, 67, 2),
        (414, 325, 3),
        (360, 61, 6),
        (826, 2, 0),
    ]
    assert debit.risk.currency_conversion == ()


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{"currency": 978, "rate": 1.085}], "currency_conversion[0].rate: 1.085 is a YAML number: quote"),
        ([{"currency": 978, "rate": "1,085"}], "currency_conversion[0].rate: '1,085' is not a decimal rate"),
        ([{"currency": 978, "rate": "-1"}], "currency_conversion[0].rate: '-1' is not a decimal rate"),
        ([{"currency": 978, "rate": "0.00"}], "currency_conversion[0].rate: 0: a rate must be above zero"),
        ([{"currency": 978}], "currency_conversion[0].rate: missing"),
        ([{"currency": 840, "rate": "1"}], "currency_conversion[0].currency: 840 is the application currency"),
        ([{"currency": 1000, "rate": "1"}], "currency_conversion[0].currency: 1000 is out of range 1..999"),
        ([{"rate": "1"}], "currency_conversion[0].currency: missing"),
        ([{"currency": 978, "rate": "1", "exponent": 10}], "currency_conversion[0].exponent: 10 is out of range"),
        ([{"currency": 978, "rate": "1", "scale": 2}], "currency_conversion[0].scale: unknown field"),
        (
            [{"currency": 978, "rate": "1.1"}, {"currency": 978, "rate": "1.2"}],
            "currency_conversion[1].currency: 978 is already converted at applications[0].risk.currency_conversion[0]",
        ),
        (
            [{"currency": 360, "rate": "0.0000000000061"}],
            "currency_conversion[0].rate: 0.0000000000061 needs more than 12 decimal places",
        ),
        (
            [{"currency": 978, "rate": "1.23456789"}],
            "currency_conversion[0].rate: 1.23456789 is 123456789/10^8 per minor unit: more than 8 digits",
        ),
        ([{"currency": c, "rate": "1"} for c in range(100, 109)], "currency_conversion: 9 entries, at most 8"),
        ({"currency": 978, "rate": "1"}, "risk.currency_conversion: expected a list"),
        (["978:1.0850"], "currency_conversion[0]: expected a mapping"),
    ],
)
def test_currency_conversion_mistakes_named(entries: object, expected: str) -> None:
    doc = visa_doc()
    doc["applications"][0]["risk"]["currency_conversion"] = entries
    probs = problems_of(doc)
    assert any(f"applications[0].risk.{expected}" in p or expected in p for p in probs), (expected, probs)
    assert all(p.startswith("applications[0].risk.currency_conversion") for p in probs), probs


@pytest.mark.parametrize(("sfi", "number", "dgi"), [(13, 1, "0D01"), (13, 2, "0D02"), (14, 1, "0E01")])
def test_records_in_place_of_internal_dgis_refused(sfi: int, number: int, dgi: str) -> None:
    doc = visa_doc()
    doc["applications"][0]["afl"].append({"sfi": sfi, "records": [{"number": number, "data": ["9F08"]}]})
    probs = problems_of(doc)
    assert any(f"record {number} cannot be personalized: its DGI {dgi} is card-internal" in p for p in probs), probs


def test_bins_optional_and_validated() -> None:
    assert load_profile(VISA).bins == ("476173",) and load_profile(MC).bins == ("541333",)
    doc = visa_doc()
    del doc["bins"]
    p = parse_profile(doc)
    assert p.bins == () and p.pan_on_bin("5413339001010166")  # without bins: any PAN
    doc["bins"] = ["476173", 54133399]  # 6-8 digits; YAML may give a number
    p = parse_profile(doc)
    assert p.bins == ("476173", "54133399")
    assert p.pan_on_bin("4761739001010101") and p.pan_on_bin("5413339901010166")
    assert not p.pan_on_bin("5413339001010166")  # 541333 9 0, not 54133399
    for bad, expected in [
        (["47617"], "bins[0]: '47617' is not a BIN of 6-8 digits"),
        (["476173", "4761730011"], "bins[1]: '4761730011' is not a BIN of 6-8 digits"),
        (["47A173"], "bins[0]: '47A173' is not a BIN"),
        ([{"bin": "476173"}], "bins[0]: expected a BIN of 6-8 digits"),
        (["476173", "476173"], "bins[1]: 476173 is listed twice"),
        ([], "bins: empty list"),
    ]:
        doc["bins"] = bad
        probs = problems_of(doc)
        assert any(expected in q for q in probs), (expected, probs)


def test_enciphered_pin_needs_icc_key() -> None:
    doc = yaml.safe_load(MC.read_text())
    app = doc["applications"][0]
    app["oda"] = "SDA"
    probs = problems_of(doc)
    assert any("offline enciphered PIN rule needs an ICC key" in p for p in probs), probs


def test_two_applications_need_distinct_aids_and_priorities() -> None:
    doc = visa_doc()
    doc["applications"].append(copy.deepcopy(doc["applications"][0]))
    probs = problems_of(doc)
    assert any(p.startswith("applications[2].aid: A0000000031010 is also applications[0]") for p in probs)
    assert any(p.startswith("applications[2].name: 'credit' is also") for p in probs)
    assert any("each needs its own priority" in p for p in probs)


def test_top_level_problems(tmp_path: Path) -> None:
    assert any(p.startswith("applications: missing") for p in problems_of({"profile": "x", "card": {}}))
    assert any("card.kmc: missing" in p for p in problems_of({"profile": "x", "card": {}}))
    assert problems_of([1, 2])[0].startswith("(top): expected a mapping")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ProfileError, match=r"\(yaml\)"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.yaml")


def test_dol_forms_are_equivalent() -> None:
    forms = ["9F0206 9F3704", "9F02:6 9F37:4", ["9F02:6", "9F37:4"], [{"9F02": 6}, {"9F37": 4}]]
    encodings = set()
    for form in forms:
        doc = visa_doc()
        doc["applications"][0]["pdol"] = form
        app = parse_profile(doc).applications[0]
        encodings.add(encode_dol(app.pdol))
    assert encodings == {bytes.fromhex("9F02069F3704")}


def test_tag_table_is_consistent() -> None:
    for tag, info in TAGS.items():
        assert info.source in ("terminal", "card", "record", "profile", "keys", "internal"), tag
        assert info.length is None or 1 <= info.length <= 20

"""Writes the bad-source corpus (records/*.csv|jsonl, profiles/*.yaml) and the
table of README.md from the lists below. Each file holds one malformed record
or one profile with one defect; ``field`` is the field it must be rejected for.
Run from anywhere: ``python vectors/bad-source/make_corpus.py``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BASE_PROFILE = HERE.parent / "profiles" / "visa-cvn18.yaml"
HEADER = "pan,psn,expiry,effective,name,pin,service_code,language,discretionary"
GOOD = {"pan": "4761739001010101", "psn": "00", "expiry": "2030-01", "effective": "2025-01",
        "name": "SMITH/JOHN", "pin": "1234", "service_code": "", "language": "", "discretionary": ""}

#: (file stem, kind, field, changes to the good record or a raw line)
RECORDS: list[tuple[str, str, str, dict[str, str] | str]] = [
    ("pan-letters", "PAN with a letter", "pan", {"pan": "47617390010101A1"}),
    ("pan-too-short", "PAN of 11 digits", "pan", {"pan": "47617390017"}),
    ("pan-too-long", "PAN of 20 digits", "pan", {"pan": "47617390010101010108"}),
    ("pan-luhn", "PAN with a wrong Luhn digit", "pan", {"pan": "4761739001010102"}),
    ("pan-missing", "PAN empty", "pan", {"pan": ""}),
    ("pan-unicode-digits", "PAN with non-ASCII digits", "pan", {"pan": "４761739001010101"}),
    ("psn-three-digits", "PSN of 3 digits", "psn", {"psn": "100"}),
    ("psn-letters", "PSN not a number", "psn", {"psn": "AB"}),
    ("expiry-month-13", "expiry month 13", "expiry", {"expiry": "2030-13"}),
    ("expiry-past", "expiry in the past", "expiry", {"expiry": "2020-01", "effective": "2019-01"}),
    ("expiry-format", "expiry not YYYY-MM", "expiry", {"expiry": "01/30"}),
    ("expiry-before-effective", "expiry not after effective", "expiry", {"expiry": "2030-01", "effective": "2030-02"}),
    ("effective-garbage", "effective date malformed", "effective", {"effective": "yesterday"}),
    ("name-lowercase", "name in lowercase", "name", {"name": "smith/john"}),
    ("name-too-long", "name of 27 characters", "name", {"name": "A" * 27}),
    ("name-one-char", "name of 1 character", "name", {"name": "A"}),
    ("name-bad-char", "name with a character outside track 1", "name", {"name": "SMITH#JOHN"}),
    ("name-missing", "name empty", "name", {"name": ""}),
    ("pin-short", "PIN of 3 digits", "pin", {"pin": "123"}),
    ("pin-long", "PIN of 13 digits", "pin", {"pin": "1234567890123"}),
    ("pin-letters", "PIN with letters", "pin", {"pin": "12AB"}),
    ("pin-missing", "PIN empty", "pin", {"pin": ""}),
    ("service-code-bad", "service code starting with 3", "service_code", {"service_code": "301"}),
    ("language-odd", "language code of 3 letters", "language", {"language": "eng"}),
    ("discretionary-letters", "discretionary data with letters", "discretionary", {"discretionary": "00A0"}),
    ("discretionary-too-long", "discretionary data longer than track 2", "discretionary",
     {"discretionary": "1" * 14}),
    ("wrong-column-count", "CSV line with a missing column", "record",
     "4761739001010101,00,2030-01,2025-01,SMITH/JOHN,1234,,"),
]
#: JSON Lines records: (stem, kind, field, line)
JSONL: list[tuple[str, str, str, str]] = [
    ("jsonl-not-object", "JSON Lines line that is a list", "record", json.dumps(["4761739001010101", "00"])),
    ("jsonl-not-json", "JSON Lines line that is not JSON", "record", '{"pan": "4761739001010101", '),
    ("jsonl-pin-number-type", "PIN given as a JSON list", "pin",
     json.dumps({**{k: v for k, v in GOOD.items() if v}, "pin": [1, 2, 3, 4]})),
    ("jsonl-unknown-field", "unknown field", "cvv",
     json.dumps({**{k: v for k, v in GOOD.items() if v}, "cvv": "123"})),
]
DUPLICATE = ("duplicate-pan-psn", "the same PAN and PSN twice (the second is rejected)", "pan+psn")


def _set(doc: dict[str, Any], path: str, value: object) -> None:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    node: Any = doc
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


_DELETE = object()
A = "applications.0."
#: (stem, kind, field path as the profile checker names it, changes: path → value)
PROFILES: list[tuple[str, str, str, dict[str, object]]] = [
    ("aid-too-short", "AID of 2 bytes", "applications[0].aid", {A + "aid": "A000"}),
    ("aid-not-hex", "AID not hex", "applications[0].aid", {A + "aid": "A00000000Z1010"}),
    ("cvn-unsupported", "unsupported cryptogram version", "applications[0].cvn", {A + "cvn": 99}),
    ("kmc-missing", "card KMC name missing", "card.kmc", {"card.kmc": _DELETE}),
    ("unknown-key", "unknown key in an application", "applications[0].colour", {A + "colour": "blue"}),
    ("pdol-bad", "PDOL entry without a length", "applications[0].pdol", {A + "pdol": "9F1A"}),
    ("cdol1-bad-tag", "CDOL1 with a non-hex tag", "applications[0].cdol1", {A + "cdol1": "9G02:6 9F03:6"}),
    ("iac-wrong-length", "IAC denial of 4 bytes", "applications[0].iac.denial", {A + "iac.denial": "00100000"}),
    ("cvm-unknown-method", "unknown CVM method", "applications[0].cvm_list.rules[0].method",
     {A + "cvm_list.rules.0.method": "retina_scan"}),
    ("currency-text", "currency not a number", "applications[0].currency", {A + "currency": "dollars"}),
    ("pin-try-limit-zero", "PIN try limit 0", "applications[0].pin_try_limit", {A + "pin_try_limit": 0}),
    ("imk-ac-missing", "IMK-AC key name missing", "applications[0].keys.imk_ac", {A + "keys.imk_ac": _DELETE}),
    ("oda-unknown", "unknown ODA method", "applications[0].oda", {A + "oda": ["SDA", "XDA"]}),
    ("afl-sfi-zero", "AFL with SFI 0", "applications[0].afl[0].sfi", {A + "afl.0.sfi": 0}),
    ("icc-key-size", "ICC key size not a multiple of 8", "applications[0].icc_key.size", {A + "icc_key.size": 1001}),
    ("country-too-big", "country code of 5 digits", "applications[0].country", {A + "country": 12345}),
    ("label-too-long", "application label of 20 characters", "applications[0].label", {A + "label": "X" * 20}),
    ("service-code-bad", "service code of 2 digits", "applications[0].service_code", {A + "service_code": "20"}),
]


def _csv_line(rec: dict[str, str]) -> str:
    return ",".join(rec[k] for k in HEADER.split(","))


def main() -> None:
    (HERE / "records").mkdir(exist_ok=True)
    (HERE / "profiles").mkdir(exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    for stem, kind, field, change in RECORDS:
        line = change if isinstance(change, str) else _csv_line({**GOOD, **change})
        (HERE / "records" / f"{stem}.csv").write_text(f"{HEADER}\n{line}\n")
        rows.append((f"records/{stem}.csv", kind, field))
    for stem, kind, field, line in JSONL:
        (HERE / "records" / f"{stem}.jsonl").write_text(line + "\n")
        rows.append((f"records/{stem}.jsonl", kind, field))
    stem, kind, field = DUPLICATE
    good = _csv_line(GOOD)
    (HERE / "records" / f"{stem}.csv").write_text(f"{HEADER}\n{good}\n{good}\n")
    rows.append((f"records/{stem}.csv", kind, field))
    base = yaml.safe_load(BASE_PROFILE.read_text())
    for stem, kind, field, changes in PROFILES:
        doc = copy.deepcopy(base)
        for path, value in changes.items():
            _set(doc, path, value)
        text = f"# BAD-SOURCE CORPUS: {kind} (rejected for {field}); from profiles/visa-cvn18.yaml\n"
        (HERE / "profiles" / f"{stem}.yaml").write_text(text + yaml.safe_dump(doc, sort_keys=False))
        rows.append((f"profiles/{stem}.yaml", kind, field))
    table = "\n".join(f"| `{f}` | {k} | `{fld}` |" for f, k, fld in rows)
    readme = (HERE / "README.md").read_text() if (HERE / "README.md").exists() else ""
    head = readme.split("<!-- corpus -->")[0] if "<!-- corpus -->" in readme else README_HEAD
    (HERE / "README.md").write_text(head + "<!-- corpus -->\n| file | kind | field |\n|---|---|---|\n" + table + "\n")


README_HEAD = """# Bad source data corpus (TEST ONLY)

Malformed cardholder records and issuer profiles, one defect per file, used by
`robustness/bad_source.py` and `tests/robustness/test_bad_source.py`. Each must be
rejected with a message naming the field below, and nothing may reach a card:
data preparation produces no card data for it, and the perso engine
personalizes no card from a batch made of them.

Records files are read with the good profile `vectors/profiles/visa-cvn18.yaml`
(today = 2026-01-15); profile files are read with the good records file
`vectors/records/sample.csv`. A record's field is the `field` of its rejection
(the first failing field); a profile's is the path named by the profile checker.
Regenerate with `python vectors/bad-source/make_corpus.py` (this table too).

"""

if __name__ == "__main__":
    main()

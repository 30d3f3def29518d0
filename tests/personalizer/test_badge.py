"""The access-control badge: a non-EMV card personalized by a perso script
(vectors/scripts/badge.yaml) and read back with plain ISO 7816-4 commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cardlab.cardspec.scp03 import unpad80
from cardlab.emulator import Card
from cardlab.personalizer.badge import KEY_DGI, BadgeLayout, BadgeRecordError, prepare_badges, validate
from cardlab.personalizer.batch import Sealed
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.script import StepFailed, check, execute, load_script, render

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
SCRIPT = VECTORS / "scripts" / "badge.yaml"
DF_NAME = bytes.fromhex("F0000000994241444745")


@pytest.fixture(scope="module")
def ks() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(VECTORS / "test-keystore.json")


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((VECTORS / "profiles" / "badge.yaml").read_text())
    return doc


def stock(ks: SoftwareKeyStore, n: int) -> Card:
    kdd = bytes.fromhex("AABBCCDDEE") + n.to_bytes(5, "big")
    k = ks.diversify_card_keys("KMC", "KDF3", kdd)
    card = Card.create(keys=(k.enc, k.mac, k.dek), kdd=kdd)
    card.power_on()
    return card


def ok(card: Card, apdu: str) -> bytes:
    resp = card.transmit(bytes.fromhex(apdu.replace(" ", "")))
    assert resp[-2:] == b"\x90\x00", f"{apdu}: {resp[-2:].hex()}"
    return resp[:-2]


def test_badges_personalize_and_read_back(ks: SoftwareKeyStore, profile: dict[str, Any]) -> None:
    script = load_script(SCRIPT)
    cards = list(prepare_badges(profile, VECTORS / "records" / "badge.csv", ks))
    assert [c.card_id for c in cards] == ["10000001", "10000002", "10000003"]
    for n, data in enumerate(cards):
        card = stock(ks, n)
        result = execute(script, data, card.transmit, ks, profile=profile)
        assert result.steps >= 12
        card.power_on()  # a reader at the door: fresh session, plain ISO commands only
        ok(card, "00A4040C 0A" + DF_NAME.hex())
        name = ok(card, "00B08100 00")  # READ BINARY, SFI 1
        assert name.rstrip(b"\x00").decode() == data.fields["name"]
        dept = ok(card, "00B08200 00")
        assert dept.rstrip(b"\x00").decode() == data.fields["department"]
        premises = data.fields["premises"].split(";")
        for i, place in enumerate(premises, start=1):
            rec = ok(card, f"00B2{i:02X}1C 00")  # READ RECORD i, SFI 3
            assert rec.rstrip(b"\x00").decode() == place
        assert card.transmit(bytes.fromhex(f"00B2{len(premises) + 1:02X}1C00"))[-2:] == b"\x6a\x83"
        # the door key: never readable, not writable without the secure channel
        assert card.transmit(bytes.fromhex("00B0840000"))[-2:] == b"\x69\x82"
        assert card.transmit(bytes.fromhex("00D6840001FF"))[-2:] == b"\x69\x82"
        assert card.transmit(bytes.fromhex("00DC011C10" + "00" * 16))[-2:] == b"\x69\x82"
        # the key the card holds is the sealed one (checked inside the file system)
        sealed = dict(data.apps[0].dgis)[KEY_DGI]
        assert isinstance(sealed, Sealed)
        key_ef = next(node for node in card.fs.root.walk() if node.spec.fid == 0x4204)
        assert bytes(key_ef.data) == unpad80(ks.decrypt(sealed.kek, sealed.ciphertext))  # type: ignore[attr-defined]


def test_badge_render_hides_the_key(ks: SoftwareKeyStore, profile: dict[str, Any]) -> None:
    data = next(prepare_badges(profile, VECTORS / "records" / "badge.csv", ks))
    sealed = dict(data.apps[0].dgis)[KEY_DGI]
    assert isinstance(sealed, Sealed)
    key = unpad80(ks.decrypt(sealed.kek, sealed.ciphertext)).hex().upper()
    out = "\n".join(render(load_script(SCRIPT), data, profile=profile))
    assert key not in out and "<sealed:DF01>" in out
    assert "Ada Lovelace".encode().hex().upper() in out.replace(" ", "")
    assert out.count("00DC") == 3 and out.count("00E20000") == 3  # one record per premise
    assert check(load_script(SCRIPT), profile) == []


def test_badge_on_a_card_without_the_kmc_keys_stops_at_the_channel(ks: SoftwareKeyStore,
                                                                   profile: dict[str, Any]) -> None:  # fmt: skip
    data = next(prepare_badges(profile, VECTORS / "records" / "badge.csv", ks))
    card = Card.create()  # default keys, not diversified from the KMC
    with pytest.raises(StepFailed) as info:
        execute(load_script(SCRIPT), data, card.transmit, ks, profile=profile)
    assert info.value.step_name == "open secure channel"


def test_second_run_fails_on_existing_files(ks: SoftwareKeyStore, profile: dict[str, Any]) -> None:
    data = next(prepare_badges(profile, VECTORS / "records" / "badge.csv", ks))
    card = stock(ks, 9)
    execute(load_script(SCRIPT), data, card.transmit, ks, profile=profile)
    with pytest.raises(StepFailed) as info:
        execute(load_script(SCRIPT), data, card.transmit, ks, profile=profile)
    assert info.value.step_name == "create badge DF" and info.value.sw is not None and info.value.sw >> 8 == 0x6A


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"badge_number": "12", "name": "A", "department": "B", "premises": "X"}, "badge_number"),
        ({"badge_number": "12345678", "name": "", "department": "B", "premises": "X"}, "name"),
        ({"badge_number": "12345678", "name": "A" * 40, "department": "B", "premises": "X"}, "name"),
        ({"badge_number": "12345678", "name": "A<script>", "department": "B", "premises": "X"}, "name"),
        ({"badge_number": "12345678", "name": "A", "department": "B", "premises": ";".join("P" * 9)}, "premises"),
        ({"badge_number": "12345678", "name": "A", "department": "B", "premises": "A very long premise name"},
         "premises"),
    ],
)
def test_bad_records_are_rejected_by_field(row: dict[str, str], field: str) -> None:
    with pytest.raises(BadgeRecordError) as info:
        validate(row, 7, BadgeLayout())
    assert info.value.field == field and str(info.value).startswith(f"record 7: {field}")


def test_rejected_records_do_not_stop_the_rest(tmp_path: Path, profile: dict[str, Any]) -> None:
    path = tmp_path / "r.csv"
    path.write_text("badge_number,name,department,premises\n1,A,B,C\n12345678,Eve,Sales,Hall\n")
    errors: list[BadgeRecordError] = []
    cards = list(prepare_badges(profile, path, None, errors=errors))
    assert [c.card_id for c in cards] == ["12345678"] and [e.line for e in errors] == [1]
    assert cards[0].apps == ()  # no key store: nothing sealed, enough to render

"""The dual-interface card (issue 16): the sample profiles' first applications on the
contactless interface — kernel 3 qVSDC with fDDA v01 (EMV Contactless Book C-3), kernel 2 EMV
mode (Book C-2) — and one ATC / one set of counters shared with the contact interface.

Cryptograms are checked with pyemv under the key store's IMK; the fDDA signature is recovered
with the ICC public key (the card's modulus, exponent 9F47 from its records) and its hash
recomputed over the data Book C-3 names for fDDA.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyemv
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlab.cardspec import atr as atrspec
from cardlab.cardspec import tlv
from cardlab.emulator import Card
from cardlab.emulator import contactless as cl
from cardlab.personalizer.keys import SoftwareKeyStore
from cardlab.personalizer.profile import ProfileError, parse_profile

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "vectors"
VISA = VECTORS / "profiles" / "visa-cvn18.yaml"
MC = VECTORS / "profiles" / "mastercard-cvn16.yaml"
KEYS = VECTORS / "test-keystore.json"
VISA_RECORD = {"pan": "4761739001010119", "psn": "01", "expiry": "2035-12", "name": "DOE/JANE", "pin": "1234"}
MC_RECORD = {"pan": "5413330089010012", "psn": "01", "expiry": "2035-12", "name": "DOE/JOHN", "pin": "1234"}
VISA_AID = bytes.fromhex("A0000000031010")
MC_AID = bytes.fromhex("A0000000041010")
AC_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
#: TTQ 9F66 (Book C-3 data dictionary): qVSDC + contact chip + online PIN + signature, online capable
TTQ_ONLINE_CAPABLE = bytes.fromhex("36000000")
TTQ_ONLINE_REQUIRED = bytes.fromhex("37800000")  # + ODA for online, online cryptogram required
TTQ_OFFLINE_ONLY = bytes.fromhex("3E000000")


def _luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return body + str((10 - total % 10) % 10)


MC_RECORD["pan"] = _luhn(MC_RECORD["pan"][:-1])


def send(card: Card, command: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(command.replace(" ", "")) if isinstance(command, str) else command
    r = card.transmit(raw)
    return r[:-2], int.from_bytes(r[-2:], "big")


def select(card: Card, aid: bytes) -> bytes:
    data, sw = send(card, b"\x00\xa4\x04\x00" + bytes([len(aid)]) + aid + b"\x00")
    assert sw == 0x9000, hex(sw)
    return data


def gpo(card: Card, pdol_data: bytes) -> tuple[bytes, int]:
    body = tlv.encode(0x83, pdol_data)
    return send(card, b"\x80\xa8\x00\x00" + bytes([len(body)]) + body + b"\x00")


def visa_pdol_data(ttq: bytes, amount: int, un: bytes) -> tuple[bytes, dict[int, bytes]]:
    """Data for the Visa sample's contactless PDOL 9F66 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37."""
    values = {0x9F66: ttq, 0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0840"),
              0x95: bytes(5), 0x5F2A: bytes.fromhex("0840"), 0x9A: bytes.fromhex("261205"), 0x9C: b"\x00",
              0x9F37: un}  # fmt: skip
    order = (0x9F66, 0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
    return b"".join(values[t] for t in order), values


def answer(data: bytes) -> dict[int, bytes]:
    (tpl,) = tlv.parse(data)
    assert tpl.tag == 0x77
    return {t.tag: t.value for t in tlv.parse(tpl.value)}


@pytest.fixture(scope="module")
def keystore() -> SoftwareKeyStore:
    return SoftwareKeyStore.load(KEYS)


@pytest.fixture
def visa(personalized_card: Any) -> Card:
    card = personalized_card(VISA, VISA_RECORD, KEYS).card
    assert card is not None
    return card


def oracle(keystore: SoftwareKeyStore, record: dict[str, str], cvn: int) -> Any:
    prefix = "TEST-VISA-CREDIT" if cvn == 0x12 else "TEST-MC"
    imk = [keystore.clear_value(f"{prefix}-IMK-{k}") for k in ("AC", "SMI", "SMC")]
    klass = pyemv.cvn.VisaCVN18 if cvn == 0x12 else pyemv.cvn.MasterCardCVN16
    return klass(*imk, record["pan"], record["psn"])


Answer = tuple[dict[int, bytes], dict[int, bytes], int]


def qvsdc(card: Card, ttq: bytes, amount: int = 1000, un: bytes = b"\x12\x34\x56\x78") -> Answer:
    card.interface = "contactless"
    card.power_on()
    select(card, VISA_AID)
    data, values = visa_pdol_data(ttq, amount, un)
    resp, sw = gpo(card, data)
    return (answer(resp) if sw == 0x9000 else {}), values, sw


def contact_transaction(card: Card, amount: int = 1000) -> dict[int, bytes]:
    """Contact: SELECT, GPO (PDOL 9F1A), first GENERATE AC asking for a TC."""
    card.interface = "contact"
    card.power_on()
    select(card, VISA_AID)
    resp, sw = gpo(card, bytes.fromhex("0840"))
    assert sw == 0x9000
    cdol1 = bytes.fromhex(f"{amount:012d}") + bytes(6) + bytes.fromhex("0840") + bytes(5) + bytes.fromhex(
        "0840 261205 00 CAFEBABE".replace(" ", ""))
    data, sw = send(card, b"\x80\xae\x40\x00" + bytes([len(cdol1)]) + cdol1 + b"\x00")
    assert sw == 0x9000, hex(sw)
    return answer(data)


# -- the qVSDC path (Book C-3) --------------------------------------------------------------------


def test_ppse_and_select_on_the_contactless_interface(visa: Card) -> None:
    visa.interface = "contactless"
    assert visa.power_on() == cl.atr(visa.state)
    ppse, sw = send(visa, "00A404000E325041592E5359532E444446303100")
    assert sw == 0x9000
    entries = tlv.find(ppse, 0xBF0C)
    assert entries is not None
    (entry,) = [e for e in tlv.parse(entries.value) if e.tag == 0x61]
    fields = {t.tag: t.value for t in tlv.parse(entry.value)}
    assert fields[0x4F] == VISA_AID and fields[0x9F2A] == b"\x03"
    assert tlv.find(select(visa, VISA_AID), 0x9F38).value.startswith(bytes.fromhex("9F6604"))  # type: ignore[union-attr]
    # the debit application has no contactless section: not on the air
    assert b"\xA0\x00\x00\x00\x03\x20\x10" not in ppse
    assert send(visa, "00A4040007A000000003201000")[1] == 0x6A82


def test_qvsdc_cryptogram_agrees_with_pyemv(visa: Card, keystore: SoftwareKeyStore) -> None:
    r, values, sw = qvsdc(visa, TTQ_ONLINE_REQUIRED)
    assert sw == 0x9000
    assert r[0x9F27] == b"\x80"  # online cryptogram required: ARQC
    assert set(r) >= {0x82, 0x94, 0x9F36, 0x9F26, 0x9F10, 0x9F27, 0x9F6C, 0x57, 0x5F34, 0x9F69, 0x9F4B}
    assert r[0x9F6C] == bytes.fromhex("2000") and r[0x9F10][2] == 0x12
    args = {f"tag_{t:x}": values[t] for t in AC_TAGS}
    expected = oracle(keystore, VISA_RECORD, 0x12).generate_ac(**args, tag_82=r[0x82], tag_9f36=r[0x9F36],
                                                               tag_9f10=r[0x9F10])  # fmt: skip
    assert r[0x9F26] == bytes(expected)
    # the transaction is over: no GENERATE AC after a qVSDC GPO
    assert send(visa, "80AE80001D" + "00" * 29 + "00")[1] == 0x6985


def test_fdda_signature_recovers_and_hashes(visa: Card) -> None:
    r, values, _ = qvsdc(visa, TTQ_ONLINE_CAPABLE)
    assert r[0x9F27] == b"\x40"  # within the offline limits: TC, with fDDA
    app = visa.applets[VISA_AID]
    key = app.data.icc_key  # type: ignore[attr-defined]
    exponent = int.from_bytes(tlv.find(app.data.records[(3, 4)], 0x9F47).value, "big")  # type: ignore[attr-defined,union-attr]
    n = key.modulus
    recovered = pow(int.from_bytes(r[0x9F4B], "big"), exponent, n).to_bytes(len(r[0x9F4B]), "big")
    cad = r[0x9F69]
    assert cad[0] == 0x01 and len(cad) == 7 and cad[5:] == r[0x9F6C]  # version 01 ‖ card UN ‖ CTQ
    assert recovered[:3] == b"\x6A\x05\x01" and recovered[-1] == 0xBC
    ldd = recovered[3]
    assert recovered[4 : 4 + ldd] == b"\x02" + r[0x9F36]  # ICC dynamic number = ATC
    terminal = values[0x9F37] + values[0x9F02] + values[0x5F2A] + cad
    assert recovered[-21:-1] == hashlib.sha1(recovered[1:-21] + terminal).digest()


def test_ttq_decisions(visa: Card) -> None:
    assert qvsdc(visa, TTQ_OFFLINE_ONLY)[0][0x9F27] == b"\x40"
    # no qVSDC bit (or no TTQ at all): 6985, "select next" (Book C-3), and the ATC does not move
    atc = visa.applets[VISA_AID].data.atc  # type: ignore[attr-defined]
    assert qvsdc(visa, bytes(4))[2] == 0x6985
    assert visa.applets[VISA_AID].data.atc == atc  # type: ignore[attr-defined]
    # CVM required, online PIN required by the CTQ, reader supports online PIN: ARQC
    app = visa.applets[VISA_AID]
    app.data.ctq = bytes.fromhex("8000")  # type: ignore[attr-defined]
    assert qvsdc(visa, bytes.fromhex("36400000"))[0][0x9F27] == b"\x80"
    # … on an offline-only reader without signature: declined
    assert qvsdc(visa, bytes.fromhex("2C400000"))[0][0x9F27][0] & 0xC0 == 0x00


def test_offline_only_reader_declines_past_the_upper_limit(visa: Card) -> None:
    """The Visa sample: UCOL 10; offline approvals count on both interfaces."""
    kinds = [qvsdc(visa, TTQ_OFFLINE_ONLY)[0][0x9F27][0] & 0xC0 for _ in range(11)]
    assert kinds == [0x40] * 10 + [0x00]
    assert visa.applets[VISA_AID].data.consecutive_offline == 10  # type: ignore[attr-defined]


# -- one card, two interfaces, one set of counters (issue 16) -------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["contact", "qvsdc-online", "qvsdc-offline"]),
                                st.integers(1, 3000)), min_size=1, max_size=12))  # fmt: skip
def test_interleaved_interfaces_share_one_atc(visa: Card, steps: list[tuple[str, int]]) -> None:
    app = visa.applets[VISA_AID]
    data = app.data  # type: ignore[attr-defined]
    data.atc, data.consecutive_offline, data.cumulative_offline = 0, 0, 0
    seen: list[int] = []
    offline = 0
    for kind, amount in steps:
        if kind == "contact":
            r = contact_transaction(visa, amount)
        else:
            r, _, sw = qvsdc(visa, TTQ_ONLINE_CAPABLE if kind == "qvsdc-online" else TTQ_OFFLINE_ONLY, amount)
            assert sw == 0x9000
        atc = int.from_bytes(r[0x9F36], "big")
        seen.append(atc)
        if r[0x9F27][0] & 0xC0 == 0x40:
            offline += 1
        # the counters the card reports agree with what the transactions did, on either interface
        assert data.consecutive_offline == offline
        visa.interface = "contact"
        assert send(visa, "80CA9F3600")[0] == tlv.encode(0x9F36, r[0x9F36])
    assert seen == list(range(1, len(steps) + 1))  # one ATC, never repeating, +1 per transaction
    # the image keeps the one ATC: a reload on the other interface continues it
    visa.sync_state()
    reloaded = Card(visa.state, interface="contactless")
    r, _, _ = qvsdc(reloaded, TTQ_ONLINE_CAPABLE)
    assert int.from_bytes(r[0x9F36], "big") == len(steps) + 1


# -- kernel 2 (Book C-2, EMV mode) ------------------------------------------------------------------


def test_kernel2_emv_mode_gpo_and_cda(personalized_card: Any, keystore: SoftwareKeyStore) -> None:
    card = personalized_card(MC, MC_RECORD, KEYS).card
    card.interface = "contactless"
    card.power_on()
    fci = select(card, MC_AID)
    pdol = tlv.find(fci, 0x9F38)
    assert pdol is not None and pdol.value == bytes.fromhex("9F02069F1A025F2A029F3704")
    pdol_data = bytes.fromhex("000000001000 0276 0978 01020304".replace(" ", ""))
    resp, sw = gpo(card, pdol_data)
    assert sw == 0x9000
    r = answer(resp)
    assert r[0x82] == bytes.fromhex("1D80") and r[0x94] == card.applets[MC_AID].data.afl  # type: ignore[attr-defined]
    cdol1 = (bytes.fromhex("000000001000") + bytes(6) + bytes.fromhex("0276") + bytes(5) + bytes.fromhex("0978")
             + bytes.fromhex("261205") + b"\x00" + bytes.fromhex("CAFEBABE") + b"\x22" + bytes(2) + bytes(8)
             + bytes.fromhex("1F0302"))  # fmt: skip
    data, sw = send(card, b"\x80\xae\x90\x00" + bytes([len(cdol1)]) + cdol1 + b"\x00")
    assert sw == 0x9000
    g = answer(data)
    assert g[0x9F27][0] & 0xC0 == 0x80 and 0x9F4B in g  # ARQC with CDA
    assert int.from_bytes(g[0x9F36], "big") == card.applets[MC_AID].data.atc  # type: ignore[attr-defined]


# -- the profile section ---------------------------------------------------------------------------


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


@pytest.mark.parametrize(
    ("path", "change", "message"),
    [
        (VISA, {"kernel": 4}, "applications[0].contactless.kernel: 4 is out of range 2..3"),
        (VISA, {"pdol": "9F02:6 9F37:4"}, "applications[0].contactless.pdol: lacks 9F66"),
        (VISA, {"ctq": "20"}, "applications[0].contactless.ctq: 1 bytes, expected 2"),
        (VISA, {"third_party_data": "0102030405"}, "applications[0].contactless.third_party_data: kernel 2 only"),
        (VISA, {"afl": [[1, 1, 2, 0]]}, "applications[0].contactless.afl[0]: SFI 1 record 2 is not in the afl layout"),
        (VISA, {"afl": [[1, 1]]}, "applications[0].contactless.afl[0]: [1, 1] is not [SFI, first, last, #ODA]"),
        (VISA, {"afl": [[2, 1, 2, 2]]}, "applications[0].contactless.afl: no record read on the contactless "
                                        "interface holds 57"),
        (VISA, {"colour": "red"}, "applications[0].contactless.colour: unknown field"),
        (MC, {"fdda": True}, "applications[0].contactless.fdda: kernel 3 only"),
        (MC, {"pdol": "9F02:6 8C:2"}, "applications[0].contactless.pdol[1]: tag 8C"),
    ],
)
def test_profile_errors_name_the_field(path: Path, change: dict[str, Any], message: str) -> None:
    doc = _doc(path)
    doc["applications"][0]["contactless"].update(change)
    with pytest.raises(ProfileError) as exc:
        parse_profile(doc, path.name)
    assert any(p.startswith(message) for p in exc.value.problems), exc.value.problems


def test_kernel2_needs_the_emv_mode_bit_and_fdda_needs_dda() -> None:
    doc = _doc(MC)
    doc["applications"][0]["aip"] = "1D00"
    with pytest.raises(ProfileError) as exc:
        parse_profile(doc, "mc")
    assert any("contactless.kernel: 2, but the AIP lacks byte 2 b8" in p for p in exc.value.problems)
    doc = _doc(VISA)
    doc["applications"][0]["oda"] = ["SDA"]
    with pytest.raises(ProfileError) as exc:
        parse_profile(doc, "visa")
    assert any(p.startswith("applications[0].contactless.fdda:") for p in exc.value.problems)


# -- the reader's view (PC/SC Part 3) ----------------------------------------------------------------


def test_contactless_atr_and_uid_pseudo_apdu() -> None:
    card = Card.create()
    atr = cl.atr(card.state)
    assert atr[:4] == bytes.fromhex("3B868001") and atr[4:-1] == atrspec.parse(card.state.atr).historical
    tck = 0
    for b in atr[1:]:
        tck ^= b
    assert tck == 0  # TCK makes the XOR of T0..TCK zero (ISO/IEC 7816-3 §8.2.5)
    uid = cl.uid(card.state)
    assert cl.reader_command(card.state, bytes.fromhex("FFCA000000")) == uid + b"\x90\x00"
    assert cl.reader_command(card.state, bytes.fromhex("FFCA000002")) == bytes((0x6C, len(uid)))
    assert cl.reader_command(card.state, bytes.fromhex("FFCA020000")) == bytes.fromhex("6A81")
    assert cl.reader_command(card.state, bytes.fromhex("00A4040000")) is None
    other = Card.create(kdd=bytes(range(10)))
    assert cl.uid(other.state) != uid and len(uid) == 7


def test_card_show_names_the_interfaces(visa: Card, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main

    image = tmp_path / "visa.json"
    visa.save(image)
    assert main(["card", "show", str(image)]) == 0
    out = capsys.readouterr().out
    assert "contact + contactless (kernel 3, qVSDC, fDDA v01, CTQ 2000)" in out
    assert cl.uid(visa.state).hex().upper() in out and cl.atr(visa.state).hex().upper() in out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ttq=st.binary(min_size=4, max_size=4), amount=st.integers(0, 10**12 - 1), un=st.binary(min_size=4, max_size=4))
def test_any_ttq_ends_in_a_valid_answer(visa: Card, ttq: bytes, amount: int, un: bytes) -> None:
    """Whatever TTQ a reader sends: 9000 with a cryptogram (the ATC moved by one) or 6985
    without qVSDC support (the ATC did not move); never an internal error."""
    data = visa.applets[VISA_AID].data  # type: ignore[attr-defined]
    before = data.atc
    r, _, sw = qvsdc(visa, ttq, amount, un)
    if ttq[0] & 0x20:
        assert sw == 0x9000 and int.from_bytes(r[0x9F36], "big") == data.atc == before + 1
        assert r[0x9F27][0] & 0xC0 in (0x00, 0x40, 0x80)
        assert (0x9F4B in r) == (r[0x9F27][0] & 0xC0 == 0x40 or (r[0x9F27][0] & 0xC0 == 0x80 and bool(ttq[0] & 1)))
    else:
        assert sw == 0x6985 and data.atc == before

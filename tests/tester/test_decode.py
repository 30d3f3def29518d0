"""The decoders (cardlab.tester.decode): known answers from the EMV books'
tables, every data element the test kit's cards hold, hypothesis round
trips for the bit-mapped objects, and the ``cardlab test decode`` command."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernelkit import P, card_for, transact

from cardlab.tester import dictionary, tlv
from cardlab.tester.decode import afl, apdu, bits, cvm, dol, iad, sw, tlvtree
from cardlab.tester.decode.elements import BY_TAG, Context, explain, script_results
from cardlab.tester.state import TSI_BITS, TVR_BITS

PAN = "4761739001010010"
ALL_TABLES = [*bits.TABLES.values(), iad.VISA_CVR, iad.MCHIP_CVR]


# -- known answers: each bit where the books' tables put it -------------------------------------


@pytest.mark.parametrize(("table", "hex_value", "names"), [
    # EMV 4.4 Book 3 Annex C5 (TVR): byte 4 bit 8 "transaction exceeds floor limit"
    (bits.TVR, "0000008000", {"transaction exceeds floor limit"}),
    # Annex C5: byte 1 bit 8 "offline data authentication was not performed", byte 5 bit 7 "issuer authentication failed"
    (bits.TVR, "8000000040", {"offline data authentication was not performed", "issuer authentication failed"}),
    # Annex C5: byte 3 bit 3 "online PIN entered"; byte 2 bit 4 "new card"
    (bits.TVR, "0008040000", {"new card", "online PIN entered"}),
    # Annex C6 (TSI): byte 1 bits 8, 7, 6, 4
    (bits.TSI, "E800", {"offline data authentication was performed", "cardholder verification was performed",
                        "card risk management was performed", "terminal risk management was performed"}),
    # Annex C1 (AIP) 1D00: bit 5 CV, bit 4 TRM, bit 3 issuer authentication, bit 1 CDA
    (bits.AIP, "1D00", {"cardholder verification is supported", "terminal risk management is to be performed",
                        "issuer authentication is supported", "CDA supported"}),
    (bits.AIP, "5C00", {"SDA supported", "cardholder verification is supported",
                        "terminal risk management is to be performed", "issuer authentication is supported"}),
    # Annex C2 (AUC) byte 2: bit 8 domestic cashback, bit 7 international cashback
    (bits.AUC, "03C0", {"valid at ATMs", "valid at terminals other than ATMs", "domestic cashback allowed",
                        "international cashback allowed"}),
    # Book 4 Annex A2: E0F8C8, a terminal with every card input, every CVM, SDA/DDA/CDA
    (bits.TERMINAL_CAPABILITIES, "6008C8", {"magnetic stripe", "IC with contacts", "no CVM required",
                                            "SDA", "DDA", "CDA"}),
])
def test_bit_tables_known_answers(table: bits.BitTable, hex_value: str, names: set[str]) -> None:
    value = bytes.fromhex(hex_value)
    assert bits.set_names(table, value) == names
    assert bits.encode(table, names) == value


def test_cid_cryptogram_types() -> None:
    """Book 3 §6.5.5.4 Table 15: b8-7 00 AAC, 01 TC, 10 ARQC; 0B = advice required, PIN try limit exceeded."""
    kinds = {fv.field.name: fv for fv in bits.decode(bits.CID, b"\x80")}
    assert kinds["cryptogram type"].meaning == "cryptogram type: ARQC"
    assert bits.decode(bits.CID, b"\x40")[0].meaning == "cryptogram type: TC"
    fields = {fv.field.name: fv.meaning for fv in bits.decode(bits.CID, b"\x0A")}
    assert fields["reason/advice code"] == "reason/advice code: PIN try limit exceeded"
    assert "advice required" in bits.set_names(bits.CID, b"\x0A")


def test_state_uses_the_same_tables() -> None:
    assert TVR_BITS == bits.TVR.flags() and TSI_BITS == bits.TSI.flags()


def test_rfu_bits_are_reported() -> None:
    assert bits.rfu_set(bits.TVR, bytes.fromhex("0100000000")) == [(1, 1)]
    assert any("RFU" in line for line in bits.lines(bits.TVR, bytes.fromhex("0100000000")))


def test_cvm_list_with_amounts() -> None:
    """Book 3 Annex C3: 42 = enciphered PIN online (b7: next rule if it fails), 03 = if terminal supports;
    1E signature, 1F no CVM, condition 00 always; X and Y in the application currency."""
    lines = cvm.lines(bytes.fromhex("000000000000000042031E031F00"))
    assert lines[2].startswith("rule 1: 4203 enciphered PIN verified online, if terminal supports the CVM; "
                               "if it fails, next rule")
    assert lines[4].startswith("rule 3: 1F00 no CVM required, always")
    with_x = cvm.lines(bytes.fromhex("000027100000C35001060208"), currency=978, exponent=2)
    assert with_x[0] == "X = 100.00 EUR (10000 minor units)" and with_x[1] == "Y = 500.00 EUR (50000 minor units)"
    assert "[X = 100.00 EUR]" in with_x[2] and "[Y = 500.00 EUR]" in with_x[3]
    assert cvm.results_lines(bytes.fromhex("410302"))[2] == "result: 02 successful"
    with pytest.raises(cvm.CvmError):
        cvm.parse(bytes.fromhex("0000"))


def test_afl_entries() -> None:
    """Book 3 §10.2: SFI in bits 8-4, first, last record, number of ODA records."""
    entries = afl.parse(bytes.fromhex("080101001001020218010200"))
    assert [(e.sfi, e.first, e.last, e.oda) for e in entries] == [(1, 1, 1, 0), (2, 1, 2, 2), (3, 1, 2, 0)]
    assert afl.build(entries).hex().upper() == "080101001001020218010200"
    for bad in ("0801", "07010100", "08020100", "08010103"):
        with pytest.raises(afl.AflError):
            afl.parse(bytes.fromhex(bad))


def test_dol_with_data() -> None:
    """Book 3 §5.4: the CDOL1 of the test cards and the data the terminal filled, split in order."""
    entries = dol.parse(bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704"))
    assert [(f"{e.tag:X}", e.length) for e in entries] == [("9F02", 6), ("9F03", 6), ("9F1A", 2), ("95", 5),
                                                          ("5F2A", 2), ("9A", 3), ("9C", 1), ("9F37", 4)]
    data = bytes.fromhex("00000000150000000000000002500200000000097825060100A3B1799D")
    values = dol.split(entries, data)
    assert values[3].hex() == "0200000000" and values[-1].hex().upper() == "A3B1799D"
    assert dol.build(entries) == bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")
    with pytest.raises(dol.DolError):
        dol.split(entries, data[:-1])


def test_status_words() -> None:
    """ISO 7816-4 §5.6; EMV Book 1 §12 and Book 3 §6.5 for the per-command meanings."""
    assert sw.meaning(0x9000) == "normal processing"
    assert sw.meaning(0x6A82, 0xA4).startswith("application or PSE not found")
    assert sw.meaning(0x6283, 0xA4).startswith("application blocked")
    assert sw.meaning(0x6A83, 0xB2).startswith("record not found")
    assert sw.meaning(0x63C1, 0x20) == "wrong PIN, 1 try left (Book 3 §6.5.12)"
    assert sw.meaning(0x6110).startswith("16 more bytes") and sw.meaning(0x6C08).startswith("wrong Le")
    assert sw.category(0x6283) == "warning" and sw.category(0x6985) == "error"


def test_iad_per_cvn() -> None:
    """Visa CVN 18 (VIS 1.5 Appendix A CVR) and Mastercard CVN 16 (M/Chip 4 CVR), as the card builds them."""
    visa = iad.parse(bytes.fromhex("06011203941000"))
    assert (visa.scheme, visa.cvn, visa.dki, visa.cvr.hex()) == ("Visa", 0x12, 1, "03941000")
    names = bits.set_names(iad.VISA_CVR, visa.cvr)
    assert names == {"offline PIN verification performed", "new card"}
    fields = {fv.field.name: fv.meaning for fv in bits.decode(iad.VISA_CVR, visa.cvr)}
    assert fields["AC returned in the first GENERATE AC"].endswith(": TC")
    assert fields["AC returned in the second GENERATE AC"].endswith("second GENERATE AC not requested")
    mc = iad.parse(bytes.fromhex("0110A00003240000000000000000000000FF"))
    assert (mc.scheme, mc.cvn, mc.cvr.hex().upper()) == ("Mastercard", 0x10, "A00003240000")
    assert bits.set_names(iad.MCHIP_CVR, mc.cvr) == {"offline PIN verification not performed",
                                                     "international transaction"}
    assert "Visa CVN 10" in iad.lines(bytes.fromhex("06010A03A00000"))[0]


def test_script_results() -> None:
    """Book 4 Annex A5: result nibble 2 = successful, 1 = failed (low nibble: the failing command)."""
    res = script_results(bytes.fromhex("200000000012AABBCCDD"))
    assert res[0]["result"] == "script processing successful"
    assert res[1] == {"result": "script processing failed", "failing_command": 2, "script_identifier": "AABBCCDD"}


# -- hypothesis round trips ----------------------------------------------------------------------


@given(st.data())
def test_bit_tables_round_trip(data: st.DataObject) -> None:
    """Encode a set of named flags (and values of the wider fields), decode, get the same back."""
    table = data.draw(st.sampled_from(ALL_TABLES))
    flags = [f.name for f in table.fields if f.flag]
    chosen = data.draw(st.sets(st.sampled_from(flags))) if flags else set()
    wide = {f.name: data.draw(st.integers(0, f.mask >> f.shift)) for f in table.fields if not f.flag}
    value = bits.encode(table, chosen, wide)
    assert bits.set_names(table, value) == chosen
    assert {fv.field.name: fv.value for fv in bits.decode(table, value) if not fv.field.flag} == wide
    assert bits.rfu_set(table, value) == []


@given(st.data())
def test_decode_then_encode_is_identity_without_rfu(data: st.DataObject) -> None:
    table = data.draw(st.sampled_from(ALL_TABLES))
    raw = data.draw(st.binary(min_size=table.length, max_size=table.length))
    value = bytes(b & table.defined(i + 1) for i, b in enumerate(raw))
    fields = bits.decode(table, value)
    again = bits.encode(table, [fv.field.name for fv in fields if fv.field.flag and fv.value],
                        {fv.field.name: fv.value for fv in fields if not fv.field.flag})
    assert again == value


@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 254), st.integers(0, 10)), max_size=6))
def test_afl_round_trip(raw: list[tuple[int, int, int]]) -> None:
    entries = [afl.AflEntry(sfi, first, min(first + span, 254), min(span, 1)) for sfi, first, span in raw]
    assert afl.parse(afl.build(entries)) == entries


# -- every data element the test kit's cards hold ---------------------------------------------------


@pytest.mark.parametrize(("cvn", "oda"), [(0x0A, "SDA"), (0x12, "DDA"), (0x12, "CDA"), (0x10, "CDA")])
def test_every_card_element_is_named_and_decodes(cvn: int, oda: str) -> None:
    card, cd = card_for(P(cvn=cvn, oda=oda))
    state, channel = transact(card, pin="1234")
    blobs = list(cd.records.values()) + [x.response[:-2] for x in channel.log if len(x.response) > 2]
    seen: dict[int, bytes] = {}
    for blob in blobs:
        try:
            seen.update(tlv.flatten(blob))
        except tlv.TlvError:
            continue
    assert {0x82, 0x94, 0x8E, 0x8C, 0x8D, 0x9F07, 0x9F0D, 0x9F10, 0x9F27} <= set(seen)
    for tag, value in seen.items():
        assert not dictionary.name(tag).startswith("Unknown"), f"{tag:X}"
        if tag in BY_TAG:
            lines = explain(tag, value, Context(aid=state.aid))
            assert lines and not lines[0].startswith("(does not decode"), (f"{tag:X}", lines)
    mask = tlvtree.masker(tlvtree.pans_in(b"".join(blobs)))
    text = "\n".join(line for blob in blobs for line in tlvtree.lines(blob, mask))
    assert PAN not in text and "476173******0010" in text
    # the whole exchange as an APDU log reads without a PAN either
    pairs = [(x.command, x.response) for x in channel.log]
    log = "\n".join(apdu.log_lines(pairs))
    assert PAN not in log and "CDOL1 data:" in log and "Application Interchange Profile" in log


# -- the command line ----------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from cardlab.cli import main

    code = main(["test", "decode", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_elements(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "tvr", "0000008000")
    assert code == 0 and "b8       1  transaction exceeds floor limit" in out and "Annex C5" in out
    code, out, _ = _cli(capsys, "cvm", "000000000000000042031E031F00")
    assert code == 0 and "X = 0.00" in out and "rule 1: 4203 enciphered PIN verified online" in out
    code, out, _ = _cli(capsys, "aip", "1D00")
    assert "CDA supported" in out
    code, out, _ = _cli(capsys, "dol", "9F02069F1A02", "0000000015000250")
    assert "9F02    6  Amount, Authorised (Numeric) = 000000001500" in out
    code, out, _ = _cli(capsys, "9F07", "FF00", "--all")  # by tag
    assert "valid at ATMs" in out and "international cashback allowed" in out
    code, out, _ = _cli(capsys, "sw", "6A83", "--ins", "B2")
    assert out.startswith("6A83 record not found")
    code, out, _ = _cli(capsys, "tvr", "0000008000", "--json")
    assert json.loads(out)["decoded"]["set"] == ["transaction exceeds floor limit"]


@pytest.mark.parametrize("argv", [("tvr", "00zz"), ("tvr", "000"), ("tvr", "00"), ("tlv", "9F0205"),
                                  ("nonsense", "00"), ("apdu", "00"), ("afl", "0801")])
def test_cli_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("cardlab test decode: ")


def test_cli_tlv_masks_the_pan(capsys: pytest.CaptureFixture[str]) -> None:
    blob = tlv.encode(0x70, tlv.encode(0x5A, bytes.fromhex(PAN)) + tlv.encode(0x82, b"\x1D\x00"))
    code, out, _ = _cli(capsys, "tlv", blob.hex())
    assert code == 0 and PAN not in out and "476173******0010" in out and "CDA supported" in out
    code, out, _ = _cli(capsys, "tlv", blob.hex(), "--json")
    assert PAN not in out and json.loads(out)[0]["children"][0]["value"] == "476173******0010"


def test_cli_apdu_pair_and_log(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from pathlib import Path

    card, _ = card_for(P(oda="CDA"))
    _state, channel = transact(card, pin="1234")
    log = Path(str(tmp_path)) / "apdus.log"
    log.write_text("# command | response\n" + "\n".join(
        f"{x.command.hex().upper()} | {x.response.hex().upper()}" for x in channel.log) + "\n")
    code, out, _ = _cli(capsys, "log", str(log))
    assert code == 0 and PAN not in out and "GENERATE AC: asks for TC" in out and "CDOL1 data:" in out
    assert "<PIN block withheld>" in out
    code, out, _ = _cli(capsys, "log", str(log), "--json")
    doc = json.loads(out)
    assert len(doc) == len(channel.log) and PAN not in out
    gen = next(d for d in doc if d["command"]["ins"] == "AE")
    assert gen["command"]["cdol1"][0]["tag"] == "9F02"
    first = channel.log[0]
    code, out, _ = _cli(capsys, "apdu", first.command.hex(), first.response.hex())
    assert code == 0 and "SELECT: by DF name" in out and "SW 9000 normal processing" in out


def test_log_formats() -> None:
    pairs = apdu.parse_log("> 00B2010C00\n< 6A83\n00A4040000 9000\n00B2020C00\n6A83\n")
    assert pairs == [(bytes.fromhex("00B2010C00"), bytes.fromhex("6A83")),
                     (bytes.fromhex("00A4040000"), bytes.fromhex("9000")),
                     (bytes.fromhex("00B2020C00"), bytes.fromhex("6A83"))]
    with pytest.raises(apdu.ApduError, match="line 1"):
        apdu.parse_log("00B2 ZZ\n")
    with pytest.raises(apdu.ApduError):
        apdu.parse_log("< 9000\n")

"""The cardlab pytest plugin: registration, options, fixtures, cheap import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"
RECORD = {"pan": "4761739001010119", "psn": "01", "expiry": "2035-12", "name": "DOE/JANE", "pin": "1234"}


def test_registered_as_entry_point() -> None:
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="pytest11") if e.name == "cardlab"] == ["cardlab.pytest_plugin"]


def test_options_in_help(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest("--help").stdout.str()
    assert "--cardlab-reader=NAME" in out and "--cardlab-terminal" in out and "--cardlab-today" in out


def test_import_is_cheap() -> None:
    code = ("import sys, cardlab.pytest_plugin; heavy = [m for m in ('hypothesis', 'emulator', 'personalizer', "
            "'tester', 'smartcard', 'cryptography') if m in sys.modules]; print(heavy)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_blank_card_and_reader(blank_card: object, card_reader: object) -> None:
    from cardlab.emulator import Card

    assert isinstance(blank_card, Card)
    resp = card_reader.transmit(bytes.fromhex("00A4040008A00000015100000000"))  # type: ignore[attr-defined]
    assert resp[-2:] == b"\x90\x00" and card_reader.atr()[:1] == b";"  # type: ignore[attr-defined]


def test_personalize_certify_transact(personalized_card: object, terminal: object) -> None:
    card = personalized_card(VECTORS / "profiles" / "visa-cvn18.yaml", RECORD, VECTORS / "test-keystore.json")  # type: ignore[operator]
    assert card.card is not None and card.card.state.lifecycle == 0x0F and card.result.apdus > 8
    report = terminal(card).certify()  # type: ignore[operator]
    assert report.verdict == "pass", [(r.rule, r.evidence) for r in report.failed]
    state = terminal(card).run_transaction(amount=1000)  # type: ignore[operator]
    assert state.outcome
    assert RECORD["pan"] not in repr(card) and RECORD["pin"] not in repr(card).replace("2035", "")


def test_rejected_record_names_the_field(personalized_card: object) -> None:
    from cardlab.pytest_plugin import RecordRejected

    with pytest.raises(RecordRejected) as exc:
        personalized_card(VECTORS / "profiles" / "visa-cvn18.yaml", {**RECORD, "pin": "12"},  # type: ignore[operator]
                          VECTORS / "test-keystore.json")  # fmt: skip
    assert exc.value.field == "pin" and RECORD["pan"] not in str(exc.value)


def test_reader_option_skips_emulated_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.cardlab_emulated_only
        def test_x(): pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--cardlab-reader", "No Such Reader").assert_outcomes(skipped=1)


def test_unknown_reader_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(card_reader): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--cardlab-reader", "No Such Reader")
    result.assert_outcomes(errors=1)
    assert "no PC/SC reader named 'No Such Reader'" in result.stdout.str()


def test_a_profile_rewritten_in_place_is_read_anew(personalized_card: object, tmp_path: Path) -> None:
    """The kit caches profiles by content: the same path with new content gives a card of the new profile."""
    import yaml

    path = tmp_path / "mine.yaml"
    doc = yaml.safe_load((VECTORS / "profiles" / "visa-cvn18.yaml").read_text())
    path.write_text(yaml.safe_dump(doc))
    first = personalized_card(path, RECORD, VECTORS / "test-keystore.json")  # type: ignore[operator]
    doc["applications"][0]["label"] = "REWRITTEN"
    path.write_text(yaml.safe_dump(doc))
    second = personalized_card(path, RECORD, VECTORS / "test-keystore.json")  # type: ignore[operator]
    def label(card: object) -> bytes:
        resp = card.reader.transmit(bytes.fromhex("00A4040007A000000003101000"))  # type: ignore[attr-defined]
        assert resp[-2:] == b"\x90\x00"
        return resp

    assert b"VISA CREDIT" in label(first) and b"REWRITTEN" not in label(first)
    assert b"REWRITTEN" in label(second)


def test_a_profile_document_from_the_strategies(personalized_card: object, terminal: object) -> None:
    """``personalized_card`` takes the document ``profile_variations`` draws, and the tester certifies it."""
    from hypothesis import HealthCheck, given, settings

    from cardlab.strategies import profile_variations

    @settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
    @given(profile_variations(VECTORS / "profiles" / "visa-cvn18.yaml"))
    def check(doc: dict[str, object]) -> None:
        card = personalized_card(doc, RECORD, VECTORS / "test-keystore.json")  # type: ignore[operator]
        assert card.profile_path.is_file()
        report = terminal(card).certify()  # type: ignore[operator]
        assert report.verdict == "pass", [(r.rule, r.evidence) for r in report.failed]

    check()


_FAILING_PROPERTY = """
import importlib.resources

RECORD = {"pan": "4761739001010119", "psn": "01", "expiry": "2035-12", "name": "DOE/JANE", "pin": "1234"}


def test_fails_after_a_transaction(personalized_card, terminal):
    vectors = importlib.resources.files("cardlab.vectors")
    card = personalized_card(vectors / "profiles" / "visa-cvn18.yaml", RECORD, vectors / "test-keystore.json")
    state = terminal(card).run_transaction(amount=1000)
    assert state.outcome == "no such outcome"
"""


def test_a_failing_test_shows_the_transaction_trace_and_no_pyemv_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_FAILING_PROPERTY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "cardlab transaction trace" in out and "GENERATE AC" in out
    assert "4761739001010119" not in out.replace(" ", "")  # the PAN masked in the trace
    assert "TripleDES" not in out and "warning" not in out.lower().split("short test summary")[0][-400:]


def test_records_as_bureaus_receive_them(personalized_card: object, terminal: object) -> None:
    """Valid records the personalizer refused (issue 12): a card valid for one month (effective and
    expiry in the same month) and a cardholder name with digits (5F20 is ans, EMV 4.4 Book 3 Annex
    A; ISO/IEC 7813 track 1 names allow digits). Each personalizes, certifies and transacts."""
    record = {**RECORD, "name": "SMITH/JOHN 3RD", "effective": "2035-12", "expiry": "2035-12"}
    card = personalized_card(VECTORS / "profiles" / "visa-cvn18.yaml", record,  # type: ignore[operator]
                             VECTORS / "test-keystore.json")  # fmt: skip
    report = terminal(card).certify()  # type: ignore[operator]
    assert report.verdict == "pass", [(r.rule, r.evidence) for r in report.failed]

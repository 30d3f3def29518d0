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

"""``cardlab test transaction`` through the command line on emulated card
images (tests/emv/cardmaker.py, saved with Card.save): offline approve, online
approve with an issuer script, online decline, PIN blocked; the issuer host
comes from ``--keys`` (the test key store's IMK-AC/SMI/SMC)."""

from __future__ import annotations

from pathlib import Path

import pytest

import kernelkit
from cardlab.cli import main

KEYS = str(Path(__file__).resolve().parents[2] / "vectors" / "test-keystore.json")


def _image(tmp_path: Path, **kw: object) -> str:
    card, _ = kernelkit.make_card(kernelkit.Profile(**kw))
    path = tmp_path / "card.json"
    card.save(path)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["test", "transaction", "--seed", "3", *args])
    return rc, capsys.readouterr().out


def test_offline_approve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path, **kernelkit.OFFLINE)
    rc, out = _run(capsys, "--card", img, "--amount", "1500", "--pin", "1234", "--keys", KEYS, "--trace")
    assert rc == 0 and out.splitlines()[-1].startswith("approved offline"), out
    assert "issuer host" not in out


def test_online_approve_with_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path)  # card risk limits 0: the card asks to go online
    rc, out = _run(capsys, "--card", img, "--pin", "1234", "--keys", KEYS, "--script", "block", "--trace")
    last = out.splitlines()[-1]
    assert rc == 0 and last.startswith("approved online") and "ARC 00" in last, out
    assert "issuer host: ARQC verified" in out and "APPLICATION BLOCK" in out
    assert "issuer script results (9F5B): 20" in out  # script 1 successful
    assert "4761739001010010" not in out and not kernelkit.shows_pin(out, "1234")
    # the script blocked the application: the next transaction cannot select it
    rc, out = _run(capsys, "--card", img, "--pin", "1234", "--keys", KEYS)
    assert rc == 3 and out.startswith("aborted"), out  # an aborted transaction is a card fault, not a usage error


def test_online_without_keys_is_unable_to_go_online(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path)
    rc, out = _run(capsys, "--card", img, "--pin", "1234", "--trace")
    assert "unable to go online" in out
    assert out.splitlines()[-1].startswith(("approved offline (unable", "declined offline (unable")), out


def test_online_decline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path)
    rc, out = _run(capsys, "--card", img, "--pin", "1234", "--keys", KEYS, "--decline", "--trace")
    last = out.splitlines()[-1]
    assert rc == 1 and last.startswith("declined online") and "ARC 05" in last, out
    assert "issuer host declines" in out


def test_pin_blocked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path, pin_try_limit=1, **kernelkit.OFFLINE)
    rc, out = _run(capsys, "--card", img, "--amount", "1500", "--pin", "9999", "--keys", KEYS)
    assert "TVR" in out
    rc, out = _run(capsys, "--card", img, "--amount", "1500", "--pin", "1234", "--keys", KEYS, "--trace")
    assert "PIN try counter is 0" in out, out
    assert "PIN try limit exceeded" in out
    assert not kernelkit.shows_pin(out, "9999")


def test_bad_script_and_script_without_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path)
    assert main(["test", "transaction", "--card", img, "--keys", KEYS, "--script", "pin-change:12"]) == 2
    assert main(["test", "transaction", "--card", img, "--decline"]) == 2
    err = capsys.readouterr().err
    assert "need --keys" in err and ":12" not in err


def test_issuer_sharing_only_imk_ac(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """IMK-AC is enough to go online (ARQC verified, ARPC answered); a script, which needs IMK-SMI,
    is refused as a usage error before the card sees any command."""
    import json

    doc = json.loads(Path(KEYS).read_text())
    doc["keys"] = {n: e for n, e in doc["keys"].items() if e.get("usage") not in ("IMK-SMI", "IMK-SMC")}
    ac_only = tmp_path / "ac-only.json"
    ac_only.write_text(json.dumps(doc))
    img = _image(tmp_path)
    rc, out = _run(capsys, "--card", img, "--pin", "1234", "--keys", str(ac_only), "--trace")
    assert rc == 0 and out.splitlines()[-1].startswith("approved online"), out
    assert "issuer host: ARQC verified" in out
    before = Path(img).read_bytes()
    assert main(["test", "transaction", "--card", img, "--keys", str(ac_only), "--script", "block"]) == 2
    assert "IMK-SMI" in capsys.readouterr().err
    assert Path(img).read_bytes() == before  # nothing was sent to the card


def test_script_the_cards_issuer_cannot_mac_completes_offline(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Two issuers in the key store: another one could MAC a script, the card's own issuer shares no
    IMK-SMI. The host cannot answer that card: the terminal is unable to go online and completes
    with the default action (no traceback, nothing half done)."""
    import json
    import os

    doc = json.loads(Path(KEYS).read_text())
    smi = doc["keys"].pop("IMK-SMI")
    for usage in ("IMK-AC", "IMK-SMI", "IMK-SMC"):  # another issuer's full triple (random test keys)
        other = dict(smi, usage=usage, value=os.urandom(16).hex().upper())
        other.pop("kcv", None)
        doc["keys"][f"OTHER-{usage}"] = other
    keys = tmp_path / "two-issuers.json"
    keys.write_text(json.dumps(doc))
    img = _image(tmp_path)
    rc, out = _run(capsys, "--card", img, "--pin", "1234", "--keys", str(keys), "--script", "block", "--trace")
    assert "the issuer host could not answer" in out and "no IMK-SMI" in out, out[-3000:]
    assert out.splitlines()[-1].startswith(("approved offline (unable", "declined offline (unable")), out[-500:]
    assert rc in (0, 1)


def test_step_mode_without_a_terminal_does_not_wait(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--step`` prints the trace; stdin is not a terminal under pytest, so it never waits."""
    rc, out = _run(capsys, "--card", _image(tmp_path, **kernelkit.OFFLINE), "--amount", "1500", "--pin", "1234",
                   "--step")
    assert rc == 0 and "] Application selection" in out and "Enter for the next step" not in out


def test_student_pause_waits_per_step_until_q() -> None:
    from cardlab.tester.transaction import student_pause

    asked: list[str] = []
    answers = iter(["", "q"])
    pause = student_pause(lambda prompt: asked.append(prompt) or next(answers))
    for title in ("Application selection", "Initiate application processing", "Read application data"):
        pause(title)
    assert len(asked) == 2 and "Application selection" in asked[0]

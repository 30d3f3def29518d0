"""Every ``cardlab`` subcommand over a table of bad arguments and bad files (issue 12).

The commands are discovered from the argparse tree, so a new subcommand is covered as soon as
it exists: :data:`GOOD` must give it a working command line (the test fails until it does), its
file arguments (named in :data:`FORMATS`) are each replaced by a missing path, a directory, an
empty file, a truncated file, a file that is not UTF-8 and a file of another format, and every
option with a checked value type gets a value it must refuse. Each run must exit 2 with ONE line
on stderr, ``cardlab <command>: …``, naming the argument or the file, and no traceback.

Runs are in-process (fast); :func:`test_a_few_through_the_console_script` runs some through a
real ``cardlab`` process, where a traceback could not be hidden by pytest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardlab import exitcodes
from cardlab.cli import build_parser, iter_parsers, main

ROOT = Path(__file__).resolve().parents[2]

#: a good command line per subcommand; {name} placeholders are the good inputs of :func:`inputs`
GOOD: dict[str, list[str]] = {
    "cardlab card new": ["{out}/new.json", "--keys", "{keys}", "--kmc", "KMC"],
    "cardlab card send": ["{image}", "00A4040000"],
    "cardlab card show": ["{image}"],
    "cardlab card serve": ["{image}", "--vpcd", "--port", "1"],
    "cardlab card demo": ["--out", "{out}/card-demo"],
    "cardlab perso prepare": ["--profile", "{profile}", "--records", "{records}", "--keys", "{keys}",
                              "--out", "{out}/batch"],
    "cardlab perso script render": ["{script}", "--batch", "{batch}", "--card", "1", "--profile", "{profile}"],
    "cardlab perso script check": ["{script}", "--profile", "{profile}"],
    "cardlab perso run": ["{batch}", "--cards", "{stock}", "--keys", "{keys}", "--quiet"],
    "cardlab perso status": ["{batch}"],
    "cardlab perso retry": ["{batch}", "--failed"],
    "cardlab perso audit": ["{batch}", "--verify"],
    "cardlab perso stock": ["{out}/stock", "--count", "1", "--keys", "{keys}", "--profile", "{profile}"],
    "cardlab perso emboss-files": ["{batch}", "--out", "{out}/emboss.jsonl", "--keys", "{keys}"],
    "cardlab perso stations": ["{batch}", "--out", "{out}/emboss.jsonl", "--keys", "{keys}"],
    "cardlab perso seal": ["{records}", "--bureau-public", "{bureau_public}", "--issuer-key", "{issuer_key}",
                           "--out", "{out}/sealed"],
    "cardlab test transaction": ["--card", "{image}", "--keys", "{keys}", "--terminal", "{terminal}"],
    "cardlab test certify": ["--profile", "{profile}", "--records", "{records}", "--keys", "{keys}",
                             "--cards", "{batch}", "--report-dir", "{out}/reports", "--terminal", "{terminal}"],
    "cardlab test decode": ["log", "{apdu_log}"],
    "cardlab demo": ["--cards", "2", "--no-trace", "--out", "{out}/demo"],
}

#: the format of each argument that reads a file or a directory (by argparse dest)
FORMATS: dict[str, str] = {
    "image": "json", "card": "json", "keys": "json", "profile": "yaml", "terminal": "yaml", "script": "yaml",
    "records": "csv", "file": "csv", "bureau_public": "pem", "issuer_key": "pem", "hex": "log",
    "batch": "batch", "cards": "stock",
}
#: file arguments of GOOD's commands that are written, not read, or that are not files
NOT_INPUT = {"out", "dir", "report_dir", "trace_html", "reader", "bureau_key", "issuer_public",
             "ca_public_keys", "passphrase_env", "transport_key", "apdus", "what"}

#: (command, dest) of FORMATS' names that the command writes
WRITTEN = {("cardlab card new", "image")}

FILE_KINDS = ("missing", "directory", "empty", "truncated", "not-utf8", "other-format")
DIR_KINDS = ("missing", "a-file", "empty-dir", "damaged")

#: (command, dest, kind) that are not input errors, with the reason
ACCEPTED = {
    ("cardlab test decode", "hex", "empty"): "an empty APDU log holds no exchanges: nothing to explain",
    ("cardlab perso run", "cards", "empty-dir"): "GOOD's batch is done: the stock is never read",
    ("cardlab perso run", "cards", "damaged"): "GOOD's batch is done: the stock is never read",
    # judging the script is the command's job: a malformed script is its verdict (exit 1)
    **{("cardlab perso script check", "script", k): "the verdict on the script"
       for k in ("empty", "truncated", "other-format")},
    # records: a truncated CSV loses its last rows, and a half row is a rejected record (reported)
    ("cardlab perso script render", "records", "truncated"): "record 1 is whole",
    ("cardlab test certify", "records", "truncated"): "the missing records fail their cards (verdict 1)",
    ("cardlab test certify", "cards", "damaged"): "each unreadable image is a card that fails (verdict 1)",
    # the part of the profile these commands read (the card section, the applications) is whole
    ("cardlab perso stock", "profile", "truncated"): "the card section is in the first half",
    ("cardlab perso script check", "profile", "truncated"): "what the script uses is in the first half",
    ("cardlab perso script render", "profile", "truncated"): "what the script uses is in the first half",
}

#: (command, dest, kind) still accepted although they should be refused: known gaps, each one an
#: expected failure that turns into a test failure (strict) once fixed
GAPS = {
}


def _leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    return {p.prog: p for p in iter_parsers(build_parser()) if "func" in p._defaults}


@dataclass(frozen=True)
class Inputs:
    good: dict[str, str]
    bad_dir: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Good inputs (one small demo run) and a directory for the bad ones."""
    base = tmp_path_factory.mktemp("inputs")
    demo = base / "demo"
    assert main(["demo", "--cards", "2", "--no-trace", "--out", str(demo), "--workers", "1"]) == 0
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (base / "bureau.pub.pem").write_bytes(pem.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (base / "issuer.pem").write_bytes(pem.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (base / "apdus.log").write_text("00A404000E315041592E5359532E4444463031 6A82\n")
    run = demo / "visa-cvn18"
    good = {
        "image": str(run / "stock" / "card-000001.json"), "keys": str(demo / "keys.json"),
        "profile": str(demo / "profiles" / "visa-cvn18.yaml"), "records": str(demo / "records" / "visa-cvn18.csv"),
        "batch": str(run / "batch"), "stock": str(run / "stock"), "script": str(run / "batch" / "script.yaml"),
        "bureau_public": str(base / "bureau.pub.pem"), "issuer_key": str(base / "issuer.pem"),
        "apdu_log": str(base / "apdus.log"), "terminal": str(ROOT / "vectors" / "terminals" / "visa-cvn18.yaml"),
    }
    bad = base / "bad"
    bad.mkdir()
    return Inputs(good, bad)


def _bad_file(inp: Inputs, fmt: str, kind: str, name: str) -> Path:
    samples = {"json": inp.good["keys"], "yaml": inp.good["profile"], "csv": inp.good["records"],
               "pem": inp.good["issuer_key"], "log": inp.good["apdu_log"]}
    other = {"json": "csv", "yaml": "csv", "csv": "pem", "pem": "csv", "log": "csv"}
    path = inp.bad_dir / f"{name}-{kind}.{fmt}"
    good = Path(samples[fmt]).read_bytes()
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir(exist_ok=True)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2 - 7])
    elif kind == "not-utf8":
        path.write_bytes(b"\xff\xfe\x00garbage\x81\x82" + good[:40])
    elif kind == "other-format":
        path.write_bytes(Path(samples[other[fmt]]).read_bytes())
    return path


def _bad_dir(inp: Inputs, fmt: str, kind: str, name: str) -> Path:
    path = inp.bad_dir / f"{name}-{kind}"
    if kind == "missing":
        return path
    if kind == "a-file":
        path.write_text("not a directory\n")
        return path
    path.mkdir(exist_ok=True)
    if kind == "damaged":
        source = Path(inp.good["batch" if fmt == "batch" else "stock"])
        shutil.rmtree(path)
        shutil.copytree(source, path)
        if fmt == "batch":
            db = path / "jobs.sqlite"
            for extra in ("jobs.sqlite-wal", "jobs.sqlite-shm"):
                (path / extra).unlink(missing_ok=True)
            raw = bytearray(db.read_bytes())
            raw[100:4000] = b"\xa5" * 3900
            db.write_bytes(bytes(raw))
            cards = path / "cards.jsonl"
            cards.write_bytes(cards.read_bytes()[:-50])  # an edited cards.jsonl: its last line cut
        else:
            for image in path.glob("*.json"):
                image.write_bytes(b"\x00\xff binary " + os.urandom(64))
    return path


def _cases() -> Iterator[tuple[str, str, str]]:
    for prog, parser in sorted(_leaf_parsers().items()):
        for action in parser._actions:
            given = not action.option_strings or action.option_strings[-1] in GOOD.get(prog, [])
            if action.dest in FORMATS and given and (prog, action.dest) not in WRITTEN:
                kinds = DIR_KINDS if FORMATS[action.dest] in ("batch", "stock") else FILE_KINDS
                for kind in kinds:
                    yield prog, action.dest, kind


def _argv(prog: str, inp: Inputs, out: Path, dest: str | None = None, bad: str | None = None) -> list[str]:
    """GOOD's command line for ``prog``, with argument ``dest`` replaced by (or given) ``bad``."""
    values = {**inp.good, "out": str(out)}
    args = [a.format(**values) for a in GOOD[prog]]
    if dest is None or bad is None:
        return [*prog.split()[1:], *args]
    parser = _leaf_parsers()[prog]
    action = next(a for a in parser._actions if a.dest == dest)
    if action.option_strings:
        option = action.option_strings[-1]
        if option in args:
            args[args.index(option) + 1] = bad
        else:
            args += [option, bad]
    else:
        positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
        position = positionals.index(action)
        args[position] = bad
    return [*prog.split()[1:], *args]


def _check_one_line(prog: str, code: int, err: str, names: tuple[str, ...], argv: list[str]) -> None:
    lines = [line for line in err.splitlines() if " is deprecated, use " not in line]  # `perso stations`
    assert "Traceback" not in err, (argv, err)
    assert code == exitcodes.USAGE, (argv, code, err)
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith(f"{prog}: "), (argv, err)
    assert any(n in lines[0] for n in names), (argv, err, names)


def test_every_subcommand_has_a_good_command_line() -> None:
    """A new subcommand must be added to GOOD: then its file arguments are tested below."""
    assert sorted(_leaf_parsers()) == sorted(GOOD)


def test_every_file_argument_has_a_format() -> None:
    unknown = [f"{prog} {a.dest}" for prog, p in _leaf_parsers().items() for a in p._actions
               if not a.option_strings and a.dest not in FORMATS and a.dest not in NOT_INPUT | {"help"}
               or a.option_strings and a.nargs != 0 and a.type is None and a.choices is None
               and (a.metavar in ("FILE", "PATH", "DIR", "IMAGE", "PEM", "K", "T.yaml", "P.yaml")
                    or a.dest in ("keys", "profile", "records", "terminal", "script", "batch"))
               and a.dest not in FORMATS and a.dest not in NOT_INPUT]
    assert unknown == []


@pytest.mark.parametrize(("prog", "dest", "kind"), list(_cases()), ids=[" ".join(c) for c in _cases()])
def test_bad_file(inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                  prog: str, dest: str, kind: str) -> None:
    if (prog, dest, kind) in GAPS:
        pytest.xfail(GAPS[prog, dest, kind])
    fmt = FORMATS[dest]
    name = f"{prog.split()[-1]}-{dest}"
    bad = (_bad_dir if fmt in ("batch", "stock") else _bad_file)(inputs, fmt, kind, name)
    argv = _argv(prog, inputs, tmp_path, dest, str(bad))
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    if (prog, dest, kind) in ACCEPTED:
        assert "Traceback" not in err and code in (0, 1, 2)
        return
    option = next(a for a in _leaf_parsers()[prog]._actions if a.dest == dest)
    _check_one_line(prog, code, err, (str(bad), *option.option_strings, dest), argv)


def _typed_options() -> Iterator[tuple[str, str, str]]:
    """(command, option, a value its type refuses) for every option with a checked type."""
    refused = {"integer": "ten", "number": "fast", "amount": "-5", "at_least_1": "0", "at_least_0": "-3",
               "diversification": "visa", "key_version": "80", "transaction_type": "ZZ", "aid": "A0",
               "_record_number": "0", "directory": "/nonexistent-dir"}
    for prog, parser in sorted(_leaf_parsers().items()):
        for action in parser._actions:
            name = getattr(action.type, "__name__", "")
            if action.option_strings and name in refused:
                yield prog, action.option_strings[-1], refused[name]


@pytest.mark.parametrize(("prog", "option", "value"), list(_typed_options()),
                         ids=[" ".join(c) for c in _typed_options()])
def test_bad_option_value(inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          prog: str, option: str, value: str) -> None:
    argv = [*_argv(prog, inputs, tmp_path), option, value]
    capsys.readouterr()
    code = main(argv)
    _check_one_line(prog, code, capsys.readouterr().err, (option,), argv)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["test", "transaction", "--amount", "99999999999999"], "--amount"),  # refused, never cut to 12 digits
        (["test", "transaction", "--amount", "-5"], "--amount"),
        (["perso", "stock", "{out}/s", "--count", "-1", "--keys", "{keys}"], "--count"),
        (["perso", "run", "{batch}", "--cards", "{stock}", "--stations", "-3"], "--stations"),
        (["perso", "stock", "{out}/s", "--count", "1", "--keys", "{keys}", "--kmc", "NOPE"], "NOPE"),
        (["demo", "--stations", "0"], "--stations"),
    ],
)
def test_issue_cases(inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     extra: list[str], option: str) -> None:
    values = {**inputs.good, "out": str(tmp_path)}
    argv = [a.format(**values) for a in extra]
    if argv[:2] == ["test", "transaction"]:
        argv += ["--card", inputs.good["image"]]
    capsys.readouterr()
    code = main(argv)
    _check_one_line(f"cardlab {' '.join(argv[:2]) if argv[0] != 'demo' else 'demo'}", code,
                    capsys.readouterr().err, (option,), argv)


def test_no_card_in_the_reader_is_a_fault(monkeypatch: pytest.MonkeyPatch, inputs: Inputs,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A card or reader fault is exit 3 with one line (pyscard's NoCardException)."""
    from smartcard.Exceptions import NoCardException

    from cardlab.tester import transaction

    def no_card(*_a: object, **_k: object) -> None:
        raise NoCardException("Unable to connect: no smart card inserted", -2146434967)

    monkeypatch.setattr(transaction, "PyscardChannel", no_card)
    assert main(["test", "transaction", "--reader", "Some Reader"]) == exitcodes.FAULT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cardlab test transaction: ") and "no card" in err


def test_an_aborted_transaction_is_not_a_usage_error(monkeypatch: pytest.MonkeyPatch, inputs: Inputs,
                                                      tmp_path: Path) -> None:
    """A card that breaks off the transaction is a card fault (3), not a usage error (2)."""
    image = tmp_path / "card.json"
    shutil.copyfile(inputs.good["image"], image)
    from cardlab.emulator import Card

    card = Card.load(image)
    for rec in card.state.instances:
        if rec.aid != card.state.isd_aid:
            rec.lifecycle = 0x83  # application LOCKED: SELECT answers 6283, selection finds nothing usable
    card.save(image)
    assert main(["test", "transaction", "--card", str(image)]) == exitcodes.FAULT


def _cardlab(*args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cardlab", *args], capture_output=True, text=True, env=env,
                          stdin=stdin, timeout=120, check=False)


def test_a_few_through_the_console_script(inputs: Inputs, tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000 + "\n")
    binary = tmp_path / "card.bin"
    binary.write_bytes(os.urandom(3000))
    cases = [
        (["card", "show", str(tmp_path)], str(tmp_path)),
        (["card", "show", str(binary)], str(binary)),
        (["test", "transaction", "--card", inputs.good["image"], "--terminal", str(deep)], str(deep)),
        (["perso", "stock", str(tmp_path / "s"), "--count", "1", "--keys", inputs.good["keys"], "--kmc", "NOPE"],
         "NOPE"),
        (["perso", "run", inputs.good["batch"], "--cards", inputs.good["stock"], "--keys", str(tmp_path / "no.json")],
         "no.json"),
    ]
    for argv, name in cases:
        r = _cardlab(*argv)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (argv, r.stderr)
        assert r.stderr.count("\n") == 1 and name in r.stderr, (argv, r.stderr)


def test_reader_with_stdin_closed(inputs: Inputs) -> None:
    """certify --reader asks for each card on stdin: closed stdin is one line, not EOFError."""
    r = _cardlab("test", "certify", "--profile", inputs.good["profile"], "--records", inputs.good["records"],
                 "--keys", inputs.good["keys"], "--reader", "No Such Reader", stdin=subprocess.DEVNULL)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.returncode in (exitcodes.USAGE, exitcodes.FAULT), r.stderr


def test_ctrl_c_is_one_line_and_130(inputs: Inputs, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) during a run with two stations: 130, one line."""
    import signal
    import time

    batch, stock = tmp_path / "batch", tmp_path / "stock"
    assert main(["perso", "prepare", "--profile", inputs.good["profile"], "--records", inputs.good["records"],
                 "--keys", inputs.good["keys"], "--out", str(batch)]) == 0
    assert main(["perso", "stock", str(stock), "--count", "2", "--keys", inputs.good["keys"],
                 "--profile", inputs.good["profile"]]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import time, cardlab.personalizer.engine.flow as f\n"
            "real = f.personalize_card\n"
            "def slow(*a, **k):\n    time.sleep(30)\n    return real(*a, **k)\n"
            "f.personalize_card = slow\n"
            "import cardlab.personalizer.engine.stations as s; s.personalize_card = slow\n"
            "from cardlab.cli import main; import sys; sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "perso", "run", str(batch), "--cards", str(stock),
                             "--stations", "2", "--keys", inputs.good["keys"], "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            # a shell's background job ignores SIGINT, and Python keeps an ignored SIGINT
                            # ignored: Ctrl-C's default, whoever started pytest
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == exitcodes.INTERRUPTED, err
    assert "Traceback" not in err and err.count("\n") == 1 and "interrupted" in err, err

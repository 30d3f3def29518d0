"""Every failure of a ``cardlab`` command as one line and an exit status (:mod:`cardlab.exitcodes`).

:func:`describe_error` is the one place that knows which exceptions are the user's input
(exit 2), a card or reader fault (exit 3), an interruption (130) or a bug (70). Messages name
the argument or file at fault; they never carry a full PAN (PCI DSS Requirement 3.4).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from cardlab import exitcodes
from cardlab.personalizer.masking import redact_pans


class UsageError(ValueError):
    """Bad command-line input found by a command: printed as one line, exit status 2."""


def _card_faults() -> tuple[type[BaseException], ...]:
    """Exception types that mean the card or the reader failed (not the user's input)."""
    faults: list[type[BaseException]] = []
    try:
        from smartcard.Exceptions import CardConnectionException, NoCardException, SmartcardException

        from smartcard.pcsc.PCSCExceptions import BaseSCardException

        faults += [NoCardException, CardConnectionException, SmartcardException, BaseSCardException]
    except ImportError:  # pyscard is optional for the card-only commands
        pass
    from cardlab.cardspec.scp03 import ScpError
    from cardlab.personalizer.engine.errors import CardError
    from cardlab.tester.scp03 import Scp03Error

    return (*faults, CardError, ScpError, Scp03Error)


def _input_errors() -> tuple[type[BaseException], ...]:
    """Project error types that are not ``ValueError``s but still mean bad input."""
    import yaml

    from cardlab.personalizer.embossing import EmbossingError
    from cardlab.personalizer.engine.errors import EngineError
    from cardlab.personalizer.jobdb import JobDbError
    from cardlab.personalizer.keys import KeyStoreError
    from cardlab.personalizer.prepare.errors import PrepareError

    return (yaml.YAMLError, KeyStoreError, PrepareError, EmbossingError, EngineError, JobDbError)


def file_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[str, Path]]:
    """(option or metavar, path) of every argument whose value names an existing file or directory."""
    found: list[tuple[str, Path]] = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, (str, Path)) and str(v) and Path(v).exists():
                name = action.option_strings[-1] if action.option_strings else str(action.metavar or
                                                                                   action.dest).upper()
                found.append((name, Path(v)))
    return found


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def _blame(args: argparse.Namespace, parser: argparse.ArgumentParser, bad: Callable[[Path], bool]) -> str:
    """``"FILE: "`` for the one file argument (or file directly in a directory argument) that
    ``bad`` finds at fault, else the list of the file arguments."""
    candidates = file_arguments(args, parser)
    files = [p for _n, p in candidates if p.is_file()]  # the files named first, then what directories hold
    files += [f for _n, p in candidates if p.is_dir() for f in _files_under(p)
              if f.suffix in (".json", ".jsonl", ".yaml", ".csv", ".sqlite")]
    for f in files:
        try:
            if bad(f):
                return f"{f}: "
        except OSError:
            continue
    if len(candidates) == 1:
        return f"{candidates[0][1]}: "
    if candidates:
        return "one of " + ", ".join(f"{n} {p}" for n, p in candidates) + ": "
    return ""


def _not_utf8(path: Path) -> bool:
    if path.suffix == ".sqlite":
        return False
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _too_deep(path: Path) -> bool:
    depth = best = 0
    for ch in path.read_bytes()[:10_000_000]:
        if ch in b"[{":
            depth += 1
            best = max(best, depth)
        elif ch in b"]}":
            depth -= 1
    return best > 500


def _bad_json(path: Path) -> bool:
    if path.suffix not in (".json", ".jsonl"):
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        for doc in ([text] if path.suffix == ".json" else [x for x in text.splitlines() if x.strip()]):
            json.loads(doc)
    except ValueError:
        return True
    return False


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return redact_pans("; ".join(lines))


def describe_error(exc: BaseException, args: argparse.Namespace,
                   parser: argparse.ArgumentParser) -> tuple[int, str]:
    """(exit status, one-line message) for an exception a command let through."""
    if isinstance(exc, KeyboardInterrupt):
        return exitcodes.INTERRUPTED, "interrupted"
    if isinstance(exc, _card_faults()):
        text = str(exc) or type(exc).__name__
        if type(exc).__name__ == "NoCardException":
            text = f"no card in the reader ({text})"
        return exitcodes.FAULT, _one_line(f"card or reader fault: {text}")
    if isinstance(exc, RecursionError):
        return exitcodes.USAGE, _one_line(f"{_blame(args, parser, _too_deep)}nested too deeply to read "
                                          "(is it the right file?)")
    if isinstance(exc, UnicodeDecodeError):
        return exitcodes.USAGE, _one_line(f"{_blame(args, parser, _not_utf8)}not UTF-8 text "
                                          f"(byte 0x{exc.object[exc.start]:02X} at offset {exc.start}); "
                                          "is it the right file?")
    if isinstance(exc, EOFError) or (isinstance(exc, RuntimeError) and "lost sys.stdin" in str(exc)):
        return exitcodes.USAGE, "standard input is closed, but the command waits for an answer on it"
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = (exc.strerror or str(exc)).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        return exitcodes.USAGE, _one_line(f"{exc.filename}: {reason}")
    if isinstance(exc, sqlite3.DatabaseError):
        return exitcodes.USAGE, _one_line(f"{_blame(args, parser, lambda p: p.suffix == '.sqlite')}"
                                          f"not a readable job database ({exc})")
    if isinstance(exc, json.JSONDecodeError):
        return exitcodes.USAGE, _one_line(f"{_blame(args, parser, _bad_json)}not valid JSON: "
                                          f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    if isinstance(exc, (ValueError, OSError, *_input_errors())):
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return exitcodes.USAGE, _one_line(text or type(exc).__name__)
    return exitcodes.INTERNAL, _one_line(f"internal error: {type(exc).__name__}: {exc} (a bug; -v shows the "
                                         "traceback)")

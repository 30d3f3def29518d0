"""``cardlab perso script render|check``: the command-line side of perso
scripts (the logic is :mod:`.runner`'s and :mod:`.checks`')."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..batch import CardPersoData
from .checks import check
from .errors import ScriptError
from .loader import load_script
from .runner import render

__all__ = ["add_commands"]


def _card_from_args(args: argparse.Namespace) -> tuple[CardPersoData, dict[str, Any] | None]:
    profile: dict[str, Any] | None = None
    if args.profile:
        profile = _profile(args.profile)
    if args.batch:
        from ..batch import iter_cards

        batch = Path(args.batch)
        if profile is None and (batch / "profile.yaml").exists():
            profile = _profile(batch / "profile.yaml")
        for card in iter_cards(batch):
            if args.card in (card.card_id, str(card.record_index)):
                return card, profile
        raise SystemExit(f"no card {args.card!r} in {batch}")
    if args.records:
        from ..badge import is_badge_profile, prepare_badges

        if profile is None:
            raise SystemExit("--records needs --profile")
        number = int(args.record or "1")
        if is_badge_profile(profile):
            cards = list(prepare_badges(profile, Path(args.records), None))
        else:  # an EMV issuer profile: data preparation first (ICC keys, certificates), in a scratch batch
            import shutil
            import tempfile

            from ..batch import iter_cards, iter_rejections
            from ..keys import KeyStoreError
            from ..prepare import PrepareError, prepare
            from ..profile import ProfileError
            from ..records import RecordsError

            if not args.keys:
                raise SystemExit("--records with an EMV profile needs --keys (the record is prepared first), "
                                 "or render a prepared batch with --batch")
            scratch = Path(tempfile.mkdtemp(prefix="cardlab-render-"))
            try:
                prepare(args.profile, args.records, args.keys, scratch / "batch")
                cards = list(iter_cards(scratch / "batch"))
                refused = {r.record_index: f"{r.field}: {r.message}" for r in iter_rejections(scratch / "batch")}
            except (PrepareError, ProfileError, KeyStoreError, RecordsError, OSError) as exc:
                raise SystemExit(f"cannot prepare {args.records}: {exc}") from None
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            if number in refused:
                raise SystemExit(f"record {number} of {args.records} is rejected: {refused[number]}")
        for c in cards:
            if c.record_index == number:
                return c, profile
        raise SystemExit(f"no valid record {number} in {args.records}")
    raise SystemExit("give --batch BATCH --card ID, or --profile P --records R [--record N]")


def _profile(path: str | Path) -> dict[str, Any]:
    """An issuer profile as a mapping; ``ValueError("PATH: …")`` when it is not one."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not an issuer profile (expected a YAML mapping)")
    return doc


def _say(out: Any, text: str) -> None:
    """Write one line to the command's output (a rich Console or a text stream)."""
    if hasattr(out, "print"):
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        print(text, file=out)


def _cmd_render(args: argparse.Namespace, out: Any) -> int:
    try:
        script = load_script(args.script)
    except ScriptError as exc:  # one line on stderr (cardlab.errors prints it)
        raise ValueError("; ".join(exc.problems)) from None
    card, profile = _card_from_args(args)
    for line in render(script, card, masked=True, profile=profile):
        _say(out, line)
    return 0


def _cmd_check(args: argparse.Namespace, out: Any) -> int:
    profile = _profile(args.profile) if args.profile else None
    Path(args.script).read_text(encoding="utf-8")  # an unreadable file is an input error, not a verdict
    problems = check(Path(args.script), profile)
    for p in problems:
        _say(out, p)
    if not problems:
        _say(out, f"{args.script}: OK")
    return 1 if problems else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cardlab perso script render|check``."""
    script = sub.add_parser("script", help="perso scripts: render the APDUs for one card, check a script")
    ssub = script.add_subparsers(dest="script_command", required=True)
    r = ssub.add_parser("render", help="print the APDU sequence of a script for one card (secrets masked)")
    r.add_argument("script", help="perso script (YAML)")
    r.add_argument("--batch", help="a prepared batch directory")
    r.add_argument("--card", help="card id (or record number) in the batch")
    r.add_argument("--profile", help="issuer profile (default: the batch's profile.yaml)")
    r.add_argument("--records", help="cardholder or badge records instead of a batch; needs --profile "
                   "(and --keys for an EMV profile: the record is prepared first)")
    r.add_argument("--record", help="record number in --records (default 1)")
    r.add_argument("--keys", help="key store for preparing an EMV record (file or pkcs11:…)")
    r.set_defaults(func=_cmd_render)
    c = ssub.add_parser("check", help="validate a script against a profile without a card")
    c.add_argument("script", help="perso script (YAML)")
    c.add_argument("--profile", help="issuer profile (YAML)")
    c.set_defaults(func=_cmd_check)

"""Embossing and magnetic stripe files: the chip batch's data for the other personalization stations.

Data preparation seals, per card, what the embossing/printing and magnetic
stripe stations need (``CardPersoData.stations``: PAN, track 1, track 2,
embossing lines, service code) under the batch transport key, next to the
chip data, so that one record yields consistent chip, stripe and surface data
(background 004: the data preparation system feeds every station of the
personalization machine). ``cardlab perso emboss-files`` opens it for the
station that needs it, one JSON line per card::

    cardlab perso emboss-files BATCH --out FILE [--keys K] [--only done]

(``cardlab perso stations`` is its former name, kept as a deprecated alias;
the engine's ``--stations N`` are something else: its worker processes.)

The file holds full PANs and track data (what an embosser and an encoder
need): it is written with mode 0600, atomically, and never to the terminal;
the command prints counts and masked PANs only. ``--only done`` keeps the
cards the job database records as personalized, with their card location
(image path or reader) and CIN, so surface and stripe go on the card that got
the chip data.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cardlab.cardspec import argtypes
from cardlab.cardspec.scp03 import unpad80
from cardlab.personalizer.batch import CardPersoData, Sealed, iter_cards, read_manifest
from cardlab.personalizer.masking import mask_pan
from cardlab.personalizer.keys import KeyStore, KeyStoreError, open_keystore

FORMAT = "cardlab-station-data"


class EmbossingError(Exception):
    """The embossing and stripe data cannot be opened (no transport key, wrong key, no job database)."""


def unseal(keystore: KeyStore, sealed: Sealed) -> bytes:
    """The clear value of a sealed batch value; the transport key's check value
    is compared first, so a wrong key store is named, not a padding error."""
    try:
        kcv = keystore.kcv(sealed.kek)
    except Exception as exc:  # noqa: BLE001 - key store errors name keys, never values
        raise EmbossingError(f"transport key {sealed.kek!r}: {type(exc).__name__}: {exc}") from None
    if kcv != sealed.kek_kcv:
        raise EmbossingError(f"transport key {sealed.kek!r} in this key store has check value {kcv.hex().upper()}, "
                             f"the batch was sealed under {sealed.kek_kcv.hex().upper()}")
    try:
        return unpad80(keystore.decrypt(sealed.kek, sealed.ciphertext))
    except Exception as exc:  # noqa: BLE001 - a damaged value; its bytes are not shown
        raise EmbossingError(f"a sealed value does not open ({type(exc).__name__})") from None


def _done(batch: Path) -> dict[int, tuple[str, str]]:
    """record index → (card location, CIN) of the records the job database has done."""
    path = batch / "jobs.sqlite"
    if not path.exists():
        raise EmbossingError(f"{path}: no job database (the batch was not run): --only done has nothing to go on")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT r.record_index, c.location, COALESCE(c.cin, '') FROM records r "
                           "JOIN cards c ON c.id = r.card WHERE r.status = 'done'").fetchall()
    finally:
        con.close()
    return {int(i): (str(loc), str(cin)) for i, loc, cin in rows}


def station_rows(batch: str | Path, keystore: KeyStore, *, only_done: bool = False) -> Iterator[dict[str, Any]]:
    """One mapping per card of the batch (or per personalized card)."""
    batch = Path(batch)
    done = _done(batch) if only_done else None
    card: CardPersoData
    for card in iter_cards(batch):
        if done is not None and card.record_index not in done:
            continue
        if card.stations is None:
            raise EmbossingError(f"card {card.card_id}: the batch holds no station data for it")
        data = json.loads(unseal(keystore, card.stations))
        row: dict[str, Any] = {"card_id": card.card_id, "record": card.record_index, **data}
        if done is not None:
            row["card_location"], row["cin"] = done[card.record_index]
        yield row


def export(batch: str | Path, keystore: KeyStore, out: str | Path, *, only_done: bool = False) -> list[str]:
    """Write the station file (JSON Lines, mode 0600, atomic); returns the masked PANs written."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    masked: list[str] = []
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            manifest = read_manifest(Path(batch))
            fh.write(json.dumps({"format": FORMAT, "version": 1, "profile": manifest.get("profile"),
                                 "cards_sha256": manifest.get("cards_sha256")}) + "\n")
            for row in station_rows(batch, keystore, only_done=only_done):
                fh.write(json.dumps(row, separators=(",", ":")) + "\n")
                pan = str(row.get("pan", ""))
                masked.append(mask_pan(pan))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return masked


COMMAND = "emboss-files"
#: the former name of the command, kept as a deprecated alias
OLD_COMMAND = "stations"


def cmd_emboss_files(args: argparse.Namespace) -> int:
    name = f"cardlab perso {getattr(args, 'command', None) or COMMAND}"
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{name}: {out} exists (--force to replace it)", file=sys.stderr)
        return 2
    try:
        manifest = read_manifest(Path(args.batch))
        spec = args.keys or os.environ.get("CARDLAB_KEYS") or str(manifest.get("keys") or "")
        if not spec:
            raise EmbossingError("no key store: give --keys (or set CARDLAB_KEYS)")
        with open_keystore(spec) as ks:
            masked = export(args.batch, ks, out, only_done=args.only == "done")
    except (EmbossingError, KeyStoreError, sqlite3.Error, OSError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2  # a usage or input error (cardlab.exitcodes.USAGE)
    shown = ", ".join(masked[:5]) + (f" and {len(masked) - 5} more" if len(masked) > 5 else "")
    print(f"{len(masked)} cards' station data (embossing lines, tracks 1 and 2) in {out} (mode 0600): {shown}")
    return 0


def cmd_stations(args: argparse.Namespace) -> int:
    """The deprecated ``cardlab perso stations``: a notice on stderr, then ``emboss-files``."""
    print(f"cardlab perso {OLD_COMMAND} is deprecated, use cardlab perso {COMMAND} (same options)",
          file=sys.stderr)
    return cmd_emboss_files(args)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("batch", type=argtypes.directory, help="batch directory (from perso prepare)")
    p.add_argument("--out", required=True, metavar="FILE", help="embossing/stripe file to write (JSON Lines, mode 0600)")
    p.add_argument("--keys", metavar="K", help="key store holding the transport key (default: the batch's)")
    p.add_argument("--only", choices=("all", "done"), default="all",
                   help="all accepted records, or only those the job database has personalized")
    p.add_argument("--force", action="store_true", help="replace an existing embossing/stripe file")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(COMMAND, help="open the embossing and magnetic stripe data of a batch into a file")
    _arguments(p)
    p.set_defaults(func=lambda a, *_: cmd_emboss_files(a))
    old = sub.add_parser(OLD_COMMAND, help=f"deprecated name of {COMMAND}")
    _arguments(old)
    old.set_defaults(func=lambda a, *_: cmd_stations(a))

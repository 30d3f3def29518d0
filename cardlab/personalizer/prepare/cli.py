"""``cardlab perso prepare``: the command line of data preparation (the logic is in
:mod:`.writer`, :mod:`.preparer` and :mod:`.issuer`)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from cardlab.personalizer.keys import KeyStoreError
from cardlab.personalizer.masking import one_line
from cardlab.personalizer.prepare.errors import PrepareError
from cardlab.personalizer.prepare.issuer import load_ca_public_keys
from cardlab.personalizer.prepare.writer import prepare
from cardlab.personalizer.profile import ProfileError
from cardlab.personalizer.records import RecordsError
from cardlab.personalizer.transport import TransportKeys

__all__ = ["add_commands"]


def _cmd_prepare(args: argparse.Namespace, out: Any) -> int:
    import sys

    today = date.fromisoformat(args.today) if args.today else None
    tkeys: TransportKeys | None = None
    try:
        if args.bureau_key or args.issuer_public:
            from cardlab.personalizer.transport import load_private_key, load_public_key

            if not (args.bureau_key and args.issuer_public):
                raise PrepareError("sealed records need both --bureau-key and --issuer-public")
            priv = load_private_key(args.bureau_key)
            if not isinstance(priv, rsa.RSAPrivateKey):
                raise PrepareError("--bureau-key must be an RSA private key")
            tkeys = TransportKeys(priv, load_public_key(args.issuer_public))
        cas = load_ca_public_keys(args.ca_public_keys) if args.ca_public_keys else []
        s = prepare(
            args.profile, args.records, args.keys, args.out, today=today,
            transport_key=args.transport_key, transport_keys=tkeys, script=args.script, ca_public_keys=cas,
        )  # fmt: skip
    except UnicodeDecodeError:
        raise  # cardlab.errors names the file that is not text
    except (PrepareError, ProfileError, RecordsError, KeyStoreError, OSError, ValueError) as e:
        print(f"cardlab perso prepare: {one_line(str(e))}", file=sys.stderr)
        return 2
    out.print(
        f"{s.profile}: {s.input_count} records, {s.accepted} prepared, {s.rejected} rejected "
        f"-> {s.out_dir} ({s.seconds:.1f} s, {s.rate:.0f} records/s; transport key {s.transport_key} "
        f"KCV {s.transport_kcv})"
    )
    if s.rejected:
        out.print(f"rejections: {s.out_dir / 'rejected.jsonl'}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cardlab perso prepare``."""
    p = sub.add_parser(
        "prepare",
        help="prepare per-card perso data from an issuer profile and cardholder records",
        description="Key store passphrase: $CARDLAB_KEYSTORE_PASSPHRASE; PKCS#11 PIN: $CARDLAB_PKCS11_PIN "
        "(or the pin-env= of the pkcs11: spec).",
    )
    p.add_argument("--profile", required=True, type=Path, help="issuer profile (YAML)")
    p.add_argument("--records", required=True, type=Path, help="cardholder records (CSV, JSONL, or sealed)")
    p.add_argument("--keys", required=True, help="key store: a file or pkcs11:token=LABEL[;pin-env=VAR]")
    p.add_argument("--out", required=True, type=Path, help="batch directory to create")
    p.add_argument("--transport-key", default="KEK", help="key-store name of the batch transport key")
    p.add_argument("--script", type=Path,
                   help="perso script to copy into the batch (default: the shipped EMV CPS or badge script)")
    p.add_argument("--today", help="YYYY-MM-DD for the expiry checks (default: today)")
    p.add_argument("--ca-public-keys", type=Path,
                   help="JSON/YAML file with a ca_public_keys list (RID, index, modulus, exponent) to verify "
                        "the profile's issuer certificates (default: the key store's)")
    p.add_argument("--bureau-key", type=Path, help="bureau private key (PEM) to open sealed records")
    p.add_argument("--issuer-public", type=Path, help="issuer public signing key (PEM) of sealed records")
    p.set_defaults(func=_cmd_prepare)

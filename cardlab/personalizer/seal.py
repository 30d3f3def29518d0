"""``cardlab perso seal``: the issuer's side of transport protection on the command line —
check a records file, encrypt it for the bureau and sign it (:func:`.transport.seal`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from .records import Rejected, RecordsError, read_records
from .transport import TransportError, fingerprint, load_private_key, load_public_key, seal


def _check_records(path: Path) -> None:
    """The issuer seals only a records file the bureau can read: every row a valid record
    (the messages name line and field, PANs masked)."""
    try:
        rejected = [r for r in read_records(path) if isinstance(r, Rejected)]
    except RecordsError as exc:
        raise TransportError(str(exc)) from None
    if rejected:
        shown = "; ".join(r.message for r in rejected[:3])
        more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
        raise TransportError(f"{path}: {len(rejected)} record(s) would be rejected: {shown}{more}")


def cmd_seal(args: argparse.Namespace) -> int:
    """``cardlab perso seal``: the issuer's side — encrypt a records file for the bureau and sign it."""
    out = Path(args.out or f"{args.file}.sealed")
    if out.exists() and not args.force:
        print(f"cardlab perso seal: {out} exists (--force to replace it)", file=sys.stderr)
        return 2
    try:
        recipient = load_public_key(args.bureau_public)
        if not isinstance(recipient, rsa.RSAPublicKey):
            raise TransportError(f"{args.bureau_public}: the bureau key must be RSA (RSA-OAEP key wrap)")
        passphrase = None
        if args.passphrase_env:
            if args.passphrase_env not in os.environ:
                raise TransportError(f"the environment variable {args.passphrase_env} is not set")
            passphrase = os.environ[args.passphrase_env].encode()
        signer = load_private_key(args.issuer_key, passphrase)
        _check_records(Path(args.file))
        seal(args.file, out, recipient, signer)
    except (TransportError, OSError, ValueError, TypeError) as exc:
        print(f"cardlab perso seal: {exc}", file=sys.stderr)
        return 2  # a usage or input error (cardlab.exitcodes.USAGE)
    print(f"{args.file} sealed for bureau key {fingerprint(recipient)[:16]}… and signed by "
          f"{fingerprint(signer.public_key())[:16]}… into {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("seal", help="issuer side: encrypt a records file for the bureau and sign it "
                                    "(perso prepare opens it with --bureau-key/--issuer-public)")
    p.add_argument("file", help="cardholder records (CSV or JSON Lines)")
    p.add_argument("--bureau-public", required=True, metavar="PEM", help="the bureau's RSA public key")
    p.add_argument("--issuer-key", required=True, metavar="PEM", help="the issuer's signing key (RSA or Ed25519)")
    p.add_argument("--passphrase-env", metavar="VAR",
                   help="environment variable holding the signing key's passphrase (never on the command line)")
    p.add_argument("--out", metavar="FILE", help="sealed file (default: FILE.sealed)")
    p.add_argument("--force", action="store_true", help="replace an existing sealed file")
    p.set_defaults(func=lambda a, *_: cmd_seal(a))

"""``cardlab test transaction``: one EMV transaction against a card.

    cardlab test transaction (--card IMAGE | --reader NAME) [--terminal T.yaml]
        [--amount N] [--pin PIN] [--keys K [--decline] [--script S]...]
        [--trace] [--trace-html FILE] [--seed N] [--contactless]

``--contactless`` runs Entry Point and the contactless kernel (kernel 2 or 3,
:mod:`cardlab.tester.contactless`) the terminal profile's ``contactless:`` section
configures, with the same teaching trace; the outcome (Approved, Declined, Online
Request, Try Another Interface, End Application) and its UI request end the output.

With ``--keys`` (an issuer key store: IMK-AC, and IMK-SMI/SMC for scripts,
read by :func:`cardlab.tester.sources.load_keystore`) an ARQC goes online to an
:class:`~tester.issuer_host.IssuerHost` that approves a verified ARQC
(``--decline``: declines) and may send issuer scripts (``--script block``,
``unblock``, ``pin-change:NEWPIN``, ``put-data:TAG=HEX``; repeatable).
Without it the terminal is unable to go online and completes with the
default action (Book 3 §10.8).

Exit status (:mod:`cardlab.exitcodes`): 0 approved, 1 declined, 2 a usage or input error,
3 aborted (the card or the reader failed the transaction).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cardlab.exitcodes import FAULT, OK, USAGE, VERDICT

from .channel import CardChannel, PyscardChannel, RecordingChannel
from .cryptogram import keystore_is_test
from .exchange import mask_pan
from .issuer_host import (
    AuthorizationRequest,
    AuthorizationResponse,
    HostError,
    IssuerHost,
    Policy,
    Script,
    application_block,
    application_unblock,
    pin_change,
    put_data,
)
from .sources import KeyStore, SourceError, load_keystore


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 open_image: Callable[[str], CardChannel]) -> None:
    p = sub.add_parser("transaction", help="run one EMV transaction (selection to completion)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--card", metavar="IMAGE", help="an emulated card image (updated like a real card: ATC, "
                       "counters, log; see --dry-run)")
    where.add_argument("--reader", metavar="NAME", help="a PC/SC reader (name or prefix)")
    p.add_argument("--terminal", metavar="T.yaml", help="terminal profile (default: vectors/terminals/default.yaml)")
    p.add_argument("--amount", type=amount, default=1000, help="amount in minor units, 0-999999999999 (default 1000)")
    p.add_argument("--amount-other", type=amount, default=0, help="cashback amount in minor units")
    p.add_argument("--type", type=transaction_type, default=0x00, dest="transaction_type",
                   help="transaction type 9C in hex (00 goods/services, 01 cash, 09 cashback)")
    p.add_argument("--pin", help="the PIN the cardholder types when asked (never shown)")
    p.add_argument("--force-online", action="store_true", help="merchant forces the transaction online")
    p.add_argument("--keys", metavar="K", help="issuer key store (IMK-AC; IMK-SMI/SMC for scripts): an ARQC goes "
                   "online to an issuer host")
    p.add_argument("--decline", action="store_true", help="the issuer host declines (with --keys)")
    p.add_argument("--script", action="append", default=[], metavar="S",
                   help="issuer script after the final GENERATE AC (with --keys): block, unblock, "
                        "pin-change:NEWPIN or put-data:TAG=HEX; repeatable")
    p.add_argument("--dry-run", action="store_true",
                   help="with --card: run on a copy, leaving the image untouched (a batch card stays as it was for "
                        "certification)")
    p.add_argument("--contactless", action="store_true",
                   help="a contactless transaction: Entry Point (EMV Contactless Book B) and kernel 2 or 3 as the "
                        "terminal profile's contactless section names them; with --card the card is reached through "
                        "its contactless interface")
    p.add_argument("--seed", type=int, help="seed for the unpredictable number and random selection")
    p.add_argument("--trace", action="store_true", help="print the teaching trace")
    p.add_argument("--trace-html", metavar="FILE", help="write the teaching trace as an HTML page")
    p.add_argument("--step", action="store_true", help="student mode: print the trace and pause after each step "
                   "(only on a terminal; implies --trace)")
    p.set_defaults(func=lambda args, out=None: run(args, open_image, out))


def amount(value: str) -> int:
    """An argparse type: an amount in minor units that fits Amount, Authorised (9F02, n 12:
    EMV 4.4 Book 3 Annex A) — refused, never cut, when it does not."""
    if not value.isdigit() or len(value.lstrip("0")) > 12:
        raise argparse.ArgumentTypeError(f"expected an amount in minor units, 0-999999999999, got {value!r}")
    return int(value)


def transaction_type(value: str) -> int:
    """An argparse type: Transaction Type (9C, n 2: ISO 8583 processing code digits 1-2), in hex."""
    if len(value) not in (1, 2) or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise argparse.ArgumentTypeError(f"expected a transaction type of 2 hex digits (00, 01, 09 …), got {value!r}")
    return int(value, 16)


class KeyStoreHost(IssuerHost):
    """An issuer host holding every issuer's master keys of a key store (named
    ``<prefix>IMK-AC`` and, when the issuer shares them, ``<prefix>IMK-SMI``,
    ``<prefix>IMK-SMC``): it answers with the issuer whose IMK-AC verifies the
    ARQC (else the first one, which then reports the cryptogram as not
    verified). IMK-AC alone is enough to go online; scripts need IMK-SMI, a
    PIN change IMK-SMC too."""

    def __init__(self, triples: list[tuple[str, bytes, bytes | None, bytes | None]], *,
                 decline: bool = False, test_keys: bool = False) -> None:
        if not triples:
            raise HostError("the key store holds no issuer master key IMK-AC")
        policy = Policy(force="decline") if decline else Policy()
        _name, ac, smi, smc = triples[0]
        super().__init__(ac, smi, smc, decide=policy, explain=True, test_keys=test_keys)
        self.issuers = [(name, IssuerHost(a, b, c, decide=policy, explain=True, test_keys=test_keys))
                        for name, a, b, c in triples]
        self.chosen = ""

    def __repr__(self) -> str:
        return f"KeyStoreHost(issuers={[n for n, _ in self.issuers]!r}, decide={self.decide!r})"

    def authorize(self, request: AuthorizationRequest, scripts: Sequence[Script] = ()) -> AuthorizationResponse:
        self.requests += 1
        if not scripts and self._queued:
            scripts, self._queued = tuple(self._queued), []
        name, host = next(((n, h) for n, h in self.issuers if h.verify(request)[0]), self.issuers[0])
        self.chosen = name
        for script in scripts:  # the card's issuer must hold the script keys, not just some issuer
            reason = host.can_send(script)
            if reason:
                raise HostError(f"issuer {name}: {script.kind}: {reason}")
        return host.authorize(request, scripts)

    def explain_cryptogram(self, request: AuthorizationRequest, card_ac_source: str = "the card") -> list[tuple[str, str]]:
        """Opened up under the key of the issuer whose IMK-AC verifies the cryptogram (else the first)."""
        name, host = next(((n, h) for n, h in self.issuers if h.verify(request)[0]), self.issuers[0])
        lines = host.explain_cryptogram(request, card_ac_source)
        key = name if name.endswith("IMK-AC") else f"{name}-IMK-AC"
        if lines and self.test_keys:  # the key store's name of the key used
            lines[0] = (lines[0][0], lines[0][1].replace("(TEST key,", f"(TEST key {key},", 1))
        return lines


def keystore_triples(ks: KeyStore) -> list[tuple[str, bytes, bytes | None, bytes | None]]:
    """(issuer name, IMK-AC, IMK-SMI or None, IMK-SMC or None) for each IMK-AC of the key store,
    with the SMI/SMC keys of the same name prefix when the issuer shared them."""
    out: list[tuple[str, bytes, bytes | None, bytes | None]] = []
    for name, (usage, ac) in sorted(ks.symmetric.items()):
        if usage != "IMK-AC" or not name.endswith("IMK-AC"):
            continue
        prefix = name[: -len("IMK-AC")]
        smi, smc = ks.symmetric.get(prefix + "IMK-SMI"), ks.symmetric.get(prefix + "IMK-SMC")
        out.append((prefix.rstrip("-") or name, ac, smi[1] if smi and smi[0] == "IMK-SMI" else None,
                    smc[1] if smc and smc[0] == "IMK-SMC" else None))
    return out


def parse_script(text: str) -> Script:
    """``block``, ``unblock``, ``pin-change:NEWPIN``, ``put-data:TAG=HEX``."""
    kind, _, arg = text.partition(":")
    if kind == "block" and not arg:
        return application_block()
    if kind == "unblock" and not arg:
        return application_unblock()
    if kind == "pin-change" and arg.isdigit() and 4 <= len(arg) <= 12:
        return pin_change(arg)
    if kind == "put-data" and "=" in arg:
        tag, _, value = arg.partition("=")
        try:
            return put_data(int(tag, 16), bytes.fromhex(value))
        except ValueError:
            pass
    raise ValueError("a script is block, unblock, pin-change:NEWPIN (4-12 digits) or put-data:TAG=HEX")


def _host_for(args: argparse.Namespace) -> IssuerHost | None:
    """The issuer host of ``--keys`` with ``--script`` queued, or None (unable to go online)."""
    if not getattr(args, "keys", None):
        if args.decline or args.script:
            raise ValueError("--decline and --script need --keys (an issuer host)")
        return None
    host = KeyStoreHost(keystore_triples(load_keystore(args.keys)), decline=args.decline,
                        test_keys=keystore_is_test(args.keys))
    scripts = [parse_script(s) for s in args.script]
    for script in scripts:  # refused before the card sees anything, not halfway through a transaction
        reasons = [h.can_send(script) for _n, h in host.issuers]
        if all(reasons):
            raise ValueError(f"--script {script.kind}: {reasons[0]} (the key store does not share it)")
    host.queue_scripts(*scripts)
    return host


def student_pause(read: Callable[[str], str] = input) -> Callable[[str], None]:
    """``--step``: after each step, wait for Enter (end of input or ``q`` stops pausing)."""
    going = [True]

    def pause(title: str) -> None:
        if not going[0]:
            return
        sys.stdout.flush()
        try:
            answer = read(f"-- end of '{title}': Enter for the next step, q to run to the end -- ")
        except EOFError:
            answer = "q"
        if answer.strip().lower() == "q":
            going[0] = False

    return pause


def _open_contactless(open_image: Callable[..., CardChannel], image: str) -> CardChannel:
    """The card image behind its contactless interface, when the opener offers one."""
    import inspect

    try:
        takes = "interface" in inspect.signature(open_image).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        raise ValueError("this card opener has no contactless interface (use --reader with a contactless reader)")
    return open_image(image, interface="contactless")


def _digest(path: str) -> bytes | None:
    """The image as stored: its snapshot and the journal next to it (the emulator's IMAGE.journal,
    where a card's changes go between two snapshots)."""
    h = hashlib.sha256()
    try:
        h.update(Path(path).read_bytes())
    except OSError:
        return None
    try:
        h.update(b"\0journal\0" + Path(path + ".journal").read_bytes())
    except OSError:
        pass
    return h.digest()


def run(args: argparse.Namespace, open_image: Callable[[str], CardChannel], console: Any = None) -> int:
    from .kernel import run_transaction
    from .terminal import TerminalProfileError, load_terminal
    from .trace import LiveTrace, render_html

    try:
        terminal = load_terminal(args.terminal)
    except TerminalProfileError as exc:
        print(f"cardlab test transaction: {exc}", file=sys.stderr)
        return USAGE
    contactless = bool(getattr(args, "contactless", False))
    if contactless and terminal.contactless is None:
        print(f"cardlab test transaction: --contactless: the terminal profile {terminal.source or terminal.name} has "
              "no contactless section (see vectors/terminals/visa-cvn18.yaml)", file=sys.stderr)
        return USAGE
    try:
        host = _host_for(args)
    except (SourceError, HostError, ValueError) as exc:
        print(f"cardlab test transaction: {exc}", file=sys.stderr)
        return USAGE
    if getattr(args, "dry_run", False) and not args.card:
        print("cardlab test transaction: --dry-run needs --card IMAGE (a card in a reader cannot be copied)",
              file=sys.stderr)
        return USAGE
    image, scratch = args.card, None
    if args.card and getattr(args, "dry_run", False):  # a copy takes the transaction; the image stays as it was
        scratch = tempfile.TemporaryDirectory(prefix="cardlab-dry-run-")
        image = str(Path(scratch.name) / Path(args.card).name)
        try:
            shutil.copyfile(args.card, image)
            # a journal left next to the image by a killed run holds its last changes: copied too
            # (the emulator's IMAGE.journal, cardlab/emulator/journalfile.py)
            if Path(args.card + ".journal").exists():
                shutil.copyfile(args.card + ".journal", image + ".journal")
        except OSError as exc:
            scratch.cleanup()
            print(f"cardlab test transaction: cannot open the card: {exc}", file=sys.stderr)
            return USAGE
    before = _digest(args.card) if args.card and scratch is None else None
    try:
        channel: CardChannel = (_open_contactless(open_image, image) if image and contactless
                                else open_image(image) if image else PyscardChannel(args.reader))
    except (OSError, LookupError, ValueError) as exc:
        if scratch is not None:
            scratch.cleanup()
        print(f"cardlab test transaction: cannot open the card: {exc}", file=sys.stderr)
        return USAGE
    recorder = RecordingChannel(channel.transmit, channel.atr(), protocol=str(getattr(channel, "protocol", "")))
    # the trace is printed step by step while the transaction runs (Book 3's order)
    live = None
    step_mode = bool(getattr(args, "step", False))
    if args.trace or step_mode:
        if sys.stdout.isatty() and console is None:
            from rich.console import Console

            console = Console()
        live = LiveTrace(sys.stdout.write, rich_console=console if sys.stdout.isatty() else None,
                         pause=student_pause() if step_mode and sys.stdin.isatty() else None)
    try:
        if contactless:
            from .contactless import run_contactless

            state = run_contactless(recorder, terminal, amount=args.amount, pin=args.pin, online_host=host,
                                    amount_other=args.amount_other, transaction_type=args.transaction_type,
                                    seed=args.seed, on_event=live.on_event if live else None)
        else:
            state = run_transaction(recorder, terminal, amount=args.amount, pin=args.pin,
                                    online_host=host, force_online=args.force_online,
                                    amount_other=args.amount_other, transaction_type=args.transaction_type,
                                    seed=args.seed, on_event=live.on_event if live else None)
    finally:
        close = getattr(channel, "close", None)
        if callable(close):
            close()
        if scratch is not None:
            scratch.cleanup()
    if before is not None and _digest(args.card) != before:
        print(f"cardlab test transaction: the card image {args.card} was updated as the card would be (ATC, "
              "counters, transaction log); --dry-run runs on a copy", file=sys.stderr)
    elif scratch is not None:
        print(f"cardlab test transaction: --dry-run: {args.card} left untouched", file=sys.stderr)
    if host is not None and not host.requests and not contactless:  # no online request: open the offline cryptogram up here
        from .online import open_up

        open_up(state, host)
    if live is not None:
        live.finish(state)
        sys.stdout.flush()
    if args.trace_html:
        Path(args.trace_html).write_text(render_html(state))
    pan = state.card_data.get(0x5A, b"").hex()
    summary = [f"application {state.aid.hex().upper() or '-'}", f"PAN {mask_pan(pan) if pan else '-'}",
               f"TVR {bytes(state.tvr).hex().upper()}", f"TSI {bytes(state.tsi).hex().upper()}",
               f"CVM {state.cvm_result.hex().upper()}"]
    arc = state.online_response.get("arc")
    if isinstance(arc, bytes):
        summary.append(f"ARC {arc.decode('ascii', 'replace')}")
    print(f"{state.outcome or 'unfinished'}  ({', '.join(summary)})")
    cl_outcome = state.extras.get("contactless", {}).get("outcome")
    if cl_outcome is not None:
        print(f"contactless outcome: {cl_outcome.status}, CVM {cl_outcome.cvm}, UI request {cl_outcome.ui_text()}")
    if state.outcome.startswith("approved"):
        return OK
    if state.outcome.startswith(("declined", "try another interface")):
        return VERDICT
    return FAULT  # aborted (the card failed it) or, contactless, End Application

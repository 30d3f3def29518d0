"""``cardlab test transaction``: one EMV transaction against a card.

    cardlab test transaction (--card IMAGE | --reader NAME) [--terminal T.yaml]
        [--amount N] [--pin PIN] [--trace] [--trace-html FILE] [--seed N]

Exit status: 0 approved, 1 declined, 2 aborted (or a usage error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .channel import CardChannel, PyscardChannel, RecordingChannel
from .exchange import mask_pan


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 open_image: Callable[[str], CardChannel]) -> None:
    p = sub.add_parser("transaction", help="run one EMV transaction (selection to completion)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--card", metavar="IMAGE", help="an emulated card image")
    where.add_argument("--reader", metavar="NAME", help="a PC/SC reader (name or prefix)")
    p.add_argument("--terminal", metavar="T.yaml", help="terminal profile (default: vectors/terminals/default.yaml)")
    p.add_argument("--amount", type=int, default=1000, help="amount in minor units (default 1000)")
    p.add_argument("--amount-other", type=int, default=0, help="cashback amount in minor units")
    p.add_argument("--type", type=lambda s: int(s, 16), default=0x00, dest="transaction_type",
                   help="transaction type 9C in hex (00 goods/services, 01 cash, 09 cashback)")
    p.add_argument("--pin", help="the PIN the cardholder types when asked (never shown)")
    p.add_argument("--force-online", action="store_true", help="merchant forces the transaction online")
    p.add_argument("--seed", type=int, help="seed for the unpredictable number and random selection")
    p.add_argument("--trace", action="store_true", help="print the teaching trace")
    p.add_argument("--trace-html", metavar="FILE", help="write the teaching trace as an HTML page")
    p.set_defaults(func=lambda args, out=None: run(args, open_image, out))


def _host_for(terminal: Any) -> Any:
    """An issuer host when the issuer host module can build one without keys: none by default."""
    return None


def run(args: argparse.Namespace, open_image: Callable[[str], CardChannel], console: Any = None) -> int:
    from .kernel import run_transaction
    from .terminal import TerminalProfileError, load_terminal
    from .trace import print_rich, render_html, render_text

    try:
        terminal = load_terminal(args.terminal)
    except TerminalProfileError as exc:
        print(f"cardlab test transaction: {exc}", file=sys.stderr)
        return 2
    try:
        channel: CardChannel = open_image(args.card) if args.card else PyscardChannel(args.reader)
    except (OSError, LookupError, ValueError) as exc:
        print(f"cardlab test transaction: cannot open the card: {exc}", file=sys.stderr)
        return 2
    recorder = RecordingChannel(channel.transmit, channel.atr())
    try:
        state = run_transaction(recorder, terminal, amount=args.amount, pin=args.pin,
                                online_host=_host_for(terminal), force_online=args.force_online,
                                amount_other=args.amount_other, transaction_type=args.transaction_type,
                                seed=args.seed)
    finally:
        close = getattr(channel, "close", None)
        if callable(close):
            close()
    if args.trace:
        if sys.stdout.isatty():
            print_rich(state, console)
        else:
            sys.stdout.write(render_text(state))
    if args.trace_html:
        Path(args.trace_html).write_text(render_html(state))
    pan = state.card_data.get(0x5A, b"").hex()
    summary = [f"application {state.aid.hex().upper() or '-'}", f"PAN {mask_pan(pan) if pan else '-'}",
               f"TVR {bytes(state.tvr).hex().upper()}", f"TSI {bytes(state.tsi).hex().upper()}",
               f"CVM {state.cvm_result.hex().upper()}"]
    print(f"{state.outcome or 'unfinished'}  ({', '.join(summary)})")
    if state.outcome.startswith("approved"):
        return 0
    return 1 if state.outcome.startswith("declined") else 2

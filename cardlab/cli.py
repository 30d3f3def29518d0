"""``cardlab`` command line: one subcommand group per part (``cardlab card …``).

Everything every command shares lives here, once: the option vocabulary and its deprecated
spellings (:func:`_finish_tree`), the exit status (:mod:`cardlab.exitcodes`), one-line errors
(``cardlab <command>: <what is wrong>``, :func:`main`) and output that stays whole in a pipe.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, cast

from rich.console import Console
from rich.table import Table

import cardlab
from cardlab import exitcodes
from cardlab.cardspec import argtypes
from cardlab.cardspec.argtypes import hex_byte, hex_bytes, key_version, parse_hex
from cardlab.emulator import Card
from cardlab.emulator.gp.lifecycle import CardLife
from cardlab.emulator.journal import ImageJournal

from .display import masked_hex, split_response, sw_text, tlv_lines
from .errors import UsageError, describe_error

DIVERSIFICATION = tuple(s.lower() for s in argtypes.DIVERSIFICATIONS)


def _hex_arg(value: str, what: str, lengths: Sequence[int] | None = None) -> bytes:
    try:
        return parse_hex(value, what, lengths)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- argparse ``type=`` checks: a bad value is a one-line usage error, exit 2 ---------------


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``cardlab <command>: message``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(exitcodes.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Deprecated(argparse.Action):
    """An old spelling kept for one release: one line on stderr, then the new option's value."""

    def __init__(self, option_strings: Sequence[str], dest: str, instead: str = "", **kw: Any) -> None:
        self.instead = instead
        kw.setdefault("help", f"deprecated spelling of {instead}")
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        deprecated(parser.prog, f"{option_string} is deprecated, use {self.instead}")
        setattr(namespace, self.dest, values)


def deprecated(prog: str, message: str) -> None:
    """The one deprecation line on stderr (old spellings go in the next release)."""
    print(f"{prog}: {message} (the old spelling goes in the next release)", file=sys.stderr)


_hex_type = hex_bytes
_byte_type = hex_byte
_key_version = key_version


def _scp_i(value: str) -> int:
    from cardlab.emulator.gp.scp03 import SUPPORTED_I

    supported = ", ".join(f"{i:02X}" for i in sorted(SUPPORTED_I))
    # Amendment D §5.1 table 5-1; values the emulated card implements
    return _byte_type("scp-i", SUPPORTED_I.__contains__, f"an SCP03 i parameter ({supported})")(value)


def _sequence_counter(value: str) -> int:
    # Amendment D §6.2.2.1: the sequence counter is 3 bytes
    try:
        n = int(value, 10)
    except ValueError:
        n = -1
    if not 0 <= n <= 0xFFFFFF:
        raise argparse.ArgumentTypeError(f"expected a decimal number 0-{0xFFFFFF}, got {value!r}")
    return n


def _key_set(value: str) -> tuple[bytes, bytes, bytes]:
    parts = value.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected ENC:MAC:DEK")
    enc, mac, dek = (_hex_type("--keys", (16, 24, 32))(p) for p in parts)
    if not len(enc) == len(mac) == len(dek):
        raise argparse.ArgumentTypeError("the three keys must have the same length")
    return enc, mac, dek


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {value!r}")
    return int(value)


def _looks_like_key_set(value: str) -> bool:
    """The old ``card new --keys ENC:MAC:DEK`` (not a key store file nor a ``pkcs11:`` spec)."""
    return ":" in value and not value.startswith("pkcs11:") and not Path(value).exists()


def _card_keys(args: argparse.Namespace, kdd: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The ISD keys of ``card new``: ``--isd-keys ENC:MAC:DEK``, ``--keys STORE --kmc NAME``
    (diversified by the KDD) or ``--kmc-hex HEX``; the old ``--keys ENC:MAC:DEK`` and
    ``--kmc HEX`` (without a key store) are deprecated spellings of the first and the last."""
    prog = "cardlab card new"
    isd_keys, store, kmc_hex = args.isd_keys, args.keys, args.kmc_hex
    if store is not None and _looks_like_key_set(store):
        if isd_keys is not None:
            raise UsageError("--isd-keys given twice (also as --keys)")
        try:
            isd_keys, store = _key_set(store), None
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--keys: {exc}") from None
        deprecated(prog, "--keys ENC:MAC:DEK is deprecated, use --isd-keys ENC:MAC:DEK (--keys names a key store)")
    if args.kmc is not None and store is None:
        try:
            hex_kmc = parse_hex(args.kmc, "--kmc", (16, 24, 32))
        except ValueError as exc:
            raise UsageError(f"{exc} (a hex KMC is --kmc-hex; --kmc names a key in the --keys key store)") from None
        deprecated(prog, "--kmc HEX is deprecated, use --kmc-hex HEX (--kmc names a key in the --keys key store)")
        if kmc_hex is not None:
            raise UsageError("--kmc-hex given twice (also as --kmc)")
        kmc_hex = hex_kmc
    given = [name for name, v in (("--isd-keys", isd_keys), ("--kmc-hex", kmc_hex), ("--keys", store))
             if v is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} exclude each other")
    scheme = args.diversification or "KDF3"
    if isd_keys is not None:
        keys: tuple[bytes, bytes, bytes] = isd_keys
        return keys
    if kmc_hex is not None:
        from cardlab.cardspec.keys import diversify

        return diversify(scheme.lower(), kmc_hex, kdd)
    if store is not None:
        from cardlab.personalizer.keys import open_keystore

        with open_keystore(store) as ks:
            k = ks.diversify_card_keys(args.kmc or "KMC", scheme, kdd)
            return k.enc, k.mac, k.dek
    return None


def cmd_card_new(args: argparse.Namespace, out: Console) -> int:
    from cardlab.emulator.gp.manager import new_card_state

    from cardlab.cardspec.argtypes import choose_atr

    try:
        atr = choose_atr(args.atr, args.protocol, args.historical_bytes, allow_non_emv=args.allow_non_emv_atr)
    except ValueError as exc:
        raise UsageError(f"--atr: {exc}") from None
    kdd = args.kdd if args.kdd is not None else os.urandom(10)
    keys = _card_keys(args, kdd)
    state = new_card_state(
        atr=atr,
        isd_aid=args.isd_aid,
        keys=keys,
        kvn=args.key_version,
        kdd=kdd,
        scp_i=args.scp_i,
        sequence_counter=args.sequence_counter,
        lifecycle=CardLife[args.lifecycle],
    )
    card = Card(state)
    card.save(args.image)
    out.print(f"created {args.image}: ISD {state.isd_aid.hex().upper()}, KDD {kdd.hex().upper()}, "
              f"key set {args.key_version:02X}, life cycle {args.lifecycle}, ATR {state.atr.hex().upper()}")
    return 0


def cmd_card_send(args: argparse.Namespace, out: Console) -> int:
    card = Card.load(args.image)
    journal = ImageJournal.attach(card, args.image)
    card.power_on()
    worst = 0
    for command in args.apdus:
        resp = card.transmit(command)
        data, sw = split_response(resp)
        out.print(f"[bold]>>[/bold] {command[:5].hex().upper()}{masked_hex(command[5:])}")
        out.print(f"[bold]<<[/bold] {masked_hex(data)} [cyan]{sw:04X}[/cyan] ({sw_text(sw)})")
        for line in tlv_lines(data):
            out.print("     " + line)
        if sw != 0x9000 and sw >> 8 not in (0x61, 0x63):
            worst = 1
    journal.close()
    return worst


def cmd_card_show(args: argparse.Namespace, out: Console) -> int:
    from cardlab.emulator.gp.lifecycle import app_state_name
    from cardlab.emulator.registry import applet_class

    card = Card.load(args.image)
    st = card.state
    out.print(f"[bold]Card[/bold] {args.image}")
    out.print(f"  life cycle      {CardLife(st.lifecycle).name} ({st.lifecycle:02X})")
    out.print(f"  ISD AID         {st.isd_aid.hex().upper()}")
    out.print(f"  ATR             {st.atr.hex().upper()}")
    from cardlab.cardspec.atr import describe as describe_atr

    for line in describe_atr(st.atr):
        out.print(f"    {line}", markup=False, highlight=False)
    from cardlab.emulator import contactless

    out.print(f"  contactless     ATR {contactless.atr(st).hex().upper()}, UID {contactless.uid(st).hex().upper()}")
    out.print(f"  KDD             {st.kdd.hex().upper()}")
    out.print(f"  SCP03 i         {st.scp_i:02X}   next sequence counter {st.sequence_counter}")
    keys = Table(title="Keys (check values only)")
    for col in ("KVN", "KID", "type", "length", "KCV"):
        keys.add_column(col)
    for k in st.keys:
        keys.add_row(f"{k.kvn:02X}", f"{k.kid:02X}", k.kind, str(len(k.value)), k.kcv().hex().upper())
    out.print(keys)
    reg = Table(title="Registry")
    for col in ("kind", "AID", "life cycle", "privileges / modules", "application"):
        reg.add_column(col)
    for lf in st.load_files:
        reg.add_row("load file", lf.aid.hex().upper(), "LOADED" if lf.lifecycle == 1 else f"{lf.lifecycle:02X}",
                    " ".join(m.hex().upper() for m in lf.modules), "")
    for rec in st.instances:
        try:
            klass = applet_class(rec.module_aid)
            name, specific = klass.NAME, klass.SPECIFIC_STATES
        except Exception:  # noqa: BLE001 - an unknown module still gets listed
            name, specific = "?", {}
        life = CardLife(rec.lifecycle).name if rec.aid == st.isd_aid else app_state_name(rec.lifecycle, specific)
        reg.add_row("instance", rec.aid.hex().upper(), life, rec.privileges.hex().upper(), name)
    out.print(reg)
    out.print("[bold]Files[/bold]")
    for line in _describe_files(card):
        out.print("  " + line)
    for title, lines in _emv_counters(card):
        out.print(f"[bold]{title}[/bold]")
        for line in lines:
            out.print("  " + line)
    return 0


def _emv_counters(card: Card) -> list[tuple[str, list[str]]]:
    """Counters and flags of each EMV application instance, from its saved
    state (emulator/applets/emv/state.py): never a key, a PIN or its block."""
    from cardlab.emulator.applets.emv.applet import EmvApplet
    from cardlab.emulator.gp.lifecycle import app_state_name

    sections: list[tuple[str, list[str]]] = []
    for rec in card.state.instances:
        applet = card.applets.get(rec.aid)
        if not isinstance(applet, EmvApplet):
            continue
        d, r = applet.data, applet.data.risk
        life = app_state_name(rec.lifecycle, EmvApplet.SPECIFIC_STATES)
        pin = f"{d.pin_try_counter} of {d.pin_try_limit} tries left" if d.pin_block else "no offline PIN"
        log_capacity = f" of {r.log_records} (SFI {r.log_sfi})" if r.log_sfi else " (no log file)"
        facts = [
            ("life cycle", f"{life}, {'BLOCKED' if d.blocked else 'not blocked'}"
                           + ("" if d.personalized else ", not personalized")),
            ("ATC (9F36)", f"{d.atc} of {r.max_atc}"),
            ("last online ATC (9F13)", str(d.last_online_atc)),
            ("PIN try counter (9F17)", pin),
            ("consecutive offline",
             f"{d.consecutive_offline} (limits {r.lower_consecutive_offline}/{r.upper_consecutive_offline})"),
            ("cumulative offline",
             f"{d.cumulative_offline} (limits {r.lower_cumulative_offline}/{r.upper_cumulative_offline}, minor units)"),
            ("log entries", f"{len(d.log)}{log_capacity}"),
        ]
        if d.kernel:  # dual interface: one ATC and one set of counters for both (issue 16)
            kind = {3: "kernel 3, qVSDC" + (", fDDA v01" if d.fdda_version else "") + f", CTQ {d.ctq.hex().upper()}",
                    2: "kernel 2, EMV mode"}.get(d.kernel, f"kernel {d.kernel}")
            facts.append(("interfaces", f"contact + contactless ({kind})"))
        sections.append((f"EMV application {rec.aid.hex().upper()}", [f"{k:<24}{v}" for k, v in facts]))
    return sections


def _describe_files(card: Card) -> list[str]:
    """The file tree, one line a file: FID, structure, size, SFI, name."""
    from cardlab.emulator import filesystem as fsm

    kinds = {fsm.FDB_DF: "DF", fsm.FDB_TRANSPARENT: "transparent", fsm.FDB_LINEAR_FIXED: "linear fixed",
             fsm.FDB_LINEAR_VARIABLE: "linear variable", fsm.FDB_CYCLIC: "cyclic"}
    lines: list[str] = []

    def visit(node: fsm.Node, depth: int) -> None:
        spec = node.spec
        parts = [f"{'  ' * depth}{spec.fid:04X}", kinds.get(spec.fdb, f"FDB {spec.fdb:02X}")]
        if isinstance(node, fsm.EF):
            if spec.is_record:
                parts.append(f"{len(node.records)}/{spec.max_records} records of {spec.rec_len}")
            else:
                parts.append(f"{spec.size} bytes")
            if spec.sfi is not None:
                parts.append(f"SFI {spec.sfi}")
        if spec.name:
            parts.append(f"name {spec.name.hex().upper()}")
        lines.append("  ".join(parts))
        if isinstance(node, fsm.DF):
            for child in node.children:
                visit(child, depth + 1)

    visit(card.fs.root, 0)
    pin = card.fs.pin
    lines.append(f"card PIN: {pin.tries}/{pin.max_tries} tries left")
    return lines


def cmd_card_serve(args: argparse.Namespace, out: Console) -> int:
    if not args.vpcd:
        raise UsageError("serve needs a transport: --vpcd")
    from cardlab.emulator.transports import vpcd

    Card.load(args.image)  # fail early on a bad image
    vpcd.run(args.image, args.host, args.port, interface=args.interface)
    return 0


def cmd_demo(args: argparse.Namespace, out: Console) -> int:
    from .demo import DemoError, DemoOptions, run_demo

    # everything a run writes goes under --out when it is given, the reports too
    report_dir = args.report_dir or (args.out / "reports" if args.out is not None else Path("reports"))
    opts = DemoOptions(cards=args.cards, stations=args.stations, report_dir=report_dir, out=args.out,
                       seed=args.seed, workers=args.workers, trace=not args.no_trace, force=args.force,
                       quiet=args.quiet)
    try:
        return run_demo(out, opts)
    except DemoError as exc:
        raise UsageError(str(exc)) from exc


def cmd_card_demo(args: argparse.Namespace, out: Console) -> int:
    from .demo import run_card_demo

    return run_card_demo(out, args.out)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="cardlab", description="Emulate, personalize and certify chip cards.",
                       epilog="Exit status: " + "; ".join(f"{k} {v}" for k, v in exitcodes.MEANINGS.items())
                       + ". Options: README.md, 'Command line'.")
    p.add_argument("--version", action="version", version=f"cardlab {cardlab.__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages (also after the command)")
    groups = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
                  p.add_subparsers(dest="group", metavar="{card,perso,test,demo}"))

    card = groups.add_parser("card", help="the emulated card").add_subparsers(dest="command")
    new = card.add_parser("new", help="create a blank card image")
    new.add_argument("image", help="card image file to create (JSON)")
    new.add_argument("--isd-aid", type=_hex_type("--isd-aid", range(5, 17)), default="A000000151000000",
                     help="AID of the ISD, 5-16 bytes hex")
    new.add_argument("--isd-keys", metavar="ENC:MAC:DEK", type=_key_set, help="the ISD's static keys in hex")
    new.add_argument("--keys", metavar="K", help="key store holding the KMC (a file or pkcs11:token=…); "
                     "the ISD keys are diversified from --kmc by the KDD")
    new.add_argument("--kmc", metavar="NAME", help="key-store name of the KMC (with --keys; default KMC)")
    new.add_argument("--kmc-hex", metavar="HEX", type=_hex_type("--kmc-hex", (16, 24, 32)),
                     help="a KMC given in hex (test keys only), diversified by the KDD")
    new.add_argument("--diversification", metavar="EMV|VISA2|KDF3", type=argtypes.diversification,
                     help="card key diversification of --kmc / --kmc-hex, any case (default KDF3)")
    new.add_argument("--key-version", type=_key_version, default="30", help="ISD key version number 01-7F (hex)")
    new.add_argument("--kvn", type=_key_version, dest="key_version", action=_Deprecated, instead="--key-version")
    new.add_argument("--kdd", type=_hex_type("--kdd", (10,)),
                     help="key diversification data, 10 bytes hex (default: random)")
    new.add_argument("--scp-i", type=_scp_i, default="70",
                     help="SCP03 i parameter (hex): 00/10/20/30/60/70, +01 for S16 mode")
    new.add_argument("--sequence-counter", type=_sequence_counter, default=0,
                     help="value the next INITIALIZE UPDATE uses and reports (0-16777215)")
    new.add_argument("--lifecycle", choices=("OP_READY", "INITIALIZED", "SECURED"), default="OP_READY")
    choice = new.add_mutually_exclusive_group()
    choice.add_argument("--atr", metavar="HEX", type=argtypes.atr,
                        help="the whole ATR (checked against EMV's basic ATRs; default: EMV's basic T=1 ATR)")
    choice.add_argument("--protocol", metavar="T=0|T=1", type=argtypes.protocol,
                        help="EMV's basic ATR for this protocol (docs/profile.md, 'Choosing a card's ATR')")
    new.add_argument("--historical-bytes", metavar="HEX", type=_hex_type("--historical-bytes", range(0, 16)),
                     help="with --protocol: the ATR's historical bytes (ISO/IEC 7816-4 §8.1.1; default 8031C0829000)")
    new.add_argument("--allow-non-emv-atr", action="store_true",
                     help="accept an --atr that breaks EMV's rules or is malformed (negative testing)")
    new.set_defaults(func=cmd_card_new)

    send = card.add_parser("send", help="send raw APDUs to an image and print decoded responses")
    send.add_argument("image", help="card image (JSON); saved after the commands")
    send.add_argument("apdus", nargs="+", metavar="HEX", type=_hex_type("APDU"), help="command APDUs in hex")
    send.set_defaults(func=cmd_card_send)

    show = card.add_parser("show", help="print life cycle, registry, files, keys (KCVs) and counters")
    show.add_argument("image", help="card image (JSON)")
    show.set_defaults(func=cmd_card_show)

    serve = card.add_parser("serve", help="serve the card image to PC/SC programs through pcscd")
    serve.add_argument("image", help="card image (JSON); saved as the card changes")
    serve.add_argument("--vpcd", action="store_true", help="connect to pcscd's vpcd driver")
    serve.add_argument("--host", default="127.0.0.1", help="pcscd's vpcd address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=35963, help="pcscd's vpcd port (default 35963)")
    serve.add_argument("--interface", choices=("contact", "contactless"), default="contact",
                       help="contactless: the PC/SC contactless ATR (ISO 14443-4) and GET DATA UID; "
                       "same image, same counters (default contact)")
    serve.set_defaults(func=cmd_card_serve)

    cdemo = card.add_parser("demo", help="a scripted GlobalPlatform card-management session over SCP03")
    cdemo.add_argument("--out", type=Path, help="keep the card image in this directory")
    cdemo.set_defaults(func=cmd_card_demo)

    from cardlab.personalizer.cli import register as register_perso

    register_perso(groups)

    from cardlab.tester.cli import register as register_test

    from .cardio import open_image_channel

    register_test(groups, open_image_channel)

    demo = groups.add_parser("demo", help="the main job: prepare, personalize and certify a batch of cards",
                             description="Sample profiles + test key store + generated records → prepared data → "
                             "card stock → personalization → certification of every card → reports.")
    demo.add_argument("--cards", type=argtypes.positive, default=200, help="number of cards (default 200)")
    demo.add_argument("--stations", type=argtypes.positive, default=2, help="perso stations per batch (default 2)")
    demo.add_argument("--report-dir", type=Path, default=None,
                      help="where the reports go (default: OUT/reports with --out, else reports/)")
    demo.add_argument("--out", type=Path, help="keep every artefact, reports included, in this (new or empty) directory")
    demo.add_argument("--seed", type=argtypes.integer, default=0, help="seed of the generated cardholder records")
    demo.add_argument("--workers", type=argtypes.non_negative, default=0,
                      help="certification processes (default 0: one per CPU)")
    demo.add_argument("--no-trace", action="store_true", help="skip the annotated transaction trace")
    demo.add_argument("--force", action="store_true", help="replace a report already in the report directory")
    demo.add_argument("--quiet", action="store_true", help="no progress bars (they show only on a terminal anyway)")
    demo.set_defaults(func=cmd_demo)
    _finish_tree(p)
    return p


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser below it, once each (aliases are the same parser)."""
    yield parser
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from iter_parsers(sub)


def _finish_tree(root: argparse.ArgumentParser) -> None:
    """One vocabulary for every command, whichever part added it: one-line usage errors; a group
    without its command prints its help; ``-v`` after the command too; choices in any case; number
    types that say what they expect (never ``invalid int value``)."""
    for parser in iter_parsers(root):
        parser.set_defaults(_cardlab_parser=parser)
        if parser is not root and not any("-v" in a.option_strings for a in parser._actions):
            parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                help="log debug messages")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.required = False  # main() prints the group's help instead
            elif action.type is int:
                action.type = argtypes.integer
            elif action.type is float:
                action.type = argtypes.number
            elif action.choices is not None and action.type is None and all(
                    isinstance(c, str) for c in action.choices):
                action.type = argtypes.any_case(list(action.choices))


class _Console(Console):
    """The command line's console. Without a terminal (a pipe, a file) lines are never wrapped or
    cut (a very wide console, soft wrap) and a rule is 100 columns, or its title's width: the
    output is complete and the same whatever reads it."""

    def rule(self, *args: Any, **kwargs: Any) -> None:
        if self.is_terminal:
            super().rule(*args, **kwargs)
            return
        from rich.rule import Rule
        from rich.text import Text

        title = args[0] if args else kwargs.get("title", "")
        length = Text.from_markup(title).cell_len if isinstance(title, str) else 0
        self.print(Rule(*args, **kwargs), width=max(100, length + 8))  # a long title is never cut


#: the width a console gets without a terminal: wide enough that no table cell is cut with "…"
PIPE_COLUMNS = 10000


@contextmanager
def _whole_lines() -> Iterator[None]:
    """Without a terminal, every rich console made while a command runs (in any part) is
    PIPE_COLUMNS wide (rich reads ``COLUMNS``): tables are laid out whole, never cut with "…"."""
    if sys.stdout.isatty():
        yield
        return
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(PIPE_COLUMNS)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) or a usage error argparse already printed (2)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else exitcodes.USAGE
    except KeyboardInterrupt:
        print("cardlab: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit status: :mod:`cardlab.exitcodes`. Every failure is one line on
    stderr, ``cardlab <command>: <what is wrong>``, naming the argument or file (``-v`` adds the
    traceback of an internal error)."""
    parser = build_parser()
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    args.command_line = ["cardlab", *(sys.argv[1:] if argv is None else argv)]  # reports record it
    node: argparse.ArgumentParser = getattr(args, "_cardlab_parser", parser)
    if getattr(args, "func", None) is None:  # `cardlab` or `cardlab card`: the help, on stderr
        node.print_help(sys.stderr)
        return exitcodes.USAGE
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _whole_lines():
        out = _Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        try:
            return int(args.func(args, out))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one line and an exit status
            if isinstance(exc, SystemExit):
                if exc.code is None or isinstance(exc.code, int):
                    return exc.code or 0
                code, message = exitcodes.USAGE, str(exc.code)  # a command's SystemExit("message")
            else:
                code, message = describe_error(exc, args, node)
            if code == exitcodes.INTERNAL and verbose:
                raise
            sys.stdout.flush()
            print(f"{node.prog}: {message}", file=sys.stderr)
            return code


if __name__ == "__main__":
    sys.exit(main())

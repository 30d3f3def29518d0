"""``cardlab test decode``: the bytes someone pasted, explained.

    cardlab test decode tlv 6F1A8407A0000000031010…
    cardlab test decode tvr 0000008000          (or any element: tsi aip auc iac-default iac-denial
                                                 iac-online tac cid tcap atcap ctq ttq cvr iad afl cvm cvmr
                                                 dol scripts, or its tag: 95, 9F07…)
    cardlab test decode cvm 000000000000000042031E031F00 [--currency 978 --exponent 2]
    cardlab test decode dol 9F02069F1A02 [0000000015000250]
    cardlab test decode sw 6A83 [--ins B2]
    cardlab test decode apdu 00A404000E315041592E5359532E4444463031 6F…9000
    cardlab test decode log FILE            (one command/response per line; - reads stdin)

``--json`` prints one JSON document instead. PANs are masked to the first 6
and last 4 digits. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import tlv
from ..channel import CardChannel
from . import apdu, sw, tlvtree
from .elements import BY_KEY, BY_TAG, Context


class DecodeError(ValueError):
    pass


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 open_image: Callable[[str], CardChannel]) -> None:
    del open_image
    names = ", ".join(sorted(BY_KEY))
    p = sub.add_parser("decode", help="explain pasted EMV bytes: TLV, TVR, CVM list, DOL, APDUs, APDU logs",
                       description=f"WHAT is tlv, apdu, log, sw, a data element ({names}) or its tag in hex.")
    p.add_argument("what", help="tlv | apdu | log | sw | an element name | a tag")
    p.add_argument("hex", nargs="*", help="the bytes in hex (apdu: command [response]; dol: DOL [data]; "
                                          "log: a file, - for stdin)")
    p.add_argument("--data", help="dol: the data the terminal filled, in hex")
    p.add_argument("--ins", help="sw: the command's INS (hex), for its EMV meaning")
    p.add_argument("--currency", type=int, help="cvm: the application currency (ISO 4217 numeric, e.g. 978)")
    p.add_argument("--exponent", type=int, help="cvm: the currency exponent (9F44)")
    p.add_argument("--aid", help="iad: the application's AID (its RID settles the scheme)")
    p.add_argument("--all", action="store_true", help="bit-mapped objects: list every bit, clear ones too")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=lambda args, out=None: run(args))


def _hex(text: str, what: str) -> bytes:
    compact = "".join(text.split()).replace(":", "")
    if compact[:2].lower() == "0x":
        compact = compact[2:]
    if not compact or len(compact) % 2:
        raise DecodeError(f"{what}: expected an even number of hex digits, got {text[:40]!r}")
    try:
        return bytes.fromhex(compact)
    except ValueError:
        raise DecodeError(f"{what}: not hex: {text[:40]!r}") from None


def _one(args: argparse.Namespace, what: str) -> bytes:
    if not args.hex:
        raise DecodeError(f"{what}: give the bytes in hex")
    return _hex("".join(args.hex), what)


def decode(args: argparse.Namespace) -> tuple[list[str], Any]:
    """(text lines, JSON document) for the command line's arguments."""
    what = args.what.lower()
    if what == "log":
        if len(args.hex) != 1:
            raise DecodeError("log: give one file (- for stdin)")
        text = sys.stdin.read() if args.hex[0] == "-" else Path(args.hex[0]).read_text()
        try:
            pairs = apdu.parse_log(text)
        except apdu.ApduError as exc:
            raise DecodeError(f"log: {exc}") from None
        lines = apdu.log_lines(pairs)
        session = apdu.log_session(pairs)
        return lines, [apdu.pair_json(c, r, session) for c, r in pairs]
    if what == "apdu":
        if not 1 <= len(args.hex) <= 2:
            raise DecodeError("apdu: give the command and (optionally) the response")
        command = _hex(args.hex[0], "command")
        response = _hex(args.hex[1], "response") if len(args.hex) == 2 else b""
        if len(response) == 1:
            raise DecodeError("response: a response APDU ends with two status bytes")
        try:
            apdu.parse_command(command)
        except apdu.ApduError as exc:
            raise DecodeError(f"command: {exc}") from None
        session = apdu.log_session([(command, response)])
        lines = (apdu.pair_lines(command, response, session) if response
                 else apdu.command_lines(command, session))
        return lines, apdu.pair_json(command, response or b"\x90\x00", apdu.log_session([(command, response)]))
    if what == "sw":
        value = _one(args, "sw")
        if len(value) != 2:
            raise DecodeError("sw: a status word is 2 bytes")
        ins = int(_hex(args.ins, "--ins")[0]) if args.ins else None
        code = int.from_bytes(value, "big")
        return [sw.text(code, ins)], {"sw": f"{code:04X}", "meaning": sw.meaning(code, ins),
                                      "category": sw.category(code)}
    if what == "tlv":
        data = _one(args, "tlv")
        mask = tlvtree.masker(tlvtree.pans_in(data))
        try:
            doc = tlvtree.to_json(data, mask, tlvtree.context_for(data, Context(mask=mask)))
        except tlv.TlvError as exc:
            raise DecodeError(f"tlv: not BER-TLV: {exc}") from None
        return list(tlvtree.lines(data, mask, tlvtree.context_for(data, Context(mask=mask)))), doc
    explainer = BY_KEY.get(what)
    if explainer is None:
        try:
            explainer = BY_TAG.get(int(what, 16))
        except ValueError:
            explainer = None
    if explainer is None:
        raise DecodeError(f"unknown element {args.what!r}: tlv, apdu, log, sw or one of {', '.join(sorted(BY_KEY))}")
    filled: bytes | None
    if explainer.key == "dol" and len(args.hex) == 2 and not args.data:
        value, filled = _hex(args.hex[0], "dol"), _hex(args.hex[1], "data")
    else:
        value = _one(args, what)
        filled = _hex(args.data, "--data") if args.data else None
    ctx = Context(currency=args.currency, exponent=args.exponent,
                  aid=_hex(args.aid, "--aid") if args.aid else b"", dol_data=filled,
                  every_bit=args.all)
    try:
        body = explainer.lines(value, ctx)
        doc = explainer.json(value, ctx)
    except ValueError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    head = f"{explainer.title} {value.hex().upper()} ({explainer.source})"
    return [head, *("  " + line for line in body)], {"element": explainer.title, "source": explainer.source,
                                                      "hex": value.hex().upper(), "decoded": doc}


def run(args: argparse.Namespace) -> int:
    try:
        lines, doc = decode(args)
    except (DecodeError, OSError) as exc:
        print(f"cardlab test decode: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(lines))
    return 0

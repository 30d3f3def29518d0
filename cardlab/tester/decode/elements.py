"""Which decoder explains which data element: one table, by tag (for TLV
trees) and by short name (for ``cardlab test decode NAME HEX``).

Each explainer turns a value into lines of text and into JSON. A value that
does not decode is explained by one line saying why, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import afl, bits, cvm, dol, iad
from .bits import BitTable
from .values import value_text


@dataclass(frozen=True)
class Context:
    """What some decoders need from around the value: the application
    currency and exponent (9F42, 9F44) for CVM amounts, the AID for the
    IAD's scheme, the data a terminal filled for a DOL."""

    currency: int | None = None
    exponent: int | None = None
    aid: bytes = b""
    dol_data: bytes | None = None
    mask: Callable[[str], str] = field(default=lambda s: s)
    every_bit: bool = False  # bit-mapped objects: list clear bits too


@dataclass(frozen=True)
class Explainer:
    key: str
    title: str
    source: str
    lines: Callable[[bytes, Context], list[str]]
    json: Callable[[bytes, Context], Any]
    tags: tuple[int, ...] = ()


def _bit_explainer(table: BitTable, tags: tuple[int, ...] = ()) -> Explainer:
    return Explainer(table.key, table.name, table.source,
                     lambda v, c: bits.lines(table, v, every_bit=c.every_bit), lambda v, c: bits.to_json(table, v),
                     tags or ((table.tag,) if table.tag is not None else ()))


def dol_lines(value: bytes, ctx: Context) -> list[str]:
    """The DOL as a table: tag, name, length (and the value the terminal filled)."""
    entries = dol.parse(value)
    values = dol.split(entries, ctx.dol_data) if ctx.dol_data is not None else None
    width = max((len(f"{e.tag:X}") for e in entries), default=2)
    out = []
    for i, e in enumerate(entries):
        row = f"{e.tag:<{width}X}  {e.length:>3}  {e.name}"
        if values is not None:
            row += f" = {value_text(e.tag, values[i], ctx.mask)}"
        out.append(row)
    total = sum(e.length for e in entries)
    return [f"{'tag':<{width}}  len  name" + (" = value filled" if values is not None else ""), *out,
            f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}, {total} bytes of data"]


def _dol_json(value: bytes, ctx: Context) -> Any:
    entries = dol.parse(value)
    values = dol.split(entries, ctx.dol_data) if ctx.dol_data is not None else [None] * len(entries)
    return [{"tag": f"{e.tag:X}", "name": e.name, "length": e.length,
             **({"value": ctx.mask(v.hex().upper())} if v is not None else {})} for e, v in zip(entries, values)]


def _cvr_table(value: bytes) -> BitTable:
    return iad.VISA_CVR if len(value) == 4 else iad.MCHIP_CVR


#: 9F5B, Issuer Script Results (Book 4 Annex A5): per script 5 bytes
SCRIPT_RESULTS = {0: "script not performed", 1: "script processing failed", 2: "script processing successful"}


def script_results(value: bytes) -> list[dict[str, Any]]:
    if not value or len(value) % 5:
        raise ValueError(f"issuer script results are 5 bytes per script, got {len(value)}")
    out = []
    for i in range(0, len(value), 5):
        b, ident = value[i], value[i + 1:i + 5]
        seq = b & 0x0F
        out.append({"result": SCRIPT_RESULTS.get(b >> 4, f"RFU {b >> 4:X}"),
                    "failing_command": ("not specified" if seq == 0 else "15th or later" if seq == 15 else seq),
                    "script_identifier": ident.hex().upper()})
    return out


def _script_lines(value: bytes, ctx: Context) -> list[str]:
    return [f"script {i}: {r['result']}"
            + (f", failing command {r['failing_command']}" if "failed" in r["result"] else "")
            + f", identifier {r['script_identifier']}" for i, r in enumerate(script_results(value), 1)]


EXPLAINERS: tuple[Explainer, ...] = (
    _bit_explainer(bits.TVR), _bit_explainer(bits.TSI), _bit_explainer(bits.AIP), _bit_explainer(bits.AUC),
    _bit_explainer(bits.IAC_DEFAULT), _bit_explainer(bits.IAC_DENIAL), _bit_explainer(bits.IAC_ONLINE),
    _bit_explainer(bits.TAC), _bit_explainer(bits.CID), _bit_explainer(bits.TERMINAL_CAPABILITIES),
    _bit_explainer(bits.ADDITIONAL_TERMINAL_CAPABILITIES),
    _bit_explainer(bits.CTQ), _bit_explainer(bits.TTQ),
    Explainer("cvr", "Card Verification Results", "Visa VIS 1.5 Appendix A / M/Chip 4 (by length: 4 or 6 bytes)",
              lambda v, c: bits.lines(_cvr_table(v), v, every_bit=c.every_bit), lambda v, c: bits.to_json(_cvr_table(v), v)),
    Explainer("iad", "Issuer Application Data", "EMV 4.4 Book 3 Annex A; VIS 1.5 / M/Chip 4",
              lambda v, c: iad.lines(v, c.aid), lambda v, c: iad.to_json(v, c.aid), (0x9F10,)),
    Explainer("afl", "Application File Locator", "EMV 4.4 Book 3 §10.2",
              lambda v, c: afl.lines(v), lambda v, c: [e.to_json() for e in afl.parse(v)], (0x94,)),
    Explainer("cvm", "CVM List", "EMV 4.4 Book 3 §10.5, Annex C3",
              lambda v, c: cvm.lines(v, c.currency, c.exponent), lambda v, c: cvm.to_json(v), (0x8E,)),
    Explainer("cvmr", "CVM Results", "EMV 4.4 Book 4 Annex A4",
              lambda v, c: cvm.results_lines(v), lambda v, c: cvm.results_lines(v), (0x9F34,)),
    Explainer("dol", "Data Object List", "EMV 4.4 Book 3 §5.4", dol_lines, _dol_json,
              (0x9F38, 0x8C, 0x8D, 0x9F49, 0x97)),
    Explainer("scripts", "Issuer Script Results", "EMV 4.4 Book 4 Annex A5",
              _script_lines, lambda v, c: script_results(v), (0x9F5B,)),
)

BY_KEY: dict[str, Explainer] = {e.key: e for e in EXPLAINERS}
BY_KEY.update({"iac": BY_KEY["iac-default"], "pdol": BY_KEY["dol"], "cdol1": BY_KEY["dol"],
               "cdol2": BY_KEY["dol"], "ddol": BY_KEY["dol"], "tdol": BY_KEY["dol"], "9f5b": BY_KEY["scripts"]})
BY_TAG: dict[int, Explainer] = {t: e for e in EXPLAINERS for t in e.tags}
# the IAC/TAC explainers share the TVR table; the terminal's TACs have no tag of their own (Book 4 §6.3.7)


def explain(tag: int, value: bytes, ctx: Context | None = None) -> list[str]:
    """The lines that explain a data element, or none when no decoder knows it."""
    e = BY_TAG.get(tag)
    if e is None:
        return []
    try:
        return e.lines(value, ctx or Context())
    except ValueError as exc:
        return [f"(does not decode: {exc})"]

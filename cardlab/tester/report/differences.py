"""Differences decoded for the reader of a report: where a result's expected
and found values are a data object the tester can decode, the report says
what differs in words — text fields as text, bit-mapped objects (AIP, AUC,
IACs, TVR, the CVR inside the IAD) as the names of the bits that differ, a
CVM list as the rules and amounts that differ — with the tester's own
decoders (:mod:`cardlab.tester.decode`).

The object is found from the rule (``rules.DATA_TAGS``: one rule per tag) or
from the tag the evidence starts with (``"9F0D Issuer Action Code …"``).

>>> differences("DATA-IAC-001", "9F0D …", "F040AC8000", "F040AC8800")
['byte 4 b4 merchant forced transaction online: set on the card, not expected']
"""

from __future__ import annotations

import re

from ..decode import bits, cvm, iad
from ..decode.bits import BitTable
from ..rules import DATA_TAGS

#: text objects (EMV Book 3 Annex A: format "an" / "ans")
TEXT_TAGS = {0x50: "application label", 0x9F12: "application preferred name", 0x5F20: "cardholder name",
             0x5F2D: "language preference"}
#: bit-mapped objects by tag (Book 3 Annex C; the IACs share the TVR's layout, Book 3 §10.7)
BIT_TAGS: dict[int, BitTable] = {0x82: bits.AIP, 0x9F07: bits.AUC, 0x9F0D: bits.IAC_DEFAULT, 0x9F0E: bits.IAC_DENIAL,
                                 0x9F0F: bits.IAC_ONLINE, 0x95: bits.TVR, 0x9B: bits.TSI}
_RULE_TAG = {rid: tag for tag, (rid, _d, _r) in DATA_TAGS.items()}
_LEADING_TAG = re.compile(r"\s*([0-9A-F]{2}(?:[0-9A-F]{2})?)\b")


def tag_of(rule: str, evidence: str) -> int | None:
    """The data object a result is about: the rule's own tag, else the evidence's first word."""
    if rule in _RULE_TAG:
        return _RULE_TAG[rule]
    m = _LEADING_TAG.match(evidence)
    return int(m.group(1), 16) if m else None


def _hex(text: str) -> bytes | None:
    t = text.replace(" ", "")
    if not t or len(t) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", t):
        return None
    return bytes.fromhex(t)


def bit_differences(table: BitTable, expected: bytes, found: bytes) -> list[str]:
    """Each field whose value differs, named as the book names it."""
    if len(expected) != table.length or len(found) != table.length:
        return []
    out = []
    for e, f in zip(bits.decode(table, expected), bits.decode(table, found)):
        if e.value == f.value:
            continue
        where = f"byte {e.field.byte} {e.field.bits} {e.field.name}"
        if e.field.flag:
            out.append(f"{where}: {'set on the card, not expected' if f.value else 'expected, not set on the card'}")
        else:
            out.append(f"{where}: expected {e.field.values.get(e.value, str(e.value))}, "
                       f"found {f.field.values.get(f.value, str(f.value))}")
    want_rfu, got_rfu = set(bits.rfu_set(table, expected)), set(bits.rfu_set(table, found))
    out += [f"byte {b} b{n} RFU: set on the card, not expected" for b, n in sorted(got_rfu - want_rfu)]
    out += [f"byte {b} b{n} RFU: expected set, clear on the card" for b, n in sorted(want_rfu - got_rfu)]
    return out


def cvm_differences(expected: bytes, found: bytes) -> list[str]:
    """Amounts X and Y and the rules (Book 3 §10.5) that differ, in list order."""
    try:
        e, f = cvm.parse(expected), cvm.parse(found)
    except ValueError:
        return []
    out = [f"amount {n}: expected {a}, found {b}" for n, a, b in (("X", e.x, f.x), ("Y", e.y, f.y)) if a != b]
    for i in range(max(len(e.rules), len(f.rules))):
        a = e.rules[i] if i < len(e.rules) else None
        b = f.rules[i] if i < len(f.rules) else None
        if a != b:
            out.append(f"rule {i + 1}: expected {a if a else '(none)'}; found {b if b else '(none)'}")
    return out


def cvr_differences(expected: bytes, found: bytes) -> list[str]:
    """The CVR inside two Issuer Application Data (9F10) of the same scheme."""
    pe, pf = iad.parse(expected), iad.parse(found)
    table = iad.cvr_table(pe)
    if table is None or pe.scheme != pf.scheme:
        return []
    return [f"CVR {d}" for d in bit_differences(table, pe.cvr, pf.cvr)]


def _text(value: bytes) -> str | None:
    return value.decode("ascii") if all(0x20 <= b < 0x7F for b in value) else None


def _one(tag: int, expected: str, found: str) -> list[str]:
    e, f = _hex(expected), _hex(found)
    if e is None or f is None or e == f:
        return []
    if tag in TEXT_TAGS:
        te, tf = _text(e), _text(f)
        if te is not None and tf is not None:
            return [f'{TEXT_TAGS[tag]}: expected "{te}", found "{tf}"']
        return []
    if tag in BIT_TAGS:
        return bit_differences(BIT_TAGS[tag], e, f)
    if tag == 0x8E:
        return cvm_differences(e, f)
    if tag == 0x9F10:
        return cvr_differences(e, f)
    return []


def differences(rule: str, evidence: str, expected: str, found: str) -> list[str]:
    """What differs between ``expected`` and ``found`` in words; [] when the
    values are not a decodable object (or do not differ)."""
    tag = tag_of(rule, evidence)
    if tag is None or not expected or not found:
        return []
    exps, fnds = expected.split("; "), found.split("; ")
    if len(exps) != len(fnds):
        return []
    out: list[str] = []
    for e, f in zip(exps, fnds):
        out += _one(tag, e, f)
    return out

"""GET STATUS registry views (GP Card Spec 2.3 §11.4).

P1 selects the registry subset (table 11-36): 80 the ISD, 40 applications and
security domains, 20 Executable Load Files, 10 Executable Load Files and their
Executable Modules. P2 b2 selects the response format: 1 → GP registry data
in TLV (E3 templates, table 11-38), 0 → the deprecated format (§11.4.3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from cardlab.cardspec import tlv

from ..apdu import SW, StatusError
from ..state import CardState
from .lifecycle import LOAD_FILE_LOADED

ISD = 0x80
APPS = 0x40
LOAD_FILES = 0x20
LOAD_FILES_AND_MODULES = 0x10


@dataclass(frozen=True)
class Query:
    """The data field of GET STATUS: search criteria 4F (a possibly empty AID
    prefix) and the optional tag list 5C restricting each E3 template."""

    aid_prefix: bytes = b""
    tags: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, data: bytes) -> Query:
        if not data:
            return cls()  # lenient: no criteria = all (pySim sends none)
        try:
            items = tlv.parse(data)
        except tlv.TlvError as exc:
            raise StatusError(SW.WRONG_DATA, "malformed GET STATUS criteria") from exc
        if not items or items[0].tag != 0x4F:
            raise StatusError(SW.WRONG_DATA, "search criteria must start with 4F")
        tags: tuple[int, ...] | None = None
        for item in items[1:]:
            if item.tag != 0x5C or tags is not None:
                raise StatusError(SW.WRONG_DATA, "unsupported search criteria")
            tags = tag_list(item.value)
        return cls(items[0].value, tags)


def tag_list(data: bytes) -> tuple[int, ...]:
    """Concatenated BER tags (the value of 5C)."""
    out: list[int] = []
    i = 0
    while i < len(data):
        start = i
        i += 1
        if data[start] & 0x1F == 0x1F:
            while i < len(data) and data[i] & 0x80:
                i += 1
            i += 1
        if i > len(data):
            raise StatusError(SW.WRONG_DATA, "truncated tag list")
        out.append(int.from_bytes(data[start:i], "big"))
    return tuple(out)


def _lv(value: bytes) -> bytes:
    return bytes([len(value)]) + value


def _e3(items: list[tuple[int, bytes]], tags: tuple[int, ...] | None) -> bytes:
    if tags is not None:
        by_tag: dict[int, list[bytes]] = {}
        for t, v in items:
            by_tag.setdefault(t, []).append(v)
        items = [(t, v) for t in tags for v in by_tag.get(t, [])]
    return tlv.encode(0xE3, tlv.encode_all(items))


def entries(state: CardState, p1: int, tlv_format: bool, query: Query) -> list[bytes]:
    """Encoded registry entries matching ``query``, in registry order;
    6A86 for an unknown P1, 6A88 when nothing matches (table 11-37)."""
    if p1 not in (ISD, APPS, LOAD_FILES, LOAD_FILES_AND_MODULES):
        raise StatusError(SW.INCORRECT_P1P2, "unknown GET STATUS subset")
    if query.tags is not None and not tlv_format:
        raise StatusError(SW.WRONG_DATA, "tag list needs the TLV format")
    out: list[bytes] = []
    prefix = query.aid_prefix
    if p1 in (ISD, APPS):
        for rec in state.instances:
            is_isd = rec.aid == state.isd_aid
            if is_isd != (p1 == ISD) or not rec.aid.startswith(prefix):
                continue
            lc = state.lifecycle if is_isd else rec.lifecycle
            if tlv_format:
                items = [(0x4F, rec.aid), (0x9F70, bytes([lc])), (0xC5, rec.privileges)]
                if not is_isd:
                    items += [(0xC4, rec.load_file_aid), (0xCC, state.isd_aid)]
                out.append(_e3(items, query.tags))
            else:  # §11.4.3.1: AID, life cycle, first privilege byte
                out.append(_lv(rec.aid) + bytes([lc, rec.privileges[0]]))
    else:
        for lf in state.load_files:
            if not lf.aid.startswith(prefix):
                continue
            modules = lf.modules if p1 == LOAD_FILES_AND_MODULES else []
            if tlv_format:
                items = [(0x4F, lf.aid), (0x9F70, bytes([lf.lifecycle or LOAD_FILE_LOADED]))]
                items += [(0xCE, lf.version), (0xCC, state.isd_aid)]
                items += [(0x84, m) for m in modules]
                out.append(_e3(items, query.tags))
            else:
                entry = _lv(lf.aid) + bytes([lf.lifecycle, 0x00])
                if p1 == LOAD_FILES_AND_MODULES:
                    entry += bytes([len(modules)]) + b"".join(_lv(m) for m in modules)
                out.append(entry)
    if not out:
        raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, "no registry entry matches")
    return out


def page(items: list[bytes], budget: int) -> tuple[bytes, list[bytes]]:
    """As many whole entries as fit in ``budget`` bytes (at least one), and
    the rest, which the card announces with 6310 (§11.4.3)."""
    used = 0
    n = 0
    for item in items:
        if n and used + len(item) > budget:
            break
        used += len(item)
        n += 1
    return b"".join(items[:n]), items[n:]

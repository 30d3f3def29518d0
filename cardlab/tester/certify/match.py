"""Cards matched to their records by what the card says (issue 11): the PAN (5A) and PAN
sequence number (5F34) read from the card's own records, never the card's position in a
directory or a reader queue.

Before the certification transaction the tester SELECTs each profile application and reads the
records the profile's AFL names (READ RECORD needs no GET PROCESSING OPTIONS, EMV Book 3
§6.5.11, and changes no counter). The (PAN, PSN) found names the record; a hint (the batch's
job database, ``--record``) is only compared with it. Three findings, each its own rule and
never a cascade of data rules:

* MATCH-001 — the card's PAN and PSN name exactly one record (a card with no record, or a hint
  that names another record, fails here and nowhere else);
* MATCH-002 — no other card of the run holds the same PAN and PSN (two cards, one record);
* MATCH-003 — every record of the records file has a card (a whole batch certified).

A card without a PSN (5F34 absent) matches a record whose PSN is empty or 00 (EMV Book 3
Annex A: the PSN is optional; Book 2 A1.4.1 derives with 00 then).
"""

from __future__ import annotations

import bisect
import copy
import threading
from dataclasses import dataclass, field

from ..channel import CardChannel
from ..exchange import NoStatusWord, answer
from ..rules import FAIL, MATCH_RULE_IDS, PASS, Result
from ..sources import IssuerProfile, Record, mask_pan
from ..tlv import TlvError, flatten

__all__ = ["MATCH_RULE_IDS", "Matcher", "key_of", "read_identity"]

Key = tuple[str, str]


def key_of(pan: str, psn: str | None) -> Key:
    """The matching key: PAN digits and the PSN as two digits (absent or empty: 00)."""
    return pan, (psn.zfill(2)[-2:] if psn else "00")


def read_identity(channel: CardChannel, profile: IssuerProfile) -> tuple[Key | None, str]:
    """(PAN, PSN) as the card holds them, read by SELECT + READ RECORD per the profile's AFL
    (the first 5A and 5F34 in AFL order; the reading stops once both are found);
    (None, why) when no application of the profile gives a PAN."""
    why = "no application of the profile answers SELECT"
    for app in profile.applications:
        aid = app.aid
        try:
            _fci, sw = answer(aid, channel.transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00"))
        except NoStatusWord as exc:
            return None, str(exc)
        if sw not in (0x9000, 0x6283):  # 6283: a blocked application still reads (Book 1 §12.4)
            why = f"SELECT {aid.hex().upper()} answered {sw:04X}"
            continue
        afl = app.afl()
        pan: str | None = None
        psn: str | None = None
        for i in range(0, len(afl) - 3, 4):
            sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
            for n in range(first, last + 1):
                if pan is not None and psn is not None:
                    break  # both found: the certification reads every record again anyway
                cmd = bytes((0x00, 0xB2, n, (sfi << 3) | 4, 0x00))
                try:
                    data, sw = answer(cmd, channel.transmit(cmd))
                except NoStatusWord as exc:
                    return None, str(exc)
                if sw != 0x9000:
                    continue
                try:
                    found = flatten(data)
                except TlvError:
                    continue
                if 0x5A in found and pan is None:
                    pan = found[0x5A].hex().upper().rstrip("F")
                if 0x5F34 in found and psn is None:
                    psn = found[0x5F34].hex().upper()
        if pan:
            return key_of(pan, psn), ""
        why = f"no PAN (5A) in the records the AFL of {aid.hex().upper()} names"
    return None, why


def _psn_text(key: Key) -> str:
    return f"PAN {mask_pan(key[0])}, PSN {key[1]}"


@dataclass
class Matcher:
    """The records of one run, looked up by what each card says; thread-safe (several readers)."""

    records: list[Record]
    # key → its record, or a tuple of them when the records file holds the key twice (one record
    # per key is the rule: no list for it, as the index holds every record of the batch)
    by_key: dict[Key, Record | tuple[Record, ...]] = field(default_factory=dict)
    # record index → the first card (id) that held its PAN and PSN: a key the run reaches here names
    # exactly one record, so the index stands for the key (no copy of the card's PAN per card)
    seen: dict[int, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _by_index: dict[int, Record] | None = field(default=None, init=False, repr=False)  # records not in file order

    def __post_init__(self) -> None:
        by_key = self.by_key
        for r in self.records:
            key = key_of(r.pan, r.psn)
            had = by_key.setdefault(key, r)
            if had is not r:
                by_key[key] = (*had, r) if isinstance(had, tuple) else (had, r)
        if any(a.index >= b.index for a, b in zip(self.records, self.records[1:])):
            self._by_index = {r.index: r for r in self.records}

    def fresh(self) -> Matcher:
        """A matcher over the same records and index that has seen no card yet (another run over the
        same batch: building the index again is a pass over every record)."""
        m = copy.copy(self)
        m.seen, m._lock = {}, threading.Lock()
        return m

    def record(self, index: int) -> Record | None:
        """The record at position ``index`` of the records file (None: no such record, e.g. one
        the reader refused). A binary search of the list in file order: a scan per card made a
        run quadratic in the batch (50,000 comparisons a card at 100,000 records)."""
        if self._by_index is not None:
            return self._by_index.get(index)
        i = bisect.bisect_left(self.records, index, key=lambda r: r.index)
        return self.records[i] if i < len(self.records) and self.records[i].index == index else None

    def match(self, key: Key | None, why: str, card_id: str, hint: int | None) -> tuple[Record | None, list[Result]]:
        """The card's record (None: it cannot be certified) and its MATCH-001/002 results."""
        if key is None:
            return None, [Result("MATCH-001", FAIL, f"the card's PAN could not be read: {why}", "a PAN and PSN", "-")]
        hinted = self.record(hint) if hint is not None else None
        hit = self.by_key.get(key)
        found = [] if hit is None else list(hit) if isinstance(hit, tuple) else [hit]
        said = _psn_text(key)
        if not found:
            extra = f"; the batch named record {hinted.index} ({hinted.masked}, PSN {hinted.psn})" if hinted else ""
            return None, [Result("MATCH-001", FAIL, f"the card holds {said}: no record of the records file has "
                                 f"this PAN and PSN{extra}", "one record", "none")]  # fmt: skip
        if len(found) > 1:
            ids = ", ".join(str(r.index) for r in found)
            return None, [Result("MATCH-001", FAIL, f"the card holds {said}: records {ids} all have it — the records "
                                 "file holds one card twice", "one record", f"records {ids}")]  # fmt: skip
        rec = found[0]
        out = []
        if hinted is not None and hinted.index != rec.index:
            out.append(Result("MATCH-001", FAIL, f"the card holds {said}, which is record {rec.index}; it was given as "
                              f"record {hinted.index} ({hinted.masked}): certified against record {rec.index}",
                              f"record {hinted.index}", f"record {rec.index}"))  # fmt: skip
        else:
            out.append(Result("MATCH-001", PASS, f"the card holds {said}: record {rec.index}", "one record",
                              f"record {rec.index}"))  # fmt: skip
        with self._lock:
            first = self.seen.setdefault(rec.index, card_id)
        if first != card_id:
            out.append(Result("MATCH-002", FAIL, f"card {first} holds the same {said} (record {rec.index}): two cards, "
                              "one record", "one card per record", f"also card {first}"))  # fmt: skip
        else:
            out.append(Result("MATCH-002", PASS, f"no other card of this run holds {said}"))
        return rec, out

    def without_card(self) -> list[Record]:
        """The records no card of the run matched, in file order."""
        return [r for r in self.records if r.index not in self.seen]

"""Data objects of a personalized EMV application's records, looked up by tag (CDOL1 and CDOL2 for
GENERATE AC, EMV Book 3 §5.4; the CVM list; the ICC public key exponent …): the first value found
depth first through the records in order, as :func:`cardlab.cardspec.tlv.find` finds it in each."""

from __future__ import annotations

from cardlab.cardspec import tlv

from .state import EmvData

#: in ``EmvData.tag_cache``: every tag of the records is in the cache (a tag not there is in no record)
_INDEXED = -1


def record_tag(data: EmvData, tag: int) -> bytes | None:
    """Value of ``tag`` in the personalized records (the first one found, depth first, records in
    order: :func:`tlv.find` on each). Once personalized, the first lookup indexes every tag of the
    records in ``data.tag_cache`` in one pass (GENERATE AC and the issuer's scripts look up CDOL1,
    CDOL2, the PAN … in every transaction, and a card is loaded afresh for each certification).
    Whoever changes the records clears the cache (an issuer script's UPDATE RECORD); the last
    STORE DATA indexes the final records for its completeness checks."""
    cache = data.tag_cache
    if _INDEXED not in cache:
        if not data.personalized:
            return scan(data, tag)
        index_records(data.records, cache)
    return cache.get(tag)


def scan(data: EmvData, tag: int) -> bytes | None:
    for _key, record in sorted(data.records.items()):
        try:
            found = tlv.find(record, tag)
        except tlv.TlvError:
            continue
        if found is not None:
            return found.value
    return None


def index_records(records: dict[tuple[int, int], bytes], cache: dict[int, bytes | None]) -> None:
    """The first value of each tag as :func:`scan` would find it: a record whose top level is not
    BER-TLV is skipped; in one whose nested object is malformed, tlv.find fails for every tag not
    found before that object, so the walk of that record stops there."""
    def walk(items: list[tlv.Tlv]) -> None:
        for t in items:
            cache.setdefault(t.tag, t.value)
            if t.constructed:
                walk(t.children)

    for _key, record in sorted(records.items()):
        try:
            top = tlv.parse(record)
        except tlv.TlvError:
            continue
        try:
            walk(top)
        except tlv.TlvError:
            pass
    cache[_INDEXED] = None

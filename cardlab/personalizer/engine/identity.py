"""Card identity: who the card in the reader is, read before any session.

The CIN (GET DATA 45) and the CPLC (GET DATA 9F7F) of the card, from its
issuer security domain (GP §11.3); the CPLC is kept only as its SHA-256 so the
manufacturing data stays off logs and the job database. The job database uses
the pair to refuse a card already used in the batch and to check, after a
crash, that the card in hand is the one the attempt was started on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cardlab.personalizer.engine.channel import SW_OK, Transmit, status_word
from cardlab.personalizer.engine.errors import CardError


@dataclass(frozen=True)
class Identity:
    cin: str  # hex
    cplc_hash: str  # SHA-256 of the CPLC, hex (the CPLC itself stays off the logs)


def read_identity(transmit: Transmit, isd_aid: bytes) -> Identity:
    """SELECT the ISD, GET DATA 45 (CIN) and 9F7F (CPLC), no secure channel (GP §11.3)."""
    from cardlab.cardspec import tlv

    resp = transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(isd_aid))) + isd_aid + b"\x00")
    if status_word(resp) != SW_OK:
        raise CardError(f"SELECT ISD: SW {status_word(resp):04X}")
    values: dict[int, bytes] = {}
    for tag in (0x45, 0x9F7F):
        resp = transmit(bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00)))
        if status_word(resp) == SW_OK:
            found = tlv.find(resp[:-2], tag)
            values[tag] = found.value if found is not None else resp[:-2]
    if 0x45 not in values and 0x9F7F not in values:
        raise CardError("the card gives neither its CIN (45) nor its CPLC (9F7F)")
    cplc = values.get(0x9F7F, b"")
    return Identity(values.get(0x45, b"").hex().upper(), hashlib.sha256(cplc).hexdigest())

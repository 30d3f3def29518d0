"""Values derived from the profile's fields, bytes out: DOL encoding (EMV 4.4
Book 3 §5.4), the AIP (Annex C1), the AFL (§10.2) and the CPS record DGI
(``docs/dgi-map.md``).

Pure functions of plain values, so the model (:mod:`.model`) and the parser
(:mod:`.parse`) can both use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from .tables import tag_bytes


class DolItem(Protocol):
    """What a DOL entry has (:class:`.model.DolEntry`)."""

    @property
    def tag(self) -> int: ...

    @property
    def length(self) -> int: ...


def encode_dol(dol: Iterable[DolItem]) -> bytes:
    """DOL bytes (Book 3 §5.4): tag ‖ one-byte length for each entry.

    >>> from cardlab.personalizer.profile.model import DolEntry
    >>> encode_dol((DolEntry(0x9F02, 6), DolEntry(0x95, 5))).hex().upper()
    '9F02069505'
    """
    return b"".join(tag_bytes(e.tag) + bytes((e.length,)) for e in dol)


def derive_aip(
    oda: Sequence[str], cardholder_verification: bool, trm: bool, issuer_auth: bool, *, emv_mode: bool = False
) -> bytes:
    """AIP byte 1 (Book 3 Annex C1): b7 SDA, b6 DDA, b5 cardholder verification, b4 terminal risk
    management, b3 issuer authentication, b1 CDA. Byte 2 is RFU for contact (00); with
    ``emv_mode`` (a kernel 2 contactless section) byte 2 b8 "EMV mode supported" (EMV Contactless
    Book C-2; Book 3 reserves that bit for the contactless books, contact terminals ignore it),
    so that one AIP — and one signed static data — serves both interfaces.

    >>> derive_aip(("SDA",), True, True, True).hex().upper()
    '5C00'
    """
    b1 = 0
    b1 |= 0x40 if "SDA" in oda else 0
    b1 |= 0x20 if "DDA" in oda else 0
    b1 |= 0x10 if cardholder_verification else 0
    b1 |= 0x08 if trm else 0
    b1 |= 0x04 if issuer_auth else 0
    b1 |= 0x01 if "CDA" in oda else 0
    return bytes((b1, 0x80 if emv_mode else 0))


def encode_afl(records: Iterable[tuple[int, int, bool]]) -> bytes:
    """Value of 94 (Book 3 §10.2) for records given as (SFI, number, signed for ODA):
    SFI<<3 ‖ first ‖ last ‖ number signed, per entry.

    Consecutive records of an SFI share an entry; since the signed records
    of an entry must come first, a signed record after an unsigned one
    starts a new entry.

    >>> encode_afl([(1, 1, False), (2, 1, True), (2, 2, True), (2, 3, False)]).hex().upper()
    '0801010010010302'
    """
    entries: list[list[tuple[int, int, bool]]] = []
    for rec in sorted(records, key=lambda r: (r[0], r[1])):
        sfi, number, oda = rec
        last = entries[-1][-1] if entries else None
        if last is not None and last[0] == sfi and last[1] + 1 == number and not (oda and not last[2]):
            entries[-1].append(rec)
        else:
            entries.append([rec])
    out = bytearray()
    for entry in entries:
        signed = sum(1 for r in entry if r[2])
        out += bytes((entry[0][0] << 3, entry[0][1], entry[-1][1], signed))
    return bytes(out)


def record_dgi(sfi: int, number: int) -> int:
    """The CPS DGI ``SSRR`` that carries record ``number`` of file ``sfi`` (docs/dgi-map.md).

    >>> f"{record_dgi(2, 1):04X}"
    '0201'
    """
    return (sfi << 8) | number

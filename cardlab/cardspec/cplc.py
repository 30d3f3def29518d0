"""Card Production Life Cycle data, the 42-byte value of GET DATA 9F7F
(GP Card Spec 2.3 §H.6; also Visa GP Card Implementation Requirements),
declared as a :mod:`construct` structure: field by field, in the table's order.
Dates are YDDD in BCD (last digit of the year, day of the year).
"""

from __future__ import annotations

from typing import Any

from construct import Bytes, Struct

__all__ = ["CPLC", "CPLC_LENGTH", "EXAMPLES", "TAG", "yddd"]

TAG = 0x9F7F

CPLC = Struct(
    "ic_fabricator" / Bytes(2),
    "ic_type" / Bytes(2),
    "os_id" / Bytes(2),  # operating system identifier
    "os_release_date" / Bytes(2),  # YDDD
    "os_release_level" / Bytes(2),
    "ic_fabrication_date" / Bytes(2),  # YDDD
    "ic_serial_number" / Bytes(4),
    "ic_batch_identifier" / Bytes(2),
    "module_fabricator" / Bytes(2),
    "module_packaging_date" / Bytes(2),  # YDDD
    "icc_manufacturer" / Bytes(2),
    "ic_embedding_date" / Bytes(2),  # YDDD
    "prepersonalizer" / Bytes(2),
    "prepersonalization_date" / Bytes(2),  # YDDD
    "prepersonalization_equipment" / Bytes(4),
    "personalizer" / Bytes(2),
    "personalization_date" / Bytes(2),  # YDDD
    "personalization_equipment" / Bytes(4),
)
CPLC_LENGTH = 42
assert CPLC.sizeof() == CPLC_LENGTH


def yddd(year: int, day: int) -> bytes:
    """A CPLC date: the last digit of ``year`` and the day of the year, BCD.

    >>> yddd(2026, 45).hex()
    '6045'
    """
    if not 1 <= day <= 366:
        raise ValueError("day of the year is 1-366")
    return bytes.fromhex(f"{year % 10}{day:03d}")


#: known answer (encoding, fields): a CPLC as cardlab's emulated card gives it for serial 1
EXAMPLES: list[tuple[bytes, dict[str, Any]]] = [
    (
        bytes.fromhex("4341 0003 4C42 6001 0100 6002 00000001 0000 4341 6003 4C42 6004 4C42 6005 50000001"
                      "0000 0000 00000000"),
        {"ic_fabricator": b"CA", "ic_type": bytes.fromhex("0003"), "os_id": b"LB",
         "os_release_date": bytes.fromhex("6001"), "os_release_level": bytes.fromhex("0100"),
         "ic_fabrication_date": bytes.fromhex("6002"), "ic_serial_number": bytes.fromhex("00000001"),
         "ic_batch_identifier": bytes(2), "module_fabricator": b"CA", "module_packaging_date": bytes.fromhex("6003"),
         "icc_manufacturer": b"LB", "ic_embedding_date": bytes.fromhex("6004"), "prepersonalizer": b"LB",
         "prepersonalization_date": bytes.fromhex("6005"), "prepersonalization_equipment": bytes.fromhex("50000001"),
         "personalizer": bytes(2), "personalization_date": bytes(2), "personalization_equipment": bytes(4)},
    ),
]  # fmt: skip

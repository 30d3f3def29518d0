"""Data objects the Issuer Security Domain answers with (pure builders).

* CPLC — Card Production Life Cycle data, GET DATA 9F7F (GP Card Spec 2.3 §H.6;
  42 bytes, dates coded YDDD: last digit of the year and day of the year),
* Card Recognition Data, GET DATA 66 and in the ISD's FCI (§H.2),
* Key Information Template, GET DATA E0 (§11.3.3.1, table 11-35),
* Card Capability Information, GET DATA 67 (§H.4).

>>> len(cplc(1))
42
>>> card_recognition_data(0x70)[:2].hex()
'732e'
"""

from __future__ import annotations

from collections.abc import Iterable

from cardlab.cardspec import tlv
from cardlab.cardspec.cplc import CPLC, yddd
from cardlab.cardspec.gp_keyinfo import key_information_template

from ..state import KeyEntry

#: {iso(1) member-body(2) us(840) globalPlatform(114283)}
GP_OID = bytes.fromhex("2A864886FC6B")

#: GP key type coding (GP §11.1.8, table 11-16)
KEY_TYPE = {"DES": 0x80, "AES": 0x88}


def _arc(n: int) -> bytes:
    """One OID arc in base-128 (X.690 §8.19)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _oid(*arcs: int) -> bytes:
    return tlv.encode(0x06, GP_OID + b"".join(_arc(a) for a in arcs))


def card_recognition_data(scp_i: int) -> bytes:
    """Tag 73 (GP §H.2): GP card recognition data, card management type
    and version (GP 2.3), card identification scheme, SCP03 with ``i``."""
    return tlv.encode(
        0x73,
        _oid(1)  # {globalPlatform 1}: card recognition data
        + tlv.encode(0x60, _oid(2, 2, 3))  # {globalPlatform 2 v}: GP 2.3
        + tlv.encode(0x63, _oid(3))  # {globalPlatform 3}: card identification scheme
        + tlv.encode(0x64, _oid(4, 3, scp_i)),  # {globalPlatform 4 scp i}: SCP03
    )


def card_data(scp_i: int) -> bytes:
    """GET DATA 66: Card Data wrapping the card recognition data (§H.2)."""
    return tlv.encode(0x66, card_recognition_data(scp_i))


def cplc(serial: int) -> bytes:
    """A deterministic, plausible CPLC for ``serial`` (GP §H.6 field order).

    Fabricator/OS identifiers are cardlab's own (not a real vendor's)."""
    serial &= 0xFFFFFFFF
    day = 1 + serial % 365
    return bytes(CPLC.build({
        "ic_fabricator": b"CA",
        "ic_type": bytes.fromhex("0003"),
        "os_id": b"LB",
        "os_release_date": yddd(2026, 1),
        "os_release_level": bytes.fromhex("0100"),
        "ic_fabrication_date": yddd(2026, day),
        "ic_serial_number": serial.to_bytes(4, "big"),
        "ic_batch_identifier": ((serial >> 16) & 0xFFFF).to_bytes(2, "big"),
        "module_fabricator": b"CA",
        "module_packaging_date": yddd(2026, min(day + 1, 365)),
        "icc_manufacturer": b"LB",
        "ic_embedding_date": yddd(2026, min(day + 2, 365)),
        "prepersonalizer": b"LB",
        "prepersonalization_date": yddd(2026, min(day + 3, 365)),
        "prepersonalization_equipment": (0x50000000 | (serial & 0xFFFFFF)).to_bytes(4, "big"),
        "personalizer": bytes(2),  # not personalized yet
        "personalization_date": bytes(2),
        "personalization_equipment": bytes(4),
    }))  # fmt: skip


def key_information(keys: Iterable[KeyEntry]) -> bytes:
    """E0 with one C0 per key: id, version, (type, length) (§11.3.3.1)."""
    return key_information_template(
        {"key_id": key.kid, "version": key.kvn,
         "components": [{"type": KEY_TYPE.get(key.kind, 0xFF), "length": len(key.value)}]}
        for key in sorted(keys, key=lambda k: (k.kvn, k.kid))
    )  # fmt: skip


def card_capability(scp_i: int) -> bytes:
    """GET DATA 67 (§H.4): SCP information (SCP03, i, AES-128/192/256),
    assignable privileges, LFDB hash algorithms, token/receipt/DAP suites."""
    scp = tlv.encode_all([(0x80, b"\x03"), (0x81, bytes([scp_i])), (0x82, b"\x07")])
    return tlv.encode(
        0x67,
        tlv.encode(0xA0, scp)
        + tlv.encode_all(
            [
                (0x81, bytes.fromhex("000000")),  # no supplementary SDs
                (0x82, bytes.fromhex("1EFE80")),  # application privileges
                (0x83, b"\x02"),  # SHA-256
                (0x85, b"\x00"),  # no token support
                (0x86, b"\x00"),  # no receipts
                (0x87, b"\x00"),  # no DAP
            ]
        ),
    )

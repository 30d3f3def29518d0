"""The tester's own declarations of the fixed-layout formats it reads from a
card (independent of the card's code, which has its own), as :mod:`construct`
structures laid out like the spec tables they cite.

The tester is a checker: its structures validate nothing. Header, format and
trailer are plain bytes (built with their usual values) so that a parse
always yields every field and the tester names each failed check itself
(``cardlab.tester.rsa``). Blocks recovered with an RSA key are as long as its
modulus: parse with the length as ``n`` — ``ISSUER_CERTIFICATE.parse(r, n=len(r))``.

Kept as slices in ``rsa.py`` rather than declared: the public key split between
a certificate's key field and the remainder (92 / 9F48), and the hash input,
which both reach outside the recovered block.
"""

from __future__ import annotations

from typing import Any

from construct import Bytes, Default, Int8ub, Struct, this

__all__ = [
    "CDA_DYNAMIC_DATA",
    "CPLC",
    "EXAMPLES",
    "ICC_CERTIFICATE",
    "ISSUER_CERTIFICATE",
    "SIGNED_DYNAMIC_DATA",
    "SIGNED_STATIC_DATA",
]

#: what the 20-byte SHA-1 result and the 1-byte trailer take at the end of every recovered block
HASH_AND_TRAILER = 21


def _frame_byte(usual: int) -> Any:
    return Default(Int8ub, usual)


#: Book 2 §5.3, Table 13: Issuer Public Key Certificate (90) recovered with the CA key
ISSUER_CERTIFICATE = Struct(
    "header" / _frame_byte(0x6A),
    "format" / _frame_byte(0x02),
    "issuer_id" / Bytes(4),
    "expiry" / Bytes(2),  # MMYY
    "serial" / Bytes(3),
    "hash_algorithm" / Int8ub,
    "pk_algorithm" / Int8ub,
    "pk_length" / Int8ub,
    "exponent_length" / Int8ub,
    "key_field" / Bytes(this._.n - 15 - HASH_AND_TRAILER),  # N_CA - 36: the key's leftmost bytes, BB-padded
    "hash" / Bytes(20),
    "trailer" / _frame_byte(0xBC),
)

#: Book 2 §6.4, Table 14: ICC Public Key Certificate (9F46; 9F2D for the PIN key) recovered with the issuer key
ICC_CERTIFICATE = Struct(
    "header" / _frame_byte(0x6A),
    "format" / _frame_byte(0x04),
    "pan" / Bytes(10),  # F-padded
    "expiry" / Bytes(2),
    "serial" / Bytes(3),
    "hash_algorithm" / Int8ub,
    "pk_algorithm" / Int8ub,
    "pk_length" / Int8ub,
    "exponent_length" / Int8ub,
    "key_field" / Bytes(this._.n - 21 - HASH_AND_TRAILER),  # N_I - 42
    "hash" / Bytes(20),
    "trailer" / _frame_byte(0xBC),
)

#: Book 2 §5.4, Table 15: Signed Static Application Data (93) recovered with the issuer key
SIGNED_STATIC_DATA = Struct(
    "header" / _frame_byte(0x6A),
    "format" / _frame_byte(0x03),
    "hash_algorithm" / Int8ub,
    "dac" / Bytes(2),  # Data Authentication Code
    "pad" / Bytes(this._.n - 5 - HASH_AND_TRAILER),  # N_I - 26 bytes of BB
    "hash" / Bytes(20),
    "trailer" / _frame_byte(0xBC),
)

#: Book 2 §6.5.2, Table 17: Signed Dynamic Application Data (9F4B) recovered with the ICC key
SIGNED_DYNAMIC_DATA = Struct(
    "header" / _frame_byte(0x6A),
    "format" / _frame_byte(0x05),
    "hash_algorithm" / Int8ub,
    "dynamic_data_length" / Int8ub,  # L_DD
    "dynamic_data" / Bytes(this.dynamic_data_length),
    "pad" / Bytes(this._.n - 4 - this.dynamic_data_length - HASH_AND_TRAILER),  # N_IC - L_DD - 25 bytes of BB
    "hash" / Bytes(20),
    "trailer" / _frame_byte(0xBC),
)

#: Book 2 §6.6.2, Table 19: the ICC Dynamic Data of a CDA signature
CDA_DYNAMIC_DATA = Struct(
    "number_length" / Int8ub,
    "number" / Bytes(this.number_length),  # ICC Dynamic Number (9F4C)
    "cid" / Bytes(1),  # Cryptogram Information Data, compared with 9F27
    "cryptogram" / Bytes(8),
    "transaction_data_hash" / Bytes(20),
)

#: GP Card Spec 2.3 §H.5, table H-4: Card Production Life Cycle data (9F7F), 42 bytes
CPLC = Struct(
    "ic_fabricator" / Bytes(2),
    "ic_type" / Bytes(2),
    "os_id" / Bytes(2),
    "os_release_date" / Bytes(2),
    "os_release_level" / Bytes(2),
    "ic_fabrication_date" / Bytes(2),
    "ic_serial_number" / Bytes(4),
    "ic_batch_identifier" / Bytes(2),
    "module_fabricator" / Bytes(2),
    "module_packaging_date" / Bytes(2),
    "icc_manufacturer" / Bytes(2),
    "ic_embedding_date" / Bytes(2),
    "prepersonalizer" / Bytes(2),
    "prepersonalization_date" / Bytes(2),
    "prepersonalization_equipment" / Bytes(4),
    "personalizer" / Bytes(2),
    "personalization_date" / Bytes(2),
    "personalization_equipment" / Bytes(4),
)

_HASH = bytes.fromhex("4A0162C20A8E535D79978A54AF529CAAA3590488")

#: known answers (structure, parameters, encoding, fields): the CDA dynamic data
#: and the SDAD frame are openemv's public example (vectors/oda_public.json
#: "mcF1-cda-sdad", a 768-bit ICC key); the small blocks are made up.
EXAMPLES: list[tuple[Any, dict[str, int], bytes, dict[str, Any]]] = [
    (
        CDA_DYNAMIC_DATA, {},
        bytes.fromhex("08" "537EB5E03CC433C8" "00" "55B6408DBC985131" "A04620C52455EA8F2370647AF36748A2CA4AA9F6"),
        {"number_length": 8, "number": bytes.fromhex("537EB5E03CC433C8"), "cid": b"\x00",
         "cryptogram": bytes.fromhex("55B6408DBC985131"),
         "transaction_data_hash": bytes.fromhex("A04620C52455EA8F2370647AF36748A2CA4AA9F6")},
    ),
    (
        SIGNED_DYNAMIC_DATA, {"n": 96},
        bytes.fromhex("6A0501" "26" "08537EB5E03CC433C80055B6408DBC985131A04620C52455EA8F2370647AF36748A2CA4AA9F6")
        + b"\xbb" * 33 + _HASH + b"\xbc",
        {"header": 0x6A, "format": 0x05, "hash_algorithm": 1, "dynamic_data_length": 38,
         "dynamic_data": bytes.fromhex("08537EB5E03CC433C80055B6408DBC985131A04620C52455EA8F2370647AF36748A2CA4AA9F6"),
         "pad": b"\xbb" * 33, "hash": _HASH, "trailer": 0xBC},
    ),
    (
        SIGNED_STATIC_DATA, {"n": 27},
        bytes.fromhex("6A0301DAC0BB") + bytes(20) + b"\xbc",
        {"header": 0x6A, "format": 0x03, "hash_algorithm": 1, "dac": bytes.fromhex("DAC0"), "pad": b"\xbb",
         "hash": bytes(20), "trailer": 0xBC},
    ),
    (
        ISSUER_CERTIFICATE, {"n": 37},
        bytes.fromhex("6A02541333FF1227000001010170 01 AB") + bytes(20) + b"\xbc",
        {"header": 0x6A, "format": 0x02, "issuer_id": bytes.fromhex("541333FF"), "expiry": bytes.fromhex("1227"),
         "serial": bytes.fromhex("000001"), "hash_algorithm": 1, "pk_algorithm": 1, "pk_length": 0x70,
         "exponent_length": 1, "key_field": b"\xab", "hash": bytes(20), "trailer": 0xBC},
    ),
    (
        ICC_CERTIFICATE, {"n": 43},
        bytes.fromhex("6A04 5413330089020011FFFF 1227 000001 01 01 60 01 90") + bytes(20) + b"\xbc",
        {"header": 0x6A, "format": 0x04, "pan": bytes.fromhex("5413330089020011FFFF"), "expiry": bytes.fromhex("1227"),
         "serial": bytes.fromhex("000001"), "hash_algorithm": 1, "pk_algorithm": 1, "pk_length": 0x60,
         "exponent_length": 1, "key_field": b"\x90", "hash": bytes(20), "trailer": 0xBC},
    ),
    (
        CPLC, {}, bytes(range(42)),
        {"ic_fabricator": bytes.fromhex("0001"), "ic_type": bytes.fromhex("0203"), "os_id": bytes.fromhex("0405"),
         "os_release_date": bytes.fromhex("0607"), "os_release_level": bytes.fromhex("0809"),
         "ic_fabrication_date": bytes.fromhex("0A0B"), "ic_serial_number": bytes.fromhex("0C0D0E0F"),
         "ic_batch_identifier": bytes.fromhex("1011"), "module_fabricator": bytes.fromhex("1213"),
         "module_packaging_date": bytes.fromhex("1415"), "icc_manufacturer": bytes.fromhex("1617"),
         "ic_embedding_date": bytes.fromhex("1819"), "prepersonalizer": bytes.fromhex("1A1B"),
         "prepersonalization_date": bytes.fromhex("1C1D"), "prepersonalization_equipment": bytes.fromhex("1E1F2021"),
         "personalizer": bytes.fromhex("2223"), "personalization_date": bytes.fromhex("2425"),
         "personalization_equipment": bytes.fromhex("26272829")},
    ),
]  # fmt: skip

"""The data an EMV RSA signature recovers to (EMV 4.4 Book 2 §5.3, §5.4, §6.4,
§6.5, §6.6), declared as :mod:`construct` structures that read like the
spec tables they cite. Card and personalizer side; the tester has its own.

A recovered block is as long as the modulus of the key that signs it, so its
variable fields are sized from a build/parse parameter named as in the spec:
``n_ca`` (CA key: issuer certificates), ``n_i`` (issuer key: SSAD, ICC
certificates), ``n_ic`` (ICC key: signed dynamic data)::

    ISSUER_PK_CERTIFICATE.parse(recovered, n_ca=len(recovered))

Not declared here, on purpose: the split of a public key modulus between the
certificate's key field and the remainder data object (92, 9F48), and the
hash input (format … key field ‖ remainder ‖ exponent [‖ static data]).
Both span data outside the recovered block; as slices in
``cardlab.personalizer.certificates`` they read closer to the spec's text.

Each structure has known answers next to it (``EXAMPLES``) that
``tests/cardspec/test_cardspec_formats.py`` round-trips; the certificate formats are
also checked against the public openemv examples of ``vectors/oda_public.json``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from construct import Bytes, Const, Default, Int8ub, Rebuild, Struct, len_, this

__all__ = [
    "CDA_DYNAMIC_DATA",
    "EXAMPLES",
    "FORMAT_ICC",
    "FORMAT_ISSUER",
    "FORMAT_SDAD",
    "FORMAT_SSAD",
    "HASH_LENGTH",
    "HASH_SHA1",
    "HEADER",
    "ICC_PK_CERTIFICATE",
    "ISSUER_PK_CERTIFICATE",
    "PK_RSA",
    "SIGNED_DYNAMIC_DATA",
    "SIGNED_STATIC_DATA",
    "TRAILER",
    "build_with_hash",
    "hashed_part",
]

HEADER, TRAILER = 0x6A, 0xBC
HASH_SHA1 = 0x01  # Book 2 Annex B2.1
PK_RSA = 0x01  # Book 2 Annex B2.2
HASH_LENGTH = 20
#: certificate formats (Book 2 Tables 13, 14, 15, 17)
FORMAT_ISSUER, FORMAT_SSAD, FORMAT_ICC, FORMAT_SDAD = 0x02, 0x03, 0x04, 0x05


def _byte(value: int) -> Any:
    return Const(bytes((value,)))


def _bb_padding(size: Any) -> Any:
    """``size`` bytes, built as BB (Book 2 §5.1: "pad pattern ... of value 'BB'");
    parsed as they are, so that a parse/build round trip gives back any bytes."""
    return Default(Bytes(size), lambda ctx: b"\xbb" * size(ctx))


#: Issuer Public Key Certificate (90), recovered with the CA key — Book 2 §5.3, Table 13
ISSUER_PK_CERTIFICATE = Struct(
    "header" / _byte(HEADER),  # Recovered Data Header
    "format" / _byte(FORMAT_ISSUER),  # Certificate Format
    "issuer_id" / Bytes(4),  # leftmost 3-8 PAN digits, F-padded
    "expiry" / Bytes(2),  # Certificate Expiration Date, MMYY
    "serial" / Bytes(3),  # Certificate Serial Number
    "hash_algorithm" / Int8ub,
    "pk_algorithm" / Int8ub,  # Issuer Public Key Algorithm Indicator
    "pk_length" / Int8ub,  # Issuer Public Key Length N_I
    "exponent_length" / Int8ub,
    "key_field" / Bytes(this._.n_ca - 36),  # Issuer Public Key or its leftmost digits, BB-padded
    "hash" / Bytes(HASH_LENGTH),
    "trailer" / _byte(TRAILER),  # Recovered Data Trailer
)

#: Signed Static Application Data (93), recovered with the issuer key — Book 2 §5.4, Table 15
SIGNED_STATIC_DATA = Struct(
    "header" / _byte(HEADER),
    "format" / _byte(FORMAT_SSAD),  # Signed Data Format
    "hash_algorithm" / Int8ub,
    "dac" / Bytes(2),  # Data Authentication Code
    "pad" / _bb_padding(this._.n_i - 26),  # Pad Pattern
    "hash" / Bytes(HASH_LENGTH),
    "trailer" / _byte(TRAILER),
)

#: ICC Public Key Certificate (9F46), recovered with the issuer key — Book 2 §6.4, Table 14
#: (also the ICC PIN Encipherment Public Key Certificate 9F2D, §7.1)
ICC_PK_CERTIFICATE = Struct(
    "header" / _byte(HEADER),
    "format" / _byte(FORMAT_ICC),
    "pan" / Bytes(10),  # Application PAN, F-padded
    "expiry" / Bytes(2),  # MMYY
    "serial" / Bytes(3),
    "hash_algorithm" / Int8ub,
    "pk_algorithm" / Int8ub,
    "pk_length" / Int8ub,  # ICC Public Key Length N_IC
    "exponent_length" / Int8ub,
    "key_field" / Bytes(this._.n_i - 42),  # ICC Public Key or its leftmost digits, BB-padded
    "hash" / Bytes(HASH_LENGTH),
    "trailer" / _byte(TRAILER),
)

#: Signed Dynamic Application Data (9F4B), recovered with the ICC key — Book 2 §6.5.1, Table 17
SIGNED_DYNAMIC_DATA = Struct(
    "header" / _byte(HEADER),
    "format" / _byte(FORMAT_SDAD),  # Signed Data Format
    "hash_algorithm" / Int8ub,
    "dynamic_data_length" / Rebuild(Int8ub, len_(this.dynamic_data)),  # ICC Dynamic Data Length L_DD
    "dynamic_data" / Bytes(this.dynamic_data_length),  # ICC Dynamic Data
    "pad" / _bb_padding(this._.n_ic - this.dynamic_data_length - 25),  # Pad Pattern
    "hash" / Bytes(HASH_LENGTH),
    "trailer" / _byte(TRAILER),
)

#: ICC Dynamic Data of a CDA signature — Book 2 §6.6.1, Table 19 (DDA: only the first two)
CDA_DYNAMIC_DATA = Struct(
    "number_length" / Rebuild(Int8ub, len_(this.number)),  # ICC Dynamic Number Length
    "number" / Bytes(this.number_length),  # ICC Dynamic Number (9F4C), 2-8 bytes
    "cid" / Int8ub,  # Cryptogram Information Data (9F27)
    "cryptogram" / Bytes(8),  # TC or ARQC
    "transaction_data_hash" / Bytes(HASH_LENGTH),  # Transaction Data Hash Code
)


def hashed_part(block: bytes) -> bytes:
    """The part of a recovered block its hash covers: from the format byte up to
    the hash (Book 2 §5.3 step 5, §5.4 step 5, §6.4 step 5, §6.5.2 step 5), to
    which each format appends data from outside the block.

    >>> hashed_part(bytes.fromhex("6A0301DAC0") + bytes(20) + b"\\xbc").hex()
    '0301dac0'
    """
    return block[1 : -HASH_LENGTH - 1]


def build_with_hash(layout: Any, fields: dict[str, Any], hashed_after: bytes, **sizes: int) -> bytes:
    """``layout`` built from ``fields`` and its hash: SHA-1 (hash algorithm 01)
    of :func:`hashed_part` of the block, then ``hashed_after`` — the data from
    outside the block that the format's hash also covers.

    >>> fields = {"hash_algorithm": 1, "dac": bytes.fromhex("DAC0")}
    >>> block = build_with_hash(SIGNED_STATIC_DATA, fields, b"static", n_i=28)
    >>> block[:7].hex().upper(), block[7:27] == hashlib.sha1(block[1:7] + b"static").digest(), block[27:]
    ('6A0301DAC0BBBB', True, b'\\xbc')
    """
    draft = layout.build({**fields, "hash": bytes(HASH_LENGTH)}, **sizes)
    digest = hashlib.sha1(hashed_part(draft) + hashed_after).digest()
    return bytes(layout.build({**fields, "hash": digest}, **sizes))


#: known answers: (structure, parameters, encoding, fields). The ICC dynamic data is
#: openemv's CDA example (vectors/oda_public.json "mcF1-cda-sdad"); the others are
#: small made-up keys (real blocks are 64-248 bytes; see the vectors for those).
EXAMPLES: list[tuple[Any, dict[str, int], bytes, dict[str, Any]]] = [
    (
        CDA_DYNAMIC_DATA,
        {},
        bytes.fromhex("08537EB5E03CC433C8" "00" "55B6408DBC985131" "A04620C52455EA8F2370647AF36748A2CA4AA9F6"),
        {"number_length": 8, "number": bytes.fromhex("537EB5E03CC433C8"), "cid": 0x00,
         "cryptogram": bytes.fromhex("55B6408DBC985131"),
         "transaction_data_hash": bytes.fromhex("A04620C52455EA8F2370647AF36748A2CA4AA9F6")},
    ),
    (
        SIGNED_STATIC_DATA,
        {"n_i": 28},
        bytes.fromhex("6A" "03" "01" "DAC0" "BBBB") + bytes(range(20)) + b"\xbc",
        {"header": b"\x6a", "format": b"\x03", "hash_algorithm": 1, "dac": bytes.fromhex("DAC0"),
         "pad": b"\xbb\xbb", "hash": bytes(range(20)), "trailer": b"\xbc"},
    ),
    (
        SIGNED_DYNAMIC_DATA,
        {"n_ic": 30},
        bytes.fromhex("6A" "05" "01" "03" "021234" "BBBB") + bytes(range(20)) + b"\xbc",
        {"header": b"\x6a", "format": b"\x05", "hash_algorithm": 1, "dynamic_data_length": 3,
         "dynamic_data": bytes.fromhex("021234"), "pad": b"\xbb\xbb", "hash": bytes(range(20)), "trailer": b"\xbc"},
    ),
    (
        ISSUER_PK_CERTIFICATE,
        {"n_ca": 38},
        bytes.fromhex("6A" "02" "476173FF" "1231" "03DA0A" "01" "01" "02" "01" "ABCD") + bytes(range(20)) + b"\xbc",
        {"header": b"\x6a", "format": b"\x02", "issuer_id": bytes.fromhex("476173FF"), "expiry": bytes.fromhex("1231"),
         "serial": bytes.fromhex("03DA0A"), "hash_algorithm": 1, "pk_algorithm": 1, "pk_length": 2,
         "exponent_length": 1, "key_field": bytes.fromhex("ABCD"), "hash": bytes(range(20)), "trailer": b"\xbc"},
    ),
    (
        ICC_PK_CERTIFICATE,
        {"n_i": 44},
        bytes.fromhex("6A" "04" "4761739001010119FFFF" "1222" "000001" "01" "01" "03" "01" "ABBB")
        + bytes(range(20)) + b"\xbc",
        {"header": b"\x6a", "format": b"\x04", "pan": bytes.fromhex("4761739001010119FFFF"),
         "expiry": bytes.fromhex("1222"), "serial": bytes.fromhex("000001"), "hash_algorithm": 1,
         "pk_algorithm": 1, "pk_length": 3, "exponent_length": 1, "key_field": bytes.fromhex("ABBB"),
         "hash": bytes(range(20)), "trailer": b"\xbc"},
    ),
]  # fmt: skip

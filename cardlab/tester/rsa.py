"""Certificate and signature recovery for offline data authentication, with
the tester's own arithmetic: RSA public operation with Python integers
(``pow``), SHA-1 from :mod:`hashlib` (EMV 4.4 Book 2 §5 and §6).

Every recovery returns a dataclass holding every field of the recovered block
and the list of checks that failed (``problems``, in the order Book 2 makes
them), so that the terminal (``cardlab.tester.oda``) and the certification rules can
both use the same result: the terminal needs ``ok``; a certification rule may
want the expiry, the serial number or whether the remainder was needed.

>>> n, e = 3233, 17  # a toy key: RSA recovery is m = s^e mod n
>>> recover(pow(65, 2753, n).to_bytes(2, "big"), n, e).hex()
'0041'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

HEADER = 0x6A
TRAILER = 0xBC
HASH_SHA1 = 0x01
PK_RSA = 0x01

#: recovered-data formats (Book 2 Tables 13, 14, 15, 17)
FORMAT_ISSUER = 0x02
FORMAT_SSAD = 0x03
FORMAT_ICC = 0x04
FORMAT_SDAD = 0x05


class RsaError(ValueError):
    pass


def key_length(modulus: int) -> int:
    return (modulus.bit_length() + 7) // 8


def recover(data: bytes, modulus: int, exponent: int) -> bytes:
    """The RSA public operation on ``data`` (Book 2 Annex A2.1): ``data`` must
    be exactly as long as the modulus and smaller than it."""
    n = key_length(modulus)
    if len(data) != n:
        raise RsaError(f"{len(data)} bytes where the key is {n} bytes long")
    value = int.from_bytes(data, "big")
    if value >= modulus:
        raise RsaError("signature value not smaller than the modulus")
    return pow(value, exponent, modulus).to_bytes(n, "big")


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def _bcd_month_year(mmyy: bytes) -> tuple[int, int] | None:
    """MMYY (n 4) → (month, 4-digit year), None if not valid BCD."""
    text = mmyy.hex()
    if len(text) != 4 or not text.isdigit():
        return None
    month, yy = int(text[:2]), int(text[2:])
    if not 1 <= month <= 12:
        return None
    # Book 3 §10.5.3-style window: YY < 50 → 20YY, otherwise 19YY
    return month, (2000 + yy if yy < 50 else 1900 + yy)


def certificate_expired(mmyy: bytes, today: date) -> bool:
    """A certificate is valid up to and including the last day of its month
    (Book 2 §5.3 step 9, §6.4 step 9). Unreadable dates count as expired."""
    parsed = _bcd_month_year(mmyy)
    if parsed is None:
        return True
    month, year = parsed
    return (today.year, today.month) > (year, month)


@dataclass
class Recovered:
    """What every recovery shares: the raw recovered block and the checks."""

    recovered: bytes = b""
    header: int = 0
    format: int = 0
    trailer: int = 0
    hash_result: bytes = b""  # the hash the block carries
    computed_hash: bytes = b""  # the hash the tester computes
    problems: list[str] = field(default_factory=list)
    #: first failed check as a short key: "length", "trailer", "header",
    #: "format", "hash", "pan", "issuer_id", "expired", "algorithm"
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def hash_ok(self) -> bool:
        return bool(self.computed_hash) and self.computed_hash == self.hash_result

    def fail(self, key: str, text: str) -> None:
        if not self.failure:
            self.failure = key
        self.problems.append(text)

    def _frame(self, data: bytes, modulus: int, exponent: int, fmt: int, what: str) -> bool:
        """Steps 1–4 of every recovery: length, RSA, trailer, header, format."""
        try:
            self.recovered = recover(data, modulus, exponent)
        except RsaError as exc:
            self.fail("length", f"{what}: {exc}")
            return False
        r = self.recovered
        self.header, self.trailer, self.format = r[0], r[-1], r[1]
        if self.trailer != TRAILER:
            self.fail("trailer", f"{what}: recovered data trailer {self.trailer:02X}, expected BC")
            return False
        if self.header != HEADER:
            self.fail("header", f"{what}: recovered data header {self.header:02X}, expected 6A")
            return False
        if self.format != fmt:
            self.fail("format", f"{what}: certificate format {self.format:02X}, expected {fmt:02X}")
            return False
        return True

    @property
    def frame_ok(self) -> bool:
        return self.failure not in ("length", "trailer", "header", "format") and bool(self.recovered)


@dataclass
class PublicKeyCertificate(Recovered):
    """Fields shared by the issuer and ICC public key certificates."""

    expiry: bytes = b""  # MMYY
    serial: bytes = b""
    hash_algorithm: int = 0
    pk_algorithm: int = 0
    pk_length: int = 0
    exponent_length: int = 0
    key_field: bytes = b""  # leftmost digits of the modulus, with BB padding
    remainder: bytes = b""  # as the card gave it (92 / 9F48)
    remainder_needed: bool = False
    exponent: bytes = b""
    modulus: bytes = b""

    @property
    def public_key(self) -> tuple[int, int]:
        return int.from_bytes(self.modulus, "big"), int.from_bytes(self.exponent, "big")

    @property
    def padding_ok(self) -> bool:
        """The part of the key field beyond the key is all BB (Book 2 §5.1)."""
        pad = self.key_field[self.pk_length :]
        return all(b == 0xBB for b in pad)

    def expired(self, today: date) -> bool:
        return certificate_expired(self.expiry, today)

    def _key(self, body_end: int) -> None:
        """Split the key field and assemble the modulus (step 12)."""
        r = self.recovered
        self.key_field = r[body_end:-21]
        self.hash_result = r[-21:-1]
        room = len(self.key_field)
        self.remainder_needed = self.pk_length > room
        if self.remainder_needed:
            self.modulus = self.key_field + self.remainder
        else:
            self.modulus = self.key_field[: self.pk_length]

    def _common_checks(self, what: str, today: date | None) -> None:
        room = len(self.key_field)
        if self.remainder_needed and len(self.remainder) != self.pk_length - room:
            self.fail(
                "remainder",
                f"{what}: key of {self.pk_length} bytes needs a remainder of {self.pk_length - room} bytes, "
                f"the card gave {len(self.remainder)}",
            )
        if len(self.exponent) != self.exponent_length:
            self.fail("exponent", f"{what}: exponent length {self.exponent_length} in the certificate, "
                      f"{len(self.exponent)} bytes given")
        if today is not None and self.expired(today):
            self.fail("expired", f"{what}: expired (MMYY {self.expiry.hex().upper()}) on {today.isoformat()}")
        if self.hash_algorithm != HASH_SHA1 or self.pk_algorithm != PK_RSA:
            self.fail(
                "algorithm",
                f"{what}: hash algorithm {self.hash_algorithm:02X} / public key algorithm "
                f"{self.pk_algorithm:02X}, expected 01/01",
            )


@dataclass
class IssuerCertificate(PublicKeyCertificate):
    """Issuer Public Key Certificate (90), Book 2 §5.3 Table 13."""

    issuer_id: bytes = b""  # leftmost 3–8 PAN digits, padded with F

    @property
    def issuer_id_digits(self) -> str:
        return self.issuer_id.hex().upper().rstrip("F")

    def matches_pan(self, pan: str) -> bool:
        digits = self.issuer_id_digits
        return 3 <= len(digits) <= 8 and pan.upper().startswith(digits)


@dataclass
class IccCertificate(PublicKeyCertificate):
    """ICC Public Key Certificate (9F46) or ICC PIN Encipherment Public Key
    Certificate (9F2D), Book 2 §6.4 Table 14 (§7.1 for the PIN key)."""

    pan: bytes = b""  # 10 bytes, F padded

    @property
    def pan_digits(self) -> str:
        return self.pan.hex().upper().rstrip("F")

    def matches_pan(self, pan: str) -> bool:
        return self.pan_digits == pan.upper().rstrip("F")


@dataclass
class SignedStaticData(Recovered):
    """Signed Static Application Data (93), Book 2 §5.4 Table 15."""

    hash_algorithm: int = 0
    data_authentication_code: bytes = b""
    pad: bytes = b""


@dataclass
class SignedDynamicData(Recovered):
    """Signed Dynamic Application Data (9F4B), Book 2 §6.5 Table 17; for CDA
    the ICC dynamic data is split per Table 19."""

    hash_algorithm: int = 0
    dynamic_data: bytes = b""  # the whole ICC Dynamic Data field
    pad: bytes = b""
    # ICC dynamic data (Table 19; for DDA only the first two)
    icc_dynamic_number: bytes = b""  # 9F4C
    cid: bytes = b""  # CDA only
    cryptogram: bytes = b""  # CDA only: the application cryptogram
    transaction_data_hash: bytes = b""  # CDA only


def _pan_field(pan: str | bytes | None) -> str | None:
    if pan is None:
        return None
    return pan.hex().upper().rstrip("F") if isinstance(pan, bytes) else pan.upper().rstrip("F")


def recover_issuer_certificate(
    certificate: bytes,
    ca_modulus: int,
    ca_exponent: int,
    remainder: bytes = b"",
    exponent: bytes = b"",
    *,
    pan: str | bytes | None = None,
    today: date | None = None,
) -> IssuerCertificate:
    """Book 2 §5.3: recover and check the issuer public key certificate with
    the CA public key. ``pan`` (digits or the 5A value) enables step 8,
    ``today`` step 9; each failed step is in ``problems``."""
    what = "issuer public key certificate"
    c = IssuerCertificate(remainder=remainder, exponent=exponent)
    if not c._frame(certificate, ca_modulus, ca_exponent, FORMAT_ISSUER, what):
        return c
    r = c.recovered
    c.issuer_id, c.expiry, c.serial = r[2:6], r[6:8], r[8:11]
    c.hash_algorithm, c.pk_algorithm, c.pk_length, c.exponent_length = r[11], r[12], r[13], r[14]
    c._key(15)
    c.computed_hash = _sha1(r[1:15] + c.key_field + remainder + exponent)
    if not c.hash_ok:
        c.fail("hash", f"{what}: hash result differs (certificate {c.hash_result.hex().upper()}, "
               f"computed {c.computed_hash.hex().upper()})")
    digits = _pan_field(pan)
    if digits is not None and not c.matches_pan(digits):
        c.fail("issuer_id", f"{what}: issuer identifier {c.issuer_id.hex().upper()} does not match the PAN")
    c._common_checks(what, today)
    return c


def recover_icc_certificate(
    certificate: bytes,
    issuer_modulus: int,
    issuer_exponent: int,
    remainder: bytes = b"",
    exponent: bytes = b"",
    static_data: bytes | None = b"",
    *,
    pan: str | bytes | None = None,
    today: date | None = None,
    expected_format: int = FORMAT_ICC,
) -> IccCertificate:
    """Book 2 §6.4: recover and check the ICC public key certificate with the
    issuer public key. The hash covers ``static_data`` (the static data to be
    authenticated, Book 3 §10.3); ``static_data=None`` skips the hash check
    (fields only, e.g. for a certificate examined on its own)."""
    what = "ICC public key certificate"
    c = IccCertificate(remainder=remainder, exponent=exponent)
    if not c._frame(certificate, issuer_modulus, issuer_exponent, expected_format, what):
        return c
    r = c.recovered
    c.pan, c.expiry, c.serial = r[2:12], r[12:14], r[14:17]
    c.hash_algorithm, c.pk_algorithm, c.pk_length, c.exponent_length = r[17], r[18], r[19], r[20]
    c._key(21)
    if static_data is not None:
        c.computed_hash = _sha1(r[1:21] + c.key_field + remainder + exponent + static_data)
        if not c.hash_ok:
            c.fail("hash", f"{what}: hash result differs (certificate {c.hash_result.hex().upper()}, "
                   f"computed {c.computed_hash.hex().upper()})")
    digits = _pan_field(pan)
    if digits is not None and not c.matches_pan(digits):
        c.fail("pan", f"{what}: PAN {c.pan_digits[:6]}… in the certificate is not the card's PAN")
    c._common_checks(what, today)
    return c


def recover_ssad(ssad: bytes, issuer_modulus: int, issuer_exponent: int,
                 static_data: bytes | None = b"") -> SignedStaticData:
    """Book 2 §5.4: recover Signed Static Application Data with the issuer
    key and compare its hash with SHA-1(items 2–5 ‖ static data)."""
    what = "signed static application data"
    s = SignedStaticData()
    if not s._frame(ssad, issuer_modulus, issuer_exponent, FORMAT_SSAD, what):
        return s
    r = s.recovered
    s.hash_algorithm, s.data_authentication_code = r[2], r[3:5]
    s.pad, s.hash_result = r[5:-21], r[-21:-1]
    if static_data is not None:
        s.computed_hash = _sha1(r[1:-21] + static_data)
        if not s.hash_ok:
            s.fail("hash", f"{what}: hash result differs (signature {s.hash_result.hex().upper()}, "
                   f"computed {s.computed_hash.hex().upper()})")
    if s.hash_algorithm != HASH_SHA1:
        s.fail("algorithm", f"{what}: hash algorithm {s.hash_algorithm:02X}, expected 01")
    return s


def recover_sdad(sdad: bytes, icc_modulus: int, icc_exponent: int, terminal_data: bytes,
                 *, cda: bool = False) -> SignedDynamicData:
    """Book 2 §6.5.2 (DDA, ``terminal_data`` = DDOL data) and §6.6.2 (CDA,
    ``terminal_data`` = the unpredictable number): recover the SDAD with the
    ICC key, check its frame and hash, split the ICC dynamic data."""
    what = "signed dynamic application data"
    s = SignedDynamicData()
    if not s._frame(sdad, icc_modulus, icc_exponent, FORMAT_SDAD, what):
        return s
    r = s.recovered
    s.hash_algorithm = r[2]
    ldd = r[3]
    if 4 + ldd > len(r) - 21:
        s.fail("format", f"{what}: ICC dynamic data length {ldd} runs into the hash")
        return s
    s.dynamic_data = r[4 : 4 + ldd]
    s.pad, s.hash_result = r[4 + ldd : -21], r[-21:-1]
    s.computed_hash = _sha1(r[1:-21] + terminal_data)
    if not s.hash_ok:
        s.fail("hash", f"{what}: hash result differs (signature {s.hash_result.hex().upper()}, "
               f"computed {s.computed_hash.hex().upper()})")
    if s.hash_algorithm != HASH_SHA1:
        s.fail("algorithm", f"{what}: hash algorithm {s.hash_algorithm:02X}, expected 01")
    d = s.dynamic_data
    if d:
        n = d[0]
        s.icc_dynamic_number = d[1 : 1 + n]
        if cda:
            if len(d) < 1 + n + 29:
                s.fail("format", f"{what}: CDA ICC dynamic data of {len(d)} bytes is too short (Table 19)")
            else:
                s.cid = d[1 + n : 2 + n]
                s.cryptogram = d[2 + n : 10 + n]
                s.transaction_data_hash = d[10 + n : 30 + n]
    elif cda:
        s.fail("format", f"{what}: no ICC dynamic data")
    return s

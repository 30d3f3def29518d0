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

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from construct import ConstructError

from .formats import (
    CDA_DYNAMIC_DATA,
    HASH_AND_TRAILER,
    ICC_CERTIFICATE,
    ISSUER_CERTIFICATE,
    SIGNED_DYNAMIC_DATA,
    SIGNED_STATIC_DATA,
)

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


@functools.lru_cache(maxsize=256)
def recover(data: bytes, modulus: int, exponent: int) -> bytes:
    """The RSA public operation on ``data`` (Book 2 Annex A2.1): ``data`` must
    be exactly as long as the modulus and smaller than it. Remembered for the last few inputs:
    a batch's cards share their issuer certificate, and a card's certificates are recovered again
    on the contactless interface (the same bytes give the same result; other bytes are computed)."""
    n = key_length(modulus)
    if len(data) != n:
        raise RsaError(f"{len(data)} bytes where the key is {n} bytes long")
    value = int.from_bytes(data, "big")
    if value >= modulus:
        raise RsaError("signature value not smaller than the modulus")
    return pow(value, exponent, modulus).to_bytes(n, "big")


@functools.lru_cache(maxsize=256)
def _parsed(layout: Any, recovered: bytes) -> Any:
    """``recovered`` parsed by ``layout``: remembered like :func:`recover` (the same certificate
    bytes come back for every card of a batch and on the card's second interface; read only)."""
    return layout.parse(recovered, n=len(recovered))


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
            self.recovered = recover(bytes(data), modulus, exponent)
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

    def _fields(self, layout: Any, what: str, too_short: str = "") -> Any | None:
        """The recovered block's fields by ``layout`` (``cardlab.tester.formats``),
        None after a "format" failure when they do not fit in the block."""
        try:
            return _parsed(layout, self.recovered)
        except ConstructError:
            self.fail("format", too_short or f"{what}: {len(self.recovered)} recovered bytes are too few for "
                      f"format {self.format:02X}")
            return None

    def _hashed(self) -> bytes:
        """What the hash covers from the block: format byte up to the hash (step 5)."""
        return self.recovered[1:-HASH_AND_TRAILER]

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

    def _read(self, f: Any) -> None:
        """The certificate's fields, and its key: key field [‖ remainder] (step 12)."""
        self.expiry, self.serial = f.expiry, f.serial
        self.hash_algorithm, self.pk_algorithm = f.hash_algorithm, f.pk_algorithm
        self.pk_length, self.exponent_length = f.pk_length, f.exponent_length
        self.key_field, self.hash_result = f.key_field, f.hash
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
    f = c._fields(ISSUER_CERTIFICATE, what)
    if f is None:
        return c
    c.issuer_id = f.issuer_id
    c._read(f)
    c.computed_hash = _sha1(c._hashed() + remainder + exponent)
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
    f = c._fields(ICC_CERTIFICATE, what)
    if f is None:
        return c
    c.pan = f.pan
    c._read(f)
    if static_data is not None:
        c.computed_hash = _sha1(c._hashed() + remainder + exponent + static_data)
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
    f = s._fields(SIGNED_STATIC_DATA, what)
    if f is None:
        return s
    s.hash_algorithm, s.data_authentication_code, s.pad, s.hash_result = f.hash_algorithm, f.dac, f.pad, f.hash
    if static_data is not None:
        s.computed_hash = _sha1(s._hashed() + static_data)
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
    f = s._fields(SIGNED_DYNAMIC_DATA, what, f"{what}: ICC dynamic data length {r[3]} runs into the hash")
    if f is None:
        return s
    s.hash_algorithm, s.dynamic_data, s.pad, s.hash_result = f.hash_algorithm, f.dynamic_data, f.pad, f.hash
    s.computed_hash = _sha1(s._hashed() + terminal_data)
    if not s.hash_ok:
        s.fail("hash", f"{what}: hash result differs (signature {s.hash_result.hex().upper()}, "
               f"computed {s.computed_hash.hex().upper()})")
    if s.hash_algorithm != HASH_SHA1:
        s.fail("algorithm", f"{what}: hash algorithm {s.hash_algorithm:02X}, expected 01")
    d = s.dynamic_data
    if d:
        # DDA (Table 18): only the ICC dynamic number is defined, and read leniently
        s.icc_dynamic_number = d[1 : 1 + d[0]]
        if cda:
            try:
                dd = CDA_DYNAMIC_DATA.parse(d)
            except ConstructError:
                s.fail("format", f"{what}: CDA ICC dynamic data of {len(d)} bytes is too short (Table 19)")
            else:
                s.cid, s.cryptogram, s.transaction_data_hash = dd.cid, dd.cryptogram, dd.transaction_data_hash
    elif cda:
        s.fail("format", f"{what}: no ICC dynamic data")
    return s

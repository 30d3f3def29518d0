"""EMV offline data authentication objects made at data preparation.

Pure functions, bytes in and bytes out; the private-key operation is a
``signer`` callable (``block -> block^d mod n``, e.g.
``functools.partial(keystore.rsa_sign_raw, "ISSUER")``), so the keys stay in
the key store (software or PKCS#11). Hash algorithm 01 (SHA-1) and public key
algorithm 01 (RSA) as EMV 4.4 Book 2 §5.1 defines them.

* :func:`issuer_certificate` — Issuer Public Key Certificate (90), Remainder
  (92): Book 2 §5.3, Table 13.
* :func:`signed_static_data` — Signed Static Application Data (93): Book 2
  §5.4, Table 7.
* :func:`icc_certificate` — ICC Public Key Certificate (9F46), Remainder (9F48):
  Book 2 §6.4, Table 14 (its hash also covers the static data to be
  authenticated).
* :func:`recover_issuer_certificate`, :func:`recover_icc_certificate`,
  :func:`recover_signed_static_data` — the terminal's checks (§5.3, §5.4,
  §6.4) with plain integer RSA; they raise :class:`CertificateError`.
* :func:`check_issuer_certificate` — every §5.3 check of an issuer certificate
  the scheme returned (issuer identifier, expiry, the certified key), before
  data preparation puts it on cards.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from construct import ConstructError

from cardlab.cardspec.signed_data import (
    FORMAT_ICC,
    FORMAT_ISSUER,
    FORMAT_SSAD,
    HASH_SHA1,
    HEADER,
    ICC_PK_CERTIFICATE,
    ISSUER_PK_CERTIFICATE,
    PK_RSA,
    SIGNED_STATIC_DATA,
    TRAILER,
    build_with_hash,
    hashed_part,
)

__all__ = [
    "CertificateError",
    "IccCertificate",
    "IssuerCertificate",
    "Signer",
    "SignedStaticData",
    "certificate_end",
    "check_issuer_certificate",
    "icc_certificate",
    "issuer_certificate",
    "issuer_identifier",
    "pan_field",
    "recover",
    "recover_icc_certificate",
    "recover_issuer_certificate",
    "recover_signed_static_data",
    "signed_static_data",
]

#: ``block -> signature``: the raw RSA private operation of the certifying key
Signer = Callable[[bytes], bytes]


class CertificateError(ValueError):
    """A certificate or signature does not verify (the message says which check)."""


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def _split(modulus: bytes, room: int) -> tuple[bytes, bytes]:
    """(key field padded with BB to ``room`` bytes, remainder)."""
    head, rest = modulus[:room], modulus[room:]
    return head + b"\xbb" * (room - len(head)), rest


def _sign(signer: Signer, block: bytes) -> bytes:
    sig = signer(block)
    if len(sig) != len(block):
        raise ValueError(f"signer returned {len(sig)} bytes for a {len(block)}-byte block")
    return sig


def issuer_identifier(pan_or_bin: str) -> bytes:
    """Issuer Identifier: the leftmost 3–8 PAN digits, ``F``-padded to 4 bytes.

    >>> issuer_identifier("476173").hex().upper()
    '476173FF'
    """
    digits = pan_or_bin[:8]
    if not (digits.isdigit() and len(digits) >= 3):
        raise ValueError("issuer identifier: 3 to 8 digits")
    return bytes.fromhex(digits.ljust(8, "F"))


def pan_field(pan: str) -> bytes:
    """The PAN as the ICC certificate holds it: 10 bytes, ``F``-padded.

    >>> pan_field("4761739001010010").hex().upper()
    '4761739001010010FFFF'
    """
    if not (pan.isdigit() and len(pan) <= 19):
        raise ValueError("PAN: up to 19 digits")
    return bytes.fromhex(pan.ljust(20, "F"))


def _mmyy(expiry: bytes) -> bytes:
    if len(expiry) != 2:
        raise ValueError("certificate expiration date is 2 bytes MMYY")
    return expiry


def issuer_certificate(
    signer: Signer,
    ca_modulus_length: int,
    issuer_modulus: bytes,
    issuer_exponent: bytes,
    issuer_id: bytes,
    expiry_mmyy: bytes,
    serial: bytes,
) -> tuple[bytes, bytes]:
    """(Issuer Public Key Certificate 90, Remainder 92) — Book 2 §5.3, Table 13.

    The recovered data is ``6A ‖ 02 ‖ issuer id (4) ‖ MMYY (2) ‖ serial (3) ‖
    01 ‖ 01 ‖ N_I ‖ exponent length ‖ key field (N_CA − 36) ‖ SHA-1 ‖ BC``;
    the hash covers format … key field ‖ remainder ‖ exponent.
    """
    if len(issuer_id) != 4 or len(serial) != 3:
        raise ValueError("issuer identifier is 4 bytes, serial 3")
    n_ca = ca_modulus_length
    if len(issuer_modulus) > n_ca:
        raise ValueError("the issuer modulus is longer than the CA modulus (Book 2 §5.3)")
    field, remainder = _split(issuer_modulus, n_ca - 36)
    fields = {
        "issuer_id": issuer_id, "expiry": _mmyy(expiry_mmyy), "serial": serial, "hash_algorithm": HASH_SHA1,
        "pk_algorithm": PK_RSA, "pk_length": len(issuer_modulus), "exponent_length": len(issuer_exponent),
        "key_field": field,
    }  # fmt: skip
    block = build_with_hash(ISSUER_PK_CERTIFICATE, fields, remainder + issuer_exponent, n_ca=n_ca)
    return _sign(signer, block), remainder


def signed_static_data(signer: Signer, issuer_modulus_length: int, static_data: bytes, dac: bytes) -> bytes:
    """Signed Static Application Data (93) — Book 2 §5.4, Table 7.

    Recovered: ``6A ‖ 03 ‖ 01 ‖ DAC (2) ‖ BB × (N_I − 26) ‖ SHA-1 ‖ BC``, the
    hash over format … padding ‖ the static data to be authenticated.
    """
    if len(dac) != 2:
        raise ValueError("data authentication code is 2 bytes")
    fields = {"hash_algorithm": HASH_SHA1, "dac": dac}  # the pad pattern defaults to BB…
    return _sign(signer, build_with_hash(SIGNED_STATIC_DATA, fields, static_data, n_i=issuer_modulus_length))


def icc_certificate(
    signer: Signer,
    issuer_modulus_length: int,
    pan: str,
    expiry_mmyy: bytes,
    serial: bytes,
    icc_modulus: bytes,
    icc_exponent: bytes,
    static_data: bytes,
) -> tuple[bytes, bytes]:
    """(ICC Public Key Certificate 9F46, Remainder 9F48) — Book 2 §6.4, Table 14.

    Recovered: ``6A ‖ 04 ‖ PAN (10) ‖ MMYY ‖ serial (3) ‖ 01 ‖ 01 ‖ N_IC ‖
    exponent length ‖ key field (N_I − 42) ‖ SHA-1 ‖ BC``; the hash covers
    format … key field ‖ remainder ‖ exponent ‖ static data to be authenticated.
    """
    if len(serial) != 3:
        raise ValueError("serial is 3 bytes")
    n_i = issuer_modulus_length
    if len(icc_modulus) > n_i:
        raise ValueError("the ICC modulus is longer than the issuer modulus (Book 2 §6.1)")
    field, remainder = _split(icc_modulus, n_i - 42)
    fields = {
        "pan": pan_field(pan), "expiry": _mmyy(expiry_mmyy), "serial": serial, "hash_algorithm": HASH_SHA1,
        "pk_algorithm": PK_RSA, "pk_length": len(icc_modulus), "exponent_length": len(icc_exponent),
        "key_field": field,
    }  # fmt: skip
    block = build_with_hash(ICC_PK_CERTIFICATE, fields, remainder + icc_exponent + static_data, n_i=n_i)
    return _sign(signer, block), remainder


# --------------------------------------------------------------------------- recovery (terminal side)


def recover(signature: bytes, modulus: int, exponent: int) -> bytes:
    """``signature^e mod n`` as bytes of the modulus length (Book 2 §5.1)."""
    size = (modulus.bit_length() + 7) // 8
    if len(signature) != size:
        raise CertificateError(f"{len(signature)} bytes signed, but the key modulus is {size} bytes")
    return pow(int.from_bytes(signature, "big"), exponent, modulus).to_bytes(size, "big")


def _parse(rec: bytes, layout: Any, fmt: int, what: str, **sizes: int) -> Any:
    """Book 2 steps 2–4 (header, trailer, format) on the recovered block, then
    its fields by ``layout``, then the hash algorithm (step 5 needs SHA-1)."""
    if rec[0] != HEADER or rec[-1] != TRAILER:
        raise CertificateError(f"{what}: recovered data header/trailer is not 6A/BC")
    if rec[1] != fmt:
        raise CertificateError(f"{what}: format {rec[1]:02X}, expected {fmt:02X}")
    try:
        fields = layout.parse(rec, **sizes)
    except ConstructError:
        raise CertificateError(f"{what}: {len(rec)} bytes are too short for format {fmt:02X}") from None
    if fields.hash_algorithm != HASH_SHA1:
        raise CertificateError(f"{what}: hash algorithm is not SHA-1 (01)")
    return fields


@dataclass(frozen=True)
class IssuerCertificate:
    issuer_id: bytes
    expiry_mmyy: bytes
    serial: bytes
    hash_algorithm: int
    pk_algorithm: int
    modulus: bytes
    exponent: bytes


@dataclass(frozen=True)
class IccCertificate:
    pan: str
    expiry_mmyy: bytes
    serial: bytes
    hash_algorithm: int
    pk_algorithm: int
    modulus: bytes
    exponent: bytes


@dataclass(frozen=True)
class SignedStaticData:
    hash_algorithm: int
    dac: bytes


def recover_issuer_certificate(
    cert: bytes, remainder: bytes, exponent: bytes, ca_modulus: int, ca_exponent: int
) -> IssuerCertificate:
    """Book 2 §5.3 steps 1–9 (without the PAN and date checks, which need the card)."""
    rec = recover(cert, ca_modulus, ca_exponent)
    c = _parse(rec, ISSUER_PK_CERTIFICATE, FORMAT_ISSUER, "issuer certificate", n_ca=len(rec))
    if c.exponent_length != len(exponent):
        raise CertificateError("issuer certificate: exponent length differs from 9F32")
    if _sha1(hashed_part(rec) + remainder + exponent) != c.hash:
        raise CertificateError("issuer certificate: hash differs")
    modulus = (c.key_field + remainder)[: c.pk_length]
    if len(modulus) != c.pk_length:
        raise CertificateError("issuer certificate: remainder too short for the key length")
    return IssuerCertificate(c.issuer_id, c.expiry, c.serial, c.hash_algorithm, c.pk_algorithm, modulus, exponent)


def recover_icc_certificate(
    cert: bytes,
    remainder: bytes,
    exponent: bytes,
    static_data: bytes,
    issuer_modulus: int,
    issuer_exponent: int,
) -> IccCertificate:
    """Book 2 §6.4 steps 1–9."""
    rec = recover(cert, issuer_modulus, issuer_exponent)
    c = _parse(rec, ICC_PK_CERTIFICATE, FORMAT_ICC, "ICC certificate", n_i=len(rec))
    if c.exponent_length != len(exponent):
        raise CertificateError("ICC certificate: exponent length differs from 9F47")
    if _sha1(hashed_part(rec) + remainder + exponent + static_data) != c.hash:
        raise CertificateError("ICC certificate: hash differs")
    modulus = (c.key_field + remainder)[: c.pk_length]
    if len(modulus) != c.pk_length:
        raise CertificateError("ICC certificate: remainder too short for the key length")
    pan = c.pan.hex().upper().rstrip("F")
    return IccCertificate(pan, c.expiry, c.serial, c.hash_algorithm, c.pk_algorithm, modulus, exponent)


def recover_signed_static_data(
    ssad: bytes, static_data: bytes, issuer_modulus: int, issuer_exponent: int
) -> SignedStaticData:
    """Book 2 §5.4 steps 1–7."""
    rec = recover(ssad, issuer_modulus, issuer_exponent)
    s = _parse(rec, SIGNED_STATIC_DATA, FORMAT_SSAD, "signed static application data", n_i=len(rec))
    if _sha1(hashed_part(rec) + static_data) != s.hash:
        raise CertificateError("signed static application data: hash differs")
    return SignedStaticData(s.hash_algorithm, s.dac)


def certificate_end(mmyy: bytes) -> date | None:
    """The last day a certificate with expiration date ``mmyy`` (n 4) is valid
    (Book 2 §5.3 step 9: up to the last day of the month); YY below 50 is 20YY,
    otherwise 19YY. ``None`` when it is not a date.

    >>> certificate_end(bytes.fromhex("0228"))
    datetime.date(2028, 2, 29)
    """
    text = mmyy.hex()
    if len(text) != 4 or not text.isdigit() or not 1 <= int(text[:2]) <= 12:
        return None
    month, yy = int(text[:2]), int(text[2:])
    year = 2000 + yy if yy < 50 else 1900 + yy
    return date(year, month, calendar.monthrange(year, month)[1])


def check_issuer_certificate(
    cert: bytes,
    remainder: bytes,
    exponent: bytes,
    ca_modulus: int,
    ca_exponent: int,
    *,
    issuer_id: bytes,
    issuer_modulus: bytes,
    issuer_exponent: bytes,
    today: date,
) -> IssuerCertificate:
    """Book 2 §5.3 for a certificate before it goes on cards: recovery with the
    CA public key (length, header 6A, format 02, trailer BC, hash algorithm 01,
    hash), public key algorithm 01, the issuer identifier ``issuer_id`` (4 bytes,
    F-padded), the expiry against ``today``, and that the certified key (leftmost
    digits ‖ remainder, exponent) is the issuer key ``issuer_modulus`` /
    ``issuer_exponent`` — else every card's SDA/DDA would fail at the terminal.
    Raises :class:`CertificateError` naming the check."""
    n_ca = (ca_modulus.bit_length() + 7) // 8
    if len(cert) != n_ca:
        raise CertificateError(f"issuer certificate: {len(cert)} bytes, but the CA public key is {n_ca} bytes")
    rec = recover_issuer_certificate(cert, remainder, exponent, ca_modulus, ca_exponent)
    if rec.pk_algorithm != PK_RSA:
        raise CertificateError(f"issuer certificate: public key algorithm {rec.pk_algorithm:02X}, expected 01 (RSA)")
    if rec.issuer_id != issuer_id:
        raise CertificateError(
            f"issuer certificate: issuer identifier {rec.issuer_id.hex().upper()}, "
            f"expected {issuer_id.hex().upper()}"
        )
    end = certificate_end(rec.expiry_mmyy)
    if end is None:
        raise CertificateError(f"issuer certificate: expiration date {rec.expiry_mmyy.hex().upper()} is not MMYY")
    if end < today:
        raise CertificateError(f"issuer certificate: expired at the end of {end:%m/%Y} (today is {today})")
    if rec.modulus != issuer_modulus or rec.exponent != issuer_exponent:
        raise CertificateError(
            f"issuer certificate: certifies another key ({len(rec.modulus) * 8} bits, exponent "
            f"{rec.exponent.hex().upper()}) than the issuer key ({len(issuer_modulus) * 8} bits, exponent "
            f"{issuer_exponent.hex().upper()})"
        )
    return rec

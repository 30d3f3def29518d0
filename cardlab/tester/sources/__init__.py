"""The tester's own readers of the certification source data, and what a card
SHOULD hold according to it.

Formats (docs/profile.md, docs/keystore.md) — read here independently of the
personalizer, so that a personalizer mistake shows up as a disagreement:

* issuer profile (YAML) → :class:`IssuerProfile` with one :class:`AppProfile`
  per application;
* cardholder records (CSV with a header, or JSON Lines) → :class:`Record`;
* issuer key store (JSON; clear test keys or scrypt + AES-256-GCM encrypted
  keys) → :class:`KeyStore` (only what certification needs: IMKs, RSA public
  keys, CA public keys).

:func:`expected_objects` derives, for one application and one record, every
data object the card must hold with its exact value and place.

Where each part lives: :mod:`.fields` (:class:`SourceError`, PAN masking and
redaction, BCD, Luhn, DOL fields), :mod:`.profile`, :mod:`.records`,
:mod:`.keys` and :mod:`.derive` (track 2, discretionary data, the expected
objects). Every name is re-exported here.
"""

from __future__ import annotations

from .fields import SourceError, bcd, encode_dol, luhn_ok, mask_pan, parse_dol_spec, redact
from .profile import (
    CARDHOLDER_TAGS, CVM_CONDITIONS, CVM_METHODS, CVN_CODES, KEY_TAGS, AppProfile, ContactlessSpec, CvmRule, IssuerProfile,
    RecordLayout, load_profile,
)
from .records import Record, load_record, read_records
from .keys import CaKey, KeyStore, load_keystore
from .derive import (
    DEFAULT_DISCRETIONARY, TRACK2_MAX, Expected, bcd_f, discretionary, expected_objects, pan_bytes, service_code,
    today, track2, yymmdd,
)


__all__ = [
    "SourceError", "bcd", "encode_dol", "luhn_ok", "mask_pan", "parse_dol_spec", "redact", "CARDHOLDER_TAGS",
    "CVM_CONDITIONS", "CVM_METHODS", "CVN_CODES", "KEY_TAGS", "AppProfile", "ContactlessSpec", "CvmRule", "IssuerProfile", "RecordLayout",
    "load_profile", "Record", "load_record", "read_records", "CaKey", "KeyStore", "load_keystore",
    "DEFAULT_DISCRETIONARY", "TRACK2_MAX", "Expected", "bcd_f", "discretionary", "expected_objects", "pan_bytes",
    "service_code", "today", "track2", "yymmdd",
]

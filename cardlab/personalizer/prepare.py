"""Data preparation: issuer profile + cardholder records + key store → a batch.

``prepare(profile_path, records_path, keystore, out_dir)`` streams the records
(``cardlab.personalizer.records.read_records``), prepares each accepted record with
:class:`CardPreparer` and writes the batch directory of ``cardlab.personalizer.batch``
one line at a time (memory does not grow with the batch):

* ``cards.jsonl`` — one :class:`~personalizer.batch.CardPersoData` per card: per
  application of the profile the install information and every CPS DGI of
  ``docs/dgi-map.md``; secrets (8000, 8010, 8201–8205), the record DGIs that
  hold the PAN in clear or recoverably (5A, 57, 56, 9F6B, and the ICC public
  key certificates 9F46/9F2D, which anyone with the CA public key can open to
  read the PAN) and the station data (full PAN) are
  :class:`~personalizer.batch.Sealed` under the transport key — so a
  :class:`Sealed` value may appear on any DGI, and the engine sends every
  sealed DGI in an encrypted STORE DATA block (the card accepts non-secret
  DGIs there too);
* ``rejected.jsonl`` — one :class:`~personalizer.batch.Rejection` per refused
  record (record number, masked PAN, field, message); the batch goes on;
* ``profile.yaml`` — a copy of the profile;
* ``manifest.json`` — written last: counts, SHA-256 of the inputs and of
  ``cards.jsonl``, transport key name and KCV, profile name, creation time.

Per card and application: ICC master keys (EMV Book 2 A1.4 Option A, Option B
for PANs over 16 digits) derived inside the key store and wrapped under the
transport key; Track 2 Equivalent Data and the magnetic tracks with the service
code; the AFL record layout; SDA (93) over exactly the records the AFL marks for
ODA plus the SDA tag list; for DDA/CDA a fresh ICC RSA key pair with its
certificate (9F46/9F47/9F48) and CRT parts; the issuer certificate objects (8F,
90, 92, 9F32): the certificate the scheme returned, given with the profile
(``keys.issuer_certificate``; verified once per batch before any card, see
:meth:`CardPreparer.verify_issuer_certificates`), else the key store's ready-made
one for the PAN's BIN, else one signed with the key store's CA key (test set-ups:
a bureau never holds a scheme CA's private key).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from cardlab.cardspec.scp03 import pad80
from cardlab.personalizer import certificates, cps, tracks
from cardlab.personalizer.badge import BadgeLayout, BadgeRecordError, prepare_badges
from cardlab.personalizer.batch import (
    FORMAT, VERSION, AppPersoData, BatchExistsError, CardPersoData, Rejection, Sealed, staging,
)
from cardlab.personalizer.keys import KeyStore, KeyStoreError, RsaPublicKey, open_keystore
from cardlab.personalizer.masking import mask_pan, redact_pans
from cardlab.personalizer.profile import Application, IssuerCertificateRef, Profile, ProfileError, load_profile
from cardlab.personalizer.records import Record, Rejected, RecordsError, read_records
from cardlab.personalizer.transport import TransportKeys

__all__ = [
    "CardPreparer",
    "IccKeyPair",
    "generate_icc_key",
    "CardProblem",
    "PrepareError",
    "PrepareSummary",
    "add_commands",
    "load_ca_public_keys",
    "prepare",
]

_CHUNK = 1 << 20


#: tags whose value shows the PAN in clear (5A PAN, 57 Track 2 equivalent, 56 Track 1 data,
#: 9F6B Track 2 data) or recoverably: the ICC public key certificate 9F46 and the ICC PIN
#: encipherment public key certificate 9F2D hold the PAN (EMV Book 2 §6.4 table 14, §7.1),
#: and anyone with the scheme's CA public key can recover them
PAN_TAGS = frozenset({0x5A, 0x57, 0x56, 0x9F6B, 0x9F46, 0x9F2D})


class PrepareError(Exception):
    """The batch cannot be prepared at all (profile, keys, output directory)."""


class CardProblem(ValueError):
    """One record cannot be prepared; it is rejected with ``field`` and the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PrepareSummary:
    out_dir: Path
    profile: str
    input_count: int
    accepted: int
    rejected: int
    seconds: float
    cards_sha256: str
    transport_key: str
    transport_kcv: str

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.input_count / self.seconds if self.seconds else 0.0


# --------------------------------------------------------------------------- ICC key pairs


@dataclass(frozen=True)
class IccKeyPair:
    """A per-card ICC RSA key pair (integers; never printed)."""

    n: int = field(repr=False)
    e: int
    d: int = field(repr=False)
    p: int = field(repr=False)
    q: int = field(repr=False)


_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


def _probable_prime(n: int, rounds: int = 40) -> bool:
    if any(n % sp == 0 for sp in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, e: int) -> int:
    while True:
        c = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1  # top two bits set: n has exactly 2·bits bits
        if (c - 1) % e and _probable_prime(c):
            return c


def generate_icc_key(bits: int, e: int) -> IccKeyPair:
    """A fresh RSA key pair: OpenSSL through ``cryptography`` from 1024 bits (it
    refuses smaller keys); below that (EMV allows ICC keys from 512 bits) a
    Miller–Rabin generator here, with the same shape (two primes of bits/2)."""
    if bits >= 1024:
        k = rsa.generate_private_key(public_exponent=e, key_size=bits).private_numbers()
        return IccKeyPair(k.public_numbers.n, e, k.d, k.p, k.q)
    while True:
        p, q = _prime(bits // 2, e), _prime(bits - bits // 2, e)
        if p != q and (p * q).bit_length() == bits:
            d = pow(e, -1, (p - 1) * (q - 1) // math.gcd(p - 1, q - 1))
            return IccKeyPair(p * q, e, d, max(p, q), min(p, q))


# --------------------------------------------------------------------------- per-card preparation


@dataclass
class _AppContext:
    """What is the same on every card for one application of the profile."""

    app: Application
    values: dict[int, bytes]
    dgi_9104: bytes
    dgi_0d01: bytes
    dgi_0e01: bytes
    dgi_9010: bytes
    issuer: RsaPublicKey | None
    pan_records: frozenset[int]
    dgi_0d02: bytes = b""  # currency conversion table; empty: not sent
    issuer_objects: dict[str, dict[int, bytes]] = field(default_factory=dict)  # by BIN


class _Extra(Protocol):
    extra: dict[str, Any]


class CardPreparer:
    """Prepares one card at a time for ``profile`` with the keys of ``keystore``.

    Everything is checked when it is built (key names and usages, ICC key sizes
    against the issuer key), so per-card failures are record problems only.
    """

    def __init__(
        self,
        profile: Profile,
        keystore: KeyStore,
        transport_key: str = "KEK",
        *,
        ca_key: str | None = None,
        issuer_cert_years: int | None = None,
        today: date | None = None,
        ca_public_keys: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.profile = profile
        self.keys = keystore
        self.kek = transport_key
        self.today = today or date.today()
        self.issuer_cert_years = issuer_cert_years
        #: CA public keys (``load_ca_public_keys``) besides the key store's, to verify certificates
        self.ca_public_keys = tuple(ca_public_keys)
        problems: list[str] = []
        info = self._info(transport_key, problems)
        if info is not None and info.usage != "KEK":
            problems.append(f"transport key {transport_key!r} has usage {info.usage}, not KEK")
        self.kek_kcv = info.kcv if info is not None and info.kcv is not None else b""
        self._ca_key_name = ca_key
        #: issuer certificate (90) → the last day it is valid, for the card expiry check
        self._cert_ends: dict[bytes, date] = {}
        self.apps: list[_AppContext] = []
        for i, app in enumerate(profile.applications):
            where = f"applications[{i}] ({app.name})"
            for what, name in (("imk_ac", app.keys.imk_ac), ("imk_smi", app.keys.imk_smi),
                               ("imk_smc", app.keys.imk_smc)):  # fmt: skip
                ki = self._info(name, problems, f"{where}.keys.{what}")
                if ki is not None and ki.usage != what.upper().replace("_", "-"):
                    problems.append(f"{where}.keys.{what}: key {name!r} has usage {ki.usage}")
            issuer: RsaPublicKey | None = None
            if app.oda:
                if app.keys.issuer_rsa is None or app.keys.ca_index is None:
                    problems.append(f"{where}: ODA needs keys.issuer_rsa and keys.ca_index")
                elif self._info(app.keys.issuer_rsa, problems, f"{where}.keys.issuer_rsa") is not None:
                    issuer = keystore.public_key(app.keys.issuer_rsa)
                    n_i = len(issuer.modulus_bytes)
                    if app.icc_key is not None and app.icc_key.size // 8 > n_i:
                        problems.append(
                            f"{where}.icc_key.size: {app.icc_key.size} bits is longer than the issuer key "
                            f"({n_i * 8} bits, Book 2 §6.1)"
                        )
                    problems += self._issuer_certificate_problems(app, issuer, where)
            self.apps.append(
                _AppContext(
                    app=app,
                    values=cps.profile_values(app),
                    dgi_9104=cps.gpo_9104(app),
                    dgi_0d01=cps.internal_0d01(app),
                    dgi_0e01=cps.get_data_0e01(app),
                    dgi_9010=cps.pin_try_9010(app.pin_try_limit),
                    issuer=issuer,
                    pan_records=frozenset(r.dgi for r in app.records if PAN_TAGS & set(r.tags)),
                    dgi_0d02=cps.conversion_0d02(app),
                )
            )
        if problems:
            raise PrepareError("; ".join(problems))

    def _info(self, name: str, problems: list[str], where: str = "") -> Any:
        try:
            return self.keys.info(name)
        except KeyStoreError:
            problems.append(f"{where + ': ' if where else ''}no key {name!r} in the key store")
            return None

    # -- sealing

    def seal(self, data: bytes) -> Sealed:
        """``data`` encrypted under the transport key (AES-CBC, zero ICV, ISO 9797-1 method 2)."""
        return Sealed(self.kek, self.kek_kcv, self.keys.encrypt(self.kek, pad80(data)))

    # -- issuer certificate objects

    def _issuer_certificate_problems(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
        """Where the application's issuer certificates come from, checked before any card:
        the profile's (verified), or the key store's ready-made ones, or a CA private key."""
        field_ = f"{where}.keys.issuer_certificate"
        keys = app.keys
        assert keys.issuer_rsa is not None and keys.ca_index is not None
        if keys.issuer_certificate_file is not None and not keys.issuer_certificates:
            file = keys.issuer_certificate_file
            return [f"{field_}: {file} was not read (the profile was parsed without its directory: use load_profile)"]
        if keys.issuer_certificates:
            return self.verify_issuer_certificates(app, issuer, where)
        if self._store_certificates(app):
            return self._verify_store_certificates(app, issuer, where)
        try:
            self._ca_key(keys.ca_index)
        except (PrepareError, KeyStoreError) as e:
            return [
                (
                    f"{field_}: missing: the key store has no issuer certificate for key {keys.issuer_rsa!r} and "
                    f"CA index {keys.ca_index:02X}, and no CA private key to sign one ({e}); give the certificate "
                    "the scheme returned (docs/profile.md)"
                )
            ]
        return []

    def verify_issuer_certificates(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
        """Every certificate of ``keys.issuer_certificate`` checked as a terminal will
        (EMV Book 2 §5.3): recovered with the CA public key of the application's RID and
        ``ca_index``, header/trailer, format 02, algorithms, hash, issuer identifier, expiry
        against today, and the certified key equal to the ``issuer_rsa`` key's public
        half. Returns the problems (each names the profile field); once per batch."""
        keys = app.keys
        assert keys.issuer_rsa is not None and keys.ca_index is not None
        rid = app.aid[:5]
        try:
            ca = self._ca_public_key(rid, keys.ca_index)
        except KeyStoreError as e:
            return [f"{where}.keys.issuer_certificate: cannot verify it: {e}"]
        if ca is None:
            return [
                (
                    f"{where}.keys.issuer_certificate: cannot verify it: no CA public key for RID "
                    f"{rid.hex().upper()} index {keys.ca_index:02X} (none in the key store's ca_public_keys, "
                    "no CA key in the key store; give one with --ca-public-keys FILE)"
                )
            ]
        ca_name, ca_pub = ca
        problems: list[str] = []
        for c in keys.issuer_certificates:
            try:
                rec = certificates.check_issuer_certificate(
                    c.certificate, c.remainder, c.exponent, ca_pub.modulus, ca_pub.exponent,
                    issuer_id=certificates.issuer_identifier(c.issuer_identifier),
                    issuer_modulus=issuer.modulus_bytes, issuer_exponent=issuer.exponent_bytes,
                    today=self.today,
                )  # fmt: skip
                self._note_end(c.certificate, rec.expiry_mmyy)
            except certificates.CertificateError as e:
                problems.append(
                    f"{c.where} ({app.name}, issuer identifier {c.issuer_identifier}): {e} "
                    f"[issuer key {keys.issuer_rsa!r}; CA public key {ca_name}]"
                )
        return problems

    def _verify_store_certificates(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
        """The key store's ready-made certificates for this application, checked as the
        profile's are (:meth:`verify_issuer_certificates`): a stale or foreign one would
        otherwise go onto every card and fail every terminal's ODA."""
        keys = app.keys
        assert keys.ca_index is not None
        rid = app.aid[:5]
        label = f"{where}: the key store's issuer_certificates for key {keys.issuer_rsa!r}"
        try:
            ca = self._ca_public_key(rid, keys.ca_index)
        except KeyStoreError as e:
            return [f"{label}: cannot verify them: {e}"]
        if ca is None:
            return [f"{label}: cannot verify them: no CA public key for RID {rid.hex().upper()} index "
                    f"{keys.ca_index:02X} (give one with --ca-public-keys FILE)"]
        ca_name, ca_pub = ca
        problems: list[str] = []
        for c in self._store_certificates(app):
            ident = str(c.get("issuer_identifier", "")).upper().rstrip("F")
            try:
                cert = bytes.fromhex(str(c.get("certificate_90", "")))
                rec = certificates.check_issuer_certificate(
                    cert, bytes.fromhex(str(c.get("remainder_92", ""))),
                    bytes.fromhex(str(c.get("exponent_9F32", ""))), ca_pub.modulus, ca_pub.exponent,
                    issuer_id=certificates.issuer_identifier(ident),
                    issuer_modulus=issuer.modulus_bytes, issuer_exponent=issuer.exponent_bytes,
                    today=self.today,
                )  # fmt: skip
                self._note_end(cert, rec.expiry_mmyy)
            except (certificates.CertificateError, ValueError) as e:
                problems.append(f"{label} (issuer identifier {ident}): {e} [CA public key {ca_name}]")
        return problems

    def _note_end(self, certificate: bytes, expiry_mmyy: bytes) -> None:
        end = certificates.certificate_end(expiry_mmyy)
        if end is not None:
            self._cert_ends[certificate] = end

    def _ca_public_key(self, rid: bytes, index: int) -> tuple[str, RsaPublicKey] | None:
        """(description, key) of the CA public key to verify certificates with: the
        ``ca_key`` name given; else a ``ca_public_keys`` entry (given to the preparer, then
        the key store's) for this RID and index; else the public half of the key store's
        only CA key (a test CA registered under another RID, as the tester assumes)."""
        if self._ca_key_name is not None:
            return f"{self._ca_key_name!r} (ca_key)", self.keys.public_key(self._ca_key_name)
        extra: Mapping[str, Any] = getattr(self.keys, "extra", {}) or {}
        for entry in (*self.ca_public_keys, *extra.get("ca_public_keys", ())):
            try:
                e_rid = bytes.fromhex(str(entry.get("rid", "")))
                e_index = int(str(entry.get("index", "-1")), 16)
            except ValueError:
                continue
            if e_index != index or (e_rid and e_rid != rid):
                continue
            label = f"{rid.hex().upper()}/{index:02X}"
            if entry.get("modulus") and entry.get("exponent"):
                return label, RsaPublicKey(int(str(entry["modulus"]), 16), int(str(entry["exponent"]), 16))
            if entry.get("key") and str(entry["key"]) in self.keys:
                return f"{label} ({entry['key']!r})", self.keys.public_key(str(entry["key"]))
        cas = [n for n in self.keys.names() if self.keys.info(n).usage == "CA"]
        if len(cas) == 1:
            return f"{cas[0]!r} (the key store's only CA key)", self.keys.public_key(cas[0])
        return None

    def _store_certificates(self, app: Application) -> list[Mapping[str, Any]]:
        """The key store's ready-made certificates (``issuer_certificates`` extra data)
        of the application's issuer key and CA index."""
        extra: Mapping[str, Any] = getattr(self.keys, "extra", {}) or {}
        return [
            c for c in extra.get("issuer_certificates", ())
            if c.get("issuer_key") == app.keys.issuer_rsa
            and int(str(c.get("ca_index", "-1")), 16) == app.keys.ca_index
        ]  # fmt: skip

    def _ca_key(self, ca_index: int) -> tuple[str, RsaPublicKey]:
        name = self._ca_key_name
        if name is None:
            extra: Mapping[str, Any] = getattr(self.keys, "extra", {}) or {}
            for entry in extra.get("ca_public_keys", ()):
                if int(entry.get("index", "-1"), 16) == ca_index and entry.get("key"):
                    name = str(entry["key"])
                    break
        if name is None:
            cas = [n for n in self.keys.names() if self.keys.info(n).usage == "CA"]
            if len(cas) != 1:
                raise PrepareError(
                    f"no CA key for index {ca_index:02X} in the key store (found {len(cas)} CA keys); "
                    "name one with ca_key="
                )
            name = cas[0]
        return name, self.keys.public_key(name)

    def issuer_objects(self, ctx: _AppContext, pan: str) -> dict[int, bytes]:
        """8F, 90, 92, 9F32 for the PAN: the profile's certificate whose issuer
        identifier starts the PAN (a PAN on none is a record problem, field
        ``pan``); without profile certificates the key store's certificate for
        that issuer key, CA index and BIN, or one signed now with the CA key
        (EMV Book 2 §5.3), once per BIN and batch."""
        app, issuer = ctx.app, ctx.issuer
        assert issuer is not None and app.keys.issuer_rsa is not None and app.keys.ca_index is not None
        ca_index = app.keys.ca_index
        if app.keys.issuer_certificates:
            given: IssuerCertificateRef | None = app.keys.issuer_certificate_for(pan)
            if given is None:
                idents = ", ".join(c.issuer_identifier for c in app.keys.issuer_certificates)
                raise CardProblem(
                    "pan",
                    f"on no issuer identifier of {app.name}'s keys.issuer_certificate ({idents}): "
                    "no issuer certificate for this PAN",
                )
            return {0x8F: bytes((ca_index,)), 0x90: given.certificate, 0x92: given.remainder,
                    0x9F32: given.exponent}  # fmt: skip
        bin6 = pan[:6]
        cached = ctx.issuer_objects.get(bin6)
        if cached is not None:
            return cached
        objects: dict[int, bytes] | None = None
        for c in self._store_certificates(app):
            ident = str(c.get("issuer_identifier", "")).upper().rstrip("F")
            if ident and pan.startswith(ident):
                objects = {
                    0x90: bytes.fromhex(c["certificate_90"]),
                    0x92: bytes.fromhex(c.get("remainder_92", "")),
                    0x9F32: bytes.fromhex(c["exponent_9F32"]),
                }
                break
        if objects is None:
            try:
                ca_name, ca_pub = self._ca_key(ca_index)
            except PrepareError as exc:  # this BIN has no certificate and none can be signed: this record only
                raise CardProblem("pan", f"no issuer certificate covers BIN {bin6} ({exc})") from None
            ident_b = certificates.issuer_identifier(bin6)
            # valid to December 2049 unless told otherwise: the latest expiry a card may have (two-digit
            # years 50-99 read as 19YY, Book 4 §6.7.3), so no card outlives the certificate it carries
            year = 2049 if self.issuer_cert_years is None else self.today.year + self.issuer_cert_years
            expiry = bytes.fromhex(f"12{year % 100:02d}")
            serial = hashlib.sha256(issuer.modulus_bytes + ident_b).digest()[:3]
            cert, rem = certificates.issuer_certificate(
                functools.partial(self.keys.rsa_sign_raw, ca_name),
                len(ca_pub.modulus_bytes),
                issuer.modulus_bytes,
                issuer.exponent_bytes,
                ident_b,
                expiry,
                serial,
            )
            objects = {0x90: cert, 0x92: rem, 0x9F32: issuer.exponent_bytes}
            self._note_end(cert, expiry)
        objects[0x8F] = bytes((ca_index,))
        ctx.issuer_objects[bin6] = objects
        return objects

    # -- one card

    def prepare(self, record: Record, card_id: str | None = None) -> CardPersoData:
        """The card's perso data; raises :class:`CardProblem` for a record that does not fit."""
        pan = record.pan
        if not self.profile.pan_on_bin(pan):
            raise CardProblem("pan", f"not on a BIN of profile {self.profile.name} ({', '.join(self.profile.bins)})")
        dd = record.discretionary if record.discretionary is not None else tracks.DEFAULT_DISCRETIONARY
        if len(pan) + 8 + len(dd) > tracks.TRACK2_MAX:
            dd = dd[: max(0, tracks.TRACK2_MAX - 8 - len(pan))]
        apps = tuple(self._prepare_app(ctx, record, dd) for ctx in self.apps)
        sc = record.service_code or self.profile.applications[0].service_code
        try:
            stripe = tracks.stripe(
                pan, record.name, (record.expiry.year, record.expiry.month), sc, dd,
                (record.effective.year, record.effective.month) if record.effective else None,
            )  # fmt: skip
        except ValueError as e:
            raise CardProblem("name", str(e)) from None
        stations = {"pan": pan, **stripe.to_json(), "service_code": sc}
        fields = {
            "name": record.name,
            "expiry": str(record.expiry),
            "psn": record.psn,
            "service_code": sc,
        }
        if record.effective:
            fields["effective"] = str(record.effective)
        if record.language:
            fields["language"] = record.language
        return CardPersoData(
            card_id=card_id or f"{record.index:06d}",
            record_index=record.index,
            pan_masked=mask_pan(pan),
            apps=apps,
            fields=fields,
            stations=self.seal(json.dumps(stations, separators=(",", ":")).encode()),
        )

    def _prepare_app(self, ctx: _AppContext, record: Record, dd: str) -> AppPersoData:
        app = ctx.app
        pan, psn = record.pan, record.psn
        sc = record.service_code or app.service_code
        yymm = record.expiry.yymm
        exp = record.expiry.last_day()
        values = dict(ctx.values)
        try:
            values[0x57] = tracks.track2_equivalent(pan, yymm, sc, dd)
        except ValueError as e:
            raise CardProblem("discretionary", str(e)) from None
        values.update({
            0x5A: bytes.fromhex(pan + "F" * (len(pan) % 2)),
            0x5F20: record.name.encode("ascii"),
            0x5F24: bytes.fromhex(exp.strftime("%y%m%d")),
            0x5F25: bytes.fromhex(record.effective.first_day().strftime("%y%m%d")) if record.effective else b"",
            0x5F34: bytes.fromhex(psn),
            0x5F30: tracks.service_code_bytes(sc),
            0x9F1F: tracks.track1_discretionary(dd).encode("ascii"),
            0x9F20: bytes.fromhex(dd + "F" * (len(dd) % 2)),
            0x9F0B: b"",
        })  # fmt: skip

        # issuer certificate objects first: a PAN no certificate covers is rejected before any key work
        issuer_values = self.issuer_objects(ctx, pan) if app.oda else {}
        cert_end = self._cert_ends.get(issuer_values.get(0x90, b""))
        if cert_end is not None and record.expiry.last_day() > cert_end:
            # Book 2 §5.3 step 9: terminals refuse an expired issuer certificate, so the card
            # would fail offline data authentication for its last months
            raise CardProblem("expiry", f"{record.expiry} is after the issuer public key certificate's expiry "
                                        f"({cert_end:%m/%Y}) of {app.name}")

        # ICC master keys, wrapped inside the key store; sealed as one DGI 8000
        icc = self.keys.derive_icc_keys(
            pan, psn, self.kek, "B" if len(pan) > 16 else "A",
            app.keys.imk_ac, app.keys.imk_smi, app.keys.imk_smc,
        )  # fmt: skip
        mk = b"".join(self.keys.unwrap(w) for w in (icc.ac, icc.smi, icc.smc))
        sealed_8000 = self.seal(mk)
        del mk
        secret_dgis: list[tuple[int, bytes | Sealed]] = [(0x8000, sealed_8000)]
        if app.offline_pin:
            secret_dgis.append((0x8010, self.seal(cps.pin_block_8010(record.pin))))

        icc_key: IccKeyPair | None = None
        if app.oda:
            values.update(issuer_values)
            if app.icc_key is not None:
                icc_key = generate_icc_key(app.icc_key.size, app.icc_key.exponent)
                exponent = app.icc_key.exponent
                values[0x9F47] = exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")
            # the signed records first: 93 and 9F46 are computed over them
            signed = {(r.sfi, r.number): cps.build_record(r, values) for r in app.oda_records()}
            sda_data = cps.static_data(app, signed)
            assert ctx.issuer is not None and app.keys.issuer_rsa is not None
            signer = functools.partial(self.keys.rsa_sign_raw, app.keys.issuer_rsa)
            n_i = len(ctx.issuer.modulus_bytes)
            if "SDA" in app.oda:
                dac = record.index.to_bytes(8, "big")[-2:]
                values[0x93] = certificates.signed_static_data(signer, n_i, sda_data, dac)
            if icc_key is not None:
                size = (icc_key.n.bit_length() + 7) // 8
                mmyy = bytes.fromhex(f"{record.expiry.month:02d}{record.expiry.year % 100:02d}")
                serial = record.index.to_bytes(8, "big")[-3:]
                cert, rem = certificates.icc_certificate(
                    signer, n_i, pan, mmyy, serial, icc_key.n.to_bytes(size, "big"), values[0x9F47], sda_data
                )
                values[0x9F46], values[0x9F48] = cert, rem
                k = icc_key
                secret_dgis += [(g, self.seal(v)) for g, v in cps.crt_dgis(k.p, k.q, k.d, size)]
        try:
            records = cps.build_records(app, values)
        except KeyError as e:  # a profile tag this preparer cannot fill: a profile problem
            raise PrepareError(f"{app.name}: no value for tag {e.args[0]:X}") from None
        except ValueError as e:
            raise CardProblem("record", str(e)) from None

        # records holding the PAN (PAN_TAGS) are sealed too: the PAN is protected at rest
        # (PCI DSS); the card takes any DGI inside an encrypted STORE DATA block
        pan_records = ctx.pan_records
        dgis: list[tuple[int, bytes | Sealed]] = [
            (g, self.seal(v) if g in pan_records else v) for g, v in cps.record_dgis(records)
        ]
        dgis += [
            (0x9102, cps.fci_9102(app, record.language)),
            (0x9104, ctx.dgi_9104),
            (0x9000, cps.kcv_9000((icc.ac.kcv, icc.smi.kcv, icc.smc.kcv))),
            (0x0D01, ctx.dgi_0d01),
            (0x0E01, ctx.dgi_0e01),
        ]
        if ctx.dgi_0d02:
            dgis.append((0x0D02, ctx.dgi_0d02))
        if app.offline_pin:
            dgis.append((0x9010, ctx.dgi_9010))
        dgis += secret_dgis
        return AppPersoData(
            aid=app.aid,
            load_file=cps.EMV_LOAD_FILE_AID,
            module=cps.EMV_MODULE_AID,
            privileges=cps.PRIVILEGES,
            install_params=cps.INSTALL_PARAMS,
            dgis=tuple(dgis),
        )


# --------------------------------------------------------------------------- the batch


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _JsonLines:
    """Append-only JSON Lines writer that hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # 0600 from the first byte: the lines hold sealed secrets and masked card numbers
        self.fh: IO[bytes] = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, doc: Mapping[str, Any]) -> None:
        line = (json.dumps(doc, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        self.fh.write(line)
        self.sha.update(line)
        self.count += 1

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def _atomic_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def prepare(
    profile_path: str | Path,
    records_path: str | Path,
    keystore: KeyStore | str,
    out_dir: str | Path,
    *,
    today: date | None = None,
    transport_key: str = "KEK",
    transport_keys: TransportKeys | None = None,
    ca_key: str | None = None,
    script: str | Path | None = None,
    keys_spec: str | None = None,
    ca_public_keys: Sequence[Mapping[str, Any]] = (),
) -> PrepareSummary:
    """Prepare every record of ``records_path`` for ``profile_path`` into the
    batch directory ``out_dir`` (created; it must not hold a batch already).

    ``keystore`` is a :class:`KeyStore` or a spec for ``open_keystore`` (path or
    ``pkcs11:…``). ``transport_keys`` opens sealed records files.
    ``ca_public_keys`` (:func:`load_ca_public_keys`) verify the profile's issuer
    certificates when the key store has no CA public key for them. Raises
    :class:`PrepareError` (or ``ProfileError``/``RecordsError``/``KeyStoreError``)
    for problems of the whole batch; record problems go to rejected.jsonl.

    The batch also gets the perso script the engine runs (``script.yaml``: a copy
    of ``script``, default the shipped script for the profile kind, see
    :func:`default_script`) and, in the manifest, ``keys``: the key-store spec
    (a path or ``pkcs11:…``, never a secret) so that ``perso run BATCH`` needs no
    ``--keys``. A profile with a ``badge:`` section is prepared by
    :mod:`cardlab.personalizer.badge`.
    """
    if isinstance(keystore, str):
        spec = keys_spec or _keys_spec(keystore)
        with open_keystore(keystore) as ks:
            return prepare(profile_path, records_path, ks, out_dir, today=today, transport_key=transport_key,
                           transport_keys=transport_keys, ca_key=ca_key, script=script,
                           keys_spec=spec, ca_public_keys=ca_public_keys)  # fmt: skip
    started = time.perf_counter()
    profile_path, records_path, out = Path(profile_path), Path(records_path), Path(out_dir)
    script_path = Path(script) if script is not None else default_script(profile_path)
    if script_path is not None and not script_path.is_file():
        raise PrepareError(f"{script_path}: no such perso script")
    if _is_badge_profile(profile_path):
        return _prepare_badges(profile_path, records_path, keystore, out, started, script_path, keys_spec)
    profile = load_profile(profile_path)
    preparer = CardPreparer(profile, keystore, transport_key, ca_key=ca_key, today=today,
                            ca_public_keys=ca_public_keys)  # fmt: skip
    try:
        with staging(out) as work:
            return _prepare_into(work, out, profile, preparer, profile_path, records_path, script_path,
                                 transport_key, transport_keys, today, keys_spec, started)  # fmt: skip
    except BatchExistsError as e:
        raise PrepareError(str(e)) from None


def _prepare_into(
    work: Path,
    out: Path,
    profile: Profile,
    preparer: CardPreparer,
    profile_path: Path,
    records_path: Path,
    script_path: Path | None,
    transport_key: str,
    transport_keys: TransportKeys | None,
    today: date | None,
    keys_spec: str | None,
    started: float,
) -> PrepareSummary:
    """The EMV batch's files, written into the staging directory ``work`` (moved to ``out`` after)."""
    records_sha = _sha256_file(records_path)
    profile_sha = _sha256_file(profile_path)
    shutil.copyfile(profile_path, work / "profile.yaml")
    if script_path is not None:
        shutil.copyfile(script_path, work / "script.yaml")

    cards = _JsonLines(work / "cards.jsonl")
    rejected = _JsonLines(work / "rejected.jsonl")
    total = 0
    try:
        for item in read_records(records_path, today=today, keys=transport_keys):
            total += 1
            if isinstance(item, Rejected):
                rejected.write(Rejection(item.index, item.record_id, item.field, redact_pans(item.message)).to_json())
                continue
            try:
                card = preparer.prepare(item)
            except CardProblem as e:
                msg = redact_pans(f"record {item.index} ({item.masked_pan}): {e.field}: {e}")
                rejected.write(Rejection(item.index, item.masked_pan, e.field, msg).to_json())
                continue
            cards.write(card.to_json())
    finally:
        cards.close()
        rejected.close()

    seconds = time.perf_counter() - started
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "profile": profile.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"input": total, "accepted": cards.count, "rejected": rejected.count},
        "inputs": {
            "profile": {"file": profile_path.name, "sha256": profile_sha},
            "records": {"file": records_path.name, "sha256": records_sha},
        },
        "cards_sha256": cards.sha.hexdigest(),
        "rejected_sha256": rejected.sha.hexdigest(),
        "transport_key": {"name": transport_key, "kcv": preparer.kek_kcv.hex().upper()},
        "applications": [
            {"name": a.name, "aid": a.aid.hex().upper(), "oda": list(a.oda)} for a in profile.applications
        ],
        "profile_file": "profile.yaml",
        **_script_and_keys(script_path, keys_spec),
    }
    _atomic_json(work / "manifest.json", manifest)
    return PrepareSummary(
        out, profile.name, total, cards.count, rejected.count, seconds, cards.sha.hexdigest(),
        transport_key, preparer.kek_kcv.hex().upper(),
    )  # fmt: skip


def load_ca_public_keys(path: str | Path) -> list[dict[str, str]]:
    """The ``ca_public_keys`` list of a JSON/YAML file (a key store file has one,
    ``docs/keystore.md``): ``{rid, index, modulus, exponent[, checksum]}`` in hex, the
    scheme's published CA public keys (EMV Book 2 §5.2) that verify the profile's issuer
    certificates. A given checksum (SHA-1 of RID ‖ index ‖ modulus ‖ exponent) must agree."""
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PrepareError(f"CA public keys {p}: cannot read it ({type(e).__name__})") from None
    entries = doc.get("ca_public_keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PrepareError(f"CA public keys {p}: no 'ca_public_keys' list")
    out: list[dict[str, str]] = []
    for i, entry in enumerate(entries):
        where = f"CA public keys {p}: ca_public_keys[{i}]"
        try:
            if not isinstance(entry, dict):
                raise TypeError("not a mapping")
            rid, index = bytes.fromhex(str(entry["rid"])), bytes.fromhex(str(entry["index"]))
            modulus, exponent = bytes.fromhex(str(entry["modulus"])), bytes.fromhex(str(entry["exponent"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PrepareError(f"{where}: rid, index, modulus and exponent in hex ({exc})") from None
        if len(rid) != 5 or len(index) != 1 or not modulus or exponent not in (b"\x03", b"\x01\x00\x01"):
            raise PrepareError(f"{where}: rid is 5 bytes, index 1, exponent 03 or 010001")
        checksum = str(entry.get("checksum") or "").upper()
        if checksum and hashlib.sha1(rid + index + modulus + exponent).hexdigest().upper() != checksum:
            raise PrepareError(f"{where}: checksum does not match RID, index, modulus and exponent")
        out.append({"rid": rid.hex().upper(), "index": index.hex().upper(), "modulus": modulus.hex().upper(),
                    "exponent": exponent.hex().upper()})  # fmt: skip
    return out


def _shipped_scripts() -> Path:
    """The shipped perso scripts: ``scripts/`` of the sample data package
    ``cardlab.vectors`` (``vectors/`` of a checkout, package data of a wheel)."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("cardlab.vectors"))) / "scripts"
    except ModuleNotFoundError:  # a checkout run without installing the package
        return Path(__file__).resolve().parents[1] / "vectors" / "scripts"


SCRIPTS = _shipped_scripts()


def _is_badge_profile(profile_path: Path) -> bool:
    import yaml

    try:
        doc = yaml.safe_load(profile_path.read_text())
    except (OSError, yaml.YAMLError):
        return False  # load_profile reports it
    return isinstance(doc, dict) and "badge" in doc and "applications" not in doc


def default_script(profile_path: Path) -> Path | None:
    """The shipped perso script for the profile's kind: the badge script for a
    badge profile, EMV CPS otherwise (``None`` when it is not installed)."""
    path = SCRIPTS / ("badge.yaml" if _is_badge_profile(profile_path) else "emv-cps.yaml")
    return path if path.is_file() else None


def _keys_spec(spec: str) -> str:
    """The key-store spec to record: ``pkcs11:…`` as given (names a PIN variable,
    never a PIN), a file as an absolute path."""
    return spec if spec.startswith("pkcs11:") else str(Path(spec).resolve())


def _script_and_keys(script_path: Path | None, keys_spec: str | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    if script_path is not None:
        extra["script"] = "script.yaml"
        extra["script_source"] = script_path.name
    if keys_spec:
        extra["keys"] = keys_spec
    return extra


def _prepare_badges(
    profile_path: Path,
    records_path: Path,
    keystore: KeyStore,
    out: Path,
    started: float,
    script_path: Path | None,
    keys_spec: str | None,
) -> PrepareSummary:
    """A badge batch (:mod:`cardlab.personalizer.badge`): same directory layout."""
    import yaml

    doc: dict[str, Any] = yaml.safe_load(profile_path.read_text())
    layout = BadgeLayout.from_profile(doc)
    info = keystore.info(layout.kek)
    if info.usage != "KEK":
        raise PrepareError(f"transport key {layout.kek!r} has usage {info.usage}, not KEK")
    try:
        with staging(out) as work:
            return _badges_into(work, out, doc, layout, info.kcv, keystore, profile_path, records_path,
                                script_path, keys_spec, started)  # fmt: skip
    except BatchExistsError as e:
        raise PrepareError(str(e)) from None


def _badges_into(
    work: Path,
    out: Path,
    doc: dict[str, Any],
    layout: BadgeLayout,
    kek_kcv: bytes | None,
    keystore: KeyStore,
    profile_path: Path,
    records_path: Path,
    script_path: Path | None,
    keys_spec: str | None,
    started: float,
) -> PrepareSummary:
    """The badge batch's files, written into the staging directory ``work`` (moved to ``out`` after)."""
    shutil.copyfile(profile_path, work / "profile.yaml")
    if script_path is not None:
        shutil.copyfile(script_path, work / "script.yaml")
    errors: list[BadgeRecordError] = []
    cards = _JsonLines(work / "cards.jsonl")
    rejected = _JsonLines(work / "rejected.jsonl")
    try:
        for card in prepare_badges(doc, records_path, keystore, errors=errors):
            cards.write(card.to_json())
        for err in errors:
            rejected.write(Rejection(err.line, f"line {err.line}", err.field, redact_pans(str(err))).to_json())
    finally:
        cards.close()
        rejected.close()
    total = cards.count + rejected.count
    name = str(doc.get("profile") or profile_path.stem)
    kcv = (kek_kcv or b"").hex().upper()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "profile": name,
        "kind": "badge",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {"input": total, "accepted": cards.count, "rejected": rejected.count},
        "inputs": {
            "profile": {"file": profile_path.name, "sha256": _sha256_file(profile_path)},
            "records": {"file": records_path.name, "sha256": _sha256_file(records_path)},
        },
        "cards_sha256": cards.sha.hexdigest(),
        "rejected_sha256": rejected.sha.hexdigest(),
        "transport_key": {"name": layout.kek, "kcv": kcv},
        "applications": [],
        "profile_file": "profile.yaml",
        **_script_and_keys(script_path, keys_spec),
    }
    _atomic_json(work / "manifest.json", manifest)
    return PrepareSummary(out, name, total, cards.count, rejected.count, time.perf_counter() - started,
                          cards.sha.hexdigest(), layout.kek, kcv)  # fmt: skip


def iter_prepared(preparer: CardPreparer, records: Iterator[Record | Rejected]) -> Iterator[CardPersoData | Rejection]:
    """Prepare a stream of records without writing a batch (tests, benchmarks)."""
    for item in records:
        if isinstance(item, Rejected):
            yield Rejection(item.index, item.record_id, item.field, item.message)
            continue
        try:
            yield preparer.prepare(item)
        except CardProblem as e:
            yield Rejection(item.index, item.masked_pan, e.field, str(e))


# --------------------------------------------------------------------------- command line


def _cmd_prepare(args: argparse.Namespace, out: Any) -> int:
    import sys

    today = date.fromisoformat(args.today) if args.today else None
    tkeys: TransportKeys | None = None
    try:
        if args.bureau_key or args.issuer_public:
            from cardlab.personalizer.transport import load_private_key, load_public_key

            if not (args.bureau_key and args.issuer_public):
                raise PrepareError("sealed records need both --bureau-key and --issuer-public")
            priv = load_private_key(args.bureau_key)
            if not isinstance(priv, rsa.RSAPrivateKey):
                raise PrepareError("--bureau-key must be an RSA private key")
            tkeys = TransportKeys(priv, load_public_key(args.issuer_public))
        cas = load_ca_public_keys(args.ca_public_keys) if args.ca_public_keys else []
        s = prepare(
            args.profile, args.records, args.keys, args.out, today=today,
            transport_key=args.transport_key, transport_keys=tkeys, script=args.script, ca_public_keys=cas,
        )  # fmt: skip
    except (PrepareError, ProfileError, RecordsError, KeyStoreError, OSError, ValueError) as e:
        print(f"cardlab perso prepare: {redact_pans(str(e))}", file=sys.stderr)
        return 2
    out.print(
        f"{s.profile}: {s.input_count} records, {s.accepted} prepared, {s.rejected} rejected "
        f"-> {s.out_dir} ({s.seconds:.1f} s, {s.rate:.0f} records/s; transport key {s.transport_key} "
        f"KCV {s.transport_kcv})"
    )
    if s.rejected:
        out.print(f"rejections: {s.out_dir / 'rejected.jsonl'}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cardlab perso prepare``."""
    p = sub.add_parser(
        "prepare",
        help="prepare per-card perso data from an issuer profile and cardholder records",
        description="Key store passphrase: $CARDLAB_KEYSTORE_PASSPHRASE; PKCS#11 PIN: $CARDLAB_PKCS11_PIN "
        "(or the pin-env= of the pkcs11: spec).",
    )
    p.add_argument("--profile", required=True, type=Path, help="issuer profile (YAML)")
    p.add_argument("--records", required=True, type=Path, help="cardholder records (CSV, JSONL, or sealed)")
    p.add_argument("--keys", required=True, help="key store: a file or pkcs11:token=LABEL[;pin-env=VAR]")
    p.add_argument("--out", required=True, type=Path, help="batch directory to create")
    p.add_argument("--transport-key", default="KEK", help="key-store name of the batch transport key")
    p.add_argument("--script", type=Path,
                   help="perso script to copy into the batch (default: the shipped EMV CPS or badge script)")
    p.add_argument("--today", help="YYYY-MM-DD for the expiry checks (default: today)")
    p.add_argument("--ca-public-keys", type=Path,
                   help="JSON/YAML file with a ca_public_keys list (RID, index, modulus, exponent) to verify "
                        "the profile's issuer certificates (default: the key store's)")
    p.add_argument("--bureau-key", type=Path, help="bureau private key (PEM) to open sealed records")
    p.add_argument("--issuer-public", type=Path, help="issuer public signing key (PEM) of sealed records")
    p.set_defaults(func=_cmd_prepare)

"""Issuer public key certificates (8F, 90, 92, 9F32; EMV Book 2 §5.3) for data preparation.

Per application of the profile, in order: the certificate the scheme returned, given with
the profile (``keys.issuer_certificate``), else the key store's ready-made one for the PAN's
BIN (its ``issuer_certificates`` extra data), else one signed with the key store's CA key
(test set-ups: a bureau never holds a scheme CA's private key). Given and ready-made
certificates are verified once per batch before any card, as a terminal will, with the CA
public keys of :func:`load_ca_public_keys` or of the key store.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from cardlab.personalizer import certificates
from cardlab.personalizer.keys import KeyStore, KeyStoreError, RsaPublicKey
from cardlab.personalizer.prepare.errors import CardProblem, PrepareError
from cardlab.personalizer.profile import Application, IssuerCertificateRef

__all__ = ["IssuerCertificates", "load_ca_public_keys"]


class IssuerCertificates:
    """The issuer certificate objects of one batch: where they come from (checked when the
    preparer is built), and per BIN for each card.

    ``ca_key`` names the key store's CA key to verify and sign with; ``ca_public_keys``
    (:func:`load_ca_public_keys`) are looked up before the key store's; ``issuer_cert_years``
    sets the validity of the certificates signed here (default: to December 2049).
    """

    def __init__(
        self,
        keystore: KeyStore,
        *,
        today: date,
        ca_key: str | None = None,
        ca_public_keys: Sequence[Mapping[str, Any]] = (),
        issuer_cert_years: int | None = None,
    ) -> None:
        self.keys = keystore
        self.today = today
        self.ca_public_keys = tuple(ca_public_keys)
        self.issuer_cert_years = issuer_cert_years
        self._ca_key_name = ca_key
        #: issuer certificate (90) → the last day it is valid, for the card expiry check
        self._cert_ends: dict[bytes, date] = {}

    def problems(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
        """Where the application's issuer certificates come from, checked before any card:
        the profile's (verified), or the key store's ready-made ones, or a CA private key."""
        field_ = f"{where}.keys.issuer_certificate"
        keys = app.keys
        assert keys.issuer_rsa is not None and keys.ca_index is not None
        if keys.issuer_certificate_file is not None and not keys.issuer_certificates:
            file = keys.issuer_certificate_file
            return [f"{field_}: {file} was not read (the profile was parsed without its directory: use load_profile)"]
        if keys.issuer_certificates:
            return self.verify_profile_certificates(app, issuer, where)
        if self.store_certificates(app):
            return self.verify_store_certificates(app, issuer, where)
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

    def verify_profile_certificates(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
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

    def verify_store_certificates(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
        """The key store's ready-made certificates for this application, checked as the
        profile's are (:meth:`verify_profile_certificates`): a stale or foreign one would
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
        for c in self.store_certificates(app):
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

    def end_of(self, certificate: bytes) -> date | None:
        """The last day the issuer certificate (90) is valid, once it has been checked or signed."""
        return self._cert_ends.get(certificate)

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

    def store_certificates(self, app: Application) -> list[Mapping[str, Any]]:
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

    def objects(
        self, app: Application, issuer: RsaPublicKey | None, pan: str, cache: dict[str, dict[int, bytes]]
    ) -> dict[int, bytes]:
        """8F, 90, 92, 9F32 for the PAN: the profile's certificate whose issuer
        identifier starts the PAN (a PAN on none is a record problem, field
        ``pan``); without profile certificates the key store's certificate for
        that issuer key, CA index and BIN, or one signed now with the CA key
        (EMV Book 2 §5.3), once per BIN and batch (``cache``: the application's, by BIN)."""
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
        cached = cache.get(bin6)
        if cached is not None:
            return cached
        objects: dict[int, bytes] | None = None
        for c in self.store_certificates(app):
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
        cache[bin6] = objects
        return objects


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

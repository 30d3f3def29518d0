"""The profile's ``keys`` section: names of keys in the key store (never key
values) and the Issuer Public Key Certificates the payment scheme returned
(EMV 4.4 Book 2 §5.3), as the model holds them and as they are read — from the
profile or from a certificate document it names (format in ``docs/profile.md``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from .checker import Checker, kind, seq

#: ``format`` of an issuer certificate document (docs/profile.md)
ISSUER_CERTIFICATE_FORMAT: Final = "cardlab-issuer-certificate"
_KEYS_KEYS = ("imk_ac", "imk_smi", "imk_smc", "issuer_rsa", "ca_index", "issuer_certificate")
_CERT_DOC_KEYS = ("format", "version", "note", "rid", "ca_index", "certificates")
_CERT_KEYS = ("issuer_identifier", "certificate_90", "remainder_92", "exponent_9F32", "note")
#: N_CA: CA keys of 512..1984 bits (Book 2 §5.1 allows up to 1984; cardlab's test keys start lower)
_CERT_LENGTHS = range(64, 249)
#: N_I ≤ N_CA, so at most N_CA − (N_CA − 36) = 36 bytes of the issuer modulus are left over
_REMAINDER_LENGTHS = range(37)
_ISSUER_ID = re.compile(r"^([0-9]{3,8})F*$")


@dataclass(frozen=True)
class IssuerCertificateRef:
    """An Issuer Public Key Certificate the payment scheme's CA returned for the
    issuer key (EMV Book 2 §5.3, Table 13), given with the profile
    (``keys.issuer_certificate``): placed on the cards as it is, after data
    preparation has verified it (``cardlab.personalizer.prepare``)."""

    #: the certificate's issuer identifier: 3–8 leading PAN digits (F padding removed)
    issuer_identifier: str
    certificate: bytes  # 90
    remainder: bytes  # 92, empty when the issuer modulus fits the certificate
    exponent: bytes  # 9F32
    #: the profile field it comes from, for error messages
    where: str = ""


@dataclass(frozen=True)
class KeyRefs:
    """Names of keys in the key store (never key values), and the issuer
    certificates the scheme returned (public data)."""

    imk_ac: str
    imk_smi: str
    imk_smc: str
    issuer_rsa: str | None  # issuer key pair + certificate, needed for any ODA
    ca_index: int | None  # 8F: index of the CA public key that certified the issuer key
    #: ``keys.issuer_certificate``: certificates of the issuer key, one per issuer identifier
    issuer_certificates: tuple[IssuerCertificateRef, ...] = ()
    #: the certificate document ``keys.issuer_certificate`` names (as written), when a file
    issuer_certificate_file: str | None = None

    def issuer_certificate_for(self, pan: str) -> IssuerCertificateRef | None:
        """The certificate whose issuer identifier is the longest prefix of ``pan``."""
        best: IssuerCertificateRef | None = None
        for c in self.issuer_certificates:
            if pan.startswith(c.issuer_identifier) and (
                best is None or len(c.issuer_identifier) > len(best.issuer_identifier)
            ):
                best = c
        return best



def parse_keys(ck: Checker, raw: object, p: str, aid: bytes, oda: bool) -> KeyRefs:
    """The ``keys`` section at path ``p`` of the application with AID ``aid``;
    ``oda``: whether the application does offline data authentication."""
    kp = p
    km = ck.mapping(raw, kp)
    ck.known_keys(km, kp, _KEYS_KEYS)
    issuer_rsa = ck.key_name(km, "issuer_rsa", kp, required=oda)
    ca_index = None
    if km.get("ca_index") is not None:
        ci = ck.hexvalue(km["ca_index"], f"{kp}.ca_index", (1,))
        ca_index = ci[0] if len(ci) == 1 else None
    elif oda:
        ck.err(f"{kp}.ca_index", "missing: ODA needs the CA public key index (8F), one hex byte")
    certs, cert_file = _issuer_certificates(ck, km.get("issuer_certificate"), f"{kp}.issuer_certificate",
                                            aid, ca_index)  # fmt: skip
    if km.get("issuer_certificate") is not None and not oda:
        ck.err(f"{kp}.issuer_certificate", "given, but oda is none")
    return KeyRefs(
        ck.key_name(km, "imk_ac", kp, required=True) or "",
        ck.key_name(km, "imk_smi", kp, required=True) or "",
        ck.key_name(km, "imk_smc", kp, required=True) or "",
        issuer_rsa,
        ca_index,
        certs,
        cert_file,
    )


def _issuer_certificates(
    ck: Checker, raw: object, p: str, aid: bytes, ca_index: int | None
) -> tuple[tuple[IssuerCertificateRef, ...], str | None]:
    """``keys.issuer_certificate``: the Issuer Public Key Certificate(s) the scheme returned
    (Book 2 §5.3), as a file path (relative to the profile) of a certificate document, the
    document inline (a mapping with ``certificates``), one certificate inline (a mapping
    with ``certificate_90``) or a list of certificates. Returns (certificates, file)."""
    if raw is None:
        return (), None
    file: str | None = None
    items: list[tuple[object, str]] = []
    if isinstance(raw, str):
        file = raw
        if ck.base_dir is None:  # parse_profile without the profile's directory: not read
            return (), file
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else ck.base_dir / path
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            ck.err(p, f"cannot read the certificate document {file}: {e.strerror or type(e).__name__}")
            return (), file
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            ck.err(p, f"{file} is not a JSON/YAML certificate document ({type(e).__name__})")
            return (), file
        p = f"{p} ({file})"
        doc = ck.mapping(raw, p)
        if not doc:
            return (), file
        if doc.get("format") != ISSUER_CERTIFICATE_FORMAT:
            ck.err(f"{p}.format", f"{doc.get('format')!r}, expected {ISSUER_CERTIFICATE_FORMAT!r}")
    if isinstance(raw, list):
        items = [(c, f"{p}[{i}]") for i, c in enumerate(raw)]
    elif isinstance(raw, Mapping) and ("certificates" in raw or file is not None):
        ck.known_keys(raw, p, _CERT_DOC_KEYS)
        if raw.get("version", 1) != 1:
            ck.err(f"{p}.version", f"{raw.get('version')!r}, expected 1")
        if raw.get("rid") is not None:
            rid = ck.hexvalue(raw["rid"], f"{p}.rid", (5,))
            if len(rid) == 5 and len(aid) >= 5 and rid != aid[:5]:
                ck.err(f"{p}.rid", f"{rid.hex().upper()}, but the application's RID is {aid[:5].hex().upper()}")
        if raw.get("ca_index") is not None:
            ci = ck.hexvalue(raw["ca_index"], f"{p}.ca_index", (1,))
            if len(ci) == 1 and ca_index is not None and ci[0] != ca_index:
                ck.err(f"{p}.ca_index", f"{ci.hex().upper()}, but keys.ca_index is {ca_index:02X}")
        items = [(c, f"{p}.certificates[{i}]") for i, c in enumerate(seq(ck, raw, "certificates", p))]
        if not items:
            ck.err(f"{p}.certificates", "missing: at least one certificate")
    elif isinstance(raw, Mapping):
        items = [(raw, p)]
    else:
        ck.err(p, f"expected a file name, a certificate or a list of certificates, got {kind(raw)}")
    out: list[IssuerCertificateRef] = []
    seen: dict[str, str] = {}
    for item, ip in items:
        if not isinstance(item, Mapping):
            ck.mapping(item, ip)
            continue
        m = item
        ck.known_keys(m, ip, _CERT_KEYS)
        ident = _issuer_id(ck, m.get("issuer_identifier"), f"{ip}.issuer_identifier")
        cert = ck.hexbytes(m, "certificate_90", ip, _CERT_LENGTHS)
        rem = ck.hexbytes(m, "remainder_92", ip, _REMAINDER_LENGTHS, default=b"")
        exp = ck.hexbytes(m, "exponent_9F32", ip, (1, 3))
        if exp and exp not in (b"\x03", b"\x01\x00\x01"):
            ck.err(f"{ip}.exponent_9F32", f"{exp.hex().upper()}: EMV allows 03 or 010001 (Book 2 §5.1)")
        if ident in seen:
            ck.err(f"{ip}.issuer_identifier", f"{ident} is also {seen[ident]}")
        elif ident:
            seen[ident] = ip
        if out and cert and len(cert) != len(out[0].certificate):
            ck.err(
                f"{ip}.certificate_90",
                f"{len(cert)} bytes, but {out[0].where} is {len(out[0].certificate)}: "
                "one CA key (keys.ca_index) certifies them all",
            )
        if ident and cert and exp:
            out.append(IssuerCertificateRef(ident, cert, rem, exp, ip))
    return tuple(out), file


def _issuer_id(ck: Checker, v: object, p: str) -> str:
    """An issuer identifier: 3–8 PAN digits, optionally F-padded to 8 (``476173`` or ``476173FF``)."""
    if v is None:
        ck.err(p, "missing (the 3-8 leading PAN digits the certificate is for, e.g. \"476173\")")
        return ""
    text = str(v).strip().upper() if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    m = _ISSUER_ID.match(text) if text is not None and len(text) <= 8 else None
    if m is None:
        ck.err(p, f"{v!r} is not an issuer identifier (3-8 digits, optionally F-padded to 8)")
        return ""
    return m.group(1)

"""Transport protection for issuer → bureau files: encrypted for the bureau, signed by the issuer.

Background 001: the issuer's card management system sends the bureau an
encrypted and signed personalisation file; the bureau decrypts and verifies it
before use. cardlab's sealed format does the same job as the PKCS#7 envelope
named there, with a streaming layout so a 100,000-record file never has to fit
in memory.

Layout of a sealed file (all integers big-endian)::

    magic      16 bytes  b"CARDLAB-SEALED\\x00\\x01"
    header     u32 length ‖ JSON (UTF-8): version, cipher, chunk size, key wrap,
               the data key wrapped for the recipient, nonce prefix, SHA-256
               fingerprints of the recipient's and the signer's public keys
               (SubjectPublicKeyInfo DER), signature algorithm, original file name
    chunks     per chunk: flags (1 byte, 01 = last) ‖ u32 length ‖ AES-256-GCM
               ciphertext ‖ 16-byte tag; nonce = prefix (7) ‖ chunk index (4) ‖
               flags (1); associated data = SHA-256(header JSON)
    signature  u16 length ‖ signature over SHA-256(everything above)

* The data key is a fresh random AES-256 key per file, wrapped with RSA-OAEP
  (SHA-256, MGF1-SHA-256) under the bureau's RSA public key. (A shared KEK
  would need a key exchange ceremony per bureau; RSA-OAEP lets the issuer
  seal with only the bureau's public key, as PKCS#7/CMS enveloped data does.)
* The signature is RSA-PSS (SHA-256, MGF1-SHA-256, salt = hash length) when the
  issuer's key is RSA, or Ed25519 over ``b"cardlab-sealed-v1" ‖ digest`` when it
  is an Ed25519 key.
* :func:`open_sealed` reads the file twice: first it hashes everything and
  checks the signature, and only then decrypts, chunk by chunk, each chunk
  authenticated by GCM before it is yielded; a missing last chunk (truncation)
  is detected too. Any failure raises :class:`TransportError` before anything
  is yielded when the signature is wrong, and no unauthenticated plaintext is
  ever yielded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "MAGIC",
    "SignerPrivateKey",
    "SignerPublicKey",
    "TransportError",
    "TransportKeys",
    "fingerprint",
    "is_sealed",
    "load_private_key",
    "load_public_key",
    "open_sealed",
    "seal",
    "sealed_name",
]

MAGIC: Final = b"CARDLAB-SEALED\x00\x01"
_VERSION: Final = 1
_CHUNK: Final = 64 * 1024
_MAX_HEADER: Final = 64 * 1024
_ED25519_CONTEXT: Final = b"cardlab-sealed-v1"
_LAST: Final = 0x01

SignerPrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
SignerPublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class TransportError(ValueError):
    """A sealed file cannot be opened: not sealed, wrong key, altered, truncated."""


@dataclass(frozen=True)
class TransportKeys:
    """What the bureau needs to open an issuer's sealed file."""

    recipient_key: rsa.RSAPrivateKey  # the bureau's private key
    verify_key: SignerPublicKey  # the issuer's public signing key


def fingerprint(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo DER, hex."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_private_key(
    path: str | Path, password: bytes | None = None
) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """An RSA or Ed25519 private key from a PEM file."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password)
    except (ValueError, TypeError) as exc:
        raise TransportError(f"{path}: not a PEM private key ({str(exc).split('.')[0]})") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise TransportError(f"{path}: not an RSA or Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    """An RSA or Ed25519 public key from a PEM file."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except ValueError as exc:
        raise TransportError(f"{path}: not a PEM public key ({str(exc).split('.')[0]})") from None
    if not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise TransportError(f"{path}: not an RSA or Ed25519 public key")
    return key


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _sign(key: SignerPrivateKey, digest: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, _pss(), utils.Prehashed(hashes.SHA256()))
    return key.sign(_ED25519_CONTEXT + digest)


def _verify(key: SignerPublicKey, signature: bytes, digest: bytes) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, digest, _pss(), utils.Prehashed(hashes.SHA256()))
    else:
        key.verify(signature, _ED25519_CONTEXT + digest)


def _nonce(prefix: bytes, index: int, flags: int) -> bytes:
    return prefix + struct.pack(">IB", index, flags)


def seal(
    path_in: str | Path,
    path_out: str | Path,
    recipient_key: rsa.RSAPublicKey,
    signer_key: SignerPrivateKey,
    *,
    chunk_size: int = _CHUNK,
) -> None:
    """Encrypt ``path_in`` for ``recipient_key`` and sign it with ``signer_key`` into ``path_out``.

    Streams: memory use is one chunk whatever the file size. The output is
    written to a temporary file and renamed, so a crash never leaves a
    half-sealed file under ``path_out``.
    """
    if not isinstance(recipient_key, rsa.RSAPublicKey):
        raise TransportError("the recipient key must be an RSA public key (RSA-OAEP key wrap)")
    if not 1 <= chunk_size <= 1 << 24:
        raise TransportError("chunk_size must be 1 byte .. 16 MiB")
    data_key = AESGCM.generate_key(bit_length=256)
    prefix = os.urandom(7)
    header = {
        "version": _VERSION,
        "cipher": "AES-256-GCM",
        "chunk_size": chunk_size,
        "key_wrap": "RSA-OAEP-SHA256",
        "wrapped_key": base64.b64encode(recipient_key.encrypt(data_key, _oaep())).decode(),
        "nonce_prefix": prefix.hex(),
        "recipient": fingerprint(recipient_key),
        "signer": fingerprint(signer_key.public_key()),
        "signature": "RSA-PSS-SHA256" if isinstance(signer_key, rsa.RSAPrivateKey) else "Ed25519",
        "name": Path(path_in).name,
    }
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    aad = hashlib.sha256(header_bytes).digest()
    aes = AESGCM(data_key)
    out_path = Path(path_out)
    tmp = out_path.with_name(out_path.name + ".tmp")
    h = hashlib.sha256()
    try:
        with open(path_in, "rb") as src, open(tmp, "wb") as dst:

            def put(b: bytes) -> None:
                h.update(b)
                dst.write(b)

            put(MAGIC)
            put(struct.pack(">I", len(header_bytes)) + header_bytes)
            index = 0
            chunk = src.read(chunk_size)
            while True:
                following = src.read(chunk_size)
                flags = 0 if following else _LAST
                ct = aes.encrypt(_nonce(prefix, index, flags), chunk, aad)
                put(struct.pack(">BI", flags, len(ct)) + ct)
                if not following:
                    break
                chunk, index = following, index + 1
            signature = _sign(signer_key, h.digest())
            dst.write(struct.pack(">H", len(signature)) + signature)
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_sealed(path: str | Path) -> bool:
    """Whether the file starts with the sealed-file magic."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise TransportError(f"truncated sealed file: {what} incomplete")
    return b


def _read_header(f: BinaryIO) -> tuple[bytes, dict[str, object]]:
    if f.read(len(MAGIC)) != MAGIC:
        raise TransportError("not a cardlab sealed file (magic missing)")
    (n,) = struct.unpack(">I", _read_exact(f, 4, "header length"))
    if n > _MAX_HEADER:
        raise TransportError(f"sealed header of {n} bytes is implausible")
    raw = _read_exact(f, n, "header")
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise TransportError(f"sealed header is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("version") != _VERSION:
        raise TransportError("sealed header: unsupported version")
    return raw, header


def _frames(f: BinaryIO) -> Iterator[tuple[int, bytes, bytes]]:
    """(flags, frame bytes, ciphertext) until the last chunk."""
    while True:
        head = _read_exact(f, 5, "chunk (missing last chunk)")
        flags, n = struct.unpack(">BI", head)
        if flags & ~_LAST or n > (1 << 24) + 16:
            raise TransportError("sealed file: malformed chunk")
        ct = _read_exact(f, n, "chunk")
        yield flags, head + ct, ct
        if flags & _LAST:
            return


def sealed_name(path: str | Path) -> str:
    """The original file name recorded when the file was sealed (not authenticated until opened)."""
    with open(path, "rb") as f:
        _, header = _read_header(f)
    name = header.get("name")
    return name if isinstance(name, str) else ""


def _verify_file(
    path: Path, recipient_key: rsa.RSAPrivateKey, verify_key: SignerPublicKey
) -> tuple[bytes, dict[str, object]]:
    with open(path, "rb") as f:
        raw, header = _read_header(f)
        if header.get("recipient") != fingerprint(recipient_key.public_key()):
            raise TransportError(f"{path.name}: sealed for another recipient key")
        if header.get("signer") != fingerprint(verify_key):
            raise TransportError(f"{path.name}: signed by another key than the verification key given")
        expected = "RSA-PSS-SHA256" if isinstance(verify_key, rsa.RSAPublicKey) else "Ed25519"
        if header.get("signature") != expected:
            raise TransportError(
                f"{path.name}: signature algorithm {header.get('signature')!r}, expected {expected}"
            )
        h = hashlib.sha256(MAGIC + struct.pack(">I", len(raw)) + raw)
        for _, frame, _ in _frames(f):
            h.update(frame)
        (n,) = struct.unpack(">H", _read_exact(f, 2, "signature length"))
        signature = _read_exact(f, n, "signature")
        if f.read(1):
            raise TransportError(f"{path.name}: data after the signature")
        try:
            _verify(verify_key, signature, h.digest())
        except InvalidSignature:
            raise TransportError(
                f"{path.name}: signature does not verify (file altered or not signed by this key)"
            ) from None
    return raw, header


def open_sealed(
    path: str | Path,
    recipient_key: rsa.RSAPrivateKey,
    verify_key: SignerPublicKey,
) -> Iterator[bytes]:
    """The plaintext of a sealed file, chunk by chunk, after the signature has been verified.

    A generator: the checks run at the first ``next()``; a :class:`TransportError`
    raised there means nothing was yielded.
    """
    p = Path(path)
    raw, header = _verify_file(p, recipient_key, verify_key)
    try:
        data_key = recipient_key.decrypt(base64.b64decode(str(header["wrapped_key"])), _oaep())
        prefix = bytes.fromhex(str(header["nonce_prefix"]))
    except (KeyError, ValueError) as e:
        raise TransportError(f"{p.name}: cannot unwrap the data key") from e
    if len(data_key) != 32 or len(prefix) != 7:
        raise TransportError(f"{p.name}: malformed data key or nonce")
    aad = hashlib.sha256(raw).digest()
    aes = AESGCM(data_key)
    with open(p, "rb") as f:
        if _read_header(f)[0] != raw:
            raise TransportError(f"{p.name}: header changed while reading")
        for index, (flags, _, ct) in enumerate(_frames(f)):
            try:
                plain = aes.decrypt(_nonce(prefix, index, flags), ct, aad)
            except InvalidTag:
                raise TransportError(
                    f"{p.name}: chunk {index} fails authentication (changed while reading?)"
                ) from None
            yield plain


# =========================================================================== command line

"""Per-card ICC RSA key pairs for DDA/CDA (EMV Book 2 §6.1): OpenSSL from 1024 bits,
a Miller–Rabin generator here below that (EMV allows ICC keys from 512 bits)."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["IccKeyPair", "generate_icc_key"]


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

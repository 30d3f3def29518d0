"""The RSA private operation, ``m^d mod n`` by the Chinese remainder theorem (Garner), on GMP.

EMV's signatures (Book 2 §5.4 and §6.5: Signed Static/Dynamic Application Data, certificates; the
format of ISO/IEC 9796-2 with message recovery) are a block the signer formats itself and raises
to ``d``. OpenSSL as ``cryptography`` exposes it offers RSA only with its own paddings (PKCS #1,
PSS, OAEP), so the raw operation is done here. Python's own integers are about ten times slower
than OpenSSL for it; GMP (``gmpy2``) is within about 1.3× (``benchmarks/bench_rsa.py``).

>>> p, q, e = 61, 53, 17
>>> key = CrtKey.from_primes(p, q, pow(e, -1, (p - 1) * (q - 1)))
>>> key.private(65) == pow(65, pow(e, -1, (p - 1) * (q - 1)), p * q)
True
"""

from __future__ import annotations

import gmpy2


class CrtKey:
    """p, q, d mod (p−1), d mod (q−1), q⁻¹ mod p, held as GMP integers."""

    __slots__ = ("_p", "_q", "_dp", "_dq", "_qinv")

    def __init__(self, p: int, q: int, dp: int, dq: int, qinv: int) -> None:
        self._p, self._q = gmpy2.mpz(p), gmpy2.mpz(q)
        self._dp, self._dq, self._qinv = gmpy2.mpz(dp), gmpy2.mpz(dq), gmpy2.mpz(qinv)

    @classmethod
    def from_primes(cls, p: int, q: int, d: int) -> CrtKey:
        return cls(p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))

    def private(self, m: int) -> int:
        """``m^d mod n``: m1 = m^dp mod p, m2 = m^dq mod q, m = m2 + q·(qinv·(m1 − m2) mod p)."""
        m1 = gmpy2.powmod(m, self._dp, self._p)
        m2 = gmpy2.powmod(m, self._dq, self._q)
        return int(m2 + self._q * ((self._qinv * (m1 - m2)) % self._p))

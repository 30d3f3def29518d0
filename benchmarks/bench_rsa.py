"""The RSA private operation of EMV signatures: GMP (what the card and the key store use,
``cardlab.cardspec.rsa``) against Python's own integers (what they used before) and OpenSSL's
PKCS #1 signature of the same key through ``cryptography`` (the goal: OpenSSL's speed; OpenSSL
offers no unpadded private operation, so its padded signature stands in for it).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_rsa.py [--seconds 1.0]

Interleaved rounds, median per operation, ratios from the same run. The whole pipeline with
DDA/CDA cards: benchmarks/bench_pipeline.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from cardlab.cardspec.rsa import CrtKey


def _python_crt(p: int, q: int, dp: int, dq: int, qinv: int) -> Callable[[int], int]:
    def private(m: int) -> int:
        m1, m2 = pow(m % p, dp, p), pow(m % q, dq, q)
        return m2 + q * ((qinv * (m1 - m2)) % p)
    return private


def _per_op(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="per method and round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"{'key':>14} {'Python ints':>12} {'GMP':>10} {'OpenSSL':>10} {'GMP/OpenSSL':>12} {'gain':>6}")
    for bits, e in ((1024, 3), (1408, 65537), (1984, 65537)):
        key = rsa.generate_private_key(public_exponent=e, key_size=bits)
        pn = key.private_numbers()
        m = (pn.public_numbers.n - 12345) // 7
        gmp = CrtKey(pn.p, pn.q, pn.dmp1, pn.dmq1, pn.iqmp)
        py = _python_crt(pn.p, pn.q, pn.dmp1, pn.dmq1, pn.iqmp)
        assert gmp.private(m) == py(m) == pow(m, pn.d, pn.public_numbers.n)
        digest = bytes(32)
        methods: dict[str, Callable[[], object]] = {
            "python": lambda: py(m),
            "gmp": lambda: gmp.private(m),
            "openssl": lambda: key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())),
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                times[name].append(_per_op(fn, args.seconds))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{bits:>5} bits e={e:<5} {med['python'] * 1e6:>9.0f} µs {med['gmp'] * 1e6:>7.0f} µs "
              f"{med['openssl'] * 1e6:>7.0f} µs {med['gmp'] / med['openssl']:>11.2f}× "
              f"{med['python'] / med['gmp']:>5.1f}×")
    print("goal: the card's and the issuer's RSA at OpenSSL's speed (GMP/OpenSSL near 1×)")


if __name__ == "__main__":
    main()

"""In-process EMV throughput of the emulated card.

    /tmp/venv/bin/python benchmarks/bench_emv.py [--seconds 2] [--profile]

Prints, for a Visa CVN 18 application personalized by the test kit
(tests/emv/cardmaker.py):

* GENERATE AC per second, timing only the GENERATE AC command (each one
  needs its own SELECT + GET PROCESSING OPTIONS, which are not timed);
  goal ≥ 5,000/s;
* whole transactions per second (SELECT + GPO + GENERATE AC);
* INTERNAL AUTHENTICATE per second with a 1024-bit ICC key, next to raw RSA
  CRT signing with the same key in the same run (Python integers, the card's
  own primitive, and OpenSSL through ``cryptography``) and their ratios.

With ``--profile`` (or when GENERATE AC misses the goal) prints the top of a
cProfile run of GENERATE AC (cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "emv"))

from cardmaker import CDOL1, Profile, make_card  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa, utils  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from terminal import build_dol  # noqa: E402

GOAL_GEN_AC = 5_000


def apdu(header: str, data: bytes, le: bool = True) -> bytes:
    return bytes.fromhex(header) + bytes((len(data),)) + data + (b"\x00" if le else b"")


def rate(fn: Callable[[], float], seconds: float) -> tuple[float, int]:
    """Calls ``fn`` (which returns the seconds it timed) until ``seconds`` of
    timed work are spent; operations per timed second."""
    spent, n = 0.0, 0
    wall = time.perf_counter()
    while spent < seconds and time.perf_counter() - wall < 4 * seconds + 5:
        spent += fn()
        n += 1
    return n / spent, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    profile = Profile(cvn=0x12, oda="DDA", icc_bits=1024, pdol=bytes.fromhex("9F1A02"))
    card, (cd,) = make_card(profile)
    transmit = card.transmit
    select = apdu("00A40400", profile.aid)
    gpo = apdu("80A80000", bytes.fromhex("83020250"))
    values = {0x9F02: bytes.fromhex("000000001000"), 0x9F1A: b"\x02\x50", 0x5F2A: b"\x09\x78",
              0x9A: bytes.fromhex("250601"), 0x9F37: os.urandom(4)}
    gen_ac = apdu("80AE8000", build_dol(CDOL1, values))  # ARQC
    intauth = apdu("00880000", os.urandom(4))

    def check(resp: bytes, what: str) -> bytes:
        if resp[-2:] != b"\x90\x00":
            raise SystemExit(f"{what} answered {resp[-2:].hex().upper()}")
        return resp

    def one_gen_ac() -> float:
        check(transmit(select), "SELECT")
        check(transmit(gpo), "GPO")
        t0 = time.perf_counter()
        resp = transmit(gen_ac)
        dt = time.perf_counter() - t0
        check(resp, "GENERATE AC")
        return dt

    def one_transaction() -> float:
        t0 = time.perf_counter()
        check(transmit(select), "SELECT")
        check(transmit(gpo), "GPO")
        check(transmit(gen_ac), "GENERATE AC")
        return time.perf_counter() - t0

    def one_intauth() -> float:
        check(transmit(select), "SELECT")
        check(transmit(gpo), "GPO")
        t0 = time.perf_counter()
        resp = transmit(intauth)
        dt = time.perf_counter() - t0
        check(resp, "INTERNAL AUTHENTICATE")
        return dt

    key = cd.icc_key
    assert key is not None
    qinv, dq, dp, q, p = key.crt()
    message = int.from_bytes(b"\x6A" + os.urandom(key.size - 2) + b"\xBC", "big") % key.n

    def raw_crt() -> float:
        t0 = time.perf_counter()
        m1 = pow(message % p, dp, p)
        m2 = pow(message % q, dq, q)
        _ = m2 + ((qinv * (m1 - m2)) % p) * q
        return time.perf_counter() - t0

    ossl = rsa.RSAPrivateNumbers(p, q, key.d, dp, dq, qinv, rsa.RSAPublicNumbers(key.e, key.n)).private_key()
    digest = os.urandom(20)

    def openssl_sign() -> float:
        t0 = time.perf_counter()
        ossl.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
        return time.perf_counter() - t0

    s = args.seconds
    g, gn = rate(one_gen_ac, s)
    tx, txn = rate(one_transaction, s)
    ia, ian = rate(one_intauth, s)
    crt, crtn = rate(raw_crt, s)
    ssl, ssln = rate(openssl_sign, s)
    print("EMV in-process benchmark (Visa CVN 18, 1024-bit ICC key)")
    print(f"  GENERATE AC (ARQC) alone     {g:10,.0f} /s  ({gn} timed; goal >= {GOAL_GEN_AC:,}/s: "
          f"{'met' if g >= GOAL_GEN_AC else 'MISSED'})")
    print(f"  transactions SELECT+GPO+GEN AC {tx:8,.0f} /s  ({txn} timed)")
    print(f"  INTERNAL AUTHENTICATE        {ia:10,.0f} /s  ({ian} timed)")
    print(f"  raw RSA CRT, Python ints     {crt:10,.0f} /s  (same key; card/raw = {ia / crt:.2f})")
    print(f"  raw RSA sign, OpenSSL        {ssl:10,.0f} /s  (same key; card/OpenSSL = {ia / ssl:.2f})")
    if args.profile or g < GOAL_GEN_AC:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(500):
            one_gen_ac()
        prof.disable()
        print("\nprofile of 500 x (SELECT + GPO + GENERATE AC), by cumulative time:")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()

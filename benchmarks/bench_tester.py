"""In-process throughput of the independent tester driving an emulated card.

    /tmp/venv/bin/python benchmarks/bench_tester.py [--seconds 2] [--cvn 12]

Prints, for SDA, DDA and CDA cards personalized by the test kit
(tests/emv/cardmaker.py):

* full transactions per second (kernel + card + issuer host: selection,
  reading, ODA, CVM, risk management, first GENERATE AC, online with ARPC,
  second GENERATE AC) — through ``cardlab.tester.kernel.run_transaction`` when the
  kernel can run, else through a minimal in-bench sequence (SELECT, GPO, READ
  RECORD, GENERATE AC) followed by ``cardlab.tester.online.process`` (said so in the
  output);
* the share of the time spent in the card (its ``transmit``, timed
  separately) versus the tester (everything else: TLV, RSA recovery,
  pyemv cryptograms, trace events);
* the issuer host alone: ARQC verifications and full authorizations per second;
* certifications of one card per second (a card prepared from a sample issuer
  profile by the personalizer, tests/tester/certkit.py), card vs tester share.

Path measured: the tester's own code against a card object in this process (``transmit``
called directly): no PC/SC plug-in, no card image saves, no report writing. It shows what the
tester costs; the rates users get from ``cardlab demo`` / ``test certify`` are those of
``benchmarks/bench_pipeline.py`` (the demo's path).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "emv"))
warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # pyemv's TripleDES use warns on every call under recent `cryptography`
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

from cardmaker import IMK_AC, IMK_SMC, IMK_SMI, Profile, load_test_ca, make_card

from cardlab.tester import online, tlv
from cardlab.tester.channel import RecordingChannel
from cardlab.tester.issuer_host import AuthorizationRequest, IssuerHost
from cardlab.tester.state import TransactionState


class TimedCard:
    """The card's transmit with its time kept apart from the tester's."""

    def __init__(self, transmit: Callable[[bytes], bytes]) -> None:
        self._transmit = transmit
        self.seconds = 0.0
        self.apdus = 0

    def __call__(self, apdu: bytes) -> bytes:
        t = time.perf_counter()
        try:
            return self._transmit(apdu)
        finally:
            self.seconds += time.perf_counter() - t
            self.apdus += 1


def terminal_profile() -> Any:
    from cardlab.tester.terminal import CaKey, TerminalAid, TerminalProfile

    rid, index, ca, _ = load_test_ca()
    return TerminalProfile(
        ca_keys=[CaKey(rid, index, ca.n, ca.e)],
        aids=[TerminalAid(bytes.fromhex("F0000000011010"))],
        selection="aids",
        tac_online=bytes.fromhex("DC4004F800"),
        tac_default=bytes.fromhex("DC4000A800"),
        floor_limit=0,
    )


# -- the two ways to run a transaction ------------------------------------------------------------


def kernel_transaction(channel: RecordingChannel, host: IssuerHost, terminal: Any, n: int) -> TransactionState:
    from cardlab.tester import kernel

    state: TransactionState = kernel.run_transaction(channel, terminal, amount=1000 + n, pin="1234",
                                                     online_host=host, force_online=True, seed=n)
    return state


def _dol(dol: bytes, values: dict[int, bytes]) -> bytes:
    out = b""
    for tag, n in tlv.parse_dol(dol):
        v = values.get(tag, b"")
        out += v[:n] if len(v) >= n else bytes(n - len(v)) + v
    return out


def minimal_transaction(channel: RecordingChannel, host: IssuerHost, aid: bytes, n: int) -> TransactionState:
    """SELECT, GPO, READ RECORD, first GENERATE AC (ARQC), then online.process."""
    un = n.to_bytes(4, "big")
    values = {0x9F02: bytes.fromhex(f"{1000 + n % 1000:012d}"), 0x9F03: bytes(6), 0x9F1A: b"\x02\x50",
              0x95: bytes(5), 0x5F2A: b"\x09\x78", 0x9A: bytes.fromhex("250601"), 0x9C: b"\x00", 0x9F37: un}
    state = TransactionState(amount=1000, unpredictable_number=un)

    def ok(apdu: bytes) -> bytes:
        resp = channel.transmit(apdu)
        if resp[-2:] != b"\x90\x00":
            raise RuntimeError(f"{apdu[:4].hex()}: SW {resp[-2:].hex()}")
        return resp[:-2]

    fci = ok(b"\x00\xA4\x04\x00" + bytes((len(aid),)) + aid + b"\x00")
    state.aid = aid
    state.card_data.update(tlv.flatten(fci))
    state.pdol_data = _dol(state.card_data.get(0x9F38, b""), values)
    gpo = ok(b"\x80\xA8\x00\x00" + bytes((len(state.pdol_data) + 2, 0x83, len(state.pdol_data)))
             + state.pdol_data + b"\x00")
    d = tlv.flatten(gpo)
    item = tlv.parse(gpo)[0]
    state.aip, state.afl = (item.value[:2], item.value[2:]) if item.tag == 0x80 else (d[0x82], d[0x94])
    for i in range(0, len(state.afl), 4):
        sfi, first, last = state.afl[i] >> 3, state.afl[i + 1], state.afl[i + 2]
        for rec in range(first, last + 1):
            state.card_data.update(tlv.flatten(ok(bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0)))))
    state.cdol1_data = _dol(state.card_data[0x8C], values)
    state.ac1 = online.parse_ac_response(ok(bytes((0x80, 0xAE, 0x80, 0x00, len(state.cdol1_data)))
                                            + state.cdol1_data + b"\x00"))
    return online.process(state, channel, host)


# -- measuring -------------------------------------------------------------------------------------


def measure(oda: str, cvn: int, seconds: float, use_kernel: bool) -> tuple[float, float, int, str]:
    """(transactions/s, card share, APDUs per transaction, outcome of the last)."""
    p = Profile(oda=oda, cvn=cvn)
    card, _ = make_card(p)
    timed = TimedCard(card.transmit)
    host = IssuerHost(IMK_AC, IMK_SMI, IMK_SMC)
    terminal = terminal_profile() if use_kernel else None
    n, outcome = 0, ""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        channel = RecordingChannel(timed)
        if use_kernel:
            state = kernel_transaction(channel, host, terminal, n)
        else:
            state = minimal_transaction(channel, host, p.aid, n)
        outcome = state.outcome
        n += 1
    total = time.perf_counter() - start
    return n / total, timed.seconds / total, timed.apdus // max(n, 1), outcome


def kernel_usable() -> tuple[bool, str]:
    try:
        importlib.import_module("cardlab.tester.kernel")
        importlib.import_module("cardlab.tester.risk")
        importlib.import_module("cardlab.tester.cvm")
    except ImportError as exc:
        return False, f"kernel not runnable yet ({exc}); minimal sequence + cardlab.tester.online"
    p = Profile(oda="SDA", cvn=0x12)
    card, _ = make_card(p)
    try:
        state = kernel_transaction(RecordingChannel(card.transmit), IssuerHost(IMK_AC, IMK_SMI, IMK_SMC),
                                   terminal_profile(), 0)
    except Exception as exc:  # noqa: BLE001 — the kernel is written concurrently
        return False, f"kernel raised {type(exc).__name__}: {exc}; minimal sequence + cardlab.tester.online"
    return True, f"cardlab.tester.kernel.run_transaction (trial outcome: {state.outcome})"


def host_rates(seconds: float) -> tuple[float, float]:
    p = Profile(oda="SDA", cvn=0x12)
    card, _ = make_card(p)
    host = IssuerHost(IMK_AC, IMK_SMI, IMK_SMC)
    channel = RecordingChannel(card.transmit)
    un = b"\x01\x02\x03\x04"
    values = {0x9F02: bytes.fromhex("000000001000"), 0x9F03: bytes(6), 0x9F1A: b"\x02\x50", 0x95: bytes(5),
              0x5F2A: b"\x09\x78", 0x9A: bytes.fromhex("250601"), 0x9C: b"\x00", 0x9F37: un}
    state = TransactionState(unpredictable_number=un)
    fci = channel.transmit(b"\x00\xA4\x04\x00" + bytes((len(p.aid),)) + p.aid + b"\x00")[:-2]
    state.card_data.update(tlv.flatten(fci))
    pdol = _dol(state.card_data.get(0x9F38, b""), values)
    gpo = channel.transmit(b"\x80\xA8\x00\x00" + bytes((len(pdol) + 2, 0x83, len(pdol))) + pdol + b"\x00")[:-2]
    state.aip = tlv.flatten(gpo)[0x82]
    state.card_data.update(tlv.flatten(channel.transmit(bytes.fromhex("00B2011400"))[:-2]))
    state.card_data.update(tlv.flatten(channel.transmit(bytes.fromhex("00B2021400"))[:-2]))
    state.cdol1_data = _dol(state.card_data[0x8C], values)
    state.ac1 = online.parse_ac_response(channel.transmit(
        bytes((0x80, 0xAE, 0x80, 0x00, len(state.cdol1_data))) + state.cdol1_data + b"\x00")[:-2])
    req = AuthorizationRequest.from_state(state)
    assert host.verify(req)[0] is True

    def rate(fn: Callable[[], object]) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            fn()
            n += 1
        return n / (time.perf_counter() - t0)

    return rate(lambda: host.verify(req)), rate(lambda: host.authorize(req))


def certification_rate(seconds: float, profile: str = "visa-cvn18") -> tuple[float, float, int, str]:
    """Certifications of one card per second (``cardlab.tester.certify.certify_card`` on a
    card the personalizer prepared from a sample profile, tests/tester/certkit.py):
    (certifications/s, card share of the time, APDUs per certification, verdict).
    Each run gets a fresh copy of the card (loading it is not timed)."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "tester"))
    import certkit  # type: ignore[import-not-found]

    from cardlab.emulator import Card
    from cardlab.tester.certify import certify_card

    with tempfile.TemporaryDirectory() as tmp:
        prepared = certkit.prepare_sample(profile, Path(tmp))
        image = Path(tmp) / "card.json"
        certkit.card_from_dgis(prepared.clear(0)).save(image)
        prof, rec, keys = certkit.sources_for(prepared)
        n, total, card_time, apdus, verdict = 0, 0.0, 0.0, 0, ""
        while total < seconds or n < 3:
            timed = TimedCard(Card.load(image).transmit)
            t0 = time.perf_counter()
            rep = certify_card(RecordingChannel(timed), prof, rec, keys, today=certkit.TODAY)
            total += time.perf_counter() - t0
            card_time += timed.seconds
            apdus += timed.apdus
            verdict = rep.verdict
            n += 1
    return n / total, card_time / total, apdus // n, verdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--cvn", type=lambda s: int(s, 16), default=0x12)
    ap.add_argument("--minimal", action="store_true", help="skip the kernel, use the minimal sequence")
    ap.add_argument("--certify", nargs="*", default=["visa-cvn18", "mastercard-cvn16"], metavar="PROFILE",
                    help="sample profiles (vectors/profiles) whose prepared card is certified")
    args = ap.parse_args()

    use_kernel, how = (False, "minimal sequence + cardlab.tester.online (--minimal)") if args.minimal else kernel_usable()
    print(f"tester benchmark, CVN {args.cvn:02X}, {args.seconds:.1f} s per card type")
    print(f"transactions through: {how}")
    print(f"{'card':<5} {'tx/s':>8} {'APDUs/tx':>9} {'card %':>7} {'tester %':>9} {'tester/card':>12}  last outcome")
    for oda in ("SDA", "DDA", "CDA"):
        tps, share, apdus, outcome = measure(oda, args.cvn, args.seconds, use_kernel)
        ratio = (1 - share) / share if share else float("inf")
        print(f"{oda:<5} {tps:>8.1f} {apdus:>9} {100 * share:>6.1f}% {100 * (1 - share):>8.1f}% {ratio:>11.2f}x  {outcome}")
    verify, authorize = host_rates(args.seconds)
    print(f"issuer host: {verify:,.0f} ARQC verifications/s, {authorize:,.0f} authorizations (ARQC + ARPC)/s")
    for profile in args.certify:
        cps, share, apdus, verdict = certification_rate(args.seconds, profile)
        print(f"certification ({profile}): {cps:.1f} cards/s, {apdus} APDUs/card, card {100 * share:.1f}% / "
              f"tester {100 * (1 - share):.1f}% of the time; verdict {verdict}")


if __name__ == "__main__":
    main()

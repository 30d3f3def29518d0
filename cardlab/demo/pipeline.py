"""``cardlab demo`` (:func:`run_demo`), the main job: sample issuer profiles + test key store +
generated cardholder records → data preparation → card stock → personalization on several
stations → certification of every card → reports, a summary table and one annotated transaction
trace with an online approval. See the README."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..samples import vectors_dir


#: the sample data (``vectors/`` of a checkout, the package data of an installed cardlab)
VECTORS = vectors_dir()
#: sample profile name → (profile, terminal profile for the trace)
PROFILES = {
    "visa-cvn18": (VECTORS / "profiles" / "visa-cvn18.yaml", VECTORS / "terminals" / "visa-cvn18.yaml"),
    "mastercard-cvn16": (VECTORS / "profiles" / "mastercard-cvn16.yaml",
                         VECTORS / "terminals" / "mastercard-cvn16.yaml"),
}
SCRIPT = VECTORS / "scripts" / "emv-cps.yaml"
TEST_KEYSTORE = VECTORS / "test-keystore.json"
#: key store values behind the KMC names of the sample profiles (test key store entries)
KMC_SOURCES = {"KDF3": "KMC", "EMV": "KMC-3DES", "VISA2": "KMC-3DES"}


@dataclass(frozen=True)
class DemoOptions:
    cards: int = 200
    stations: int = 2
    report_dir: Path = Path("reports")
    out: Path | None = None
    seed: int = 0
    workers: int = 0  # certification processes; 0 = one per CPU
    trace: bool = True
    force: bool = False  # replace a report already in report_dir
    quiet: bool = False  # no progress bars (they show only on a terminal anyway)


@dataclass
class Stage:
    name: str
    items: int = 0
    seconds: float = 0.0
    note: str = ""


@dataclass
class ProfileRun:
    name: str
    profile: Path
    terminal: Path
    records: Path
    batch: Path
    stock: Path
    count: int
    accepted: int = 0
    rejected: int = 0
    perso: dict[str, int] = dataclass_field(default_factory=dict)
    perso_problems: list[str] = dataclass_field(default_factory=list)


class DemoError(Exception):
    """The demo cannot run at all (bad options, output directory in use)."""


def demo_keystore(path: Path) -> Path:
    """The test key store plus the key names the sample profiles use.

    The shipped test key store (``vectors/test-keystore.json``) holds one key
    per usage (``IMK-AC``, ``ISSUER``, ``KMC`` …); the sample profiles name
    per-product keys (``TEST-VISA-CREDIT-IMK-AC``, ``TEST-KMC-VISA`` …). They
    are added as copies of the test key of that usage, so everything stays a
    TEST key. Written as a test-only file (clear values: never for real cards).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from cardlab.personalizer.keys import SoftwareKeyStore
    from cardlab.personalizer.profile import load_profile

    ks = SoftwareKeyStore.load(TEST_KEYSTORE)
    for profile, _terminal in PROFILES.values():
        prof = load_profile(profile)
        kmc = prof.card.kmc
        if kmc not in ks:
            src = KMC_SOURCES[prof.card.diversification.upper()]
            ks.add_symmetric(kmc, ks.info(src).type, "KMC", ks.clear_value(src))
        for app in prof.applications:
            for usage, name in (("IMK-AC", app.keys.imk_ac), ("IMK-SMI", app.keys.imk_smi),
                                ("IMK-SMC", app.keys.imk_smc)):  # fmt: skip
                if name not in ks:
                    ks.add_symmetric(name, ks.info(usage).type, usage, ks.clear_value(usage))  # type: ignore[arg-type]
            if app.keys.issuer_rsa and app.keys.issuer_rsa not in ks:
                key = serialization.load_der_private_key(ks.clear_value("ISSUER"), None)
                assert isinstance(key, rsa.RSAPrivateKey)
                ks.add_rsa(app.keys.issuer_rsa, "ISSUER", key)
    ks.save(path, note="TEST ONLY: cardlab demo key store (the test key store plus the sample profiles' key names)")
    return path


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


# -- workers (module level: they run in forked processes) --------------------------------------

#: records prepared so far, shared with the forked prepare workers (the progress bar reads it)
_PREPARED: Any = None


def _tick() -> None:
    if _PREPARED is not None:
        with _PREPARED.get_lock():
            _PREPARED.value += 1


def _prepare_worker(args: tuple[str, str, str, str]) -> tuple[int, int, int, float]:
    from cardlab.personalizer.prepare import prepare

    profile, records, keys, batch = args
    s = prepare(profile, records, keys, batch, progress=_tick)
    return s.input_count, s.accepted, s.rejected, s.seconds


def _stock_worker(args: tuple[str, str, str, str, int]) -> int:
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.stock import make_stock

    directory, keys, kmc, scheme, count = args
    with open_keystore(keys) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys(kmc, scheme, kdd)
            return k.enc, k.mac, k.dek

        return len(make_stock(directory, count, div, scheme.lower()))


#: one certification job: (profile, records, keys, [(image, record index, card id)])
CertifyJob = tuple[str, str, str, list[tuple[str, int, str]]]


def _certify_worker(job: CertifyJob) -> list[Any]:
    """Certify some cards of one batch through the PC/SC code path (pyscard plug-in)."""
    from cardlab.emulator.transports import pyscard_reader
    from cardlab.tester.certify import certify_batch
    from cardlab.tester.channel import CardChannel

    from ..cardio import open_image_channel

    profile, records, keys, images = job
    prof, ks, matcher = _certify_sources(profile, records, keys)

    def opener(path: str) -> Callable[[], CardChannel]:
        return lambda: open_image_channel(path)

    items = [(opener(img), idx, cid, img) for img, idx, cid in images]
    try:
        # the demo's cards are KMC-keyed: life cycles and privileges are read over SCP03 too; the
        # dual-interface ones are certified on their contactless interface as well (issue 16)
        # each chunk is a run of its own (MATCH-002 within the chunk), over the index built once
        return certify_batch(items, prof, records, ks, matcher=matcher.fresh(), gp_status=True, contactless=True)
    finally:
        for img, _idx, _cid in images:
            with contextlib.suppress(Exception):
                pyscard_reader.remove(f"cardlab image {Path(img).name}")


#: what this certify worker process read for the batch it certifies: each chunk of cards would
#: otherwise parse the profile and every record again (about 0.4 ms a card for 1,000 records), and
#: index every record again (a pass over the batch per chunk of 50 cards: quadratic in the batch)
_SOURCES: dict[tuple[tuple[str, int, int, int], ...], tuple[Any, Any, Any]] = {}


def _certify_sources(profile: str, records: str, keys: str) -> tuple[Any, Any, Any]:
    """The tester's profile, key store and a matcher over the records of these files (its index
    built), read once per process while the files stay the same (path, inode, size and
    modification time); each chunk takes a :meth:`~cardlab.tester.certify.match.Matcher.fresh`
    copy of the matcher, so that a chunk's MATCH-002 sees only its own cards, as before."""
    from cardlab.tester.certify.match import Matcher
    from cardlab.tester.sources import load_keystore, load_profile, read_records

    ident = tuple((p, st.st_ino, st.st_size, st.st_mtime_ns) for p in (profile, records, keys) for st in [os.stat(p)])
    got = _SOURCES.get(ident)
    if got is None:
        _SOURCES.clear()  # one batch at a time: the records of the one before are let go
        got = _SOURCES[ident] = (load_profile(profile), load_keystore(keys), Matcher(list(read_records(records))))
    return got


def _pool(n: int) -> Any:
    ctx = multiprocessing.get_context("fork")
    return ctx.Pool(n)


# -- the job --------------------------------------------------------------------------------------

def run_demo(out: Console, opts: DemoOptions | None = None) -> int:
    """The main job. Exit code 0 when every record became a card that passes
    certification (and the traced transaction is approved), 1 otherwise."""
    from cardlab.tester.report import ReportExists, check_free

    opts = opts or DemoOptions()
    if opts.cards < 1 or opts.stations < 1:
        raise DemoError("--cards and --stations must be at least 1")
    try:
        check_free(opts.report_dir, opts.force)  # before any work
    except ReportExists as exc:
        raise DemoError(str(exc)) from None
    if opts.out is not None:
        if opts.out.exists() and any(opts.out.iterdir()):
            raise DemoError(f"{opts.out}: not empty (it may hold an earlier run); give a new directory")
        opts.out.mkdir(parents=True, exist_ok=True)
        return _run(out, opts, opts.out.resolve())
    with tempfile.TemporaryDirectory(prefix="cardlab-demo-") as tmp:
        return _run(out, opts, Path(tmp))


def _run(out: Console, opts: DemoOptions, work: Path) -> int:
    from cardlab.personalizer import engine
    from cardlab.personalizer.profile import load_profile
    from cardlab.tester.certify import map_images
    from cardlab.tester.progress import Progress, wanted
    from cardlab.tester.report import ReportWriter

    from .. import records_gen

    import warnings

    from cryptography.utils import CryptographyDeprecationWarning

    # pyemv (the tester's oracle) uses 2-key 3DES through cryptography's deprecated path: not news for a user
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
    workers = opts.workers or os.cpu_count() or 1
    show = wanted(quiet=opts.quiet)
    out.rule("cardlab demo — prepare, personalize and certify a batch of emulated EMV cards")
    out.print(f"{opts.cards} cards on the sample profiles {', '.join(PROFILES)}; {opts.stations} perso stations, "
              f"{workers} certification processes; artefacts in {work if opts.out else 'a temporary directory'}")
    stages: list[Stage] = []
    t0 = time.perf_counter()

    # 0. inputs: the key store, the profiles and the script copied in, the records generated
    keys = demo_keystore(work / "keys.json")
    runs: list[ProfileRun] = []
    for (name, (profile, terminal)), count in zip(PROFILES.items(), _split(opts.cards, len(PROFILES))):
        if count == 0:
            continue
        (work / "profiles").mkdir(exist_ok=True)
        prof_copy = work / "profiles" / profile.name
        shutil.copyfile(profile, prof_copy)
        bin_, languages = records_gen.BINS[name]
        records = records_gen.write_csv(work / "records" / f"{name}.csv", bin_, count, seed=opts.seed,
                                        languages=languages)
        runs.append(ProfileRun(name, prof_copy, terminal, records, work / name / "batch", work / name / "stock",
                               count))
    out.print(f"inputs: {keys.name} (TEST keys), profiles/, records/ "
              f"({', '.join(f'{r.count} {r.name}' for r in runs)}) in {time.perf_counter() - t0:.2f} s")

    # 1. data preparation: one process per profile (ICC RSA key generation is the cost)
    t = time.perf_counter()
    global _PREPARED
    _PREPARED = multiprocessing.get_context("fork").Value("i", 0)
    with _pool(min(len(runs), workers)) as pool, Progress(opts.cards, "prepare", unit="records", enabled=show) as bar:
        pending = pool.map_async(_prepare_worker, [(str(r.profile), str(r.records), str(keys), str(r.batch)) for r in runs])
        while not pending.ready():
            pending.wait(0.2)
            bar.advance(_PREPARED.value - bar.done)
        results = pending.get()
    _PREPARED = None
    for r, (_n, acc, rej, _s) in zip(runs, results):
        r.accepted, r.rejected = acc, rej
        shutil.copyfile(SCRIPT, r.batch / "script.yaml")  # so `perso run BATCH` needs no --script
    stages.append(Stage("prepare", sum(r.count for r in runs), time.perf_counter() - t,
                        f"{sum(r.rejected for r in runs)} records rejected"))

    # 2. card stock: blank cards with ISD keys diversified from each profile's KMC
    t = time.perf_counter()
    jobs = []
    for r in runs:
        card = load_profile(r.profile).card
        jobs.append((str(r.stock), str(keys), card.kmc, card.diversification.upper(), r.accepted))
    with _pool(min(len(runs), workers)) as pool:
        made = pool.map(_stock_worker, jobs)
    stages.append(Stage("card stock", sum(made), time.perf_counter() - t))

    # 3. personalization: each batch on its own stations (worker processes)
    t = time.perf_counter()
    for r in runs:
        rep = engine.run(r.batch, cards=r.stock, stations=opts.stations, keys=str(keys), progress=show)
        r.perso = dict(rep.counts)
        r.perso_problems = [f"record {i} ({pan}): {reason}" for i, _cid, pan, reason in rep.failures]
        r.perso_problems += [f"record {i} {status}" for i, _cid, status in rep.unaccounted]
        r.perso_problems += rep.errors
    stages.append(Stage("personalize", sum(r.perso.get("done", 0) for r in runs), time.perf_counter() - t,
                        f"{opts.stations} stations per batch"))

    # 4. certification of every personalized card, in parallel processes; the reports written as the cards come
    t = time.perf_counter()
    cjobs: list[CertifyJob] = []
    for r in runs:
        images = [(str(img), idx, cid) for img, idx, cid in map_images(r.batch)]
        size = max(1, min(50, -(-len(images) // (workers * 4))))  # small chunks: the progress bar moves
        for k in range(0, len(images), size):
            cjobs.append((str(r.profile), str(r.records), str(keys), images[k:k + size]))
    tallies: dict[str, Counter[str]] = {}
    failed_cards: list[Any] = []
    total_cards = sum(len(j[3]) for j in cjobs)
    with ReportWriter(opts.report_dir, _provenance(runs, keys, opts), force=opts.force) as writer, \
            _pool(max(1, min(workers, len(cjobs)))) as pool, Progress(total_cards, "certify", enabled=show) as bar:
        for chunk in pool.imap(_certify_worker, cjobs):
            for rep in chunk:
                writer.add(rep)
                bar.advance(failed=rep.verdict != "pass")
                tally = tallies.setdefault(rep.profile, Counter())
                tally["cards"] += 1
                tally["passed"] += rep.verdict == "pass"
                tally.update(rep.counts())
                if rep.verdict != "pass":
                    failed_cards.append(rep)
    paths = writer.paths
    stages.append(Stage("certify", writer.n, time.perf_counter() - t, f"{workers} processes"))

    total = time.perf_counter() - t0
    ok = _summary(out, runs, tallies, stages, total)
    out.print("reports: " + ", ".join(str(p) for p in paths))

    # 5. one transaction, annotated, with an online approval by the issuer host
    approved = True
    if opts.trace:
        # the Mastercard-like card when there is one: CDA and an ARPC the card checks in the second GENERATE AC
        approved = _trace(out, runs[-1], keys, work)
    if opts.out is not None:
        _print_steps(out, runs, keys, work, opts)
    for c in failed_cards[:20]:
        reason = c.error or ", ".join(sorted(c.failed_rules()))
        out.print(f"[red]FAILED[/red] card {c.card_id} ({c.pan_masked}, {c.profile}): {escape(reason)}")
    for r in runs:
        for p in r.perso_problems[:20]:
            out.print(f"[red]perso {r.name}[/red]: {escape(p)}")
    good = ok and approved and not failed_cards
    out.rule("[green]all cards pass[/green]" if good else "[red]some cards failed[/red]")
    return 0 if good else 1


def _provenance(runs: list[ProfileRun], keys: Path, opts: DemoOptions) -> dict[str, Any]:
    """The reports' provenance: every profile, records file and batch manifest of the run, the key store."""
    from cardlab.tester.report import provenance
    from cardlab.tester.sources import load_keystore

    inputs: dict[str, Path | None] = {"key store": keys}
    for r in runs:
        inputs.update({f"profile {r.name}": r.profile, f"records {r.name}": r.records,
                       f"manifest {r.name}": r.batch / "manifest.json"})
    return provenance(inputs=inputs, keys=load_keystore(str(keys)),
                      options={"cards": opts.cards, "seed": opts.seed, "stations": opts.stations, "gp_status": True})


def _summary(out: Console, runs: list[ProfileRun], tallies: dict[str, Counter[str]], stages: list[Stage],
             total: float) -> bool:
    """Print the verdict and throughput tables; True when the counts add up."""
    rows = ("records", "rejected by data preparation", "personalized", "personalization failed",
            "certified", "pass", "fail", "rule checks (pass + fail)", "rule checks not applicable")
    cols: list[list[int]] = []
    ok = True
    for r in runs:
        counts = tallies.get(load_profile_name(r.profile), Counter())
        mine, passed = counts["cards"], counts["passed"]
        done = r.perso.get("done", 0)
        cols.append([r.count, r.rejected, done, r.perso.get("failed", 0), mine, passed, mine - passed,
                     counts["pass"] + counts["fail"], counts["not applicable"]])
        ok = ok and r.rejected == 0 and done == r.count == mine and not r.perso_problems
    cards = Table(title="Cards")
    cards.add_column("")
    for r in runs:
        cards.add_column(r.name, justify="right")
    cards.add_column("total", justify="right")
    for i, label in enumerate(rows):
        values = [col[i] for col in cols]
        cards.add_row(label, *(str(v) for v in values), str(sum(values)))
    out.print(cards)
    thr = Table(title=f"Throughput (whole job {total:.1f} s)")
    for col in ("stage", "items", "seconds", "per second", ""):
        thr.add_column(col, justify="left" if col in ("stage", "") else "right")
    for s in stages:
        rate = f"{s.items / s.seconds:.1f}" if s.seconds > 0 else "-"
        thr.add_row(s.name, str(s.items), f"{s.seconds:.2f}", rate, s.note)
    out.print(thr)
    return ok


def load_profile_name(path: Path) -> str:
    """The ``profile:`` name a profile file declares (what the reports carry)."""
    from cardlab.tester.sources import load_profile

    return load_profile(path).name


def _trace(out: Console, run: ProfileRun, keys: Path, work: Path) -> bool:
    """One transaction on a copy of the first card (the certified image stays as
    certified), online, with the teaching trace. True when approved."""
    from cardlab.tester.channel import RecordingChannel
    from cardlab.tester.issuer_host import IssuerHost
    from cardlab.tester.kernel import run_transaction
    from cardlab.tester.sources import load_keystore, load_profile, read_records
    from cardlab.tester.terminal import load_terminal
    from cardlab.tester.trace import print_rich

    from ..cardio import open_image_channel
    from ..emulator.image import copy_image

    from cardlab.tester.certify import map_images

    mapped = map_images(run.batch)
    if not mapped:
        out.print("[red]no personalized card to trace[/red]")
        return False
    image, index, _cid = mapped[0]
    copy = work / "trace-card.json"
    copy_image(image, copy)  # the snapshot and its journal
    record = next(r for r in read_records(run.records) if r.index == index)
    prof = load_profile(run.profile)
    ks = load_keystore(keys)
    app = prof.applications[0]
    imks = [ks.symmetric_key(app.keys.get(f"imk_{k}"), f"IMK-{k.upper()}") for k in ("ac", "smi", "smc")]
    if any(k is None for k in imks):
        out.print("[red]the key store has no issuer master keys for the trace[/red]")
        return False
    host = IssuerHost(*(k[1] for k in imks if k is not None))
    out.rule(f"One transaction, step by step: card {copy.name} ({record.masked}), {run.name}, "
             f"amount 10.00, online to the issuer host")
    channel = open_image_channel(str(copy))
    try:
        state = run_transaction(RecordingChannel(channel.transmit, channel.atr()), load_terminal(run.terminal),
                                amount=1000, pin=record.pin, online_host=host, force_online=True, seed=1)
    finally:
        channel.close()
    print_rich(state, out)
    approved = state.outcome.startswith("approved")
    if not approved:
        out.print("[red]the traced transaction was not approved[/red]")
    return approved


def _shown(path: Path) -> Path:
    """``path`` as a user pastes it: relative to the current directory when it is below it."""
    rel = Path(os.path.relpath(path))
    return path if rel.parts[:1] == ("..",) else rel


def _print_steps(out: Console, runs: list[ProfileRun], keys: Path, work: Path, opts: DemoOptions) -> None:
    """The commands that redo each step by hand on the kept artefacts, for every profile; they
    write into new directories (``batch2``, ``stock2``, ``reports2``): the demo's own stay as they are."""
    rel = _shown(work)
    ks = rel / keys.name
    out.rule("Re-run any step by hand")
    lines: list[str] = []
    for r in runs:
        b, s = rel / r.name / "batch2", rel / r.name / "stock2"
        profile, records = rel / "profiles" / r.profile.name, rel / "records" / r.records.name
        kmc, scheme = load_profile_kmc(r.profile)
        lines += [
            f"# {r.name}",
            f"cardlab perso prepare --profile {profile} --records {records} --keys {ks} --out {b}",
            f"cardlab perso stock {s} --count {r.accepted} --keys {ks} --kmc {kmc} --diversification {scheme}",
            f"cardlab perso run {b} --cards {s} --stations {opts.stations} --keys {ks}",
            f"cardlab perso status {b}",
            f"cardlab perso audit {b} --verify",
            f"cardlab test certify --profile {profile} --records {records} --keys {ks} --cards {b} --gp-status --contactless "
            f"--report-dir {rel / r.name / 'reports2'}",
            f"cardlab card show {s / 'card-000001.json'}",
        ]
    if opts.trace:
        # with the issuer keys the terminal can go online (random selection for online processing
        # sends some transactions there): the issuer host simulator answers
        lines += ["# one transaction on the traced card's copy, online-capable with the TEST issuer keys",
                  f"cardlab test transaction --card {rel / 'trace-card.json'} --terminal "
                  f"{_shown(runs[-1].terminal)} --amount 1000 --keys {ks} --trace"]
    for line in lines:
        out.print(f"  {escape(line)}", soft_wrap=True)


def load_profile_kmc(path: Path) -> tuple[str, str]:
    from cardlab.personalizer.profile import load_profile

    card = load_profile(path).card
    return card.kmc, card.diversification.upper()

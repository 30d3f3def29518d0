"""The batch directory: issuer profile + cardholder records + key store → a batch.

``prepare(profile_path, records_path, keystore, out_dir)`` streams the records
(``cardlab.personalizer.records.read_records``), prepares each accepted record with
:class:`~cardlab.personalizer.prepare.preparer.CardPreparer` and writes the batch
directory of ``cardlab.personalizer.batch`` one line at a time (memory does not grow
with the batch), in a staging directory moved into place when complete:

* ``cards.jsonl`` — one :class:`~cardlab.personalizer.batch.CardPersoData` per card: per
  application of the profile the install information and every CPS DGI of
  ``docs/dgi-map.md``; secrets (8000, 8010, 8201–8205), the record DGIs that
  hold the PAN in clear or recoverably (5A, 57, 56, 9F6B, and the ICC public
  key certificates 9F46/9F2D, which anyone with the CA public key can open to
  read the PAN) and the station data (full PAN) are
  :class:`~cardlab.personalizer.batch.Sealed` under the transport key — so a
  :class:`Sealed` value may appear on any DGI, and the engine sends every
  sealed DGI in an encrypted STORE DATA block (the card accepts non-secret
  DGIs there too);
* ``rejected.jsonl`` — one :class:`~cardlab.personalizer.batch.Rejection` per refused
  record (record number, masked PAN, field, message); the batch goes on;
* ``profile.yaml`` — a copy of the profile; ``script.yaml`` — the perso script the
  engine runs (:func:`default_script`);
* ``manifest.json`` — written last: counts, SHA-256 of the inputs and of
  ``cards.jsonl``, transport key name and KCV, profile name, creation time.

A profile with a ``badge:`` section is prepared by :mod:`cardlab.personalizer.badge`
into the same layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

from cardlab.personalizer.badge import BadgeLayout, BadgeRecordError, prepare_badges
from cardlab.personalizer.batch import FORMAT, VERSION, BatchExistsError, Rejection, staging
from cardlab.personalizer.keys import KeyStore, open_keystore
from cardlab.personalizer.prepare.keycheck import check_keys
from cardlab.personalizer.masking import redact_pans
from cardlab.personalizer.prepare import parallel
from cardlab.personalizer.prepare.errors import PrepareError
from cardlab.personalizer.prepare.preparer import CardPreparer
from cardlab.personalizer.profile import Profile, load_profile
from cardlab.personalizer.records import Rejected, read_records
from cardlab.personalizer.script.errors import ScriptError
from cardlab.personalizer.script.loader import load_script
from cardlab.personalizer.transport import TransportKeys

__all__ = ["SCRIPTS", "PrepareSummary", "default_script", "prepare"]

_CHUNK = 1 << 20
_T = TypeVar("_T")


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


def _check_script(path: Path) -> None:
    """The perso script the batch will carry is read and validated now, not at the first card."""
    if not path.is_file():
        raise PrepareError(f"{path}: no such perso script")
    try:
        load_script(path)
    except ScriptError as exc:
        raise PrepareError(f"perso script {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(f"perso script {path}: cannot read it ({type(exc).__name__})") from None


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
    progress: Callable[[], None] | None = None,
    workers: int = 1,
    dask: str | None = None,
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
    :mod:`cardlab.personalizer.badge`. ``progress`` is called after each EMV record (a progress bar).
    ``workers`` > 1 prepares on that many local worker processes, ``dask`` on a Dask scheduler
    (``tcp://HOST:PORT``) or a local Dask cluster (``local:N``) — the same batch, record order
    and rejections (:mod:`cardlab.personalizer.prepare.parallel`).
    """
    if isinstance(keystore, str):
        spec = keys_spec or _keys_spec(keystore)
        with open_keystore(keystore) as ks:
            return prepare(profile_path, records_path, ks, out_dir, today=today, transport_key=transport_key,
                           transport_keys=transport_keys, ca_key=ca_key, script=script,
                           keys_spec=spec, ca_public_keys=ca_public_keys, progress=progress,
                           workers=workers, dask=dask)  # fmt: skip
    started = time.perf_counter()
    profile_path, records_path, out = Path(profile_path), Path(records_path), Path(out_dir)
    script_path = Path(script) if script is not None else default_script(profile_path)
    if script_path is not None:
        _check_script(script_path)
    check_keys(profile_path, script_path, keystore)
    if _is_badge_profile(profile_path):
        return _prepare_badges(profile_path, records_path, keystore, out, started, script_path, keys_spec)
    profile = load_profile(profile_path)
    preparer = CardPreparer(profile, keystore, transport_key, ca_key=ca_key, today=today,
                            ca_public_keys=ca_public_keys)  # fmt: skip
    job = None
    if workers > 1 or dask:
        job = parallel.job_for(str(profile_path.resolve()), keys_spec, transport_key, today, ca_key, ca_public_keys)
    executor = parallel.executor_for(workers, dask)
    try:
        with staging(out) as work:
            return _prepare_into(work, out, profile, preparer, profile_path, records_path, script_path,
                                 transport_key, transport_keys, today, keys_spec, started, progress,
                                 (job, executor) if job is not None and executor is not None else None)  # fmt: skip
    except BatchExistsError as e:
        raise PrepareError(str(e)) from None
    finally:
        if executor is not None:
            executor.close()


def _counted(items: Iterable[_T], progress: Callable[[], None] | None) -> Iterator[_T]:
    """``items``, calling ``progress`` after each one is done with (the loop asked for the next)."""
    for item in items:
        yield item
        if progress is not None:
            progress()


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
    progress: Callable[[], None] | None = None,
    spread: tuple[parallel.PrepareJob, parallel.Executor] | None = None,
) -> PrepareSummary:
    """The EMV batch's files, written into the staging directory ``work`` (moved to ``out`` after);
    ``spread``: the records prepared by workers (:mod:`.parallel`), written in record order."""
    records_sha = _sha256_file(records_path)
    profile_sha = _sha256_file(profile_path)
    shutil.copyfile(profile_path, work / "profile.yaml")
    if script_path is not None:
        shutil.copyfile(script_path, work / "script.yaml")

    cards = _JsonLines(work / "cards.jsonl")
    rejected = _JsonLines(work / "rejected.jsonl")
    total = 0
    try:
        items = read_records(records_path, today=today, keys=transport_keys, empty_psn=profile.card.empty_psn)
        if spread is None:
            results = parallel.serial_results(items, preparer)
        else:
            job, executor = spread
            results = parallel.parallel_results(items, job, preparer.keys, executor.submit, window=executor.window)
        for kind, doc in _counted(results, progress):
            total += 1
            (cards if kind == "card" else rejected).write(doc)
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


def _shipped_scripts() -> Path:
    """The shipped perso scripts: ``scripts/`` of the sample data package
    ``cardlab.vectors`` (``vectors/`` of a checkout, package data of a wheel)."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("cardlab.vectors"))) / "scripts"
    except ModuleNotFoundError:  # a checkout run without installing the package
        return Path(__file__).resolve().parents[3] / "vectors" / "scripts"


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
    progress: Callable[[], None] | None = None,
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

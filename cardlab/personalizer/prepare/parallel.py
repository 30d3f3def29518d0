"""Data preparation of one batch on many processes or machines (issues 14 and 15).

``perso prepare --workers N`` prepares on N local worker processes, ``--dask ADDRESS`` on the
workers of a ``dask.distributed`` scheduler (``--dask local:N``: a local cluster of N worker
processes, started and closed by the command). The parent reads and validates the records as
the one-process path does, sends them in chunks, and writes the results in record order as they
come back — streaming: at most ``window`` chunks are in flight, no process holds the batch. The
batch is the one a single process writes for the same inputs (the same ``cards.jsonl`` order,
rejections and messages); only what is fresh per card anyway differs (ICC RSA keys, the
random IVs of sealed values).

Secrets and workers:

* a worker opens the key store itself, from the spec the command was given (a key store file —
  reachable at the same path on every worker, its passphrase in the worker's
  ``CARDLAB_KEYSTORE_PASSPHRASE`` — or a ``pkcs11:`` token, whose module and token every worker
  must have); no key leaves the key store on its way to a worker;
* the records (PANs, PINs) travel to workers only sealed: each chunk is enciphered under the
  batch's transport key (KEK) with a fresh IV and opened inside the worker's key store;
* what comes back is what goes into ``cards.jsonl``: secrets already sealed under the KEK,
  PANs masked.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from cardlab.cardspec.scp03 import pad80, unpad80
from cardlab.personalizer.batch import Rejection
from cardlab.personalizer.keys import KeyStore, open_keystore
from cardlab.personalizer.masking import redact_pans
from cardlab.personalizer.prepare.errors import CardProblem, PrepareError
from cardlab.personalizer.prepare.preparer import CardPreparer
from cardlab.personalizer.profile import load_profile
from cardlab.personalizer.records import Record, Rejected

__all__ = ["Executor", "PrepareJob", "Result", "executor_for", "job_for", "parallel_results", "prepare_chunk",
           "serial_results"]

#: ("card", CardPersoData JSON) or ("rejected", Rejection JSON), in record order
Result = tuple[str, dict[str, Any]]
#: records per chunk sent to a worker
CHUNK = 32


@dataclass(frozen=True)
class PrepareJob:
    """What a worker needs to build the same :class:`CardPreparer` as the parent (no secret)."""

    profile_path: str
    keys_spec: str
    transport_key: str
    today: date | None
    ca_key: str | None
    ca_public_keys: str  # JSON of the CA public keys (hashable)


_PREPARERS: dict[PrepareJob, CardPreparer] = {}


def _preparer(job: PrepareJob) -> CardPreparer:
    """The worker's preparer for ``job`` (built once per worker process)."""
    prep = _PREPARERS.get(job)
    if prep is None:
        keystore: KeyStore = open_keystore(job.keys_spec)
        prep = CardPreparer(load_profile(job.profile_path), keystore, job.transport_key, ca_key=job.ca_key,
                            today=job.today, ca_public_keys=json.loads(job.ca_public_keys))  # fmt: skip
        _PREPARERS[job] = prep
    return prep


def one(prep: CardPreparer, record: Record) -> Result:
    """One accepted record prepared, or its rejection (the one-process path's messages)."""
    try:
        return "card", prep.prepare(record).to_json()
    except CardProblem as e:
        msg = redact_pans(f"record {record.index} ({record.masked_pan}): {e.field}: {e}")
        return "rejected", Rejection(record.index, record.masked_pan, e.field, msg).to_json()


def rejection(item: Rejected) -> Result:
    return "rejected", Rejection(item.index, item.record_id, item.field, redact_pans(item.message)).to_json()


def prepare_chunk(job: PrepareJob, iv: bytes, sealed: bytes) -> list[Result]:
    """On a worker: open the sealed chunk of records in the key store, prepare each."""
    prep = _preparer(job)
    records: list[Record] = pickle.loads(unpad80(prep.keys.decrypt(job.transport_key, sealed, iv)))  # noqa: S301 - sealed by our parent under the KEK
    return [one(prep, r) for r in records]


def serial_results(items: Iterable[Record | Rejected], prep: CardPreparer) -> Iterator[Result]:
    """The one-process path."""
    for item in items:
        yield rejection(item) if isinstance(item, Rejected) else one(prep, item)


class _Future(Protocol):
    def result(self) -> list[Result]: ...


Submit = Callable[[PrepareJob, bytes, bytes], _Future]


def _chunks(items: Iterable[Record | Rejected], size: int) -> Iterator[list[Record | Rejected]]:
    """``items`` in runs holding ``size`` records each (rejections ride along in their places)."""
    chunk: list[Record | Rejected] = []
    records = 0
    for item in items:
        chunk.append(item)
        records += isinstance(item, Record)
        if records >= size:
            yield chunk
            chunk, records = [], 0
    if chunk:
        yield chunk


def parallel_results(items: Iterable[Record | Rejected], job: PrepareJob, keys: KeyStore, submit: Submit,
                     *, window: int, chunk: int = CHUNK) -> Iterator[Result]:
    """The results of ``items`` in record order, the records prepared by ``submit`` (a worker);
    ``keys`` (the parent's key store) seals each chunk under the job's transport key."""
    pending: deque[tuple[list[Record | Rejected], _Future | None]] = deque()

    def drain(one_only: bool) -> Iterator[Result]:
        while pending:
            part, fut = pending.popleft()
            done = iter(fut.result() if fut is not None else [])
            for item in part:
                yield rejection(item) if isinstance(item, Rejected) else next(done)
            if one_only:
                return

    for part in _chunks(items, chunk):
        records = [i for i in part if isinstance(i, Record)]
        fut = None
        if records:
            iv = os.urandom(16)
            sealed = keys.encrypt(job.transport_key, pad80(pickle.dumps(records)), iv)
            fut = submit(job, iv, sealed)
        pending.append((part, fut))
        if len(pending) >= window:
            yield from drain(True)
    yield from drain(False)


@dataclass
class Executor:
    """Where the chunks go: ``submit`` and how many may be in flight; ``close`` when done."""

    submit: Submit
    window: int
    close: Callable[[], None]
    what: str


def executor_for(workers: int = 1, dask: str | None = None) -> Executor | None:
    """The executor ``--workers N`` / ``--dask ADDRESS|local:N`` ask for (None: one process)."""
    if dask:
        return _dask_executor(dask)
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        return Executor(lambda job, iv, sealed: pool.submit(prepare_chunk, job, iv, sealed), 2 * workers,
                        lambda: pool.shutdown(cancel_futures=True), f"{workers} worker processes")  # fmt: skip
    return None


def _dask_executor(address: str) -> Executor:
    import importlib

    try:
        distributed: Any = importlib.import_module("distributed")  # untyped: used through Any
    except ImportError:
        raise PrepareError("--dask needs dask.distributed: pip install 'cardlab[dask]'") from None
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    cluster: Any = None
    try:
        if address.startswith("local:"):
            n = int(address.split(":", 1)[1])
            if n < 1:
                raise ValueError
            import logging

            logging.getLogger("distributed").setLevel(logging.ERROR)  # the command's output, not Dask's
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)  # fmt: skip
            client = Client(cluster)
            what = f"a local Dask cluster of {n} workers"
        else:
            client = Client(address, timeout="5s")
            what = f"the Dask scheduler at {address}"
    except ValueError:
        raise PrepareError(f"--dask {address!r}: expected a scheduler address (tcp://HOST:PORT) or local:N") from None
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise PrepareError(f"--dask {address}: cannot reach the scheduler ({type(exc).__name__}: {exc})") from None
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))

    def close() -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    return Executor(lambda job, iv, sealed: client.submit(prepare_chunk, job, iv, sealed, pure=False),
                    2 * n_workers, close, what)  # fmt: skip


def job_for(profile_path: str, keys_spec: str | None, transport_key: str, today: date | None, ca_key: str | None,
            ca_public_keys: Sequence[Mapping[str, Any]]) -> PrepareJob:
    if not keys_spec:
        raise PrepareError("parallel preparation needs the key store named (a file or pkcs11: spec): "
                           "each worker opens it itself")  # fmt: skip
    return PrepareJob(str(profile_path), keys_spec, transport_key, today, ca_key,
                      json.dumps(list(ca_public_keys), sort_keys=True, default=str))  # fmt: skip

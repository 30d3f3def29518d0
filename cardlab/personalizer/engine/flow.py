"""The per-card flow: identify, claim, script, save, finish (:func:`personalize_card`).

::

    identify     SELECT ISD, GET DATA 45 (CIN) and 9F7F (CPLC) — before any session
    claim        job DB transaction: next pending record → in_progress, attempt row,
                 card row (CIN, CPLC hash, image or reader), audit "card start"
    script       cardlab.personalizer.script.execute(script, card data, transmit, key store)
                 — stops at the first unexpected SW (StepFailed)
    save         emulated: the image, atomically (and after every APDU that changed it)
    finish       job DB transaction: done / failed, stage timings, audit entries

A failed card does not stop the batch; its reason (:func:`failure_reason`)
names the step and status words, never card data. :class:`Job` is what every
station of a run shares.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardlab.personalizer.engine.errors import EngineError
from cardlab.personalizer.engine.gp import GpAccess
from cardlab.personalizer.engine.identity import read_identity
from cardlab.personalizer.jobdb import safe_reason
from cardlab.personalizer.script.errors import StepFailed

if TYPE_CHECKING:
    from cardlab.personalizer.engine.sources import CardInHand
    from cardlab.personalizer.jobdb import JobDb
    from cardlab.personalizer.keys import KeyStore

#: ``execute(script, card, transmit, keystore, *, profile=None, on_step=None)``
Executor = Callable[..., Any]


@dataclass
class Outcome:
    record_index: int
    #: done | failed | refused (card set aside, record retried) | fault (card spoiled, record retried) |
    #: untouched (a reader fault before any write: card and record retried) | unsettled (a reader fault
    #: after a write: the attempt stays open until the station has read the card again, ``attempt``)
    status: str
    reason: str = ""
    stages: list[tuple[str, float]] = field(default_factory=list)
    attempt: int = 0


def _step_name(args: tuple[Any, ...], kwargs: dict[str, Any], n: int) -> str:
    for key in ("step_name", "name"):
        if isinstance(kwargs.get(key), str):
            return str(kwargs[key])
    for value in (*args, *kwargs.values()):
        if isinstance(value, str):
            return value
        name = getattr(value, "name", None) or getattr(value, "step_name", None)
        if isinstance(name, str):
            return name
    return f"step {n}"


def failure_reason(exc: BaseException) -> str:
    """The real cause of a card's failure, with no secret in it: for a script step that failed, the
    step, the status word it got (or why it got none: e.g. "card cryptogram mismatch: wrong keys
    or not the expected card") and what it expected; otherwise the exception type and its
    (PAN-masked) message. This text reaches the terminal, ``perso status``, the job database and
    the audit log."""
    if isinstance(exc, StepFailed):
        return safe_reason(str(exc))
    sw = getattr(exc, "sw", None)
    extra = f" (SW {sw:04X})" if isinstance(sw, int) else ""
    return safe_reason(f"{type(exc).__name__}: {exc}{extra}")


#: instructions that change nothing on a card (ISO 7816-4 §5.4, GP §11): SELECT, GET RESPONSE,
#: READ BINARY/RECORD, GET DATA, GET STATUS, and the secure channel's INITIALIZE UPDATE and
#: EXTERNAL AUTHENTICATE (they move the sequence counter, never the card's content)
_CHANGES_NOTHING = frozenset({0xA4, 0xC0, 0xB0, 0xB2, 0xCA, 0xCB, 0xF2, 0x50, 0x82})


class _WriteWatch:
    """The card's transmit, watching whether the card accepted any command that writes."""

    def __init__(self, transmit: Callable[[bytes], bytes]) -> None:
        self._transmit = transmit
        self.accepted_data = False
        #: a command that can write was sent: after a transport fault its answer is unknown, so the
        #: card may hold data even when no answer said so
        self.sent_write = False

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) >= 2 and apdu[1] not in _CHANGES_NOTHING:
            self.sent_write = True
        resp = self._transmit(apdu)
        if not self.accepted_data and len(apdu) >= 2 and apdu[1] not in _CHANGES_NOTHING and len(resp) >= 2 \
                and (resp[-2] in (0x90, 0x61) or resp[-2:-1] == b"\x62"):
            self.accepted_data = True
        return resp


def transport_fault(exc: BaseException) -> bool:
    """The reader or the card went away, or did not answer in time (pyscard's connection errors)."""
    names = {k.__name__ for k in type(exc).__mro__}
    return bool(names & {"CardConnectionException", "NoCardException", "SmartcardException",
                         "ConnectionError", "TimeoutError"})  # fmt: skip


def classify(exc: BaseException, accepted_data: bool) -> str:
    """How a bureau treats a card's failure (issue 13): before the card accepted any data the card
    is at fault or the reader is — the card is set aside and the record goes to another card
    (``refused``); a reader or card fault after data spoils the card and retries the record
    (``fault``); a step refused after data is the record's own (``failed``)."""
    if not accepted_data:
        return "refused"
    return "fault" if transport_fault(exc) else "failed"


@dataclass
class Job:
    """What every station of a run shares (picklable into workers by fork)."""

    batch: Path
    script_path: Path
    keys_spec: str
    gp: GpAccess
    executor: Executor | None = None
    profile: Any = None
    #: seconds a station waits for a card that went away while being written to answer again
    fault_wait: float = 30.0
    #: the job store: None for BATCH/jobs.sqlite, else a PostgreSQL address shared with other machines
    jobs: str | None = None


def load_script(job: Job) -> tuple[Any, Executor]:
    if job.executor is not None:
        return job.script_path, job.executor
    try:
        from cardlab.personalizer import script as script_mod
    except ImportError as exc:
        raise EngineError("the perso script interpreter (cardlab.personalizer.script) is not available") from exc
    return script_mod.load_script(job.script_path), script_mod.execute


def personalize_card(
    job: Job, db: JobDb, hand: CardInHand, station: str, script: Any, executor: Executor, keystore: KeyStore
) -> Outcome | None:
    """Identify the card, claim a record, run the script, record the result, then let the card go
    (a reader station waits for its removal only once the result is in the job database).
    ``None`` when there was nothing to do (no pending record, card refused)."""
    outcome = None
    try:
        outcome = _personalize(job, db, hand, station, script, executor, keystore)
        return outcome
    finally:
        if outcome is None or outcome.status != "unsettled":  # an unsettled card is read again first
            with contextlib.suppress(Exception):
                hand.eject()


def _personalize(
    job: Job, db: JobDb, hand: CardInHand, station: str, script: Any, executor: Executor, keystore: KeyStore
) -> Outcome | None:
    t = time.perf_counter()
    stages: list[tuple[str, float]] = []

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages.append((name, now - t))
        t = now

    try:
        ident = read_identity(hand.channel.transmit, job.gp.isd_aid)
    except Exception as exc:  # noqa: BLE001
        if hand.card_row is not None:
            db.release_card(hand.card_row, "unusable", f"cannot identify the card: {failure_reason(exc)}")
        hand.finish()
        return None
    lap("identify")
    known = db.known_card(ident.cin, ident.cplc_hash)
    if known is not None:
        if hand.card_row is not None:
            db.release_card(hand.card_row, "unusable", f"card CIN {ident.cin} already used in this batch")
        else:
            print(f"card CIN {ident.cin} was already used in this batch ({known[1]}); take it out",
                  file=sys.stderr)
        hand.finish()
        return None
    claim = db.start(station, hand.kind, hand.location, ident.cin, ident.cplc_hash, hand.card_row)
    if claim is None:
        hand.finish()
        return None
    hand.note(claim.record_index, claim.card_id)
    lap("claim")
    data = db.card_data(claim.record_index, claim.offset)
    watch = _WriteWatch(hand.channel.transmit)
    try:
        options: dict[str, Any] = {}
        if in_session_check(job, script, executor, data):
            # the blank check inside the script's own first session, before its first write:
            # one secure channel per card instead of two (issue 14)
            options["on_session"] = _SessionCheck(job, data, ident.cin)
        else:
            not_blank = check_blank(hand.channel.transmit, job, keystore, data, ident.cin)
            lap("check blank")
            if not_blank:
                raise NotBlank(not_blank)
        step_count = 0

        def on_step(*args: Any, **kwargs: Any) -> None:
            nonlocal step_count
            step_count += 1
            lap(_step_name(args, kwargs, step_count))

        executor(script, data, watch.transmit, keystore, profile=job.profile, on_step=on_step, **options)
        lap("script")
        hand.finish()
        lap("save")
    except NotBlank as exc:
        with contextlib.suppress(Exception):
            hand.finish()
        db.finish(claim, "refused", exc.reason, stages, station=station)
        return Outcome(claim.record_index, "refused", exc.reason, stages)
    except Exception as exc:  # noqa: BLE001 - this card fails, the batch goes on
        reason = failure_reason(exc)
        if transport_fault(exc):
            # the reader or the card went away: not the record's fault, nor (yet) the card's
            with contextlib.suppress(Exception):
                hand.finish()  # an image is saved as far as the card got; a reader's connection is closed
            if not watch.sent_write:
                db.finish(claim, "untouched", reason, stages, station=station)
                return Outcome(claim.record_index, "untouched", reason, stages)
            return Outcome(claim.record_index, "unsettled", reason, stages, claim.attempt)
        with contextlib.suppress(Exception):
            hand.finish()
        outcome = classify(exc, watch.accepted_data)
        db.finish(claim, outcome, reason, stages, station=station)
        return Outcome(claim.record_index, outcome, reason, stages)
    # an image was synced by its close (hand.finish): its finish needs no sync of its own (the next
    # card's start, or the run's end, makes it durable; a power cut in between leaves an open
    # attempt that reconciliation settles from the image). A reader's card leaves after this.
    db.finish(claim, "done", "", stages, station=station, durable=hand.kind != "image")
    return Outcome(claim.record_index, "done", "", stages)


class NotBlank(Exception):
    """The card is not blank (or refused the check) before any data was written: ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def in_session_check(job: Job, script: Any, executor: Executor, data: Any) -> bool:
    """Whether the blank check can run inside the script's first secure channel: the built-in
    interpreter, a card without a badge layout, and a script whose first steps are SELECTs of the
    ISD then ``open_scp03`` (nothing can be written before the session opens, and GET STATUS
    reaches the ISD through it). Otherwise the check opens its own session first."""
    from cardlab.personalizer.engine.cardstate import badge_layout

    try:
        from cardlab.personalizer import script as script_mod
    except ImportError:
        return False
    if executor is not script_mod.execute or badge_layout(job.profile, data) is not None:
        return False
    isd = job.gp.isd_aid.hex().upper()
    for step in getattr(script, "steps", ()):
        if step.foreach or step.when is not None or step.op is None:
            return False
        if step.op == "select":
            aid = step.args.get("aid")
            source = getattr(aid, "source", aid)
            if set(step.args) != {"aid"} or not isinstance(source, str) \
                    or source.upper() not in ("${PROFILE.CARD.ISD_AID}", isd):
                return False
            continue
        return step.op == "open_scp03" and tuple(step.expect) == ("9000",)
    return False


class _SessionCheck:
    """The blank check (:func:`check_blank`'s findings, in its words) through the script's first
    session, once: the CIN read in the session, the card's and the record's applications' life
    cycles by GET STATUS."""

    def __init__(self, job: Job, data: Any, cin: str) -> None:
        self.job, self.data, self.cin, self.done = job, data, cin, False

    def __call__(self, session: Any) -> None:
        if self.done:
            return
        self.done = True
        from cardlab.personalizer.engine.gp import session_cin, session_view

        try:
            cin = session_cin(session.send)
            view = session_view(session.send, self.job.gp, [a.aid for a in self.data.apps], cin)
        except Exception as exc:  # noqa: BLE001 - a refusal is the finding; a lost reader is a fault
            if transport_fault(exc):
                raise
            raise NotBlank(f"card refused before any data: {failure_reason(exc)}") from None
        reason = blank_verdict(view, self.job, self.data, self.cin)
        if reason:
            raise NotBlank(reason)


def check_blank(transmit: Callable[[bytes], bytes], job: Job, keystore: KeyStore, data: Any, cin: str) -> str:
    """Before the first write (issue 13): the card is still blank — the CIN claimed, a stock life
    cycle (OP_READY/INITIALIZED, GP §5.1.1), no instance of the record's applications (GET STATUS
    over SCP03, GP §11.4; a badge: no badge DF). Returns why not ('' when blank); the reader
    going away is raised (a transport fault)."""
    from cardlab.personalizer.engine.cardstate import badge_layout
    from cardlab.personalizer.engine.gp import inspect_card

    try:
        layout = badge_layout(job.profile, data)
        badge = None
        if layout is not None:
            from cardlab.personalizer.badge import read_badge

            badge = read_badge(transmit, layout, data.fields)
        aids = [] if layout is not None else [a.aid for a in data.apps]
        view, _ = inspect_card(transmit, job.gp, keystore, aids)
    except Exception as exc:  # noqa: BLE001 - a refusal is the finding; a lost reader is a fault
        if transport_fault(exc):
            raise
        return f"card refused before any data: {failure_reason(exc)}"
    return blank_verdict(view, job, data, cin, badge)


def blank_verdict(view: Any, job: Job, data: Any, cin: str, badge: Any = None) -> str:
    """Why the card seen in the session (:class:`~.gp.CardView`) is not a blank card for ``data``
    ('' when it is)."""
    from cardlab.personalizer.engine.cardstate import decide
    from cardlab.personalizer.engine.gp import CARD_LIFE

    if view.cin != cin:
        return f"card not as claimed: CIN {view.cin} in the session, {cin} identified"
    if decide(view, data, job.gp, badge=badge) == "untouched":
        return ""
    names = {v: k for k, v in CARD_LIFE.items()}
    # an AID as RID + PIX (ISO/IEC 7816-5 §5): a long run of digits would be masked as if a PAN
    held = ", ".join(f"RID {aid[:5].hex().upper()} PIX {aid[5:].hex().upper()}" for aid in view.apps)
    what = f"it holds an instance of {held}" if held else \
        "it holds a badge DF" if badge is not None and badge.df else \
        f"its life cycle is {names.get(view.life_cycle, f'{view.life_cycle:02X}')}"
    return f"card not blank: {what}"

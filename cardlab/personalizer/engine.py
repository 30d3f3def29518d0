"""The perso engine: run a prepared batch's perso script on cards, resumably.

One code path for every card: a card is whatever answers APDUs behind a PC/SC
reader name. Emulated cards (a stock directory of card images, see
:mod:`cardlab.personalizer.stock`) are put in a private emulated reader through the
pyscard plug-in (:mod:`cardlab.emulator.transports.pyscard_reader`); real cards are in
a real reader. Above :class:`PcscChannel` nothing knows the difference.

Per card (:func:`personalize_card`)::

    identify     SELECT ISD, GET DATA 45 (CIN) and 9F7F (CPLC) — before any session
    claim        job DB transaction: next pending record → in_progress, attempt row,
                 card row (CIN, CPLC hash, image or reader), audit "card start"
    script       cardlab.personalizer.script.execute(script, card data, transmit, key store)
                 — stops at the first unexpected SW (StepFailed)
    save         emulated: the image, atomically (and after every APDU that changed it)
    finish       job DB transaction: done / failed, stage timings, audit entries

A crash between *claim* and *finish* leaves an open attempt; the next run
reconciles it by reading the card (:func:`reconcile`): GET STATUS over SCP03
through the same channel and, for a badge (no GP application), its file
system (:func:`cardlab.personalizer.badge.read_badge`). See ``docs/perso-engine.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cardlab.cardspec import argtypes
from cardlab.personalizer.jobdb import JobDb, OpenAttempt, read_card_at, safe_reason
from cardlab.personalizer.stock import list_images

if TYPE_CHECKING:
    from cardlab.emulator import Card
    from cardlab.personalizer.badge import BadgeLayout, BadgeOnCard
    from cardlab.personalizer.batch import CardPersoData
    from cardlab.personalizer.keys import KeyStore

#: ``execute(script, card, transmit, keystore, *, profile=None, on_step=None)``
Executor = Callable[..., Any]

DEFAULT_ISD_AID = bytes.fromhex("A000000151000000")
SW_OK = 0x9000
#: application life cycle PERSONALIZED (GP §5.3.1 table 11-4)
APP_PERSONALIZED = 0x0F
CARD_LIFE = {"OP_READY": 0x01, "INITIALIZED": 0x07, "SECURED": 0x0F, "CARD_LOCKED": 0x7F, "TERMINATED": 0xFF}


class EngineError(RuntimeError):
    """Something that stops the run (not one card): message safe to print."""


class CardError(RuntimeError):
    """One card went wrong outside the script (transport, identity)."""


# ============================================================================ channel


class PcscChannel:
    """A connection to the card in a PC/SC reader (pyscard), by reader name.

    ``transmit(bytes) -> bytes`` (response data ‖ SW), with T=0 chaining done
    here: 61xx → GET RESPONSE, 6Cxx → the command again with Le = xx.
    """

    def __init__(self, reader: str) -> None:
        from smartcard.System import readers

        found = [r for r in readers() if str(r) == reader] or [r for r in readers() if reader in str(r)]
        if not found:
            raise CardError(f"no reader named {reader!r}")
        if len(found) > 1:
            raise CardError(f"reader name {reader!r} is ambiguous: {', '.join(str(r) for r in found)}")
        self.reader = str(found[0])
        self._conn = found[0].createConnection()
        self._conn.connect()

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self._conn.transmit(list(apdu))
        out = bytes(data)
        while sw1 == 0x61:
            more, sw1, sw2 = self._conn.transmit([apdu[0] & 0x03, 0xC0, 0x00, 0x00, sw2])
            out += bytes(more)
        if sw1 == 0x6C and len(apdu) >= 5:
            data, sw1, sw2 = self._conn.transmit(list(apdu[:-1]) + [sw2])
            out = bytes(data)
        return out + bytes((sw1, sw2))

    def atr(self) -> bytes:
        return bytes(self._conn.getATR())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.disconnect()


def card_present(reader: str) -> bool:
    """Whether a card answers in ``reader`` (used to wait for insertion and removal)."""
    try:
        PcscChannel(reader).close()
    except Exception:  # noqa: BLE001 - NoCardException, CardConnectionException, pcsc errors
        return False
    return True


# ============================================================================ card sources


@dataclass
class CardInHand:
    """The card a station is working on."""

    kind: str  # "image" | "reader"
    location: str  # image path or reader name
    channel: PcscChannel
    card_row: int | None = None
    #: called once the card is finished (saved / ejected)
    finish: Callable[[], None] = lambda: None


class CardSource(Protocol):
    kind: str

    def next_card(self, db: JobDb, station: str) -> CardInHand | None:
        """The next blank card, or ``None`` when there is none (stock used up,
        nothing pending, the operator stopped)."""

    def open(self, location: str) -> CardInHand | None:
        """The card at ``location`` again (reconciliation); ``None`` if gone."""

    def close(self) -> None: ...


def _quick_save(card: Card, path: Path) -> None:
    """Atomic replace of an image after each APDU that changed the card (a
    crash leaves either the old or the new state, as on a real card's
    EEPROM); the durable fsync'ed save comes at the end of the card."""
    from cardlab.emulator.image import dumps

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(card.state, compact=True))
    os.replace(tmp, path)


class ImageSource:
    """Emulated cards: card images in a stock directory, each loaded into a
    private emulated reader and used through :class:`PcscChannel`."""

    kind = "image"

    def __init__(self, directory: str | Path, *, reader_name: str | None = None) -> None:
        # absolute, so that the job database names each card image the same
        # whatever directory a later command (resume, certify) runs from
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise EngineError(f"{self.directory}: no such card stock directory")
        self.reader_name = reader_name or f"cardlab perso station {os.getpid()}"
        # the stock listing, read once and walked forward: an image passed over is used for good
        # (card rows are never given back while records are pending), so each claim looks only at
        # the images after the last one; the directory is read again when the walk reaches its
        # end (cards added to the stock during a run are found then)
        self._images: list[str] = []
        self._next = 0

    def _insert(self, path: Path) -> CardInHand:
        from cardlab.emulator import Card
        from cardlab.emulator.transports import pyscard_reader

        card = Card.load(path)
        card.on_commit = lambda c: _quick_save(c, path)
        pyscard_reader.insert(card, self.reader_name)
        channel = PcscChannel(self.reader_name)

        def finish() -> None:
            channel.close()
            card.save(path)  # durable: fsync file and directory
            pyscard_reader.remove(self.reader_name)

        return CardInHand("image", str(path), channel, finish=finish)

    def next_card(self, db: JobDb, station: str) -> CardInHand | None:
        if not db.pending_left():
            return None
        claimed = db.claim_image(station, self._images[self._next:])
        if claimed is None:
            self._images, self._next = [str(p) for p in list_images(self.directory)], 0
            claimed = db.claim_image(station, self._images)
            if claimed is None:
                return None
        row, path = claimed
        self._next = self._images.index(path, self._next) + 1
        try:
            hand = self._insert(Path(path))
        except Exception as exc:  # noqa: BLE001 - a broken image is one unusable card
            db.release_card(row, "unusable", f"image cannot be loaded: {type(exc).__name__}")
            return self.next_card(db, station)
        hand.card_row = row
        return hand

    def open(self, location: str) -> CardInHand | None:
        path = Path(location)
        if not path.exists():
            return None
        return self._insert(path)

    def close(self) -> None:
        from cardlab.emulator.transports import pyscard_reader

        with contextlib.suppress(Exception):
            pyscard_reader.remove(self.reader_name)


class ReaderSource:
    """A real (or any PC/SC) reader: the next card is the card in the reader.

    The station waits for a card to be inserted (polling every
    ``poll`` seconds, up to ``timeout`` seconds per card, ``None`` = forever),
    and after each card, when ``wait_removal`` is set, for its removal — so
    the operator (or a card feeder) swaps cards between two runs of the script.
    """

    kind = "reader"

    def __init__(
        self,
        reader: str,
        *,
        timeout: float | None = None,
        poll: float = 0.25,
        wait_removal: bool = True,
        say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    ) -> None:
        self.reader = reader
        self.timeout = timeout
        self.poll = poll
        self.wait_removal = wait_removal
        self.say = say

    def _wait(self, present: bool) -> bool:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        told = False
        while card_present(self.reader) != present:
            if not told:
                self.say(f"{'insert a card into' if present else 'remove the card from'} reader {self.reader!r}")
                told = True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(self.poll)
        return True

    def next_card(self, db: JobDb, station: str) -> CardInHand | None:
        if not db.pending_left() or not self._wait(True):
            return None
        channel = PcscChannel(self.reader)

        def finish() -> None:
            channel.close()
            if self.wait_removal:
                self._wait(False)

        return CardInHand("reader", self.reader, channel, finish=finish)

    def open(self, location: str) -> CardInHand | None:
        if not card_present(location):
            return None
        return CardInHand("reader", location, PcscChannel(location))

    def close(self) -> None:
        pass


# ============================================================================ card operations


def _sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0


@dataclass(frozen=True)
class Identity:
    cin: str  # hex
    cplc_hash: str  # SHA-256 of the CPLC, hex (the CPLC itself stays off the logs)


def read_identity(transmit: Callable[[bytes], bytes], isd_aid: bytes) -> Identity:
    """SELECT the ISD, GET DATA 45 (CIN) and 9F7F (CPLC), no secure channel (GP §11.3)."""
    from cardlab.cardspec import tlv

    resp = transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(isd_aid))) + isd_aid + b"\x00")
    if _sw(resp) != SW_OK:
        raise CardError(f"SELECT ISD: SW {_sw(resp):04X}")
    values: dict[int, bytes] = {}
    for tag in (0x45, 0x9F7F):
        resp = transmit(bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00)))
        if _sw(resp) == SW_OK:
            found = tlv.find(resp[:-2], tag)
            values[tag] = found.value if found is not None else resp[:-2]
    if 0x45 not in values and 0x9F7F not in values:
        raise CardError("the card gives neither its CIN (45) nor its CPLC (9F7F)")
    cplc = values.get(0x9F7F, b"")
    return Identity(values.get(0x45, b"").hex().upper(), hashlib.sha256(cplc).hexdigest())


@dataclass(frozen=True)
class GpAccess:
    """What the engine needs to open SCP03 itself (reconciliation)."""

    isd_aid: bytes = DEFAULT_ISD_AID
    kmc: str = "KMC"
    scheme: str = "KDF3"
    key_version: int = 0x30
    target_life_cycle: str | None = "SECURED"


def gp_access(batch: Path) -> GpAccess:
    """The card details of the batch's issuer profile (``card:`` section)."""
    path = batch / "profile.yaml"
    if not path.exists():
        return GpAccess()
    try:
        from cardlab.personalizer.profile import load_profile

        card = load_profile(path).card
        return GpAccess(card.isd_aid, card.kmc, card.diversification.upper(), card.key_version,
                        card.target_life_cycle.upper())
    except Exception:  # noqa: BLE001 - another profile kind (e.g. the badge): read its card section
        import yaml

        doc = yaml.safe_load(path.read_text()) or {}
        card_doc = doc.get("card") or {} if isinstance(doc, dict) else {}
        if not isinstance(card_doc, dict):
            return GpAccess()
        kv = card_doc.get("key_version", 0x30)
        target = card_doc.get("target_life_cycle")
        return GpAccess(
            bytes.fromhex(str(card_doc.get("isd_aid", DEFAULT_ISD_AID.hex()))),
            str(card_doc.get("kmc", "KMC")),
            str(card_doc.get("diversification", "kdf3")).upper(),
            int(kv, 16) if isinstance(kv, str) else int(kv),
            str(target).upper() if target else None,
        )


@dataclass(frozen=True)
class CardView:
    """A card's GP state as GET STATUS shows it."""

    cin: str
    life_cycle: int
    apps: dict[bytes, int]  # AID → life cycle, for the AIDs asked about


def open_session(transmit: Callable[[bytes], bytes], gp: GpAccess, keystore: KeyStore, level: int = 0x01) -> Any:
    """SCP03 with the card's keys diversified from the KMC by the KDD it reports."""
    from cardlab.cardspec.scp03 import HostSession, StaticKeys

    resp = transmit(b"\x80\xCA\x00\xCF\x00")
    if _sw(resp) == SW_OK and len(resp) >= 12:
        kdd = resp[-12:-2]
    else:  # no GET DATA CF: INITIALIZE UPDATE tells the KDD too
        resp = transmit(bytes((0x80, 0x50, gp.key_version, 0x00, 0x08)) + os.urandom(8) + b"\x00")
        if _sw(resp) != SW_OK or len(resp) < 12:
            raise CardError(f"INITIALIZE UPDATE: SW {_sw(resp):04X}")
        kdd = resp[:10]
    keys = keystore.diversify_card_keys(gp.kmc, gp.scheme, kdd)
    hs = HostSession(transmit, StaticKeys(keys.enc, keys.mac, keys.dek, gp.key_version))
    hs.open(level)
    return hs


def inspect_card(
    transmit: Callable[[bytes], bytes], gp: GpAccess, keystore: KeyStore, aids: Sequence[bytes]
) -> tuple[CardView, Any]:
    """Read the card's life cycle and the life cycles of ``aids`` (GET STATUS
    P1 80 and 40, TLV format, GP §11.4) inside an SCP03 session."""
    from cardlab.cardspec import tlv

    ident = read_identity(transmit, gp.isd_aid)
    hs = open_session(transmit, gp, keystore)

    def status(p1: int, aid: bytes) -> int | None:
        resp = hs.send(bytes((0x80, 0xF2, p1, 0x02, 2 + len(aid), 0x4F, len(aid))) + aid + b"\x00")
        if _sw(resp) == 0x6A88:
            return None
        if _sw(resp) not in (SW_OK, 0x6310):
            raise CardError(f"GET STATUS {p1:02X}: SW {_sw(resp):04X}")
        for item in tlv.parse(resp[:-2]):
            if item.tag == 0xE3:
                inner = tlv.to_dict(item.value)
                if inner.get(0x4F) == aid and 0x9F70 in inner:
                    return inner[0x9F70][0]
        return None

    life = status(0x80, gp.isd_aid)
    if life is None:
        raise CardError("GET STATUS: the card does not list its ISD")
    apps = {aid: lc for aid in aids if (lc := status(0x40, aid)) is not None}
    return CardView(ident.cin, life, apps), hs


# ============================================================================ one card


@dataclass
class Outcome:
    record_index: int
    status: str  # done | failed
    reason: str = ""
    stages: list[tuple[str, float]] = field(default_factory=list)


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


def _is_step_failed(exc: BaseException) -> bool:
    try:
        from cardlab.personalizer import script as script_mod
    except ImportError:
        script_mod = None  # type: ignore[assignment]
    if script_mod is not None and isinstance(exc, script_mod.StepFailed):
        return True
    return hasattr(exc, "step_name") and hasattr(exc, "sw")


def failure_reason(exc: BaseException) -> str:
    """A failure reason with no secret in it: for a StepFailed the step and
    the status words; otherwise the exception type and its (PAN-masked)
    message."""
    if _is_step_failed(exc):
        index = getattr(exc, "step_index", "?")
        name = getattr(exc, "step_name", "?")
        sw = getattr(exc, "sw", None)
        expected = getattr(exc, "expected", None)
        sw_text = f"{sw:04X}" if isinstance(sw, int) else str(sw)
        if isinstance(expected, (list, tuple, set, frozenset)):
            exp_text = " or ".join(f"{e:04X}" if isinstance(e, int) else str(e) for e in expected)
        else:
            exp_text = f"{expected:04X}" if isinstance(expected, int) else str(expected)
        return safe_reason(f"step {index} ({name}): SW {sw_text}, expected {exp_text}")
    sw = getattr(exc, "sw", None)
    extra = f" (SW {sw:04X})" if isinstance(sw, int) else ""
    return safe_reason(f"{type(exc).__name__}: {exc}{extra}")


@dataclass
class Job:
    """What every station of a run shares (picklable into workers by fork)."""

    batch: Path
    script_path: Path
    keys_spec: str
    gp: GpAccess
    executor: Executor | None = None
    profile: Any = None


def _load_script(job: Job) -> tuple[Any, Executor]:
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
    """Identify the card, claim a record, run the script, record the result.
    ``None`` when there was nothing to do (no pending record, card refused)."""
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
    lap("claim")
    data = read_card_at(job.batch, claim.offset)
    try:
        step_count = 0

        def on_step(*args: Any, **kwargs: Any) -> None:
            nonlocal step_count
            step_count += 1
            lap(_step_name(args, kwargs, step_count))

        executor(script, data, hand.channel.transmit, keystore, profile=job.profile, on_step=on_step)
        lap("script")
        hand.finish()
        lap("save")
    except Exception as exc:  # noqa: BLE001 - this card fails, the batch goes on
        reason = failure_reason(exc)
        with contextlib.suppress(Exception):
            hand.finish()
        db.finish(claim, "failed", reason, stages, station=station)
        return Outcome(claim.record_index, "failed", reason, stages)
    db.finish(claim, "done", "", stages, station=station)
    return Outcome(claim.record_index, "done", "", stages)


# ============================================================================ reconciliation


def decide(view: CardView, data: CardPersoData, gp: GpAccess, blank_life_cycles: Sequence[int] = (0x01, 0x07),
           *, badge: BadgeOnCard | None = None) -> str:
    """What the card's state says about an interrupted attempt:

    * ``done`` — every application of the record is there and PERSONALIZED
      (a badge: its files hold the record's data and the completion marker)
      and the card reached the profile's target life cycle (if any);
    * ``untouched`` — none of the record's applications (a badge: no badge
      DF) is there and the card is still in a stock life cycle: nothing was
      written;
    * ``foreign`` — (badges) the card holds a badge that is not the record's;
    * ``partial`` — anything in between.

    ``badge`` is the file-system read-back of a badge record: a badge installs
    no GP application, so GET STATUS alone would call a finished badge on an
    OP_READY card untouched.
    """
    target = CARD_LIFE.get(gp.target_life_cycle or "", None)
    if badge is not None:
        state = badge.state()
        if state == "complete" and (target is None or view.life_cycle == target):
            return "done"
        if state == "absent" and view.life_cycle in blank_life_cycles:
            return "untouched"
        return "foreign" if state == "foreign" else "partial"
    aids = [app.aid for app in data.apps]
    complete = all(view.apps.get(aid, 0) & 0x7F == APP_PERSONALIZED for aid in aids)
    if complete and (target is None or view.life_cycle == target):
        return "done"
    if not view.apps and view.life_cycle in blank_life_cycles:
        return "untouched"
    return "partial"


def _badge_layout(job: Job, data: CardPersoData) -> BadgeLayout | None:
    """The badge layout when the batch is a badge batch (``None`` for EMV)."""
    from cardlab.personalizer.badge import BadgeLayout, is_badge_profile

    if not is_badge_profile(job.profile) or "badge_number" not in data.fields:
        return None
    return BadgeLayout.from_profile(job.profile)


def reconcile_one(job: Job, db: JobDb, source: CardSource, att: OpenAttempt, keystore: KeyStore) -> str:
    """Settle one attempt a crash left open, by reading the card."""
    data = read_card_at(job.batch, att.offset)
    try:
        hand = source.open(att.location)
    except Exception as exc:  # noqa: BLE001
        hand = None
        why = failure_reason(exc)
    else:
        why = "card not available"
    if hand is None:
        db.resolve(att, "failed", f"cannot reconcile: {why} at {att.location}; check the card by hand")
        return "failed"
    try:
        layout = _badge_layout(job, data)
        badge = None
        if layout is not None:
            from cardlab.personalizer.badge import read_badge

            # plain reads (no session yet): the badge files are readable without one
            badge = read_badge(hand.channel.transmit, layout, data.fields)
        aids = [] if layout is not None else [a.aid for a in data.apps]
        view, hs = inspect_card(hand.channel.transmit, job.gp, keystore, aids)
        if att.cin is not None and view.cin != att.cin:
            db.resolve(att, "failed", f"the card at {att.location} is not the card the record was started on "
                                      f"(CIN {view.cin}, expected {att.cin})", card_status="spoiled")
            return "failed"
        verdict = decide(view, data, job.gp, badge=badge)
        what = "the record's badge, complete (marker written)" if layout is not None \
            else "the record's applications, personalized"
        if verdict == "done":
            db.resolve(att, "done", f"reconciled: the card holds {what}")
            return "done"
        if verdict == "untouched":
            db.resolve(att, "redo", "reconciled: the card was not written; the record goes to another card run")
            return "redo"
        if verdict == "foreign":
            db.resolve(att, "failed", "the card holds a badge that is not this record's; not rolled back, "
                                      "check the card by hand")
            return "failed"
        # partial: roll back — delete what the record left so no part of it stays on the card
        failed_delete = []
        if layout is not None:
            from cardlab.personalizer.badge import rollback_apdus

            if badge is not None and badge.df:
                for apdu in rollback_apdus(layout):
                    resp = hs.send(apdu)
                    if _sw(resp) != SW_OK:
                        failed_delete.append(f"{apdu[:4].hex().upper()} SW {_sw(resp):04X}")
                        break
            undone = "badge DF deleted" if badge is not None and badge.df else "no badge DF to delete"
        else:
            for aid in view.apps:
                resp = hs.send(bytes((0x80, 0xE4, 0x00, 0x00, 2 + len(aid), 0x4F, len(aid))) + aid + b"\x00")
                if _sw(resp) != SW_OK:
                    failed_delete.append(f"{aid.hex().upper()} SW {_sw(resp):04X}")
            undone = "instances deleted"
        if failed_delete:
            db.resolve(att, "failed", "partially personalized card could not be rolled back: "
                                      + ", ".join(failed_delete))
            return "failed"
        db.resolve(att, "spoiled", f"reconciled: partially personalized; {undone}, card set aside, "
                                   "the record is redone on a fresh card")
        return "spoiled"
    except Exception as exc:  # noqa: BLE001
        db.resolve(att, "failed", f"cannot reconcile: {failure_reason(exc)}")
        return "failed"
    finally:
        with contextlib.suppress(Exception):
            hand.finish()


def reconcile(job: Job, db: JobDb, source: CardSource, keystore: KeyStore) -> dict[str, int]:
    counts: dict[str, int] = {}
    db.forget_claims()
    for att in db.open_attempts():
        result = reconcile_one(job, db, source, att, keystore)
        counts[result] = counts.get(result, 0) + 1
    return counts


# ============================================================================ stations


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the parent dies, so a killed run never
    leaves stations writing cards behind the next run's back."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def station_loop(
    job: Job,
    source: CardSource,
    station: str,
    report: Callable[[Outcome], None],
    *,
    limit: int | None = None,
) -> None:
    """Personalize cards until the source or the pending records run out."""
    from cardlab.personalizer.keys import open_keystore

    script, executor = _load_script(job)
    done = 0
    with JobDb(job.batch / "jobs.sqlite") as db, open_keystore(job.keys_spec) as keystore:
        try:
            while limit is None or done < limit:
                hand = source.next_card(db, station)
                if hand is None:
                    break
                outcome = personalize_card(job, db, hand, station, script, executor, keystore)
                if outcome is not None:
                    done += 1
                    report(outcome)
        finally:
            source.close()


def _worker(job: Job, source: CardSource, station: str, queue: Any, parent: int) -> None:
    _die_with_parent()
    if os.getppid() != parent:
        return

    def report(o: Outcome) -> None:
        queue.put((station, o.record_index, o.status, o.reason, o.stages))

    try:
        station_loop(job, source, station, report)
    except Exception as exc:  # noqa: BLE001
        queue.put((station, -1, "error", failure_reason(exc), []))


# ============================================================================ the run


@contextlib.contextmanager
def batch_lock(batch: Path, timeout: float = 30.0) -> Iterator[None]:
    """One ``perso run`` per batch at a time (an flock on ``BATCH/jobs.lock``)."""
    fd = os.open(batch / "jobs.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(f"{batch}: another perso run holds the batch") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


@dataclass
class RunReport:
    input: int
    counts: dict[str, int]
    unaccounted: list[tuple[int, str, str]]
    failures: list[tuple[int, str, str, str]]
    reconciled: dict[str, int]
    seconds: float
    cards_this_run: int
    stages: list[tuple[str, int, float]]
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if not self.failures and not self.unaccounted and not self.errors else 1


def run(
    batch: str | Path,
    *,
    cards: str | Path | None = None,
    readers: Sequence[str] = (),
    stations: int = 1,
    script: str | Path | None = None,
    keys: str | None = None,
    executor: Executor | None = None,
    progress: bool = False,
    reader_timeout: float | None = None,
    wait_removal: bool = True,
    limit: int | None = None,
) -> RunReport:
    """Run (or resume) a batch. Exactly one of ``cards`` (a stock directory)
    and ``readers`` (PC/SC reader names, one station each)."""
    from cardlab.personalizer.batch import read_manifest
    from cardlab.personalizer.keys import open_keystore

    batch = Path(batch)
    manifest = read_manifest(batch)
    if (cards is None) == (not readers):
        raise EngineError("give either a card stock directory or reader names")
    script_path = Path(script) if script else batch / "script.yaml"
    if executor is None and not script_path.exists():
        raise EngineError(f"{script_path}: no perso script")
    keys_spec = keys or os.environ.get("CARDLAB_KEYS") or str(manifest.get("keys") or "")
    if not keys_spec:
        raise EngineError("no key store: give --keys (or set CARDLAB_KEYS)")
    profile = None
    if (batch / "profile.yaml").exists():
        import yaml

        with contextlib.suppress(Exception):
            profile = yaml.safe_load((batch / "profile.yaml").read_text())
    job = Job(batch, script_path, keys_spec, gp_access(batch), executor, profile)

    def make_source(k: int) -> CardSource:
        if cards is not None:
            return ImageSource(cards, reader_name=f"cardlab perso station {k}")
        return ReaderSource(readers[k], timeout=reader_timeout, wait_removal=wait_removal)

    n = stations if cards is not None else len(readers)
    started = time.perf_counter()
    errors: list[str] = []
    processed = 0
    with batch_lock(batch):
        with JobDb(batch / "jobs.sqlite") as db:
            db.load_batch(batch)
            with open_keystore(keys_spec) as keystore:
                if cards is not None:
                    reconciled = reconcile(job, db, ImageSource(cards, reader_name="cardlab perso reconcile"),
                                           keystore)
                else:
                    reconciled = {}
                    for reader in readers:
                        atts = [a for a in db.open_attempts() if a.location == reader]
                        src = ReaderSource(reader, timeout=0, wait_removal=False)
                        for att in atts:
                            r = reconcile_one(job, db, src, att, keystore)
                            reconciled[r] = reconciled.get(r, 0) + 1
            todo = len(db.unaccounted())
        bar = _Progress(todo, progress)
        try:
            if n <= 1:
                def report(o: Outcome) -> None:
                    nonlocal processed
                    processed += 1
                    bar.advance(o)

                station_loop(job, make_source(0), "station-1", report, limit=limit)
            else:
                ctx = multiprocessing.get_context("fork")
                queue = ctx.Queue()
                procs = [ctx.Process(target=_worker, args=(job, make_source(k), f"station-{k + 1}", queue, os.getpid()),
                                     daemon=True) for k in range(n)]
                for p in procs:
                    p.start()
                while any(p.is_alive() for p in procs) or not queue.empty():
                    try:
                        station, index, status, reason, stages = queue.get(timeout=0.2)
                    except Exception:  # noqa: BLE001 - queue.Empty
                        continue
                    if status == "error":
                        errors.append(f"{station}: {reason}")
                        continue
                    processed += 1
                    bar.advance(Outcome(index, status, reason, stages))
                for p in procs:
                    p.join()
                    if p.exitcode not in (0, None):
                        errors.append(f"station process {p.pid} ended with code {p.exitcode}")
        finally:
            bar.close()
        with JobDb(batch / "jobs.sqlite") as db:
            pending = db.counts().get("pending", 0)
            if cards is not None and pending and not errors:
                stock = ImageSource(cards)
                if all(db.image_used(str(p)) for p in list_images(stock.directory)):
                    errors.append(f"card stock used up: {pending} records still pending; add blank cards to "
                                  f"{stock.directory} and run the batch again to resume")
            return RunReport(db.input_count(), db.counts(), db.unaccounted(), db.failures(), reconciled,
                             time.perf_counter() - started, processed, db.stage_summary(), errors)


class _Progress:
    """A rich progress bar (when asked and on a terminal-like stream)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._p: Any = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("perso"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[rate]} cards/s  failed {task.fields[failed]}"),
                               TimeRemainingColumn(), transient=False)
            self._task = self._p.add_task("perso", total=total, rate="-", failed=0)
            self._p.start()
        self._start = time.perf_counter()
        self._n = 0
        self._failed = 0

    def advance(self, o: Outcome) -> None:
        self._n += 1
        self._failed += o.status == "failed"
        if self._p is not None:
            rate = self._n / max(time.perf_counter() - self._start, 1e-9)
            self._p.update(self._task, advance=1, rate=f"{rate:.1f}", failed=self._failed)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


# ============================================================================ command line


def _print_report(rep: RunReport, out: Any) -> None:
    c = rep.counts
    rate = rep.cards_this_run / rep.seconds if rep.seconds > 0 else 0.0
    out.print(f"input {rep.input}: done {c['done']}, failed {c['failed']}, rejected {c['rejected']}, "
              f"pending {c['pending']}, in progress {c['in_progress']}")
    if rep.reconciled:
        out.print("reconciled after a crash: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.reconciled.items())))
    out.print(f"this run: {rep.cards_this_run} cards in {rep.seconds:.2f} s ({rate:.1f} cards/s)")
    if rep.stages:
        from rich.table import Table

        table = Table(title="time per stage (all runs)")
        for col in ("stage", "times", "total s", "mean ms", "per s"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for name, count, total in rep.stages:
            mean = total / count if count else 0.0
            table.add_row(name, str(count), f"{total:.2f}", f"{mean * 1000:.2f}", f"{1 / mean:.1f}" if mean else "-")
        out.print(table)
    for index, card_id, pan, reason in rep.failures:
        out.print(f"failed: record {index} (card {card_id}, {pan}): {reason}")
    if rep.unaccounted:
        listed = ", ".join(f"{i} ({s})" for i, _, s in rep.unaccounted[:50])
        more = f" and {len(rep.unaccounted) - 50} more" if len(rep.unaccounted) > 50 else ""
        out.print(f"[bold red]{len(rep.unaccounted)} records unaccounted for[/]: {listed}{more}")
    for err in rep.errors:
        out.print(f"[red]error[/]: {err}")


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    out = Console(stderr=False)
    try:
        rep = run(args.batch, cards=args.cards, readers=args.reader or (), stations=args.stations,
                  script=args.script, keys=args.keys, progress=not args.quiet,
                  reader_timeout=args.card_timeout, wait_removal=not args.no_wait_removal)
    except EngineError as exc:
        out.print(f"[red]error[/]: {safe_reason(str(exc))}")
        return 2
    _print_report(rep, out)
    return rep.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    out = Console()
    batch = Path(args.batch)
    if not (batch / "jobs.sqlite").exists():
        out.print(f"{batch}: not run yet (no jobs.sqlite)")
        return 1
    with JobDb(batch / "jobs.sqlite") as db:
        c = db.counts()
        total = sum(c.values())
        out.print(f"input {db.input_count()}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
        for index, card_id, pan, reason in db.failures():
            out.print(f"failed: record {index} (card {card_id}, {pan}): {reason}")
        left = db.unaccounted()
        if left:
            out.print(f"{len(left)} records not finished: " + ", ".join(f"{i} ({s})" for i, _, s in left[:50]))
        problems = db.check()
        for p in problems:
            out.print(f"[red]inconsistent[/]: {p}")
        head = db.meta("audit_head") or "0:"
        out.print(f"audit head: entry {head.replace(':', ' hash ')}")
        ok = total == db.input_count() and not left and not db.failures() and not problems
    return 0 if ok else 1


def cmd_audit(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cardlab.personalizer import audit

    out = Console()
    path = Path(args.batch) / "jobs.sqlite"
    if not path.exists():
        out.print(f"{args.batch}: no job database")
        return 2
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not args.verify:
            for seq, when, event, details in db.execute("SELECT seq, time, event, details FROM audit ORDER BY seq"):
                out.print(f"{seq:6d} {when} {event:12s} {details}", markup=False, highlight=False)
            return 0
        result = audit.verify(db)
    finally:
        db.close()
    if result.ok:
        out.print(f"audit chain verified: {result.entries} entries, head {result.head}")
        return 0
    for p in result.problems:
        out.print(f"[red]audit[/]: {p}")
    out.print(f"audit chain [bold red]NOT[/] verified ({len(result.problems)} problems, {result.entries} entries)")
    return 1


def cmd_stock(args: argparse.Namespace) -> int:
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.stock import make_stock

    kmc, scheme = args.kmc, args.diversification
    isd_aid, kvn = args.isd_aid, args.key_version
    atr = None
    if args.profile:  # the card stock the profile's GP details expect (ISD AID, KMC, scheme, key version)
        from cardlab.personalizer.profile import ProfileError, load_card_details

        try:
            card = load_card_details(args.profile)  # EMV or badge profile
        except (ProfileError, OSError) as exc:
            print(f"cardlab perso stock: {exc}", file=sys.stderr)
            return 2
        kmc = args.kmc or card.kmc
        scheme = args.diversification or card.diversification.upper()
        isd_aid = isd_aid if isd_aid is not None else card.isd_aid
        kvn = kvn if kvn is not None else card.key_version
        atr = card.atr  # the product ATR the profile names (card.atr / card.protocol)
    with open_keystore(args.keys) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys(kmc or "KMC", scheme or "KDF3", kdd)
            return k.enc, k.mac, k.dek

        made = make_stock(args.dir, args.count, div, (scheme or "KDF3").lower(), lifecycle=args.lifecycle,
                          isd_aid=isd_aid, kvn=0x30 if kvn is None else kvn, atr=atr)
    print(f"{len(made)} blank cards in {args.dir}")
    return 0





def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="personalize a prepared batch (resumes after a crash)")
    p.add_argument("batch", help="batch directory (from perso prepare)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cards", metavar="DIR", help="card stock directory of emulated card images")
    src.add_argument("--reader", metavar="NAME", action="append",
                     help="PC/SC reader (repeat for several stations, one per reader)")
    p.add_argument("--stations", type=int, default=1, help="parallel stations (worker processes) for --cards")
    p.add_argument("--script", metavar="PATH", help="perso script (default BATCH/script.yaml)")
    p.add_argument("--keys", metavar="K", help="key store (path or pkcs11:token=…); default $CARDLAB_KEYS")
    p.add_argument("--card-timeout", type=float, default=None,
                   help="with --reader: seconds to wait for a card before the station stops (default: forever)")
    p.add_argument("--no-wait-removal", action="store_true", help="with --reader: do not wait for card removal")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a, *_: cmd_run(a))

    s = sub.add_parser("status", help="counts and failures of a batch's job database")
    s.add_argument("batch")
    s.set_defaults(func=lambda a, *_: cmd_status(a))

    a = sub.add_parser("audit", help="show or verify a batch's audit chain")
    a.add_argument("batch")
    a.add_argument("--verify", action="store_true", help="verify the hash chain")
    a.set_defaults(func=lambda a, *_: cmd_audit(a))

    k = sub.add_parser("stock", help="make blank emulated cards (card stock) with ISD keys from the KMC")
    k.add_argument("dir")
    k.add_argument("--count", type=int, required=True)
    k.add_argument("--keys", required=True, metavar="K", help="key store holding the KMC")
    k.add_argument("--profile", metavar="P.yaml",
                   help="issuer profile: ISD AID, KMC, diversification and key version from its card section")
    k.add_argument("--kmc", help="key store name of the KMC (default: the profile's, else KMC)")
    k.add_argument("--diversification", choices=("EMV", "VISA2", "KDF3"),
                   help="card key diversification (default: the profile's, else KDF3)")
    k.add_argument("--isd-aid", type=argtypes.aid, help="ISD AID, hex (default: the profile's, else A000000151000000)")
    k.add_argument("--key-version", type=argtypes.key_version, help="ISD key version number, hex (default: the profile's, else 30)")
    k.add_argument("--lifecycle", default="OP_READY", choices=("OP_READY", "INITIALIZED"))
    k.set_defaults(func=lambda a, *_: cmd_stock(a))

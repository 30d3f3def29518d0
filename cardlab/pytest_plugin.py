"""cardlab's pytest plugin: test your own perso scripts and issuer profiles.

Registered as the ``cardlab`` ``pytest11`` entry point, so it is active in any
project where cardlab is installed. It adds (``docs/testing-kit.md``):

* ``blank_card`` — a fresh emulated :class:`emulator.Card`, powered on;
* ``card_reader`` — a :class:`CardReader`: the blank emulated card by default,
  or the card in the PC/SC reader named by ``--cardlab-reader NAME``;
* ``personalized_card`` — a factory ``(profile, record, keystore, *, script)``
  → :class:`PersonalizedCard`: the record validated and prepared by the real
  data preparation (:class:`cardlab.personalizer.prepare.CardPreparer`) and the perso
  script run by the real interpreter (:func:`cardlab.personalizer.script.execute`) on
  an emulated blank card whose GP keys come from the profile's KMC — or on the
  card in the reader with ``--cardlab-reader``;
* ``terminal`` — a factory ``terminal(card=None)`` → :class:`Terminal`: the
  independent tester bound to a card (runs an EMV transaction, certifies).

A profile is a path or the profile document itself (a mapping, as
:func:`cardlab.strategies.profile_variations` draws it). Profiles and key stores are
cached by their content, never by their path alone: a file rewritten in place is read
anew. When a test fails, the transactions its terminals ran are attached to its
report as the section "cardlab transaction trace" (the teaching trace, PANs masked).

Importing this module costs nothing: cardlab's card, personalizer, tester and
hypothesis are imported only by the fixtures that use them, so unrelated test
suites collect as fast as without the plugin.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from cardlab.emulator import Card
    from cardlab.personalizer.batch import CardPersoData
    from cardlab.personalizer.keys import KeyStore
    from cardlab.personalizer.prepare import CardPreparer
    from cardlab.personalizer.records import Record
    from cardlab.personalizer.script import ScriptResult
    from cardlab.tester.certify import CardReport
    from cardlab.tester.state import TransactionState

__all__ = [
    "CardReader",
    "EmulatedReader",
    "PcscReader",
    "PersonalizedCard",
    "Personalizer",
    "RecordRejected",
    "Terminal",
    "default_script",
]


def default_script() -> Path:
    """cardlab's EMV CPS perso script (``vectors/scripts/emv-cps.yaml``, installed with cardlab)."""
    from .samples import vectors_dir

    path = vectors_dir() / "scripts" / "emv-cps.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no default perso script {path}: pass script=PATH")
    return path


def _content_key(path: Path) -> str:
    """A cache key that changes when the file does: its resolved path and the SHA-256 of its bytes."""
    return f"{path.resolve()}:{hashlib.sha256(path.read_bytes()).hexdigest()}"


# =========================================================================== options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cardlab", "cardlab smart-card testing kit")
    group.addoption(
        "--cardlab-reader",
        metavar="NAME",
        default=None,
        help="run cardlab fixtures (card_reader, personalized_card, terminal) against the card in this "
        "PC/SC reader (name or prefix) instead of an emulated card. Default: emulated.",
    )
    group.addoption(
        "--cardlab-terminal",
        metavar="PATH",
        default=None,
        help="terminal profile (YAML) the terminal fixture uses for transactions "
        "(default: cardlab's default terminal profile).",
    )
    group.addoption(
        "--cardlab-today",
        metavar="YYYY-MM-DD",
        default=None,
        help="the date record validation, data preparation and certification take as today (default: today).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cardlab_emulated_only: skip this test when --cardlab-reader is given")
    # pyemv (the tester's 3DES oracle) uses cryptography's deprecated TripleDES location: the
    # warning is about pyemv, not about the user's code, so it stays out of their runs
    config.addinivalue_line("filterwarnings", "ignore:.*TripleDES.*")


#: per test item: the transactions its terminals ran (for the report section of a failing test)
_TRANSACTIONS = pytest.StashKey[list["TransactionState"]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome: Any = yield
    report = outcome.get_result()
    states = item.stash.get(_TRANSACTIONS, [])
    if report.when != "call" or not report.failed or not states:
        return
    from cardlab.tester.trace import render_text

    shown = states[-3:]
    texts = [f"-- transaction {len(states) - len(shown) + i + 1} of {len(states)} --\n{render_text(st)}"
             for i, st in enumerate(shown)]  # fmt: skip
    report.sections.append(("cardlab transaction trace", "\n".join(texts)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--cardlab-reader") is None:
        return
    skip = pytest.mark.skip(reason="emulated card only (--cardlab-reader given)")
    for item in items:
        if item.get_closest_marker("cardlab_emulated_only") is not None:
            item.add_marker(skip)


# =========================================================================== readers


class CardReader(Protocol):
    """Where a test's card is: an emulated card or a card in a PC/SC reader."""

    name: str
    #: the emulated card (``None`` for a real card)
    card: Card | None

    def transmit(self, apdu: bytes) -> bytes:
        """Command APDU → response data ‖ SW1 SW2."""
        ...

    def atr(self) -> bytes: ...

    def reset(self) -> bytes:
        """Power the card off and on (warm reset); returns the ATR."""
        ...

    def close(self) -> None: ...


class EmulatedReader:
    """An emulated card as a reader (no PC/SC in between)."""

    def __init__(self, card: Card, name: str = "cardlab emulated card") -> None:
        self.name = name
        self.card: Card | None = card
        self._atr = card.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        assert self.card is not None
        return self.card.transmit(bytes(apdu))

    def atr(self) -> bytes:
        return self._atr

    def reset(self) -> bytes:
        assert self.card is not None
        self._atr = self.card.power_on()
        return self._atr

    def close(self) -> None:
        pass


class PcscReader:
    """The card in a PC/SC reader (pyscard), chosen by name or name prefix."""

    def __init__(self, name: str) -> None:
        from smartcard.System import readers

        try:
            available = list(readers())
        except Exception as exc:  # noqa: BLE001 - no PC/SC service: no readers
            raise LookupError(f"no PC/SC reader named {name!r} (PC/SC: {exc})") from None
        found = [r for r in available if str(r) == name] or [r for r in available if str(r).startswith(name)]
        if not found:
            raise LookupError(f"no PC/SC reader named {name!r} (readers: {[str(r) for r in available]})")
        self.name = str(found[0])
        self.card: Card | None = None
        self._conn: Any = found[0].createConnection()
        self._conn.connect()

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self._conn.transmit(list(apdu))
        return bytes(data) + bytes((sw1, sw2))

    def atr(self) -> bytes:
        return bytes(self._conn.getATR())

    def reset(self) -> bytes:
        self._conn.reconnect()
        return self.atr()

    def close(self) -> None:
        self._conn.disconnect()


# =========================================================================== personalization


class RecordRejected(ValueError):
    """The record did not pass validation or data preparation; ``field`` names
    the field (the message holds no PIN and no full PAN)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class PersonalizedCard:
    """A card personalized from ``profile`` and ``record`` by the perso script."""

    reader: CardReader
    profile_path: Path
    record: Record = field(repr=False)
    keystore_path: Path
    perso_data: CardPersoData = field(repr=False)
    result: ScriptResult
    today: date

    @property
    def card(self) -> Card | None:
        return self.reader.card

    def transmit(self, apdu: bytes) -> bytes:
        return self.reader.transmit(apdu)

    def atr(self) -> bytes:
        return self.reader.atr()


class Personalizer:
    """Prepares one record for a profile and runs a perso script on a card.

    Everything is the product's own code path: :func:`cardlab.personalizer.records.validate`,
    :class:`cardlab.personalizer.prepare.CardPreparer`, :func:`cardlab.personalizer.script.load_script`
    and :func:`cardlab.personalizer.script.execute`. Profiles, key stores and scripts
    are loaded once per path."""

    def __init__(
        self,
        workdir: Path,
        *,
        today: date | None = None,
        reader: Callable[[], CardReader] | None = None,
    ) -> None:
        self.workdir = workdir
        self.today = today or date.today()
        self._reader = reader
        self._keystores: dict[int, tuple[Any, Path]] = {}
        self._keyfiles: dict[str, tuple[Any, Path]] = {}
        self._preparers: dict[tuple[str, int, str], Any] = {}
        self._docs: dict[str, dict[str, Any]] = {}
        self._count = 0

    # -- inputs
    def keystore(self, keystore: str | os.PathLike[str] | KeyStore) -> tuple[KeyStore, Path]:
        """(key store, its file): the file is what the tester reads."""
        from cardlab.personalizer.keys import KeyStore as _KeyStore
        from cardlab.personalizer.keys import SoftwareKeyStore

        if isinstance(keystore, _KeyStore):
            cached = self._keystores.get(id(keystore))
            if cached is None:
                if not isinstance(keystore, SoftwareKeyStore):
                    raise TypeError("certification reads a key store file: pass a path or a SoftwareKeyStore")
                path = self.workdir / f"keystore-{len(self._keystores)}.json"
                keystore.save(path)
                cached = (keystore, path)
                self._keystores[id(keystore)] = cached
            return cached[0], cached[1]
        path = Path(keystore)
        key = _content_key(path)
        cached = self._keyfiles.get(key)
        if cached is None:
            cached = (SoftwareKeyStore.load(path), path)
            self._keyfiles[key] = cached
        return cached[0], cached[1]

    def profile_path(self, profile: str | os.PathLike[str] | Mapping[str, Any]) -> Path:
        """The profile as a file: a path as given, a document written once per content into the work
        directory (the tester reads the profile from a file, as it does in a bureau)."""
        if not isinstance(profile, Mapping):
            return Path(profile)
        import yaml

        text = yaml.safe_dump(dict(profile), sort_keys=True)
        path = self.workdir / f"profile-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return path

    def profile_document(self, profile: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
        import yaml

        path = self.profile_path(profile)
        key = _content_key(path)
        if key not in self._docs:
            self._docs[key] = yaml.safe_load(path.read_text(encoding="utf-8"))
        return self._docs[key]

    def validate(self, record: Mapping[str, object] | Record, index: int = 1, *, empty_psn: str | None = None) -> Record:
        """``record`` as the personalizer validates it (``empty_psn``: the profile's
        ``card.empty_psn``, which :meth:`prepare` and a whole run pass on)."""
        from cardlab.personalizer.records import Record as _Record
        from cardlab.personalizer.records import Rejected, validate

        if isinstance(record, _Record):
            return record
        result = validate(record, today=self.today, index=index, line=index + 1, empty_psn=empty_psn)
        if isinstance(result, Rejected):
            raise RecordRejected(result.field, result.message)
        return result

    def prepare(
        self,
        profile: str | os.PathLike[str] | Mapping[str, Any],
        record: Mapping[str, object] | Record,
        keystore: str | os.PathLike[str] | KeyStore,
        *,
        transport_key: str = "KEK",
    ) -> CardPersoData:
        """The card's perso data, as ``cardlab prepare`` writes it to ``cards.jsonl``."""
        from cardlab.personalizer.prepare import CardProblem

        ks, _ = self.keystore(keystore)
        preparer = self._preparer(self.profile_path(profile), ks, transport_key)
        rec = self.validate(record, empty_psn=preparer.profile.card.empty_psn)
        try:
            data: CardPersoData = preparer.prepare(rec)
            return data
        except CardProblem as exc:
            raise RecordRejected(exc.field, str(exc)) from None

    def _preparer(self, path: Path, ks: KeyStore, transport_key: str) -> CardPreparer:
        """The preparer for a profile file's content and a key store (made once)."""
        from cardlab.personalizer.prepare import CardPreparer
        from cardlab.personalizer.profile import load_profile

        key = (_content_key(path), id(ks), transport_key)
        preparer = self._preparers.get(key)
        if preparer is None:
            preparer = CardPreparer(load_profile(path), ks, transport_key, today=self.today)
            self._preparers[key] = preparer
        return preparer

    def blank_card_for(self, profile: str | os.PathLike[str] | Mapping[str, Any], keystore: KeyStore) -> Card:
        """An emulated blank card as card stock ships it for ``profile``: its
        ISD keys diversified from the profile's KMC with a fresh KDD."""
        from cardlab.emulator import Card
        from cardlab.emulator.gp.manager import DEFAULT_KEY
        from cardlab.personalizer.profile import load_profile

        gp = load_profile(self.profile_path(profile)).card
        kdd = os.urandom(10)
        if gp.diversification == "none":
            keys: tuple[bytes, bytes, bytes] = (DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY)
        else:
            k = keystore.diversify_card_keys(gp.kmc, gp.diversification, kdd)
            keys = (k.enc, k.mac, k.dek)
        return Card.create(isd_aid=gp.isd_aid, keys=keys, kvn=gp.key_version, kdd=kdd)

    # -- the whole path
    def __call__(
        self,
        profile: str | os.PathLike[str] | Mapping[str, Any],
        record: Mapping[str, object] | Record,
        keystore: str | os.PathLike[str] | KeyStore,
        *,
        script: str | os.PathLike[str] | None = None,
        transport_key: str = "KEK",
    ) -> PersonalizedCard:
        """Validate and prepare ``record`` for ``profile``, then run ``script``
        (default: the EMV CPS script) on a blank card. Raises
        :class:`RecordRejected` for a record the personalizer refuses and
        :class:`cardlab.personalizer.script.StepFailed` when the card refuses a step."""
        from cardlab.personalizer.script import execute, load_script

        ks, ks_path = self.keystore(keystore)
        profile_path = self.profile_path(profile)
        rec = self.validate(record, empty_psn=self._preparer(profile_path, ks, transport_key).profile.card.empty_psn)
        data = self.prepare(profile_path, rec, ks, transport_key=transport_key)
        script_path = Path(script) if script is not None else default_script()
        loaded = load_script(script_path)
        if self._reader is not None:
            reader = self._reader()
        else:
            reader = EmulatedReader(self.blank_card_for(profile, ks))
        result = execute(loaded, data, reader.transmit, ks, profile=self.profile_document(profile_path))
        reader.reset()
        self._count += 1
        return PersonalizedCard(reader, profile_path, rec, ks_path, data, result, self.today)


# =========================================================================== the tester


class Terminal:
    """The independent tester (:mod:`tester`) bound to one card."""

    def __init__(
        self,
        card: CardReader | PersonalizedCard | Card,
        *,
        terminal_profile: str | os.PathLike[str] | None = None,
        today: date | None = None,
        transactions: list[TransactionState] | None = None,
    ) -> None:
        from cardlab.tester.channel import RecordingChannel

        #: every transaction this terminal ran (shown in the report of a failing test)
        self.transactions: list[TransactionState] = transactions if transactions is not None else []
        self.personalized = card if isinstance(card, PersonalizedCard) else None
        transmit: Callable[[bytes], bytes] = card.transmit
        atr = card.atr() if isinstance(card, (PersonalizedCard, EmulatedReader, PcscReader)) else b""
        self.channel = RecordingChannel(transmit, atr)
        self.terminal_profile = terminal_profile
        self.today = today or (self.personalized.today if self.personalized else date.today())

    def transmit(self, apdu: bytes) -> bytes:
        return self.channel.transmit(apdu)

    def run_transaction(self, *, amount: int = 1000, pin: str | None = None, **options: Any) -> TransactionState:
        """One contact EMV transaction (``cardlab.tester.kernel.run_transaction``); the
        PIN defaults to the personalized record's."""
        from cardlab.tester.kernel import run_transaction
        from cardlab.tester.terminal import load_terminal

        if pin is None and self.personalized is not None:
            pin = self.personalized.record.pin
        term = load_terminal(None if self.terminal_profile is None else Path(self.terminal_profile))
        state = run_transaction(self.channel, term, amount=amount, pin=pin, **options)
        self.transactions.append(state)
        return state

    def certify(
        self,
        profile: str | os.PathLike[str] | None = None,
        record: Mapping[str, object] | None = None,
        keystore: str | os.PathLike[str] | None = None,
        *,
        destructive: bool = False,
        gp_status: bool = True,
    ) -> CardReport:
        """Every rule of the certification catalogue (``cardlab.tester.certify.certify_card``)
        against the source data; defaults: the personalized card's profile,
        record and key store. ``gp_status`` (default): also read the GP life cycles and
        privileges over the tester's SCP03; without it those critical rules do not run and the
        card is *incomplete* (``cardlab test certify --no-gp-status``)."""
        from cardlab.tester import sources
        from cardlab.tester.certify import certify_card

        p = self.personalized
        profile_path = Path(profile) if profile is not None else (p.profile_path if p else None)
        keys_path = Path(keystore) if keystore is not None else (p.keystore_path if p else None)
        if profile_path is None or keys_path is None:
            raise TypeError("certify() needs profile and keystore for a card not personalized by the kit")
        raw = dict(record) if record is not None else (_record_fields(p.record) if p else None)
        if raw is None:
            raise TypeError("certify() needs the record for a card not personalized by the kit")
        with tempfile.TemporaryDirectory(prefix="cardlab-record-") as tmp:
            path = Path(tmp) / "record.jsonl"
            path.write_text(json.dumps({k: str(v) for k, v in raw.items() if v is not None}) + "\n")
            rec = sources.load_record(path, 1)
        term: Any = None
        if self.terminal_profile is not None:
            from cardlab.tester.terminal import load_terminal

            term = load_terminal(Path(self.terminal_profile))
        return certify_card(self.channel, sources.load_profile(profile_path), rec, sources.load_keystore(keys_path),
                            terminal=term, destructive=destructive, today=self.today, gp_status=gp_status)  # fmt: skip


def _record_fields(record: Record) -> dict[str, object]:
    out: dict[str, object] = {
        "pan": record.pan, "psn": record.psn, "expiry": str(record.expiry), "name": record.name, "pin": record.pin,
    }  # fmt: skip
    for name in ("effective", "service_code", "language", "discretionary"):
        value = getattr(record, name)
        if value is not None:
            out[name] = str(value)
    return out


# =========================================================================== fixtures


def _today(config: pytest.Config) -> date | None:
    text = config.getoption("--cardlab-today")
    return date.fromisoformat(text) if text else None


@pytest.fixture
def blank_card() -> Card:
    """A fresh emulated card (default GP keys), powered on."""
    from cardlab.emulator import Card

    card = Card.create()
    card.power_on()
    return card


@pytest.fixture
def card_reader(request: pytest.FixtureRequest) -> Iterator[CardReader]:
    """The test's card: an emulated blank card, or ``--cardlab-reader NAME``."""
    name = request.config.getoption("--cardlab-reader")
    if name is None:
        from cardlab.emulator import Card

        reader: CardReader = EmulatedReader(Card.create())
    else:
        reader = PcscReader(name)
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture
def personalized_card(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Personalizer]:
    """Factory: ``personalized_card(profile, record, keystore, *, script=None)``
    → :class:`PersonalizedCard` (see :class:`Personalizer`)."""
    name = request.config.getoption("--cardlab-reader")
    readers: list[CardReader] = []

    def open_reader() -> CardReader:
        reader = PcscReader(name)
        readers.append(reader)
        return reader

    kit = Personalizer(tmp_path_factory.mktemp("cardlab"), today=_today(request.config),
                       reader=open_reader if name is not None else None)  # fmt: skip
    try:
        yield kit
    finally:
        for r in readers:
            r.close()


@pytest.fixture
def terminal(request: pytest.FixtureRequest) -> Callable[..., Terminal]:
    """Factory: ``terminal(card=None)`` → :class:`Terminal` bound to ``card``
    (a :class:`PersonalizedCard`, a :class:`CardReader` or an emulated card;
    default: the ``card_reader`` fixture's card)."""
    config = request.config

    transactions = request.node.stash.setdefault(_TRANSACTIONS, [])

    def bind(card: CardReader | PersonalizedCard | Card | None = None) -> Terminal:
        target = card if card is not None else request.getfixturevalue("card_reader")
        return Terminal(target, terminal_profile=config.getoption("--cardlab-terminal"), today=_today(config),
                        transactions=transactions)  # fmt: skip

    return bind

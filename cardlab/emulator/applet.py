"""The contract between the card OS and the applications it hosts.

An application class is a built-in *load file* (GP Card Spec 2.3 §5.3: an
Executable Load File holding one Executable Module).  Each installed *instance*
is an object of that class bound to its registry entry.  Commands reach it
through a dispatch table keyed by (CLA class, INS), built from the
``@command`` decorators of the class and its bases (ARCHITECTURE.md: a table,
not a chain of ifs).

The card (:mod:`cardlab.emulator.card`) sits above this module: the file
system, the GP card manager, SCP03 and the applications see it only as the
:class:`CardContext` protocol, so none of them imports the card (nor the
registry of built-in applications, which the card consults).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from .apdu import SW, Command, StatusError

if TYPE_CHECKING:
    from .filesystem.model import FsCursor
    from .gp.scp03 import CardSession
    from .state import CardState, InstanceRecord

INTERINDUSTRY = 0x00
PROPRIETARY = 0x80

F = TypeVar("F", bound=Callable[..., bytes])


def command(cla_class: int, *ins: int) -> Callable[[F], F]:
    """Mark a method as the handler of INS values for a CLA class (00 or 80)."""

    def mark(fn: F) -> F:
        keys: list[tuple[int, int]] = list(getattr(fn, "_apdu_keys", []))
        keys.extend((cla_class, i) for i in ins)
        fn._apdu_keys = keys  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class Channel:
    """Transient state of one logical channel."""

    number: int
    #: AID of the selected application, or None when the file system is the target
    selected: bytes | None = None
    fs: FsCursor | None = None
    session: CardSession | None = None
    #: application receiving STORE DATA after INSTALL [for personalization]
    perso_target: bytes | None = None


@dataclass
class Security:
    """Card-wide transient security status (reset at power-on)."""

    pin_verified: set[int] = field(default_factory=set)


class CardContext(Protocol):
    """What handlers may use of the card (:class:`cardlab.emulator.card.Card` is one)."""

    state: CardState
    security: Security
    random: Callable[[int], bytes]
    applets: dict[bytes, Applet]
    channels: dict[int, Channel]
    #: "contact" or "contactless": the interface the command came through (issue 16)
    interface: str

    def mark_dirty(self) -> None:
        """Persistent card state changed (saved before the response leaves)."""

    def applet_class(self, module_aid: bytes) -> type[Applet]:
        """The built-in application class of an executable module (6A82 if none)."""


@dataclass
class Context:
    """What a handler may look at while it processes one command."""

    card: CardContext
    channel: Channel
    #: Security level of the secure channel that unwrapped this command
    #: (GP Amendment D §5.1: b1 C-MAC, b2 C-DEC, b5 R-MAC, b6 R-ENC, b8 AUTH
    #: once EXTERNAL AUTHENTICATE succeeded); 0 outside a session.
    security_level: int = 0
    #: Extra items a handler may want to leave for the response wrapper.
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.channel.session is not None and self.channel.session.authenticated

    def require_secure_channel(self) -> None:
        """GP commands that need an authenticated session answer 6982 outside one."""
        if not self.authenticated:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "secure channel required")


class Applet:
    """Base class of every application on the card.

    Subclasses set the class constants, implement :meth:`select` and handlers,
    and keep their persistent data in :meth:`dump`/:meth:`load` (JSON values only).
    """

    NAME: ClassVar[str] = "applet"
    LOAD_FILE_AID: ClassVar[bytes] = b""
    MODULE_AID: ClassVar[bytes] = b""
    #: Application-specific life cycle values the instance may move to
    #: (GP Card Spec 2.3 §5.3.1: b4..b7 of the state byte are application specific).
    SPECIFIC_STATES: ClassVar[dict[int, str]] = {}
    COMMANDS: ClassVar[dict[tuple[int, int], Callable[..., bytes]]] = {}
    #: (CLA class, INS) of commands whose secure messaging the application
    #: checks itself (e.g. EMV issuer scripts); outside a GP session the card
    #: passes them through instead of answering 6882.
    OWN_SECURE_MESSAGING: ClassVar[frozenset[tuple[int, int]]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[tuple[int, int], Callable[..., bytes]] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                for key in getattr(value, "_apdu_keys", ()):
                    table[key] = value
        cls.COMMANDS = table

    def __init__(self, record: InstanceRecord) -> None:
        self.record = record
        self.load(record.state)

    @property
    def aid(self) -> bytes:
        return self.record.aid

    # -- persistence --------------------------------------------------------
    def load(self, state: dict[str, Any]) -> None:
        """Restore from the instance's saved state (empty dict for a new instance)."""

    def dump(self) -> dict[str, Any]:
        """The instance's persistent data as JSON values."""
        return {}

    # -- life events --------------------------------------------------------
    def install(self, params: bytes) -> None:
        """Called once by INSTALL [for install] with the application specific
        parameters (content of tag C9); raise StatusError(6A80) if invalid."""

    def select(self, ctx: Context, cmd: Command) -> bytes:
        """Answer SELECT: return FCI data (GP §11.9.3.1 or the application's own)."""
        return b""

    def deselect(self, ctx: Context) -> None:
        """The application loses selection on ``ctx.channel``."""

    def store_data(self, ctx: Context, cmd: Command) -> bytes:
        """STORE DATA routed by INSTALL [for personalization] (GP §11.11)."""
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, f"{self.NAME} takes no personalization data")

    def process(self, ctx: Context, cmd: Command) -> bytes:
        """Dispatch by (CLA class, INS); unknown INS → 6D00."""
        handler = self.COMMANDS.get((cmd.cla & 0x80, cmd.ins))
        if handler is None:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        return handler(self, ctx, cmd)

    def handles(self, cmd: Command) -> bool:
        return (cmd.cla & 0x80, cmd.ins) in self.COMMANDS

    def mark_dirty(self) -> None:
        """Tell the card that persistent data changed (the image must be saved
        before the response leaves the card)."""
        self.record.dirty = True

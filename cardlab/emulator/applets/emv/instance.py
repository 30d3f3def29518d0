"""What the parts of the EMV application (core, perso, ac, issuer) use of it.

:class:`~.applet.EmvApplet` composes the parts; they see it only through this
protocol, so none of them imports the applet module (no import circle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from ...state import InstanceRecord
    from .state import EmvData, Transaction


class EmvInstance(Protocol):
    """One installed EMV application: its persistent data and the transaction in progress."""

    #: the application specific life cycle state "personalized" (GP §5.3.1)
    PERSONALIZED_STATE: ClassVar[int]
    SPECIFIC_STATES: ClassVar[dict[int, str]]
    record: InstanceRecord
    data: EmvData
    tx: Transaction
    #: RSA CRT components and key check values of a personalization in progress
    perso_parts: dict[int, bytes]

    @property
    def aid(self) -> bytes: ...

    def mark_dirty(self) -> None: ...

"""Built-in load files (the Python applications this card has) and AID lookup.

GP Card Spec 2.3 §5.3: an Executable Load File contains Executable Modules;
INSTALL creates instances of a module. On this card load files are built in
(LOAD answers 6A81, see :mod:`cardlab.emulator.gp.manager`, which lists them:
:func:`builtin_applets`). The card consults this module; the applications and
the card manager reach it only through the card (``CardContext.applet_class``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .apdu import SW, StatusError
from .gp.manager import builtin_applets

if TYPE_CHECKING:
    from .applet import Applet, CardContext

__all__ = ["applet_class", "builtin_applets", "find_selectable"]


def applet_class(module_aid: bytes) -> type[Applet]:
    for klass in builtin_applets():
        if klass.MODULE_AID == module_aid:
            return klass
    raise StatusError(SW.FILE_NOT_FOUND, "no such executable module")


def find_selectable(card: CardContext, name: bytes, after: bytes | None) -> bytes | None:
    """AID of the instance whose AID starts with ``name`` (ISO 7816-4 §11.1.1
    partial DF name), in registry order; with ``after`` set (P2 = 02, next
    occurrence), the first match after that instance. Instances that cannot be
    selected still match here so that SELECT answers with their reason."""
    matches = [rec.aid for rec in card.state.instances if rec.aid.startswith(name)]
    if after is not None and after in matches:
        i = matches.index(after)
        matches = matches[i + 1 :]
    elif after is not None:
        pass
    return matches[0] if matches else None

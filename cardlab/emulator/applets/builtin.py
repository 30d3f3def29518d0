"""The applications in the card's ROM, besides the ISD (GP Card Spec 2.3 §5.3).

The card has no loader: these classes are its Executable Load Files. The ISD
is the card manager itself (:class:`cardlab.emulator.gp.manager.IssuerSecurityDomain`);
:func:`cardlab.emulator.gp.manager.builtin_applets` puts it first.
"""

from __future__ import annotations

from ..applet import Applet
from .emv.applet import EmvApplet
from .loyalty import LoyaltyApplet
from .pse import PpseApplet, PseApplet

#: in ROM order (the order of the load files in a new card's registry);
#: PSE and PPSE are two modules of one load file (GP §5.3)
APPLICATIONS: tuple[type[Applet], ...] = (LoyaltyApplet, EmvApplet, PseApplet, PpseApplet)

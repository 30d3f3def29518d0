"""A small loyalty-points application, so the registry holds a real second
load file (SKELETON — filled in by the GP helper)."""

from __future__ import annotations

from ..applet import Applet


class LoyaltyApplet(Applet):
    NAME = "Loyalty points"
    LOAD_FILE_AID = bytes.fromhex("A0000006474C59")
    MODULE_AID = bytes.fromhex("A0000006474C5901")
    SPECIFIC_STATES = {0x0F: "PERSONALIZED"}

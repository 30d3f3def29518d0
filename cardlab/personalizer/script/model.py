"""A perso script as data: its steps, the operations and their vocabularies
(card and application states, file types, access conditions), and what a run
reports (:class:`StepEvent`, :class:`ScriptResult`)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .expressions import Template

__all__ = [
    "APP_STATES",
    "CARD_STATES",
    "CONDITIONS",
    "DF_MODES",
    "EF_MODES",
    "FILE_TYPES",
    "INSTALL_KINDS",
    "OPERATIONS",
    "SECURE_OPS",
    "Script",
    "ScriptResult",
    "Step",
    "StepEvent",
    "dgi_number",
]

OPERATIONS = (
    "select",
    "open_scp03",
    "install",
    "store_data",
    "create_file",
    "update_binary",
    "update_record",
    "append_record",
    "put_key",
    "set_status",
    "apdu",
)
#: operations that need an open secure channel (GP card content management)
SECURE_OPS = frozenset({"install", "store_data", "put_key", "set_status"})

CARD_STATES = {"OP_READY": 0x01, "INITIALIZED": 0x07, "SECURED": 0x0F, "CARD_LOCKED": 0x7F, "TERMINATED": 0xFF}
APP_STATES = {"PERSONALIZED": 0x0F, "LOCKED": 0x80, "UNLOCKED": 0x00}
FILE_TYPES = {"df": 0x38, "transparent": 0x01, "linear_fixed": 0x02, "linear_variable": 0x04, "cyclic": 0x06}
#: access mode bits of the compact 8C coding, per file kind (ISO 7816-4 §7.4.3)
EF_MODES = {"read": 0x01, "update": 0x02, "write": 0x04, "append": 0x04}
DF_MODES = {"delete": 0x01, "create_ef": 0x02, "create_df": 0x04}
CONDITIONS = {
    "always": 0x00,
    "never": 0xFF,
    "secure_channel": 0x40,
    "sm": 0x40,
    "pin": 0x10,
    "sm_or_pin": 0x50,
    "sm_and_pin": 0xD0,
}
#: P1 of INSTALL per kind (GP Card Specification §11.5.2.1)
INSTALL_KINDS = {
    "install": 0x04,
    "install_and_make_selectable": 0x0C,
    "make_selectable": 0x08,
    "personalization": 0x20,
}


def dgi_number(raw: Any) -> int | None:
    """A DGI from its 4 hex digits (``"8000"``, or YAML's unquoted ``8000``);
    ``None`` when ``raw`` is not one."""
    text = f"{raw:04d}" if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1000 else str(raw)
    if re.fullmatch(r"[0-9A-Fa-f]{4}", text):
        return int(text, 16)
    return None


@dataclass(frozen=True)
class Step:
    """One step: an operation with its arguments, or a block of steps."""

    index: int  # 1-based, depth-first over the whole script
    name: str
    op: str | None  # None for a block (``steps:``)
    args: Mapping[str, Any] = field(default_factory=dict)
    expect: tuple[str, ...] = ("9000",)
    #: "app", or a card field holding a ';'-separated list ("record.premises")
    foreach: str | None = None
    steps: tuple[Step, ...] = ()
    when: Template | None = None


@dataclass(frozen=True)
class Script:
    name: str
    description: str
    steps: tuple[Step, ...]
    source: str = "<script>"
    requires_fields: tuple[str, ...] = ()

    def walk(self) -> Iterator[Step]:
        def rec(steps: Sequence[Step]) -> Iterator[Step]:
            for s in steps:
                yield s
                yield from rec(s.steps)

        return rec(self.steps)


@dataclass(frozen=True)
class StepEvent:
    """What one step did (for the engine's progress and audit): no secrets."""

    step_index: int
    step_name: str
    operation: str
    apdus: int
    description: str
    sw: int | None = None
    app: str | None = None  # AID (hex) of the current application in a foreach


@dataclass(frozen=True)
class ScriptResult:
    script: str
    card_id: str
    apdus: int
    steps: int
    events: tuple[StepEvent, ...]
    kdd: bytes = b""

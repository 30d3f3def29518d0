"""Walking a perso script for one card: blocks, ``foreach`` and ``when``,
the step's arguments evaluated, and each command sent (through the secure
channel when one is open) with its status word checked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cardlab.cardspec.scp03 import LEVEL_CDEC, ScpError

from .apdus import Command
from .errors import StepFailed
from .evaluation import Env, as_bytes, as_data, as_int, as_text, card_field, eval_value
from .model import Script, Step, StepEvent
from .values import Data, EvalError, Lazy

__all__ = ["Walker", "sw_matches"]


def sw_matches(sw: int, patterns: Sequence[str]) -> bool:
    text = f"{sw:04X}"
    return any(p == text or (p.endswith("XX") and p[:2] == text[:2]) for p in patterns)


class Walker:
    """Walks the steps (``foreach``, ``when``) and sends each command,
    checking its status word; ``transmit`` is None when rendering. The
    operations themselves are :class:`.operations.Runner`'s."""

    def __init__(
        self,
        script: Script,
        env: Env,
        transmit: Callable[[bytes], bytes] | None,
        on_step: Callable[[StepEvent], None] | None,
        mask: Callable[[str], str],
    ) -> None:
        self.script = script
        self.env = env
        self.transmit = transmit
        self.on_step = on_step
        self.mask = mask
        self.lines: list[str] = []
        self.events: list[StepEvent] = []
        self.apdus = 0
        self.steps_run = 0
        self.block_counter = 0
        self.channel_open = False
        self.kdd = b""
        #: called with each secure channel opened (:func:`.runner.execute`'s ``on_session``)
        self.on_session: Callable[[Any], None] | None = None

    # -- walking
    def run(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if step.foreach == "app":
                for i, app in enumerate(self.env.card.apps):
                    saved = (self.env.app, self.env.app_index)
                    self.env.app, self.env.app_index = app, i
                    try:
                        self.one(step)
                    finally:
                        self.env.app, self.env.app_index = saved
            elif step.foreach is not None:
                try:
                    items = card_field(self.env.card, step.foreach.split(".")[-1])
                except EvalError as exc:
                    raise StepFailed(step.index, step.name, None, step.expect, str(exc)) from None
                for i, text in enumerate(t.strip() for t in items.split(";") if t.strip()):
                    saved_item = self.env.item
                    self.env.item = (text, i)
                    try:
                        self.one(step)
                    finally:
                        self.env.item = saved_item
            else:
                self.one(step)

    def one(self, step: Step) -> None:
        if step.when is not None:
            try:
                cond = eval_value(step.when, self.env, "when")
            except EvalError as exc:
                raise StepFailed(step.index, step.name, None, step.expect, str(exc)) from None
            if isinstance(cond, Lazy):
                cond = True
            if not cond or (isinstance(cond, str) and cond.lower() in ("false", "no", "0")):
                if self.transmit is None:
                    self.lines.append(f"# {step.index} {step.name}: skipped (when)")
                return
        if step.op is None:
            self.run(step.steps)
            return
        app = self.env.app.aid.hex().upper() if self.env.app is not None else None
        if self.transmit is None:
            where = f" [app {app}]" if app else ""
            self.lines.append(f"# {step.index} {step.name}{where}")
        try:
            count, sw, description = self.operate(step)
        except EvalError as exc:
            raise StepFailed(step.index, step.name, None, step.expect, str(exc)) from None
        self.steps_run += 1
        event = StepEvent(step.index, step.name, step.op, count, description, sw, app)
        self.events.append(event)
        if self.on_step is not None:
            self.on_step(event)

    # -- sending
    def exchange(self, step: Step, cmd: Command, expect: Sequence[str] | None = None) -> tuple[bytes, int | None]:
        """Send one command (through the secure channel when open); check SW."""
        expect = step.expect if expect is None else expect
        self.apdus += 1
        if self.transmit is None:
            self.lines.append(cmd.show(self.mask))
            return b"", None
        session = self.env.session
        wrapped = session is not None and session.authenticated and not cmd.plain
        if cmd.data.has_clear_secret and not (wrapped and session is not None and session.level & LEVEL_CDEC):
            raise StepFailed(
                step.index, step.name, None, expect,
                "secret data would leave in clear: open the secure channel with C-DECRYPTION "
                "(level 03, 13 or 33) or use dek_encrypt()",
            )
        raw = cmd.build()
        try:
            resp = session.send(raw) if wrapped and session is not None else self.transmit(raw)
        except ScpError as exc:
            raise StepFailed(step.index, step.name, exc.sw, expect, str(exc)) from None
        if len(resp) < 2:
            raise StepFailed(step.index, step.name, None, expect, "response without a status word")
        sw = int.from_bytes(resp[-2:], "big")
        if not sw_matches(sw, expect):
            raise StepFailed(step.index, step.name, sw, expect, cmd.note)
        return resp[:-2], sw

    def value(self, step: Step, key: str, default: Any = None) -> Any:
        raw = step.args.get(key, default)
        return eval_value(raw, self.env, f"{step.op}.{key}")

    def bytes_arg(self, step: Step, key: str, default: bytes | None = None) -> bytes:
        if key not in step.args:
            if default is None:
                raise EvalError(f"{step.op}.{key} is missing")
            return default
        return as_bytes(self.value(step, key), f"{step.op}.{key}")

    def data_arg(self, step: Step, key: str) -> Data:
        return as_data(self.value(step, key), f"{step.op}.{key}")

    def int_arg(self, step: Step, key: str, default: int) -> int:
        if key not in step.args:
            return default
        return as_int(self.value(step, key), f"{step.op}.{key}")

    def str_arg(self, step: Step, key: str, default: str = "") -> str:
        if key not in step.args:
            return default
        return as_text(self.value(step, key), f"{step.op}.{key}")

    def operate(self, step: Step) -> tuple[int, int | None, str]:
        """Carry out one operation: (APDUs sent, last SW, description)."""
        raise NotImplementedError

    def close_channel(self) -> None:
        """Selecting ends the secure channel (GP §10.2, Amendment D §6.2.4)."""
        if self.env.session is not None and self.transmit is None and self.channel_open:
            self.lines.append("# (the secure channel ends here)")
        self.env.session = None
        self.channel_open = False

    def need_channel(self, step: Step) -> None:
        if self.transmit is not None and (self.env.session is None or not self.env.session.authenticated):
            raise StepFailed(step.index, step.name, None, step.expect, f"{step.op} needs an open secure channel")

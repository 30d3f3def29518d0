"""The two errors of perso scripts: a script that does not load
(:class:`ScriptError`) and a step the card did not accept (:class:`StepFailed`)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ScriptError", "StepFailed"]


class ScriptError(ValueError):
    """A script that does not load or validate; the message names the step and
    the field. ``problems`` holds every problem found (the message the first)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class StepFailed(Exception):
    """A step did not get a status word it expects (or could not be carried
    out); the engine stops that card. Never carries secrets."""

    def __init__(
        self,
        step_index: int,
        step_name: str,
        sw: int | None,
        expected: Sequence[str],
        reason: str = "",
    ) -> None:
        self.step_index = step_index
        self.step_name = step_name
        self.sw = sw
        self.expected = tuple(expected)
        self.reason = reason
        got = "no status word" if sw is None else f"SW {sw:04X}"
        text = f"step {step_index} ({step_name}): {got}"
        if sw is not None and expected:
            text += f", expected {' or '.join(expected)}"
        if reason:
            text += f": {reason}"
        super().__init__(text)

"""Running a perso script for one card (:func:`execute`), or showing the
APDUs it would send without a card (:func:`render`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..batch import CardPersoData
from .errors import StepFailed
from .evaluation import Env
from .model import Script, ScriptResult, StepEvent
from .operations import Runner

if TYPE_CHECKING:
    from ..keys import KeyStore

__all__ = ["execute", "pan_masker", "render"]


def pan_masker(card: CardPersoData) -> Callable[[str], str]:
    """A function masking the card's PAN wherever it appears in hex text (BCD
    in 5A / 57 / track data): the first six and last four digits of
    ``pan_masked`` locate it, its length bounds it."""
    masked = card.pan_masked
    if len(masked) < 12 or not masked[:6].isdigit() or not masked[-4:].isdigit():
        return lambda text: text
    bin6, last4, n = masked[:6], masked[-4:], len(masked)
    source = re.escape(bin6) + r"(\d{" + str(n - 10) + r"})" + re.escape(last4)

    def mask(text: str) -> str:
        if bin6 not in text:  # most texts: no regex (each card's pattern would be compiled anew)
            return text
        return re.sub(source, lambda m: bin6 + "*" * (n - 10) + last4, text)

    return mask


def execute(
    script: Script,
    card: CardPersoData,
    transmit: Callable[[bytes], bytes],
    keystore: KeyStore,
    *,
    profile: dict[str, Any] | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
    on_session: Callable[[Any], None] | None = None,
) -> ScriptResult:
    """Run every step of ``script`` for ``card`` over ``transmit`` (command
    APDU → response APDU). Raises :class:`StepFailed` at the first step whose
    status word is not expected (or that cannot be carried out). ``on_session`` is called with
    each secure channel the script opens (its :class:`~cardlab.cardspec.scp03.HostSession`),
    before the next step: the perso engine checks there that the card is blank; what it
    raises ends the script."""
    env = Env(card, profile, keystore)
    runner = Runner(script, env, transmit, on_step, pan_masker(card))
    runner.on_session = on_session
    runner.run(script.steps)
    return ScriptResult(script.name, card.card_id, runner.apdus, runner.steps_run, tuple(runner.events), runner.kdd)


def render(
    script: Script, card: CardPersoData, *, masked: bool = True, profile: dict[str, Any] | None = None
) -> list[str]:
    """The concrete APDU sequence ``script`` produces for ``card``, without a
    card: comment lines (``#``) name the steps; commands inside a secure
    channel are shown before wrapping. Secret data always shows as
    ``<sealed:DGI>`` / ``<dek_encrypt:...>`` (there is no key store here);
    ``masked`` also masks the PAN in clear data (records, track data)."""
    env = Env(card, profile, None, rendering=True)
    mask = pan_masker(card) if masked else (lambda text: text)
    runner = Runner(script, env, None, None, mask)
    lines = [f"# script {script.name} for card {card.card_id} ({card.pan_masked})"]
    try:
        runner.run(script.steps)
    except StepFailed as exc:
        runner.lines.append(f"# cannot render further: {exc}")
    return lines + runner.lines

"""The perso engine: run a prepared batch's perso script on cards, resumably.

One code path for every card: a card is whatever answers APDUs behind a PC/SC
reader name; emulated cards are put in a private emulated reader. Modules, in
the order they build on each other (none imports a later one):

=================  ==================================================================
``errors``         :class:`EngineError` (stops the run), :class:`CardError` (one card)
``channel``        :class:`PcscChannel` — the card in a PC/SC reader, status words
``sources``        card sources: stock images (:class:`ImageSource`), a reader
                   (:class:`ReaderSource`)
``identity``       the card's CIN and CPLC hash, read before any session (GP §11.3)
``gp``             the batch's ISD details (:class:`GpAccess`), SCP03 session,
                   GET STATUS (:func:`inspect_card`, GP §11.4)
``cardstate``      what a card's state says: :func:`decide` (done, untouched = blank,
                   partial)
``flow``           one card: identify, claim, check blank, script, save, finish
                   (:func:`personalize_card`); :class:`Job`, failure classes
``reconcile``      after a crash or a reader fault: read the card, roll back
                   (:func:`reconcile_one`, :func:`settle_fault`)
``stations``       station loops, worker processes, the batch lock
``progress``       the progress bar
``runner``         :func:`run` — lock, load, reconcile, stations, :class:`RunReport`
``cli``            ``cardlab perso run | status | audit | stock``
=================  ==================================================================

See ``docs/perso-engine.md``.
"""

from __future__ import annotations

from cardlab.personalizer.engine.cli import add_commands, cmd_audit, cmd_run, cmd_status, cmd_stock
from cardlab.personalizer.engine.errors import CardError, EngineError
from cardlab.personalizer.engine.flow import Job, Outcome, failure_reason, personalize_card
from cardlab.personalizer.engine.gp import CardView, GpAccess, gp_access, inspect_card
from cardlab.personalizer.engine.cardstate import decide
from cardlab.personalizer.engine.reconcile import reconcile
from cardlab.personalizer.engine.runner import RunReport, run

__all__ = [
    "CardError", "CardView", "EngineError", "GpAccess", "Job", "Outcome", "RunReport",
    "add_commands", "cmd_audit", "cmd_run", "cmd_status", "cmd_stock", "decide", "failure_reason",
    "gp_access", "inspect_card", "personalize_card", "reconcile", "run",
]

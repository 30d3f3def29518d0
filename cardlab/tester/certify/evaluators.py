"""Where rule evaluators plug in: the one list of what :func:`.card.certify_card`
runs, and so which rules are per application and which per card.

* :data:`APPLICATION_STEPS` — for each application of the profile, in order,
  one certification transaction: each step takes the :class:`.context.AppContext`
  (card channel, source data, the kernel's transaction state, the collector of
  checks) and feeds the collector; :class:`.context.Stop` ends the application's
  steps (its unreached rules become not applicable, with the reason).
* :data:`CARD_EVALUATORS` — once per card, each given the
  :class:`.context.CardContext` and returning exactly one :class:`.results.Result`
  per rule id it declares (``app=""``); by default after the applications,
  ``before_applications=True`` for checks that need the card as it was powered on.

A new evaluator is a module of this package with a function of the right
shape and its rules in the catalogue (:mod:`cardlab.tester.rules`), added to
one of the two lists below. The rules a card evaluator declares are taken out
of the per-application results (:data:`CARD_RULES`, :data:`APP_RULES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import rules as R
from ..rules import RULES, Result
from . import authentication, contactless, cryptograms, data, pin, records, scripts, selection
from .atr import atr_results
from .context import AppContext, CardContext
from .directories import directory_results
from .life import card_gp_results

#: one step of an application's certification transaction
ApplicationStep = Callable[[AppContext], None]

APPLICATION_STEPS: tuple[ApplicationStep, ...] = (
    selection.select_application,  # PSE directory entry, SELECT, FCI
    selection.card_state,  # GET DATA: ATC, last online ATC, PIN try counter, log format
    selection.initiate,  # GET PROCESSING OPTIONS
    records.read_records,  # READ RECORD per the AFL; static data for ODA
    data.data_rules,  # every expected object by value and place
    data.consistency_rules,  # AIP, PAN, track 2, dates, CVM list, DOLs
    authentication.oda_rules,  # certificates, SDA, DDA
    pin.pin_rules,  # offline PIN
    cryptograms.generate_ac,  # ARQC, CDA, online with a script (destructive) or declined
    records.log_file,  # the transaction log
    scripts.destructive_transactions,  # further transactions: PIN change, block, unblock (destructive)
    scripts.restore_pin_counter,  # --restore-pin-counter: PIN UNBLOCK after a refused VERIFY
    contactless.contactless_rules,  # the CL-* rules on the contactless interface, the ATC shared with contact
)


@dataclass(frozen=True)
class CardEvaluator:
    """Card-level rules: ``run`` gives one result per id of ``rule_ids``, in that order."""

    name: str
    rule_ids: tuple[str, ...]
    run: Callable[[CardContext], list[Result]]
    before_applications: bool = False


def _directories(card: CardContext) -> list[Result]:
    return directory_results(card.channel, card.profile, pan=card.pan)


def _gp_status(card: CardContext) -> list[Result]:
    return card_gp_results(card.channel, card.profile, card.keys, pan=card.pan, enabled=card.gp_status)


def _power_on(card: CardContext) -> list[Result]:
    return atr_results(card.channel, card.profile)


CARD_EVALUATORS: tuple[CardEvaluator, ...] = (
    CardEvaluator("power-on: the ATR", tuple(R.ATR_RULE_IDS), _power_on, before_applications=True),
    CardEvaluator("payment system directories (PPSE, PSE)", tuple(R.DIR_RULE_IDS), _directories),
    CardEvaluator("GP life cycles and privileges over one SCP03 session (--no-gp-status skips)",
                  (*R.LIFE_RULE_IDS, *R.PRIV_RULE_IDS), _gp_status),
)

#: card-level rules (one result per card), the rest are per application
CARD_RULES = [rid for ev in CARD_EVALUATORS for rid in ev.rule_ids]
APP_RULES = [r for r in RULES if r not in CARD_RULES and r not in R.MATCH_RULE_IDS]

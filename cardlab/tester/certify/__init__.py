"""Certification of a personalized card against its source data.

``certify_card(channel, profile, record, keys)`` derives what the card should
hold from the issuer profile, the cardholder record and the key store
(:mod:`cardlab.tester.sources`), talks to the card like a terminal, and evaluates
every rule of the catalogue (:mod:`cardlab.tester.rules`) for every application: each
gives pass / fail / not applicable with evidence (expected vs found; PANs
masked; never a key or a PIN).

``certify_batch`` does it for every emulated card of a perso batch directory
(images mapped to records through the job database or ``cards.jsonl``) or for
cards presented one after another in a reader.

The modules:

=================  =====================================================================
results            verdicts, :class:`CardReport`, the collector of checks (what reports read)
context            the card's and an application's context, helpers to talk to the card
evaluators         **where rule evaluators plug in**: the application steps, the card evaluators
card               :func:`certify_card`: one card, every evaluator
selection          SELECT (PSE entry, FCI), the card's state by GET DATA, GPO
records            READ RECORD per the AFL, the transaction log
data               data objects by value and place, consistency
authentication     offline data authentication: certificates, SDA, DDA
pin                offline PIN
host               the issuer host of an application, issuer-script keys
cryptograms        GENERATE AC, the ARQC, the certification transaction's script
scripts            destructive transactions after it: PIN change, block, unblock
directories        card level: the PPSE and PSE directories
life               card level: GP life cycles and privileges over SCP03
fs                 file-system (badge) profiles
batch              :func:`certify_batch`, :func:`map_images`
readers            cards one after another in a PC/SC reader
cli                ``cardlab test certify``
=================  =====================================================================
"""

from __future__ import annotations

from .batch import CardItem, certify_batch, iter_certify, map_images
from .card import certify_card
from .cli import add_commands, image_items, run_fs
from .context import AMOUNT, REF_GET_DATA, STEP
from .data import CVN_CDOL1, TEMPLATES
from .directories import directory_results
from .evaluators import APP_RULES, APPLICATION_STEPS, CARD_EVALUATORS, CARD_RULES, CardEvaluator
from .fs import certify_fs, certify_fs_card, is_fs_profile
from .host import SCRIPT_RULES, script_keys_missing, script_sw
from .life import card_gp_results, life_cycle_results, privilege_results
from .readers import iter_reader
from .results import CardReport, Collector
from .selection import FRESH_ATC_MAX

__all__ = [
    "AMOUNT",
    "APPLICATION_STEPS",
    "APP_RULES",
    "CARD_EVALUATORS",
    "CARD_RULES",
    "CVN_CDOL1",
    "FRESH_ATC_MAX",
    "REF_GET_DATA",
    "SCRIPT_RULES",
    "STEP",
    "TEMPLATES",
    "CardEvaluator",
    "CardItem",
    "CardReport",
    "Collector",
    "add_commands",
    "card_gp_results",
    "privilege_results",
    "certify_batch",
    "certify_card",
    "certify_fs",
    "certify_fs_card",
    "directory_results",
    "image_items",
    "is_fs_profile",
    "iter_certify",
    "iter_reader",
    "life_cycle_results",
    "map_images",
    "run_fs",
    "script_keys_missing",
    "script_sw",
]

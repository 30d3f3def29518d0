"""The terminal kernel: one EMV contact transaction, step by step.

Each step is ``step(state, channel) -> state``; it sends its commands through
:func:`cardlab.tester.exchange.send` (recorded as trace events), sets TVR and TSI bits
exactly as EMV 4.4 Book 3 says and records each decision with its reason.
A step that must end the transaction sets ``state.outcome`` to
``"aborted: …"``; :func:`run_transaction` stops there.

Steps, in order (Book 3 §10, Book 4 §6.3):

1. :func:`select_application` — Book 1 §12 (PSE / PPSE / list of AIDs,
   candidate list by priority, final selection);
2. :func:`initiate_application_processing` — Book 3 §10.1 (PDOL, GPO);
3. :func:`read_application_data` — Book 3 §10.2 and the ODA input §10.3;
4. :func:`offline_data_authentication` — Book 3 §10.3, Book 2 §5–§6 (``cardlab.tester.oda``);
5. :func:`processing_restrictions` — Book 3 §10.4;
6. :func:`cardlab.tester.cvm.cardholder_verification` — Book 3 §10.5;
7. :func:`cardlab.tester.risk.terminal_risk_management` — Book 3 §10.6;
8. :func:`cardlab.tester.risk.terminal_action_analysis` — Book 3 §10.7;
9. :func:`first_generate_ac` — Book 3 §10.8, §9.3; CDA Book 2 §6.6;
10. online processing, issuer authentication, scripts and completion
    (``cardlab.tester.online``) — Book 3 §10.9–§10.11.

Where each part lives: :mod:`.common` (step names, spec references, AIP and
cryptogram codes, ending a transaction), :mod:`.dol` (DOL data), :mod:`.start`
(:func:`new_state`), :mod:`.selection` (step 1), :mod:`.initiate` (steps 2–3:
GPO, READ RECORD), :mod:`.authentication` (step 4 and :data:`oda_hook`),
:mod:`.restrictions` (step 5), :mod:`.generate_ac` (step 9, CDA),
:mod:`.completion` (step 10) and :mod:`.run` (:func:`run_transaction`).
Every name is re-exported here; ``kernel.oda_hook`` reads and sets the one in
:mod:`.authentication`, which the ODA and CDA steps consult.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from .common import (
    AAC, AIP_CDA, AIP_CVM, AIP_DDA, AIP_ISSUER_AUTH, AIP_SDA, AIP_TRM, ARQC, CID_NAMES, REF_CDA, REF_GENAC,
    REF_INITIATE, REF_ODA, REF_READ, REF_RESTRICT, REF_SELECT, S_GENAC, S_INITIATE, S_ODA, S_ONLINE, S_READ,
    S_RESTRICT, S_SELECT, TC, abort, optional_module,
)
from .dol import CN_TAGS, NUMERIC_TAGS, build_dol, dol_values, fit
from .start import new_state
from .selection import PPSE, PSE, build_candidate_list, final_selection, select_application
from .initiate import MANDATORY, aip_text, initiate_application_processing, read_application_data
from .authentication import FAILED_BIT, choose_oda, offline_data_authentication
from .restrictions import processing_restrictions
from .generate_ac import cda_check, first_generate_ac
from .completion import online_and_completion
from .run import run_transaction
from . import authentication as _authentication


__all__ = [
    "AAC", "AIP_CDA", "AIP_CVM", "AIP_DDA", "AIP_ISSUER_AUTH", "AIP_SDA", "AIP_TRM", "ARQC", "CID_NAMES", "REF_CDA",
    "REF_GENAC", "REF_INITIATE", "REF_ODA", "REF_READ", "REF_RESTRICT", "REF_SELECT", "S_GENAC", "S_INITIATE", "S_ODA",
    "S_ONLINE", "S_READ", "S_RESTRICT", "S_SELECT", "TC", "abort", "optional_module", "CN_TAGS", "NUMERIC_TAGS",
    "build_dol", "dol_values", "fit", "new_state", "PPSE", "PSE", "build_candidate_list", "final_selection",
    "select_application", "MANDATORY", "aip_text", "initiate_application_processing", "read_application_data",
    "FAILED_BIT", "choose_oda", "offline_data_authentication", "processing_restrictions", "cda_check",
    "first_generate_ac", "online_and_completion", "run_transaction", "oda_hook",
]


def __getattr__(name: str) -> Any:
    # the hook lives in .authentication, where the ODA and CDA steps read it
    if name == "oda_hook":
        return _authentication.oda_hook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Kernel(ModuleType):
    """Setting ``kernel.oda_hook`` sets the hook the steps consult."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "oda_hook":
            _authentication.oda_hook = value
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Kernel

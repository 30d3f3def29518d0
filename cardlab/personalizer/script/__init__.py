"""Perso scripts: the personalization algorithm as data (background 004's "ScApp").

One interpreter, many card types: a perso script (YAML, ``docs/perso-scripts.md``)
is a list of card operations — SELECT, open an SCP03 secure channel, INSTALL,
STORE DATA of prepared DGIs, CREATE FILE, UPDATE BINARY / RECORD, PUT KEY,
SET STATUS, raw APDUs — each with the status words it expects and values drawn
from the card's prepared data (``${record.name}``, ``${app.dgis}``,
``${profile.card.kmc}``, ``${dek_encrypt(...)}``).

API used by the perso engine (re-exported here):

* :func:`load_script` — parse and validate (:class:`ScriptError` names the step
  and the field);
* :func:`execute` — run a script for one card over ``transmit``; the first
  unexpected status word (or any failure) raises :class:`StepFailed`;
* :func:`render` — the concrete APDU sequence for one card without a card
  (secrets masked);
* :func:`check` — problems found without a card, against a profile.

Secrets (:class:`cardlab.personalizer.batch.Sealed`, encrypted under the batch
transport key) are unsealed by the key store only while the step that sends
them is being built, and leave the host only re-encrypted for the card: under
the static DEK (encrypted STORE DATA blocks, ``dek_encrypt()``, PUT KEY) or
inside a C-DECRYPTION secure channel. Descriptions, events and errors never
hold a key, a PIN or a full PAN.

The modules, each importing only those above it:

=================  ==============================================================
``errors``         :class:`ScriptError`, :class:`StepFailed`
``expressions``    the ``${...}`` language: parsing, validation, templates
``values``         command data: clear bytes and :class:`~.values.Secret` pieces
``model``          :class:`Script`, :class:`Step`, the operations' vocabularies,
                   :class:`StepEvent`, :class:`ScriptResult`
``loader``         YAML → :class:`Script`, problems named by step and field path
``evaluation``     expressions evaluated for one card (references, functions)
``apdus``          command APDUs and the encodings of their fields
``storedata``      DGIs grouped into STORE DATA blocks
``walker``         steps walked, commands sent, status words checked
``operations``     one method per operation (the APDUs each sends)
``runner``         :func:`execute`, :func:`render`
``checks``         :func:`check` (without a card, against a profile)
``cli``            ``cardlab perso script render|check``
=================  ==============================================================
"""

from __future__ import annotations

from .checks import check, expected_dgis
from .cli import add_commands
from .errors import ScriptError, StepFailed
from .loader import load_script, parse_script
from .model import OPERATIONS, Script, ScriptResult, Step, StepEvent
from .runner import execute, pan_masker, render
from .storedata import STORE_DATA_BLOCK, plan_store_blocks
from .values import Data

__all__ = [
    "OPERATIONS",
    "STORE_DATA_BLOCK",
    "Data",
    "Script",
    "ScriptError",
    "ScriptResult",
    "Step",
    "StepEvent",
    "StepFailed",
    "add_commands",
    "check",
    "execute",
    "expected_dgis",
    "load_script",
    "parse_script",
    "pan_masker",
    "render",
]

"""The exit status of every ``cardlab`` command, defined once (README, "Exit status").

This module imports nothing: the tester may use it (pyproject's import-linter contract allows
it) without seeing any other part of cardlab — numbers cannot make it agree with the card.
"""

from __future__ import annotations

#: the command did what was asked and every verdict is good
OK = 0
#: a verdict: a card failed certification, a transaction was declined, a record failed perso
VERDICT = 1
#: a usage or input error: a bad option value, a missing/unreadable/malformed file
USAGE = 2
#: a card or reader fault: no card, a card that stops answering, a transaction aborted
FAULT = 3
#: certification incomplete: no card failed, but a critical rule could not run on some card
#: (a key missing from the key store, an option not given, a VERIFY not sent to protect the PIN)
INCOMPLETE = 4
#: an unexpected internal error (a bug: please report it; ``-v`` shows the traceback)
INTERNAL = 70
#: interrupted (Ctrl-C): 128 + SIGINT
INTERRUPTED = 130

MEANINGS: dict[int, str] = {
    OK: "success",
    VERDICT: "a verdict: a card failed, a transaction was declined, a record failed",
    USAGE: "a usage or input error (bad option, missing or malformed file)",
    FAULT: "a card or reader fault (no card, card not answering, transaction aborted)",
    INCOMPLETE: "certification incomplete: no card failed, but a critical rule could not run (the report names what was missing)",
    INTERNAL: "an internal error (a bug; -v shows the traceback)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}

"""The contactless terminal: Entry Point (EMV Contactless Book B) and kernels 2
(Book C-2, EMV mode) and 3 (Book C-3, qVSDC), with outcomes (Book A).

:mod:`.reader` (the terminal profile's ``contactless:`` section), :mod:`.qualifiers`
(TTQ, CTQ), :mod:`.entry_point` (pre-processing, PPSE, combinations, final
selection), :mod:`.kernel3`, :mod:`.kernel2`, :mod:`.common` (GPO, records),
:mod:`.outcome` and :mod:`.run` (:func:`run_contactless`).
"""

from __future__ import annotations

from .outcome import Outcome
from .reader import Combination, ContactlessReader, ReaderConfigError, parse_reader
from .run import run_contactless

__all__ = ["Combination", "ContactlessReader", "Outcome", "ReaderConfigError", "parse_reader", "run_contactless"]

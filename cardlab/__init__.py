"""cardlab: emulate, personalize and certify EMV chip cards.

One distribution, one import namespace. The parts (docs/architecture.md):

- :mod:`cardlab.emulator` — the card (``from cardlab.emulator import Card``);
- :mod:`cardlab.personalizer` — data preparation and the perso engine;
- :mod:`cardlab.tester` — the independent terminal and certifier (it imports no other part);
- :mod:`cardlab.cardspec` — encodings the card and the personalizer share;
- :mod:`cardlab.vectors` — the sample data (no code).

Public entry points for users' code: :mod:`cardlab.pytest_plugin` (the pytest fixtures, loaded
by the ``pytest11`` entry point), :mod:`cardlab.strategies` (hypothesis strategies),
``cardlab.emulator.Card``, ``cardlab.tester.kernel.run_transaction`` and
``cardlab.tester.certify.certify_card``; the command line is ``cardlab`` (:mod:`cardlab.cli`).

This module imports nothing: the tester is a subpackage and must not see the other parts.
"""

__version__ = "0.1.0"

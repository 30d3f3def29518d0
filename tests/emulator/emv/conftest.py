"""Fixtures of the EMV application tests; the kit itself is emvkit.py (a
module with a unique name, so that tests can import its types)."""

from __future__ import annotations

import pytest
from emvkit import Terminal, personalized_card

from cardlab.emulator import Card


@pytest.fixture
def card() -> Card:
    """A card with one personalized credit instance (emvkit.Profile defaults)."""
    return personalized_card()


@pytest.fixture
def term(card: Card) -> Terminal:
    return Terminal(card)

"""Where cardlab's sample data is: the package ``cardlab.vectors``.

``vectors/`` of a source checkout is that package (``pyproject.toml`` maps
it), and a wheel installs the files the commands need at run time (sample
issuer and terminal profiles, perso scripts, the TEST CA and TEST key store)
as its package data. So ``cardlab demo`` and the pytest plugin's default perso
script work the same from a checkout and from ``pip install cardlab``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["vectors_dir"]


def vectors_dir() -> Path:
    """The sample data directory (``vectors/`` of a checkout, or the installed ``cardlab.vectors``)."""
    root = Path(str(importlib.resources.files("cardlab.vectors")))
    if not root.is_dir():  # e.g. imported from a zip: the commands need real files
        raise FileNotFoundError(f"cardlab's sample data is not a directory ({root}): install cardlab unzipped")
    return root

"""Where cardlab's sample data is: the package ``cardlab_vectors``.

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
    """The sample data directory (``vectors/`` of a checkout, or the installed ``cardlab_vectors``)."""
    root = importlib.resources.files("cardlab_vectors")
    if not isinstance(root, Path):  # a zip import: the commands need real files
        raise RuntimeError(f"cardlab's sample data is not on a file system ({root}): install cardlab unzipped")
    return root

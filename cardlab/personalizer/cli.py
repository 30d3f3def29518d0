"""``cardlab perso …`` subcommands.

Each module adds its own subcommands (``add_commands(sub)``) so that the
prepare, script and engine parts stay in their modules; this file only
gathers them.
"""

from __future__ import annotations

import argparse
import importlib


#: modules that provide ``add_commands(sub: argparse._SubParsersAction) -> None``
PARTS = ("cardlab.personalizer.prepare.cli", "cardlab.personalizer.script.cli", "cardlab.personalizer.engine.cli",
         "cardlab.personalizer.embossing", "cardlab.personalizer.seal")


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    perso = groups.add_parser("perso", help="data preparation and personalization")
    sub = perso.add_subparsers(dest="command", required=True)
    for name in PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # that part is not there yet
        module.add_commands(sub)

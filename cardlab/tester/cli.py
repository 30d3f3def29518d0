"""``cardlab test …`` subcommands; each part adds its own.

``open_image`` is given by the ``cardlab`` command line: it turns a card image
path into a :class:`~tester.channel.CardChannel` (through cardlab's pyscard
reader plug-in, the same PC/SC code path as a physical card). The tester never
imports the emulator itself.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from .channel import CardChannel

#: modules providing ``add_commands(sub, open_image) -> None``
PARTS = ("cardlab.tester.transaction", "cardlab.tester.certify", "cardlab.tester.decode.cli")

ImageOpener = Callable[[str], CardChannel]


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], open_image: ImageOpener) -> None:
    test = groups.add_parser("test", help="the independent EMV terminal and certifier")
    sub = test.add_subparsers(dest="command", required=True)
    for name in PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_commands(sub, open_image)

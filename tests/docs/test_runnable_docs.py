"""The command blocks of README.md and docs/*.md that are marked runnable really run, and say what
the text claims: docs and tool cannot part.

A runnable block is an indented code block right after a marker line (blank lines between are allowed)::

    <!-- runnable {"expect": ["approved"], "exit": 0, "setup": "cardlab demo --cards 4 --out demo"} -->

The marker's JSON is optional (``<!-- runnable -->``): ``expect`` lists texts that must appear in
the block's output (stdout and stderr), ``absent`` texts that must not, ``exit`` is the status of
the block's last command (default 0; every earlier command must exit 0), ``setup`` a command run
once before the document's first block that names it. The block's lines are shell commands (``\\``
continues a line, ``#`` starts a comment) run with bash, in order, in a fresh directory per
document that holds ``vectors`` (a link to the checkout's sample data) — as a reader runs them
from the checkout. The blocks of one document share that directory, in document order.

A block whose first line starts with ``$ `` is a session: its ``$`` lines are the commands and
the lines under each are output the command must print (each line in order, compared without
surrounding blank space; a line with ``…`` is a summary and is not compared).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*runnable\s*(\{.*\})?\s*-->\s*$")
TIMEOUT = 300


@dataclass
class Block:
    doc: Path
    line: int
    commands: str
    options: dict[str, Any] = field(default_factory=dict)

    def session(self) -> list[tuple[str, list[str]]] | None:
        """(command, expected output lines) per ``$`` line, None for a block of plain commands."""
        if not self.commands.startswith("$ "):
            return None
        steps: list[tuple[str, list[str]]] = []
        for line in self.commands.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip() and "…" not in line:
                steps[-1][1].append(line.strip())
        return steps

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks_of(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = MARKER.match(lines[i])
        if not match:
            i += 1
            continue
        options = json.loads(match.group(1)) if match.group(1) else {}
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        start = j
        body: list[str] = []
        while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
            body.append(lines[j][4:])
            j += 1
        commands = "\n".join(body).strip()
        if not commands:
            raise AssertionError(f"{doc.name}:{i + 1}: a runnable marker without an indented block after it")
        found.append(Block(doc, start + 1, commands, options))
        i = j
    return found


ALL = [b for doc in DOCS for b in blocks_of(doc)]


def test_the_docs_have_runnable_blocks() -> None:
    assert len(ALL) >= 8
    assert {b.doc.name for b in ALL} >= {"README.md", "tutorial.md"}


def test_marker_parsing(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text('text\n<!-- runnable {"expect": ["a"]} -->\n\n    echo a \\\n      b\n    echo c\n\nmore\n')
    (block,) = blocks_of(doc)
    assert block.commands == "echo a \\\n  b\necho c" and block.options == {"expect": ["a"]} and block.line == 4


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    return env


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    return {}


def _workdir(doc: Path, workdirs: dict[Path, Path], factory: pytest.TempPathFactory) -> Path:
    if doc not in workdirs:
        work = factory.mktemp(doc.stem)
        (work / "vectors").symlink_to(ROOT / "vectors")
        workdirs[doc] = work
    return workdirs[doc]


_SET_UP: set[tuple[Path, str]] = set()


@pytest.mark.parametrize("block", ALL, ids=[b.name for b in ALL])
def test_runnable_block(block: Block, workdirs: dict[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    work = _workdir(block.doc, workdirs, tmp_path_factory)
    env = _env()
    setup = block.options.get("setup")
    if setup and (block.doc, setup) not in _SET_UP:
        done = subprocess.run(["bash", "-c", setup], cwd=work, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        assert done.returncode == 0, f"setup {setup!r}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        _SET_UP.add((block.doc, setup))
    steps = block.session()
    if steps is not None:
        for command, expected in steps:
            run = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                                 timeout=TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip
            assert run.returncode == 0, f"{block.name}: $ {command} exited {run.returncode}\n{run.stderr[-2000:]}"
            got = [ln.strip() for ln in run.stdout.splitlines()]
            at = 0
            for want in expected:
                while at < len(got) and got[at] != want:
                    at += 1
                assert at < len(got), f"{block.name}: $ {command}: the output lacks (in order) {want!r}\n{run.stdout}"
                at += 1
        return
    # every command but the last must succeed; the last one's status is the block's
    script = "set -o pipefail\n" + block.commands.replace("\\\n", " ")
    lines = [ln for ln in script.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    script = "\n".join(f"{ln} || exit 97" if k < len(lines) - 1 and k > 0 else ln for k, ln in enumerate(lines))
    run = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    out = run.stdout + run.stderr
    where = f"{block.name}: {block.commands}\n--- output ---\n{out[-3000:]}"
    assert run.returncode != 97, f"a command before the last failed\n{where}"
    assert run.returncode == block.options.get("exit", 0), f"exit {run.returncode}\n{where}"
    assert "Traceback" not in out, where
    for text in block.options.get("expect", []):
        assert text in out, f"expected {text!r}\n{where}"
    for text in block.options.get("absent", []):
        assert text not in out, f"did not expect {text!r}\n{where}"

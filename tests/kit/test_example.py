"""The documented example (examples/test_my_perso_script.py) runs as part of the repository's tests,
copied into a directory of its own as a user would copy it into their project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_example_passes_outside_the_checkout(tmp_path: Path) -> None:
    project = tmp_path / "my-project"
    project.mkdir()
    shutil.copy(ROOT / "examples" / "test_my_perso_script.py", project)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_perso_script.py"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout
    assert "TripleDES" not in run.stdout + run.stderr  # pyemv's deprecation warnings stay out of users' runs

"""An installed cardlab works outside the checkout: build the wheel, install it
into a fresh virtualenv, and from a directory outside the repository run
``cardlab demo``, ``cardlab test transaction`` with the default terminal and a
user's pytest project using the plugin's fixtures.

The wheel is built from a copy of the sources (no ``build/`` or ``*.egg-info``
in the checkout, no clash with a concurrent run) with ``--no-build-isolation
--no-index`` (the test extra brings setuptools>=70.1), and installed with
``--no-deps``: the new venv sees the dev environment's third-party packages
through a ``.pth`` file naming a directory of links to them, without the
editable cardlab (its finder, its dist-info), so only the wheel's cardlab is
importable. About 15 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ("cardlab",)
#: import names the wheel must not put on the import path (one namespace: cardlab)
FOREIGN = ("emulator", "cardspec", "personalizer", "tester", "cardlab_vectors")
#: what the commands read at run time (pyproject.toml's package-data for cardlab.vectors)
RUNTIME_DATA = {
    "profiles/visa-cvn18.yaml", "profiles/mastercard-cvn16.yaml",
    "terminals/default.yaml", "terminals/visa-cvn18.yaml", "terminals/mastercard-cvn16.yaml",
    "scripts/emv-cps.yaml", "scripts/badge.yaml", "test-ca.json", "test-keystore.json",
}  # fmt: skip
TIMEOUT = 300

USER_TEST = """
import importlib.resources

RECORD = {"pan": "4761739001010119", "psn": "01", "expiry": "2035-12", "name": "DOE/JANE", "pin": "1234"}


def test_installed_plugin(personalized_card, terminal):
    vectors = importlib.resources.files("cardlab.vectors")
    card = personalized_card(vectors / "profiles" / "visa-cvn18.yaml", RECORD, vectors / "test-keystore.json")
    assert terminal(card).certify().verdict == "pass"
    assert terminal(card).run_transaction(amount=1000).outcome.startswith("approved")
"""


def _run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)  # fmt: skip
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _source_copy(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (*CODE, "vectors"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _dependency_view(dest: Path) -> Path:
    """Links to every entry of the dev environment's site-packages except cardlab's own."""
    site = Path(sysconfig.get_paths()["purelib"])
    own = {*CODE}
    dest.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if (name in own or name.startswith(("__editable__", "cardlab-", "cardlab.")) or name.endswith(".pth")):
            continue
        (dest / name).symlink_to(entry)
    return dest


def _code_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for pkg in CODE for p in (ROOT / pkg).rglob("*.py")
            if "__pycache__" not in p.parts}  # fmt: skip


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1):
        pytest.fail(f"setuptools {setuptools.__version__} cannot build the wheel here: pip install -e '.[dev]'")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    # the wheel: every module of the code, and of the data only what the commands read
    src = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", dist, src], tmp_path, env)  # fmt: skip
    (wheel,) = dist.glob("cardlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = _code_modules() - names
    assert not missing, f"modules missing from the wheel (list their packages in pyproject.toml): {sorted(missing)}"
    data = {n.removeprefix("cardlab/vectors/") for n in names if n.startswith("cardlab/vectors/")}
    assert data == RUNTIME_DATA | {"__init__.py"}
    assert not any(n.startswith(("tests/", "vectors/")) for n in names)
    # one namespace: the wheel's only top-level import package is cardlab
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"cardlab"}, tops

    # a fresh venv with the wheel, seeing the dev environment's dependencies but not its cardlab
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python, bin_ = venv / "bin" / "python", venv / "bin"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env)
                .stdout.strip())  # fmt: skip
    (site / "cardlab-test-deps.pth").write_text(f"{_dependency_view(tmp_path / 'deps')}\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         tmp_path, env)  # fmt: skip

    work = tmp_path / "work"  # outside the repository (tmp_path is)
    work.mkdir()
    assert ROOT not in work.resolve().parents
    code = ("import cardlab, cardlab.vectors, cardlab.tester.terminal as t; "
            "print(cardlab.__file__, cardlab.vectors.__file__, t.TERMINALS_DIR, t.load_terminal().name)")
    where = _run([python, "-c", code], work, env).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where[:3]), where
    assert where[3] == "default"
    # the generic names are not importable from the wheel
    probe = "import importlib.util as u; print([n for n in %r if u.find_spec(n)])" % (FOREIGN,)
    assert _run([python, "-c", probe], work, env).stdout.strip() == "[]"

    demo = _run([bin_ / "cardlab", "demo", "--cards", "4", "--workers", "1", "--out", "demo"], work, env)
    assert "all cards pass" in demo.stdout, demo.stdout[-3000:]
    tx = _run([bin_ / "cardlab", "test", "transaction", "--card", "demo/trace-card.json"], work, env)
    assert tx.stdout.startswith("approved"), tx.stdout
    # perso prepare without --script takes the shipped EMV CPS script from the installed data
    _run([bin_ / "cardlab", "perso", "prepare", "--profile", "demo/profiles/visa-cvn18.yaml", "--records",
          "demo/records/visa-cvn18.csv", "--keys", "demo/keys.json", "--out", "batch"], work, env)  # fmt: skip
    assert "STORE DATA" in (work / "batch" / "script.yaml").read_text().upper().replace("_", " ")

    # a user's own project: the plugin's fixtures with the default perso script and terminal
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_mine.py").write_text(USER_TEST)
    out = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"], project, env).stdout
    assert "1 passed" in out, out

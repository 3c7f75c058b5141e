"""The local wheel directory the fresh-venv tests install from, so that they need no network.

``python -m tests.wheelhouse`` (scripts/test.sh runs it, after setup and before the
tests) downloads into ``.test-wheels/`` (or ``$COLLAPSE_EVAL_WHEELHOUSE``) every
distribution that tests/test_base_install.py installs: the base dependencies at the
versions the test pins (tests/lowest-base-constraints.txt, where the Python has wheels for
them) with everything they pull in, and lm-eval at its lowest supported version. The tests
then install with ``--no-index --find-links`` it. Downloading again is cheap: pip keeps
the files already there and answers from its cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from collapse_eval.extras import LOWEST_VERSIONS

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("COLLAPSE_EVAL_WHEELHOUSE", REPO / ".test-wheels"))
LOWEST_BASE = REPO / "tests" / "lowest-base-constraints.txt"
FILL_COMMAND = "python -m tests.wheelhouse (scripts/test.sh runs it)"


def lowest_lm_eval() -> str:
    return ".".join(str(part) for part in LOWEST_VERSIONS["lm-eval"])


def base_constraints() -> list[str]:
    """pip arguments pinning the base dependencies to their lower bounds, where the
    Python has wheels for them (numpy 1.26 stops at 3.12); the newest otherwise."""
    if sys.version_info >= (3, 13):
        return []
    return ["-c", str(LOWEST_BASE)]


def copy_source(dest: Path) -> Path:
    """What building the package reads, copied out so the build leaves the tree clean."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "collapse_eval",
        dest / "collapse_eval",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


def build_wheel(dest: Path) -> Path:
    """The package's wheel, built from a copy of the source into ``dest`` with this
    interpreter's setuptools (no build isolation: no index needed)."""
    with tempfile.TemporaryDirectory() as scratch:
        source = copy_source(Path(scratch) / "src")
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.run([*pip, "--no-index", "-w", str(dest), str(source)], check=True)
    (wheel,) = dest.glob("collapse_eval-*.whl")
    return wheel


def fill(wheelhouse: Path = WHEELHOUSE) -> None:
    """Download what the fresh-venv tests install into ``wheelhouse`` (from the index)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    download = [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheelhouse)]
    with tempfile.TemporaryDirectory() as scratch:
        wheel = build_wheel(Path(scratch))
        # the package's own wheel is only the list of what it depends on: the tests build
        # theirs from the source they test
        subprocess.run([*download, *base_constraints(), str(wheel)], check=True)
    (wheelhouse / wheel.name).unlink(missing_ok=True)
    subprocess.run([*download, "--no-deps", f"lm-eval=={lowest_lm_eval()}"], check=True)


if __name__ == "__main__":
    fill()
    print(f"wheels for the fresh-venv tests: {WHEELHOUSE}")

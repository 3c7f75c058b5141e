"""Under CI=true a skipped test fails the run (tests/conftest.py); locally it stays a skip.

Each case runs pytest in a subprocess on a throw-away test file, with this suite's
conftest loaded as a plugin (``-p tests.conftest``), and checks the exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUNTIME_SKIP = """
import pytest

def test_passes():
    assert 1 + 1 == 2

def test_skips():
    pytest.skip("needs a thing that is not installed")
"""

MARKER_SKIP = """
import pytest

pytestmark = pytest.mark.skipif(True, reason="needs chromium")

def test_browser():
    assert False
"""

COLLECTION_SKIP = """
import pytest

pytest.skip("module needs vllm", allow_module_level=True)

def test_never_collected():
    assert False
"""

XFAIL = """
import pytest

@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert 1 == 2
"""


def _pytest(tmp_path: Path, source: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_case.py").write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
        + [str(tmp_path / "test_case.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("source", [RUNTIME_SKIP, MARKER_SKIP, COLLECTION_SKIP])
def test_a_skip_fails_the_run_under_ci(tmp_path: Path, source: str) -> None:
    result = _pytest(tmp_path, source, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CI=true does not allow skips" in result.stdout
    assert " skipped" not in result.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("source", "ci"), [(RUNTIME_SKIP, None), (MARKER_SKIP, "false"), (COLLECTION_SKIP, None)]
)
def test_a_skip_is_a_skip_outside_ci(tmp_path: Path, source: str, ci: str | None) -> None:
    result = _pytest(tmp_path, source, ci=ci)
    assert result.returncode in (0, 5), result.stdout + result.stderr
    assert "skipped" in result.stdout.splitlines()[-1]


def test_an_expected_failure_is_not_a_skip(tmp_path: Path) -> None:
    result = _pytest(tmp_path, XFAIL, ci="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 xfailed" in result.stdout


def _fake_bin(tmp_path: Path, **scripts: str) -> Path:
    """A PATH directory holding only the given commands (shell scripts)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(0o755)
    return bin_dir


def _install_browser(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "install_browser.sh")],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_browser_fails_loudly_when_it_cannot_install(tmp_path: Path) -> None:
    # Not root, no sudo, no chromium: the browser tests could not run, so setup must fail.
    result = _install_browser(_fake_bin(tmp_path, id="echo 1000"))
    assert result.returncode == 1
    assert "Chromium/ChromeDriver are missing" in result.stderr
    assert "apt-get install chromium chromium-driver" in result.stderr


def test_install_browser_is_a_no_op_when_chromium_is_there(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, id="echo 1000", chromium="exit 0", chromedriver="exit 0")
    result = _install_browser(bin_dir)
    assert (result.returncode, result.stderr) == (0, "")

"""The console script ends without Python's teardown, yet loses nothing on the way out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import write_run_pair

# A module-level object whose finalizer speaks: Python's teardown runs it, os._exit does not.
PRELUDE = """
import atexit, sys, threading, time
from collapse_eval.cli import entry

class Finalized:
    def __del__(self):
        sys.stderr.write("finalized\\n")

keep = Finalized()
atexit.register(lambda: sys.stderr.write("atexit handler ran\\n"))
"""


def _entry(tmp_path: Path, argv: list[str], extra: str = "") -> subprocess.CompletedProcess[str]:
    script = tmp_path / "entry.py"
    body = (
        f"{PRELUDE}\n{textwrap.dedent(extra)}\nsys.argv = {['collapse-eval', *argv]!r}\nentry()\n"
    )
    script.write_text(body, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )


def test_the_exit_code_and_every_line_survive_and_atexit_handlers_still_run(
    tmp_path: Path,
) -> None:
    base, tuned = write_run_pair(tmp_path, tuned_score=0.0)
    out = tmp_path / "cmp"
    result = _entry(tmp_path, ["compare", str(base), str(tuned), "--out", str(out)])
    assert result.returncode == 1, result.stderr  # the domain lost 50 points: FAIL
    assert "verdict FAIL" in result.stdout
    # The last line printed reached the pipe (stdout was flushed before os._exit).
    assert result.stdout.rstrip().splitlines()[-1].startswith("summary: ")
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    assert "atexit handler ran" in result.stderr
    assert "finalized" not in result.stderr  # the interpreter was not torn down


def test_a_usage_error_still_exits_2(tmp_path: Path) -> None:
    result = _entry(tmp_path, ["gate", str(tmp_path / "missing.json")])
    assert result.returncode == 2
    assert "missing.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_thread_still_running_is_joined_by_an_ordinary_exit(tmp_path: Path) -> None:
    thread = """
    def late():
        time.sleep(0.5)
        sys.stderr.write("thread finished\\n")

    threading.Thread(target=late).start()
    """
    result = _entry(tmp_path, ["--version"], extra=thread)
    assert result.returncode == 0
    assert "collapse-eval" in result.stdout
    assert "thread finished" in result.stderr  # os._exit would have cut it off
    assert "finalized" in result.stderr  # the ordinary teardown ran

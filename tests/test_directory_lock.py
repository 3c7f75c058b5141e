"""directory_lock: a second writer of one directory waits, says so once, and goes on
when the first lets go (by leaving, or by dying)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collapse_eval.runner import LOCK_FILE, directory_lock
from tests.progresslog import Log

# The holder takes the lock with a bare flock, as versions before filelock did: the two
# must exclude each other, or an old and a new collapse-eval would write one directory.
HOLDER = """
import fcntl, sys
fh = open(sys.argv[1], "a")
fcntl.flock(fh, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the holder uses flock")


def _hold(directory: Path) -> subprocess.Popen[str]:
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory / LOCK_FILE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _writer(directory: Path, log: Log, entered: threading.Event) -> threading.Thread:
    def write() -> None:
        with directory_lock(directory, log):
            entered.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _wait_for_line(log: Log, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not log.lines:
        assert time.monotonic() < deadline, "the waiting line never came"
        time.sleep(0.01)


@pytest.mark.parametrize("release", ["leave", "SIGKILL"])
def test_a_held_lock_is_waited_for_with_one_line(tmp_path: Path, release: str) -> None:
    run_dir = tmp_path / "run"
    holder, log, entered = _hold(run_dir), Log(), threading.Event()
    try:
        thread = _writer(run_dir, log, entered)
        _wait_for_line(log)
        assert log.lines == [f"{run_dir}: another collapse-eval process is writing here; waiting"]
        assert not entered.is_set()
    finally:
        if release == "leave":
            holder.communicate("")
        else:
            holder.kill()
            holder.wait()
    thread.join(timeout=60)
    assert entered.is_set() and len(log.lines) == 1


def test_a_free_lock_is_taken_silently_and_can_be_taken_again(tmp_path: Path) -> None:
    log = Log()
    for _ in range(2):
        with directory_lock(tmp_path / "new" / "dir", log):
            assert (tmp_path / "new" / "dir" / LOCK_FILE).exists()
    assert log.lines == []
    holder = _hold(tmp_path / "new" / "dir")  # and released: another process gets it
    holder.communicate("")
    assert holder.returncode == 0

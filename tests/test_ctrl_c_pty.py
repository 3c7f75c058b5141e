"""Ctrl-C typed into a real terminal while `collapse-eval ... 2>&1 | tee log` runs.

test_signals sends the signal programmatically to a non-interactive shell. Here an
interactive bash runs in a pseudo-terminal, so the pipeline is the terminal's foreground
job (its own process group, as job control makes it) and the ^C byte written to the
terminal makes the line discipline send SIGINT to that whole group: `tee` dies at once,
and every later write of ours to the pipe meets a dead reader. That is where the exit
status was 141 (a broken pipe) instead of the 130 the README promises.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shlex
import signal
import time
from pathlib import Path

import pytest

from collapse_eval.records import read_records
from tests.conftest import cli_run_argv
from tests.testdata import rent_domain_file

N_ITEMS = 2000


def _drain(fd: int, seconds: float) -> bytes:
    """What the terminal showed for ``seconds`` (the pty must be read or bash blocks)."""
    out = b""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        try:
            out += os.read(fd, 4096)
        except OSError:
            break
    return out


class Terminal:
    """An interactive bash in a pseudo-terminal: typed lines, typed ^C."""

    def __init__(self, cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: a session leader with the pty as controlling terminal
            os.chdir(cwd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            env = {**os.environ, "PS1": "$ ", "PYTHONUNBUFFERED": "1"}
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.pid, self.fd = pid, fd
        _drain(fd, 0.5)

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the line discipline signals the foreground group

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):  # already gone
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def _wait_for(path: Path, lines: int, term: Terminal, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        _drain(term.fd, 0.1)
    pytest.fail(f"{path} did not reach {lines} line(s) in time")


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_under_tee_exits_130_and_keeps_what_was_computed(
    tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    argv = cli_run_argv(tiny_model, rent_domain_file(tmp_path / "d.jsonl", N_ITEMS, "k"), out)
    argv.remove("--no-cache")  # the request cache's last line is written after the ^C
    argv += ["--cache-dir", str(tmp_path / "cache")]
    term = Terminal(tmp_path)
    try:
        term.type(f"{shlex.join(argv)} 2>&1 | tee log.txt")
        _wait_for(out / "records.jsonl", 16, term)
        term.ctrl_c()
        term.type('echo "${PIPESTATUS[0]} ${PIPESTATUS[1]}" > status.txt')
        _wait_for(tmp_path / "status.txt", 1, term, seconds=120)
    finally:
        term.close()
    ours, tee = (tmp_path / "status.txt").read_text().split()
    assert tee == "130"  # the terminal's SIGINT killed tee too: the pipe had no reader
    assert ours == "130"  # interrupted, not "broken pipe" (141)
    saved = read_records(out / "records.jsonl")
    assert 16 <= len(saved) < N_ITEMS
    assert (out / "records.jsonl").read_bytes().endswith(b"\n")

"""Ctrl-C and SIGTERM on a real `run` piped through a real `tee`, and a reader that leaves.

The shell pipeline is the one users type (`collapse-eval run ... | tee log`); the signal
goes to the whole process group, as a terminal's Ctrl-C or a CI cancel does, so `tee` dies
too and our last words must not depend on stdout.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collapse_eval.records import load_run, read_records
from tests.conftest import cli_run_argv, default_sigint, write_run_pair

N_ITEMS = 2000


def _domain_file(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(N_ITEMS):
            item = {
                "id": f"k{i}",
                "task_type": "intent",
                "output_format": "label",
                "prompt": f"Customer {i}: I want to rent. Intent:",
                "reference": "rent",
            }
            fh.write(json.dumps(item) + "\n")
    return path


def _pipeline(command: str, tmp_path: Path, *, stderr_into_pipe: bool) -> str:
    """`command | tee log` in bash; prints our exit status (PIPESTATUS[0]) to status.txt.

    ``trap : TERM`` keeps bash alive through a SIGTERM to the group so it can report the
    status (its children still get the default action, or their own handler)."""
    redirect = "2>&1" if stderr_into_pipe else f"2>{shlex.quote(str(tmp_path / 'err.txt'))}"
    status = shlex.quote(str(tmp_path / "status.txt"))
    log = shlex.quote(str(tmp_path / "log.txt"))
    return (
        f"trap : TERM; set -o pipefail; {command} {redirect} | tee {log} >/dev/null; "
        f'echo "${{PIPESTATUS[0]}}" > {status}'
    )


def _interrupt_when_records(
    script: str, records: Path, sig: signal.Signals, at_least: int = 16
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        ["bash", "-c", script], env=env, start_new_session=True, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if records.exists() and records.read_bytes().count(b"\n") >= at_least:
                break
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be interrupted")
            time.sleep(0.05)
        else:
            pytest.fail("no records appeared in time")
        os.killpg(proc.pid, sig)  # the whole group: python and tee, as a terminal does
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_with_tee_exits_130_and_says_so(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = shlex.join(cli_run_argv(tiny_model, _domain_file(tmp_path / "d.jsonl"), out))
    script = _pipeline(command, tmp_path, stderr_into_pipe=False)
    _interrupt_when_records(script, out / "records.jsonl", signal.SIGINT)

    assert (tmp_path / "status.txt").read_text().strip() == "130"
    err = (tmp_path / "err.txt").read_text()
    assert "interrupted (Ctrl-C): what was computed is saved" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert 16 <= len(read_records(out / "records.jsonl")) < N_ITEMS


@pytest.mark.slow
def test_ctrl_c_with_stderr_into_the_dead_pipe_still_exits_130(
    tiny_model: Path, tmp_path: Path
) -> None:
    # `2>&1 | tee log`: the message has nowhere to go, but the exit code must still be 130
    # (it was 1, from click's broken-pipe handling, when writing the message failed).
    out = tmp_path / "run"
    command = shlex.join(cli_run_argv(tiny_model, _domain_file(tmp_path / "d.jsonl"), out))
    script = _pipeline(command, tmp_path, stderr_into_pipe=True)
    _interrupt_when_records(script, out / "records.jsonl", signal.SIGINT)

    assert (tmp_path / "status.txt").read_text().strip() == "130"


@pytest.mark.slow
def test_sigterm_exits_143_says_so_and_leaves_a_resumable_run(
    tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = shlex.join(cli_run_argv(tiny_model, _domain_file(tmp_path / "d.jsonl"), out))
    script = _pipeline(command, tmp_path, stderr_into_pipe=False)
    _interrupt_when_records(script, out / "records.jsonl", signal.SIGTERM)

    assert (tmp_path / "status.txt").read_text().strip() == "143"
    err = (tmp_path / "err.txt").read_text()
    assert "terminated (SIGTERM): what was computed is saved" in err
    assert "Traceback" not in err
    saved = read_records(out / "records.jsonl")
    assert 16 <= len(saved) < N_ITEMS
    assert (out / "records.jsonl").read_bytes().endswith(b"\n")  # no torn line
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    # Resumable: the run directory loads, holds what was saved, and is marked incomplete
    # (the next `run` with the same command does only the rest; see test_resume_kill).
    run = load_run(out)
    assert run.manifest.model_fingerprint is not None
    assert run.records[: len(saved)] == tuple(saved)


def _summary_dir(tmp_path: Path) -> Path:
    from collapse_eval.cli import main

    base, tuned = write_run_pair(tmp_path, tuned_score=1.0)
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) == 0
    return out


def test_gate_into_head_keeps_its_exit_code_without_a_traceback(tmp_path: Path) -> None:
    out = _summary_dir(tmp_path)
    gate = shlex.join([sys.executable, "-m", "collapse_eval", "gate", str(out / "summary.json")])
    # `head -c 0` closes the pipe at once: every write of ours meets a dead reader.
    script = f"set -o pipefail; {gate} 2>{tmp_path / 'err.txt'} | head -c 0; exit $?"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "BrokenPipe" not in err, err
    assert result.returncode == 0, err  # the verdict (pass), not a broken-pipe failure

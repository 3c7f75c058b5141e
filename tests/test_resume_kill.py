"""Kill a real `collapse-eval run` subprocess mid-run (SIGKILL, then Ctrl-C) and resume it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from collapse_eval.records import read_records
from tests.conftest import cli_run_argv, default_sigint

N_ITEMS = 320


def _domain_file(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(N_ITEMS):
            fh.write(
                json.dumps(
                    {
                        "id": f"k{i}",
                        "task_type": "intent",
                        "output_format": "label",
                        "prompt": f"Customer {i}: I want to rent. Intent:",
                        "reference": "rent",
                    }
                )
                + "\n"
            )
    return path


def _start_and_wait_for_records(
    cmd: list[str], records: Path, at_least: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if records.exists() and records.read_bytes().count(b"\n") >= at_least:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {proc.stdout.read()!r}")  # type: ignore[union-attr]
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no records appeared in time")


@pytest.mark.slow
def test_sigkill_then_sigint_then_resume(tiny_model: Path, tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl")
    out = tmp_path / "run"
    records = out / "records.jsonl"
    cmd = cli_run_argv(tiny_model, domain, out)

    proc = _start_and_wait_for_records(cmd, records, at_least=1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after_kill = len(read_records(records))
    assert 0 < after_kill < N_ITEMS

    proc = _start_and_wait_for_records(cmd, records, at_least=after_kill + 1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate()[0].decode()
    assert proc.returncode == 130, output
    assert "resume" in output and "Traceback" not in output
    after_interrupt = read_records(records)
    assert after_kill < len(after_interrupt) < N_ITEMS

    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    final = read_records(records)
    ids = [r.item_id for r in final]
    assert len(ids) == len(set(ids)) == N_ITEMS
    # Records written before the interruptions are kept as they were, not recomputed.
    assert final[: len(after_interrupt)] == after_interrupt
    assert json.loads((out / "manifest.json").read_text())["complete"] is True

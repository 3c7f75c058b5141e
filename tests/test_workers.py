"""process_pool: workers stop with their parent instead of being awaited."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from collapse_eval.errors import Terminated
from collapse_eval.workers import process_pool


def _sleep_then_touch(marker: str, seconds: float) -> int:
    time.sleep(seconds)
    Path(marker).write_text("finished", encoding="utf-8")
    return os.getpid()


def _pid() -> int:
    return os.getpid()


def test_leaving_the_block_by_an_exception_terminates_running_workers(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    started = time.monotonic()
    with pytest.raises(Terminated), process_pool(2) as pool:
        pids = {pool.submit(_pid).result() for _ in range(4)}
        future = pool.submit(_sleep_then_touch, str(marker), 30.0)
        time.sleep(1.0)  # the job is running
        assert not future.done()
        raise Terminated("SIGTERM")
    # ProcessPoolExecutor alone would wait the 30 s job out and then write the marker
    assert time.monotonic() - started < 20
    assert not marker.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_normal_exit_waits_for_the_jobs(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    with process_pool(1) as pool:
        pool.submit(_sleep_then_touch, str(marker), 0.5)
    assert marker.read_text(encoding="utf-8") == "finished"

"""process_pool stops workers that are still starting, not only those running a job."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from collapse_eval.workers import process_pool
from tests.test_workers import _sleep_then_touch


def test_workers_still_starting_are_terminated_too(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    before = set(multiprocessing.active_children())
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), process_pool(2) as pool:
        # raised at once: the spawned workers are still importing, none has its job yet
        pool.submit(_sleep_then_touch, str(marker), 30.0)
        assert len(set(multiprocessing.active_children()) - before) >= 1
        raise KeyboardInterrupt  # as a Ctrl-C in the parent
    assert time.monotonic() - started < 20  # not the 30 s job waited out
    assert set(multiprocessing.active_children()) - before == set()
    assert not marker.exists()

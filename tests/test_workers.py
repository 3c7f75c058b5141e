"""process_pool: workers stop with their parent instead of being awaited."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collapse_eval.errors import Terminated
from collapse_eval.workers import Task, process_pool, run_tasks


def _sleep_then_touch(marker: str, seconds: float, started: str | None = None) -> int:
    if started is not None:
        Path(started).write_text("running", encoding="utf-8")
    time.sleep(seconds)
    Path(marker).write_text("finished", encoding="utf-8")
    return os.getpid()


def _wait_for(done: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    """Poll ``done`` until it holds: synchronisation with another process, not a guess of
    how long it takes to start on a loaded machine (the timeout only bounds a failure)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


def _pid() -> int:
    return os.getpid()


def test_leaving_the_block_by_an_exception_terminates_running_workers(tmp_path: Path) -> None:
    marker, running = tmp_path / "finished", tmp_path / "running"
    started = time.monotonic()
    with pytest.raises(Terminated), process_pool(2) as pool:
        pids = {pool.submit(_pid).result() for _ in range(4)}
        future = pool.submit(_sleep_then_touch, str(marker), 30.0, str(running))
        _wait_for(running.exists, "the job to start")
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


def _log_lines(log: str) -> list[str]:
    return Path(log).read_text(encoding="utf-8").splitlines() if Path(log).exists() else []


def _stamp(log: str, name: str, seconds: float, wait_for: tuple[str, ...] = ()) -> str:
    """Append 'start NAME' and 'end NAME' lines to ``log`` around a sleep; with
    ``wait_for``, end only once ``log`` holds those lines too (another task has started)."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"start {name}\n")
    _wait_for(lambda: set(wait_for) <= set(_log_lines(log)), f"{wait_for} in the log")
    time.sleep(seconds)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"end {name}\n")
    return name.upper()


def _fail(message: str) -> None:
    raise ValueError(message)


@pytest.mark.parametrize("workers", [1, 2])
def test_tasks_start_after_what_they_wait_for(tmp_path: Path, workers: int) -> None:
    log = str(tmp_path / "log")
    # With two workers, base ends only once side has started: side (which waits for
    # nothing) must run beside it, however slowly the second worker starts.
    beside = ("start side",) if workers == 2 else ()
    tasks = [
        Task("base", _stamp, (log, "base", 0.0, beside)),
        Task("side", _stamp, (log, "side", 0.1)),
        Task("ft", _stamp, (log, "ft", 0.1), after=("base",)),
        Task("eval-ft", _stamp, (log, "eval-ft", 0.0), after=("ft",)),
    ]
    finished: list[str] = []
    results = run_tasks(tasks, workers, on_done=lambda task, _: finished.append(task.name))
    assert results == {"base": "BASE", "side": "SIDE", "ft": "FT", "eval-ft": "EVAL-FT"}
    lines = Path(log).read_text(encoding="utf-8").splitlines()
    assert lines.index("end base") < lines.index("start ft") < lines.index("end ft")
    assert lines.index("end ft") < lines.index("start eval-ft")
    assert sorted(finished) == sorted(results)
    if workers == 2:  # side ran while base was running
        assert lines.index("start side") < lines.index("end base")
    else:  # list order, one at a time
        assert lines == [
            f"{w} {n}" for n in ("base", "side", "ft", "eval-ft") for w in ("start", "end")
        ]


def test_the_earliest_listed_ready_task_starts_first(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    # a and b each end only once both have started: on a loaded machine a first worker
    # that finishes a before the second worker is up must not let c start before b.
    both = ("start a", "start b")
    tasks = [Task(n, _stamp, (log, n, 0.0, both)) for n in ("a", "b")]
    tasks += [Task(n, _stamp, (log, n, 0.0)) for n in ("c", "d")]
    run_tasks(tasks, 2)
    starts = [line for line in Path(log).read_text().splitlines() if line.startswith("start")]
    assert starts[:2] in (["start a", "start b"], ["start b", "start a"])
    assert starts[2:] in (["start c", "start d"], ["start d", "start c"])


def test_a_failing_task_raises_and_its_dependants_never_run(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    tasks = [
        Task("bad", _fail, ("broken weights",)),
        Task("after-bad", _stamp, (log, "after-bad", 0.0), after=("bad",)),
    ]
    with pytest.raises(ValueError, match="broken weights"):
        run_tasks(tasks, 2)
    assert not Path(log).exists()


def test_a_task_may_only_wait_for_an_earlier_task() -> None:
    with pytest.raises(ValueError, match="not an earlier task"):
        run_tasks([Task("ft", _pid, after=("base",)), Task("base", _pid)], 2)
    with pytest.raises(ValueError, match="two tasks are named 'x'"):
        run_tasks([Task("x", _pid), Task("x", _pid)], 1)

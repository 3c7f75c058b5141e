"""Worker processes that stop with their parent.

``ProcessPoolExecutor`` on its own waits, on the way out of its ``with`` block, for every
job already running: a Ctrl-C or SIGTERM during the demo's fine-tunes or evaluations would
print its message only after minutes. :func:`process_pool` terminates the workers instead
when the block is left by an exception (the typed ``Interrupted``/``Terminated`` included),
and its workers ignore SIGINT, so a Ctrl-C in a terminal (sent to the whole process group)
is handled once, by the parent, without a traceback per worker.

:func:`run_tasks` runs a small graph of jobs on such a pool: each job starts as soon as
the jobs it waits for are done, so the demo evaluates a checkpoint while the next one is
still training instead of waiting for the slowest fine-tune.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any, cast


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _RecordingContext:
    """A multiprocessing context that keeps every Process it makes: the pool's workers,
    known from the moment they are made (before they start), through public interfaces
    only (``mp_context`` takes any context; Python 3.14's ``terminate_workers`` is newer
    than the Pythons supported here)."""

    def __init__(self, base: Any) -> None:
        self._base = base
        self.processes: list[Any] = []

    def Process(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 (the context's name)
        process = self._base.Process(*args, **kwargs)
        self.processes.append(process)
        return process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A spawn-context pool of ``workers`` processes, terminated (not awaited) when the
    ``with`` block raises; on a normal exit it shuts down as usual."""
    context = _RecordingContext(multiprocessing.get_context("spawn"))
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=cast(BaseContext, context),  # duck-typed: delegates the rest
        initializer=_ignore_sigint,
    )
    try:
        yield pool
    except BaseException:
        # ProcessPoolExecutor stops no running job of its own: its workers are stopped here.
        for process in list(context.processes):
            if process.is_alive():
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@dataclass(frozen=True, slots=True)
class Task:
    """One job of :func:`run_tasks`: ``fn(*args)`` (picklable) once every task named in
    ``after`` has finished."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    after: tuple[str, ...] = ()


def _check_graph(tasks: Sequence[Task]) -> None:
    """Unique names, and every ``after`` names an earlier task (so list order is a valid
    order to run them in, and there is no cycle)."""
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ValueError(f"two tasks are named {task.name!r}")
        missing = [name for name in task.after if name not in seen]
        if missing:
            raise ValueError(f"task {task.name!r} waits for {missing}, not an earlier task")
        seen.add(task.name)


def run_tasks(
    tasks: Sequence[Task],
    workers: int,
    *,
    on_done: Callable[[Task, Any], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``tasks`` and return name -> result, calling ``on_done(task, result)`` as each
    finishes (in this process).

    With ``workers`` > 1 they run in a :func:`process_pool`; a task starts as soon as the
    tasks it waits for are done, the earliest-listed ready task first. With one worker they
    run here, in list order. ``tick`` is called about twice a second while waiting (to relay
    the workers' progress lines). The first task to raise stops the others (its exception
    propagates; running workers are terminated).
    """
    _check_graph(tasks)
    results: dict[str, Any] = {}
    if workers <= 1 or not tasks:
        for task in tasks:
            results[task.name] = task.fn(*task.args)
            if on_done is not None:
                on_done(task, results[task.name])
        return results
    waiting = list(tasks)
    running: dict[Future[Any], Task] = {}
    with process_pool(workers) as pool:
        while waiting or running:
            ready = [t for t in waiting if all(name in results for name in t.after)]
            for task in ready[: max(0, workers - len(running))]:
                waiting.remove(task)
                running[pool.submit(task.fn, *task.args)] = task
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            if tick is not None:
                tick()
            for future in done:
                task = running.pop(future)
                results[task.name] = future.result()
                if on_done is not None:
                    on_done(task, results[task.name])
    return results

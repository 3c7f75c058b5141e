"""Worker processes that stop with their parent.

``ProcessPoolExecutor`` on its own waits, on the way out of its ``with`` block, for every
job already running: a Ctrl-C or SIGTERM during the demo's fine-tunes or evaluations would
print its message only after minutes. :func:`process_pool` terminates the workers instead
when the block is left by an exception (the typed ``Interrupted``/``Terminated`` included),
and its workers ignore SIGINT, so a Ctrl-C in a terminal (sent to the whole process group)
is handled once, by the parent, without a traceback per worker.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A spawn-context pool of ``workers`` processes, terminated (not awaited) when the
    ``with`` block raises; on a normal exit it shuts down as usual."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)
    try:
        yield pool
    except BaseException:
        # ProcessPoolExecutor has no public way to stop running jobs; its process table
        # (``_processes``, pid -> Process) has been there since Python 3.2.
        table = dict(getattr(pool, "_processes", None) or {})
        for process in table.values():
            if process.is_alive():
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

"""Progress reporting: rich bars on a terminal, plain log lines otherwise, nothing with --quiet.

Library code receives a ``Progress`` and calls ``log`` / ``bar``; it never prints directly.
Bars count engine requests: a caller wraps each engine call in :func:`counting_requests`
and engines call :func:`requests_answered` after each batch they finish, so a bar moves
while one long engine call (a whole lm-eval task) runs instead of jumping at its end.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import IO, Any, Protocol

Clock = Callable[[], float]


class Bar(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def expect(self, n: int) -> None:
        """``n`` more requests are coming (the total grows; an unknown total starts at 0)."""
        ...


class Progress(Protocol):
    def log(self, message: str) -> None: ...

    def bar(self, description: str, total: int | None) -> AbstractContextManager[Bar]: ...


class QuietBar:
    """A bar that shows nothing (``--quiet``, tests, an adapter outside any task)."""

    def advance(self, n: int = 1) -> None:
        pass

    def expect(self, n: int) -> None:
        pass


class _RequestCount:
    """The requests of one engine call: reported ones are passed on, capped at the call's size."""

    def __init__(self, advance: Callable[[int], None], size: int) -> None:
        self.advance, self.left = advance, size

    def add(self, n: int) -> None:
        n = min(n, self.left)
        if n > 0:
            self.left -= n
            self.advance(n)


_COUNTING: ContextVar[_RequestCount | None] = ContextVar("collapse_eval_requests", default=None)


@contextmanager
def counting_requests(advance: Callable[[int], None], size: int) -> Iterator[None]:
    """Count the ``size`` requests of the engine call made inside the block on ``advance``.

    Batches the engine reports (:func:`requests_answered`) are counted as they finish; the
    rest (an engine that reports nothing, answers from a cache) when the block ends
    normally. An inner block (a wrapper's own call) does not count twice: only the
    outermost one counts.
    """
    if _COUNTING.get() is not None:
        yield
        return
    count = _RequestCount(advance, size)
    token = _COUNTING.set(count)
    try:
        yield
    finally:
        _COUNTING.reset(token)
    count.add(count.left)


def requests_answered(n: int) -> None:
    """Engines call this after each batch of ``n`` requests; nothing happens outside
    :func:`counting_requests`."""
    count = _COUNTING.get()
    if count is not None:
        count.add(n)


class QuietProgress:
    """Says nothing (``--quiet``, tests)."""

    def log(self, message: str) -> None:
        pass

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        yield QuietBar()


# Seconds between plain progress lines of one bar while its count moves, and between
# reminders while it does not (one long engine call without batch reports).
PLAIN_INTERVAL_S = 10.0
PLAIN_QUIET_INTERVAL_S = 60.0


class _PlainBar:
    """Progress lines for one unit of work: one when it starts, one when it ends, and in
    between one when the count moved and ``interval`` seconds passed since the last line,
    or a reminder every ``quiet_interval`` seconds while it did not (a heartbeat thread
    writes both, so a CI log shows a long engine call is alive without repeating itself)."""

    def __init__(
        self,
        stream: IO[str],
        description: str,
        total: int | None,
        interval: float,
        *,
        quiet_interval: float = PLAIN_QUIET_INTERVAL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self.stream, self.description, self.total = stream, description, total
        self.interval, self.quiet_interval, self.clock = interval, quiet_interval, clock
        self.done = 0
        self.start = clock()
        self._last = self.start
        self._printed = 0  # the count the last line showed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True)

    def open(self) -> None:
        self._write()
        self._heartbeat.start()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            finished = self.total is not None and self.done >= self.total
            if finished or self.clock() - self._last >= self.interval:
                self._write()

    def expect(self, n: int) -> None:
        with self._lock:
            self.total = (self.total or 0) + n

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        with self._lock:
            if self.done != self._printed:
                self._write()

    def _beat(self) -> None:
        # At most 20 checks a second, so that a tiny interval does not spin a core.
        while not self._stop.wait(max(self.interval / 4, 0.05)):
            self.beat()

    def beat(self) -> None:
        """Write a line if one is due: the count moved, or nothing was said for a while."""
        with self._lock:
            if self._stop.is_set():
                return
            quiet_for = self.clock() - self._last
            moved = self.done != self._printed
            if quiet_for >= (self.interval if moved else self.quiet_interval):
                self._write()

    def _write(self) -> None:
        self._last = self.clock()
        self._printed = self.done
        try:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed log stream must not end the run

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        rate = f", {self.done / elapsed:.1f} requests/s" if self.done else ""
        return f"{self.description}: {self.done}{of} requests{rate}, {elapsed:.0f}s"


class PlainProgress:
    """Log lines for CI logs and pipes: one line per step; a bar says when it starts, then
    at most every ``interval`` seconds while its count moves (every ``quiet_interval``
    seconds while it does not), then its end."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval: float = PLAIN_INTERVAL_S,
        *,
        quiet_interval: float = PLAIN_QUIET_INTERVAL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.interval, self.quiet_interval, self.clock = interval, quiet_interval, clock

    def log(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        bar = _PlainBar(
            self.stream,
            description,
            total,
            self.interval,
            quiet_interval=self.quiet_interval,
            clock=self.clock,
        )
        bar.open()
        try:
            yield bar
        finally:
            bar.close()


class RichProgress:
    """rich progress bars (requests, requests/s, ETA) for interactive terminals."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False)

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBars
        from rich.text import Text

        class RequestsPerSecond(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text("  -- requests/s" if speed is None else f"{speed:6.1f} requests/s")

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RequestsPerSecond(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with RichBars(*columns, console=self.console, transient=False) as bars:
            task_id = bars.add_task(description, total=total)

            class _RichBar:
                def advance(self, n: int = 1) -> None:
                    bars.advance(task_id, n)

                def expect(self, n: int) -> None:
                    total = next(t.total for t in bars.tasks if t.id == task_id)
                    bars.update(task_id, total=(total or 0) + n)

            yield _RichBar()


class _StepBar(_PlainBar):
    """A plain bar that also writes when the count moved by ``step`` of the total."""

    def __init__(
        self, stream: IO[str], description: str, total: int | None, interval: float, step: float
    ) -> None:
        super().__init__(stream, description, total, interval)
        self.step = step

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            total = self.total
            moved = total is not None and self.done - self._printed >= self.step * total
            finished = total is not None and self.done >= total
            if finished or moved or time.monotonic() - self._last >= self.interval:
                self._write()


class StepProgress(PlainProgress):
    """Plain lines for long runs counted in requests (``data build``): a bar's start, then
    a line when the count moved by ``step`` of the total or, without that, at most once
    per ``interval`` seconds, then its end."""

    def __init__(
        self, stream: IO[str] | None = None, interval: float = 60.0, step: float = 0.1
    ) -> None:
        super().__init__(stream, interval)
        self.step = step

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        bar = _StepBar(self.stream, description, total, self.interval, self.step)
        bar.open()
        try:
            yield bar
        finally:
            bar.close()


def make_progress(
    quiet: bool, plain: type[PlainProgress] = PlainProgress
) -> QuietProgress | PlainProgress | RichProgress:
    if quiet:
        return QuietProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return plain()

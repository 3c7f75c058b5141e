"""Progress reporting: rich bars on a terminal, plain log lines otherwise, nothing with --quiet.

Library code receives a ``Progress`` and calls ``log`` / ``bar``; it never prints directly.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any, Protocol


class Bar(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Progress(Protocol):
    def log(self, message: str) -> None: ...

    def bar(self, description: str, total: int | None) -> AbstractContextManager[Bar]: ...


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass


class QuietProgress:
    """Says nothing (``--quiet``, tests)."""

    def log(self, message: str) -> None:
        pass

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        yield _NullBar()


class _PlainBar:
    """Progress lines for one unit of work: one when it starts, then at most one every
    ``interval`` seconds (from advances, or a heartbeat while a long engine call runs, so
    a CI log never goes quiet), and one when it ends."""

    def __init__(
        self, stream: IO[str], description: str, total: int | None, interval: float
    ) -> None:
        self.stream, self.description, self.total = stream, description, total
        self.interval = interval
        self.done = 0
        self.start = time.monotonic()
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
            if finished or time.monotonic() - self._last >= self.interval:
                self._write()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        with self._lock:
            if self.done != self._printed:
                self._write()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval / 4):
            with self._lock:
                if not self._stop.is_set() and time.monotonic() - self._last >= self.interval:
                    self._write()

    def _write(self) -> None:
        self._last = time.monotonic()
        self._printed = self.done
        try:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed log stream must not end the run

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        rate = f", {self.done / elapsed:.1f} items/s" if self.done else ""
        return f"{self.description}: {self.done}{of} items{rate}, {elapsed:.0f}s"


# Seconds between plain progress lines of one bar (advances and heartbeats alike).
PLAIN_INTERVAL_S = 10.0


class PlainProgress:
    """Log lines for CI logs and pipes: one line per step; a bar says when it starts, then
    at most every ``interval`` seconds (a heartbeat during long engine calls), then its end."""

    def __init__(self, stream: IO[str] | None = None, interval: float = PLAIN_INTERVAL_S) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval

    def log(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        bar = _PlainBar(self.stream, description, total, self.interval)
        bar.open()
        try:
            yield bar
        finally:
            bar.close()


class RichProgress:
    """rich progress bars (items, items/s, ETA) for interactive terminals."""

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

        class ItemsPerSecond(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text("  -- items/s" if speed is None else f"{speed:6.1f} items/s")

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            ItemsPerSecond(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with RichBars(*columns, console=self.console, transient=False) as bars:
            task_id = bars.add_task(description, total=total)

            class _RichBar:
                def advance(self, n: int = 1) -> None:
                    bars.advance(task_id, n)

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

"""Progress reporting: rich bars on a terminal, plain log lines otherwise, nothing with --quiet.

Library code receives a ``Progress`` and calls ``log`` / ``bar``; it never prints directly.
"""

from __future__ import annotations

import sys
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
    def __init__(self, stream: IO[str], description: str, total: int | None) -> None:
        self.stream, self.description, self.total = stream, description, total
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= 10 or (self.total is not None and self.done >= self.total):
            self._last = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.description}: {self.done}{of} items, {rate:.1f} items/s, {elapsed:.0f}s"


class PlainProgress:
    """Log lines for CI logs and pipes: one line per step, bar updates at most every 10 s."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def log(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Bar]:
        bar = _PlainBar(self.stream, description, total)
        yield bar
        if bar.done and bar._last == 0.0:
            self.stream.write(bar.line() + "\n")


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


def make_progress(quiet: bool) -> QuietProgress | PlainProgress | RichProgress:
    if quiet:
        return QuietProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()

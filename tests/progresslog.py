"""A Progress for tests that keeps the log lines (its bars say nothing)."""

from __future__ import annotations

from typing import Any


class Log:
    """A Progress that keeps the log lines (bars say nothing)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def bar(self, label: str, total: int | None) -> Any:
        from collapse_eval.progress import QuietProgress

        return QuietProgress().bar(label, total)

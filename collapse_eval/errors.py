"""Error hierarchy. Each error owns its exit code and its user-facing wording.

Library code raises these; only ``cli.py`` turns them into messages and exit codes.
Exit codes (docs/formats.md#exit-codes): 1 gate failed, 2 usage/config/input, 3 runtime failure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


class CollapseEvalError(Exception):
    """Base class: ``str(err)`` is the complete message shown to the user."""

    exit_code = EXIT_RUNTIME


class UsageError(CollapseEvalError):
    """Bad arguments, configuration or input files (exit 2)."""

    exit_code = EXIT_USAGE


class InputError(UsageError):
    """A problem in one place of one input file: names the file, line and field."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.field:
            where += f": field '{self.field}'"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class InputErrors(UsageError):
    """Several problems found in one pass over a file; all are reported at once."""

    def __init__(self, path: str | Path, problems: list[InputError]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {len(problems)} problem(s):"]
        lines += [f"  {p.render()}" for p in problems]
        super().__init__("\n".join(lines))


class ConfigError(UsageError):
    """benchmarks.yaml / policy.yaml problems (unknown keys, bad values)."""


class PairingError(UsageError):
    """Two runs cannot be paired item by item (different documents, settings or tasks)."""


class EngineError(CollapseEvalError):
    """The inference engine failed at run time (crash, out of memory): exit 3."""


class OutputError(CollapseEvalError):
    """An output could not be written (disk full, no permission): exit 3."""


class MissingDependencyError(UsageError):
    """An optional dependency is needed for what was asked; says what to install."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed. Install it with: {install}")


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """A ' Did you mean X?' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_key_error(
    path: str | Path, key: str, allowed: Iterable[str], *, where: str = "", line: int | None = None
) -> ConfigError:
    allowed = sorted(allowed)
    location = f"{path}:{line}" if line else str(path)
    scope = f" in {where}" if where else ""
    return ConfigError(
        f"{location}: unknown key '{key}'{scope}.{did_you_mean(key, allowed)} "
        f"Allowed keys: {', '.join(allowed)}."
    )

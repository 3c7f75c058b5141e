"""Error hierarchy. Each error owns its exit code and its user-facing wording.

Library code raises these; only ``cli.py`` turns them into messages and exit codes.
Exit codes (docs/formats.md#exit-codes): 1 gate failed, 2 usage/config/input, 3 runtime failure;
4 to 7 the Ray executor's cluster failures (unreachable, resources, checkpoint, versions).
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
# `--executor ray`: what is wrong with the cluster, one code each so a CI script can tell
# a cluster to fix (4, 5, 7) from a checkpoint to copy (6).
EXIT_CLUSTER_UNREACHABLE = 4
EXIT_CLUSTER_RESOURCES = 5
EXIT_WORKER_CHECKPOINT = 6
EXIT_VERSION_MISMATCH = 7
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM: what CI runners send on cancel


class CollapseEvalError(Exception):
    """Base class: ``str(err)`` is the complete message shown to the user."""

    exit_code = EXIT_RUNTIME

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as is (args and attributes), without calling __init__ again: an error
        # raised in a worker process (the demo's fine-tunes and evaluations) reaches the
        # parent with its class, message and exit code, where the default pickling called
        # e.g. InputError(message) and broke the whole process pool instead.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(
    cls: type[CollapseEvalError], args: tuple[Any, ...], state: dict[str, Any]
) -> CollapseEvalError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


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


class StorageError(CollapseEvalError):
    """The disk refused a write (full, quota, I/O error): exit 3, the inputs were fine.

    ``reason`` is the short cause ("no space left on the device"), for callers that add
    what is intact and what to run next.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class ClusterUnreachable(CollapseEvalError):
    """`--executor ray`: no Ray cluster answers at the address given (exit 4)."""

    exit_code = EXIT_CLUSTER_UNREACHABLE


class ClusterResourcesMissing(CollapseEvalError):
    """`--executor ray`: no node (or, for a multi-node vLLM engine, not the whole cluster)
    has the GPUs or CPUs a unit asks for; said before anything starts (exit 5)."""

    exit_code = EXIT_CLUSTER_RESOURCES


class WorkerCheckpointError(CollapseEvalError):
    """`--executor ray`: a checkpoint the driver sees is missing on a worker node, or holds
    other files there (exit 6)."""

    exit_code = EXIT_WORKER_CHECKPOINT


class VersionMismatch(CollapseEvalError):
    """`--executor ray`: a worker node runs another collapse-eval, lm-eval or vLLM than the
    driver, so its answers would not be the ones a local run computes (exit 7)."""

    exit_code = EXIT_VERSION_MISMATCH


class CollapseEvalWarning(UserWarning):
    """Something the user should know that does not stop the command (a skipped torn
    line); the CLI prints these on stderr as ``warning: ...``."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks and context managers
    close what is open before the process exits (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` swallows it)."""


class MissingDependencyError(UsageError):
    """An optional dependency is needed for what was asked; says what to install."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed. Install it with: {install}")


class MissingExtraError(UsageError):
    """What was asked needs an optional group of dependencies (an extra of the package,
    e.g. ``collapse-eval[run]``) that is not installed, or installed too old: exit 2,
    naming the packages and the one pip command that installs them."""

    def __init__(self, needed_by: str, extra: str, problems: list[str]) -> None:
        self.extra = extra
        self.problems = problems
        super().__init__(
            f"{needed_by} needs the '{extra}' extra: {'; '.join(problems)}. "
            f"Install it with: pip install 'collapse-eval[{extra}]' (in a source checkout: "
            f"pip install -e '.[{extra}]'). The base install runs only the model-free "
            "commands: gate, report, validate, correlate, compare of two run directories, "
            "quality without --model/--judge."
        )


def did_you_mean(word: str, options: Iterable[str], *, cutoff: float = 0.6) -> str:
    """A ' Did you mean X?' suffix, or '' when nothing is close (difflib ratio >= cutoff)."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
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


# errno values that mean "this path is wrong for what was asked": the user fixes the path.
_PATH_PROBLEMS = {
    errno.ENOENT: "does not exist",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "is not a directory: a part of this path is a file, where a directory is needed",
    errno.EEXIST: "already exists as a file, where a directory is needed",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "is on a read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
}
# errno values that mean "the machine, not the path, is the problem": a runtime failure.
_STORAGE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "input/output error from the disk",
    errno.EFBIG: "file too large for the file system",
}


def os_error(exc: OSError, what: str = "", *, path: str | Path | None = None) -> CollapseEvalError:
    """An OSError on a path as a typed error with a sentence (never the exception name).

    Path problems (missing, a file where a directory is expected, no permission) are
    usage errors, exit 2; a full disk or an I/O error is a runtime failure, exit 3.
    ``what`` says what the path was for, e.g. ``"--out"``; ``path`` names the file the
    user knows when ``exc.filename`` is a temporary one.
    """
    name = path if path is not None else exc.filename
    name = "<unknown path>" if name is None else name
    where = f"{name} ({what})" if what else str(name)
    code = exc.errno if exc.errno is not None else -1
    if code in _STORAGE_PROBLEMS:
        return StorageError(
            f"{where}: cannot write: {_STORAGE_PROBLEMS[code]}. "
            "Free some space (or choose another --out) and run the same command again; "
            "what was already saved is kept.",
            reason=_STORAGE_PROBLEMS[code],
        )
    problem = _PATH_PROBLEMS.get(code)
    if problem is None:
        return StorageError(
            f"{where}: {exc.strerror or exc}. Check the path and the disk.",
            reason=str(exc.strerror or exc),
        )
    hint = {
        errno.ENOENT: "check the spelling, or create it first",
        errno.EACCES: "choose a path you can read and write, or fix its permissions",
        errno.EPERM: "choose a path you can read and write, or fix its permissions",
        errno.EROFS: "choose a writable location",
    }.get(code, "give the path of the right kind")
    second = exc.filename2
    if code in (errno.ENOTDIR, errno.EEXIST) and second is not None:
        where = f"{where} -> {second}"
    return UsageError(f"{where}: {problem}; {hint}.")

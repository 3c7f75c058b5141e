"""Optional dependencies: which extra of the package provides which import, and the checks
that turn a missing (or too old) one into MissingExtraError, exit 2, instead of a traceback.

The base install (``pip install collapse-eval``) has what the model-free commands need
(gate, report, validate, correlate, compare of two run directories, quality without a
model). ``collapse-eval[run]`` adds what evaluating a model needs; ``collapse-eval[vllm]``
adds vLLM on top of it. Keep these tables in step with pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Mapping

from collapse_eval.errors import MissingExtraError

# extra -> {import name: distribution name}
EXTRA_MODULES: Mapping[str, Mapping[str, str]] = {
    "run": {
        "torch": "torch",
        "transformers": "transformers",
        "tokenizers": "tokenizers",
        "lm_eval": "lm-eval",
        "datasets": "datasets",
        "rouge_score": "rouge-score",
        "tenacity": "tenacity",
        "bm25s": "bm25s",
    },
    "vllm": {"vllm": "vllm"},
    # `--executor ray` (collapse_eval/distributed.py); the workers need `run` as well.
    "ray": {"ray": "ray"},
}

# The lowest versions the code works with (pyproject.toml says why); checked before a
# command starts, so that an old install fails with this message, not deep in a run.
LOWEST_VERSIONS: Mapping[str, tuple[int, ...]] = {
    "lm-eval": (0, 4, 12),
    "transformers": (4, 56),
    "ray": (2, 40),
}


def _version_tuple(text: str) -> tuple[int, ...]:
    """Leading numeric release parts: '2.13.0+cpu' -> (2, 13, 0), '0.4.12rc1' -> (0, 4, 12)."""
    parts = []
    for piece in text.split("+")[0].split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _findable(module: str) -> bool:
    """Whether ``import module`` would find it, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a half-imported module
        return False


def _problem(module: str, distribution: str) -> str | None:
    """Why ``module`` cannot serve (not installed, or older than supported), or None."""
    if not _findable(module):
        return f"{distribution} is not installed"
    lowest = LOWEST_VERSIONS.get(distribution)
    installed = _installed_version(distribution)
    if lowest is not None and installed is not None and _version_tuple(installed) < lowest:
        wanted = ".".join(str(p) for p in lowest)
        return f"{distribution} {installed} is installed, {wanted} or newer is needed"
    return None


def extra_problems(extra: str) -> list[str]:
    """What keeps ``extra`` from working here (empty when everything is in place)."""
    problems = (_problem(m, d) for m, d in EXTRA_MODULES[extra].items())
    return [p for p in problems if p is not None]


def require_extra(extra: str, needed_by: str) -> None:
    """MissingExtraError (exit 2) unless every package of ``extra`` is installed and new
    enough. Imports nothing: finding a package costs milliseconds, importing it seconds."""
    problems = extra_problems(extra)
    if problems:
        raise MissingExtraError(needed_by, extra, problems)


def require_module(module: str, needed_by: str) -> None:
    """MissingExtraError (exit 2) naming the extra that provides ``module`` unless it is
    installed: for a command that needs one package of an extra, not all of it."""
    for extra, modules in EXTRA_MODULES.items():
        if module in modules:
            problem = _problem(module, modules[module])
            if problem is not None:
                raise MissingExtraError(needed_by, extra, [problem])
            return
    raise ValueError(f"{module} is provided by no extra")


def extra_for_import_error(exc: ImportError, needed_by: str) -> MissingExtraError | None:
    """The MissingExtraError for an ImportError of a package an extra provides (None for
    any other module): the safety net for imports no command checked up front."""
    top = (exc.name or "").split(".")[0]
    for extra, modules in EXTRA_MODULES.items():
        if top in modules:
            distribution = modules[top]
            problem = _problem(top, distribution)
            if problem is None:  # installed and new enough, yet the import failed
                installed = _installed_version(distribution) or "?"
                problem = f"{distribution} {installed} cannot be imported ({exc})"
            return MissingExtraError(needed_by, extra, [problem])
    return None

"""``collapse-eval drift`` and the drift of ``compare --drift`` / ``--screen drift``:
engines built from the command's options, the sets measured, the screen applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapse_eval.drift.measure import (
    DEFAULT_TOP_K,
    DOMAIN_SET,
    PROBE_SET,
    DriftResult,
    measure_drift,
    probe_passages,
)
from collapse_eval.errors import UsageError
from collapse_eval.progress import Progress

if TYPE_CHECKING:
    from collapse_eval.summary import Summary

DRIFT_FILE = "drift.json"
SCREEN_FILE = "screen.json"
DRIFT_KEY = "drift"  # summary.json's block
SCREEN_CHOICES = ("drift",)


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """What ``drift`` measures and how: the engine, the domain files, the top-k."""

    engine: str | None = None
    engine_args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    domain_files: tuple[Path, ...] = ()
    top_k: int | None = None  # None: exact on hf, DEFAULT_TOP_K on vllm and openai
    domain_limit: int | None = None  # compare's --domain-limit: the items it evaluates
    # The general probe's texts; empty: the shipped English probe (probe/). The demo
    # world's tiny model never saw English and is measured on its own task format.
    probe: tuple[str, ...] = ()


def method_top_k(kind: str, top_k: int | None) -> int | None:
    """The top-k to use: None (exact KL) only where the engine gives full distributions."""
    if top_k is None and kind != "hf":
        return DEFAULT_TOP_K
    return top_k


def domain_prompts(files: Sequence[Path], limit: int | None = None) -> Callable[[Any], list[str]]:
    """The rendered prompts of the domain files' items (at most ``limit`` per file, the
    whole clusters ``--domain-limit`` evaluates), rendered by the given engine."""
    from collapse_eval.domain.dataset import load_domain_set
    from collapse_eval.domain.runner import rendered_prompt
    from collapse_eval.runner import whole_clusters

    items: list[Any] = []
    for path in files:
        loaded = load_domain_set(path)  # InputErrors before any model loads
        items += loaded if limit is None else whole_clusters(loaded, limit, path)
    return lambda engine: [rendered_prompt(engine, item) for item in items]


def run_drift(
    base: str, tuned: str, spec: DriftSpec, progress: Progress | None = None
) -> DriftResult:
    """Drift of ``tuned`` from ``base``; inputs are checked before a model loads."""
    from collapse_eval.engines.registry import make_engine, resolve_engine_kind
    from collapse_eval.runner import RunSpec, check_models_first

    kind, _notice = resolve_engine_kind(spec.engine)  # the caller prints the notice
    # Both checkpoints and their arguments before the first loads: on vLLM the base is
    # measured whole before the tuned model loads, so a typo would cost the base's time.
    check_models_first([base, tuned], RunSpec(base, engine=kind, engine_args=spec.engine_args))
    sets: dict[str, Any] = {PROBE_SET: list(spec.probe) or probe_passages()}
    if spec.domain_files:
        sets[DOMAIN_SET] = domain_prompts(spec.domain_files, spec.domain_limit)
    return measure_drift(
        lambda: make_engine(kind, base, spec.engine_args),
        lambda: make_engine(kind, tuned, spec.engine_args),
        sets,
        top_k=method_top_k(kind, spec.top_k),
        progress=progress,
    )


@dataclass(frozen=True, slots=True)
class Screen:
    """``compare --screen drift``: keep the candidates whose general-probe KL is at most
    ``max_kl``, or the ``best`` k with the least."""

    max_kl: float | None = None
    best: int | None = None

    def __post_init__(self) -> None:
        if (self.max_kl is None) == (self.best is None):
            raise UsageError(
                "--screen drift needs exactly one of --screen-max-kl X (keep candidates "
                "whose drift on the general probe is at most X nats per token) or "
                "--screen-best K (keep the K candidates with the least drift)"
            )


def probe_kl(result: DriftResult) -> float:
    probe = result.by_name(PROBE_SET)
    assert probe is not None  # run_drift always measures the probe set
    return probe.mean_kl


def apply_screen(drifts: Mapping[str, DriftResult], screen: Screen) -> dict[str, str]:
    """The candidates screened out, each with why (in words); the others are evaluated.
    Ties at the k-th place are kept in candidate order."""
    kl = {name: probe_kl(result) for name, result in drifts.items()}
    skipped: dict[str, str] = {}
    if screen.max_kl is not None:
        for name, value in kl.items():
            if value > screen.max_kl:
                skipped[name] = (
                    f"drift {value:.4g} nats/token on the general probe, above "
                    f"--screen-max-kl {screen.max_kl:g}"
                )
        return skipped
    assert screen.best is not None
    ranked = sorted(kl, key=lambda name: kl[name])  # stable: candidate order on ties
    for place, name in enumerate(ranked[screen.best :], start=screen.best + 1):
        skipped[name] = (
            f"drift {kl[name]:.4g} nats/token on the general probe, rank {place} of "
            f"{len(ranked)}; --screen-best {screen.best} keeps the {screen.best} lowest"
        )
    return skipped


def method_words(result: DriftResult) -> str:
    """How the numbers were computed, in words (terminal, reports)."""
    if result.top_k is None:
        return f"{result.engine}, exact KL from full next-token distributions"
    return (
        f"{result.engine}, top-{result.top_k} log-probabilities with the rest lumped: "
        "a lower bound of the KL"
    )


def drift_lines(result: DriftResult) -> list[str]:
    """The terminal table of ``collapse-eval drift``."""
    lines = [
        f"drift of {result.tuned} from {result.base} ({method_words(result)})",
        f"{'set':<15} {'KL/token (nats)':>16} {'SE':>9} {'texts':>6} {'tokens':>8}",
    ]
    for s in result.sets:
        se = "n/a" if s.se is None else f"{s.se:.4g}"
        lines.append(f"{s.name:<15} {s.mean_kl:>16.4g} {se:>9} {s.n_texts:>6} {s.n_tokens:>8}")
    return lines


def write_drift(out: Path, result: DriftResult) -> Path:
    """``out/drift.json``, written atomically."""
    from collapse_eval.records import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / DRIFT_FILE, result.to_json())
    return out / DRIFT_FILE


def with_drift(summary: Summary, result: DriftResult | None) -> Summary:
    """``summary`` with its ``drift`` block (an additive key of summary.json)."""
    if result is None:
        return summary
    return dataclasses.replace(summary, extra={**summary.extra, DRIFT_KEY: result.to_json()})


def summary_drift(summary: Summary) -> float | None:
    """The general-probe KL a summary's ``drift`` block holds; None without one."""
    block = summary.extra.get(DRIFT_KEY)
    if not isinstance(block, dict):
        return None
    probe = (block.get("sets") or {}).get(PROBE_SET) or {}
    value = probe.get("mean_kl")
    return float(value) if isinstance(value, (int, float)) else None


def drift_candidates(
    base: str,
    candidates: Sequence[str],
    names: Sequence[str],
    spec: DriftSpec,
    progress: Progress | None = None,
) -> dict[str, DriftResult]:
    """Each candidate's drift from ``base``, by folder name (``compare --drift``); run
    directories are refused: drift compares the models' distributions, which a run
    directory does not hold."""
    from collapse_eval.records import is_run_dir

    for model in (base, *candidates):
        if is_run_dir(model):
            raise UsageError(
                f"--drift / --screen drift: {model} is a run directory; drift compares the "
                "two models' next-token distributions, so BASE and every TUNED must be "
                "checkpoints (or leave --drift and --screen out)"
            )
    results = {}
    for name, candidate in zip(names, candidates, strict=True):
        if progress is not None:
            progress.log(f"drift: {name} against base")
        results[name] = run_drift(base, candidate, spec, progress)
    return results


def write_screen(
    out: Path,
    screen: Screen,
    models: Mapping[str, str],
    drifts: Mapping[str, DriftResult],
    skipped: Mapping[str, str],
) -> Path:
    """``out/screen.json``: the screen, each candidate's drift, evaluated or why not."""
    from collapse_eval.records import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / SCREEN_FILE,
        {
            "schema_version": 1,
            "screen": {"by": "drift", "max_kl": screen.max_kl, "best": screen.best},
            "candidates": {
                name: {
                    "model": models[name],
                    "drift": drifts[name].to_json(),
                    "evaluated": name not in skipped,
                    "why_skipped": skipped.get(name),
                }
                for name in drifts
            },
        },
    )
    return out / SCREEN_FILE

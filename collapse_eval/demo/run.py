"""`collapse-eval demo`: build (or reuse) the tiny world, compare the candidates to base,
and correlate the graded candidates' training-data quality with their performance.

Every checkpoint is evaluated into ``runs/<name>`` as soon as it is trained, in the same two
single-threaded worker processes that train the world (the hf engine; the compares then
reuse the complete runs), and the graded training sets are scored there too. One
many-candidate compare for domain-only and mixed: the base is evaluated once
(``runs/base``), each candidate's summary and report go to ``domain-only/`` and
``mixed/``. The graded candidates reuse that base run (``graded-XX/``). The overview,
``index.html`` and ``overview.png``, lists all six.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_eval.progress import Progress, QuietProgress
from collapse_eval.summary import Summary
from collapse_eval.workers import Task


@dataclass(frozen=True, slots=True)
class DemoRow:
    name: str
    verdict: str
    domain_delta: float | None
    general_delta: float | None
    summary: Path
    drift: float | None = None  # KL/token from base on the demo probe (drift_study.py)
    retention: float | None = None  # general retention index


def _overall_delta(summary: Summary, suite: str) -> float | None:
    """Mean task-level delta of a suite (for the printed table only)."""
    deltas = [
        c.delta
        for c in summary.comparisons
        if c.suite == suite
        and c.group_by is None
        and c.metric != "format_ok"  # format-following is not a task score
        and c.delta is not None
    ]
    return sum(deltas) / len(deltas) if deltas else None


def _row(name: str, summary: Summary, path: Path) -> DemoRow:
    from collapse_eval.drift.run import summary_drift

    return DemoRow(
        name=name,
        verdict=str(summary.verdict),
        domain_delta=_overall_delta(summary, "domain"),
        general_delta=_overall_delta(summary, "general"),
        summary=path,
        drift=summary_drift(summary),
        retention=summary.retention.index if summary.retention else None,
    )


def _demo_spec(world: Any, engine: str, cache_dir: Path | None) -> Any:
    from collapse_eval.runner import RunSpec

    return RunSpec(
        model=str(world.base),
        domain_files=(world.domain_test,),
        benchmarks=world.benchmarks,
        suite=world.suite,
        engine=engine,
        # Big batches: with a 1.5M-parameter model, per-step overhead dominates, and
        # batch size does not change greedy outputs beyond the last bits of a float.
        engine_args={"batch_size": "64"} if engine == "hf" else {},
        seed=0,
        cache_dir=(cache_dir / "requests") if cache_dir else None,
    )


def _checkpoints(world: Any) -> list[tuple[str, Path]]:
    """(name, checkpoint) of every checkpoint the demo evaluates, base first."""
    named = [("base", world.base), ("domain-only", world.domain_only), ("mixed", world.mixed)]
    return named + [(c.name, c.checkpoint) for c in world.graded]


def run_demo(
    out: str | Path,
    *,
    cache_dir: Path | None = None,
    engine: str = "hf",
    progress: Progress | None = None,
    world_config: Any = None,
) -> list[DemoRow]:
    """Run the demo end to end; returns one row per candidate. Verdicts do not raise.

    The world's training, each checkpoint's evaluation (hf engine: in the worker
    processes, as soon as the checkpoint exists) and the scoring of the graded training
    sets run as one graph of jobs; the compares then reuse the complete runs."""
    from collapse_eval.demo.drift_study import demo_drifts
    from collapse_eval.demo.graded import score_graded_sets
    from collapse_eval.demo.world import WorldConfig, ensure_demo_world
    from collapse_eval.policy import default_policy
    from collapse_eval.runner import compare_candidates

    progress = progress or QuietProgress()
    out = Path(out)
    check_contamination(out, progress)
    scored: list[Any] = []

    def jobs(world: Any, building: frozenset[str]) -> list[Task]:
        tasks = []
        if engine == "hf":
            spec = _demo_spec(world, engine, cache_dir)
            tasks += evaluation_tasks(_checkpoints(world), spec, out / "runs", building)
        if world.graded:
            levels = [c.level for c in world.graded]
            tasks.append(Task(_SCORING, score_graded_sets, (levels, out / "quality")))
        return tasks

    def done(task: Task, result: Any) -> None:
        if task.name == _SCORING:
            scored.extend(result)
        elif task.name.startswith(_EVALUATE):
            _log_evaluated(progress, task, result)

    world = ensure_demo_world(
        cache_dir,
        config=world_config or WorldConfig.demo(),
        progress=progress.log,
        extra=jobs,
        on_done=done,
    )
    spec = _demo_spec(world, engine, cache_dir)
    drifts = demo_drifts(world.base, _checkpoints(world)[1:], progress)
    names = ("domain-only", "mixed")
    progress.log("demo: comparing domain-only and mixed against base")
    clean = _clean_training()  # both learned the domain from the clean split
    results = compare_candidates(
        str(world.base),
        [str(world.domain_only), str(world.mixed)],
        spec,
        out,
        policy=default_policy(),
        progress=progress,
        names=names,
        training={name: clean for name in names},
        drifts=drifts,
    )
    rows = [_row(r.name, r.summary, r.out / "summary.json") for r in results]
    rows += run_graded_study(world, spec, out, progress, scored=scored, drifts=drifts)
    write_demo_overview(out, rows)
    return rows


def check_contamination(out: Path, progress: Progress) -> Any:
    """``quality TRAIN --against TEST``'s check of the demo's clean training split (every
    fine-tune's samples come from it) against its test set: OUT/contamination.json, and
    its summary logged (0 test items by construction, data.py; under a second)."""
    from collapse_eval.demo.world import DOMAIN_TEST_FILE, DOMAIN_TRAIN_FILE
    from collapse_eval.domain.dataset import load_domain_set, load_training_set
    from collapse_eval.quality.contamination import (
        find_contamination,
        summary_lines,
        write_contamination,
    )

    result = find_contamination(
        load_training_set(DOMAIN_TRAIN_FILE), load_domain_set(DOMAIN_TEST_FILE)
    )
    write_contamination(result, out, train=str(DOMAIN_TRAIN_FILE), test=str(DOMAIN_TEST_FILE))
    for line in summary_lines(result):
        progress.log(f"demo: train/test {line}")
    return result


def _clean_training() -> Any:
    """The clean domain training split (world.py's DOMAIN_TRAIN_FILE), scored by the rules."""
    from collapse_eval.demo.world import DOMAIN_TRAIN_FILE
    from collapse_eval.training import load_training

    return load_training(DOMAIN_TRAIN_FILE)


def training_report_lines(rows: Sequence[DemoRow]) -> list[str]:
    """Per candidate, its training data by task type against the delta and the
    correlations across task types (summary.json's training block)."""
    from collapse_eval.summary import load_summary
    from collapse_eval.training import training_lines

    lines = []
    for row in rows:
        block = load_summary(row.summary).training
        if block is not None:
            lines += [f"{row.name}:", *("  " + line for line in training_lines(block))]
    return lines


def write_demo_overview(out: Path, rows: Sequence[DemoRow]) -> dict[str, Path]:
    """OUT/index.html + OUT/overview.png over every candidate the demo compared, in the
    order compared: domain-only and mixed (one many-candidate compare) and the graded
    candidates (compared one by one against the same base run, for their own correlation
    study, but judged against the same base, so they belong on the same plot)."""
    from collapse_eval.report.overview import Candidate, write_overview
    from collapse_eval.summary import load_summary

    if not rows:
        return {}
    return write_overview(out, [Candidate(r.name, load_summary(r.summary)) for r in rows])


def _evaluate_one(spec: Any, checkpoint: str, run_dir: Path) -> dict[str, float]:
    """Evaluate ``checkpoint`` into ``run_dir`` on one thread (in a worker process);
    returns its wall and CPU seconds."""
    import torch

    from collapse_eval.demo.world import timed
    from collapse_eval.runner import run_model

    torch.set_num_threads(1)
    return timed(lambda: run_model(dataclasses.replace(spec, model=checkpoint), run_dir))


def _complete(run_dir: Path) -> bool:
    from collapse_eval.errors import CollapseEvalError
    from collapse_eval.records import is_run_dir, read_run_manifest

    try:
        return is_run_dir(run_dir) and read_run_manifest(run_dir).complete
    except (CollapseEvalError, OSError):
        return False


_EVALUATE = "evaluate "
_SCORING = "score the graded training sets"


def evaluation_tasks(
    checkpoints: Sequence[tuple[str, Path]],
    spec: Any,
    runs: Path,
    building: frozenset[str] = frozenset(),
) -> list[Task]:
    """A task per checkpoint whose run ``runs/<name>`` is not complete yet, each waiting
    for its checkpoint when that is in ``building`` (task names of the world's training)."""
    return [
        Task(
            f"{_EVALUATE}{name}",
            _evaluate_one,
            (spec, str(checkpoint), runs / name),
            (name,) if name in building else (),
        )
        for name, checkpoint in checkpoints
        if not _complete(runs / name)
    ]


def _log_evaluated(progress: Progress, task: Task, seconds: dict[str, float]) -> None:
    name = task.name.removeprefix(_EVALUATE)
    progress.log(
        f"demo: evaluated {name} in {seconds['wall_s']:.0f} s ({seconds['cpu_s']:.0f} s CPU)"
    )


def run_graded_study(
    world: Any,
    spec: Any,
    out: Path,
    progress: Progress,
    *,
    scored: Sequence[Any] = (),
    drifts: Mapping[str, Any] | None = None,
) -> list[DemoRow]:
    """Quality -> performance: score each graded training set (OUT/quality/<name>/, unless
    ``scored`` has them already), compare each graded candidate against the base
    (OUT/<name>/) and correlate quality with domain score and general retention
    (OUT/correlation/). ``drifts`` (by name): each summary's drift block."""
    from collapse_eval.correlate import correlate_table, dimension_lines, headline, write_outputs
    from collapse_eval.demo.graded import score_graded_sets
    from collapse_eval.policy import default_policy
    from collapse_eval.runner import compare
    from collapse_eval.training import load_training

    if not world.graded:
        return []
    if not scored:
        progress.log("demo: scoring the graded training sets (quality rules + dataset level)")
        scored = score_graded_sets([c.level for c in world.graded], out / "quality")
    by_name = {s.name: s for s in scored}
    rows = []
    for candidate in world.graded:
        progress.log(f"demo: comparing {candidate.name} against base")
        summary = compare(
            str(world.base),
            str(candidate.checkpoint),
            spec,
            out / candidate.name,
            policy=default_policy(),
            progress=progress,
            run_dirs=(out / "runs" / "base", out / "runs" / candidate.name),
            training=load_training(by_name[candidate.name].quality_dir),
            drift=(drifts or {}).get(candidate.name),
        )
        rows.append(_row(candidate.name, summary, out / candidate.name / "summary.json"))
    if len(rows) < 3:
        progress.log("demo: fewer than 3 graded candidates, no correlation")
        return rows
    table = out / "correlation" / "table.csv"
    lines = ["run,quality,label"]
    for candidate in world.graded:
        quality = by_name[candidate.name].quality_dir / "quality.json"
        lines.append(
            f"../{candidate.name},{os.path.relpath(quality, table.parent)},{candidate.name}"
        )
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = correlate_table(table, seed=0)
    write_outputs(report, table.parent)
    for line in headline(report) + dimension_lines(report):
        progress.log(f"demo: {line}")
    return rows


def correlation_lines(out: str | Path) -> list[str]:
    """The graded study's headline correlations from OUT/correlation/, then each quality
    dimension's Spearman table (empty if absent)."""
    from collapse_eval.correlate import dimension_lines, headline
    from collapse_eval.records import read_json

    path = Path(out) / "correlation" / "correlation.json"
    if not path.is_file():
        return []
    report = read_json(path)
    return headline(report) + dimension_lines(report)


def drift_points(rows: Sequence[DemoRow]) -> list[Any]:
    """The rows that have both a drift and a retention index, as drift_study.DriftPoint."""
    from collapse_eval.demo.drift_study import DriftPoint

    return [
        DriftPoint(r.name, r.drift, r.retention)
        for r in rows
        if r.drift is not None and r.retention is not None
    ]


def drift_report_lines(rows: Sequence[DemoRow], graded: Sequence[str] = ()) -> list[str]:
    """Each candidate's drift on the demo probe beside its general retention, and the
    Spearman of drift against forgetting over all candidates and over ``graded``."""
    from collapse_eval.demo.drift_study import correlation_line, drift_table_lines

    points = drift_points(rows)
    if not points:
        return []
    lines = drift_table_lines(points)
    lines.append(correlation_line("all candidates", points))
    chosen = [p for p in points if p.name in set(graded)]
    if chosen:
        lines.append(correlation_line("the graded candidates", chosen))
    return lines

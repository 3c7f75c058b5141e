"""Training-data quality vs model performance across several fine-tuned checkpoints.

Input: a CSV with columns ``run`` (a run directory, or any directory ``compare`` wrote:
its summary.json names the tuned run, which is used), ``quality`` (a number) and optional
``label``. Relative paths in the CSV are relative to the CSV file. Performance per run is
the pooled domain score and the mean general task score (primary metrics), so the question
"does better data give a better model without losing general ability?" is answered for
both suites with Spearman, Pearson and Kendall correlations (bootstrap CIs, permutation
p-values; exact permutations when there are at most 8 runs).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collapse_eval.errors import InputError
from collapse_eval.records import Run, is_run_dir, load_run
from collapse_eval.summary import SUMMARY_FILE, load_summary, side_run_dir

METHODS = ("spearman", "pearson", "kendall")


@dataclass(frozen=True, slots=True)
class RunPerformance:
    label: str
    run: str
    quality: float
    domain: float | None
    general: float | None


def _resolve_run(value: str, base_dir: Path, path: Path, line: int) -> Run:
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if is_run_dir(candidate):
        return load_run(candidate)
    summary_path = candidate / SUMMARY_FILE
    if summary_path.is_file():
        summary = load_summary(summary_path)
        tuned = side_run_dir(summary, "tuned", summary_path)
        if tuned is not None:
            return load_run(tuned)
        raise InputError(
            path,
            f"'{value}' is a compare output directory, but the tuned run its "
            f"{SUMMARY_FILE} names ({summary['tuned'].get('run')!r}) was not found, "
            f"neither as written nor under the directories above {summary_path}; "
            "put the run directory itself in the table",
            line=line,
            field="run",
        )
    raise InputError(
        path,
        f"'{value}' is neither a run directory (manifest.json + "
        "records.jsonl) nor a compare output directory",
        line=line,
        field="run",
    )


def run_performance(run: Run) -> tuple[float | None, float | None]:
    """(pooled domain score, mean of general task scores) on each task's primary metric.

    A group task (mmlu) counts as one general task pooled over its subtasks' items, as in
    ``compare`` and in lm-eval's group score.
    """
    primary = {task: run.primary_metric(task) for task in {r.task for r in run.records}}
    domain: list[float] = []
    general: dict[str, list[float]] = {}
    for rec in run.records:
        if rec.metric != primary[rec.task]:
            continue
        if rec.suite == "domain":
            domain.append(rec.score)
        else:
            unit = str((rec.metadata or {}).get("group") or rec.task)
            general.setdefault(unit, []).append(rec.score)
    domain_mean = sum(domain) / len(domain) if domain else None
    task_means = [sum(v) / len(v) for v in general.values()]
    general_mean = sum(task_means) / len(task_means) if task_means else None
    return domain_mean, general_mean


def read_table(path: str | Path) -> list[RunPerformance]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    reader = csv.DictReader(text.splitlines())
    columns = set(reader.fieldnames or [])
    for needed in ("run", "quality"):
        if needed not in columns:
            raise InputError(
                path,
                f"missing column '{needed}' (columns: run, quality, optional label)",
                line=1,
                field=needed,
            )
    rows = []
    for line, row in enumerate(reader, start=2):
        try:
            quality = float(row["quality"])
        except (TypeError, ValueError):
            raise InputError(
                path, f"not a number: {row['quality']!r}", line=line, field="quality"
            ) from None
        if not math.isfinite(quality):
            raise InputError(path, "must be a finite number", line=line, field="quality")
        run = _resolve_run(row["run"] or "", path.parent, path, line)
        domain, general = run_performance(run)
        rows.append(
            RunPerformance(
                label=row.get("label") or row["run"],
                run=str(run.path),
                quality=quality,
                domain=domain,
                general=general,
            )
        )
    if len(rows) < 3:
        raise InputError(path, f"needs at least 3 runs to correlate, found {len(rows)}")
    return rows


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def correlate_table(path: str | Path, *, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The correlation report (JSON-ready) for a CSV of runs and quality scores."""
    from collapse_eval.stats import correlation

    rows = read_table(path)
    result: dict[str, Any] = {
        "schema_version": 1,
        "runs": [asdict(r) for r in rows],
        "correlations": [],
    }
    for target in ("domain", "general"):
        pairs = [(r.quality, getattr(r, target)) for r in rows if getattr(r, target) is not None]
        if len(pairs) < 3:
            continue
        x, y = [p[0] for p in pairs], [p[1] for p in pairs]
        for method in METHODS:
            res = correlation(x, y, method, n_boot=n_boot, seed=seed)  # type: ignore[arg-type]
            result["correlations"].append(
                {
                    "performance": target,
                    "method": method,
                    "n": res.n,
                    "estimate": _clean(res.estimate),
                    "ci_low": _clean(res.ci_low),
                    "ci_high": _clean(res.ci_high),
                    "p_value": _clean(res.p_value),
                    "p_method": res.p_method,
                }
            )
    return result


def render_markdown(report: dict[str, Any]) -> str:
    def cell(value: Any, spec: str = ".3f") -> str:
        if value is None:
            return ""
        text = format(value, spec) if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Training-data quality vs model performance",
        "",
        "| run | quality | domain score | general score |",
        "|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {cell(r['label'])} | {cell(r['quality'], 'g')} | {cell(r['domain'])} "
            f"| {cell(r['general'])} |"
        )
    lines += [
        "",
        "| performance | method | n | estimate | 95% CI | p | p method |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["correlations"]:
        ci = "" if c["ci_low"] is None else f"[{cell(c['ci_low'])}, {cell(c['ci_high'])}]"
        lines.append(
            f"| {c['performance']} | {c['method']} | {c['n']} | {cell(c['estimate'])} "
            f"| {ci} | {cell(c['p_value'], '.3g')} | {c['p_method']} |"
        )
    return "\n".join(lines) + "\n"


def write_correlation_plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for ax, target in zip(axes, ("domain", "general"), strict=True):
        runs = [r for r in report["runs"] if r[target] is not None]
        ax.scatter([r["quality"] for r in runs], [r[target] for r in runs], color="#0969da")
        for r in runs:
            ax.annotate(
                str(r["label"]),
                (r["quality"], r[target]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("training-data quality")
        ax.set_ylabel(f"{target} score")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

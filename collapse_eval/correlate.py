"""Training-data quality vs model performance across several fine-tuned checkpoints.

Input: a CSV with columns ``run`` (a run directory, or any directory ``compare`` wrote:
its summary.json names the tuned run, which is used), ``quality`` (a number, or a
quality.json written by ``collapse-eval quality``, or its directory: its ``overall`` score
or the dimension ``dimension`` names) and optional ``label``. Relative paths in the CSV are
relative to the CSV file. Performance per run is the pooled domain score and the mean
general task score (primary metrics), plus, for compare directories, the general
retention (mean general score minus the base run's), so the question "does better data
give a better model without losing general ability?" is answered for both suites with
Spearman, Pearson and Kendall correlations (bootstrap CIs, permutation p-values; exact
permutations when there are at most 8 runs). When the quality cells are quality.json
files, each quality dimension is also correlated with each performance measure (Spearman,
``by_dimension``), so a table shows which dimension predicts the fine-tune's score.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collapse_eval.errors import InputError, did_you_mean
from collapse_eval.formats import to_plain
from collapse_eval.formats.correlation import Correlation, CorrelationReport, CorrelationRun
from collapse_eval.records import Run, is_run_dir, load_run
from collapse_eval.summary import SUMMARY_FILE, load_summary, side_run_dir

METHODS = ("spearman", "pearson", "kendall")
# Performance measures, in report order (general_retention only for compare directories).
PERFORMANCE = ("domain", "general", "general_retention")
PERFORMANCE_LABELS = {
    "domain": "domain score",
    "general": "general score",
    "general_retention": "general retention (tuned - base)",
}


@dataclass(frozen=True, slots=True)
class RunPerformance:
    label: str
    run: str
    quality: float
    domain: float | None
    general: float | None
    general_retention: float | None = None
    quality_source: str | None = None  # the quality.json read, None for a number
    # Every dimension of that quality.json (name -> 0..1); None for a number cell.
    dimensions: dict[str, float] | None = None


def _resolve_run(value: str, base_dir: Path, path: Path, line: int) -> tuple[Run, Run | None]:
    """The run a table cell names, and its base run when the cell is a compare directory."""
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if is_run_dir(candidate):
        return load_run(candidate), None
    summary_path = candidate / SUMMARY_FILE
    if summary_path.is_file():
        summary = load_summary(summary_path)
        tuned = side_run_dir(summary, "tuned", summary_path)
        if tuned is not None:
            base = side_run_dir(summary, "base", summary_path)
            return load_run(tuned), (load_run(base) if base is not None else None)
        raise InputError(
            path,
            f"'{value}' is a compare output directory, but the tuned run its "
            f"{SUMMARY_FILE} names ({summary.tuned.run!r}) was not found, "
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


def _quality_value(
    value: str, dimension: str | None, base_dir: Path, path: Path, line: int
) -> tuple[float, str | None, dict[str, float] | None]:
    """A quality cell: a number as is, or a quality.json (or its directory) -> the score,
    the file read and all its numeric dimensions."""
    from collapse_eval.quality.report import QUALITY_FILE, read_quality_scores

    try:
        return float(value), None, None
    except ValueError:
        pass
    source = Path(value)
    if not source.is_absolute():
        source = base_dir / source
    if not value.strip() or not (source.is_file() or (source / QUALITY_FILE).is_file()):
        raise InputError(
            path,
            f"{value!r} is neither a number nor a {QUALITY_FILE} (or a directory holding "
            f"one) written by collapse-eval quality",
            line=line,
            field="quality",
        )
    quality = read_quality_scores(source)
    file = source if source.is_file() else source / QUALITY_FILE
    if dimension is None:
        score = quality.overall
    elif dimension in quality.dimensions:
        score = quality.dimensions[dimension]
    else:
        present = sorted(quality.dimensions)
        raise InputError(
            file,
            f"no quality dimension '{dimension}'.{did_you_mean(dimension, present)} "
            f"Dimensions present: {', '.join(present)}",
            field="dimensions",
            hint="pick one with --dimension, or leave it out for the overall score",
        )
    return float(score), str(file), dict(quality.dimensions)


def read_table(path: str | Path, *, dimension: str | None = None) -> list[RunPerformance]:
    """The table's rows with their runs' performance; ``dimension`` picks a named quality
    dimension from quality.json cells instead of ``overall`` (numbers are used as is)."""
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
        quality, source, dims = _quality_value(
            row["quality"] or "", dimension, path.parent, path, line
        )
        if not math.isfinite(quality):
            raise InputError(path, "must be a finite number", line=line, field="quality")
        run, base = _resolve_run(row["run"] or "", path.parent, path, line)
        domain, general = run_performance(run)
        base_general = run_performance(base)[1] if base is not None else None
        rows.append(
            RunPerformance(
                label=row.get("label") or row["run"],
                run=str(run.path),
                quality=quality,
                domain=domain,
                general=general,
                general_retention=(
                    None if general is None or base_general is None else general - base_general
                ),
                quality_source=source,
                dimensions=dims,
            )
        )
    if len(rows) < 3:
        raise InputError(path, f"needs at least 3 runs to correlate, found {len(rows)}")
    return rows


def _clean(value: float) -> float | None:
    """None for an undefined value; a numpy float as the Python float it equals (msgspec
    writes only the latter; json.dumps wrote both alike)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _correlation(
    x: list[float], y: list[float], method: str, n_boot: int, seed: int, **where: str
) -> Correlation:
    """``where``: the ``performance`` (and in ``by_dimension`` the ``dimension``)."""
    return Correlation(**where, **correlation_row(x, y, method, n_boot, seed))  # type: ignore[arg-type]


def correlation_row(
    x: list[float],
    y: list[float],
    method: str,
    n_boot: int,
    seed: int,
    *,
    exact_max_n: int | None = None,
) -> dict[str, Any]:
    """One correlation as a JSON row: estimate, bootstrap 95% CI, permutation p and how it
    was computed (``exact_max_n``: the most points for an exact p; default stats')."""
    from collapse_eval.stats import EXACT_PERMUTATION_MAX_N, correlation

    res = correlation(
        x,
        y,
        method,  # type: ignore[arg-type]
        n_boot=n_boot,
        seed=seed,
        exact_max_n=EXACT_PERMUTATION_MAX_N if exact_max_n is None else exact_max_n,
    )
    return {
        "method": method,
        "n": res.n,
        "estimate": _clean(res.estimate),
        "ci_low": _clean(res.ci_low),
        "ci_high": _clean(res.ci_high),
        "p_value": _clean(res.p_value),
        "p_method": res.p_method,
    }


def _pairs(rows: list[RunPerformance], target: str, quality: Any) -> list[tuple[float, float]]:
    """(quality(row), performance) for the rows with both."""
    pairs = []
    for row in rows:
        x, y = quality(row), getattr(row, target)
        if x is not None and y is not None:
            pairs.append((x, y))
    return pairs


def shared_dimensions(rows: list[RunPerformance]) -> list[str]:
    """The quality dimensions every run's quality.json has, in the first one's order."""
    if not rows or any(r.dimensions is None for r in rows):
        return []
    first = rows[0].dimensions or {}
    return [name for name in first if all(name in (r.dimensions or {}) for r in rows)]


def dimension_correlations(
    rows: list[RunPerformance], *, n_boot: int = 10_000, seed: int = 0
) -> list[Correlation]:
    """Spearman of each quality dimension with each performance measure (a constant
    dimension gives estimate None: it cannot predict anything here)."""
    out = []
    for name in shared_dimensions(rows):
        for target in PERFORMANCE:
            pairs = _pairs(rows, target, lambda r, n=name: (r.dimensions or {}).get(n))
            if len(pairs) < 3:
                continue
            x, y = [p[0] for p in pairs], [p[1] for p in pairs]
            where = {"dimension": name, "performance": target}
            out.append(_correlation(x, y, "spearman", n_boot, seed, **where))
    return out


def correlate_table(
    path: str | Path, *, n_boot: int = 10_000, seed: int = 0, dimension: str | None = None
) -> dict[str, Any]:
    """The correlation report (JSON-ready) for a CSV of runs and quality scores."""
    rows = read_table(path, dimension=dimension)
    correlations = []
    for target in PERFORMANCE:
        pairs = _pairs(rows, target, lambda r: r.quality)
        if len(pairs) < 3:
            continue
        x, y = [p[0] for p in pairs], [p[1] for p in pairs]
        for method in METHODS:
            correlations.append(_correlation(x, y, method, n_boot, seed, performance=target))
    report = CorrelationReport(
        schema_version=1,
        quality_dimension=dimension or "overall",
        runs=[CorrelationRun(**asdict(r)) for r in rows],
        correlations=correlations,
        by_dimension=dimension_correlations(rows, n_boot=n_boot, seed=seed),
    )
    plain: dict[str, Any] = to_plain(report)
    return plain


def _measures(report: dict[str, Any]) -> list[str]:
    """The performance measures with a value for at least one run, in report order."""
    return [t for t in PERFORMANCE if any(r.get(t) is not None for r in report["runs"])]


def render_markdown(report: dict[str, Any]) -> str:
    def cell(value: Any, spec: str = ".3f") -> str:
        if value is None:
            return ""
        text = format(value, spec) if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    measures = _measures(report)
    dimension = report.get("quality_dimension", "overall")
    lines = [
        "# Training-data quality vs model performance",
        "",
        f"Quality: {dimension}.",
        "",
        "| run | quality | " + " | ".join(PERFORMANCE_LABELS[m] for m in measures) + " |",
        "|---|---|" + "---|" * len(measures),
    ]
    for r in report["runs"]:
        values = " | ".join(
            cell(r.get(m), "+.3f" if m == "general_retention" else ".3f") for m in measures
        )
        lines.append(f"| {cell(r['label'])} | {cell(r['quality'], 'g')} | {values} |")
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
    lines += _dimension_markdown(report, cell)
    return "\n".join(lines) + "\n"


def _by_dimension(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """dimension -> performance -> its Spearman row (report order)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in report.get("by_dimension", []):
        table.setdefault(row["dimension"], {})[row["performance"]] = row
    return table


def _rho_text(row: dict[str, Any] | None) -> str:
    """``+1.00 [1.00, 1.00] p = 0.0028``; ``constant`` when undefined."""
    if row is None:
        return ""
    if row["estimate"] is None:
        return "constant"
    ci = "" if row["ci_low"] is None else f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    p = "" if row["p_value"] is None else f" p = {row['p_value']:.2g}"
    return f"{row['estimate']:+.2f}{ci}{p}"


def _dimension_markdown(report: dict[str, Any], cell: Any) -> list[str]:
    table = _by_dimension(report)
    if not table:
        return []
    measures = [m for m in PERFORMANCE if any(m in row for row in table.values())]
    first = next(iter(table.values()))
    n, p_method = next(iter(first.values()))["n"], next(iter(first.values()))["p_method"]
    lines = [
        "",
        f"Each quality dimension vs performance: Spearman, 95% CI, p ({p_method}), n = {n}; "
        "`constant`: the dimension does not vary across the runs.",
        "",
        "| dimension | " + " | ".join(PERFORMANCE_LABELS[m] for m in measures) + " |",
        "|---|" + "---|" * len(measures),
    ]
    for name, row in table.items():
        texts = " | ".join(_rho_text(row.get(m)) for m in measures)
        lines.append(f"| {cell(name)} | {texts} |")
    return lines


def dimension_lines(report: dict[str, Any]) -> list[str]:
    """The per-dimension Spearman table as aligned text lines (for printing)."""
    table = _by_dimension(report)
    if not table:
        return []
    measures = [m for m in PERFORMANCE if any(m in row for row in table.values())]
    cells = [["dimension", *(PERFORMANCE_LABELS[m] for m in measures)]]
    cells += [[name, *(_rho_text(row.get(m)) for m in measures)] for name, row in table.items()]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["each quality dimension vs performance (spearman, 95% CI, p):"]
    for line in cells:
        text = "  ".join(f"{c:<{w}}" for c, w in zip(line, widths, strict=True))
        lines.append(f"  {text}".rstrip())
    return lines


def _scatter(ax: Any, report: dict[str, Any], target: str) -> None:
    runs = [r for r in report["runs"] if r.get(target) is not None]
    ax.scatter([r["quality"] for r in runs], [r[target] for r in runs], color="#0969da")
    for r in runs:
        ax.annotate(
            str(r["label"]),
            (r["quality"], r[target]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    spearman = next(
        (
            c
            for c in report["correlations"]
            if c["performance"] == target and c["method"] == "spearman"
        ),
        None,
    )
    if spearman is not None and spearman["estimate"] is not None:
        ci = (
            ""
            if spearman["ci_low"] is None
            else f" [{spearman['ci_low']:.2f}, {spearman['ci_high']:.2f}]"
        )
        ax.set_title(f"Spearman {spearman['estimate']:.2f}{ci}, n={spearman['n']}", fontsize=9)
    ax.set_xlabel(f"training-data quality ({report.get('quality_dimension', 'overall')})")
    ax.set_ylabel(PERFORMANCE_LABELS[target])
    ax.grid(alpha=0.3)


def write_correlation_plot(report: dict[str, Any], path: Path) -> Path:
    """All measures side by side in one PNG (``plots/correlation.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = _measures(report)
    fig, axes = plt.subplots(1, len(measures), figsize=(4.5 * len(measures), 3.8), dpi=110)
    for ax, target in zip(list(getattr(axes, "flat", [axes])), measures, strict=True):
        _scatter(ax, report, target)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_measure_plots(report: dict[str, Any], plots_dir: Path) -> dict[str, Path]:
    """One labelled scatter PNG per performance measure: ``correlation_<measure>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}
    plots_dir.mkdir(parents=True, exist_ok=True)
    for target in _measures(report):
        fig, ax = plt.subplots(figsize=(5, 3.8), dpi=110)
        _scatter(ax, report, target)
        fig.tight_layout()
        written[target] = plots_dir / f"correlation_{target}.png"
        fig.savefig(written[target])
        plt.close(fig)
    return written


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """correlation.json, correlation.md, plots/correlation.png and one PNG per measure."""
    from collapse_eval.records import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "correlation.json", report)
    atomic_write_text(out / "correlation.md", render_markdown(report))
    written = {"json": out / "correlation.json", "md": out / "correlation.md"}
    written["plot"] = write_correlation_plot(report, out / "plots" / "correlation.png")
    for target, plot in write_measure_plots(report, out / "plots").items():
        written[f"plot_{target}"] = plot
    return written


def headline(report: dict[str, Any], method: str = "spearman") -> list[str]:
    """One line per performance measure: estimate, 95% CI and p (for printing)."""
    lines = []
    for c in report["correlations"]:
        if c["method"] != method or c["estimate"] is None:
            continue
        ci = "" if c["ci_low"] is None else f", 95% CI [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
        p = "" if c["p_value"] is None else f", p = {c['p_value']:.3g} ({c['p_method']})"
        lines.append(
            f"quality vs {PERFORMANCE_LABELS[c['performance']]}: {method} "
            f"{c['estimate']:+.2f}{ci}{p}, n = {c['n']}"
        )
    return lines

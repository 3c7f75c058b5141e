"""Report figures as PNG: forest plots, grouped bars, counts, flips.

Drawn with matplotlib's object API on Agg (no pyplot, nothing imported until a figure
has to be drawn).

Every figure is in points (score scale 0..1 times 100), labels its axes with the unit,
uses the Okabe-Ito palette and keeps its legend outside the axes so it never hides data.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from collapse_eval.report.fmt import (
    BASE_COLOUR,
    OTHER_COLOUR,
    STATUS_COLOURS,
    STATUSES,
    TUNED_COLOUR,
    alpha_of,
    ci_label,
    decision_interval,
    is_equivalence_row,
    is_number,
    points,
    row_label,
    rows_of,
    signed_points,
)
from collapse_eval.summary import Comparison, Summary

Row = Comparison
_DPI = 100
INDEX_FILE = ".index.json"
_WIDTH = 9.0  # inches; the legend column on the right is part of it


@dataclass(frozen=True)
class Figure:
    name: str  # file stem in plots/
    title: str
    alt: str
    path: Path


def new_figure(width: float, height: float, dpi: float = _DPI) -> Any:
    """A matplotlib Figure drawn by Agg, through the object API: no pyplot, no global
    figure registry, no GUI backend chosen or imported."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _subplots(width: float, height: float) -> tuple[Any, Any]:
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path, top: float = 1.0) -> Path:
    """``top``: the share of the height the axes may use (the rest: a ``suptitle``, which
    tight_layout does not make room for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(pad=0.4, rect=(0.0, 0.0, 1.0, top))  # room for outside legends too
    fig.savefig(path, dpi=_DPI)
    return path


def _legend_outside(ax: Any, handles: Sequence[Any] | None = None) -> None:
    kwargs: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 9}
    if handles is not None:
        kwargs["handles"] = handles
    ax.legend(frameon=False, borderaxespad=0.0, **kwargs)


def forest_plot(rows: Sequence[Row], title: str, ylabel: str, path: Path, alpha: float) -> Path:
    """Delta (dot) and the interval that decides the status (bar) per row in points,
    coloured by status, with a tick at each row's own margin (the margin the verdict used
    for that row): at -m (or +m where lower is better), and at both -m and +m on an
    equivalence row, whose bar is then its (1 - 2 alpha) TOST interval."""
    fig, ax = _subplots(_WIDTH, max(2.0, 0.38 * len(rows) + 1.3))
    seen: set[str] = set()
    for y, row in enumerate(rows):
        status = str(row.status)
        seen.add(status)
        colour = STATUS_COLOURS.get(status, OTHER_COLOUR)
        interval = decision_interval(row, alpha)
        low, high, delta = interval.low, interval.high, row.delta
        if is_number(low) and is_number(high):
            ax.plot([low * 100, high * 100], [y, y], color=colour, linewidth=2.5)
        if is_number(delta):
            ax.plot([delta * 100], [y], "o", color=colour, markersize=6)
        for x in margin_ticks(row):
            ax.plot([x] * 2, [y - 0.38, y + 0.38], color="#000000", linewidth=1.2, linestyle=_DASH)
    ax.axvline(0.0, color="#000000", linewidth=0.7)
    ax.set_yticks(range(len(rows)), labels=[_short(row_label(r)) for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(f"tuned - base (points; bar = {_bar_meaning(rows, alpha)})")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax, _forest_handles(rows, seen))
    return _save(fig, path)


_DASH = (0, (2, 1.5))


def margin_ticks(row: Row) -> list[float]:
    """Where a row's margin is drawn, in points: -m where higher is better (+m where lower
    is), both on an equivalence row; none without a margin."""
    margin = row.margin
    if not (is_number(margin) and margin > 0):
        return []
    if is_equivalence_row(row):
        return [-margin * 100, margin * 100]
    return [(-1 if row.higher_is_better else 1) * margin * 100]


def _bar_meaning(rows: Sequence[Row], alpha: float) -> str:
    """'95% CI', or '95% CI; 90% CI (TOST) on equivalence rows' when some are."""
    labels = {decision_interval(r, alpha).label: None for r in rows}  # ordered set
    if len(labels) == 1:
        return next(iter(labels))
    tost = next(label for label in labels if label != ci_label(alpha))
    return f"{ci_label(alpha)}; {tost} on equivalence rows"


def _forest_handles(rows: Sequence[Row], seen: set[str]) -> list[Any]:
    """Legend: the statuses shown, then the kinds of margin tick drawn."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=STATUS_COLOURS[s], marker="o", linewidth=2.5, label=s)
        for s in STATUSES
        if s in seen
    ]
    handles += [
        Line2D([], [], color=OTHER_COLOUR, marker="o", linewidth=2.5, label=s)
        for s in sorted(seen - set(STATUSES))
    ]
    ticks = {len(margin_ticks(r)) for r in rows} - {0}
    for count, label in ((1, "margin of this row"), (2, "± margin (equivalence row)")):
        if count in ticks:
            handles.append(Line2D([], [], color="#000000", linestyle=_DASH, label=label))
    return handles


def _short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def wilson(mean: Any, n: Any, alpha: float) -> tuple[float, float] | None:
    """Wilson score interval for a mean of 0/1 scores (an approximation otherwise)."""
    if not (is_number(mean) and isinstance(n, int) and n > 0):
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = min(max(float(mean), 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def is_binary_row(row: Row) -> bool:
    """0/1 scores: stats counts the discordant pairs (base_only, tuned_only) of such rows only."""
    return row.base_only is not None and row.tuned_only is not None


_CI_METHODS = {
    "bootstrap_percentile": "paired bootstrap",
    "cluster_robust_normal": "cluster-robust",
    "newcombe_hybrid_score": "Newcombe",
}


def bar_whiskers(row: Row, side: str, alpha: float) -> tuple[float, float] | None:
    """The interval drawn on one bar (0..1 scale). Wilson fits a mean of 0/1 scores only;
    for continuous scores (ROUGE, similarity) the tuned bar carries the base mean plus the
    row's own CI of the paired delta (its bootstrap or cluster-robust CI: where the tuned
    mean may lie, given the base's), and the base bar none."""
    mean = row.base_mean if side == "base" else row.tuned_mean
    if is_binary_row(row):
        return wilson(mean, row.n, alpha)
    low, high, base = row.ci_low, row.ci_high, row.base_mean
    if side == "base" or not (is_number(low) and is_number(high) and is_number(base)):
        return None
    return base + low, base + high


def _whiskers_meaning(rows: Sequence[Row], alpha: float) -> str:
    """The figure's note on its whiskers: Wilson on 0/1 scores, the delta's CI otherwise."""
    ci = ci_label(alpha)
    parts = []
    if any(is_binary_row(r) for r in rows):
        parts.append(f"Wilson {ci} of each mean (0/1 scores)")
    continuous = [r for r in rows if not is_binary_row(r)]
    if continuous:
        methods = sorted({_CI_METHODS.get(str(r.ci_method), str(r.ci_method)) for r in continuous})
        parts.append(
            f"on the tuned bar, base mean + the {ci} of the paired delta "
            f"({', '.join(methods)}; continuous scores)"
        )
    return "whiskers: " + "; ".join(parts)


def grouped_bars(
    rows: Sequence[Row], title: str, xlabel: str, ylabel: str, path: Path, alpha: float
) -> Path:
    """Base vs tuned mean per row (points) with an interval on each bar (``bar_whiskers``)."""
    fig, ax = _subplots(_WIDTH, 3.6)
    width = 0.38
    for offset, side, colour in (
        (-width / 2, "base", BASE_COLOUR),
        (width / 2, "tuned", TUNED_COLOUR),
    ):
        means, whiskers = [], []  # whiskers: (x, mean, below, above) of bars that have one
        for i, row in enumerate(rows):
            mean = row.base_mean if side == "base" else row.tuned_mean
            m = float(mean) * 100 if is_number(mean) else 0.0
            means.append(m)
            ci = bar_whiskers(row, side, alpha)
            if ci is not None:
                # max(0, .): at p = 0 or 1 the interval's end can miss p by a rounding
                # error, and a mean outside 0..1 (not a proportion) is outside its interval.
                below, above = max(0.0, m - ci[0] * 100), max(0.0, ci[1] * 100 - m)
                whiskers.append((i + offset, m, below, above))
        xs = [i + offset for i in range(len(rows))]
        ax.bar(xs, means, width, color=colour, label=side, edgecolor="#000000", linewidth=0.4)
        if whiskers:
            wx, wm, lows, highs = zip(*whiskers, strict=True)
            ax.errorbar(
                wx, wm, yerr=[lows, highs], fmt="none", ecolor="#000000", capsize=3, linewidth=0.9
            )
    labels = [_short(str(r.group if r.group_by else r.task), 24) for r in rows]
    ax.set_xticks(
        range(len(rows)),
        labels=labels,
        fontsize=9,
        rotation=30 if len(rows) > 5 else 0,
        ha="right" if len(rows) > 5 else "center",
    )
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{_whiskers_meaning(rows, alpha)}", fontsize=10, loc="left")
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)


def count_bars(rows: Sequence[Row], title: str, xlabel: str, ylabel: str, path: Path) -> Path:
    """How many test items each group holds (the test set's own distribution)."""
    fig, ax = _subplots(_WIDTH, max(1.8, 0.34 * len(rows) + 1.1))
    counts = [int(r.n or 0) for r in rows]
    ax.barh(range(len(rows)), counts, color=TUNED_COLOUR)
    for y, count in enumerate(counts):
        ax.text(count, y, f" {count}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=[_short(str(r.group)) for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, max(counts + [1]) * 1.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def flip_counts(row: Row) -> tuple[int, int] | None:
    """(lost, gained) items of a row: its ``flips`` when present, else base_only/tuned_only."""
    if row.flips is not None:
        return row.flips.lost, row.flips.gained
    if row.base_only is not None and row.tuned_only is not None:
        return row.base_only, row.tuned_only
    return None


def flips_plot(rows: Sequence[Row], title: str, path: Path) -> Path:
    """Items lost (left, negative) and gained (right) per task."""
    fig, ax = _subplots(_WIDTH, max(1.8, 0.38 * len(rows) + 1.2))
    for y, row in enumerate(rows):
        lost, gained = flip_counts(row) or (0, 0)
        ax.barh(
            y,
            -lost,
            color=STATUS_COLOURS["regressed"],
            label="lost (base right, tuned wrong)" if y == 0 else None,
        )
        ax.barh(
            y,
            gained,
            color=STATUS_COLOURS["improved"],
            label="gained (tuned right, base wrong)" if y == 0 else None,
        )
        ax.text(-lost, y, f"{lost} ", va="center", ha="right", fontsize=8)
        ax.text(gained, y, f" {gained}", va="center", ha="left", fontsize=8)
    extent = max([max(flip_counts(r) or (0, 0)) for r in rows] + [1]) * 1.3
    ax.set_xlim(-extent, extent)
    ax.axvline(0, color="#000000", linewidth=0.7)
    ax.set_yticks(range(len(rows)), labels=[_short(row_label(r)) for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("items that changed (count; lost to the left, gained to the right)")
    ax.set_ylabel("task")
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)


def _listing(parts: Sequence[str], limit: int = 12) -> str:
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def _forest_alt(rows: Sequence[Row], what: str) -> str:
    parts = [f"{row_label(r)} {signed_points(r.delta)} ({r.status})" for r in rows]
    return (
        f"Forest plot of {what}: tuned minus base in points, with confidence intervals "
        f"and each row's margin. {_listing(parts)}."
    )


def _bars_alt(rows: Sequence[Row], what: str, alpha: float) -> str:
    parts = [f"{r.group}: base {points(r.base_mean)}, tuned {points(r.tuned_mean)}" for r in rows]
    return (
        f"Bar chart of {what} in points, base and tuned side by side "
        f"({_whiskers_meaning(rows, alpha)}). {_listing(parts)}."
    )


def _counts_alt(rows: Sequence[Row], label: str) -> str:
    parts = [f"{r.group}: {r.n}" for r in rows]
    return f"Bar chart of the number of test items per {label}. {_listing(parts, 30)}."


def _flips_alt(rows: Sequence[Row]) -> str:
    parts = []
    for r in rows:
        lost, gained = flip_counts(r) or (0, 0)
        parts.append(f"{row_label(r)}: lost {lost}, gained {gained}")
    return f"Bar chart of items lost and gained per task. {_listing(parts)}."


@dataclass(frozen=True)
class _Spec:
    name: str
    title: str
    rows: list[Row]
    draw: Callable[..., Path]  # draw(path=...)
    alt: str
    data: Any = None  # what else the figure shows (the sequential block), for its key


def figure_specs(summary: Summary) -> list[_Spec]:
    """Every figure that has data, in report order."""
    alpha = alpha_of(summary)
    specs: list[_Spec] = []

    def forest(name: str, title: str, rows: list[Row], what: str, ylabel: str) -> None:
        rows = [r for r in rows if is_number(r.delta)]
        if rows:
            draw = partial(forest_plot, rows, title, ylabel, alpha=alpha)
            specs.append(_Spec(name, title, rows, draw, _forest_alt(rows, what)))

    forest(
        "general",
        "General capability: tuned - base per benchmark",
        rows_of(summary, "general", None),
        "general benchmarks",
        "benchmark",
    )
    forest(
        "general_subtask",
        "General subtasks (judged via their group)",
        rows_of(summary, "general", "subtask"),
        "general subtasks",
        "subtask",
    )
    domain_tasks = rows_of(summary, "domain", None)
    forest("domain", "Domain: tuned - base per task", domain_tasks, "domain tasks", "task")
    for field, label in (("task_type", "task type"), ("output_format", "output format")):
        rows = rows_of(summary, "domain", field)
        forest(
            f"domain_{field}", f"Domain: tuned - base by {label}", rows, f"domain {label}s", label
        )
        if not rows:
            continue
        title = f"Domain: base vs tuned by {label}"
        draw = partial(grouped_bars, rows, title, label, "mean score (points)", alpha=alpha)
        alt = _bars_alt(rows, f"the domain mean score by {label}", alpha)
        specs.append(_Spec(f"domain_{field}_bars", title, rows, draw, alt))
        title = f"Test set: items per {label}"
        draw = partial(count_bars, rows, title, "items (count)", label)
        specs.append(_Spec(f"testset_{field}", title, rows, draw, _counts_alt(rows, label)))
    fmt_rows = rows_of(summary, "domain", "output_format", format_ok=True)
    if fmt_rows:
        title = "Format following by output format"
        ylabel = "outputs in the expected format (%)"
        draw = partial(grouped_bars, fmt_rows, title, "output format", ylabel, alpha=alpha)
        alt = _bars_alt(fmt_rows, "the share of outputs in the expected format", alpha)
        specs.append(_Spec("format_ok", title, fmt_rows, draw, alt))
    tasks = rows_of(summary, "general", None) + rows_of(summary, "domain", None)
    flip_rows = [r for r in tasks if flip_counts(r)]
    if flip_rows:
        title = "Items lost and gained per task"
        draw = partial(flips_plot, flip_rows, title)
        specs.append(_Spec("flips", title, flip_rows, draw, _flips_alt(flip_rows)))
    gating = _sequential_gating(summary)
    if gating:
        title = "Sequential gate: repeated CI at each look against the margin"
        draw = partial(sequential_plot, gating, title, alpha=alpha)
        specs.append(_Spec("sequential", title, [], draw, _sequential_alt(gating), gating))
    return specs


def _sequential_gating(summary: Summary) -> list[dict[str, Any]]:
    """The gating comparisons of a sequential summary that had a look."""
    block = summary.sequential or {}
    return [c for c in block.get("comparisons", []) if c.get("gating") and c.get("looks")]


# The gain's decisions coloured as the row statuses that mean the same.
_AS_STATUS = {"gain_shown": "improved", "gain_ruled_out": "regressed", "no_gain": "inconclusive"}


def _look_points(entry: dict[str, Any]) -> list[tuple[int, float, float | None, float | None]]:
    """(items, delta, RCI low, RCI high) in points per look, in the metric's direction."""
    sign = 100.0 if entry.get("higher_is_better", True) else -100.0
    out = []
    for look in entry["looks"]:
        low, high = look.get("rci_low"), look.get("rci_high")
        if is_number(low) and is_number(high) and sign < 0:
            low, high = high, low
        out.append(
            (
                int(look["n"]),
                float(look["delta"]) * sign,
                float(low) * sign if is_number(low) else None,
                float(high) * sign if is_number(high) else None,
            )
        )
    return out


def sequential_plot(
    entries: Sequence[dict[str, Any]], title: str, path: Path, alpha: float
) -> Path:
    """One panel per gating comparison: delta (dot) and its repeated (1 - alpha) CI (bar)
    at each look, by items evaluated, against the margin (-m, dashed) or the gain to show
    (+g) and zero: the interval narrows until it clears the line that decides."""
    height = 1.9 * len(entries) + 0.6
    fig = new_figure(_WIDTH, height)
    axes = fig.subplots(len(entries), 1, squeeze=False)[:, 0]
    for ax, entry in zip(axes, entries, strict=True):
        status = str(entry.get("status"))
        colour = STATUS_COLOURS.get(
            {
                "gain_shown": "improved",
                "gain_ruled_out": "regressed",
                "no_gain": "inconclusive",
            }.get(status, status),
            OTHER_COLOUR,
        )
        for n, delta, low, high in _look_points(entry):
            if low is not None and high is not None:
                ax.plot([n, n], [low, high], color=colour, linewidth=2.5)
            ax.plot([n], [delta], "o", color=colour, markersize=5)
        margin = entry.get("margin")
        if is_number(margin):
            line = margin * 100 if entry.get("kind") == "gain" else -margin * 100
            ax.axhline(line, color="#000000", linewidth=1.2, linestyle=_DASH)
        ax.axhline(0.0, color="#000000", linewidth=0.7)
        ax.set_xlim(0, int(entry.get("items_available") or 1) * 1.02)
        name = "domain gain (pooled)" if entry.get("kind") == "gain" else str(entry.get("task"))
        ax.set_title(f"{_short(name)}: {status}", fontsize=10, loc="left")
        ax.set_ylabel("tuned - base (points)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(
        f"candidate items evaluated (bar = repeated {ci_label(alpha)}; dashed = margin)"
    )
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return _save(fig, path, top=1.0 - 0.35 / height)  # 0.35 in for the suptitle


def _sequential_alt(entries: Sequence[dict[str, Any]]) -> str:
    parts = [
        f"{e.get('task') if e.get('kind') != 'gain' else 'domain gain'} {e.get('status')} at "
        f"look {e.get('stop_look')} ({e.get('items_evaluated')} of "
        f"{e.get('items_available')} items)"
        for e in entries
    ]
    return f"Repeated confidence intervals per look of the sequential gate. {_listing(parts)}."


def _key(name: str, title: str, rows: Sequence[Row], alpha: float, extra: Any = None) -> str:
    """What a figure depends on: its data, its title and this module's code."""
    code = Path(__file__).read_bytes()
    data = json.dumps(
        [name, title, alpha, [r.to_json() for r in rows], extra], sort_keys=True, default=str
    )
    return hashlib.sha256(code + data.encode("utf-8")).hexdigest()


def _read_index(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_plots(summary: Summary, plots_dir: Path) -> list[Figure]:
    """Every figure with data as plots_dir/NAME.png, in report order.

    A PNG whose data, title and drawing code are unchanged since it was written (recorded
    in plots/.index.json) is kept as is, so `collapse-eval report` need not load matplotlib.
    """
    from collapse_eval.records import atomic_write_json

    index_path = plots_dir / INDEX_FILE
    old, new = _read_index(index_path), {}
    alpha = alpha_of(summary)
    figures = []
    todo: list[tuple[Callable[..., Path], Path]] = []
    for spec in figure_specs(summary):
        path = plots_dir / f"{spec.name}.png"
        key = _key(spec.name, spec.title, spec.rows, alpha, spec.data)
        if not (old.get(spec.name) == key and path.is_file()):
            todo.append((spec.draw, path))
        new[spec.name] = key
        figures.append(Figure(name=spec.name, title=spec.title, alt=spec.alt, path=path))
    draw_all(todo)
    if new != old:
        atomic_write_json(index_path, new)
    return figures


# From this many figures to draw, half are drawn in a forked second process.
PARALLEL_MIN_FIGURES = 4


def _draw_each(todo: Sequence[tuple[Callable[..., Path], Path]]) -> None:
    for draw, path in todo:
        draw(path=path)


def draw_all(todo: Sequence[tuple[Callable[..., Path], Path]]) -> None:
    """Draw each (draw, path); with two or more cores, in two processes.

    Drawing is CPU-bound Python (layout, text, PNG encoding: about 0.1 s a figure), so the
    report's eleven figures take about half the wall time in two. matplotlib is imported
    before the fork, so the child does not import it again. Where fork is not available,
    or there are few figures, they are drawn here one after the other."""
    import multiprocessing
    import os

    if (
        len(todo) < PARALLEL_MIN_FIGURES
        or (os.cpu_count() or 1) < 2
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        _draw_each(todo)
        return
    from concurrent.futures import ProcessPoolExecutor

    import matplotlib.backends.backend_agg  # noqa: F401  (shared with the child)
    import matplotlib.figure  # noqa: F401

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        child = pool.submit(_draw_each, todo[1::2])
        _draw_each(todo[::2])
        child.result()

"""report.html: jinja2 with autoescaping on; every model output and name is untrusted text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from collapse_eval.records import ItemRecord, is_run_dir

_SECTIONS = (
    ("general", "general", None, "General capability", "task"),
    (
        "general_subtask",
        "general",
        "subtask",
        "General benchmarks by subtask (judged as groups)",
        "subtask",
    ),
    ("domain", "domain", None, "Domain test set", "task"),
    ("domain_task_type", "domain", "task_type", "Domain by task type", "task type"),
    ("domain_output_format", "domain", "output_format", "Domain by output format", "output format"),
)


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return ""
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def changed_examples(
    base: Sequence[ItemRecord], tuned: Sequence[ItemRecord], limit: int = 20
) -> list[dict[str, Any]]:
    """Domain items whose score changed between base and tuned, worst drops first."""
    by_key = {r.key: r for r in base if r.suite == "domain"}
    changed: list[tuple[float, str, str, dict[str, Any]]] = []
    for rec in tuned:
        other = by_key.get(rec.key)
        if other is None or other.score == rec.score:
            continue
        delta = rec.score - other.score
        changed.append(
            (
                delta,
                rec.task,
                rec.item_id,
                {
                    "task": rec.task,
                    "item_id": rec.item_id,
                    "task_type": rec.task_type,
                    "reference": rec.reference
                    if isinstance(rec.reference, str)
                    else json.dumps(rec.reference, ensure_ascii=False),
                    "base_prediction": other.prediction or "",
                    "tuned_prediction": rec.prediction or "",
                    "base_score": other.score,
                    "tuned_score": rec.score,
                },
            )
        )
    changed.sort(key=lambda entry: entry[:3])
    drops = [ex for delta, _, _, ex in changed if delta < 0][: limit // 2]
    gains = [ex for delta, _, _, ex in reversed(changed) if delta > 0][: limit - len(drops)]
    return drops + gains


def render_html(
    summary: Mapping[str, Any],
    plots: Mapping[str, Path],
    out_dir: Path,
    examples: Sequence[Mapping[str, Any]] = (),
) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("collapse_eval", "report/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    sections = []
    for key, suite, group_by, title, label in _SECTIONS:
        rows = [
            c
            for c in summary.get("comparisons", [])
            if c.get("suite") == suite and c.get("group_by") == group_by
        ]
        if rows:
            plot = plots.get(key)
            sections.append(
                {
                    "key": key,
                    "title": title,
                    "label": label,
                    "rows": rows,
                    "plot": plot.relative_to(out_dir).as_posix() if plot else None,
                }
            )
    template = env.get_template("report.html.j2")
    return template.render(
        summary=_defaults(summary),
        sections=sections,
        fmt=_fmt,
        retention=summary.get("retention"),
        examples=list(examples),
    )


def _defaults(summary: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(summary)
    out.setdefault("alpha", None)
    out.setdefault("created_at", None)
    out.setdefault("reasons", [])
    out.setdefault("base", {"model": "?"})
    out.setdefault("tuned", {"model": "?"})
    return out


def write_reports(
    out_dir: Path,
    summary: Mapping[str, Any],
    *,
    examples: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """summary.md, report.html and plots/*.png in ``out_dir``, from the summary (+ runs).

    ``examples`` (changed items) are read from the summary's run directories if not given.
    """
    from collapse_eval.records import atomic_write_text
    from collapse_eval.report.markdown import render_summary_markdown
    from collapse_eval.report.plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(summary, out_dir / "plots")
    if examples is None:
        examples = _examples_from_runs(out_dir, summary)
    atomic_write_text(out_dir / "summary.md", render_summary_markdown(dict(summary)))
    atomic_write_text(out_dir / "report.html", render_html(summary, plots, out_dir, examples))
    return {
        "summary.md": out_dir / "summary.md",
        "report.html": out_dir / "report.html",
        **{f"plots/{p.name}": p for p in plots.values()},
    }


def _examples_from_runs(out_dir: Path, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    from collapse_eval.columns import changed_examples as changed_column_examples
    from collapse_eval.columns import load_run_columns

    base_run = (summary.get("base") or {}).get("run")
    tuned_run = (summary.get("tuned") or {}).get("run")
    if base_run and tuned_run:
        base_path, tuned_path = _resolve(out_dir, base_run), _resolve(out_dir, tuned_run)
        if is_run_dir(base_path) and is_run_dir(tuned_path):
            return changed_column_examples(
                load_run_columns(base_path), load_run_columns(tuned_path)
            )
    return []


def _resolve(out_dir: Path, run: str) -> Path:
    path = Path(run)
    return path if path.is_absolute() or path.exists() else out_dir / path

"""report.html: one self-contained file (inline CSS/JS, images as data: URIs).

jinja2 autoescaping is on: every model output, name and reason is untrusted text. The
page's Content-Security-Policy allows no network and runs only the inline script and
style whose SHA-256 hashes it names; nothing else can execute even if text slipped through.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from collapse_eval.columns import RunColumns
from collapse_eval.report.examples import INDEX_FILE as EXAMPLES_INDEX
from collapse_eval.report.examples import Examples, examples_for
from collapse_eval.report.fmt import (
    STATUSES,
    UNIT_NOTE,
    alpha_of,
    ci_label,
    ci_points,
    decision_interval,
    interval_cell,
    interval_header,
    interval_note,
    is_number,
    margin_points,
    p_value,
    points,
    row_label,
    row_margin,
    rows_of,
    short_model,
    signed_points,
    status_meanings,
)
from collapse_eval.report.plots import Figure, flip_counts
from collapse_eval.report.training_view import nearest_by_item, training_view
from collapse_eval.summary import Comparison, DomainGain, Summary

Row = Mapping[str, Any]  # a comparison row as summary.json holds it (Comparison.to_json)

# Columns of the table of every comparison: summary.json fields, in this order, then any
# field this list does not know yet (shown as text).
FIELD_ORDER = (
    "suite", "task", "group_by", "group", "metric", "status", "family", "n", "base_mean",
    "tuned_mean", "delta", "ci_low", "ci_high", "equivalence_ci_low", "equivalence_ci_high",
    "required", "margin", "margin_source", "benchmark_margin",
    "test",
    "ci_method", "p_value", "p_adjusted", "q_value", "mde", "se", "se_clustered",
    "n_clusters", "base_only", "tuned_only", "flips", "higher_is_better", "critical",
    "note",
)  # fmt: skip
POINT_FIELDS = frozenset(
    ("base_mean", "tuned_mean", "delta", "ci_low", "ci_high", "equivalence_ci_low",
     "equivalence_ci_high", "margin", "benchmark_margin", "mde", "se", "se_clustered")
)  # fmt: skip
P_FIELDS = frozenset(("p_value", "p_adjusted", "q_value"))
SIGNED_FIELDS = frozenset(
    ("delta", "ci_low", "ci_high", "equivalence_ci_low", "equivalence_ci_high")
)

_SECTIONS = (
    # (key, suite, group_by, metric, title, first column)
    ("general", "general", None, None, "General benchmarks", "benchmark"),
    ("general_subtask", "general", "subtask", None,
     "General subtasks (judged via their group)", "subtask"),
    ("general_metric", "general", "metric", None,
     "General tasks, other metrics (reported, never gating)", "task / metric"),
    ("domain", "domain", None, None, "Domain tasks", "task"),
    ("domain_task_type", "domain", "task_type", None, "Domain by task type", "task type"),
    ("domain_output_format", "domain", "output_format", None,
     "Domain by output format", "output format"),
    ("format_ok", "domain", "output_format", "format_ok",
     "Format following by output format", "output format"),
)  # fmt: skip
_FIGURES_OF = {
    "general": ("general",),
    "general_subtask": ("general_subtask",),
    "general_metric": (),
    "domain": ("domain",),
    "domain_task_type": ("domain_task_type", "domain_task_type_bars", "testset_task_type"),
    "domain_output_format": (
        "domain_output_format", "domain_output_format_bars", "testset_output_format"),
    "format_ok": ("format_ok",),
}  # fmt: skip


def _asset(name: str) -> str:
    return (resources.files("collapse_eval") / "report" / "templates" / name).read_text("utf-8")


def _csp_hash(text: str) -> str:
    return (
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"
    )


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(field: str, value: Any) -> dict[str, str]:
    """Display text and sort value of one field of a comparison row."""
    if value is None:
        return {"text": "", "sort": ""}
    if field in POINT_FIELDS and is_number(value):
        if field in SIGNED_FIELDS:
            text = signed_points(value)
        elif field in ("margin", "benchmark_margin"):
            text = margin_points(value)
        else:
            text = points(value)
        return {"text": text, "sort": repr(float(value))}
    if field in P_FIELDS and is_number(value):
        return {"text": p_value(value), "sort": repr(float(value))}
    if field == "delta_quantiles" and isinstance(value, Mapping):
        return _quantiles_cell(value)
    if field == "flips" and isinstance(value, Mapping):
        return {
            "text": ", ".join(f"{k} {v}" for k, v in value.items()),
            "sort": str(value.get("lost", "")),
        }
    if isinstance(value, bool):
        return {"text": "yes" if value else "no", "sort": str(int(value))}
    if is_number(value):
        return {"text": str(value), "sort": repr(float(value))}
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
        return {"text": text, "sort": text}
    return {"text": str(value), "sort": str(value)}


def _row_name(row: Comparison) -> str:
    """The all-fields table's first column, which stays in view when it scrolls sideways:
    what the row compares ('arc_easy', 'task_type = intent', '... (format_ok)')."""
    name = row_label(row)
    if row.group_by not in (None, "subtask", "metric"):
        name = f"{row.group_by} = {row.group}"
    return f"{name} ({row.metric})" if row.metric == "format_ok" else name


def _quantiles_cell(value: Mapping[str, Any]) -> dict[str, str]:
    """'p05 -12.0 · p25 -3.0 · ...' in points (the JSON object took a 1000-pixel column);
    sorted by the median."""
    parts = [f"{k} {signed_points(v)}" if is_number(v) else f"{k} {v}" for k, v in value.items()]
    median = value.get("p50")
    return {"text": " · ".join(parts), "sort": repr(float(median)) if is_number(median) else ""}


def _all_fields(rows: Sequence[Row]) -> list[str]:
    present = {key for row in rows for key in row}
    return [f for f in FIELD_ORDER if f in present] + sorted(present - set(FIELD_ORDER))


def _field_header(field: str) -> list[str]:
    """The header's words, split after each underscore: the template joins them with a
    line-break opportunity (<wbr>), so 'equivalence_ci_low (pts)' can take two lines."""
    words = field.split("_")
    parts = [w + "_" for w in words[:-1]] + [words[-1]]
    return [*parts[:-1], f"{parts[-1]} (pts)"] if field in POINT_FIELDS else parts


def _interval_view(row: Comparison, alpha: float, header: str) -> dict[str, str]:
    """The CI cell: the interval that decides the row's status; on an equivalence row its
    tooltip says so and gives the (1 - alpha) CI too."""
    interval = decision_interval(row, alpha)
    title = ""
    if interval.tost:
        title = (
            f"{interval.label}: equivalent when it lies within plus or minus the margin "
            f"(two one-sided tests at alpha {alpha:g}); {ci_label(alpha)} "
            f"{ci_points(row.ci_low, row.ci_high)}"
        )
    return {"ci": interval_cell(interval, header), "ci_title": title}


def _section_row(row: Comparison, alpha: float, header: str) -> dict[str, Any]:
    flips = flip_counts(row)
    return {
        "label": row.group if row.group_by == "subtask" else row_label(row),
        "title": row_label(row),
        "n": row.n,
        "base": points(row.base_mean),
        "tuned": points(row.tuned_mean),
        "delta": signed_points(row.delta),
        "delta_sort": row.delta if is_number(row.delta) else "",
        **_interval_view(row, alpha, header),
        "margin": row_margin(row),
        "margin_source": row.margin_source,
        "p": p_value(row.p_adjusted),
        "status": str(row.status),
        "flips": f"{flips[0]} / {flips[1]}" if flips else None,
        "note": row.note,
        "critical": bool(row.critical),
    }


def _figure_view(figure: Figure) -> dict[str, str]:
    return {
        "title": figure.title,
        "alt": figure.alt,
        "src": _data_uri(figure.path),
        "file": f"plots/{figure.path.name}",
    }


def _sections(summary: Summary, figures: Sequence[Figure]) -> list[dict[str, Any]]:
    by_name = {f.name: f for f in figures}
    alpha = alpha_of(summary)
    sections = []
    for key, suite, group_by, metric, title, first in _SECTIONS:
        rows = rows_of(summary, suite, group_by, format_ok=metric == "format_ok")
        if not rows:
            continue
        shown = [by_name[n] for n in _FIGURES_OF[key] if n in by_name]
        header = interval_header(rows, alpha)
        sections.append(
            {
                "key": key,
                "suite": suite,
                "title": title,
                "first": first,
                "ci_header": header,
                "rows": [_section_row(r, alpha, header) for r in rows],
                "has_flips": any(flip_counts(r) for r in rows),
                "has_note": any(r.note for r in rows),
                "figures": [_figure_view(f) for f in shown],
            }
        )
    return sections


def _run_info(summary: Summary, side: str, examples: Examples) -> dict[str, Any]:
    info = (summary.base if side == "base" else summary.tuned).to_json()
    for key in ("model", "run", "model_fingerprint"):
        info.setdefault(key, None)
    manifest = examples.manifests.get(side) or {}
    for key in ("engine", "engine_args", "lm_eval_version", "collapse_eval_version", "created_at"):
        if info.get(key) is None and manifest.get(key) is not None:
            info[key] = manifest[key]
    if info.get("model_fingerprint") is None and manifest.get("model_fingerprint"):
        info["model_fingerprint"] = manifest["model_fingerprint"]
    model = str(info.get("model") or "?")
    info["model"] = model
    info["short"] = short_model(model)
    fingerprint = info.get("model_fingerprint") or "not recorded"
    info["tooltip"] = (
        f"{model}\nfingerprint: {fingerprint}\nrun: {info.get('run') or 'not recorded'}"
    )
    if isinstance(info.get("engine_args"), (dict, list)):
        info["engine_args"] = json.dumps(info["engine_args"], ensure_ascii=False, sort_keys=True)
    return info


def _meta(
    summary: Summary, base: Mapping[str, Any], tuned: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(label, value) pairs of whatever the summary and the runs' manifests carry."""
    items: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if value is not None and value != "":
            items.append((label, str(value)))

    for key, label in (
        ("engine", "engine"),
        ("engine_args", "engine args"),
        ("lm_eval_version", "lm-eval version"),
    ):
        b, t = base.get(key), tuned.get(key)
        add(label, b if b == t or t is None else f"base {b}; tuned {t}" if b is not None else t)
    add("collapse-eval version", summary.collapse_eval_version)
    add("alpha", summary.alpha)
    add("seed", summary.seed)
    add("bootstrap resamples", summary.n_boot)
    add("compared at", summary.created_at)
    add("schema version", summary.schema_version)
    return items


def _reasons(summary: Summary) -> list[dict[str, str]]:
    return [
        {
            "text": str(r),
            "kind": "note"
            if str(r).startswith("note:")
            else ("failure" if summary.verdict == "fail" else "head"),
        }
        for r in summary.reasons
    ]


def _examples_view(examples: Examples, summary: Summary) -> dict[str, Any]:
    rows = examples.rows
    traced = nearest_by_item(summary)  # lost domain items -> nearest training samples
    for ex in rows:
        ex["base_score_text"] = "" if ex["base_score"] is None else f"{ex['base_score']:g}"
        ex["tuned_score_text"] = "" if ex["tuned_score"] is None else f"{ex['tuned_score']:g}"
        found = traced.get((str(ex["task"]), str(ex["item_id"])), {})
        ex["nearest"] = found.get("nearest", []) if ex["direction"] == "lost" else []
        ex["contaminated"] = found.get("contaminated")
        if not ex["prompt"] and found.get("input"):  # runs keep no prompts; --domain does
            ex["prompt"] = found["input"]

    def values(field: str) -> list[str]:
        return sorted({str(ex[field]) for ex in rows if ex[field]})

    return {
        "rows": rows,
        "counts": sorted(examples.counts.items()),
        "problem": examples.problem,
        "tasks": values("task"),
        "task_types": values("task_type"),
        "output_formats": values("output_format"),
        "has_prompt": any(ex["prompt"] for ex in rows),
        "has_nearest": bool(traced),
    }


def render_html(summary: Summary, figures: Sequence[Figure], examples: Examples) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("collapse_eval", "report/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    css, js = _asset("report.css"), _asset("report.js")
    csp = (
        "default-src 'none'; img-src data:; "
        f"style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    alpha = alpha_of(summary)
    base, tuned = _run_info(summary, "base", examples), _run_info(summary, "tuned", examples)
    comparisons = [c.to_json() for c in summary.comparisons]  # every field, as written
    fields = _all_fields(comparisons)
    flips_figure = next((f for f in figures if f.name == "flips"), None)
    sequential_figure = next((f for f in figures if f.name == "sequential"), None)
    verdict = str(summary.verdict or "unknown")
    return env.get_template("report.html.j2").render(
        css=css,
        js=js,
        csp=csp,
        verdict=verdict,
        verdict_class=verdict if verdict in ("pass", "fail") else "unknown",
        reasons=_reasons(summary),
        base=base,
        tuned=tuned,
        meta=_meta(summary, base, tuned),
        interval_note=interval_note(summary.comparisons, alpha),
        unit_note=UNIT_NOTE,
        statuses=[(s, status_meanings(alpha)[s]) for s in STATUSES],
        sections=_sections(summary, figures),
        retention=_retention(summary, alpha),
        pooled=_pooled(summary, alpha),
        fields=[(f, _field_header(f)) for f in fields],
        all_rows=[
            {
                "name": _row_name(typed),
                "status": str(c.get("status")),
                "suite": str(c.get("suite")),
                "cells": [_cell(f, c.get(f)) for f in fields],
            }
            for typed, c in zip(summary.comparisons, comparisons, strict=True)
        ],
        status_values=sorted({str(c.get("status")) for c in comparisons}),
        flips_figure=_figure_view(flips_figure) if flips_figure else None,
        sequential_figure=_figure_view(sequential_figure) if sequential_figure else None,
        examples=_examples_view(examples, summary),
        training=training_view(summary),
        unpaired=summary.unpaired,
    )


def _retention(summary: Summary, alpha: float) -> dict[str, str] | None:
    ret = summary.retention
    if ret is None or not is_number(ret.index):
        return None
    ci = (
        f"{ret.ci_low:.3f} to {ret.ci_high:.3f}"
        if is_number(ret.ci_low) and is_number(ret.ci_high)
        else "n/a"
    )
    n_tasks = "n/a" if "n_tasks" in ret.absent else str(ret.n_tasks)
    return {
        "index": f"{ret.index:.3f}",
        "ci": f"{ci_label(alpha)} {ci}",
        "n_tasks": n_tasks,
        "base": points(ret.base_macro),
        "tuned": points(ret.tuned_macro),
    }


def _pooled(summary: Summary, alpha: float) -> dict[str, str] | None:
    pooled = summary.domain_overall.pooled if summary.domain_overall else None
    if pooled is None:
        return None
    return {
        "n": str(pooled.n),
        "base": points(pooled.base_mean),
        "tuned": points(pooled.tuned_mean),
        "delta": signed_points(pooled.delta),
        "ci": f"{ci_label(alpha)} {ci_points(pooled.ci_low, pooled.ci_high)}",
        "p": p_value(pooled.p_value),
        "gain": _gain_words(summary.domain_gain),
    }


def _gain_words(gain: DomainGain | None) -> str:
    if gain is None:
        return ""
    met = "met" if gain.met else "not met"
    return f"required, {met}" if gain.required else f"{met} (not required)"


def write_reports(
    out_dir: Path,
    summary: Summary,
    env: Mapping[str, str] | None = None,
    *,
    run_dirs: tuple[Path | None, Path | None] | None = None,
    runs: tuple[RunColumns, RunColumns] | None = None,
) -> dict[str, Path]:
    """summary.md, report.html, junit.xml and plots/*.png in ``out_dir`` from the summary
    and its two runs, base then tuned: ``runs`` already loaded as columns (compare), else
    read from ``run_dirs`` (None for a run that was not found: the report then says so
    where the examples would be). The report never looks the runs up itself. summary.md
    is also appended to $GITHUB_STEP_SUMMARY."""
    from collapse_eval.records import atomic_write_text
    from collapse_eval.report.junit import render_junit
    from collapse_eval.report.markdown import render_summary_markdown
    from collapse_eval.report.plots import write_plots

    env = os.environ if env is None else env
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = write_plots(summary, out_dir / "plots")
    examples = examples_for(
        summary, out_dir, run_dirs=run_dirs, runs=runs, index=out_dir / EXAMPLES_INDEX
    )
    markdown = render_summary_markdown(summary)
    atomic_write_text(out_dir / "summary.md", markdown)
    atomic_write_text(out_dir / "junit.xml", render_junit(summary))
    atomic_write_text(out_dir / "report.html", render_html(summary, figures, examples))
    step_summary = env.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    return {
        "summary.md": out_dir / "summary.md",
        "junit.xml": out_dir / "junit.xml",
        "report.html": out_dir / "report.html",
        **{f"plots/{f.path.name}": f.path for f in figures},
    }

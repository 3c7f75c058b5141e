"""The training block of summary.json (``compare --train``) as report.html shows it: the
per-slice table with the correlations across slices, and each lost domain item's nearest
training samples for the examples view. Every text here (sample ids, training inputs and
responses, task types) is untrusted and left to the template's autoescaping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collapse_eval.report.fmt import alpha_of, ci_label, ci_points, signed_points
from collapse_eval.summary import Summary

_KINDS = (
    ("task_type", "By task type"),
    ("output_format", "By output format"),
    ("cell", "By task type and output format"),
)


def training_view(summary: Summary) -> dict[str, Any] | None:
    """What the report's "Training data by slice" section shows; None without a block."""
    block = summary.training
    if block is None:
        return None
    from collapse_eval.training import training_lines

    lines = training_lines(block)
    n_types = sum(s["group_by"] == "task_type" for s in block.get("slices", []))
    tables = []
    for kind, title in _KINDS:
        rows = [_slice_row(s) for s in block.get("slices", []) if s["group_by"] == kind]
        if rows and not (kind == "cell" and len(rows) == n_types):  # cells = task types
            tables.append({"kind": kind, "title": title, "rows": rows})
    return {
        "ci_header": ci_label(alpha_of(summary)),
        "head": lines[0],
        "tables": tables,
        "correlations": [line.strip() for line in lines if "vs delta across" in line],
        "lost": lines[-1].strip(),
    }


def _slice_row(row: Mapping[str, Any]) -> dict[str, Any]:
    names = [row.get("task_type"), row.get("output_format")]
    quality = row.get("quality")
    return {
        "name": " / ".join(str(n) for n in names if n is not None),
        "n_train": row["n_train"],
        "share": f"{100 * row['share']:.1f}%",
        "quality": "" if quality is None else f"{quality:.3f}",
        "quality_sort": "" if quality is None else repr(float(quality)),
        "n_flagged": row["n_flagged"],
        "flags": ", ".join(f"{k} {v}" for k, v in row.get("flags", {}).items()),
        "n_test": row["n_test"],
        "lost": row["lost"],
        "delta": "" if row["delta"] is None else signed_points(row["delta"]),
        "delta_sort": "" if row["delta"] is None else repr(float(row["delta"])),
        "ci": "" if row["ci_low"] is None else ci_points(row["ci_low"], row["ci_high"]),
    }


def nearest_by_item(summary: Summary) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, item id) of each lost domain item -> its nearest training samples and its
    contamination, as the examples view shows them."""
    block = summary.training or {}
    out = {}
    for row in block.get("lost", []):
        nearest = [
            {
                **n,
                "flags_text": ", ".join(n["flags"]) or "no flags",
                "score_text": f"{n['score']:.3f}",
            }
            for n in row.get("nearest", [])
        ]
        out[str(row["task"]), str(row["item_id"])] = {
            "input": row.get("input"),
            "nearest": nearest,
            "contaminated": row.get("contaminated"),
        }
    return out

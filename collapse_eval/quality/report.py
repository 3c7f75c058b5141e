"""Outputs of ``collapse-eval quality``: quality.json, samples.jsonl, quality.html, plots,
and with ``--keep-out`` the kept samples plus rejected.jsonl; ``load_quality`` reads
quality.json back (for correlate and other consumers)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from collapse_eval.errors import InputError
from collapse_eval.formats import input_error
from collapse_eval.formats.quality import KeepOut, QualityScores
from collapse_eval.quality.pipeline import (
    ALL_FLAGS,
    HARD_FLAGS,
    QUALITY_SCHEMA_VERSION,
    SAMPLE_DIMENSIONS,
    QualityResult,
    SampleQuality,
)
from collapse_eval.records import atomic_write_json, atomic_write_text, read_json
from collapse_eval.versioning import Migration, upgrade

__all__ = [
    "load_quality",
    "read_quality_scores",
    "write_outputs",
    "keep_out",
    "render_html",
    "write_plots",
]

QUALITY_FILE = "quality.json"
SAMPLES_FILE = "samples.jsonl"
HTML_FILE = "quality.html"
REJECTED_FILE = "rejected.jsonl"
# version v -> a function lifting a quality.json of version v to v + 1 (none yet).
QUALITY_MIGRATIONS: dict[int, Migration] = {}
# Worst samples listed in quality.html.
HTML_WORST = 50


def load_quality(path: str | Path) -> dict[str, Any]:
    """quality.json (or a directory holding one) with its schema version checked, as the
    plain JSON object.

    Versions are checked (and older ones migrated) by ``collapse_eval.versioning.upgrade``
    like every other file collapse-eval reads. The keys a consumer needs are ``overall``
    (0..1) and ``dimensions`` (name -> 0..1), checked as ``read_quality_scores`` does.
    """
    path, data = _quality_json(path)
    _scores(path, data)
    return data


def read_quality_scores(path: str | Path) -> QualityScores:
    """The overall score and the dimensions of a quality.json (or a directory holding one);
    an InputError names the file and field of what is missing or not a 0..1 number."""
    return _scores(*_quality_json(path))


def _quality_json(path: str | Path) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / QUALITY_FILE
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object (a quality.json from collapse-eval quality)")
    data = upgrade(
        data,
        kind=QUALITY_FILE,
        current=QUALITY_SCHEMA_VERSION,
        migrations=QUALITY_MIGRATIONS,
        path=path,
    )
    return path, data


def _scores(path: Path, data: dict[str, Any]) -> QualityScores:
    try:
        return msgspec.convert(data, QualityScores)
    except msgspec.ValidationError as exc:
        raise input_error(path, exc) from None


# ------------------------------------------------------------------ keep-out


def _original_lines(path: Path) -> dict[int, str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    return {number: text for number, text in enumerate(lines, start=1)}


def keep_out(
    result: QualityResult, source: Path, clean: Path, rejected: Path, min_score: float
) -> tuple[int, int]:
    """Write kept samples (score >= min_score, no hard flag) verbatim to ``clean`` and the
    others, with their reasons, to ``rejected``; return (kept, rejected)."""
    lines = _original_lines(source)
    kept: list[str] = []
    dropped: list[str] = []
    for sample in result.samples:
        reasons = _reject_reasons(sample, min_score)
        original = lines[sample.item.line].removeprefix("\ufeff")
        if not reasons:
            kept.append(original)
            continue
        entry = {
            "id": sample.item.id,
            "line": sample.item.line,
            "score": round(sample.score, 6),
            "reasons": reasons,
            "sample": json.loads(original),
        }
        dropped.append(json.dumps(entry, ensure_ascii=False))
    atomic_write_text(clean, "".join(line + "\n" for line in kept))
    atomic_write_text(rejected, "".join(line + "\n" for line in dropped))
    return len(kept), len(dropped)


def _reject_reasons(sample: SampleQuality, min_score: float) -> list[str]:
    reasons = [f for f in sample.flags if f in HARD_FLAGS]
    if sample.score < min_score:
        reasons.append(f"score {sample.score:.3f} < {min_score:g}")
    return reasons


# ------------------------------------------------------------------ plots


def write_plots(result: QualityResult, plot_dir: Path) -> dict[str, Path]:
    """dimensions.png (histogram per per-sample dimension and the sample score) and
    flags.png (flag counts per task type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    series = {"score": [s.score for s in result.samples]}
    for name in SAMPLE_DIMENSIONS:
        values = [s.dimensions[name] for s in result.samples if name in s.dimensions]
        if values:
            series[name] = values
    cols = 3
    rows = (len(series) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, values) in zip(axes.flat, series.items(), strict=False):
        ax.hist(values, bins=20, range=(0, 1), color="#0969da")
        ax.set_title(f"{name} (n={len(values)})", fontsize=9)
    for ax in list(axes.flat)[len(series) :]:
        ax.axis("off")
    fig.tight_layout()
    out["dimensions"] = plot_dir / "dimensions.png"
    fig.savefig(out["dimensions"], dpi=90)
    plt.close(fig)

    by_type = result.report.by_task_type
    reasons = [r for r in ALL_FLAGS if any(g.flags.get(r) for g in by_type.values())]
    fig, ax = plt.subplots(figsize=(9.5, 0.4 * max(len(by_type), 3) + 1.5))
    names = list(by_type)
    left = [0] * len(names)
    for reason in reasons:
        counts = [by_type[n].flags.get(reason, 0) for n in names]
        ax.barh(names, counts, left=left, label=reason)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_xlabel("flags (a sample may have several)")
    ax.set_title("Flags per task type")
    if reasons:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    out["flags"] = plot_dir / "flags.png"
    fig.savefig(out["flags"], dpi=90)
    plt.close(fig)
    return out


# ------------------------------------------------------------------ html


def _text(value: Any, limit: int = 600) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_html(result: QualityResult, plots: Mapping[str, Path]) -> str:
    """Self-contained HTML (plots inlined as data URIs); every sample text is escaped."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from collapse_eval.quality.rules import prompt_text

    env = Environment(
        loader=PackageLoader("collapse_eval", "report/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    images = {
        name: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        for name, path in plots.items()
    }
    worst: Sequence[SampleQuality] = sorted(
        result.samples, key=lambda s: (not s.hard, s.score, s.item.line)
    )[:HTML_WORST]
    rows = [
        {
            "id": s.item.id,
            "line": s.item.line,
            "task_type": s.item.task_type or "",
            "score": f"{s.score:.3f}",
            "flags": ", ".join(s.flags),
            "prompt": _text(prompt_text(s.item)),
            "response": _text(s.item.response),
        }
        for s in worst
    ]
    return env.get_template("quality.html.j2").render(
        q=result.quality, images=images, worst=rows, fmt=lambda v: f"{v:.3f}"
    )


# ------------------------------------------------------------------ everything


def write_outputs(
    result: QualityResult,
    out_dir: Path,
    *,
    source: Path | None = None,
    clean: Path | None = None,
    min_score: float = 0.0,
) -> dict[str, Path]:
    """Write every output into ``out_dir`` (and ``clean``); return name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if clean is not None and source is not None:
        rejected = out_dir / REJECTED_FILE
        n_kept, n_rejected = keep_out(result, source, clean, rejected, min_score)
        keep = KeepOut(str(clean), str(rejected), min_score, n_kept, n_rejected)
        result.report = msgspec.structs.replace(result.report, keep_out=keep)
        written.update({"kept": clean, "rejected": rejected})
    samples_text = "".join(
        json.dumps(s.record(), ensure_ascii=False) + "\n" for s in result.samples
    )
    atomic_write_text(out_dir / SAMPLES_FILE, samples_text)
    atomic_write_json(out_dir / QUALITY_FILE, result.quality)
    plots = write_plots(result, out_dir / "plots")
    atomic_write_text(out_dir / HTML_FILE, render_html(result, plots))
    written.update(
        {
            "quality": out_dir / QUALITY_FILE,
            "samples": out_dir / SAMPLES_FILE,
            "html": out_dir / HTML_FILE,
            **{f"plot_{k}": v for k, v in plots.items()},
        }
    )
    return written

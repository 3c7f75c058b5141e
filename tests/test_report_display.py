"""Issue 19, item 8's report bullets: the index plot's labels fit, general-task examples
show their question, the table of every field stays within the page, and continuous
means get whiskers that fit them (not Wilson's)."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.summary import Comparison, Summary
from tests.conftest import reports_of, write_run
from tests.test_many_candidates import _summary as candidate_summary

# ------------------------------------------------------------------ index plot labels


def _overview_figure(names: dict[str, tuple[str, float, float]], monkeypatch: Any) -> Any:
    """overview.png's figure for candidates NAME: (verdict, gain, retention)."""
    from collapse_eval.report import overview, plots

    figures: list[Any] = []
    real = plots.new_figure
    monkeypatch.setattr(
        plots, "new_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1]
    )
    candidates = [
        overview.Candidate(name, Summary.from_json(candidate_summary(name, *values)))
        for name, values in names.items()
    ]
    assert overview.overview_plot(candidates) is not None
    return figures[0]


def test_index_plot_labels_fit_inside_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's "smollm2-bf1(": the candidate with the highest retention sat at the right
    edge and its label ran off the image; a long name must fit too."""
    long_name = "smollm2-135m-instruct-quantized-bf16-with-a-very-long-run-name-" + "x" * 60
    fig = _overview_figure(
        {
            "smollm2-collapsed": ("fail", 0.40, 0.60),
            "smollm2-bf16": ("pass", 0.00, 1.004),  # the rightmost point
            long_name: ("fail", 0.20, 1.003),
            "mixed": ("pass", 0.42, 0.99),
        },
        monkeypatch,
    )
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    texts = fig.axes[0].texts
    assert len(texts) == 4
    for text in texts:
        box = text.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1, text.get_text()
        assert page.y0 <= box.y0 and box.y1 <= page.y1, text.get_text()
    shown = {t.get_text().replace("\n", " ").replace("- ", "-") for t in texts}
    assert "smollm2-bf16 (pass)" in shown
    # The long name wraps onto three lines and is cut there (the table names it in full).
    wrapped = next(t.get_text() for t in texts if t.get_text().startswith("smollm2-135m"))
    assert wrapped.count("\n") == 2 and wrapped.endswith("…")


def test_wrapped_labels_are_moved_apart_by_their_height() -> None:
    from collapse_eval.report.overview import label_offsets

    # A one-line label above, a three-line label 2 points lower: the lower one goes below
    # its point by its own height (6 + 3 lines of 12), clear of its marker.
    offsets = label_offsets([(100.0, 100.0), (100.0, 98.0)], ["d", "a\nb\nc"])
    assert offsets == [6.0, -42.0]


# ------------------------------------------------------------------ continuous whiskers


_ROW = {
    "suite": "domain", "task": "*", "group_by": "task_type", "metric": "rouge", "n": 60,
    "test": "wilcoxon", "p_value": 0.01, "p_adjusted": 0.01, "status": "improved",
}  # fmt: skip


def _bars_axes(rows: list[dict[str, Any]], tmp: Path, monkeypatch: Any) -> Any:
    from collapse_eval.report import plots

    figures: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    typed = [Comparison.from_json({**_ROW, **r}, "t", "row") for r in rows]
    plots.grouped_bars(typed, "Domain", "task type", "points", tmp / "b.png", 0.05)
    return figures[0].axes[0]


def _whiskers(ax: Any) -> list[tuple[float, float, float]]:
    """(x, low, high) of every whisker drawn, in points."""
    out = []
    for container in ax.containers:
        if type(container).__name__ != "ErrorbarContainer":
            continue
        for segments in container.lines[2]:
            for (x, low), (_, high) in segments.get_segments():
                out.append((round(x, 3), round(low, 3), round(high, 3)))
    return sorted(out)


def test_continuous_means_get_the_rows_own_ci_not_wilson(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ROUGE means of 0.30 and 0.36 with a paired-bootstrap CI of the delta of +0.01 to
    +0.11: the tuned bar's whisker is base + that CI (31 to 41 points); the base bar has
    none. Wilson (for 0/1 scores) would draw about 18.8 to 43.1 around 30."""
    ax = _bars_axes(
        [
            {
                "group": "summarize",
                "base_mean": 0.30,
                "tuned_mean": 0.36,
                "delta": 0.06,
                "ci_low": 0.01,
                "ci_high": 0.11,
                "ci_method": "bootstrap_percentile",
            },
        ],  # fmt: skip
        tmp_path,
        monkeypatch,
    )
    assert _whiskers(ax) == [(0.19, 31.0, 41.0)]  # the tuned bar only (x = 0 + 0.19)
    assert ax.get_title(loc="left") == (
        "Domain\nwhiskers: on the tuned bar, base mean + the 95% CI of the paired delta "
        "(paired bootstrap; continuous scores)"
    )


def test_binary_means_keep_wilson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collapse_eval.report.plots import wilson

    ax = _bars_axes(
        [
            {
                "group": "intent",
                "metric": "acc",
                "base_mean": 0.5,
                "tuned_mean": 0.6,
                "delta": 0.1,
                "ci_low": -0.05,
                "ci_high": 0.25,
                "base_only": 6,
                "tuned_only": 12,
                "test": "mcnemar_exact",
                "ci_method": "newcombe_hybrid_score",
            },
        ],  # fmt: skip
        tmp_path,
        monkeypatch,
    )
    base, tuned = wilson(0.5, 60, 0.05), wilson(0.6, 60, 0.05)
    assert base is not None and tuned is not None
    assert _whiskers(ax) == [
        (-0.19, round(base[0] * 100, 3), round(base[1] * 100, 3)),
        (0.19, round(tuned[0] * 100, 3), round(tuned[1] * 100, 3)),
    ]
    assert ax.get_title(loc="left").endswith("whiskers: Wilson 95% CI of each mean (0/1 scores)")


# ------------------------------------------------------------------ the table of every field


def _render(tmp: Path, summary: dict[str, Any]) -> str:
    reports_of(tmp, Summary.from_json(summary), env={})
    return (tmp / "report.html").read_text()


def _one_row_summary(**extra: Any) -> dict[str, Any]:
    row = {
        **_ROW, "group": "summarize", "base_mean": 0.30, "tuned_mean": 0.36, "delta": 0.06,
        "ci_low": 0.01, "ci_high": 0.11, "ci_method": "bootstrap_percentile",
        "delta_quantiles": {"p05": -0.12, "p25": -0.03, "p50": 0.0, "p75": 0.04, "p95": 0.15},
        **extra,
    }  # fmt: skip
    return {
        "schema_version": 1, "verdict": "pass", "reasons": [],
        "base": {"model": "b", "run": None}, "tuned": {"model": "t", "run": None},
        "policy": {}, "comparisons": [row],
    }  # fmt: skip


def test_every_field_table_is_compact_and_names_each_row(tmp_path: Path) -> None:
    html = _render(tmp_path, _one_row_summary())
    table = re.search(r'<table class="sortable" id="all-comparisons">(.*?)</table>', html, re.S)
    assert table is not None
    body = unescape(table.group(1))
    # delta_quantiles in points on wrapping text (the JSON object took ~1000 pixels)
    assert "p05 -12.0 · p25 -3.0 · p50 +0.0 · p75 +4.0 · p95 +15.0" in body
    assert '{"p05"' not in body
    # headers break after an underscore
    assert 'data-field="delta_quantiles" scope="col">delta_<wbr>quantiles</th>' in table.group(1)
    # the first column names the row (it stays in view when the table scrolls sideways)
    assert '<th class="rowname" scope="row">task_type = summarize</th>' in table.group(1)


# ------------------------------------------------------------------ general-task questions


class _Task:
    """What records_from_samples asks of an lm-eval task."""

    OUTPUT_TYPE = "multiple_choice"

    def doc_to_choice(self, doc: dict[str, Any]) -> list[str]:
        return ["no", "yes"]

    def doc_to_text(self, doc: dict[str, Any]) -> Any:
        return doc["text"]


def test_general_records_carry_the_documents_question() -> None:
    from collapse_eval.general import records_from_samples

    def sample(doc_id: int, text: Any) -> dict[str, Any]:
        return {
            "doc_id": doc_id, "doc": {"text": text}, "target": 1, "arguments": [["ctx", " yes"]],
            "metrics": ["acc"], "acc": 1.0, "filtered_resps": [[-1.0, False], [-0.5, False]],
        }  # fmt: skip

    question = "The house is <b>red</b>.\nQuestion: is the house red?\nAnswer:"
    records = records_from_samples("boolq", _Task(), [sample(0, question), sample(1, 1)], group="g")
    assert records[0].metadata == {"group": "g", "prompt": question}
    assert records[1].metadata == {"group": "g"}  # winogrande's text is an index: none
    plain = records_from_samples("boolq", _Task(), [sample(0, question)])
    assert plain[0].metadata == {"prompt": question}


def test_general_examples_show_the_question_escaped(tmp_path: Path) -> None:
    """Lost/gained examples of a general task: the question beside the answers."""
    from collapse_eval.cli import main

    question = "Passage: <script>alert(1)</script>\nQuestion: is it red?\nAnswer:"
    tasks = {"boolq": {"suite": "general", "primary_metric": "acc"}}

    def rows(flip: int) -> list[dict[str, Any]]:
        return [
            {"suite": "general", "task": "boolq", "item_id": str(i), "metric": "acc",
             "score": float((i % 2 == 0) != (i < flip)), "prediction": "yes",
             "reference": "no", "metadata": {"prompt": f"{i}. {question}"}}
            for i in range(60)
        ]  # fmt: skip

    base = write_run(tmp_path / "runs" / "base", "b", rows(0), tasks)
    tuned = write_run(tmp_path / "runs" / "tuned", "t", rows(6), tasks)
    out = tmp_path / "out"
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) in (0, 1)
    html = (out / "report.html").read_text()
    examples = html[html.index('id="examples"') :]
    assert "<th>prompt</th>" in examples
    shown = "<pre>0. Passage: &lt;script&gt;alert(1)&lt;/script&gt;\nQuestion: is it red?"
    assert shown in examples
    assert "<script>alert(1)" not in examples
    assert json.loads((out / "summary.json").read_text())["comparisons"][0]["task"] == "boolq"

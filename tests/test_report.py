"""Reports rendered from summary.json and the two runs it names: HTML, Markdown, plots."""

from __future__ import annotations

import copy
import json
import os
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.report.fmt import ci_label, p_value, short_model
from collapse_eval.report.markdown import escape_cell, render_summary_markdown
from collapse_eval.summary import SUMMARY_FILE, Comparison, Summary, side_run_dir
from tests.conftest import examples_of, reports_of, synthetic_rows, write_run

TASKS = {
    "arc_easy": {"suite": "general", "primary_metric": "acc"},
    "realestate": {"suite": "domain", "primary_metric": "score"},
}
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "</testcase>\x01\x1b[31m",
]


def compared(tmp_path: Path, domain_fields: Any = lambda i: {}) -> Path:
    """A compare output directory from two synthetic runs (tuned loses general items)."""
    base = write_run(
        tmp_path / "out" / "runs" / "base",
        "/models/org/base-7b",
        synthetic_rows(1, 0.7, 0.3, n=200, domain_fields=domain_fields),
        TASKS,
    )
    tuned = write_run(
        tmp_path / "out" / "runs" / "tuned",
        "/ckpt/sft/step-400",
        synthetic_rows(2, 0.4, 0.7, n=200, domain_fields=domain_fields),
        TASKS,
    )
    out = tmp_path / "out"
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) == 1
    return out


def with_new_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """Fields other parts of collapse-eval add: per-row margin source, small-n note,
    flips, format_ok rows and the equivalent status."""
    out = copy.deepcopy(summary)
    for row in out["comparisons"]:
        row["margin_source"] = "policy.general.margins" if row["suite"] == "general" else "policy"
        row["flips"] = {"lost": 11, "gained": 7, "same": row["n"] - 18}
    out["comparisons"][0]["note"] = "small n: 12 items"
    fmt_row = dict(out["comparisons"][-1], metric="format_ok", status="equivalent")
    fmt_row.update(group_by="output_format", group="json", base_mean=0.8, tuned_mean=0.95)
    out["comparisons"].append(fmt_row)
    return out


def test_ci_label_follows_alpha() -> None:
    assert ci_label(0.05) == "95% CI"
    assert ci_label(0.1) == "90% CI"
    assert ci_label(0.005) == "99.5% CI"


def test_p_values_that_underflow_are_not_printed_as_zero() -> None:
    assert p_value(0.0) == "< 1e-300"
    assert p_value(5e-320) == "< 1e-300"  # subnormal
    assert p_value(1.234e-12) == "1.23e-12"
    assert p_value(None) == "n/a"


def test_short_model_is_the_last_path_component() -> None:
    assert short_model("/ckpt/sft/step-400/") == "step-400"
    assert short_model("meta-llama/Llama-3.1-8B") == "Llama-3.1-8B"


def test_html_is_self_contained_and_uses_alpha_for_the_ci_label(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["alpha"] = 0.1
    summary["reasons"] = []  # the verdict's own wording was judged at alpha 0.05
    reports_of(out, summary, env={})
    html = (out / "report.html").read_text()
    assert "90% CI" in html and "95% CI" not in html
    sources = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(?:src|href)=\"(?!data:)", html)  # nothing loaded from elsewhere
    found = re.search(r'Content-Security-Policy" content="([^"]*)"', html)
    assert found is not None
    csp = unescape(found.group(1))
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'sha256-" in csp and "default-src 'none'" in csp
    # Tooltip with the full path; short name shown.
    assert 'title="/ckpt/sft/step-400' in html and ">step-400</span>" in html


def test_html_renders_new_fields_when_present(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = with_new_fields(json.loads((out / "summary.json").read_text()))
    written = reports_of(out, summary, env={})
    html = (out / "report.html").read_text()
    assert "policy.general.margins" in html
    assert "small n: 12 items" in html
    assert "Format following by output format" in html
    assert "st-equivalent" in html
    assert ">11 / 7<" in html  # lost / gained
    assert {"plots/format_ok.png", "plots/flips.png", "plots/general.png"} <= set(written)


def test_margin_column_shows_each_rows_margin(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["comparisons"][0]["margin"] = 0.035
    reports_of(out, summary, env={})
    row = re.search(
        r'data-section="general".*?<tbody>\s*<tr>(.*?)</tr>',
        (out / "report.html").read_text(),
        re.S,
    )
    assert row is not None
    margin_cell = re.search(r'<td class="num"(?: title="from ([^"]*)")?>3.5</td>', row.group(1))
    assert margin_cell is not None and margin_cell.group(1) == "default"


def test_markdown_escapes_untrusted_text_without_entities() -> None:
    from markdown_it import MarkdownIt

    render = MarkdownIt("commonmark").enable("table").render
    for text in HOSTILE + ["see https://evil.example and www.evil.example", "a|b", "**x**"]:
        html = render("- " + escape_cell(text))
        assert "<a " not in html and "<img" not in html and "<script" not in html
        assert "<strong>" not in html
    assert "&lt;" not in escape_cell("<b>")
    assert escape_cell("a|b\nc") == "a\\|b c"
    assert escape_cell("x\x01\x1by") == "xy"


def test_markdown_statuses_spelled_as_in_summary(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = with_new_fields(json.loads((out / "summary.json").read_text()))
    text = render_summary_markdown(Summary.from_json(summary))
    assert "non-inferior" not in text
    assert "**regressed**" in text and "equivalent" in text
    assert "### Format following by output format" in text
    assert text.startswith("## collapse-eval: FAIL\n")
    assert len(text) < 65536  # fits a GitHub comment


def test_step_summary_is_appended_when_the_variable_is_set(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n")
    reports_of(out, summary, env={"GITHUB_STEP_SUMMARY": str(step)})
    reports_of(out, summary, env={"GITHUB_STEP_SUMMARY": str(step)})
    text = step.read_text()
    assert text.startswith("earlier step\n## collapse-eval: FAIL")
    assert text.count("## collapse-eval: FAIL") == 2
    assert (out / "summary.md").read_text() in text


def test_step_summary_untouched_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    out = compared(tmp_path)  # compare itself appends once
    assert step.read_text().count("## collapse-eval: FAIL") == 1
    reports_of(out, json.loads((out / "summary.json").read_text()), env={})
    assert step.read_text().count("## collapse-eval: FAIL") == 1


def test_runs_are_found_relative_to_the_summary_not_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["base"]["run"], summary["tuned"]["run"] = "runs/base", "runs/tuned"
    # A decoy run at the same relative path under the working directory.
    decoy = tmp_path / "cwd"
    write_run(decoy / "runs" / "base", "decoy", [], TASKS)
    write_run(decoy / "runs" / "tuned", "decoy", [], TASKS)
    monkeypatch.chdir(decoy)
    typed = Summary.from_json(summary)
    assert side_run_dir(typed, "base", out / SUMMARY_FILE) == out / "runs" / "base"
    examples = examples_of(summary, out)
    assert examples.problem is None and examples.rows
    # Moved elsewhere, the report dir still finds its runs, also by their old absolute path.
    moved = tmp_path / "moved"
    out.rename(moved)
    assert examples_of(summary, moved).rows == examples.rows
    summary["base"]["run"] = str(out / "runs" / "base")  # no longer exists
    summary["tuned"]["run"] = str(out / "runs" / "tuned")
    typed = Summary.from_json(summary)
    assert side_run_dir(typed, "base", moved / SUMMARY_FILE) == moved / "runs" / "base"
    assert examples_of(summary, moved).rows == examples.rows


def test_missing_runs_are_explained(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["tuned"]["run"] = "nowhere/tuned"
    reports_of(out, summary, env={})
    html = (out / "report.html").read_text()
    assert "No examples: the tuned run (nowhere/tuned) was not found" in html


def test_examples_cover_general_and_domain_lost_and_gained(tmp_path: Path) -> None:
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    examples = examples_of(summary, out)
    seen = {(e["suite"], e["direction"]) for e in examples.rows}
    assert seen == {
        ("general", "lost"),
        ("general", "gained"),
        ("domain", "lost"),
        ("domain", "gained"),
    }
    row = next(r for r in summary["comparisons"] if r["task"] == "arc_easy")
    assert examples.counts["arc_easy"] == {"lost": row["base_only"], "gained": row["tuned_only"]}
    assert examples.rows[0]["direction"] == "lost"


def test_examples_read_records_in_any_key_order(tmp_path: Path) -> None:
    """Records with escaped strings or another key order take the slow path, same result."""
    fields = lambda i: {"prediction": 'quote " and \\ backslash', "reference": "é"}  # noqa: E731
    out = compared(tmp_path, fields)
    summary = json.loads((out / "summary.json").read_text())
    fast = examples_of(summary, out)
    for side in ("base", "tuned"):
        path = out / "runs" / side / "records.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(dict(reversed(o.items()))) + "\n" for o in lines))
    slow = examples_of(summary, out)
    assert slow.rows == fast.rows and slow.counts == fast.counts
    assert any(r["base_prediction"] == 'quote " and \\ backslash' for r in slow.rows)


def test_report_command_rerenders_everything_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = compared(tmp_path)
    for name in ("report.html", "summary.md", "junit.xml"):
        (out / name).unlink()
    monkeypatch.chdir(tmp_path.parent)
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "junit.xml" in printed and "report.html" in printed
    html = (out / "report.html").read_text()
    assert 'id="examples"' in html and "arc_easy / " in html


def test_compare_names_report_html_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = compared(tmp_path)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(f"report: {out / 'report.html'}")


def test_plots_are_reused_when_nothing_changed(tmp_path: Path) -> None:
    out = compared(tmp_path)
    png = out / "plots" / "general.png"
    before = png.stat().st_mtime_ns
    os.utime(png, ns=(before - 10**9, before - 10**9))
    summary = json.loads((out / "summary.json").read_text())
    reports_of(out, summary, env={})
    assert png.stat().st_mtime_ns == before - 10**9  # kept
    summary["comparisons"][0]["delta"] = -0.5
    reports_of(out, summary, env={})
    assert png.stat().st_mtime_ns > before - 10**9  # redrawn


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_cache_the_request_cache_and_keep_the_report(name: str) -> None:
    import yaml

    path = Path(__file__).parent.parent / "examples" / "ci" / name
    text = path.read_text()
    yaml.safe_load(text)  # valid YAML
    assert "collapse-eval compare" in text and '--cache-dir "$CACHE_DIR"' in text
    assert "set +e" not in text and "|| true" not in text  # exit 1 fails the job
    if name == "gitlab-ci.yml":
        job = yaml.safe_load(text)["release-gate"]
        assert job["cache"]["when"] == "always" and job["artifacts"]["when"] == "always"
        assert job["artifacts"]["reports"]["junit"].endswith("junit.xml")
    else:
        steps = yaml.safe_load(text)["jobs"]["gate"]["steps"]
        uses = {s.get("uses", "").split("@")[0]: s for s in steps}
        assert uses["actions/cache/save"]["if"] == "always()"
        assert uses["actions/upload-artifact"]["if"] == "always()"


# What a comparison row must hold; the plot tests below give only what they draw.
_BLANK_ROW = {
    "suite": "general", "task": "", "group_by": None, "group": None, "metric": "acc", "n": 1,
    "base_mean": None, "tuned_mean": None, "delta": 0.0, "ci_low": None, "ci_high": None,
    "test": "mcnemar_exact", "p_value": None, "p_adjusted": None, "status": None,
}  # fmt: skip


def _typed(rows: list[dict[str, Any]]) -> list[Comparison]:
    return [Comparison.from_json({**_BLANK_ROW, **row}, "test", "row") for row in rows]


def test_forest_plot_draws_each_rows_own_margin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collapse_eval.report import plots

    figures: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    rows = [
        {
            "task": "arc_easy",
            "delta": -0.01,
            "ci_low": -0.03,
            "ci_high": 0.01,
            "margin": 0.02,
            "status": "inconclusive",
        },
        {
            "task": "gsm8k",
            "delta": -0.01,
            "ci_low": -0.03,
            "ci_high": 0.01,
            "margin": 0.05,
            "status": "non_inferior",
        },
    ]
    plots.forest_plot(_typed(rows), "t", "benchmark", path=tmp_path / "f.png", alpha=0.05)
    ax = figures[0].axes[0]
    ticks = {
        (round(line.get_xdata()[0], 6), round(sum(line.get_ydata()) / 2, 6))
        for line in ax.get_lines()
        if line.get_linestyle() not in ("-", "None")
        and len(set(line.get_xdata())) == 1
        and len(line.get_xdata()) == 2
    }
    assert ticks == {(-2.0, 0.0), (-5.0, 1.0)}  # points, on each row
    assert ax.get_xlabel() == "tuned - base (points; bar = 95% CI)"
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1


def test_minimal_summary_degrades_gracefully(tmp_path: Path) -> None:
    summary = {
        "schema_version": 1,
        "verdict": "pass",
        "reasons": ["pass: nothing compared"],
        "base": {"model": "b", "run": None},
        "tuned": {"model": "t", "run": None},
        "policy": {},
    }
    rows = [
        {"suite": "general", "task": "x", "group_by": None, "group": None, "metric": "acc",
         "n": 3, "base_mean": None, "tuned_mean": None, "delta": None, "ci_low": None,
         "ci_high": None, "test": "mcnemar_exact", "p_value": None, "p_adjusted": None,
         "status": "inconclusive"},
    ]  # fmt: skip
    typed = Summary.from_json({**summary, "comparisons": [{**row, "delta": 0.0} for row in rows]})
    typed.comparisons[0].delta = None  # type: ignore[assignment]  # a checked file has one
    written = reports_of(tmp_path, typed, env={})
    html = (tmp_path / "report.html").read_text()
    assert "No examples: the base run (not named in summary.json) was not found" in html
    assert "95% CI" in html and "n/a" in html
    assert set(written) == {"summary.md", "junit.xml", "report.html"}  # no plot without data
    assert (
        "| x | 3 | n/a | n/a | n/a | n/a | n/a | n/a | inconclusive |"
        in (tmp_path / "summary.md").read_text()
    )


def test_secondary_metric_rows_have_their_own_section(tmp_path: Path) -> None:
    """gsm8k strict vs flexible: a reader must see both to tell lost format from lost answers."""
    out = compared(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    primary = next(r for r in summary["comparisons"] if r["suite"] == "general")
    secondary = dict(primary, group_by="metric", group="acc_norm", metric="acc_norm")
    secondary.update(base_mean=0.5, tuned_mean=0.25, delta=-0.25, status="regressed")
    summary["comparisons"].append(secondary)
    reports_of(out, summary, env={})
    html = (out / "report.html").read_text()
    section = re.search(r'data-section="general_metric".*?<tbody>(.*?)</tbody>', html, re.S)
    assert section is not None
    assert f'title="{primary["task"]} / acc_norm"' in section.group(1)
    assert "-25.0" in section.group(1)
    markdown = (out / "summary.md").read_text()
    assert "### General tasks, other metrics (never gating)" in markdown


def test_bars_draw_when_a_mean_sits_on_the_edge_of_its_interval(tmp_path: Path) -> None:
    """Means of exactly 0 or 1, or outside 0..1, must not make matplotlib refuse the bars."""
    from collapse_eval.report.plots import grouped_bars

    rows = [
        {"task": "a", "base_mean": 0.0, "tuned_mean": 1.0, "n": 7},
        {"task": "b", "base_mean": 1.0, "tuned_mean": 0.0, "n": 540},
        {"task": "c", "base_mean": 1.7, "tuned_mean": -0.2, "n": 12},
    ]
    path = grouped_bars(_typed(rows), "t", "task", "points", tmp_path / "bars.png", 0.05)
    assert path.stat().st_size > 1000


def test_report_imports_no_heavy_library_it_does_not_need(tmp_path: Path) -> None:
    """`collapse-eval report` after compare: no pandas, no matplotlib (the plots are up to
    date), no model libraries; with plots to draw, matplotlib's object API but no pyplot."""
    import subprocess
    import sys

    out = compared(tmp_path)
    probe = (
        "import sys\n"
        "from collapse_eval.cli import main\n"
        f"code = main(['report', {str(out)!r}])\n"
        "heavy = ('pandas', 'scipy', 'statsmodels', 'torch', 'transformers', 'lm_eval',\n"
        "         'matplotlib', 'matplotlib.figure', 'matplotlib.pyplot')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )

    def loaded() -> str:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        run = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        return run.stdout.strip().splitlines()[-1]

    assert loaded() == "0 []"
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) == 9
    for png in pngs:
        png.unlink()
    assert loaded() == "0 ['matplotlib', 'matplotlib.figure']"
    assert sorted((out / "plots").glob("*.png")) == pngs  # drawn again, in two processes

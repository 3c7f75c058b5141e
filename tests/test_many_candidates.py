"""compare BASE T1 T2 ...: the base evaluated once, one report per candidate, an overview."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import UsageError
from collapse_eval.runner import RunSpec, candidate_names, compare_candidates
from tests.conftest import synthetic_rows, write_run
from tests.test_runner import _domain_file, _oracle

XSS = "<script>alert(1)</script>"
TASKS = {
    "arc_easy": {"suite": "general", "primary_metric": "acc"},
    "realestate": {"suite": "domain", "primary_metric": "score"},
}


def test_candidate_names_are_last_components_made_unique() -> None:
    assert candidate_names(["ckpts/a/", "other/a", "x/runs", "base", "a-2", "m"]) == [
        "a",
        "a-2",
        "runs-2",
        "base-2",
        "a-2-2",
        "m",
    ]


def test_many_candidates_evaluate_the_base_once(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl", n=100)
    engines = {"base": _oracle(5), "ckpt/good": _oracle(1), "other/good": _oracle(2)}
    built: list[str] = []

    def factory(spec: RunSpec) -> FakeEngine:
        built.append(spec.model)
        return engines[spec.model]

    spec = RunSpec(model="", domain_files=(domain,), run_general=False)
    out = tmp_path / "out"
    results = compare_candidates(
        "base", ["ckpt/good", "other/good"], spec, out, engine_factory=factory
    )
    assert built == ["base", "ckpt/good", "other/good"]
    assert [r.name for r in results] == ["good", "good-2"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["base", "good", "good-2"]
    for result, tuned_mean in zip(results, (1.0, 0.5), strict=True):
        summary = json.loads((out / result.name / "summary.json").read_text())
        assert summary == json.loads(json.dumps(result.summary.to_json()))
        assert summary["base"]["run"] == str(out / "runs" / "base")
        task = next(c for c in summary["comparisons"] if c["task"] == "rt")
        assert task["base_mean"] == pytest.approx(0.2)
        assert task["tuned_mean"] == pytest.approx(tuned_mean)
        assert (out / result.name / "report.html").is_file()
    # no general suite, so no retention index: the overview has the table, not the plot
    assert not (out / "overview.png").exists()
    page = (out / "index.html").read_text()
    assert "No plot: no candidate has both" in page and 'href="good-2/report.html"' in page
    assert not (out / "summary.json").exists()


def test_one_candidate_keeps_the_two_run_layout(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl", n=20)
    engines = {"base": _oracle(5), "tuned": _oracle(1)}
    spec = RunSpec(model="", domain_files=(domain,), run_general=False)
    out = tmp_path / "out"
    (result,) = compare_candidates(
        "base", ["tuned"], spec, out, engine_factory=lambda s: engines[s.model]
    )
    assert result.out == out and (out / "summary.json").is_file()
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["base", "tuned"]
    assert not (out / "index.html").exists()


def test_explicit_names_must_be_distinct(tmp_path: Path) -> None:
    spec = RunSpec(model="")
    with pytest.raises(UsageError, match="distinct"):
        compare_candidates("b", ["x", "y"], spec, tmp_path, names=["a", "a"])


def _rows(seed: int, p_general: float, p_domain: float) -> list[dict[str, Any]]:
    return synthetic_rows(seed, p_general, p_domain)


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    return {
        "base": write_run(tmp_path / "base", "base-model", _rows(1, 0.6, 0.2), TASKS),
        "good": write_run(tmp_path / "good", "good-model", _rows(1, 0.6, 0.7), TASKS),
        "collapsed": write_run(tmp_path / "bad", f"bad {XSS}", _rows(2, 0.3, 0.7), TASKS),
    }


def test_cli_many_candidates_exit_with_the_worst_verdict(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["compare", str(runs["base"]), str(runs["good"]), str(runs["collapsed"])]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert json.loads((out / "good" / "summary.json").read_text())["verdict"] == "pass"
    assert json.loads((out / "bad" / "summary.json").read_text())["verdict"] == "fail"
    assert f"overview: {out / 'index.html'}" in result.output
    only_good = CliRunner().invoke(
        cli,
        [
            "compare",
            str(runs["base"]),
            str(runs["good"]),
            str(runs["good"]),
            "--out",
            str(tmp_path / "o2"),
            "-q",
        ],
    )
    assert only_good.exit_code == 0, only_good.output
    assert (tmp_path / "o2" / "good-2" / "summary.json").is_file()


def test_overview_page_is_self_contained_and_escaped(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["compare", str(runs["base"]), str(runs["good"]), str(runs["collapsed"])]
    CliRunner().invoke(cli, [*args, "--out", str(out), "-q"])
    page = (out / "index.html").read_text()
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'; img-src data:;" in page
    assert '<img id="overview" src="data:image/png;base64,' in page
    assert 'alt="Scatter of domain gain against general retention index. good: domain gain' in page
    assert 'href="good/report.html"' in page and 'href="bad/summary.json"' in page
    assert 'src="http' not in page and "<script" not in page
    # one table row per candidate, in the order given, with its verdict
    assert page.index('data-candidate="good"') < page.index('data-candidate="bad"')
    assert page.count('class="verdict fail">FAIL') == 2  # the page header and "bad"
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _summary(model: str, verdict: str, gain: float, retention: float) -> dict[str, Any]:
    row = {
        "suite": "general", "task": "demo_arithmetic", "group_by": None, "group": None,
        "metric": "acc", "n": 500, "base_mean": 0.95, "tuned_mean": 0.95 * retention,
        "delta": 0.95 * (retention - 1), "ci_low": None, "ci_high": None, "test": "mcnemar",
        "p_value": None, "p_adjusted": None,
        "status": "regressed" if verdict == "fail" else "non_inferior",
    }  # fmt: skip
    return {
        "schema_version": 1,
        "verdict": verdict,
        "reasons": [f"{model}: {verdict}"],
        "base": {"model": "/world/base", "run": "runs/base"},
        "tuned": {"model": f"/world/{model}", "run": f"runs/{model}"},
        "policy": {},
        "comparisons": [row],
        "alpha": 0.05,
        "domain_overall": {
            "pooled": {"delta": gain, "ci_low": gain - 0.03, "ci_high": gain + 0.03}
        },
        "retention": {"index": retention, "ci_low": retention - 0.01, "ci_high": retention + 0.01},
    }


def test_the_demo_overview_lists_every_candidate_it_compared(tmp_path: Path) -> None:
    """The many-candidate compare (domain-only, mixed) and the graded candidates, compared
    one by one, are all on the demo's index.html and overview.png (the graded ones were
    missing: the overview was written before they were compared)."""
    from collapse_eval.demo.run import DemoRow, write_demo_overview

    values = {
        "domain-only": ("fail", 0.325, 0.173),
        "mixed": ("pass", 0.428, 1.040),
        "graded-00": ("fail", 0.224, 0.972),
        "graded-25": ("fail", 0.107, 0.983),
        "graded-50": ("fail", 0.015, 0.983),
        "graded-75": ("fail", 0.010, 0.970),
    }
    rows = []
    for name, (verdict, gain, retention) in values.items():
        (tmp_path / name).mkdir()
        path = tmp_path / name / "summary.json"
        path.write_text(json.dumps(_summary(name, verdict, gain, retention)))
        rows.append(DemoRow(name, verdict, gain, None, path))
    written = write_demo_overview(tmp_path, rows)
    assert sorted(written) == ["index.html", "overview.png"]
    page = (tmp_path / "index.html").read_text()
    positions = [page.index(f'<tr data-candidate="{name}">') for name in values]
    assert positions == sorted(positions)  # one row each, in the order compared
    for name in values:
        assert f'href="{name}/report.html"' in page
        assert f'<strong title="/world/{name}">{name}</strong>' in page  # path on hover
    assert "6 candidates" in page
    assert "graded-75: domain gain +1.0 points, general retention 0.970, verdict fail" in page
    assert "+1.5 (-1.5 to +4.5)" in page  # graded-50's domain gain and CI, in points
    assert (tmp_path / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlapping_overview_labels_are_moved_apart() -> None:
    from collapse_eval.report.overview import label_offsets

    # graded-50 and graded-75 of the demo: 2 points apart, the upper label stays above
    # its point, the lower one goes below its own (clear of its marker), a third further.
    anchors = [(300.0, 102.0), (298.0, 100.0), (299.0, 101.0), (50.0, 100.0)]
    labels = ["graded-50 (fail)", "graded-75 (fail)", "graded-xx (fail)", "far (pass)"]
    assert label_offsets(anchors, labels) == [6.0, -30.0, -18.0, 6.0]
    # labels that do not overlap keep their place
    assert label_offsets([(0.0, 0.0), (0.0, 40.0)], ["a", "b"]) == [6.0, 6.0]

"""Report examples are chosen from the runs' columns and only the lines shown are decoded.

``scanned_examples`` is the former implementation (both runs' records.jsonl scanned and
every wanted line kept in memory), kept here as the reference the columnar one must match.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from collapse_eval import columns
from collapse_eval.cli import main
from collapse_eval.columns import RunColumns, load_run_columns
from collapse_eval.report.examples import (
    INDEX_FILE,
    PER_TASK_AND_DIRECTION,
    Examples,
    _example,
    primary_keys,
)
from collapse_eval.summary import Summary
from tests.conftest import examples_of, write_run

BENCH = Path(__file__).resolve().parent.parent / "bench" / "compare_scale.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("compare_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _scan(path: Path, wanted: dict[tuple[str, str, str], bool]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for line in (path / "records.jsonl").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if (obj["suite"], obj["task"], obj["metric"]) in wanted:
            key = (obj["suite"], obj["task"], str(obj["item_id"]), obj["metric"])
            out[key] = (float(obj["score"]), obj)
    return out


def scanned_examples(summary: dict[str, Any], base_dir: Path, tuned_dir: Path) -> Examples:
    """The examples as collect_examples chose them before it read columns."""
    found = Examples()
    for side, path in (("base", base_dir), ("tuned", tuned_dir)):
        found.manifests[side] = json.loads((path / "manifest.json").read_text())
    wanted = primary_keys(Summary.from_json(summary))
    base = _scan(base_dir, wanted)
    changed: dict[tuple[str, str], list[tuple[float, str, Any, Any]]] = {}
    for key, (t, tuned_obj) in _scan(tuned_dir, wanted).items():
        other = base.get(key)
        if other is None or other[0] == t:
            continue
        b = other[0]
        direction = "gained" if (t > b) == wanted[(key[0], key[1], key[3])] else "lost"
        counts = found.counts.setdefault(key[1], {"lost": 0, "gained": 0})
        counts[direction] += 1
        changed.setdefault((key[1], direction), []).append(
            (-abs(t - b), key[2], other[1], tuned_obj)
        )
    order = {task: i for i, (_, task, _) in enumerate(wanted)}
    for (_, direction), items in sorted(
        changed.items(), key=lambda kv: (kv[0][1] != "lost", order.get(kv[0][0], len(order)))
    ):
        items.sort(key=lambda entry: (entry[0], entry[1]))
        for _, _, base_obj, tuned_obj in items[:PER_TASK_AND_DIRECTION]:
            found.rows.append(_example(base_obj, tuned_obj, direction))
    return found


@pytest.fixture(scope="module")
def bench_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Two bench runs of 3000 records (general binary tasks, a group of subtasks, a task
    with two metrics, continuous domain scores) compared; the tests only read them."""
    bench, n = _bench(), 3000
    out = tmp_path_factory.mktemp("bench") / "out"
    base, tuned = out / "runs" / "base", out / "runs" / "tuned"
    bench.write_synthetic_run(base, n, seed=1, shift=0.0)
    bench.write_synthetic_run(tuned, n, seed=2, shift=-0.01)
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) in (0, 1)
    return out, json.loads((out / "summary.json").read_text())


def _tied_pair(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Scores on a coarse grid, so many changes tie on size and the item id decides; item
    ids out of order in the file; one task where lower is better."""
    rows: list[list[dict[str, Any]]] = [[], []]
    for side, rows_of in enumerate(rows):
        for i in range(400):
            item = f"q{(i * 37) % 400}"
            score = float(((i * (7 + side * 4)) % 5) / 4)
            common = {"item_id": item, "score": score, "prediction": f"p{side}-{item}"}
            rows_of.append({"suite": "domain", "task": "grid", "metric": "score", **common})
            rows_of.append({"suite": "general", "task": "err", "metric": "wer", **common})
    tasks = {
        "grid": {"suite": "domain", "primary_metric": "score"},
        "err": {"suite": "general", "primary_metric": "wer", "higher_is_better": False},
    }
    out = tmp_path / "out"
    base = write_run(out / "runs" / "base", "base", rows[0], tasks)
    tuned = write_run(out / "runs" / "tuned", "tuned", rows[1], tasks)
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) in (0, 1)
    return out, json.loads((out / "summary.json").read_text())


def _assert_same(found: Examples, expected: Examples) -> None:
    assert found.problem is None
    assert found.rows == expected.rows
    assert list(found.counts.items()) == list(expected.counts.items())
    assert found.manifests == expected.manifests


def test_columnar_examples_equal_the_scanned_ones_on_the_bench_runs(
    tmp_path: Path, bench_pair: tuple[Path, dict[str, Any]]
) -> None:
    out, summary = bench_pair
    expected = scanned_examples(summary, out / "runs" / "base", out / "runs" / "tuned")
    found = examples_of(summary, out)
    _assert_same(found, expected)
    # Six tasks (two of them subtasks of a group), each capped in both directions.
    assert len(found.rows) == 6 * 2 * PER_TASK_AND_DIRECTION
    assert sum(c["lost"] + c["gained"] for c in found.counts.values()) > 1000
    runs = (load_run_columns(out / "runs" / "base"), load_run_columns(out / "runs" / "tuned"))
    _assert_same(examples_of(summary, tmp_path / "elsewhere", runs), expected)


def test_columnar_examples_equal_the_scanned_ones_when_changes_tie(tmp_path: Path) -> None:
    out, summary = _tied_pair(tmp_path)
    assert any(r.get("higher_is_better") is False for r in summary["comparisons"])
    expected = scanned_examples(summary, out / "runs" / "base", out / "runs" / "tuned")
    found = examples_of(summary, out)
    _assert_same(found, expected)
    assert {(r["task"], r["direction"]) for r in found.rows} == {
        ("grid", "lost"),
        ("grid", "gained"),
        ("err", "lost"),
        ("err", "gained"),
    }
    first_lost = [r["item_id"] for r in found.rows if r["direction"] == "lost"][:3]
    assert first_lost == sorted(first_lost)  # equal changes: by item id


def _count_record_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    decoded: list[int] = []
    real = json.loads

    def counting(text: Any, **kwargs: Any) -> Any:
        value = real(text, **kwargs)
        if isinstance(value, dict) and "item_id" in value:
            decoded.append(1)
        return value

    monkeypatch.setattr(json, "loads", counting)
    return decoded


def test_only_the_example_lines_are_decoded(
    bench_pair: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, summary = bench_pair
    runs: tuple[RunColumns, RunColumns] = (
        load_run_columns(out / "runs" / "base"),
        load_run_columns(out / "runs" / "tuned"),
    )
    decoded = _count_record_decodes(monkeypatch)
    found = examples_of(summary, out, runs)
    assert len(found.rows) == 6 * 2 * PER_TASK_AND_DIRECTION
    assert len(decoded) == 2 * len(found.rows)  # one base and one tuned line per example


def test_examples_do_not_hold_the_runs_lines(bench_pair: tuple[Path, dict[str, Any]]) -> None:
    """Scanning kept every wanted line of both runs (peak 3.7 times the records' size
    here); from columns only the examples shown are held."""
    out, summary = bench_pair
    runs = (load_run_columns(out / "runs" / "base"), load_run_columns(out / "runs" / "tuned"))
    size = sum((out / "runs" / s / "records.jsonl").stat().st_size for s in ("base", "tuned"))
    tracemalloc.start()
    try:
        found = examples_of(summary, out, runs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(found.rows) == 6 * 2 * PER_TASK_AND_DIRECTION
    assert peak < size


def test_report_command_fetches_only_the_example_lines(
    bench_pair: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, summary = bench_pair
    fetched: list[int] = []
    real = columns.fetch_records

    def counting(run: RunColumns, lines: Any) -> dict[int, dict[str, Any]]:
        result = real(run, lines)
        fetched.append(len(result))
        return result

    monkeypatch.setattr("collapse_eval.report.examples.fetch_records", counting)
    found = examples_of(summary, out)
    assert fetched == [len(found.rows), len(found.rows)]


def test_compare_hands_its_columns_to_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compare parses each run once: the report takes the columns compare loaded."""

    def must_not_load(paths: Any) -> Any:
        raise AssertionError(f"the report loaded the runs again: {paths}")

    monkeypatch.setattr("collapse_eval.report.examples.load_runs_columns", must_not_load)
    out, _ = _tied_pair(tmp_path)
    assert 'data-direction="lost"' in (out / "report.html").read_text()


def test_an_unreadable_run_is_explained_not_fatal(tmp_path: Path) -> None:
    out, summary = _tied_pair(tmp_path)
    records = out / "runs" / "tuned" / "records.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    bad = [i for i, line in enumerate(lines) if '"score": 0.5' in line][:3]
    for i in bad:
        lines[i] = lines[i].replace('"score": 0.5', '"score": "half"')
    records.write_text("".join(lines))
    found = examples_of(summary, out)
    assert found.rows == []
    assert found.problem == (
        f"the runs could not be read ({records}:{bad[0] + 1}: field 'score': "
        "must be a number, got 'half', and 2 more); run `collapse-eval compare` on "
        "them for every problem"
    )


def _report_html_examples(out: Path) -> list[str]:
    html = (out / "report.html").read_text(encoding="utf-8")
    return [line for line in html.splitlines() if "data-direction=" in line]


def test_report_reuses_the_examples_index_compare_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report` after `compare` does not parse the runs again, and shows what a cold
    render (no index) shows."""
    out, summary = _tied_pair(tmp_path)
    index = json.loads((out / INDEX_FILE).read_text())
    counts = {"lost": 160, "gained": 160}
    assert index["counts"] == {"grid": counts, "err": counts}
    runs = out / "runs"
    assert index["counts"] == scanned_examples(summary, runs / "base", runs / "tuned").counts
    assert len(index["chosen"]) == 4 * PER_TASK_AND_DIRECTION
    (out / INDEX_FILE).unlink()  # a cold render parses both runs and writes the index again
    assert main(["report", str(out)]) == 0
    assert json.loads((out / INDEX_FILE).read_text()) == index
    cold = _report_html_examples(out)
    assert len(cold) == 4 * PER_TASK_AND_DIRECTION

    def must_not_load(paths: Any) -> Any:
        raise AssertionError(f"the report parsed the runs again: {paths}")

    monkeypatch.setattr("collapse_eval.report.examples.load_runs_columns", must_not_load)
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert _report_html_examples(out) == cold


def test_the_examples_index_is_not_used_once_a_run_changed(tmp_path: Path) -> None:
    out, summary = _tied_pair(tmp_path)
    old_counts = json.loads((out / INDEX_FILE).read_text())["counts"]
    base_scores = {
        (obj["task"], obj["item_id"]): obj["score"]
        for obj in map(json.loads, (out / "runs" / "base" / "records.jsonl").open())
    }
    records = out / "runs" / "tuned" / "records.jsonl"
    objs = [json.loads(line) for line in records.open()]
    changed = next(
        o for o in objs if o["task"] == "grid" and o["score"] != base_scores[("grid", o["item_id"])]
    )
    changed["score"] = base_scores[("grid", changed["item_id"])]  # no longer a change
    records.write_text("".join(json.dumps(o) + "\n" for o in objs))
    found = examples_of(summary, out, index=out / INDEX_FILE)
    _assert_same(found, examples_of(summary, out))  # as parsed in full, no index
    assert sum(found.counts["grid"].values()) == sum(old_counts["grid"].values()) - 1
    assert found.counts["err"] == old_counts["err"]
    # the index now describes the changed run
    assert json.loads((out / INDEX_FILE).read_text())["counts"] == found.counts


def test_a_damaged_examples_index_is_ignored(tmp_path: Path) -> None:
    out, summary = _tied_pair(tmp_path)
    expected = examples_of(summary, out)
    for damage in ("not json", '{"key": 1}', "[]"):
        (out / INDEX_FILE).write_text(damage)
        _assert_same(examples_of(summary, out, index=out / INDEX_FILE), expected)
    stored = json.loads((out / INDEX_FILE).read_text())
    stored["chosen"] = [["lost", "x"]]  # right key, wrong rows
    (out / INDEX_FILE).write_text(json.dumps(stored))
    _assert_same(examples_of(summary, out, index=out / INDEX_FILE), expected)

"""The columnar compare path (collapse_eval.columns) gives the summary the record path gave.

The record path (compare over ``load_run`` ItemRecords) was removed after
``test_columnar_summary_equals_record_summary`` compared the two on this world (all numbers
equal to 1e-12, commit ac9bd75); the test now pins the two ways into the columnar path,
from a loaded Run and streamed from the directory.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.columns import load_run_columns
from collapse_eval.compare import compare_runs
from collapse_eval.errors import InputError, InputErrors
from collapse_eval.policy import default_policy
from collapse_eval.records import load_run, read_records
from tests.conftest import write_run

TASKS = {
    "arc_easy": {"suite": "general", "primary_metric": "acc", "margin": 0.02},
    "hellaswag": {"suite": "general", "primary_metric": "acc_norm"},
    "mmlu_law": {"suite": "general", "primary_metric": "acc"},
    "mmlu_math": {"suite": "general", "primary_metric": "acc"},
}


def _rows(seed: int, shift: float) -> list[dict[str, Any]]:
    """Every shape compare handles: binary tasks, a two-metric task, a group of subtasks,
    clustered continuous domain items, an unclustered continuous task (bootstrap), items
    without a task type, metadata clusters, a second domain metric."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for task in ("arc_easy", "hellaswag", "mmlu_law", "mmlu_math"):
        for i in range(120):
            metrics = ("acc", "acc_norm") if task == "hellaswag" else ("acc",)
            for metric in metrics:
                row: dict[str, Any] = {
                    "suite": "general",
                    "task": task,
                    "item_id": f"{i}",
                    "metric": metric,
                    "score": float(rng.random() < 0.6 + shift),
                    "doc_hash": f"sha256:{task}{i}",
                    "prediction": f"p{i}",
                }
                if task.startswith("mmlu"):
                    row["metadata"] = {"group": "mmlu"}
                rows.append(row)
    for i in range(300):
        rows.append(
            {
                "suite": "domain",
                "task": "listings",
                "item_id": f"l{i}",
                "metric": "score",
                "score": min(1.0, max(0.0, rng.random() + shift)),
                "cluster": f"c{i // 4}" if i % 50 else None,
                "metadata": {"cluster": f"m{i // 4}"},
                "task_type": ["extract", "qa", None][i % 3],
                "output_format": ["json", "text"][i % 2],
                "prediction": f"listing {i} {rng.random()}",
                "reference": {"v": i} if i % 2 else f"ref {i}",
            }
        )
        rows.append(
            {
                "suite": "domain",
                "task": "listings",
                "item_id": f"l{i}",
                "metric": "rouge",
                "score": rng.random(),
            }
        )
    for i in range(200):
        rows.append(
            {
                "suite": "domain",
                "task": "contracts",
                "item_id": f"k{i}",
                "metric": "score",
                "score": round(min(1.0, max(0.0, rng.random() + shift)), 3),
                "task_type": ["extract", "classify"][i % 2],
                "output_format": "json",
                "prediction": f"contract {i}",
                "reference": f"ref {i}",
            }
        )
    rng.shuffle(rows)  # file order must not matter beyond the base run's item order
    return rows


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    base = write_run(tmp_path / "base", "base-model", _rows(1, 0.0), TASKS)
    tuned = write_run(tmp_path / "tuned", "tuned-model", _rows(2, -0.05), TASKS)
    return base, tuned


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            if key != "created_at":
                _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_columnar_summary_equals_record_summary(tmp_path: Path) -> None:
    base, tuned = _pair(tmp_path)
    old = compare_runs(
        load_run(base), load_run(tuned), default_policy(), seed=3, n_boot=2000
    ).to_json()
    new = compare_runs(
        load_run_columns(base), load_run_columns(tuned), default_policy(), seed=3, n_boot=2000
    ).to_json()
    # A Run (records in memory) and its columns read from disk give the same summary.
    extra = [c for c in new["comparisons"] if c["family"] == "general/secondary"]
    assert [(c["task"], c["metric"]) for c in extra] == [("hellaswag", "acc")]
    # tasks, subtasks, domain, groups, hellaswag's secondary acc
    assert len(new["comparisons"]) == 4 + 1 + 2 + 3 + 2 + 1
    assert {c["test"] for c in new["comparisons"]} >= {
        "mcnemar_exact",
        "wilcoxon",
        "cluster_robust_z",
    }
    _assert_same(json.loads(json.dumps(old)), json.loads(json.dumps(new)))


def _bad_file(tmp_path: Path) -> Path:
    run = write_run(tmp_path / "bad", "m", _rows(1, 0.0)[:20])
    records = run / "records.jsonl"
    lines = records.read_text().splitlines()
    lines[3] = lines[3].replace('"score": ', '"score": "x", "was": ')
    lines[7] = "{not json"
    lines.append(lines[5])  # a duplicate
    records.write_text("\n".join(lines) + "\n")
    return records


def test_columns_report_every_bad_line_as_read_records_does(tmp_path: Path) -> None:
    records = _bad_file(tmp_path)
    with pytest.raises(InputErrors) as expected:
        read_records(records)
    with pytest.raises(InputErrors) as got:
        load_run_columns(records.parent)
    assert str(got.value) == str(expected.value)
    assert [p.line for p in got.value.problems] == [4, 8, 21]
    assert "records.jsonl:21: field 'item_id': duplicate record" in str(got.value)


def test_columns_report_one_bad_field_with_file_line_field(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "r",
        "m",
        [{"suite": "domain", "task": "t", "item_id": "a", "metric": "score", "score": None}],
    )
    with pytest.raises(InputError, match=r"records.jsonl:1: field 'score': must be a number"):
        load_run_columns(run)


def test_columns_drop_a_torn_last_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", "m", _rows(1, 0.0)[:10])
    with (run / "records.jsonl").open("a") as fh:
        fh.write('{"schema_version": 1, "suite": "dom')
    cols = load_run_columns(run)
    assert sum(len(c) for c in cols.items.values()) == len(read_records(run / "records.jsonl"))
    assert sum(len(c) for c in cols.items.values()) == 10

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from collapse_eval.compare import compare_runs
from collapse_eval.errors import PairingError
from collapse_eval.policy import Policy, default_policy
from collapse_eval.records import ItemRecord, Run, RunManifest, TaskInfo
from collapse_eval.summary import Summary
from collapse_eval.verdict import rejudge as rejudge_summary

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "summary.schema.json").read_text()
)


def rejudge(summary: dict, policy: Policy) -> dict:
    """``verdict.rejudge`` of a summary.json object, as summary.json."""
    return rejudge_summary(Summary.from_json(summary), policy).to_json()


def _run(name: str, records: list[ItemRecord], tasks: dict[str, TaskInfo] | None = None) -> Run:
    return Run(Path(name), RunManifest(model=name, tasks=tasks or {}), tuple(records))


def _general(task: str, scores: np.ndarray, metric: str = "acc") -> list[ItemRecord]:
    return [ItemRecord("general", task, str(i), metric, float(s)) for i, s in enumerate(scores)]


def _domain(scores: np.ndarray, task: str = "support") -> list[ItemRecord]:
    types = ["intent", "extract", "summary"]
    formats = ["label", "json"]
    return [
        ItemRecord(
            "domain",
            task,
            f"d{i}",
            "score",
            float(s),
            task_type=types[i % 3],
            output_format=formats[i % 2],
            cluster=f"dlg{i // 3}",
        )
        for i, s in enumerate(scores)
    ]


def _world(seed: int = 0) -> tuple[Run, Run]:
    rng = np.random.default_rng(seed)
    base_arc = (rng.random(800) < 0.6).astype(float)
    tuned_arc = base_arc * (rng.random(800) < 0.85)  # collapse: about 9 points lost
    base_hs = (rng.random(800) < 0.5).astype(float)
    tuned_hs = base_hs.copy()
    tuned_hs[:8] = 1 - tuned_hs[:8]
    base_dom = rng.random(300) * 0.5
    tuned_dom = np.clip(base_dom + 0.2 + rng.normal(0, 0.1, 300), 0, 1)
    tasks = {"arc_challenge": TaskInfo("general", "acc", margin=0.03, version="1.0")}
    base = _run(
        "base-model",
        _general("arc_challenge", base_arc)
        + _general("hellaswag", base_hs)
        + _domain(base_dom)
        + _general("boolq", np.ones(5)),
        tasks,
    )
    tuned = _run(
        "tuned|model\nv2",
        _general("arc_challenge", tuned_arc) + _general("hellaswag", tuned_hs) + _domain(tuned_dom),
        tasks,
    )
    return base, tuned


def test_compare_runs_fills_summary() -> None:
    base, tuned = _world()
    summary = compare_runs(base, tuned, default_policy(), seed=0).to_json()
    jsonschema.validate(summary, SCHEMA)
    json.dumps(summary, allow_nan=False)  # plain JSON: no NaN anywhere
    assert summary["verdict"] == "fail"
    by_key = {(c["task"], c["group_by"], c["group"]): c for c in summary["comparisons"]}
    arc = by_key[("arc_challenge", None, None)]
    assert arc["test"] == "mcnemar_exact" and arc["status"] == "regressed"
    assert arc["margin"] == 0.03 and arc["benchmark_margin"] == 0.03
    assert arc["delta"] == pytest.approx(arc["tuned_mean"] - arc["base_mean"])
    assert arc["p_adjusted"] == pytest.approx(min(1.0, 2 * arc["p_value"]))  # Holm, 2 tasks
    assert summary["reasons"][0].startswith("arc_challenge dropped")
    hs = by_key[("hellaswag", None, None)]
    assert hs["status"] == "non_inferior" and hs["n"] == 800
    dom = by_key[("support", None, None)]
    assert dom["test"] == "cluster_robust_z" and dom["n_clusters"] == 100
    assert dom["status"] == "improved" and dom["family"] == "domain/task"
    types = [c for c in summary["comparisons"] if c["group_by"] == "task_type"]
    assert sorted(c["group"] for c in types) == ["extract", "intent", "summary"]
    assert sum(c["n"] for c in types) == 300 and types[0]["task"] == "*"
    formats = [c for c in summary["comparisons"] if c["group_by"] == "output_format"]
    assert {c["family"] for c in formats} == {"domain/output_format"}
    assert summary["unpaired"] == [{"suite": "general", "task": "boolq", "only_in": "base"}]
    pooled = summary["domain_overall"]["pooled"]
    assert pooled["n"] == 300 and pooled["delta"] > 0.15
    assert summary["domain_overall"]["macro_by_task_type"]["n_groups"] == 3
    ret = summary["retention"]
    assert ret["ci_low"] < ret["index"] < ret["ci_high"] < 1.0
    assert summary["base"]["model"] == "base-model" and summary["alpha"] == 0.05
    # Deterministic given the seed (apart from the timestamp).
    again = compare_runs(base, tuned, default_policy(), seed=0).to_json()
    assert again["comparisons"] == summary["comparisons"]
    # gate: the stored summary re-judges identically under the same policy.
    assert rejudge(summary, default_policy())["verdict"] == "fail"


def test_continuous_general_metric_uses_wilcoxon() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(100)
    t = np.clip(b + rng.normal(0, 0.05, 100), 0, 1)
    summary = compare_runs(
        _run("a", _general("squad", b, "f1")),
        _run("b", _general("squad", t, "f1")),
        default_policy(),
        seed=0,
    ).to_json()
    row = summary["comparisons"][0]
    assert row["test"] == "wilcoxon" and row["ci_method"] == "bootstrap_percentile"
    assert summary["domain_overall"] is None and summary["verdict"] == "pass"


def test_pairing_refusals() -> None:
    scores = np.ones(10)
    base = _run("a", _general("arc", scores))
    with pytest.raises(PairingError, match=r"only in base \(8, 9\)"):
        compare_runs(base, _run("b", _general("arc", scores[:8])), default_policy()).to_json()
    hashed = [ItemRecord("general", "arc", str(i), "acc", 1.0, doc_hash=f"h{i}") for i in range(3)]
    other = [ItemRecord("general", "arc", str(i), "acc", 1.0, doc_hash="x") for i in range(3)]
    with pytest.raises(PairingError, match="different document hashes"):
        compare_runs(_run("a", hashed), _run("b", other), default_policy()).to_json()
    for field, a, b in (("version", "1", "2"), ("num_fewshot", 0, 5), ("config_hash", "x", "y")):
        ta = {"arc": TaskInfo("general", "acc", **{field: a})}
        tb = {"arc": TaskInfo("general", "acc", **{field: b})}
        with pytest.raises(PairingError, match=f"{field} differs"):
            compare_runs(
                _run("a", _general("arc", scores), ta),
                _run("b", _general("arc", scores), tb),
                default_policy(),
            ).to_json()
    two_metrics = _general("arc", scores) + _general("arc", scores, "acc_norm")
    with pytest.raises(PairingError, match="primary_metric"):
        compare_runs(_run("a", two_metrics), _run("b", two_metrics), default_policy()).to_json()


def test_group_tasks_are_judged_as_one_pooled_benchmark() -> None:
    """mmlu-like groups: one task-level row pooled over subtask items (lm-eval's
    size-weighted group mean), subtasks reported in their own family, not gating."""
    rng = np.random.default_rng(3)

    def grouped(task: str, scores: np.ndarray) -> list[ItemRecord]:
        return [
            ItemRecord("general", task, str(i), "acc", float(s), metadata={"group": "mmlu"})
            for i, s in enumerate(scores)
        ]

    base_a, base_b = (rng.random(300) < 0.5).astype(float), (rng.random(100) < 0.7).astype(float)
    tuned_b = base_b.copy()
    tuned_b[base_b == 1] = 0  # one small subtask collapses completely: -0.7 on 100 items
    plain = (rng.random(200) < 0.5).astype(float)
    base = _run("b", grouped("mmlu_a", base_a) + grouped("mmlu_b", base_b) + _general("arc", plain))
    tuned = _run(
        "t", grouped("mmlu_a", base_a) + grouped("mmlu_b", tuned_b) + _general("arc", plain)
    )
    summary = compare_runs(base, tuned, default_policy(), seed=0).to_json()
    jsonschema.validate(summary, SCHEMA)
    task_rows = {
        c["task"]: c
        for c in summary["comparisons"]
        if c["suite"] == "general" and c["group_by"] is None
    }
    assert set(task_rows) == {"mmlu", "arc"}
    mmlu = task_rows["mmlu"]
    assert mmlu["n"] == 400
    assert mmlu["base_mean"] == pytest.approx((base_a.sum() + base_b.sum()) / 400)
    assert mmlu["delta"] == pytest.approx(-base_b.sum() / 400)
    assert mmlu["status"] == "regressed"
    subtasks = {c["group"]: c for c in summary["comparisons"] if c["group_by"] == "subtask"}
    assert set(subtasks) == {"mmlu_a", "mmlu_b"}
    assert subtasks["mmlu_b"]["family"] == "general/subtask"
    assert subtasks["mmlu_a"]["delta"] == 0.0
    assert summary["retention"]["n_tasks"] == 2
    assert summary["verdict"] == "fail"
    assert summary["reasons"][0].startswith("mmlu dropped")

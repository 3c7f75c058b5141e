"""compare --sequential on stored runs: the design replayed on the records, the summary's
``sequential`` block, gate re-judging it, and the policy's ``sequential:`` section."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from collapse_eval import sequential as sq
from collapse_eval.compare import compare_runs
from collapse_eval.errors import ConfigError
from collapse_eval.policy import Policy, SequentialPolicy, load_policy, policy_from_mapping
from collapse_eval.records import ItemRecord, Run, RunManifest
from collapse_eval.summary import Summary
from collapse_eval.verdict import rejudge

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "summary.schema.json").read_text()
)
SEQ = Policy(sequential=SequentialPolicy(looks=5))


def _general(task: str, scores: np.ndarray) -> list[ItemRecord]:
    return [
        ItemRecord("general", task, f"{task}-{i}", "acc", float(s)) for i, s in enumerate(scores)
    ]


def _domain(scores: np.ndarray) -> list[ItemRecord]:
    return [
        ItemRecord(
            "domain",
            "support",
            f"d{i}",
            "score",
            float(s),
            task_type=["intent", "extract", "summary"][i % 3],
            output_format=["label", "json"][i % 2],
            cluster=f"dlg{i // 3}",
        )
        for i, s in enumerate(scores)
    ]


def _flip(rng: np.random.Generator, scores: np.ndarray, lose: float, gain: float) -> np.ndarray:
    """A candidate's 0/1 scores: each right answer lost with p ``lose``, wrong won with ``gain``."""
    u = rng.random(scores.size)
    return np.where(scores == 1, (u >= lose).astype(float), (u < gain).astype(float))


def _runs(lose_arc: float, seed: int = 0, n: int = 2000) -> tuple[Run, Run]:
    """arc (n items, the candidate loses ``lose_arc`` of its right answers), hellaswag
    (n items, barely changed) and 600 clustered domain items the candidate gains on."""
    rng = np.random.default_rng(seed)
    arc, hs = (rng.random(n) < 0.6).astype(float), (rng.random(n) < 0.5).astype(float)
    dom = rng.random(600) * 0.5
    tuned_dom = np.clip(dom + 0.25 + rng.normal(0, 0.1, 600), 0, 1)
    base = Run(
        Path("b"), RunManifest("b"), tuple(_general("arc", arc) + _general("hs", hs) + _domain(dom))
    )
    tuned_records = (
        _general("arc", _flip(rng, arc, lose_arc, 0.01))
        + _general("hs", _flip(rng, hs, 0.01, 0.01))
        + _domain(tuned_dom)
    )
    return base, Run(Path("t"), RunManifest("t"), tuple(tuned_records))


def test_collapsed_candidate_fails_early_on_a_fraction_of_its_items() -> None:
    base, tuned = _runs(lose_arc=0.5)  # arc drops about 30 points
    summary = compare_runs(base, tuned, SEQ, seed=3)
    block = summary.sequential
    assert block is not None and summary.verdict == "fail"
    assert block["verdict"] == "fail" and block["fixed_n_verdict"] == "fail"
    arc = next(c for c in block["comparisons"] if c["task"] == "arc")
    assert (arc["status"], arc["stop_look"]) == ("regressed", 1)
    assert block["stop_look"] == 1 and block["decided_fraction"] <= 0.4
    # Every task stopped at the run's stopping look: 20 % of each (whole clusters).
    tasks = {t["task"]: t for t in block["tasks"]}
    assert tasks["arc"]["items_evaluated"] == 400 and tasks["arc"]["items_available"] == 2000
    assert tasks["support"]["items_evaluated"] == 120
    assert summary.reasons[0].startswith("sequential gate (5 looks, O'Brien-Fleming")
    assert (
        "decided at look 1 of 5 on 20% of the candidate's items (920 of 4600)" in summary.reasons[0]
    )
    assert summary.reasons[1].startswith(
        "arc: regressed at look 1 (400 of 2000 items; repeated 95% CI"
    )


def test_good_candidate_passes_before_the_last_look() -> None:
    base, tuned = _runs(lose_arc=0.01)
    summary = compare_runs(base, tuned, SEQ, seed=3)
    block = summary.sequential
    assert block is not None
    assert (summary.verdict, block["fixed_n_verdict"]) == ("pass", "pass")
    statuses = {c["task"]: c["status"] for c in block["comparisons"]}
    assert statuses == {"arc": "non_inferior", "hs": "non_inferior", "*": "gain_shown"}
    assert block["stop_look"] <= 2 and block["decided_fraction"] <= 0.4
    jsonschema.validate(summary.to_json(), SCHEMA)
    for entry in block["comparisons"]:
        last = entry["looks"][-1]
        assert last["rci_low"] == pytest.approx(last["delta"] - last["bound"] * last["se"])
        assert last["n"] == entry["items_evaluated"]


def test_replay_order_depends_on_the_seed_only() -> None:
    base, tuned = _runs(lose_arc=0.01)
    a = compare_runs(base, tuned, SEQ, seed=3).sequential
    b = compare_runs(base, tuned, SEQ, seed=3).sequential
    c = compare_runs(base, tuned, SEQ, seed=4).sequential
    assert a is not None and b is not None and c is not None
    first = [x["looks"][0]["delta"] for x in a["comparisons"]]
    assert first == [x["looks"][0]["delta"] for x in b["comparisons"]]
    assert first != [x["looks"][0]["delta"] for x in c["comparisons"]]


def test_gate_rejudges_the_stored_looks() -> None:
    base, tuned = _runs(lose_arc=0.01)
    stored = Summary.from_json(
        json.loads(json.dumps(compare_runs(base, tuned, SEQ, seed=3).to_json()))
    )
    same = rejudge(stored, SEQ)
    assert same.verdict == "pass" and same.sequential == stored.sequential
    # A margin of 0.1 point cannot be shown non-inferior on the looks the run stopped at:
    # the stored looks no longer decide, and the gate fails saying why.
    tight = dataclasses.replace(SEQ, general=dataclasses.replace(SEQ.general, margin=0.001))
    judged = rejudge(stored, tight)
    assert judged.verdict == "fail"
    assert "the stored looks do not decide the verdict under this policy" in judged.reasons[0]
    # Without the gain requirement the domain comparison no longer gates.
    no_gain = dataclasses.replace(SEQ, domain=dataclasses.replace(SEQ.domain, require_gain=False))
    judged = rejudge(stored, no_gain)
    assert judged.sequential is not None
    dom = next(c for c in judged.sequential["comparisons"] if c["kind"] == "gain")
    assert (dom["gating"], dom["status"]) == (False, "not_gating")


def test_fixed_n_summary_has_no_sequential_block() -> None:
    base, tuned = _runs(lose_arc=0.01)
    out = compare_runs(base, tuned, Policy(), seed=3).to_json()
    assert "sequential" not in out and "sequential" not in out["policy"]


def test_policy_section_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("sequential:\n  lookz: 3\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=r"policy.yaml:2: unknown key 'lookz' in sequential\. Did you mean 'looks'\?",
    ):
        load_policy(path)
    path.write_text("sequential:\n  looks: 0\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=r"policy.yaml:2: field 'sequential.looks': must be a whole number from 1 to 20",
    ):
        load_policy(path)
    path.write_text("sequential:\n", encoding="utf-8")
    assert load_policy(path).sequential == SequentialPolicy(looks=5)
    assert policy_from_mapping({"sequential": {"looks": 3}}).to_json()["sequential"] == {"looks": 3}


def test_equivalence_policies_are_refused() -> None:
    base, tuned = _runs(lose_arc=0.01)
    policy = dataclasses.replace(load_policy("equivalence"), sequential=SequentialPolicy())
    with pytest.raises(ConfigError, match="equivalence requirement"):
        compare_runs(base, tuned, policy)


def test_evaluation_order_keeps_clusters_whole_and_strata_in_proportion() -> None:
    units = [f"c{i // 4}" for i in range(400)]
    strata = ["a" if i < 300 else "b" for i in range(400)]  # 75 % / 25 %
    order = sq.evaluation_order(units, strata, seed=1)
    assert sorted(order.tolist()) == list(range(400))
    ordered = [units[i] for i in order]
    runs = [u for j, u in enumerate(ordered) if j == 0 or ordered[j - 1] != u]
    assert len(runs) == 100  # each cluster's 4 items are contiguous
    first = [strata[i] for i in order[:80]]
    assert first.count("a") == 60  # the first 20 clusters hold 15 of a and 5 of b
    assert sq.look_sizes(ordered, 3) == [136, 268, 400]  # ceil(k/3 * 400) up to a cluster


def test_a_critical_task_missing_from_the_runs_fails_the_sequential_gate() -> None:
    base, tuned = _runs(lose_arc=0.01)
    tuned = Run(tuned.path, tuned.manifest, tuple(r for r in tuned.records if r.task != "hs"))
    critical = dataclasses.replace(SEQ, general=dataclasses.replace(SEQ.general, critical=("hs",)))
    summary = compare_runs(base, tuned, critical, seed=3)
    assert summary.verdict == "fail"
    assert summary.reasons[1] == "critical task hs was not compared (not in both runs)"
    assert summary.sequential is not None and summary.sequential["verdict"] == "pass"

"""Small groups (a rare task type, one continuous item, all items in one dialogue) get a
comparison with an ``inconclusive`` status and a note, never a crash."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from collapse_eval import stats as S
from collapse_eval.cli import cli
from collapse_eval.compare import compare_runs
from collapse_eval.policy import default_policy, policy_from_mapping
from collapse_eval.records import ItemRecord, Run, RunManifest
from collapse_eval.verdict import STATUSES, comparison_status
from tests.conftest import write_run

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "summary.schema.json").read_text()
)


# ---------------------------------------------------------------- stats, path by path


def test_one_continuous_item_in_one_cluster() -> None:
    r = S.compare_paired([0.2], [0.7], ["dlg1"])
    assert (r.n, r.delta, r.ci_low, r.ci_high) == (1, pytest.approx(0.5), None, None)
    assert r.test == "wilcoxon" and r.p_value == 1.0  # one item is one cluster: i.i.d.
    assert r.note == "1 item(s): a bootstrap CI needs at least 10"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_continuous_small_n_has_no_ci(n: int) -> None:
    base = np.linspace(0.1, 0.5, n)
    tuned = base + np.array([0.3, -0.1, 0.25])[:n]
    r = S.compare_paired(base, tuned)
    assert r.ci_low is None and r.ci_high is None and r.n == n
    assert r.p_value == pytest.approx(S.wilcoxon_signed_rank(tuned - base)[0])
    assert r.note == f"{n} item(s): a bootstrap CI needs at least 10"


def test_continuous_all_differences_zero() -> None:
    r = S.compare_paired([0.4, 0.6], [0.4, 0.6])
    assert (r.delta, r.p_value, r.ci_low, r.note is not None) == (0.0, 1.0, None, True)
    big = S.compare_paired(np.full(40, 0.5), np.full(40, 0.5))  # enough items: a point CI
    assert (big.ci_low, big.ci_high, big.note) == (0.0, 0.0, None)


@pytest.mark.parametrize(
    "base, tuned",
    [
        ([1.0, 0.0, 1.0], [0.0, 0.0, 1.0]),
        ([0.3, 0.5, 0.9], [0.4, 0.4, 0.2]),
        ([1.0, 1.0], [1.0, 1.0]),
        ([0.5, 0.2], [0.5, 0.2]),
    ],
    ids=["binary", "continuous", "binary-no-change", "continuous-no-change"],
)
def test_all_items_in_one_cluster(base: list[float], tuned: list[float]) -> None:
    r = S.compare_paired(base, tuned, ["dlg"] * len(base))
    assert r.test == "cluster_robust_z" and r.n_clusters == 1
    assert (r.ci_low, r.ci_high, r.p_value, r.se_clustered, r.mde) == (None,) * 5
    assert (
        r.note
        == f"{len(base)} items in 1 cluster(s): a cluster-robust CI needs at least 10 clusters"
    )


def test_few_clusters_and_the_threshold() -> None:
    two = S.compare_paired([1, 0, 1, 1], [0, 0, 1, 0], ["a", "a", "b", "b"])
    assert two.n_clusters == 2 and two.ci_low is None and two.p_value is None
    assert two.se_clustered is not None  # reported, but too unreliable for a CI
    rng = np.random.default_rng(0)
    base, tuned = rng.random(2 * S.MIN_CLUSTERS), rng.random(2 * S.MIN_CLUSTERS)
    clusters = [str(i // 2) for i in range(2 * S.MIN_CLUSTERS)]
    enough = S.compare_paired(base, tuned, clusters)
    assert enough.n_clusters == S.MIN_CLUSTERS and enough.note is None
    assert enough.ci_low is not None and enough.ci_low < enough.delta < enough.ci_high
    fewer = S.compare_paired(base[:-2], tuned[:-2], clusters[:-2])
    assert fewer.ci_low is None and fewer.n_clusters == S.MIN_CLUSTERS - 1


def test_bootstrap_threshold() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(0, 0.1, S.MIN_BOOTSTRAP_ITEMS)
    at = S.compare_paired(np.full(d.size, 0.5), 0.5 + d)
    assert at.ci_low is not None and at.note is None
    below = S.compare_paired(np.full(d.size - 1, 0.5), 0.5 + d[:-1])
    assert below.ci_low is None and below.note is not None


def test_singleton_clusters_use_the_iid_methods() -> None:
    r = S.compare_paired([1.0, 0.0, 1.0], [0.0, 0.0, 1.0], ["a", "b", "c"])
    assert r.test == "mcnemar_exact" and r.n_clusters == 3 and r.note is None
    assert r.ci_low is not None and r.ci_low < 0 < r.ci_high


@pytest.mark.parametrize("n", [1, 2, 3])
def test_binary_small_n_keeps_its_exact_methods(n: int) -> None:
    r = S.compare_paired([1.0] * n, [0.0] * n)
    assert r.test == "mcnemar_exact" and r.note is None and r.base_only == n
    assert r.p_value == pytest.approx(min(1.0, 2 * 0.5**n))
    assert r.ci_low is not None and -1 <= r.ci_low < r.ci_high <= 1
    zero = S.compare_paired([1.0] * n, [1.0] * n)
    assert zero.p_value == 1.0 and zero.ci_low is not None and zero.ci_low < 0 < zero.ci_high


def test_status_without_ci_is_inconclusive() -> None:
    status = comparison_status(0.3, None, None, 0.001, alpha=0.05, margin=0.02)
    assert status == "inconclusive"


# ---------------------------------------------------------------- property

values = st.sampled_from([0.0, 1.0]) | st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 2))
small_samples = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.lists(values, min_size=n, max_size=n),
        st.lists(values, min_size=n, max_size=n),
        st.none() | st.lists(st.sampled_from("abc"), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(small_samples, st.sampled_from([True, False]))
def test_any_small_sample_gets_finite_or_none_fields_and_a_status(
    sample: tuple[list[float], list[float], list[str] | None], binary: bool
) -> None:
    base, tuned, clusters = sample
    if binary:
        base, tuned = [round(x) for x in base], [round(x) for x in tuned]
    r = S.compare_paired(base, tuned, clusters, n_boot=200)
    for name in ("delta", "se", "base_mean", "tuned_mean"):
        assert math.isfinite(getattr(r, name)), name
    for name in ("ci_low", "ci_high", "p_value", "se_clustered", "mde"):
        value = getattr(r, name)
        assert value is None or math.isfinite(value), name
    assert r.p_value is None or 0.0 <= r.p_value <= 1.0
    assert (r.ci_low is None) == (r.ci_high is None)
    if r.ci_low is None:
        assert r.note
    else:
        assert r.ci_low - 1e-9 <= r.delta <= r.ci_high + 1e-9
    p = r.p_value if r.p_value is not None else 1.0
    status = comparison_status(r.delta, r.ci_low, r.ci_high, p, alpha=0.05, margin=0.02)
    assert status in STATUSES
    if r.ci_low is None:
        assert status == "inconclusive"


# ---------------------------------------------------------------- compare, verdict, CLI


def _domain_records(seed: int, shift: float) -> list[ItemRecord]:
    """60 binary items in 20 dialogues, plus one continuous item of a rare task type (a
    summary scored by ROUGE) and a rare output format with two items of one dialogue."""
    rng = np.random.default_rng(seed)
    records = [
        ItemRecord(
            "domain",
            "support",
            f"d{i}",
            "score",
            float(rng.random() < 0.3 + shift),
            task_type="intent",
            output_format="label" if i >= 2 else "table",
            cluster=f"dlg{i // 3}",
        )
        for i in range(60)
    ]
    records.append(
        ItemRecord(
            "domain",
            "support",
            "rare",
            "score",
            0.2 + shift,
            task_type="summary",
            output_format="text",
            cluster="dlg99",
        )
    )
    return records


def _runs() -> tuple[Run, Run]:
    base = Run(Path("b"), RunManifest(model="b"), tuple(_domain_records(0, 0.0)))
    tuned = Run(Path("t"), RunManifest(model="t"), tuple(_domain_records(0, 0.5)))
    return base, tuned


def test_rare_groups_are_compared_not_a_crash() -> None:
    summary = compare_runs(*_runs(), default_policy(), seed=0, n_boot=500).to_json()
    jsonschema.validate(summary, SCHEMA)
    json.dumps(summary, allow_nan=False)
    by_group = {(c["group_by"], c["group"]): c for c in summary["comparisons"]}
    rare = by_group["task_type", "summary"]
    assert (rare["n"], rare["status"], rare["ci_low"], rare["test"]) == (
        1,
        "inconclusive",
        None,
        "wilcoxon",
    )
    assert rare["note"] == "1 item(s): a bootstrap CI needs at least 10"
    table = by_group["output_format", "table"]  # two items of dialogue dlg0
    assert table["status"] == "inconclusive" and table["note"].startswith("2 items in 1 cluster")
    assert by_group["task_type", "intent"]["note"] is None
    # Not gating under the default policy: not in the reasons.
    assert summary["verdict"] == "pass"
    assert not any("summary" in r or "CI needs" in r for r in summary["reasons"])


def test_small_group_reason_when_it_fails_the_gate() -> None:
    policy = policy_from_mapping({"domain": {"fail_on": ["inconclusive"]}})
    summary = compare_runs(*_runs(), policy, seed=0, n_boot=500).to_json()
    assert summary["verdict"] == "fail"
    reason = next(r for r in summary["reasons"] if "task_type=summary" in r)
    assert "(no CI: 1 item(s): a bootstrap CI needs at least 10, Holm p = 1.00)" in reason
    table = next(r for r in summary["reasons"] if "output_format=table" in r)
    assert "a cluster-robust CI needs at least 10 clusters, Holm p n/a)" in table
    row = next(c for c in summary["comparisons"] if c["group"] == "table")
    assert (row["p_value"], row["p_adjusted"], row["q_value"]) == (None, None, None)


def test_cli_compare_with_a_one_item_continuous_group_exits_0(tmp_path: Path) -> None:
    def rows(shift: float) -> list[dict]:
        return [r.to_json() for r in _domain_records(0, shift)]

    base = write_run(tmp_path / "base", "base", rows(0.0))
    tuned = write_run(tmp_path / "tuned", "tuned", rows(0.5))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compare", str(base), str(tuned), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    notes = [c["note"] for c in summary["comparisons"] if c.get("note")]
    assert len(notes) == 3  # task_type=summary, output_format=text, output_format=table


def test_small_general_task_is_noted_and_fails_when_critical() -> None:
    def run(name: str, scores: list[float]) -> Run:
        records = [ItemRecord("general", "squad", str(i), "f1", s) for i, s in enumerate(scores)]
        return Run(Path(name), RunManifest(model=name), tuple(records))

    base, tuned = run("b", [0.5, 0.7, 0.2]), run("t", [0.5, 0.6, 0.2])
    summary = compare_runs(base, tuned, default_policy(), n_boot=200).to_json()
    assert summary["verdict"] == "pass"
    assert summary["reasons"][1].startswith(
        "note: squad dropped 3.3 points (no CI: 3 item(s): a bootstrap CI needs at least 10"
    )
    critical = policy_from_mapping({"general": {"critical": ["squad"]}})
    failed = compare_runs(base, tuned, critical, n_boot=200).to_json()
    assert failed["verdict"] == "fail"
    assert failed["reasons"][0].endswith("(critical task: must be non-inferior)")
    assert "3 item(s): a bootstrap CI needs at least 10" in failed["reasons"][0]

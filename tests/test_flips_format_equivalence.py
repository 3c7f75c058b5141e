"""Flips, delta quantiles, format-following rows, secondary metrics and equivalence (TOST)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from statsmodels.stats.weightstats import ttost_paired

from collapse_eval.columns import load_run_columns
from collapse_eval.compare import compare_runs
from collapse_eval.errors import ConfigError
from collapse_eval.policy import Policy, default_policy, policy_from_mapping
from collapse_eval.stats import (
    compare_paired,
    delta_quantiles,
    flip_counts,
    holm_adjust,
    newcombe_paired_ci,
)
from collapse_eval.summary import Summary
from collapse_eval.verdict import rejudge as rejudge_summary
from tests.conftest import write_run

# ---------------------------------------------------------------- flips and quantiles


def rejudge(summary: dict, policy: Policy) -> dict:
    """``verdict.rejudge`` of a summary.json object, as summary.json."""
    return rejudge_summary(Summary.from_json(summary), policy).to_json()


def test_flip_counts_binary_by_hand() -> None:
    base = [1, 1, 0, 0, 1, 0]
    tuned = [0, 1, 1, 0, 1, 1]
    flips = flip_counts(np.subtract(tuned, base))
    assert (flips.lost, flips.gained, flips.same) == (1, 2, 3)
    result = compare_paired(base, tuned)
    assert result.flips == flips and result.delta_quantiles is None


def test_flip_counts_continuous_use_eps() -> None:
    diffs = [-0.5, 1e-12, 0.2, -1e-10, 0.0, 3e-9, -2e-9]
    flips = flip_counts(diffs)
    # below -1e-9: -0.5, -2e-9; above 1e-9: 0.2, 3e-9; within: 1e-12, -1e-10, 0.0
    assert (flips.lost, flips.gained, flips.same) == (2, 2, 3)
    assert flip_counts(diffs, eps=0.1) == type(flips)(1, 1, 5)


def test_delta_quantiles_by_hand() -> None:
    diffs = np.arange(21) / 20 - 0.5  # -0.5, -0.45, ..., 0.5: linear interpolation is exact
    q = delta_quantiles(diffs)
    assert q == pytest.approx({"p05": -0.45, "p25": -0.25, "p50": 0.0, "p75": 0.25, "p95": 0.45})
    result = compare_paired(np.full(21, 0.5), 0.5 + diffs, n_boot=200)
    assert result.delta_quantiles == pytest.approx(q)
    assert (result.flips.lost, result.flips.gained, result.flips.same) == (10, 10, 1)


def _general_rows(task: str, metric: str, base: list[float], tuned: list[float]) -> tuple:
    def rows(scores: list[float]) -> list[dict[str, Any]]:
        return [
            {"suite": "general", "task": task, "item_id": str(i), "metric": metric, "score": s}
            for i, s in enumerate(scores)
        ]

    return rows(base), rows(tuned)


def test_rows_carry_flips_in_the_metrics_direction(tmp_path: Path) -> None:
    acc_b, acc_t = _general_rows(
        "arc_easy", "acc", [1, 1, 1, 0, 0, 0, 1, 1], [1, 0, 0, 1, 0, 0, 1, 1]
    )
    # a lower-is-better continuous metric: two items rise (worse), one falls (better)
    ppl_b, ppl_t = _general_rows("ppl", "word_perplexity", [0.5] * 12, [0.7, 0.9, 0.1] + [0.5] * 9)
    tasks = {
        "arc_easy": {"suite": "general", "primary_metric": "acc"},
        "ppl": {"suite": "general", "primary_metric": "word_perplexity", "higher_is_better": False},
    }
    base = write_run(tmp_path / "b", "b", acc_b + ppl_b, tasks)
    tuned = write_run(tmp_path / "t", "t", acc_t + ppl_t, tasks)
    summary = compare_runs(
        load_run_columns(base), load_run_columns(tuned), default_policy(), n_boot=200
    ).to_json()
    rows = {c["task"]: c for c in summary["comparisons"]}
    assert rows["arc_easy"]["flips"] == {"lost": 2, "gained": 1, "same": 5}
    assert rows["arc_easy"]["delta_quantiles"] is None
    assert rows["ppl"]["flips"] == {"lost": 2, "gained": 1, "same": 9}
    assert rows["ppl"]["delta_quantiles"]["p50"] == pytest.approx(0.0)
    # sorted deltas: -0.4, 0 x 9, 0.2, 0.4; p95 at rank 0.95 * 11 = 10.45: 0.2 + 0.45 * 0.2
    assert rows["ppl"]["delta_quantiles"]["p95"] == pytest.approx(0.29)


# ---------------------------------------------------------------- format_ok rows

FMT_TASKS = {"realestate": {"suite": "domain", "primary_metric": "score"}}
NO_GAIN = {"domain": {"require_gain": False}}  # every score is 1.0: only format_ok changes


def _format_runs(tmp_path: Path) -> tuple[Path, Path]:
    """60 json items (base format_ok on all, tuned loses 12 and gains 0), 40 label items
    (base 30 ok, tuned: 2 lost, 5 gained), 10 items with format_ok null (not counted)."""
    base_rows, tuned_rows = [], []
    for i in range(110):
        fmt = "json" if i < 60 else "label" if i < 100 else "number"
        if i < 60:
            b, t = True, i >= 12
        elif i < 100:
            j = i - 60
            b = j < 30
            t = (b and j >= 2) or (not b and j < 35)
        else:
            b = t = None
        for rows, ok in ((base_rows, b), (tuned_rows, t)):
            rows.append(
                {
                    "suite": "domain",
                    "task": "realestate",
                    "item_id": f"rt-{i}",
                    "metric": "score",
                    "score": 1.0,
                    "output_format": fmt,
                    "task_type": "t",
                    "format_ok": ok,
                }
            )
    return (
        write_run(tmp_path / "base", "b", base_rows, FMT_TASKS),
        write_run(tmp_path / "tuned", "t", tuned_rows, FMT_TASKS),
    )


def test_format_ok_rows_per_output_format_and_pooled(tmp_path: Path) -> None:
    base, tuned = _format_runs(tmp_path)
    policy = policy_from_mapping(NO_GAIN)
    summary = compare_runs(load_run_columns(base), load_run_columns(tuned), policy).to_json()
    rows = [c for c in summary["comparisons"] if c["metric"] == "format_ok"]
    assert [(c["task"], c["group_by"], c["group"], c["family"]) for c in rows] == [
        ("*", None, None, "domain/format_ok_pooled"),
        ("*", "output_format", "json", "domain/format_ok"),
        ("*", "output_format", "label", "domain/format_ok"),
    ]
    pooled, js, label = rows
    assert (pooled["n"], js["n"], label["n"]) == (100, 60, 40)  # null format_ok left out
    assert js["flips"] == {"lost": 12, "gained": 0, "same": 48}
    assert label["flips"] == {"lost": 2, "gained": 5, "same": 33}
    assert pooled["flips"] == {"lost": 14, "gained": 5, "same": 81}
    assert js["base_mean"] == 1.0 and js["tuned_mean"] == pytest.approx(48 / 60)
    # exact McNemar = two-sided binomial test on the discordant pairs (scipy, independent)
    assert js["test"] == "mcnemar_exact"
    assert js["p_value"] == pytest.approx(binomtest(0, 12).pvalue)
    assert label["p_value"] == pytest.approx(binomtest(5, 7).pvalue)
    assert pooled["p_value"] == pytest.approx(binomtest(5, 19).pvalue)
    lo, hi = newcombe_paired_ci(48, 0, 12, 0)
    assert (js["ci_low"], js["ci_high"]) == pytest.approx((float(lo), float(hi)))
    # Holm within the (domain, format_ok by output_format) family only
    holm = holm_adjust([js["p_value"], label["p_value"]])
    assert [js["p_adjusted"], label["p_adjusted"]] == pytest.approx(list(holm))
    assert pooled["p_adjusted"] == pytest.approx(pooled["p_value"])
    assert js["status"] == "regressed" and label["status"] == "inconclusive"
    # reported, not gating by default
    assert summary["verdict"] == "pass"
    assert any(
        "domain format_ok (output_format=json) dropped 20.0 points" in r for r in summary["reasons"]
    )


def test_fail_on_format_makes_a_format_regression_fail_the_gate(tmp_path: Path) -> None:
    base, tuned = _format_runs(tmp_path)
    summary = compare_runs(
        load_run_columns(base), load_run_columns(tuned), policy_from_mapping(NO_GAIN)
    ).to_json()
    assert summary["verdict"] == "pass"
    policy = policy_from_mapping(
        {"domain": {"require_gain": False, "fail_on_format": ["regressed"]}}
    )
    judged = rejudge(summary, policy)
    assert judged["verdict"] == "fail"
    # only the json row regressed (the pooled one, 14 lost vs 5 gained, is inconclusive)
    assert judged["reasons"][0] == (
        "domain format_ok (output_format=json) dropped 20.0 points (95% CI -31.8 to -9.9, "
        "Holm p < 0.001), beyond the 2-point margin"
    )
    assert not any(r.startswith("domain format_ok") for r in judged["reasons"][1:])
    assert judged["policy"]["domain"]["fail_on_format"] == ["regressed"]
    # domain.fail_on does not reach format rows
    fail_on = policy_from_mapping({"domain": {"require_gain": False, "fail_on": ["regressed"]}})
    assert rejudge(summary, fail_on)["verdict"] == "pass"


def test_runs_without_format_ok_have_no_format_rows(tmp_path: Path) -> None:
    rows = [
        {"suite": "domain", "task": "d", "item_id": str(i), "metric": "score", "score": 1.0}
        for i in range(5)
    ]
    a = write_run(tmp_path / "a", "a", rows)
    b = write_run(tmp_path / "b", "b", rows)
    summary = compare_runs(load_run_columns(a), load_run_columns(b), default_policy()).to_json()
    assert not [c for c in summary["comparisons"] if c["metric"] == "format_ok"]


# ---------------------------------------------------------------- secondary metrics


def _gsm8k_runs(tmp_path: Path, strict_drop: int, flexible_drop: int) -> tuple[Path, Path]:
    tasks = {"gsm8k": {"suite": "general", "primary_metric": "exact_match:strict-match"}}
    base_rows, tuned_rows = [], []
    for i in range(200):
        right = i < 120
        for metric, drop in (
            ("exact_match:strict-match", strict_drop),
            ("exact_match:flexible-extract", flexible_drop),
        ):
            row = {"suite": "general", "task": "gsm8k", "item_id": str(i), "metric": metric}
            base_rows.append({**row, "score": float(right)})
            tuned_rows.append({**row, "score": float(right and i >= drop)})
    return (
        write_run(tmp_path / "base", "b", base_rows, tasks),
        write_run(tmp_path / "tuned", "t", tuned_rows, tasks),
    )


def test_secondary_metric_rows_tell_format_from_answer(tmp_path: Path) -> None:
    # the strict metric drops 40 items, the flexible one none: the format was forgotten
    base, tuned = _gsm8k_runs(tmp_path, strict_drop=40, flexible_drop=0)
    summary = compare_runs(
        load_run_columns(base), load_run_columns(tuned), default_policy()
    ).to_json()
    primary, secondary = summary["comparisons"]
    assert (primary["group_by"], primary["metric"]) == (None, "exact_match:strict-match")
    assert primary["status"] == "regressed" and primary["flips"]["lost"] == 40
    assert secondary["group_by"] == "metric" and secondary["family"] == "general/secondary"
    assert secondary["group"] == secondary["metric"] == "exact_match:flexible-extract"
    assert secondary["delta"] == 0.0 and secondary["status"] == "non_inferior"
    assert summary["verdict"] == "fail"


def test_secondary_metric_rows_never_gate(tmp_path: Path) -> None:
    base, tuned = _gsm8k_runs(tmp_path, strict_drop=0, flexible_drop=40)
    summary = compare_runs(
        load_run_columns(base), load_run_columns(tuned), default_policy()
    ).to_json()
    secondary = summary["comparisons"][1]
    assert secondary["status"] == "regressed"
    assert summary["verdict"] == "pass"


# ---------------------------------------------------------------- equivalence (TOST)


def _continuous_runs(tmp_path: Path, shift: float, n: int = 2000) -> tuple[Path, Path, Any]:
    rng = np.random.default_rng(7)
    base = rng.uniform(0.2, 0.8, n)
    tuned = np.clip(base + shift + rng.normal(0, 0.1, n), 0, 1)
    tasks = {"rouge_task": {"suite": "general", "primary_metric": "rougeL"}}

    def rows(scores: Any) -> list[dict[str, Any]]:
        return [
            {
                "suite": "general",
                "task": "rouge_task",
                "item_id": str(i),
                "metric": "rougeL",
                "score": float(s),
            }
            for i, s in enumerate(scores)
        ]

    return (
        write_run(tmp_path / f"b{shift}", "b", rows(base), tasks),
        write_run(tmp_path / f"t{shift}", "t", rows(tuned), tasks),
        (base, tuned),
    )


@pytest.mark.parametrize("shift", [0.0, -0.004, -0.016, -0.03])
def test_continuous_equivalence_agrees_with_statsmodels_ttost_paired(
    tmp_path: Path, shift: float
) -> None:
    """Reference: statsmodels ttost_paired (two one-sided paired t-tests, margin 0.02).
    Ours: the 90% percentile bootstrap CI within +-margin; with n = 2000 the two intervals
    agree to a few thousandths and so do the decisions on these cases."""
    base, tuned, (b, t) = _continuous_runs(tmp_path, shift)
    policy = policy_from_mapping({"general": {"require": "equivalent"}})
    summary = compare_runs(
        load_run_columns(base), load_run_columns(tuned), policy, n_boot=4000
    ).to_json()
    row = summary["comparisons"][0]
    p_tost = ttost_paired(t, b, -0.02, 0.02)[0]
    d = t - b
    half = norm.ppf(0.95) * d.std(ddof=1) / np.sqrt(d.size)
    assert row["equivalence_ci_low"] == pytest.approx(d.mean() - half, abs=0.002)
    assert row["equivalence_ci_high"] == pytest.approx(d.mean() + half, abs=0.002)
    assert (row["status"] == "equivalent") == (p_tost < 0.05)
    assert row["required"] == "equivalent"
    assert (summary["verdict"] == "pass") == (p_tost < 0.05)


def _binary_runs(tmp_path: Path, lost: int, gained: int, n: int = 1000) -> tuple[Path, Path]:
    """n items, 600 right in both, ``lost`` right -> wrong, ``gained`` wrong -> right."""
    base_s = [1.0] * (600 + lost) + [0.0] * (n - 600 - lost)
    tuned_s = [1.0] * 600 + [0.0] * lost + [1.0] * gained + [0.0] * (n - 600 - lost - gained)
    b, t = _general_rows("arc_easy", "acc", base_s, tuned_s)
    tasks = {"arc_easy": {"suite": "general", "primary_metric": "acc"}}
    return (
        write_run(tmp_path / f"b{lost}-{gained}", "b", b, tasks),
        write_run(tmp_path / f"t{lost}-{gained}", "t", t, tasks),
    )


def _hand_tost_binary(lost: int, gained: int, n: int, margin: float, alpha: float) -> bool:
    """Two one-sided z-tests on the paired difference of proportions (Wald SE of the
    paired difference, Agresti 2013 sec. 11.1): H0 delta <= -m and H0 delta >= +m."""
    d = (gained - lost) / n
    var = ((gained + lost) / n - d * d) / n
    se = var**0.5
    z = norm.ppf(1 - alpha)
    return (d + margin) / se > z and (margin - d) / se > z


@pytest.mark.parametrize(("lost", "gained"), [(5, 5), (10, 2), (30, 10), (25, 0), (2, 30)])
def test_binary_equivalence_agrees_with_two_one_sided_z_tests(
    tmp_path: Path, lost: int, gained: int
) -> None:
    base, tuned = _binary_runs(tmp_path, lost, gained)
    policy = policy_from_mapping({"general": {"require_per_task": {"arc_easy": "equivalent"}}})
    summary = compare_runs(load_run_columns(base), load_run_columns(tuned), policy).to_json()
    row = summary["comparisons"][0]
    lo, hi = newcombe_paired_ci(600, gained, lost, 1000 - 600 - lost - gained, alpha=0.10)
    assert (row["equivalence_ci_low"], row["equivalence_ci_high"]) == pytest.approx(
        (float(lo), float(hi))
    )
    assert (row["status"] == "equivalent") == _hand_tost_binary(lost, gained, 1000, 0.02, 0.05)


def test_a_task_required_equivalent_that_is_not_fails_with_a_reason(tmp_path: Path) -> None:
    base, tuned = _binary_runs(tmp_path, lost=22, gained=11)  # -1.1 points, CI too wide
    plain = compare_runs(
        load_run_columns(base), load_run_columns(tuned), default_policy()
    ).to_json()
    assert plain["comparisons"][0]["status"] == "inconclusive" and plain["verdict"] == "pass"
    judged = rejudge(plain, policy_from_mapping({"general": {"require": "equivalent"}}))
    row = judged["comparisons"][0]
    assert row["status"] == "inconclusive" and row["required"] == "equivalent"
    assert judged["verdict"] == "fail"
    assert judged["reasons"][0] == (
        "arc_easy is not equivalent (required by the policy): its 90% CI -2.1 to -0.1 is "
        "not within +-2.0 points; delta -1.1 points, status inconclusive"
    )
    # the per-task setting wins over general.require
    back = rejudge(
        plain,
        policy_from_mapping(
            {"general": {"require": "equivalent", "require_per_task": {"arc_easy": "non_inferior"}}}
        ),
    )
    assert back["verdict"] == "pass" and back["comparisons"][0]["required"] == "non_inferior"


def test_equivalent_status_passes_and_is_counted(tmp_path: Path) -> None:
    base, tuned = _binary_runs(tmp_path, lost=5, gained=5)
    summary = compare_runs(
        load_run_columns(base),
        load_run_columns(tuned),
        policy_from_mapping({"general": {"require": "equivalent"}}),
    ).to_json()
    assert summary["comparisons"][0]["status"] == "equivalent"
    assert summary["verdict"] == "pass"
    assert summary["reasons"][0].endswith(", 1 equivalent")


def test_summary_with_new_fields_validates_against_the_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(
        (
            Path(__file__).parents[1] / "collapse_eval" / "schemas" / "summary.schema.json"
        ).read_text()
    )
    base, tuned = _format_runs(tmp_path)
    summary = compare_runs(
        load_run_columns(base), load_run_columns(tuned), default_policy()
    ).to_json()
    jsonschema.validate(json.loads(json.dumps(summary)), schema)
    b2, t2 = _gsm8k_runs(tmp_path / "g", 10, 0)
    judged = compare_runs(
        load_run_columns(b2),
        load_run_columns(t2),
        policy_from_mapping({"general": {"require": "equivalent"}}),
    ).to_json()
    jsonschema.validate(json.loads(json.dumps(judged)), schema)


# ---------------------------------------------------------------- policy validation


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"general": {"require": "equivalnt"}},
            "field 'general.require': unknown requirement 'equivalnt'. Did you mean 'equivalent'?",
        ),
        (
            {"general": {"require_per_task": {"gsm8k": "non-inferior"}}},
            "field 'general.require_per_task.gsm8k': unknown requirement 'non-inferior'. "
            "Did you mean 'non_inferior'?",
        ),
        (
            {"general": {"require_per_task": ["gsm8k"]}},
            "field 'general.require_per_task': must be a mapping",
        ),
        (
            {"domain": {"fail_on_format": ["regresed"]}},
            "field 'domain.fail_on_format': unknown status 'regresed'. Did you mean 'regressed'?",
        ),
        ({"domain": {"fail_on_formats": []}}, "fail_on_format"),
    ],
)
def test_new_policy_keys_are_validated(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        policy_from_mapping(raw, source="policy.yaml")
    assert message in str(err.value)


def test_require_per_task_names_a_task_of_the_runs(tmp_path: Path) -> None:
    base, tuned = _binary_runs(tmp_path, 5, 5)
    policy = policy_from_mapping({"general": {"require_per_task": {"arc_esy": "equivalent"}}})
    with pytest.raises(ConfigError, match=r"general.require_per_task.arc_esy.*arc_easy"):
        compare_runs(load_run_columns(base), load_run_columns(tuned), policy).to_json()


def test_defaults_of_the_new_policy_keys() -> None:
    policy = default_policy()
    assert policy.requirement("anything") == "non_inferior"
    assert policy.domain.fail_on_format == ()
    as_json = policy.to_json()
    assert as_json["general"]["require"] == "non_inferior"
    assert as_json["general"]["require_per_task"] == {}
    assert policy_from_mapping(as_json) == policy

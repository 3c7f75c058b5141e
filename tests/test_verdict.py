from __future__ import annotations

import pytest

from collapse_eval.errors import ConfigError, InputError
from collapse_eval.policy import Policy, default_policy, policy_from_mapping
from collapse_eval.summary import Summary
from collapse_eval.verdict import apply_policy, comparison_status, rejudge

# The summaries below hold only what the verdict reads; the rest of a summary is filled in.
_REST = {"verdict": None, "reasons": [], "base": {}, "tuned": {}, "policy": {}}


def _apply(summary: dict, policy: Policy) -> dict:
    """apply_policy on a summary.json object; the judged summary.json object."""
    return apply_policy(Summary.from_json({**_REST, **summary}), policy).to_json()


def _rejudge(summary: dict, policy: Policy) -> dict:
    return rejudge(Summary.from_json({**_REST, **summary}), policy).to_json()


@pytest.mark.parametrize(
    "delta, low, high, p, expected",
    [
        (0.05, 0.02, 0.08, 0.001, "improved"),
        (-0.041, -0.060, -0.022, 0.003, "regressed"),
        (-0.010, -0.015, -0.005, 0.001, "non_inferior"),  # significant but within the margin
        (-0.010, -0.030, 0.010, 0.30, "inconclusive"),
        (0.010, -0.019, 0.040, 0.30, "non_inferior"),
        (-0.030, -0.050, -0.010, 0.06, "inconclusive"),  # not significant, drop not ruled out
        (-0.020, -0.020, -0.019, 0.01, "regressed"),  # ci_low == -m counts as beyond
    ],
)
def test_status_rules(delta: float, low: float, high: float, p: float, expected: str) -> None:
    assert comparison_status(delta, low, high, p, alpha=0.05, margin=0.02) == expected


def test_lower_is_better_mirrors() -> None:
    assert (
        comparison_status(0.05, 0.03, 0.07, 0.001, alpha=0.05, margin=0.02, higher_is_better=False)
        == "regressed"
    )


def _comparison(
    task: str,
    delta: float,
    low: float,
    high: float,
    p: float,
    suite: str = "general",
    **extra: object,
) -> dict:
    row = {
        "suite": suite,
        "task": task,
        "group_by": None,
        "group": None,
        "metric": "acc",
        "n": 1000,
        "base_mean": 0.6,
        "tuned_mean": 0.6 + delta,
        "delta": delta,
        "ci_low": low,
        "ci_high": high,
        "test": "mcnemar_exact",
        "p_value": p,
        "p_adjusted": p,
        "status": None,
        "mde": 0.03,
        "benchmark_margin": None,
    }
    row.update(extra)
    return row


def _summary(*rows: dict, pooled: dict | None = None) -> dict:
    return {
        "schema_version": 1,
        "comparisons": list(rows),
        "alpha": 0.05,
        "domain_overall": {"pooled": pooled, "macro_by_task_type": None} if pooled else None,
        "unpaired": [{"suite": "general", "task": "boolq", "only_in": "base"}],
    }


def test_verdict_reasons_and_rejudge() -> None:
    summary = _summary(
        _comparison("arc_challenge", -0.041, -0.060, -0.022, 0.003),
        _comparison("hellaswag", -0.01, -0.03, 0.01, 0.4),
        pooled={"delta": 0.08, "ci_low": 0.05, "ci_high": 0.11, "p_value": 1e-6, "n": 300},
    )
    judged = _apply(summary, default_policy())
    assert judged["verdict"] == "fail"
    assert judged["reasons"][0] == (
        "arc_challenge dropped 4.1 points (95% CI -6.0 to -2.2, "
        "Holm p = 0.003), beyond the 2-point margin"
    )
    assert any("boolq is only in the base run" in r for r in judged["reasons"])
    assert [c["status"] for c in judged["comparisons"]] == ["regressed", "inconclusive"]
    assert judged["domain_gain"]["met"] is True
    # A wider margin for arc_challenge turns the verdict into a pass, without the records.
    lenient = policy_from_mapping({"general": {"margins": {"arc_challenge": 0.07}}})
    again = _rejudge(judged, lenient)
    assert again["verdict"] == "pass" and again["comparisons"][0]["status"] == "non_inferior"
    assert again["reasons"][0].startswith("pass: 2 general task(s)")
    # Failing on inconclusive, or making hellaswag critical, fails it again.
    strict = policy_from_mapping(
        {"general": {"margins": {"arc_challenge": 0.07}, "critical": ["hellaswag"]}}
    )
    assert _rejudge(judged, strict)["verdict"] == "fail"
    assert "critical task" in _rejudge(judged, strict)["reasons"][0]
    missing = policy_from_mapping(
        {"general": {"margins": {"arc_challenge": 0.07}, "critical": ["mmlu"]}}
    )
    # A critical task in one run only fails the gate; one in neither run is a usage error.
    with pytest.raises(ConfigError, match="field 'general.critical': unknown task 'mmlu'"):
        _rejudge(judged, missing)
    one_run = policy_from_mapping(
        {"general": {"margins": {"arc_challenge": 0.07}, "critical": ["boolq"]}}
    )
    assert "boolq was not compared" in _rejudge(judged, one_run)["reasons"][0]
    assert summary["comparisons"][0]["status"] is None  # input untouched


def test_benchmark_margin_precedence_in_rejudge() -> None:
    row = _comparison("gsm8k", -0.041, -0.060, -0.022, 0.003, benchmark_margin=0.07)
    assert _apply(_summary(row), default_policy())["comparisons"][0]["margin"] == 0.07
    pol = policy_from_mapping({"general": {"margins": {"gsm8k": 0.01}}})
    assert _apply(_summary(row), pol)["comparisons"][0]["status"] == "regressed"


def test_domain_gain_rules() -> None:
    flat = {"delta": 0.01, "ci_low": -0.02, "ci_high": 0.04, "p_value": 0.5, "n": 100}
    judged = _apply(_summary(pooled=flat), default_policy())
    assert judged["verdict"] == "fail" and "no significant gain" in judged["reasons"][0]
    relaxed = policy_from_mapping({"domain": {"require_gain": False}})
    assert _apply(_summary(pooled=flat), relaxed)["verdict"] == "pass"
    small = {"delta": 0.01, "ci_low": 0.005, "ci_high": 0.015, "p_value": 0.001, "n": 100}
    high_bar = policy_from_mapping({"domain": {"min_gain": 0.02}})
    out = _apply(_summary(pooled=small), high_bar)
    assert out["verdict"] == "fail" and "min_gain of 2 points" in out["reasons"][0]
    group = _comparison(
        "*", -0.05, -0.08, -0.02, 0.001, suite="domain", group_by="task_type", group="intent"
    )
    good = {"delta": 0.08, "ci_low": 0.05, "ci_high": 0.11, "p_value": 1e-6, "n": 300}
    reported = _apply(_summary(group, pooled=good), default_policy())
    assert reported["verdict"] == "pass"
    assert any("domain task_type=intent dropped" in r for r in reported["reasons"])
    fails = policy_from_mapping({"domain": {"fail_on": ["regressed"]}})
    assert _apply(_summary(group, pooled=good), fails)["verdict"] == "fail"


def test_rejudge_refuses_new_alpha() -> None:
    judged = _apply(_summary(_comparison("arc", 0.0, -0.01, 0.01, 1.0)), default_policy())
    with pytest.raises(ConfigError, match="A new alpha needs the runs"):
        _rejudge(judged, policy_from_mapping({"alpha": 0.01}))
    with pytest.raises(InputError, match="missing required field"):
        Summary.from_json({"verdict": "pass"})  # gate re-judges only a checked summary

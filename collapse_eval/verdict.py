"""Per-comparison status and the verdict under a policy (docs/statistics.md#status-and-verdict).

Pure functions over the summary dict that ``compare_runs`` builds, so that ``gate`` can
re-judge a stored summary.json under another policy without the records.

Status (margin m > 0 on the 0..1 scale; ``p_adjusted`` is Holm within the family):
  improved      p_adjusted < alpha and delta > 0
  regressed     p_adjusted < alpha and delta < 0 and ci_low <= -m
  non_inferior  ci_low > -m (and not improved)
  inconclusive  anything else: a drop larger than the margin cannot be ruled out,
                including a comparison too small to have a CI (its ``note`` says why)
For metrics where lower is better (``higher_is_better: false``), delta and the CI are
mirrored before the rules are applied.
  equivalent    only for a general task the policy requires to be equivalent
                (``general.require`` / ``general.require_per_task``): its whole
                (1 - 2 alpha) CI (``equivalence_ci_low/high``) lies within (-m, +m), i.e. both
                one-sided tests of TOST reject at level alpha. A required task that is not
                equivalent keeps its status above and fails the gate.

Verdict "fail" when any of:
  * a general task-level comparison has a status listed in ``general.fail_on``;
  * a ``general.critical`` task is regressed or inconclusive, or was not compared;
  * a general task required to be ``equivalent`` is not;
  * a domain comparison (task or group) has a status listed in ``domain.fail_on``;
  * a domain ``format_ok`` row has a status listed in ``domain.fail_on_format``;
  * ``domain.require_gain`` and domain items were evaluated, but the pooled domain
    comparison shows no significant gain (p < alpha and delta > 0) of at least
    ``domain.min_gain``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from collapse_eval.errors import ConfigError
from collapse_eval.policy import Policy

STATUSES = ("improved", "regressed", "non_inferior", "inconclusive", "equivalent")
FORMAT_METRIC = "format_ok"


def is_equivalent(ci_low: float | None, ci_high: float | None, margin: float) -> bool:
    """TOST by CI inclusion: the (1 - 2 alpha) CI lies strictly within (-margin, +margin)."""
    if ci_low is None or ci_high is None:
        return False
    return -margin < ci_low and ci_high < margin


def comparison_status(
    delta: float,
    ci_low: float | None,
    ci_high: float | None,
    p_adjusted: float,
    *,
    alpha: float,
    margin: float,
    higher_is_better: bool = True,
) -> str:
    if ci_low is None or ci_high is None:
        return "inconclusive"  # too few items or clusters for a CI: nothing is ruled out
    if not higher_is_better:
        delta, ci_low = -delta, -ci_high
    significant = p_adjusted < alpha
    if significant and delta > 0:
        return "improved"
    if significant and delta < 0 and ci_low <= -margin:
        return "regressed"
    if ci_low > -margin:
        return "non_inferior"
    return "inconclusive"


def _points(x: float) -> str:
    return f"{abs(x) * 100:.1f}"


def _signed_points(x: float) -> str:
    return f"{x * 100:+.1f}"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"


def _ci(c: dict[str, Any], alpha: float) -> str:
    if c.get("ci_low") is None or c.get("ci_high") is None:
        return f"no CI: {c['note']}" if c.get("note") else "no CI"
    level = f"{(1 - alpha) * 100:g}%"
    return f"{level} CI {_signed_points(c['ci_low'])} to {_signed_points(c['ci_high'])}"


def _label(c: dict[str, Any]) -> str:
    if c.get("metric") == FORMAT_METRIC and c["suite"] == "domain":
        where = f"output_format={c['group']}" if c.get("group_by") else "all output formats"
        return f"domain format_ok ({where})"
    if c.get("group_by") == "metric":
        return f"{c['task']} ({c['metric']})"
    if c.get("group_by"):
        return f"domain {c['group_by']}={c['group']}"
    return str(c["task"]) if c["suite"] == "general" else f"domain task {c['task']}"


def _describe(c: dict[str, Any], alpha: float) -> str:
    """'arc_challenge dropped 4.1 points (95% CI -6.0 to -2.2, Holm p = 0.003), beyond ...'."""
    margin = f"{c['margin'] * 100:g}-point margin"
    stats = f"{_ci(c, alpha)}, Holm p {_p(c.get('p_adjusted'))}"
    worse = c["delta"] < 0 if c.get("higher_is_better", True) else c["delta"] > 0
    if c["status"] == "regressed":
        verb = "dropped" if c.get("higher_is_better", True) else "got worse by"
        return f"{_label(c)} {verb} {_points(c['delta'])} points ({stats}), beyond the {margin}"
    if c["status"] == "inconclusive":
        mde = c.get("mde")
        power = (
            f"; n = {c['n']} detects about {_points(mde)} points"
            if isinstance(mde, (int, float))
            else f"; n = {c['n']}"
        )
        change = "dropped" if worse else "changed"
        return (
            f"{_label(c)} {change} {_points(c['delta'])} points ({stats}): a drop beyond "
            f"the {margin} cannot be ruled out{power}"
        )
    verb = "improved" if c["status"] == "improved" else "changed"
    return f"{_label(c)} {verb} {_signed_points(c['delta'])} points ({stats})"


def domain_gain(summary: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """Whether the pooled domain comparison shows the gain the policy requires."""
    overall = summary.get("domain_overall")
    pooled = overall.get("pooled") if isinstance(overall, dict) else None
    if not pooled:
        return None
    p = pooled.get("p_value")
    delta = pooled["delta"]
    met = p is not None and p < policy.alpha and delta > 0 and delta >= policy.domain.min_gain
    return {
        "required": policy.domain.require_gain,
        "min_gain": policy.domain.min_gain,
        "delta": delta,
        "p_value": p,
        "met": bool(met),
    }


def apply_policy(summary: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """Statuses, verdict and reasons for a summary whose statistics are already computed.

    Returns a new dict; the input is not modified.
    """
    out = copy.deepcopy(summary)
    alpha = policy.alpha
    policy.check_task_names(*_general_task_names(out))
    for c in out["comparisons"]:
        if c["suite"] == "general":
            margin = policy.general_margin_source(c["task"], c.get("benchmark_margin"))
            c["critical"] = c["task"] in policy.general.critical
        else:
            margin = policy.domain_margin_source()
        c["margin"], c["margin_source"] = margin.value, margin.source
        p_adj = c.get("p_adjusted")
        c["status"] = comparison_status(
            c["delta"],
            c["ci_low"],
            c["ci_high"],
            p_adj if p_adj is not None else 1.0,
            alpha=alpha,
            margin=c["margin"],
            higher_is_better=c.get("higher_is_better", True),
        )
        _judge_equivalence(c, policy)

    failures: list[str] = []
    notes: list[str] = []
    general = [c for c in out["comparisons"] if c["suite"] == "general" and not c.get("group_by")]
    for c in general:
        if c.get("required") == "equivalent" and c["status"] != "equivalent":
            failures.append(_not_equivalent(c, alpha))
        elif c["status"] in policy.general.fail_on:
            failures.append(_describe(c, alpha))
        elif c.get("critical") and c["status"] in ("regressed", "inconclusive"):
            failures.append(_describe(c, alpha) + " (critical task: must be non-inferior)")
        elif c["status"] in ("regressed", "inconclusive"):
            notes.append("note: " + _describe(c, alpha))
    compared = {c["task"] for c in general}
    for task in policy.general.critical:
        if task not in compared:
            failures.append(f"critical task {task} was not compared (not in both runs)")
    notes += _overridden_margin_notes(general, policy)

    for c in out["comparisons"]:
        if c["suite"] != "domain":
            continue
        key = "fail_on_format" if c.get("metric") == FORMAT_METRIC else "fail_on"
        if c["status"] in getattr(policy.domain, key):
            failures.append(_describe(c, alpha))
        elif c["status"] == "regressed":
            notes.append(
                "note: " + _describe(c, alpha) + f" (reported; domain.{key} does "
                "not include regressed)"
            )

    gain = domain_gain(out, policy)
    if gain is not None:
        pooled = out["domain_overall"]["pooled"]
        described = (
            f"domain (all items pooled) changed {_signed_points(pooled['delta'])} "
            f"points ({_ci(pooled, alpha)}, p {_p(pooled.get('p_value'))})"
        )
        if gain["met"]:
            notes.insert(0, f"{described}: a significant gain")
        elif policy.domain.require_gain:
            why = (
                f"below the required min_gain of {policy.domain.min_gain * 100:g} points"
                if gain["p_value"] is not None and gain["p_value"] < alpha and pooled["delta"] > 0
                else "no significant gain"
            )
            failures.append(f"{described}: {why}")
        else:
            notes.append(f"{described}: no significant gain (not required by the policy)")
    out["domain_gain"] = gain

    for entry in out.get("unpaired", []):
        notes.append(
            f"note: {entry['suite']} task {entry['task']} is only in the "
            f"{entry['only_in']} run; it was not compared"
        )

    out["verdict"] = "fail" if failures else "pass"
    if not failures:
        counts = {s: sum(c["status"] == s for c in general) for s in STATUSES}
        summary_line = (
            f"pass: {len(general)} general task(s) compared, "
            f"{counts['regressed']} regressed beyond the margin, "
            f"{counts['inconclusive']} inconclusive, {counts['non_inferior']} "
            f"non-inferior, {counts['improved']} improved"
        )
        if counts["equivalent"]:
            summary_line += f", {counts['equivalent']} equivalent"
        failures_or_head = [summary_line]
    else:
        failures_or_head = failures
    out["reasons"] = failures_or_head + notes
    out["alpha"] = alpha
    out["policy"] = policy.to_json()
    return out


def _judge_equivalence(c: dict[str, Any], policy: Policy) -> None:
    """General task-level rows: the requirement, and status ``equivalent`` when TOST passes."""
    if c["suite"] != "general" or c.get("group_by"):
        return
    c["required"] = policy.requirement(c["task"])
    if c["required"] == "equivalent" and is_equivalent(
        c.get("equivalence_ci_low"), c.get("equivalence_ci_high"), c["margin"]
    ):
        c["status"] = "equivalent"


def _not_equivalent(c: dict[str, Any], alpha: float) -> str:
    """'gsm8k is not equivalent: its 90% CI -2.9 to +0.4 is not within +-2 points ...'."""
    m = _points(c["margin"])
    low, high = c.get("equivalence_ci_low"), c.get("equivalence_ci_high")
    if low is None or high is None:
        why = f"no {(1 - 2 * alpha) * 100:g}% CI" + (
            f" ({c['note']})" if c.get("note") else " in this summary (re-run compare)"
        )
    else:
        level = f"{(1 - 2 * alpha) * 100:g}%"
        why = (
            f"its {level} CI {_signed_points(low)} to {_signed_points(high)} is not within "
            f"+-{m} points"
        )
    return (
        f"{_label(c)} is not equivalent (required by the policy): {why}; "
        f"delta {_signed_points(c['delta'])} points, status {c['status']}"
    )


def _general_task_names(summary: dict[str, Any]) -> tuple[set[str], dict[str, str]]:
    """General task names of the runs (compared or in one run only) and subtask -> group."""
    tasks = {
        str(c["task"])
        for c in summary["comparisons"]
        if c["suite"] == "general" and not c.get("group_by")
    }
    tasks |= {str(u["task"]) for u in summary.get("unpaired") or [] if u["suite"] == "general"}
    subtasks = {
        str(c["group"]): str(c["task"])
        for c in summary["comparisons"]
        if c["suite"] == "general" and c.get("group_by") == "subtask"
    }
    return tasks, subtasks


def _overridden_margin_notes(general: list[dict[str, Any]], policy: Policy) -> list[str]:
    """A word when the policy's general.margin is set but benchmarks.yaml margins win."""
    if "general.margin" not in policy.given:
        return []
    overridden = [
        c
        for c in general
        if c.get("margin_source") == "benchmarks.yaml" and c["margin"] != policy.general.margin
    ]
    if not overridden:
        return []
    tasks = ", ".join(f"{c['task']} ({_points(c['margin'])} points)" for c in overridden)
    return [
        f"note: policy general.margin ({_points(policy.general.margin)} points) does not apply "
        f"to {tasks}: a benchmarks.yaml margin is more specific and takes precedence; set "
        "general.margins.TASK in the policy to override it"
    ]


def rejudge(summary: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """Re-judge a stored summary under another policy, without the records.

    Margins, fail_on, critical tasks and the domain gain rule can change; alpha cannot,
    because the stored CIs and adjusted p-values were computed at the old alpha.
    """
    if not isinstance(summary, dict) or not isinstance(summary.get("comparisons"), list):
        raise ConfigError("not a collapse-eval summary.json: no 'comparisons' list")
    old_alpha = summary.get("alpha", (summary.get("policy") or {}).get("alpha"))
    if old_alpha is not None and not math.isclose(float(old_alpha), policy.alpha):
        where = f"{policy.source}: " if policy.source else ""
        raise ConfigError(
            f"{where}alpha {policy.alpha:g} differs from the alpha {float(old_alpha):g} the "
            "summary was computed with; its confidence intervals and adjusted p-values only "
            "hold at that alpha. A new alpha needs the runs: run `collapse-eval compare "
            "BASE_RUN_DIR TUNED_RUN_DIR --policy ...` on the two run directories again."
        )
    return apply_policy(summary, policy)

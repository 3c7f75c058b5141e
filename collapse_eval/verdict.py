"""Per-comparison status and the verdict under a policy (docs/statistics.md#status-and-verdict).

Pure functions over the ``Summary`` that ``compare_runs`` builds, so that ``gate`` can
re-judge a stored summary.json under another policy without the records. ``apply_policy``
returns a judged copy; the summary it is given is not modified.

Status (margin m > 0 on the 0..1 scale; ``p_adjusted`` is Holm within the family):
  improved      p_adjusted < alpha and delta > 0
  regressed     p_adjusted < alpha and delta < 0 and ci_low <= -m
  non_inferior  ci_low > -m (and not improved)
  inconclusive  anything else: a drop larger than the margin cannot be ruled out,
                including a comparison too small to have a CI (its ``note`` says why)
For metrics where lower is better (``higher_is_better: false``), delta and the CI are
mirrored before the rules are applied.
  equivalent    only for a general task or a domain task-level row the policy requires
                to be equivalent (``general.require`` / ``general.require_per_task`` /
                ``domain.require``): its whole
                (1 - 2 alpha) CI (``equivalence_ci_low/high``) lies within (-m, +m), i.e. both
                one-sided tests of TOST reject at level alpha. A required task that is not
                equivalent keeps its status above and fails the gate.

Verdict "fail" when any of:
  * a general task-level comparison has a status listed in ``general.fail_on``;
  * a ``general.critical`` task is regressed or inconclusive, or was not compared;
  * a general task or domain task required to be ``equivalent`` is not;
  * a domain comparison (task or group) has a status listed in ``domain.fail_on``;
  * a domain ``format_ok`` row has a status listed in ``domain.fail_on_format``;
  * ``domain.require_gain`` and domain items were evaluated, but the pooled domain
    comparison shows no significant gain (p < alpha and delta > 0) of at least
    ``domain.min_gain``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple

from collapse_eval.errors import ConfigError
from collapse_eval.policy import Policy
from collapse_eval.sequential_compare import judge_block
from collapse_eval.spelling import (
    STATUSES,
    ci_label,
    ci_points,
    margin_points,
    p_phrase,
    points,
    signed_points,
)
from collapse_eval.summary import Comparison, DomainGain, Summary

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


def _magnitude(x: float) -> str:
    """|x| in points: 'dropped 4.1 points' reads the sign from the verb."""
    return points(abs(x))


def _ci(c: Comparison, alpha: float) -> str:
    if c.ci_low is None or c.ci_high is None:
        return f"no CI: {c.note}" if c.note else "no CI"
    return f"{ci_label(alpha)} {ci_points(c.ci_low, c.ci_high)}"


def _label(c: Comparison) -> str:
    if c.metric == FORMAT_METRIC and c.suite == "domain":
        where = f"output_format={c.group}" if c.group_by else "all output formats"
        return f"domain format_ok ({where})"
    if c.group_by == "metric":
        return f"{c.task} ({c.metric})"
    if c.group_by:
        return f"domain {c.group_by}={c.group}"
    return str(c.task) if c.suite == "general" else f"domain task {c.task}"


def _describe(c: Comparison, alpha: float) -> str:
    """'arc_challenge dropped 4.1 points (95% CI -6.0 to -2.2, Holm p = 0.003), beyond ...'."""
    margin = f"{margin_points(c.margin)}-point margin"
    stats = f"{_ci(c, alpha)}, Holm p {p_phrase(c.p_adjusted)}"
    worse = c.delta < 0 if c.higher_is_better else c.delta > 0
    if c.status == "regressed":
        verb = "dropped" if c.higher_is_better else "got worse by"
        return f"{_label(c)} {verb} {_magnitude(c.delta)} points ({stats}), beyond the {margin}"
    if c.status == "inconclusive":
        change = "dropped" if worse else "changed"
        return (
            f"{_label(c)} {change} {_magnitude(c.delta)} points ({stats}): a drop beyond "
            f"the {margin} cannot be ruled out; {_power(c)}"
        )
    verb = "improved" if c.status == "improved" else "changed"
    return f"{_label(c)} {verb} {signed_points(c.delta)} points ({stats})"


def _power(c: Comparison) -> str:
    """What the sample size can detect, and why nothing is said when there is no minimum
    detectable effect (``mde`` is null): no CI at all, or every paired difference equal
    (no item changed its score), where the spread that the effect is computed from is 0."""
    if isinstance(c.mde, (int, float)):
        return f"n = {c.n} detects about {_magnitude(c.mde)} points"
    if c.ci_low is None or c.ci_high is None:
        return f"n = {c.n}: without a CI there is no minimum detectable effect either"
    spread = c.se_clustered if c.ci_method == "cluster_robust_normal" else c.se
    if spread == 0:  # all paired differences equal: all 0 when the mean is
        what = "no item changed its score" if c.delta == 0 else "every item moved alike"
        return (
            f"n = {c.n} and {what}, so the paired differences have no spread to estimate "
            "a minimum detectable effect from; the CI's width comes from n alone, and only "
            "more items narrow it"
        )
    return f"n = {c.n} (no minimum detectable effect in this summary)"


def domain_gain(summary: Summary, policy: Policy) -> DomainGain | None:
    """Whether the pooled domain comparison shows the gain the policy requires."""
    pooled = _pooled(summary)
    if pooled is None:
        return None
    p = pooled.p_value
    delta = pooled.delta
    met = p is not None and p < policy.alpha and delta > 0 and delta >= policy.domain.min_gain
    return DomainGain(
        required=policy.domain.require_gain,
        min_gain=policy.domain.min_gain,
        delta=delta,
        p_value=p,
        met=bool(met),
    )


def _pooled(summary: Summary) -> Comparison | None:
    """The pooled domain comparison (all domain items), or None without domain items."""
    overall = summary.domain_overall
    return overall.pooled if overall is not None else None


class _Reason(NamedTuple):
    """One line of the verdict's reasons. ``fail`` lines fail the gate; ``lead`` notes are
    listed before the other notes."""

    kind: Literal["fail", "lead", "note"]
    text: str


def apply_policy(summary: Summary, policy: Policy) -> Summary:
    """Statuses, verdict and reasons for a summary whose statistics are already computed.

    Three steps: a status for each comparison row (``_judge_row``), the reasons in words
    (``_reasons``), and the verdict folded from them (``_fold``). Returns a new Summary;
    the input is not modified.
    """
    out = copy.deepcopy(summary)
    policy.check_task_names(*_general_task_names(out))
    for c in out.comparisons:
        _judge_row(c, policy)
    out.domain_gain = domain_gain(out, policy)
    general = _general_rows(out)
    out.verdict, out.reasons = _fold(_reasons(out, general, policy), general)
    if out.sequential is not None:
        _judge_sequential(out, policy)
    out.alpha = policy.alpha
    out.policy = policy.to_json()
    # What the policy set is written even if the summary read from a file lacked it.
    out.absent -= {"domain_gain", "verdict", "reasons", "alpha", "policy"}
    return out


def _judge_sequential(summary: Summary, policy: Policy) -> None:
    """A sequential summary: the verdict is the design's, from its stored looks; the
    fixed-n verdict of the rows (on the items the runs hold) follows as notes."""
    judged = judge_block(summary.sequential or {}, policy)
    fixed_verdict, fixed_reasons = summary.verdict, summary.reasons
    summary.sequential = {**judged.block, "fixed_n_verdict": fixed_verdict}
    summary.verdict = judged.verdict
    summary.reasons = [
        *judged.reasons,
        f"note: the fixed-n comparison of every item in the runs gives {fixed_verdict}",
        *(f"note: fixed-n: {r.removeprefix('note: ')}" for r in fixed_reasons),
    ]


# ---------------------------------------------------------------- status per row


def _judge_row(c: Comparison, policy: Policy) -> None:
    """Set the row's margin (and its source), ``critical``, ``status`` and ``required``."""
    if c.suite == "general":
        margin = policy.general_margin_source(c.task, c.benchmark_margin)
        c.critical = c.task in policy.general.critical
    else:
        margin = policy.domain_margin_source()
    c.margin, c.margin_source = margin.value, margin.source
    p_adj = c.p_adjusted
    c.status = comparison_status(
        c.delta,
        c.ci_low,
        c.ci_high,
        p_adj if p_adj is not None else 1.0,
        alpha=policy.alpha,
        margin=margin.value,
        higher_is_better=c.higher_is_better,
    )
    c.absent -= {"margin", "status"}
    _judge_equivalence(c, policy)


def _judge_equivalence(c: Comparison, policy: Policy) -> None:
    """General task-level rows, and domain task-level rows under ``domain.require:
    equivalent`` (written only then, so summaries judged as before stay as they were): the
    requirement, and status ``equivalent`` when TOST passes."""
    if c.group_by or (c.suite == "domain" and c.metric == FORMAT_METRIC):
        return
    if c.suite == "general":
        c.required = policy.requirement(c.task)
    elif policy.domain.require == "equivalent":
        c.required = "equivalent"
    if c.required == "equivalent" and is_equivalent(
        c.equivalence_ci_low, c.equivalence_ci_high, _margin(c)
    ):
        c.status = "equivalent"


def _margin(c: Comparison) -> float:
    """The margin of a judged row."""
    assert c.margin is not None, "judged rows have a margin"
    return c.margin


def _general_rows(summary: Summary) -> list[Comparison]:
    """The general task-level rows (not per subtask or per metric)."""
    return [c for c in summary.comparisons if c.suite == "general" and not c.group_by]


# ---------------------------------------------------------------- reasons in words


def _reasons(summary: Summary, general: list[Comparison], policy: Policy) -> Iterator[_Reason]:
    """Every reason, in the order the rules are listed in the module docstring."""
    for c in general:
        reason = _general_reason(c, policy)
        if reason is not None:
            yield reason
    compared = {c.task for c in general}
    for task in policy.general.critical:
        if task not in compared:
            yield _Reason("fail", f"critical task {task} was not compared (not in both runs)")
    for text in _overridden_margin_notes(general, policy):
        yield _Reason("note", text)
    for c in summary.comparisons:
        reason = _domain_reason(c, policy) if c.suite == "domain" else None
        if reason is not None:
            yield reason
    pooled = _pooled(summary)
    if summary.domain_gain is not None and pooled is not None:
        yield _gain_reason(pooled, summary.domain_gain, policy)
    for entry in summary.unpaired:
        yield _Reason(
            "note",
            f"note: {entry.suite} task {entry.task} is only in the "
            f"{entry.only_in} run; it was not compared",
        )


def _general_reason(c: Comparison, policy: Policy) -> _Reason | None:
    """A general task-level row: fails on a missed requirement, a ``fail_on`` status or a
    critical task not shown non-inferior; a note when it regressed or is inconclusive."""
    alpha = policy.alpha
    if c.required == "equivalent" and c.status != "equivalent":
        return _Reason("fail", _not_equivalent(c, alpha))
    if c.status in policy.general.fail_on:
        return _Reason("fail", _describe(c, alpha))
    if c.critical and c.status in ("regressed", "inconclusive"):
        return _Reason("fail", _describe(c, alpha) + " (critical task: must be non-inferior)")
    if c.status in ("regressed", "inconclusive"):
        return _Reason("note", "note: " + _describe(c, alpha))
    return None


def _domain_reason(c: Comparison, policy: Policy) -> _Reason | None:
    """A domain row (task, group or format_ok): fails on a status in ``domain.fail_on``
    (``fail_on_format`` for format_ok rows); a note when it regressed nonetheless."""
    if c.required == "equivalent" and c.status != "equivalent":
        return _Reason("fail", _not_equivalent(c, policy.alpha))
    key = "fail_on_format" if c.metric == FORMAT_METRIC else "fail_on"
    if c.status in getattr(policy.domain, key):
        return _Reason("fail", _describe(c, policy.alpha))
    if c.status == "regressed":
        return _Reason(
            "note",
            "note: " + _describe(c, policy.alpha) + f" (reported; domain.{key} does "
            "not include regressed)",
        )
    return None


def _gain_reason(pooled: Comparison, gain: DomainGain, policy: Policy) -> _Reason:
    """The pooled domain gain: a leading note when met, else a failure when required."""
    alpha = policy.alpha
    described = (
        f"domain (all items pooled) changed {signed_points(pooled.delta)} "
        f"points ({_ci(pooled, alpha)}, p {p_phrase(pooled.p_value)})"
    )
    if gain.met:
        return _Reason("lead", f"{described}: a significant gain")
    if not policy.domain.require_gain:
        return _Reason("note", f"{described}: no significant gain (not required by the policy)")
    significant = gain.p_value is not None and gain.p_value < alpha and pooled.delta > 0
    why = (
        f"below the required min_gain of {margin_points(policy.domain.min_gain)} points"
        if significant
        else "no significant gain"
    )
    return _Reason("fail", f"{described}: {why}")


def _not_equivalent(c: Comparison, alpha: float) -> str:
    """'gsm8k is not equivalent: its 90% CI -2.9 to +0.4 is not within +-2.0 points ...'."""
    low, high = c.equivalence_ci_low, c.equivalence_ci_high
    level = ci_label(2 * alpha)  # the TOST interval: (1 - 2 alpha)
    if low is None or high is None:
        why = f"no {level}" + (f" ({c.note})" if c.note else " in this summary (re-run compare)")
    else:
        why = f"its {level} {ci_points(low, high)} is not within +-{_magnitude(_margin(c))} points"
    return (
        f"{_label(c)} is not equivalent (required by the policy): {why}; "
        f"delta {signed_points(c.delta)} points, status {c.status}"
    )


# ---------------------------------------------------------------- the verdict


def _fold(reasons: Iterable[_Reason], general: list[Comparison]) -> tuple[str, list[str]]:
    """(verdict, reasons in words): "fail" with the failures first when any reason fails,
    else "pass" with a one-line count of the general statuses; the notes follow."""
    by_kind: dict[str, list[str]] = {"fail": [], "lead": [], "note": []}
    for reason in reasons:
        by_kind[reason.kind].append(reason.text)
    notes = by_kind["lead"] + by_kind["note"]
    if by_kind["fail"]:
        return "fail", by_kind["fail"] + notes
    return "pass", [_pass_line(general)] + notes


def _pass_line(general: list[Comparison]) -> str:
    counts = {s: sum(c.status == s for c in general) for s in STATUSES}
    line = (
        f"pass: {len(general)} general task(s) compared, "
        f"{counts['regressed']} regressed beyond the margin, "
        f"{counts['inconclusive']} inconclusive, {counts['non_inferior']} "
        f"non-inferior, {counts['improved']} improved"
    )
    if counts["equivalent"]:
        line += f", {counts['equivalent']} equivalent"
    return line


def _general_task_names(summary: Summary) -> tuple[set[str], dict[str, str]]:
    """General task names of the runs (compared or in one run only) and subtask -> group."""
    tasks = {str(c.task) for c in _general_rows(summary)}
    tasks |= {str(u.task) for u in summary.unpaired if u.suite == "general"}
    subtasks = {
        str(c.group): str(c.task)
        for c in summary.comparisons
        if c.suite == "general" and c.group_by == "subtask"
    }
    return tasks, subtasks


def _overridden_margin_notes(general: list[Comparison], policy: Policy) -> list[str]:
    """A word when the policy's general.margin is set but benchmarks.yaml margins win."""
    if "general.margin" not in policy.given:
        return []
    overridden = [
        c
        for c in general
        if c.margin_source == "benchmarks.yaml" and c.margin != policy.general.margin
    ]
    if not overridden:
        return []
    tasks = ", ".join(f"{c.task} ({_magnitude(_margin(c))} points)" for c in overridden)
    return [
        f"note: policy general.margin ({_magnitude(policy.general.margin)} points) does not apply "
        f"to {tasks}: a benchmarks.yaml margin is more specific and takes precedence; set "
        "general.margins.TASK in the policy to override it"
    ]


def rejudge(summary: Summary, policy: Policy) -> Summary:
    """Re-judge a stored summary under another policy, without the records (a new
    Summary; the one given is not modified).

    Margins, fail_on, critical tasks and the domain gain rule can change; alpha cannot,
    because the stored CIs and adjusted p-values were computed at the old alpha.
    """
    stored_policy = summary.policy if isinstance(summary.policy, dict) else {}
    old_alpha = summary.alpha if "alpha" not in summary.absent else stored_policy.get("alpha")
    if old_alpha is not None and not math.isclose(float(old_alpha), policy.alpha):
        where = f"{policy.source}: " if policy.source else ""
        raise ConfigError(
            f"{where}alpha {policy.alpha:g} differs from the alpha {float(old_alpha):g} the "
            "summary was computed with; its confidence intervals and adjusted p-values only "
            "hold at that alpha. A new alpha needs the runs: run `collapse-eval compare "
            "BASE_RUN_DIR TUNED_RUN_DIR --policy ...` on the two run directories again."
        )
    return apply_policy(summary, policy)

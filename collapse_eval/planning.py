"""How many items a gate decision needs (``collapse-eval plan``): pure, like stats.py.

Per task, from the base accuracy (or a prior), an assumed discordance (the share of items
the two models answer differently) and the policy's margin m:

* fixed-n: the paired differences d have variance ``s2 = discordance - delta^2`` (binary;
  for continuous scores the variance the caller estimates), times the design effect of
  clustered items; the one-sided level-alpha/2 test of non-inferiority (the fixed-n status
  ``ci_low > -m``) at a true delta of 0 has power ``Phi(m sqrt(n / (s2 deff)) - z)``,
  so ``n = (z_{1-alpha/2} + z_{power})^2 s2 deff / m^2``;
* sequential: the expected items of the design (sequential.py) for one task when the
  candidate is clearly fine (delta +m), exactly at the margin (-m) and clearly regressed
  (-2m), from the crossing probabilities of its boundaries (no simulation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from collapse_eval import sequential as sq
from collapse_eval.columns import RunColumns
from collapse_eval.errors import UsageError, did_you_mean
from collapse_eval.policy import Policy

DEFAULT_DISCORDANCE = 0.15
DEFAULT_POWER = 0.8
# (name, true delta in margins): as far above the margin's null as "clearly regressed" is
# below the null of no drop, and the hardest case, at the margin, in between.
SCENARIOS = (
    ("clearly fine (+m)", 1.0),
    ("at the margin (-m)", -1.0),
    ("clearly regressed (-2m)", -2.0),
)


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """The plan of one task; ``None`` where it cannot be said (no item count)."""

    task: str
    base_accuracy: float
    variance: float  # of the paired differences at no change (before the design effect)
    design_effect: float
    margin: float
    items_available: int | None
    items_needed: int  # fixed-n, at the wanted power, when nothing changed
    power_at_available: float | None  # fixed-n power with the items available
    expected_items: tuple[float, ...] | None  # sequential, per SCENARIOS
    reachable: bool | None  # items_available >= items_needed


def binary_variance(discordance: float, delta: float = 0.0) -> float:
    """Var(d) of paired 0/1 scores with this discordance and mean difference."""
    return max(discordance - delta * delta, 1e-12)


def fixed_n_items(variance: float, margin: float, *, alpha: float, power: float) -> int:
    """Items the fixed-n non-inferiority test needs at a true delta of 0."""
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return math.ceil(z * z * variance / (margin * margin))


def fixed_n_power(variance: float, margin: float, n: int, *, alpha: float) -> float:
    """Power of the fixed-n non-inferiority test with n items at a true delta of 0."""
    return float(norm.cdf(margin * math.sqrt(n / variance) - norm.ppf(1 - alpha / 2)))


def expected_items(
    variance: float,
    margin: float,
    n_max: int,
    delta: float,
    *,
    alpha: float,
    looks: int,
    n_failing: int = 1,
) -> float:
    """Expected items of one task in the sequential design (looks at k/K of n_max) when its
    true delta is ``delta``: Z_k = (delta_hat + m) / se is Brownian with drift
    (delta + m) sqrt(n_max / variance); it stops non-inferior above c_k and regressed
    below -r_k + m sqrt(n_k / variance) (where delta_hat / se <= -r_k)."""
    t = [(k + 1) / looks for k in range(looks)]
    upper = sq.spending_bounds(t, alpha / 2)
    fail = sq.spending_bounds(t, alpha / (2 * max(n_failing, 1)))
    shift = margin * np.sqrt(n_max * np.array(t) / variance)
    lower = np.minimum(-np.array(fail) + shift, np.array(upper))
    drift = (delta + margin) * math.sqrt(n_max / variance)
    up, down = sq.crossing_probabilities(t, list(lower), list(upper), drift=drift)
    stop = up + down
    sizes = n_max * np.array(t)
    return float(np.sum(stop * sizes) + (1 - stop.sum()) * n_max)


def plan_task(
    task: str,
    base_accuracy: float,
    variance: float,
    margin: float,
    items_available: int | None,
    *,
    alpha: float,
    power: float,
    looks: int,
    design_effect: float = 1.0,
    n_failing: int = 1,
) -> TaskPlan:
    """The plan of one task (see the module docstring)."""
    v = variance * design_effect
    needed = fixed_n_items(v, margin, alpha=alpha, power=power)
    expected: tuple[float, ...] | None = None
    power_now: float | None = None
    if items_available:
        power_now = fixed_n_power(v, margin, items_available, alpha=alpha)
        expected = tuple(
            expected_items(
                v,
                margin,
                items_available,
                k * margin,
                alpha=alpha,
                looks=looks,
                n_failing=n_failing,
            )
            for _, k in SCENARIOS
        )
    return TaskPlan(
        task=task,
        base_accuracy=base_accuracy,
        variance=variance,
        design_effect=design_effect,
        margin=margin,
        items_available=items_available,
        items_needed=needed,
        power_at_available=power_now,
        expected_items=expected,
        reachable=None if items_available is None else items_available >= needed,
    )


def design_effect(scores: ArrayLike, clusters: Sequence[object] | None) -> float:
    """(cluster-robust SE / i.i.d. SE)^2 of the base scores' mean: how much clustering
    inflates the variance (1 without clusters or with one item per cluster)."""
    from collapse_eval.stats import clustered_se

    x = np.asarray(scores, dtype=float)
    if clusters is None or x.size < 2 or any(c is None for c in clusters):
        return 1.0
    se_cl, n_cl = clustered_se(x, clusters)
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    if n_cl >= x.size or se_cl is None or se == 0 or n_cl < sq.MIN_LOOK_CLUSTERS:
        return 1.0
    return max(1.0, (se_cl / se) ** 2)


# ---------------------------------------------------------------- a suite from a base run


@dataclass(frozen=True, slots=True)
class TaskInput:
    """What the plan of one task starts from."""

    suite: str
    task: str
    base_accuracy: float
    variance: float | None  # None: binary, from the discordance
    items_available: int | None
    design_effect: float = 1.0
    benchmark_margin: float | None = None


def task_input(
    suite: str,
    task: str,
    scores: ArrayLike,
    clusters: Sequence[object] | None,
    benchmark_margin: float | None = None,
) -> TaskInput:
    """A task's input from its base scores: accuracy, design effect, and for continuous
    scores the variance of the paired differences if base and tuned scores correlate 0.5
    (2 var (1 - 0.5) = var of the base scores)."""
    x = np.asarray(scores, dtype=float)
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    variance = None if binary else float(x.var(ddof=1)) if x.size > 1 else None
    return TaskInput(
        suite,
        task,
        float(x.mean()),
        variance,
        int(x.size),
        design_effect(x, clusters),
        benchmark_margin,
    )


def plan_suite(
    inputs: Sequence[TaskInput],
    margins: Sequence[float],
    *,
    discordance: float,
    alpha: float,
    power: float,
    looks: int,
    n_failing: int,
) -> list[TaskPlan]:
    """The plan of each task; a binary task's discordance is capped at 2 min(p, 1 - p), the
    most two models with that accuracy can disagree."""
    out = []
    for item, margin in zip(inputs, margins, strict=True):
        p = item.base_accuracy
        if item.variance is None:
            variance = binary_variance(min(discordance, 2 * min(p, 1 - p)))
        else:
            variance = max(item.variance, 1e-12)
        out.append(
            plan_task(
                item.task,
                p,
                variance,
                margin,
                item.items_available,
                alpha=alpha,
                power=power,
                looks=looks,
                design_effect=item.design_effect,
                n_failing=n_failing,
            )
        )
    return out


def run_inputs(run: RunColumns) -> list[TaskInput]:
    """One input per task of a base run (its primary metric; a task without one is left
    out), general tasks first."""
    out = []
    for suite, task in sorted(run.order, key=lambda st: st[0] != "general"):
        metric = "score" if suite == "domain" else run.primary_metric(task)
        cols = run.get((suite, task, metric)) if metric else None
        if cols is None or len(cols) == 0:
            continue
        clusters = list(cols.clusters) if all(c is not None for c in cols.clusters) else None
        info = run.manifest.tasks.get(task)
        margin = info.margin if info is not None and suite == "general" else None
        out.append(task_input(suite, task, cols.scores, clusters, margin))
    return out


def _number(text: str, integer: bool) -> float | None:
    """An item count (>= 1) or an accuracy (0..1) from text; None when it is neither."""
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or (value < 1 if integer else not 0 <= value <= 1):
        return None
    return value


def parse_assignments(values: Sequence[str], option: str, *, integer: bool) -> dict[str, float]:
    """``TASK=VALUE`` strings of a repeatable option; UsageError (exit 2) for a bad one."""
    out: dict[str, float] = {}
    for value in values:
        task, sep, text = value.partition("=")
        number = _number(text, integer) if sep and task else None
        if number is None:
            what = "N, a whole number of items >= 1" if integer else "ACCURACY, in [0, 1]"
            example = "arc_easy=500" if integer else "arc_easy=0.7"
            raise UsageError(f"{option} {value!r}: expected TASK={what}, e.g. {option} {example}")
        if task in out:
            raise UsageError(f"{option} {task} is given twice; give each task once")
        out[task] = number
    return out


def _check_named(
    run: RunColumns | None, known: Sequence[str], named: Mapping[str, Mapping[str, float]]
) -> None:
    """UsageError for a ``--prior``/``--items`` task the base run lacks (did-you-mean), or,
    without a run, for ``--items`` of a task without ``--prior``."""
    priors = named["--prior"]
    if run is None and not priors:
        raise UsageError("plan needs a base run directory, or tasks given by --prior TASK=ACCURACY")
    for option, tasks in named.items():
        for task in tasks:
            if run is not None and task not in known:
                raise UsageError(
                    f"{option} {task}: not a task of {run.path}.{did_you_mean(task, known)} "
                    f"Its tasks: {', '.join(known)}"
                )
            if run is None and task not in priors:
                raise UsageError(f"{option} {task}: give its accuracy too: --prior {task}=ACCURACY")


def _inputs(
    run: RunColumns | None,
    priors: Mapping[str, float],
    counts: Mapping[str, float],
    deff: float,
) -> list[TaskInput]:
    """The base run's tasks with ``--prior`` accuracies and ``--items`` counts applied, then
    the tasks given by ``--prior`` alone."""
    inputs = run_inputs(run) if run is not None else []
    _check_named(run, [i.task for i in inputs], {"--prior": priors, "--items": counts})
    known = {i.task for i in inputs}
    inputs += [
        TaskInput("general", t, p, None, None, deff) for t, p in priors.items() if t not in known
    ]
    return [
        dataclasses.replace(
            i,
            base_accuracy=priors.get(i.task, i.base_accuracy),
            items_available=int(counts[i.task]) if i.task in counts else i.items_available,
        )
        for i in inputs
    ]


def build_plan(
    run: RunColumns | None,
    policy: Policy,
    *,
    looks: int,
    prior: Sequence[str] = (),
    items: Sequence[str] = (),
    discordance: float | None = None,
    power: float = DEFAULT_POWER,
    design_effect: float = 1.0,
) -> list[TaskPlan]:
    """The plan of a base run's tasks and/or ``--prior`` tasks under ``policy``. The
    failing family of the sequential design: the general tasks, and the domain gain when
    the policy requires it."""
    priors = parse_assignments(prior, "--prior", integer=False)
    counts = parse_assignments(items, "--items", integer=True)
    inputs = _inputs(run, priors, counts, design_effect)
    margins = [
        policy.general_margin_source(i.task, i.benchmark_margin).value
        if i.suite == "general"
        else policy.domain.margin
        for i in inputs
    ]
    gating = sum(1 for i in inputs if i.suite == "general")
    gain = any(i.suite == "domain" for i in inputs) and policy.domain.require_gain
    return plan_suite(
        inputs,
        margins,
        discordance=DEFAULT_DISCORDANCE if discordance is None else discordance,
        alpha=policy.alpha,
        power=power,
        looks=looks,
        n_failing=max(gating + int(gain), 1),
    )

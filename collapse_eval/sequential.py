"""Group-sequential release gate (docs/statistics.md#sequential-gate): pure, like stats.py.

Each gating comparison is looked at K times, at information fractions t_k = n_k / N (N the
task's item count, known in advance). Its z statistics are compared with Lan–DeMets
alpha-spending boundaries of O'Brien–Fleming type, computed by the recursive numerical
integration of Armitage, McPherson & Rowe (Jennison & Turnbull 2000, ch. 19):

  non-inferior  (delta + m) / se >= c_k            c from spending alpha/2 (one-sided)
  regressed     delta / se <= -r_k, and not NI      r from spending alpha/(2 G)
  gain shown    (delta - g) / se >= c_k, delta >= g  (the domain gain, g = min_gain or 0)
  gain ruled out (delta - g) / se <= -r_k

G is the failing family: the comparisons whose decision can fail the gate. Passing needs
every gating comparison non-inferior (intersection-union: each at alpha/2, no correction);
a failure comes from any member of the family, each tested at alpha/(2 G) with its own
spending function, so the family-wise error of a false failure stays <= alpha/2 under
optional stopping (Bonferroni holds for any dependence and any stopping rule that only
ends tests early). The repeated confidence interval delta +- c_k se covers at every look
simultaneously with probability >= 1 - alpha.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq
from scipy.stats import norm
from scipy.stats import t as student_t

from collapse_eval.stats import clustered_se

FloatArray = NDArray[np.float64]
SPENDING = "lan_demets_obrien_fleming"
MIN_LOOK_ITEMS = 30  # below this the z approximation is not trusted: the look tests nothing
MIN_LOOK_CLUSTERS = 10
_GRID = 801  # grid points per look (Simpson's rule); boundaries agree with tables to 1e-3
_Z_FLOOR = -10.0  # "minus infinity" for a one-sided design: P(Z < -10) is 1e-23
_Z_CEIL = 10.0

Kind = Literal["task", "gain"]
Decision = Literal["non_inferior", "regressed", "gain_shown", "gain_ruled_out"]
FAILING: frozenset[str] = frozenset({"regressed", "gain_ruled_out"})


# ---------------------------------------------------------------- spending and boundaries


def obf_spending(t: ArrayLike, alpha: float) -> FloatArray:
    """Lan–DeMets O'Brien–Fleming-type one-sided alpha spent by information fraction t:
    2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)), 0 at t = 0 and alpha at t = 1."""
    ts = np.clip(np.asarray(t, dtype=float), 1e-12, 1.0)
    return np.asarray(2.0 * norm.sf(norm.ppf(1.0 - alpha / 2.0) / np.sqrt(ts)))


def _simpson_grid(low: float, high: float) -> tuple[FloatArray, FloatArray]:
    """Points and Simpson weights on [low, high] (an odd number of points)."""
    z = np.linspace(low, high, _GRID)
    w = np.full(_GRID, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return z, w * (z[1] - z[0]) / 3.0


@dataclass(frozen=True, slots=True)
class _Density:
    """Sub-density of Z_k on the continuation region (the paths not yet stopped)."""

    z: FloatArray
    w: FloatArray
    f: FloatArray
    t: float


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _pdf(x: FloatArray) -> FloatArray:
    """The standard normal density: scipy's ``norm.pdf`` without its argument checks,
    which took most of a look's time on the 801 x 801 kernel of ``_advance``."""
    return np.asarray(np.exp(-0.5 * x * x) * _INV_SQRT_2PI)


def _start(t1: float, drift: float, low: float, high: float) -> _Density:
    z, w = _simpson_grid(low, high)
    return _Density(z, w, norm.pdf(z - drift * math.sqrt(t1)), t1)


def _cross_up(d: _Density, t: float, c: float, drift: float) -> float:
    """P(not stopped before, Z at information t >= c), Z scaled by sqrt(t)."""
    if d.z.size == 0:
        return 0.0
    step = t - d.t
    mean = d.z * math.sqrt(d.t) + drift * step
    tail = norm.sf((c * math.sqrt(t) - mean) / math.sqrt(step))
    return float(np.sum(d.w * d.f * tail))


def _cross_down(d: _Density, t: float, c: float, drift: float) -> float:
    step = t - d.t
    mean = d.z * math.sqrt(d.t) + drift * step
    tail = norm.cdf((c * math.sqrt(t) - mean) / math.sqrt(step))
    return float(np.sum(d.w * d.f * tail))


def _advance(d: _Density, t: float, low: float, high: float, drift: float) -> _Density:
    """The sub-density at information t on (low, high), by one convolution (J&T 19.2)."""
    z, w = _simpson_grid(low, high)
    step = t - d.t
    sd = math.sqrt(step)
    kernel = _pdf((z[:, None] * math.sqrt(t) - d.z[None, :] * math.sqrt(d.t) - drift * step) / sd)
    return _Density(z, w, kernel @ (d.w * d.f) * math.sqrt(t) / sd, t)


def crossing_probabilities(
    t: Sequence[float], lower: Sequence[float], upper: Sequence[float], drift: float = 0.0
) -> tuple[FloatArray, FloatArray]:
    """P(first crossing of the upper / lower boundary at look k), for the standardized
    statistics Z_k of a Brownian motion with drift ``drift`` per unit information (mean of
    Z_k: drift * sqrt(t_k)). Use +-inf for a one-sided boundary."""
    ups, downs = np.zeros(len(t)), np.zeros(len(t))
    density: _Density | None = None
    for k, (tk, lo, hi) in enumerate(zip(t, lower, upper, strict=True)):
        lo_c, hi_c = max(lo, _Z_FLOOR), min(hi, _Z_CEIL)
        if density is None:
            ups[k] = norm.sf(hi - drift * math.sqrt(tk))
            downs[k] = norm.cdf(lo - drift * math.sqrt(tk))
            density = _start(tk, drift, lo_c, hi_c)
            continue
        ups[k] = _cross_up(density, tk, hi, drift) if hi < _Z_CEIL else 0.0
        downs[k] = _cross_down(density, tk, lo, drift) if lo > _Z_FLOOR else 0.0
        density = _advance(density, tk, lo_c, hi_c, drift)
    return ups, downs


def _bounds(t: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    return _bounds_state(t, alpha)[0]


@functools.lru_cache(maxsize=4096)
def _bounds_state(t: tuple[float, ...], alpha: float) -> tuple[tuple[float, ...], _Density]:
    """The boundaries of looks ``t`` and the sub-density after the last, built on those of
    ``t[:-1]`` (cached): a live run adds one look per round, and pays for that look only."""
    spent = obf_spending(np.array(t[-2:]), alpha)
    if len(t) == 1:
        target = float(spent[-1])
        c = float(norm.isf(target)) if target > 0 else _Z_CEIL
        return (c,), _start(t[0], 0.0, _Z_FLOOR, min(c, _Z_CEIL))
    before, density = _bounds_state(t[:-1], alpha)
    c = _solve(density, t[-1], float(spent[1] - spent[0]))
    return (*before, c), _advance(density, t[-1], _Z_FLOOR, min(c, _Z_CEIL), 0.0)


def _solve(density: _Density, t: float, target: float) -> float:
    """The boundary c whose crossing probability at information t is ``target``."""
    if target <= 1e-15 or _cross_up(density, t, _Z_CEIL, 0.0) >= target:
        return _Z_CEIL
    return float(
        brentq(lambda c: _cross_up(density, t, c, 0.0) - target, -_Z_CEIL, _Z_CEIL, xtol=1e-7)
    )


def spending_bounds(t: Sequence[float], alpha: float) -> tuple[float, ...]:
    """One-sided upper boundaries c_1..c_K of the OBF-type spending design at level alpha
    for information fractions t (increasing, the last may be < 1 for an interim design).
    Cached: the looks of equal-sized tasks share them."""
    key = tuple(round(float(x), 6) for x in t)
    if any(b <= a for a, b in zip(key, key[1:], strict=False)) or key[0] <= 0 or key[-1] > 1:
        raise ValueError(f"information fractions must increase within (0, 1], got {key}")
    return _bounds(key, float(alpha))


# ---------------------------------------------------------------- order and looks


def _unit_key(seed: int, unit: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the unit's name alone, so base and
    candidate, and a resumed run, put the same items in the same order."""
    digest = hashlib.sha256(f"{seed}\x1f{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def evaluation_order(
    units: Sequence[str], strata: Sequence[str] | None = None, *, seed: int = 0
) -> NDArray[np.intp]:
    """The order in which items are evaluated: indices into ``units`` (one unit name per
    item: its cluster, or the item itself). Units are kept whole (their items in file
    order) and ordered at random by the seed; with ``strata`` (one per item) the order is
    stratified: a unit's position is (rank within its stratum + its random key) / stratum
    size, so every prefix holds each stratum in proportion."""
    first: dict[str, int] = {}
    members: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        first.setdefault(unit, i)
        members.setdefault(unit, []).append(i)
    keys = {u: _unit_key(seed, u) for u in first}
    stratum = {u: (strata[i] if strata is not None else "") for u, i in first.items()}
    by_stratum: dict[str, list[str]] = {}
    for u in sorted(first, key=lambda u: keys[u]):
        by_stratum.setdefault(stratum[u], []).append(u)
    position = {
        u: (rank + keys[u]) / len(group)
        for group in by_stratum.values()
        for rank, u in enumerate(group)
    }
    ordered = sorted(first, key=lambda u: (position[u], keys[u]))
    return np.array([i for u in ordered for i in members[u]], dtype=np.intp)


def look_sizes(units_in_order: Sequence[str], looks: int) -> list[int]:
    """Items at each look: the first whole-unit prefix holding at least k/K of the items."""
    n = len(units_in_order)
    ends = [i + 1 for i in range(n) if i + 1 == n or units_in_order[i + 1] != units_in_order[i]]
    out = []
    for k in range(1, looks + 1):
        need = math.ceil(k * n / looks)
        out.append(next(e for e in ends if e >= need) if n else 0)
    return out


# ---------------------------------------------------------------- looks of one comparison


@dataclass(frozen=True, slots=True)
class LookStat:
    """The paired delta at one look: n items (n_clusters clusters) of n_max."""

    n: int
    n_max: int
    delta: float
    se: float | None  # None: too few items or clusters: the look tests nothing
    n_clusters: int | None = None

    @property
    def t(self) -> float:
        return self.n / self.n_max

    @property
    def dof(self) -> int:
        """Degrees of freedom of the SE: clusters - 1 when items share clusters, else n - 1."""
        if self.n_clusters is not None and self.n_clusters < self.n:
            return max(self.n_clusters - 1, 1)
        return max(self.n - 1, 1)


def t_scaled(bound: ArrayLike, dof: ArrayLike) -> FloatArray:
    """The boundary on Student's t scale with ``dof`` degrees of freedom at the same tail
    probability: the SE is estimated, and at the small tail probabilities of early looks
    (and with few clusters) the normal boundary would reject too often."""
    return np.asarray(student_t.isf(norm.sf(bound), dof), dtype=float)


def look_stat(d: ArrayLike, n_max: int, clusters: Sequence[object] | None = None) -> LookStat:
    """Delta and its SE (cluster-robust when items share clusters) of the first n items."""
    diffs = np.asarray(d, dtype=float)
    n = diffs.size
    delta = float(diffs.mean()) if n else 0.0
    n_cl: int | None = None
    se: float | None = float(diffs.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    if clusters is not None and n:
        se_cl, n_cl = clustered_se(diffs, clusters)
        if n_cl < n:
            se = se_cl if n_cl >= MIN_LOOK_CLUSTERS else None
    if se == 0.0 and n > 1:
        # Every item scored alike in both models (a task neither model can do, or both
        # always can): the SE as if one item had been lost and one gained, so a look can
        # still show non-inferiority instead of never testing.
        se = math.sqrt(2.0) / n
    if (n < MIN_LOOK_ITEMS and n < n_max) or se is None:  # the final look always tests
        se = None
    return LookStat(n=n, n_max=n_max, delta=delta, se=se, n_clusters=n_cl)


@dataclass(frozen=True, slots=True)
class Gating:
    """One gating comparison of the design. ``margin``: non-inferiority margin (task) or the
    gain to show (gain); ``fails_when_undecided``: a critical task (or fail_on inconclusive)
    fails when it ends undecided."""

    name: str
    kind: Kind
    margin: float
    higher_is_better: bool = True
    fails_when_undecided: bool = False
    can_regress: bool = True  # "regressed" fails the gate (general.fail_on or critical)


@dataclass(frozen=True, slots=True)
class LookDecision:
    look: int  # 1-based
    stat: LookStat
    bound: float | None  # c_k (alpha/2): NI / gain / the repeated CI
    fail_bound: float | None  # r_k (alpha / 2G): regressed / gain ruled out
    decision: Decision | None

    @property
    def rci(self) -> tuple[float, float] | None:
        """The repeated (1 - alpha) confidence interval of delta at this look."""
        if self.stat.se is None or self.bound is None:
            return None
        half = self.bound * self.stat.se
        return (self.stat.delta - half, self.stat.delta + half)


DECISIONS: tuple[Decision | None, ...] = (
    None,
    "non_inferior",
    "regressed",
    "gain_shown",
    "gain_ruled_out",
)


def decision_codes(
    g: Gating, delta: ArrayLike, se: ArrayLike, bound: ArrayLike, fail_bound: ArrayLike
) -> NDArray[np.int8]:
    """Vectorised decisions (indices into DECISIONS; 0 undecided), NI / gain first as the
    fixed-n status does. ``delta`` in the metric's own direction; se > 0."""
    d = np.asarray(delta, dtype=float) * (1.0 if g.higher_is_better else -1.0)
    s = np.asarray(se, dtype=float)
    codes = np.zeros(np.broadcast(d, s).shape, dtype=np.int8)
    if g.kind == "gain":
        shown = ((d - g.margin) / s >= bound) & (d >= g.margin) & (d > 0)
        ruled_out = (d - g.margin) / s <= -np.asarray(fail_bound)
        codes[ruled_out] = 4
        codes[shown] = 3
        return codes
    if g.can_regress:
        codes[d / s <= -np.asarray(fail_bound)] = 2
    codes[(d + g.margin) / s >= bound] = 1
    return codes


def decide(g: Gating, stat: LookStat, bound: float, fail_bound: float) -> Decision | None:
    """The decision of one look (None: undecided, also when the look tests nothing)."""
    if stat.se is None:
        return None
    return DECISIONS[int(decision_codes(g, stat.delta, stat.se, bound, fail_bound))]


def judge_looks(
    g: Gating, stats: Sequence[LookStat], alpha: float, n_failing: int
) -> list[LookDecision]:
    """Decisions of the looks of one comparison, up to (and including) the first decision.
    Boundaries use the fractions of the looks that tested something (a look with too few
    items spends nothing: it is left out of the design)."""
    out: list[LookDecision] = []
    fractions: list[float] = []
    for k, stat in enumerate(stats, start=1):
        if stat.se is None or (fractions and stat.t <= fractions[-1]):
            out.append(LookDecision(k, stat, None, None, None))
            continue
        fractions.append(min(stat.t, 1.0))
        z_bounds = (
            spending_bounds(fractions, alpha / 2)[-1],
            spending_bounds(fractions, alpha / (2 * max(n_failing, 1)))[-1],
        )
        bound, fail_bound = (float(x) for x in t_scaled(z_bounds, stat.dof))
        decision = decide(g, stat, bound, fail_bound)
        out.append(LookDecision(k, stat, bound, fail_bound, decision))
        if decision is not None:
            break
    return out


def final_status(g: Gating, looks: Sequence[LookDecision]) -> str:
    """The comparison's status after its last look: the decision, else ``inconclusive``
    for a task (``no_gain`` for the gain) when it reached all its items, ``undecided``
    when the run stopped before."""
    last = looks[-1] if looks else None
    if last is not None and last.decision is not None:
        return last.decision
    if last is not None and last.stat.n >= last.stat.n_max:
        return "inconclusive" if g.kind == "task" else "no_gain"
    return "undecided"


def fails(g: Gating, status: str) -> bool:
    """Whether a final status fails the gate."""
    if status in FAILING:
        return True
    if g.kind == "gain":
        return status == "no_gain"
    return status == "inconclusive" and g.fails_when_undecided


def n_failing(gatings: Sequence[Gating]) -> int:
    """The size of the failing family G: the comparisons that can fail by a decision."""
    return sum(1 for g in gatings if g.kind == "gain" or g.can_regress)


# ---------------------------------------------------------------- the whole design


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    gating: Gating
    looks: tuple[LookDecision, ...]
    status: str  # a Decision, inconclusive, no_gain or undecided

    @property
    def stop_look(self) -> int:
        return self.looks[-1].look if self.looks else 0

    @property
    def n_evaluated(self) -> int:
        return self.looks[-1].stat.n if self.looks else 0


@dataclass(frozen=True, slots=True)
class DesignResult:
    looks: int
    alpha: float
    stop_look: int  # the look at which the verdict was known
    verdict: str  # pass | fail | undecided
    comparisons: tuple[ComparisonResult, ...]


def verdict_known(gatings: Sequence[Gating], statuses: Sequence[str]) -> str | None:
    """``fail`` once any decision fails, ``pass`` once every comparison is decided without
    failing, else None (the verdict can still change)."""
    if any(fails(g, s) for g, s in zip(gatings, statuses, strict=True)):
        return "fail"
    if all(s != "undecided" for s in statuses):
        return "pass"
    return None


def run_design(
    gatings: Sequence[Gating],
    stats: Sequence[Sequence[LookStat]],
    *,
    alpha: float,
) -> DesignResult:
    """Replay the design: ``stats[i][k]`` is comparison i at look k+1 (a replay gives every
    comparison K looks, the last holding all its items; a stored result may hold fewer).
    A comparison is no longer looked at once decided; the run stops at the first look
    where the verdict can no longer change."""
    n_looks = max((len(s) for s in stats), default=0)
    family = n_failing(gatings)
    judged = [judge_looks(g, s, alpha, family) for g, s in zip(gatings, stats, strict=True)]
    stop = n_looks
    for k in range(1, n_looks + 1):
        statuses = [
            final_status(g, [x for x in j if x.look <= k])
            for g, j in zip(gatings, judged, strict=True)
        ]
        if verdict_known(gatings, statuses) is not None:
            stop = k
            break
    results = []
    for g, j in zip(gatings, judged, strict=True):
        seen = tuple(x for x in j if x.look <= stop)
        results.append(ComparisonResult(g, seen, final_status(g, seen)))
    statuses = [r.status for r in results]
    # "undecided" only when the looks given stop short (a stored result re-judged under
    # another policy): a replay's last look holds every item and always decides.
    verdict = verdict_known(gatings, statuses) or "undecided"
    return DesignResult(n_looks, alpha, stop, verdict, tuple(results))


# ---------------------------------------------------------------- vectorised (simulations)


@dataclass(frozen=True, slots=True)
class SimulatedDesign:
    """``status``: per comparison and replicate, the index into DECISIONS of its decision
    (0: none by its last look); ``stop``: per replicate the look the verdict was known;
    ``passed``: per replicate the verdict; ``decided_at``: per comparison and replicate the
    look of its decision (K + 1 if none)."""

    status: NDArray[np.int8]
    decided_at: NDArray[np.int64]
    stop: NDArray[np.int64]
    passed: NDArray[np.bool_]


def simulate_design(
    gatings: Sequence[Gating],
    delta: ArrayLike,
    se: ArrayLike,
    t: Sequence[float],
    *,
    alpha: float,
    dof: ArrayLike = np.inf,
) -> SimulatedDesign:
    """The design on many replicates at once: ``delta``/``se`` of shape (G, R, K) at the
    information fractions ``t`` (shared, all looks testing), ``dof`` the SE's degrees of
    freedom per comparison and look (G, K), as ``LookStat.dof``. Same rules as
    ``run_design``."""
    d, s = np.asarray(delta, dtype=float), np.asarray(se, dtype=float)
    _, _, k_looks = d.shape
    bound = np.array(spending_bounds(t, alpha / 2))
    fail_bound = np.array(spending_bounds(t, alpha / (2 * max(n_failing(gatings), 1))))
    dofs = np.broadcast_to(np.asarray(dof, dtype=float), (len(gatings), k_looks))
    codes = np.stack(
        [
            decision_codes(g, d[i], s[i], t_scaled(bound, dofs[i]), t_scaled(fail_bound, dofs[i]))
            for i, g in enumerate(gatings)
        ]
    )  # (G, R, K)
    decided = codes > 0
    decided_at = np.where(decided.any(axis=2), decided.argmax(axis=2) + 1, k_looks + 1)
    first = np.take_along_axis(codes, np.minimum(decided_at, k_looks)[..., None] - 1, axis=2)
    status = np.where(decided_at <= k_looks, first[..., 0], 0).astype(np.int8)
    never = k_looks + 1
    fail_at = np.full(decided_at.shape[1], never)
    pass_at = np.zeros(decided_at.shape[1], dtype=np.int64)
    for i, g in enumerate(gatings):
        failing = np.isin(status[i], (2, 4))
        fail_at = np.minimum(fail_at, np.where(failing, decided_at[i], never))
        ends_fail = failing | ((status[i] == 0) & (g.kind == "gain" or g.fails_when_undecided))
        pass_at = np.maximum(pass_at, np.where(ends_fail | (status[i] == 0), never, decided_at[i]))
    early_pass = pass_at <= k_looks  # every comparison decided, none failing
    stop = np.minimum(np.minimum(pass_at, fail_at), k_looks)
    looked = decided_at <= stop  # a comparison is not looked at after the run stopped
    status = np.where(looked, status, 0).astype(np.int8)
    decided_at = np.where(looked, decided_at, never)
    passed = early_pass | ((fail_at > k_looks) & ~_ends_failing(gatings, status))
    return SimulatedDesign(status, decided_at, stop, passed)


def _ends_failing(gatings: Sequence[Gating], status: NDArray[np.int8]) -> NDArray[np.bool_]:
    """Per replicate: some comparison fails the gate at the end of the run."""
    out = np.zeros(status.shape[1], dtype=bool)
    for i, g in enumerate(gatings):
        out |= np.isin(status[i], (2, 4))
        if g.kind == "gain" or g.fails_when_undecided:
            out |= status[i] == 0
    return out

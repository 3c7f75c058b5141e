"""The sequential gate on two paired runs (docs/statistics.md#sequential-gate).

``build_block`` replays the design on stored records: each comparison's items in the
evaluation order fixed by the seed, its statistics at each look, and the look at which
the verdict was known; it returns summary.json's ``sequential`` block
(docs/formats.md#sequential). ``judge_block`` (pure, used by ``verdict.apply_policy``, so
``gate`` re-judges a stored result) recomputes boundaries, decisions and the verdict from
the stored looks under a policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from collapse_eval import sequential as sq
from collapse_eval.columns import RunColumns
from collapse_eval.errors import ConfigError
from collapse_eval.policy import Policy
from collapse_eval.spelling import ci_label, ci_points, margin_points

if TYPE_CHECKING:
    from collapse_eval.compare import _Pair

GAIN = "domain gain (all domain items pooled)"


# ---------------------------------------------------------------- what the policy allows


def check_supported(policy: Policy) -> None:
    """ConfigError (exit 2) for policy rules the sequential design does not decide."""
    where = f"{policy.source}: " if policy.source else ""
    equivalence = policy.general.require == "equivalent" or "equivalent" in (
        policy.general.require_per_task.values()
    )
    if equivalence or policy.domain.require == "equivalent":
        raise ConfigError(
            f"{where}--sequential decides non-inferiority, regression and the domain gain; "
            "an equivalence requirement (require: equivalent) needs the fixed-n comparison: "
            "compare the run directories without --sequential (and without a sequential: "
            "section in the policy)"
        )
    if policy.domain.fail_on or policy.domain.fail_on_format:
        raise ConfigError(
            f"{where}--sequential gates on the general tasks and the pooled domain gain; "
            "domain.fail_on and domain.fail_on_format need the fixed-n comparison: drop them, "
            "or compare the run directories without --sequential"
        )


def gating(entry: Mapping[str, Any], policy: Policy) -> sq.Gating | None:
    """The design's view of a stored comparison under ``policy``; None when nothing it can
    decide changes the verdict (it is then only reported)."""
    if entry["kind"] == "gain":
        if not policy.domain.require_gain:
            return None
        return sq.Gating(GAIN, "gain", max(policy.domain.min_gain, 0.0))
    task = str(entry["task"])
    critical = task in policy.general.critical
    can_regress = critical or "regressed" in policy.general.fail_on
    undecided_fails = critical or "inconclusive" in policy.general.fail_on
    if not (can_regress or undecided_fails):
        return None
    return sq.Gating(
        task,
        "task",
        policy.general_margin_source(task, entry.get("benchmark_margin")).value,
        higher_is_better=bool(entry.get("higher_is_better", True)),
        fails_when_undecided=undecided_fails,
        can_regress=can_regress,
    )


# ---------------------------------------------------------------- replay on stored records


@dataclass(frozen=True, slots=True)
class _Track:
    """One comparison's paired differences in evaluation order, and its look sizes."""

    entry: dict[str, Any]  # kind, suite, task, metric, benchmark_margin, higher_is_better
    d: np.ndarray
    clusters: list[object] | None
    sizes: list[int]  # items at each look
    task_sizes: dict[str, list[int]]  # the same per task (several for the pooled domain)

    def stats(self) -> list[sq.LookStat]:
        """The statistics of the looks whose items were all evaluated: every look of a
        replay; in a live run (the candidate's unevaluated items NaN) the looks so far."""
        n_max = self.d.size
        evaluated = np.isfinite(self.d)
        return [
            sq.look_stat(self.d[:n], n_max, None if self.clusters is None else self.clusters[:n])
            for n in self.sizes
            if evaluated[:n].all()
        ]


def unit_names(task: str, item_ids: Iterable[Any], clusters: Iterable[Any]) -> list[str]:
    """The unit each item is ordered with: its cluster, else the item itself."""
    return [
        f"{task}\x1fc\x1f{c}" if c is not None else f"{task}\x1fi\x1f{i}"
        for c, i in zip(clusters, item_ids, strict=True)
    ]


def strata_names(task_types: Iterable[Any], output_formats: Iterable[Any]) -> list[str]:
    """The domain strata: task type x output format."""
    return [f"{t}\x1f{f}" for t, f in zip(task_types, output_formats, strict=True)]


def task_order(base: RunColumns, pair: _Pair, seed: int, domain: bool) -> tuple[np.ndarray, Any]:
    """(order, unit of each item in that order) of one task's items."""
    ids = base.get((pair.suite, pair.task, pair.metric)).item_ids
    units = unit_names(pair.task, ids, pair.clusters)
    strata = strata_names(pair.task_types, pair.output_formats) if domain else None
    order = sq.evaluation_order(units, strata, seed=seed)
    return order, [units[i] for i in order]


def _track(
    base: RunColumns, pairs: Sequence[_Pair], entry: dict[str, Any], looks: int, seed: int
) -> _Track:
    """The items of ``pairs`` (one task, a group's subtasks, or every domain task) in
    evaluation order, looked at together: look k holds each task's own k-th prefix."""
    domain = entry["kind"] == "gain"
    parts = []
    task_sizes: dict[str, list[int]] = {}
    for pair in pairs:
        order, units = task_order(base, pair, seed, domain)
        task_sizes[pair.task] = sq.look_sizes(units, looks)
        parts.append((pair, order))
    by_look = [[(p, o[: task_sizes[p.task][k]]) for p, o in parts] for k in range(looks)]
    # Concatenate look by look so that every prefix of the concatenation is a look.
    chunks: list[tuple[_Pair, np.ndarray]] = []
    done = {p.task: 0 for p in pairs}
    for look in by_look:
        for p, idx in look:
            chunks.append((p, idx[done[p.task] :]))
            done[p.task] = idx.size
    d = np.concatenate([(p.tuned - p.base)[idx] for p, idx in chunks])
    clusters = np.concatenate([p.clusters[idx] for p, idx in chunks])
    clustered = all(c is not None for c in clusters)
    sizes = [sum(s[k] for s in task_sizes.values()) for k in range(looks)]
    return _Track(entry, d, list(clusters) if clustered else None, sizes, task_sizes)


def _entry(kind: str, suite: str, task: str, first: _Pair | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "suite": suite,
        "task": task,
        "metric": first.metric if first is not None else "score",
        "benchmark_margin": first.benchmark_margin if first is not None else None,
        "higher_is_better": first.higher_is_better if first is not None else True,
    }


def build_block(
    base: RunColumns,
    general_units: Sequence[tuple[str, list[_Pair]]],
    domain: Sequence[_Pair],
    policy: Policy,
    *,
    seed: int,
    looks: int,
) -> dict[str, Any]:
    """summary.json's ``sequential`` block: the looks each comparison got before the verdict
    was known (judged later by ``judge_block`` under the policy)."""
    check_supported(policy)
    tracks = [
        _track(base, unit, _entry("task", "general", name, unit[0]), looks, seed)
        for name, unit in general_units
    ]
    if domain:
        tracks.append(_track(base, domain, _entry("gain", "domain", "*", None), looks, seed))
    all_stats = [t.stats() for t in tracks]
    gatings = [gating(t.entry, policy) for t in tracks]
    live = [i for i, g in enumerate(gatings) if g is not None]
    result = sq.run_design(
        [g for g in gatings if g is not None], [all_stats[i] for i in live], alpha=policy.alpha
    )
    seen = {i: len(c.looks) for i, c in zip(live, result.comparisons, strict=True)}
    comparisons = []
    for i, track in enumerate(tracks):
        kept = seen.get(i, result.stop_look)
        comparisons.append(
            {
                **track.entry,
                "items_available": int(track.d.size),
                "look_sizes": track.sizes,
                "task_look_sizes": track.task_sizes,
                "looks": [_look_json(s) for s in all_stats[i][:kept]],
            }
        )
    design = {
        "method": "group_sequential",
        "spending": sq.SPENDING,
        "looks": looks,
        "alpha": policy.alpha,
        "order_seed": seed,
        "min_look_items": sq.MIN_LOOK_ITEMS,
        "min_look_clusters": sq.MIN_LOOK_CLUSTERS,
    }
    return {"design": design, "comparisons": comparisons}


def _look_json(stat: sq.LookStat) -> dict[str, Any]:
    return {
        "n": stat.n,
        "n_max": stat.n_max,
        "delta": stat.delta,
        "se": stat.se,
        "n_clusters": stat.n_clusters,
    }


# ---------------------------------------------------------------- judging a stored block


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: str  # pass | fail
    reasons: list[str]
    block: dict[str, Any]  # the block with the judged fields filled in


def _stats(entry: Mapping[str, Any]) -> list[sq.LookStat]:
    return [
        sq.LookStat(int(x["n"]), int(x["n_max"]), float(x["delta"]), x["se"], x.get("n_clusters"))
        for x in entry["looks"]
    ]


def judge_block(block: Mapping[str, Any], policy: Policy) -> Judgement:
    """Statuses, items evaluated, the verdict and its reasons from the stored looks."""
    check_supported(policy)
    entries = [dict(e) for e in block["comparisons"]]
    gatings = [gating(e, policy) for e in entries]
    live = [i for i, g in enumerate(gatings) if g is not None]
    result = sq.run_design(
        [g for g in gatings if g is not None],
        [_stats(entries[i]) for i in live],
        alpha=policy.alpha,
    )
    by_index = dict(zip(live, result.comparisons, strict=True))
    for i, entry in enumerate(entries):
        _judge_entry(entry, by_index.get(i), result.stop_look)
    out = {**block, "comparisons": entries, **_totals(entries, result)}
    live_gatings = [g for g in gatings if g is not None]
    out["design"] = {**block["design"], "failing_family": sq.n_failing(live_gatings)}
    judged = [(entries[i], g) for i, g in enumerate(gatings) if g is not None]
    verdict, reasons = _verdict(result, judged, policy.alpha)
    share = out["decided_fraction"]
    if share is not None and result.verdict != "undecided":
        reasons[0] += (
            f" on {share * 100:.0f}% of the candidate's items "
            f"({out['items_evaluated']} of {out['items_available']})"
        )
    # As in the fixed-n verdict: a critical task both runs lack fails the gate.
    compared = {e["task"] for e in entries if e["kind"] == "task"}
    missing = [t for t in policy.general.critical if t not in compared]
    reasons[1:1] = [f"critical task {t} was not compared (not in both runs)" for t in missing]
    return Judgement("fail" if missing else verdict, reasons, out)


def _judge_entry(entry: dict[str, Any], result: sq.ComparisonResult | None, stop: int) -> None:
    """Fill in one stored comparison's judged fields (bounds, RCI, decision, status)."""
    if result is None:
        entry.update(gating=False, status="not_gating", margin=None)
        looks = entry["looks"][:stop] if stop else entry["looks"]
        entry["stop_look"] = len(looks)
        entry["items_evaluated"] = looks[-1]["n"] if looks else 0
        return
    entry.update(gating=True, status=result.status, margin=result.gating.margin)
    entry["stop_look"] = result.stop_look
    entry["items_evaluated"] = result.n_evaluated
    for look, decided in zip(entry["looks"], result.looks, strict=False):
        rci = decided.rci
        look.update(
            look=decided.look,
            bound=decided.bound,
            fail_bound=decided.fail_bound,
            rci_low=rci[0] if rci else None,
            rci_high=rci[1] if rci else None,
            decision=decided.decision,
        )


def _totals(entries: Sequence[dict[str, Any]], result: sq.DesignResult) -> dict[str, Any]:
    """Per task the items evaluated of the items available, and the share decided on."""
    tasks = []
    for e in entries:
        k = e["stop_look"]
        for task, sizes in e["task_look_sizes"].items():
            available = sizes[-1]
            tasks.append(
                {
                    "suite": e["suite"],
                    "task": task,
                    "items_evaluated": sizes[k - 1] if k else 0,
                    "items_available": available,
                    "stop_look": k,
                }
            )
    evaluated = sum(t["items_evaluated"] for t in tasks)
    available = sum(t["items_available"] for t in tasks)
    return {
        "verdict": result.verdict,
        "stop_look": result.stop_look,
        "items_evaluated": evaluated,
        "items_available": available,
        "decided_fraction": evaluated / available if available else None,
        "tasks": tasks,
    }


def _verdict(
    result: sq.DesignResult, judged: Sequence[tuple[Mapping[str, Any], sq.Gating]], alpha: float
) -> tuple[str, list[str]]:
    """(verdict, reasons): a headline, then the failing comparisons, then the others."""
    n_looks = max((len(e["look_sizes"]) for e, _ in judged), default=0)
    if result.verdict == "undecided":
        how = (
            "the stored looks do not decide the verdict under this policy (compare the run "
            "directories again with --sequential)"
        )
    else:
        how = f"decided at look {result.stop_look} of {n_looks}"
    head = f"sequential gate ({n_looks} looks, O'Brien-Fleming alpha spending): {how}"
    fail_lines = [_describe(e, alpha) for e, g in judged if sq.fails(g, e["status"])]
    other = [_describe(e, alpha) for e, g in judged if not sq.fails(g, e["status"])]
    return ("pass" if result.verdict == "pass" else "fail"), [head, *fail_lines, *other]


def _describe(e: Mapping[str, Any], alpha: float) -> str:
    """'arc_easy: non_inferior at look 2 (400 of 1000 items; repeated 95% CI ...)'."""
    name = GAIN if e["kind"] == "gain" else str(e["task"])
    looks = e["looks"]
    last = looks[-1] if looks else None
    where = f" at look {e['stop_look']}" if e["status"] != "undecided" else ""
    what = f"{e['items_evaluated']} of {e['items_available']} items"
    rci = ""
    if last is not None and last.get("rci_low") is not None:
        rci = f"; repeated {ci_label(alpha)} {ci_points(last['rci_low'], last['rci_high'])} points"
    bar = "gain" if e["kind"] == "gain" else "margin"
    status = {"undecided": "undecided when the run stopped"}.get(e["status"], e["status"])
    return f"{name}: {status}{where} ({what}{rci}; {bar} {margin_points(e['margin'])})"

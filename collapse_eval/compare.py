"""Two runs -> summary.json (docs/formats.md#summaryjson): pairing, statistics, verdict.

Pairing is strict: a comparison is only meaningful on the same items under the same task
configuration, so differing item sets, document hashes, task versions, few-shot counts or
task config hashes are refused (PairingError, exit 2) rather than silently intersected.
Tasks present in one run only are listed under ``unpaired`` and in the reasons.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from collapse_eval import __version__
from collapse_eval.columns import ItemColumns, ObjectArray, RunColumns, as_columns
from collapse_eval.errors import PairingError
from collapse_eval.policy import Policy
from collapse_eval.records import Run
from collapse_eval.sequential_compare import build_block
from collapse_eval.stats import (
    DEFAULT_N_BOOT,
    FloatArray,
    PairedComparison,
    PairedSample,
    bh_qvalues,
    compare_many,
    holm_adjust,
    macro_comparison,
    retention_index,
)
from collapse_eval.summary import (
    SUMMARY_SCHEMA_VERSION,
    Comparison,
    DomainOverall,
    Flips,
    MacroComparison,
    Retention,
    Side,
    Summary,
    Unpaired,
)
from collapse_eval.verdict import apply_policy

DOMAIN_METRIC = "score"
ALL_DOMAIN_TASKS = "*"  # the `task` of per-group domain comparisons: all domain tasks pooled
FORMAT_METRIC = "format_ok"  # format-following rows (domain, per output format and pooled)
FAMILIES = (
    "general/task",
    "general/subtask",
    "general/secondary",
    "domain/task",
    "domain/task_type",
    "domain/output_format",
    "domain/format_ok",
    "domain/format_ok_pooled",
)
POOLED_FAMILY = "domain/pooled"  # all domain items pooled: domain_overall, not a comparison
_SHOW_IDS = 5


@dataclass(frozen=True, slots=True)
class _Pair:
    """Aligned columns of one task: the same item ids in the base run's order."""

    suite: str
    task: str
    metric: str
    base: FloatArray  # scores
    tuned: FloatArray
    clusters: ObjectArray  # of the base records (str or None)
    task_types: ObjectArray
    output_formats: ObjectArray
    base_format: NDArray[np.int8]  # format_ok per item: 1, 0 or -1 (null)
    tuned_format: NDArray[np.int8]
    benchmark_margin: float | None
    higher_is_better: bool
    group: str | None = None  # the lm-eval group (benchmarks.yaml entry) this subtask is in


def _record_group(cols: ItemColumns) -> str | None:
    """The group named in every record's metadata (lm-eval group tasks), else None."""
    if len(cols.groups) != 1:
        return None
    (name,) = cols.groups
    return str(name) if name else None


def _sample(pairs: Sequence[_Pair]) -> PairedSample:
    """The pooled paired sample of ``pairs`` (clustered when every item has a cluster)."""
    if len(pairs) == 1:
        base, tuned, clusters = pairs[0].base, pairs[0].tuned, pairs[0].clusters
    else:
        base = np.concatenate([p.base for p in pairs])
        tuned = np.concatenate([p.tuned for p in pairs])
        clusters = np.concatenate([p.clusters for p in pairs])
    return _sample_of(base, tuned, clusters)


def _sample_of(base: FloatArray, tuned: FloatArray, clusters: ObjectArray) -> PairedSample:
    clustered = all(c is not None for c in clusters)
    return PairedSample.of(base, tuned, list(clusters) if clustered else None)


def _ids(ids: Iterable[str]) -> str:
    ordered = sorted(ids)
    shown = ", ".join(ordered[:_SHOW_IDS])
    more = len(ordered) - _SHOW_IDS
    return shown + (f" (+{more} more)" if more > 0 else "")


def _task_order(run: RunColumns) -> list[tuple[str, str]]:
    return list(run.order)


def _metric(run: RunColumns, suite: str, task: str, which: str) -> str:
    if suite == "domain" and (suite, task, DOMAIN_METRIC) in run.items:
        return DOMAIN_METRIC
    metric = run.primary_metric(task)
    if metric is None:
        raise PairingError(
            f"{run.path}: task '{task}' in the {which} run has several metrics and its "
            "manifest names no primary_metric; add tasks.{task}.primary_metric to manifest.json"
        )
    return metric


def _check_task_info(base: RunColumns, tuned: RunColumns, task: str) -> None:
    b, t = base.manifest.tasks.get(task), tuned.manifest.tasks.get(task)
    if b is None or t is None:
        return
    for name in ("version", "num_fewshot", "config_hash"):
        bv, tv = getattr(b, name), getattr(t, name)
        if bv is not None and tv is not None and bv != tv:
            raise PairingError(
                f"cannot pair task '{task}': {name} differs between the runs "
                f"(base {bv!r} in {base.path}, tuned {tv!r} in {tuned.path}); both models "
                "must be evaluated with the same task configuration"
            )


def _align(b: ItemColumns, t: ItemColumns, suite: str, task: str, metric: str) -> NDArray[Any]:
    """For each base item, its position in the tuned columns; PairingError if the sets differ."""
    pos = pd.Index(t.item_ids).get_indexer(b.item_ids) if len(t) else np.full(len(b), -1)
    if len(b) == len(t) and bool((pos >= 0).all()):
        return np.asarray(pos)
    only_b = set(b.item_ids[pos < 0])
    back = pd.Index(b.item_ids).get_indexer(t.item_ids) if len(b) else np.full(len(t), -1)
    only_t = set(t.item_ids[back < 0])
    parts = []
    if only_b:
        parts.append(f"{len(only_b)} only in base ({_ids(only_b)})")
    if only_t:
        parts.append(f"{len(only_t)} only in tuned ({_ids(only_t)})")
    raise PairingError(
        f"cannot pair task '{task}' ({suite}, metric {metric}): item ids differ: "
        f"{'; '.join(parts)}. Evaluate both models on the same items (same data, "
        "same --limit)"
    )


def _pair_task(base: RunColumns, tuned: RunColumns, suite: str, task: str) -> _Pair:
    _check_task_info(base, tuned, task)
    metric = _metric(base, suite, task, "base")
    tuned_metric = _metric(tuned, suite, task, "tuned")
    if metric != tuned_metric:
        raise PairingError(
            f"cannot pair task '{task}': primary metric is '{metric}' in the base run and "
            f"'{tuned_metric}' in the tuned run"
        )
    b, t = base.get((suite, task, metric)), tuned.get((suite, task, metric))
    pos = _align(b, t, suite, task, metric)
    both = b.doc_hash_set & t.doc_hash_set[pos]
    mismatched = b.item_ids[both & (b.doc_hashes != t.doc_hashes[pos])]
    if mismatched.size:
        raise PairingError(
            f"cannot pair task '{task}': {mismatched.size} item(s) have different document "
            f"hashes in the two runs ({_ids(mismatched)}); the runs used different data"
        )
    info = base.manifest.tasks.get(task) or tuned.manifest.tasks.get(task)
    group = _record_group(b) if suite == "general" else None
    return _Pair(
        suite=suite,
        task=task,
        metric=metric,
        base=b.scores,
        tuned=t.scores[pos],
        clusters=b.clusters,
        task_types=b.task_types,
        output_formats=b.output_formats,
        base_format=b.format_ok,
        tuned_format=t.format_ok[pos],
        benchmark_margin=info.margin if info is not None else None,
        higher_is_better=info.higher_is_better if info is not None else True,
        group=group if group != task else None,
    )


def _general_units(general: Sequence[_Pair]) -> list[tuple[str, list[_Pair]]]:
    """Task-level units of the general suite: plain tasks, and groups (mmlu) as one unit.

    lm-eval aggregates a group as the size-weighted mean of its subtasks, which is the mean
    over all the group's items; items stay paired within their subtask, so pooling the
    subtasks' pairs compares the group exactly as lm-eval scores it.
    """
    units: dict[str, list[_Pair]] = {}
    for pair in general:
        units.setdefault(pair.group or pair.task, []).append(pair)
    for name, unit in units.items():
        metrics = {m.metric for m in unit}
        if len(metrics) > 1:
            raise PairingError(
                f"group '{name}': its subtasks have different primary metrics "
                f"({', '.join(sorted(metrics))}); name one with `metric:` in benchmarks.yaml"
            )
    return list(units.items())


def _num(x: float | None) -> float | None:
    """Plain JSON float: NaN and infinities become null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class _RowSpec:
    """One comparison row before its statistics: what it compares, and the paired sample."""

    family: str  # one of FAMILIES: the multiple-testing family it is adjusted in
    suite: str
    task: str
    metric: str
    sample: PairedSample
    group_by: str | None = None
    group: str | None = None
    benchmark_margin: float | None = None
    higher_is_better: bool = True


def _row(spec: _RowSpec, result: PairedComparison) -> Comparison:
    """The summary.json comparison row of ``spec``; status and adjusted p come later."""
    return Comparison(
        suite=spec.suite,
        task=spec.task,
        group_by=spec.group_by,
        group=spec.group,
        metric=spec.metric,
        n=result.n,
        base_mean=_num(result.base_mean),
        tuned_mean=_num(result.tuned_mean),
        delta=float(result.delta),  # finite: n >= 1 paired finite scores
        ci_low=_num(result.ci_low),
        ci_high=_num(result.ci_high),
        test=result.test,
        p_value=_num(result.p_value),
        # Extensions (README): see summary.schema.json for each field's meaning.
        family=spec.family,
        benchmark_margin=_num(spec.benchmark_margin),
        mde=_num(result.mde),
        se=_num(result.se),
        se_clustered=_num(result.se_clustered),
        n_clusters=result.n_clusters,
        ci_method=result.ci_method,
        higher_is_better=spec.higher_is_better,
        tuned_only=result.tuned_only,
        base_only=result.base_only,
        note=result.note,
        equivalence_ci_low=_num(result.eq_ci_low),
        equivalence_ci_high=_num(result.eq_ci_high),
        flips=_flips(result, spec.higher_is_better),
        delta_quantiles=result.delta_quantiles,
    )


def _flips(result: PairedComparison, higher_is_better: bool) -> Flips | None:
    """lost/gained/same in the metric's direction (a rise of a lower-is-better metric is lost)."""
    flips = result.flips
    if flips is None:
        return None
    if not higher_is_better:
        flips = flips.mirrored()
    return Flips(lost=flips.lost, gained=flips.gained, same=flips.same)


def _secondary_metrics(
    base: RunColumns, tuned: RunColumns, unit: Sequence[_Pair]
) -> list[tuple[str, bool, PairedSample]]:
    """(metric, higher_is_better, sample) of each non-primary metric of a general unit.

    E.g. gsm8k's ``exact_match:flexible-extract`` next to its primary
    ``exact_match:strict-match``: a drop in the strict metric only means the format was
    forgotten, not the answer. Only metrics that every subtask of the unit has, on the same
    items in both runs, are compared; the others are left out (they never gate).
    """
    primary = unit[0].metric
    names = set.intersection(*(set(base.metrics.get(p.task, ())) for p in unit))
    out = []
    for metric in sorted(names - {primary}):
        bases, tuneds, clusters = [], [], []
        for p in unit:
            b, t = base.get(("general", p.task, metric)), tuned.get(("general", p.task, metric))
            pos = pd.Index(t.item_ids).get_indexer(b.item_ids) if len(t) else None
            if pos is None or len(b) != len(t) or not bool((pos >= 0).all()):
                break
            bases.append(b.scores)
            tuneds.append(t.scores[pos])
            clusters.append(b.clusters)
        else:
            same_kind = metric.split(":")[0] == primary.split(":")[0]
            higher = unit[0].higher_is_better if same_kind else True
            sample = _sample_of(
                np.concatenate(bases), np.concatenate(tuneds), np.concatenate(clusters)
            )
            out.append((metric, higher, sample))
    return out


def _format_samples(domain: Sequence[_Pair]) -> list[tuple[str | None, PairedSample]]:
    """format_ok (0/1) of the domain items whose record has it in both runs: pooled over the
    domain (key None) first, then one sample per output format, in sorted order."""
    if not domain:
        return []
    base = np.concatenate([p.base_format for p in domain])
    tuned = np.concatenate([p.tuned_format for p in domain])
    known = np.flatnonzero((base >= 0) & (tuned >= 0))
    if known.size == 0:
        return []
    base_f, tuned_f = base[known].astype(float), tuned[known].astype(float)
    clusters = np.concatenate([p.clusters for p in domain])[known]
    formats = np.concatenate([p.output_formats for p in domain])[known]
    out: list[tuple[str | None, PairedSample]] = [(None, _sample_of(base_f, tuned_f, clusters))]
    labels = np.array([None if v is None else str(v) for v in formats], dtype=object)
    codes, uniques = pd.factorize(labels)  # None -> -1: items without a format are pooled only
    for code, value in sorted(enumerate(uniques), key=lambda cv: cv[1]):
        rows = np.flatnonzero(codes == code)
        out.append((str(value), _sample_of(base_f[rows], tuned_f[rows], clusters[rows])))
    return out


def _group_samples(pairs: Sequence[_Pair], field: str) -> list[tuple[str, PairedSample]]:
    """One pooled sample per distinct value of ``field`` (items without one are left out)."""
    if not pairs:
        return []
    values = np.concatenate([getattr(p, f"{field}s") for p in pairs])
    labels = np.array([None if v is None else str(v) for v in values], dtype=object)
    codes, uniques = pd.factorize(labels)  # None -> -1
    base = np.concatenate([p.base for p in pairs])
    tuned = np.concatenate([p.tuned for p in pairs])
    clusters = np.concatenate([p.clusters for p in pairs])
    out = []
    for code, value in sorted(enumerate(uniques), key=lambda cv: cv[1]):
        rows = np.flatnonzero(codes == code)
        out.append((str(value), _sample_of(base[rows], tuned[rows], clusters[rows])))
    return out


@dataclass(frozen=True, slots=True)
class _PairedRuns:
    """The tasks of two runs, paired: general first, then domain, each in run order."""

    general: list[_Pair]
    domain: list[_Pair]
    unpaired: list[Unpaired]


def compare_runs(
    base: Run | RunColumns,
    tuned: Run | RunColumns,
    policy: Policy,
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
    sequential_block: dict[str, Any] | None = None,
) -> Summary:
    """Compare two runs item by item and judge them under ``policy``: the summary.json.

    With ``policy.sequential`` (``--sequential``, or ``sequential:`` in policy.yaml) the
    group-sequential design is replayed on the records too, and its verdict is the gate's
    (sequential_compare.py). ``sequential_block``: the design's looks as a live sequential
    run took them (sequential_live.py; the runs then hold only the items evaluated), used
    instead of a replay.

    Run directories are best passed as ``load_run_columns(path)`` (no per-item text in
    memory); a loaded ``Run`` is converted. Steps: pair the tasks, list the comparison
    rows (``_RowSpec``), compute all of them in one batch, adjust p-values per family,
    add the pooled domain comparison and the retention index, then apply the policy.
    """
    base, tuned = as_columns(base), as_columns(tuned)
    paired = _pair_runs(base, tuned)
    general_units = _general_units(paired.general)
    # A typo in the policy's task names is a usage error, found before any statistics.
    policy.check_task_names(
        {name for name, _ in general_units}
        | {u.task for u in paired.unpaired if u.suite == "general"},
        {p.task: p.group for p in paired.general if p.group is not None},
    )
    type_groups = _group_samples(paired.domain, "task_type")
    specs = _general_specs(base, tuned, general_units) + _domain_specs(paired.domain, type_groups)
    if paired.domain:  # all domain items pooled: a row of its own family, never judged
        specs.append(
            _RowSpec(
                POOLED_FAMILY, "domain", ALL_DOMAIN_TASKS, DOMAIN_METRIC, _sample(paired.domain)
            )
        )
    # Every sample goes through one batched compare_many (in this order: it draws the
    # bootstrap resamples of all of them from one seeded stream).
    results = compare_many(
        [spec.sample for spec in specs], alpha=policy.alpha, n_boot=n_boot, seed=seed
    )
    rows = [_row(spec, r) for spec, r in zip(specs, results, strict=True)]
    comparisons = [row for row in rows if row.family != POOLED_FAMILY]
    _adjust_per_family(comparisons)
    pooled = next((row for row in rows if row.family == POOLED_FAMILY), None)

    summary = Summary(
        schema_version=SUMMARY_SCHEMA_VERSION,
        verdict=None,
        reasons=[],
        base=_side(base),
        tuned=_side(tuned),
        policy=policy.to_json(),
        comparisons=comparisons,
        alpha=policy.alpha,
        retention=_retention(specs, policy.alpha),
        domain_overall=_domain_overall(pooled, type_groups, policy.alpha),
        unpaired=paired.unpaired,
        seed=seed,
        n_boot=n_boot,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        collapse_eval_version=__version__,
        references=reference_counts(base, paired.domain),
    )
    if sequential_block is not None:
        summary.sequential = sequential_block
    elif policy.sequential is not None:
        summary.sequential = build_block(
            base, general_units, paired.domain, policy, seed=seed, looks=policy.sequential.looks
        )
    return apply_policy(summary, policy)


def design_pairs(base: RunColumns) -> tuple[list[tuple[str, list[_Pair]]], list[_Pair]]:
    """The general units and domain tasks of ``base`` as the sequential design orders and
    groups them (paired with itself: the candidate's scores are filled in later)."""
    paired = _pair_runs(base, base)
    return _general_units(paired.general), paired.domain


def reference_counts(base: RunColumns, domain: Sequence[_Pair]) -> dict[str, int] | None:
    """The gating domain items by ``metadata.reference_source``: ``silver`` (the answer of
    the labeler model `data build` used), ``gold`` (corrected by a person) and ``unknown``
    (not said); None when no item says (a test set written by hand)."""
    counts = {"silver": 0, "gold": 0}
    total = 0
    for pair in domain:
        total += pair.base.size
        for source, k in base.get((pair.suite, pair.task, pair.metric)).references.items():
            if source in counts:
                counts[source] += k
    if not any(counts.values()):
        return None
    return {**counts, "unknown": max(total - counts["silver"] - counts["gold"], 0)}


def _pair_runs(base: RunColumns, tuned: RunColumns) -> _PairedRuns:
    """Pair the tasks both runs have; the others are listed as unpaired."""
    base_tasks, tuned_tasks = _task_order(base), _task_order(tuned)
    tuned_set, base_set = set(tuned_tasks), set(base_tasks)
    paired_keys = [k for k in base_tasks if k in tuned_set]
    unpaired = [Unpaired(s, t, "base") for s, t in base_tasks if (s, t) not in tuned_set]
    unpaired += [Unpaired(s, t, "tuned") for s, t in tuned_tasks if (s, t) not in base_set]
    # General first, then domain, each in run order.
    paired_keys.sort(key=lambda k: k[0] != "general")
    pairs = [_pair_task(base, tuned, s, t) for s, t in paired_keys]
    return _PairedRuns(
        general=[p for p in pairs if p.suite == "general"],
        domain=[p for p in pairs if p.suite == "domain"],
        unpaired=unpaired,
    )


def _general_specs(
    base: RunColumns, tuned: RunColumns, units: Sequence[tuple[str, list[_Pair]]]
) -> list[_RowSpec]:
    """Per general unit: the task row, its secondary-metric rows, then (for a group) one
    row per subtask, which is reported but judged via the group."""
    specs = []
    for name, unit in units:
        first = unit[0]
        specs.append(
            _RowSpec(
                "general/task",
                "general",
                name,
                first.metric,
                _sample(unit),
                benchmark_margin=first.benchmark_margin,
                higher_is_better=first.higher_is_better,
            )
        )
        for metric, higher, secondary in _secondary_metrics(base, tuned, unit):
            specs.append(
                _RowSpec(
                    "general/secondary",
                    "general",
                    name,
                    metric,
                    secondary,
                    group_by="metric",
                    group=metric,
                    benchmark_margin=first.benchmark_margin,
                    higher_is_better=higher,
                )
            )
        if first.group is not None:
            specs += [
                _RowSpec(
                    "general/subtask",
                    "general",
                    name,
                    p.metric,
                    _sample([p]),
                    group_by="subtask",
                    group=p.task,
                    benchmark_margin=p.benchmark_margin,
                    higher_is_better=p.higher_is_better,
                )
                for p in unit
            ]
    return specs


def _domain_specs(
    domain: Sequence[_Pair], type_groups: Sequence[tuple[str, PairedSample]]
) -> list[_RowSpec]:
    """Per domain task, per task type, per output format, then the format_ok rows (pooled
    over the domain first, then per output format)."""
    specs = [
        _RowSpec(
            "domain/task",
            p.suite,
            p.task,
            p.metric,
            _sample([p]),
            benchmark_margin=p.benchmark_margin,
            higher_is_better=p.higher_is_better,
        )
        for p in domain
    ]
    for field, groups in (
        ("task_type", type_groups),
        ("output_format", _group_samples(domain, "output_format")),
    ):
        specs += [
            _RowSpec(
                f"domain/{field}",
                "domain",
                ALL_DOMAIN_TASKS,
                DOMAIN_METRIC,
                sample,
                group_by=field,
                group=value,
            )
            for value, sample in groups
        ]
    specs += [
        _RowSpec(
            "domain/format_ok" if fmt is not None else "domain/format_ok_pooled",
            "domain",
            ALL_DOMAIN_TASKS,
            FORMAT_METRIC,
            sample,
            group_by=None if fmt is None else "output_format",
            group=fmt,
        )
        for fmt, sample in _format_samples(domain)
    ]
    return specs


def _adjust_per_family(rows: list[Comparison]) -> None:
    """Holm-adjusted p and BH q-value of each row, within its family."""
    for family in FAMILIES:
        members = [row for row in rows if row.family == family]
        p_values = [row.p_value if row.p_value is not None else 1.0 for row in members]
        for row, adj, q in zip(members, holm_adjust(p_values), bh_qvalues(p_values), strict=True):
            # A row without a p-value (too few clusters) counts as p = 1 in its family.
            if row.p_value is not None:
                row.p_adjusted, row.q_value = _num(adj), _num(q)


def _domain_overall(
    pooled: Comparison | None,
    type_groups: Sequence[tuple[str, PairedSample]],
    alpha: float,
) -> DomainOverall | None:
    """The pooled domain row (written without the fields of a judged row, POOLED_LACKS)
    and the macro average over task types; None without domain items."""
    if pooled is None:
        return None
    macro: MacroComparison | None = None
    if type_groups:
        m = macro_comparison([s for _, s in type_groups], alpha=alpha)
        macro = MacroComparison(
            n_groups=m.n_groups,
            base_mean=_num(m.base_mean),
            tuned_mean=_num(m.tuned_mean),
            delta=_num(m.delta),
            ci_low=_num(m.ci_low),
            ci_high=_num(m.ci_high),
            p_value=_num(m.p_value),
            se=_num(m.se),
            test="stratified_z",
        )
    return DomainOverall(pooled=pooled, macro_by_task_type=macro)


def _retention(specs: Sequence[_RowSpec], alpha: float) -> Retention:
    """The retention index over the general task rows whose metric is higher-is-better."""
    samples = [s.sample for s in specs if s.family == "general/task" and s.higher_is_better]
    ret = retention_index(samples, alpha=alpha)
    return Retention(
        index=_num(ret.index),
        ci_low=_num(ret.ci_low),
        ci_high=_num(ret.ci_high),
        base_macro=_num(ret.base_macro),
        tuned_macro=_num(ret.tuned_macro),
        n_tasks=ret.n_tasks,
        ci_method="delta_method_log_ratio",
    )


def _side(run: RunColumns) -> Side:
    return Side(
        model=run.manifest.model,
        # Absolute, so that readers of summary.json (report, correlate) find the run from
        # any working directory; they also look relative to summary.json if it was moved.
        run=str(run.path.resolve()),
        model_fingerprint=run.manifest.model_fingerprint,
    )


@dataclass(frozen=True, slots=True)
class DomainItems:
    """Every paired domain item of two runs, as parallel columns (run order, task by task)."""

    tasks: ObjectArray
    item_ids: ObjectArray
    task_types: ObjectArray
    output_formats: ObjectArray
    base: FloatArray
    tuned: FloatArray
    clusters: ObjectArray

    def sample(self, rows: NDArray[np.intp]) -> PairedSample:
        """The paired sample of ``rows`` (clustered when every item has a cluster)."""
        return _sample_of(self.base[rows], self.tuned[rows], self.clusters[rows])


def paired_domain_items(base: RunColumns, tuned: RunColumns) -> DomainItems:
    """The domain tasks both runs have, paired item by item as ``compare_runs`` pairs them
    (PairingError on the same mismatches); the general suite is not touched."""
    tuned_keys = set(_task_order(tuned))
    keys = [k for k in _task_order(base) if k[0] == "domain" and k in tuned_keys]
    pairs = [_pair_task(base, tuned, suite, task) for suite, task in keys]
    if not pairs:
        empty = np.array([], dtype=object)
        return DomainItems(empty, empty, empty, empty, np.array([]), np.array([]), empty)
    ids = [base.get((p.suite, p.task, p.metric)).item_ids for p in pairs]
    tasks = [np.full(len(i), p.task, dtype=object) for p, i in zip(pairs, ids, strict=True)]
    return DomainItems(
        tasks=np.concatenate(tasks),
        item_ids=np.concatenate(ids).astype(object),
        task_types=np.concatenate([p.task_types for p in pairs]),
        output_formats=np.concatenate([p.output_formats for p in pairs]),
        base=np.concatenate([p.base for p in pairs]),
        tuned=np.concatenate([p.tuned for p in pairs]),
        clusters=np.concatenate([p.clusters for p in pairs]),
    )

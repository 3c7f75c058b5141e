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

from collapse_eval import __version__
from collapse_eval.errors import PairingError
from collapse_eval.policy import Policy
from collapse_eval.records import ItemRecord, Run
from collapse_eval.stats import (
    DEFAULT_N_BOOT,
    PairedComparison,
    PairedSample,
    bh_qvalues,
    compare_many,
    holm_adjust,
    macro_comparison,
    retention_index,
)
from collapse_eval.verdict import apply_policy

SUMMARY_SCHEMA_VERSION = 1
DOMAIN_METRIC = "score"
ALL_DOMAIN_TASKS = "*"  # the `task` of per-group domain comparisons: all domain tasks pooled
FAMILIES = (
    "general/task",
    "general/subtask",
    "domain/task",
    "domain/task_type",
    "domain/output_format",
)
_SHOW_IDS = 5


@dataclass(frozen=True, slots=True)
class _Pair:
    """Aligned records of one task: the same item ids in the same order."""

    suite: str
    task: str
    metric: str
    base: tuple[ItemRecord, ...]
    tuned: tuple[ItemRecord, ...]
    benchmark_margin: float | None
    higher_is_better: bool
    group: str | None = None  # the lm-eval group (benchmarks.yaml entry) this subtask is in


def _record_group(records: Sequence[ItemRecord]) -> str | None:
    """The group named in every record's metadata (lm-eval group tasks), else None."""
    names = {(r.metadata or {}).get("group") for r in records}
    if len(names) != 1:
        return None
    name = names.pop()
    return str(name) if name else None


def _cluster_of(rec: ItemRecord) -> str | None:
    if rec.cluster is not None:
        return rec.cluster
    meta = rec.metadata or {}
    value = meta.get("cluster") if hasattr(meta, "get") else None
    return None if value is None else str(value)


def _sample(base: Sequence[ItemRecord], tuned: Sequence[ItemRecord]) -> PairedSample:
    clusters = [_cluster_of(r) for r in base]
    return PairedSample.of(
        [r.score for r in base],
        [r.score for r in tuned],
        clusters if all(c is not None for c in clusters) else None,
    )


def _ids(ids: Iterable[str]) -> str:
    ordered = sorted(ids)
    shown = ", ".join(ordered[:_SHOW_IDS])
    more = len(ordered) - _SHOW_IDS
    return shown + (f" (+{more} more)" if more > 0 else "")


def _task_order(run: Run) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for rec in run.records:
        seen.setdefault((rec.suite, rec.task), None)
    return list(seen)


def _metric(run: Run, suite: str, task: str, which: str) -> str:
    if suite == "domain" and any(
        r.metric == DOMAIN_METRIC for r in run.records if r.task == task and r.suite == suite
    ):
        return DOMAIN_METRIC
    metric = run.primary_metric(task)
    if metric is None:
        raise PairingError(
            f"{run.path}: task '{task}' in the {which} run has several metrics and its "
            "manifest names no primary_metric; add tasks.{task}.primary_metric to manifest.json"
        )
    return metric


def _check_task_info(base: Run, tuned: Run, task: str) -> None:
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


def _pair_task(base: Run, tuned: Run, suite: str, task: str) -> _Pair:
    _check_task_info(base, tuned, task)
    metric = _metric(base, suite, task, "base")
    tuned_metric = _metric(tuned, suite, task, "tuned")
    if metric != tuned_metric:
        raise PairingError(
            f"cannot pair task '{task}': primary metric is '{metric}' in the base run and "
            f"'{tuned_metric}' in the tuned run"
        )

    def select(run: Run) -> dict[str, ItemRecord]:
        return {
            r.item_id: r
            for r in run.records
            if r.suite == suite and r.task == task and r.metric == metric
        }

    b, t = select(base), select(tuned)
    if b.keys() != t.keys():
        only_b, only_t = b.keys() - t.keys(), t.keys() - b.keys()
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
    order = list(b)
    mismatched = [
        i
        for i in order
        if b[i].doc_hash is not None
        and t[i].doc_hash is not None
        and b[i].doc_hash != t[i].doc_hash
    ]
    if mismatched:
        raise PairingError(
            f"cannot pair task '{task}': {len(mismatched)} item(s) have different document "
            f"hashes in the two runs ({_ids(mismatched)}); the runs used different data"
        )
    info = base.manifest.tasks.get(task) or tuned.manifest.tasks.get(task)
    base_records = tuple(b[i] for i in order)
    group = _record_group(base_records) if suite == "general" else None
    return _Pair(
        suite=suite,
        task=task,
        metric=metric,
        base=base_records,
        tuned=tuple(t[i] for i in order),
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


def _row(
    *,
    suite: str,
    task: str,
    group_by: str | None,
    group: str | None,
    metric: str,
    result: PairedComparison,
    family: str,
    benchmark_margin: float | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "suite": suite,
        "task": task,
        "group_by": group_by,
        "group": group,
        "metric": metric,
        "n": result.n,
        "base_mean": _num(result.base_mean),
        "tuned_mean": _num(result.tuned_mean),
        "delta": _num(result.delta),
        "ci_low": _num(result.ci_low),
        "ci_high": _num(result.ci_high),
        "test": result.test,
        "p_value": _num(result.p_value),
        "p_adjusted": None,
        "status": None,
        # Extensions (README): see summary.schema.json for each field's meaning.
        "family": family,
        "q_value": None,
        "margin": None,
        "benchmark_margin": _num(benchmark_margin),
        "mde": _num(result.mde),
        "se": _num(result.se),
        "se_clustered": _num(result.se_clustered),
        "n_clusters": result.n_clusters,
        "ci_method": result.ci_method,
        "higher_is_better": higher_is_better,
        "tuned_only": result.tuned_only,
        "base_only": result.base_only,
    }
    return row


def _group_samples(pairs: Sequence[_Pair], field: str) -> list[tuple[str, PairedSample]]:
    grouped: dict[str, tuple[list[ItemRecord], list[ItemRecord]]] = {}
    for pair in pairs:
        for b, t in zip(pair.base, pair.tuned, strict=True):
            value = getattr(b, field)
            if value is None:
                continue
            bucket = grouped.setdefault(str(value), ([], []))
            bucket[0].append(b)
            bucket[1].append(t)
    return [(value, _sample(*grouped[value])) for value in sorted(grouped)]


def compare_runs(
    base: Run, tuned: Run, policy: Policy, *, seed: int = 0, n_boot: int = DEFAULT_N_BOOT
) -> dict[str, Any]:
    """Compare two runs item by item and judge them under ``policy``: the summary.json dict."""
    base_tasks, tuned_tasks = _task_order(base), _task_order(tuned)
    tuned_set, base_set = set(tuned_tasks), set(base_tasks)
    paired_keys = [k for k in base_tasks if k in tuned_set]
    unpaired = [
        {"suite": s, "task": t, "only_in": "base"} for s, t in base_tasks if (s, t) not in tuned_set
    ]
    unpaired += [
        {"suite": s, "task": t, "only_in": "tuned"}
        for s, t in tuned_tasks
        if (s, t) not in base_set
    ]
    # General first, then domain, each in run order.
    paired_keys.sort(key=lambda k: k[0] != "general")
    pairs = [_pair_task(base, tuned, s, t) for s, t in paired_keys]
    general = [p for p in pairs if p.suite == "general"]
    domain = [p for p in pairs if p.suite == "domain"]

    # (family, row metadata, sample); every sample goes through one batched compare_many.
    jobs: list[tuple[str, dict[str, Any], PairedSample]] = []
    general_units = _general_units(general)
    general_samples = []
    for name, unit in general_units:
        first = unit[0]
        sample = _sample([r for p in unit for r in p.base], [r for p in unit for r in p.tuned])
        if first.higher_is_better:
            general_samples.append(sample)
        jobs.append(
            (
                "general/task",
                {
                    "suite": "general",
                    "task": name,
                    "group_by": None,
                    "group": None,
                    "metric": first.metric,
                    "benchmark_margin": first.benchmark_margin,
                    "higher_is_better": first.higher_is_better,
                },
                sample,
            )
        )
        if first.group is not None:  # subtasks of a group: reported, judged via the group
            for p in unit:
                jobs.append(
                    (
                        "general/subtask",
                        {
                            "suite": "general",
                            "task": name,
                            "group_by": "subtask",
                            "group": p.task,
                            "metric": p.metric,
                            "benchmark_margin": p.benchmark_margin,
                            "higher_is_better": p.higher_is_better,
                        },
                        _sample(p.base, p.tuned),
                    )
                )
    for p in domain:
        jobs.append(
            (
                "domain/task",
                {
                    "suite": p.suite,
                    "task": p.task,
                    "group_by": None,
                    "group": None,
                    "metric": p.metric,
                    "benchmark_margin": p.benchmark_margin,
                    "higher_is_better": p.higher_is_better,
                },
                _sample(p.base, p.tuned),
            )
        )
    type_groups = _group_samples(domain, "task_type")
    for field, groups in (
        ("task_type", type_groups),
        ("output_format", _group_samples(domain, "output_format")),
    ):
        for value, sample in groups:
            jobs.append(
                (
                    f"domain/{field}",
                    {
                        "suite": "domain",
                        "task": ALL_DOMAIN_TASKS,
                        "group_by": field,
                        "group": value,
                        "metric": DOMAIN_METRIC,
                    },
                    sample,
                )
            )
    pooled_sample = None
    if domain:
        pooled_sample = _sample(
            [r for p in domain for r in p.base], [r for p in domain for r in p.tuned]
        )
    samples = [s for _, _, s in jobs] + ([pooled_sample] if pooled_sample is not None else [])
    results = compare_many(samples, alpha=policy.alpha, n_boot=n_boot, seed=seed)

    rows = [
        _row(result=r, family=fam, **meta) for (fam, meta, _), r in zip(jobs, results, strict=False)
    ]
    for family in FAMILIES:
        members = [row for row in rows if row["family"] == family]
        p_values = [row["p_value"] if row["p_value"] is not None else 1.0 for row in members]
        for row, adj, q in zip(members, holm_adjust(p_values), bh_qvalues(p_values), strict=True):
            row["p_adjusted"], row["q_value"] = _num(adj), _num(q)

    domain_overall: dict[str, Any] | None = None
    if pooled_sample is not None:
        pooled = _row(
            suite="domain",
            task=ALL_DOMAIN_TASKS,
            group_by=None,
            group=None,
            metric=DOMAIN_METRIC,
            result=results[-1],
            family="domain/pooled",
        )
        for key in (
            "group_by",
            "group",
            "p_adjusted",
            "status",
            "q_value",
            "margin",
            "benchmark_margin",
        ):
            pooled.pop(key)
        macro: dict[str, Any] | None = None
        if type_groups:
            m = macro_comparison([s for _, s in type_groups], alpha=policy.alpha)
            macro = {
                "n_groups": m.n_groups,
                "base_mean": _num(m.base_mean),
                "tuned_mean": _num(m.tuned_mean),
                "delta": _num(m.delta),
                "ci_low": _num(m.ci_low),
                "ci_high": _num(m.ci_high),
                "p_value": _num(m.p_value),
                "se": _num(m.se),
                "test": "stratified_z",
            }
        domain_overall = {"pooled": pooled, "macro_by_task_type": macro}

    ret = retention_index(general_samples, alpha=policy.alpha)
    retention = {
        "index": _num(ret.index),
        "ci_low": _num(ret.ci_low),
        "ci_high": _num(ret.ci_high),
        "base_macro": _num(ret.base_macro),
        "tuned_macro": _num(ret.tuned_macro),
        "n_tasks": ret.n_tasks,
        "ci_method": "delta_method_log_ratio",
    }

    summary: dict[str, Any] = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "verdict": None,
        "reasons": [],
        "base": _side(base),
        "tuned": _side(tuned),
        "policy": policy.to_json(),
        "comparisons": rows,
        "alpha": policy.alpha,
        "retention": retention,
        "domain_overall": domain_overall,
        "unpaired": unpaired,
        "seed": seed,
        "n_boot": n_boot,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "collapse_eval_version": __version__,
    }
    return apply_policy(summary, policy)


def _side(run: Run) -> dict[str, Any]:
    return {
        "model": run.manifest.model,
        "run": str(run.path),
        "model_fingerprint": run.manifest.model_fingerprint,
    }

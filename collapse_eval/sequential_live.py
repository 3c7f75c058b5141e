"""``compare BASE TUNED --sequential`` on a checkpoint: the candidate evaluated in rounds
(docs/statistics.md#live-rounds, docs/formats.md#sequential-run).

The base run is complete (run in full first, or a run directory). Its records fix what a
replay of the design (sequential_compare.py) would look at: per task the evaluation order
(seeded, whole clusters, stratified in the domain set) and the items of each look. Round
k evaluates, for every comparison still undecided (and those only reported), the items of
look k that the candidate's run directory does not hold yet: the domain items of each file
in full batches, the documents of each lm-eval entry by index in one ``simple_evaluate``.
Then the looks so far are judged by the replay's own code (``build_block`` on the base
with the candidate's unevaluated items NaN, then ``judge_block``), so the live decision is
the replay's on the same records; the run stops at the first look where the verdict is
known. Records are written as they come (domain per batch, general per task and round),
so Ctrl-C keeps them and the same command resumes; the request cache answers items
already generated. Whole-task results are never taken from or stored in the task cache:
a sequential run's tasks are partial.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from collapse_eval.columns import RunColumns, load_run_columns
from collapse_eval.compare import design_pairs
from collapse_eval.policy import Policy
from collapse_eval.records import (
    MANIFEST_FILE,
    RECORDS_FILE,
    ItemRecord,
    RecordWriter,
    RunManifest,
    TaskInfo,
    manifest_from_json,
    read_json,
    read_records,
    write_manifest,
)
from collapse_eval.sequential_compare import Judgement, build_block, judge_block, task_order

if TYPE_CHECKING:
    from collapse_eval.compare import _Pair
    from collapse_eval.progress import Progress
    from collapse_eval.runner import EngineFactory, RunInputs, RunSpec, _EngineSession

TaskKey = tuple[str, str]  # (suite, task)
UNDECIDED = ("undecided", "not_gating")  # statuses still evaluated in the next round


@dataclass(frozen=True, slots=True)
class Round:
    """One round of this invocation: the look, the items evaluated and the seconds the
    evaluation and the statistics took (wall)."""

    look: int
    items: int
    eval_s: float
    stats_s: float


@dataclass(frozen=True, slots=True)
class LiveResult:
    run: RunColumns  # the candidate's run: the items evaluated
    block: dict[str, Any]  # summary.json's sequential block (judged by apply_policy)
    rounds: tuple[Round, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the base fixes: the design's units and each task's items in evaluation order."""

    base: RunColumns
    units: list[tuple[str, list[_Pair]]]
    domain: list[_Pair]
    order: dict[TaskKey, list[str]]
    ids: dict[TaskKey, list[str]]  # the base's item ids in its own order (pairs' order)
    metric: dict[TaskKey, str]


def _plan(base: RunColumns, seed: int) -> _Plan:
    units, domain = design_pairs(base)
    order, ids, metric = {}, {}, {}
    for pair in [p for _, unit in units for p in unit] + domain:
        key = (pair.suite, pair.task)
        own = [str(i) for i in base.get((pair.suite, pair.task, pair.metric)).item_ids]
        positions, _ = task_order(base, pair, seed, pair.suite == "domain")
        order[key], ids[key], metric[key] = [own[i] for i in positions], own, pair.metric
    return _Plan(base, units, domain, order, ids, metric)


def judge(
    plan: _Plan, scores: Mapping[TaskKey, Mapping[str, float]], policy: Policy, seed: int
) -> tuple[dict[str, Any], Judgement]:
    """The sequential block of the looks whose items the candidate holds, and its
    judgement under ``policy`` (exactly what ``gate`` and a replay compute from it)."""
    assert policy.sequential is not None

    def filled(pair: _Pair) -> _Pair:
        have = scores.get((pair.suite, pair.task), {})
        tuned = [have.get(i, np.nan) for i in plan.ids[(pair.suite, pair.task)]]
        return dataclasses.replace(pair, tuned=np.asarray(tuned, dtype=float))

    units = [(name, [filled(p) for p in unit]) for name, unit in plan.units]
    domain = [filled(p) for p in plan.domain]
    block = build_block(plan.base, units, domain, policy, seed=seed, looks=policy.sequential.looks)
    return block, judge_block(block, policy)


def wanted(plan: _Plan, judged: Mapping[str, Any], look: int) -> dict[TaskKey, list[str]]:
    """Per task the items of ``look`` (a prefix of its order) of the comparisons that are
    still evaluated."""
    out: dict[TaskKey, list[str]] = {}
    for entry in judged["comparisons"]:
        if entry["status"] not in UNDECIDED:
            continue
        for task, sizes in entry["task_look_sizes"].items():
            key = (str(entry["suite"]), task)
            out[key] = plan.order[key][: sizes[look - 1]]
    return out


def run_live(
    base: RunColumns,
    spec: RunSpec,
    run_dir: Path,
    policy: Policy,
    *,
    progress: Progress,
    engine_factory: EngineFactory,
) -> LiveResult:
    """Evaluate ``spec.model`` in rounds into ``run_dir`` until the verdict against
    ``base`` (a complete run) is known; resumes from the records already there."""
    from collapse_eval.runner import (
        _EngineSession,
        default_engine_factory,
        directory_lock,
        read_inputs,
    )

    inputs = read_inputs(spec, progress, resolve_engine=engine_factory is default_engine_factory)
    session = _EngineSession(inputs.spec, engine_factory, progress, label=run_dir.name)
    try:
        inputs.validate_suite(session)
        with directory_lock(run_dir, progress):
            return _Live(base, inputs, run_dir, policy, session).run()
    finally:
        session.close()


class _Live:
    """One live sequential run of a candidate: the plan, its scores so far, the writer."""

    writer: RecordWriter  # set by run() for the rounds
    manifest: RunManifest

    def __init__(
        self,
        base: RunColumns,
        inputs: RunInputs,
        run_dir: Path,
        policy: Policy,
        session: _EngineSession,
    ) -> None:
        self.inputs, self.run_dir, self.policy, self.session = inputs, run_dir, policy, session
        self.seed = inputs.spec.seed
        self.plan = _plan(base, self.seed)
        self.scores: dict[TaskKey, dict[str, float]] = {}
        self.tasks: dict[str, TaskInfo] = {}
        self._check_inputs()

    def _check_inputs(self) -> None:
        """Every task of the base is one this invocation can evaluate (same options)."""
        from collapse_eval.errors import UsageError

        suite = self.inputs.suite
        entries = {e.task for e in suite.entries} if suite is not None else set()
        for pair in [p for _, unit in self.plan.units for p in unit] + self.plan.domain:
            known = (
                pair.task in self.inputs.domain_sets
                if pair.suite == "domain"
                else (pair.group or pair.task) in entries
            )
            if not known:
                raise UsageError(
                    f"--sequential: the base run has {pair.suite} task {pair.task}, which "
                    "this command does not evaluate; give the candidate the options the "
                    "base was run with (--domain, --suite/--tasks, --benchmarks)"
                )

    def run(self) -> LiveResult:
        manifest = self._start()
        looks = self.policy.sequential.looks if self.policy.sequential else 1
        block, judged = judge(self.plan, self.scores, self.policy, self.seed)
        rounds: list[Round] = []
        with RecordWriter(self.run_dir / RECORDS_FILE) as writer:
            self.writer, self.manifest = writer, manifest
            for look in range(1, looks + 1):
                if judged.block["verdict"] != "undecided":
                    break
                todo = self._missing(wanted(self.plan, judged.block, look))
                started = time.perf_counter()
                self._evaluate(todo, look)
                evaluated = time.perf_counter()
                block, judged = judge(self.plan, self.scores, self.policy, self.seed)
                items = sum(map(len, todo.values()))
                stats_s = time.perf_counter() - evaluated
                rounds.append(Round(look, items, evaluated - started, stats_s))
                self._log(rounds[-1], judged, looks)
        manifest = dataclasses.replace(
            manifest, tasks=self.tasks, complete=True, sequential=self._mark(judged, looks)
        )
        write_manifest(self.run_dir, manifest)
        return LiveResult(load_run_columns(self.run_dir), block, tuple(rounds))

    def _start(self) -> RunManifest:
        """The manifest to continue from (resumed as a full run resumes) and the scores of
        the records kept; the domain tasks are marked at once (their records are appended
        batch by batch, as in a full run)."""
        from collapse_eval.runner import _check_resumable, _stale_tasks, started_manifest

        path = self.run_dir / MANIFEST_FILE
        existing = manifest_from_json(read_json(path), path=path) if path.exists() else None
        previous: list[ItemRecord] = []
        stale: set[str] = set()
        if existing is not None:
            _check_resumable(self.run_dir, existing, self.session.fingerprint)
            if (self.run_dir / RECORDS_FILE).exists():
                previous = read_records(self.run_dir / RECORDS_FILE)
            stale = _stale_tasks(
                self.run_dir, existing, previous, self.inputs.request, self.session.progress
            )
        manifest, kept = started_manifest(
            self.inputs.spec,
            self.run_dir,
            self.session,
            existing,
            (previous, stale),
            self.inputs.suite,
            self.inputs.request,
        )
        self._note(kept)
        self.tasks = dict(manifest.tasks)
        return manifest

    def _note(self, records: Sequence[ItemRecord]) -> None:
        for r in records:
            key = (r.suite, r.task)
            if r.metric == self.plan.metric.get(key):
                self.scores.setdefault(key, {})[r.item_id] = r.score

    def _missing(self, want: Mapping[TaskKey, list[str]]) -> dict[TaskKey, list[str]]:
        have = self.scores
        out = {k: [i for i in ids if i not in have.get(k, {})] for k, ids in want.items()}
        return {k: ids for k, ids in out.items() if ids}

    def _evaluate(self, todo: Mapping[TaskKey, list[str]], look: int) -> None:
        if not todo:
            return
        from collapse_eval.runner import domain_task_info, run_domain_task

        engine = self.session.engine()
        request, progress = self.inputs.request, self.session.progress
        for (suite, task), ids in todo.items():
            if suite != "domain":
                continue
            items = self.inputs.domain_sets[task]
            self.tasks[task] = domain_task_info(items, request.domain[task])
            write_manifest(self.run_dir, dataclasses.replace(self.manifest, tasks=self.tasks))
            done = {item.id for item in items} - set(ids)
            run_domain_task(engine, task, items, done, self._batch, progress)
        general = {task: ids for (suite, task), ids in todo.items() if suite == "general"}
        if general:
            self._evaluate_general(general, look)

    def _batch(self, records: list[ItemRecord]) -> None:
        self.writer.write_batch(records)
        self._note(records)

    def _evaluate_general(self, todo: Mapping[str, list[str]], look: int) -> None:
        from collapse_eval.general import run_general_documents
        from collapse_eval.runner import _TaskFinisher

        inputs = self.inputs
        assert inputs.suite is not None  # _check_inputs: the base's general tasks are in it
        units = {p.task: p.group or p.task for _, unit in self.plan.units for p in unit}
        wanted_units = {units[task] for task in todo}
        entries = tuple(e for e in inputs.suite.entries if e.task in wanted_units)
        finisher = _TaskFinisher(
            self.run_dir,
            self.manifest,
            self.tasks,
            self.writer,
            self.session.progress,
            inputs.request,
        )

        def finished(task: str, records: list[ItemRecord], info: TaskInfo) -> None:
            self._note(records)
            available = len(self.plan.ids[("general", task)])
            evaluated = len({r.item_id for r in records})
            how = f" available, {evaluated} evaluated in round {look}"
            finisher(task, records, dataclasses.replace(info, n=available), how)

        run_general_documents(
            self.session.engine(),
            dataclasses.replace(inputs.suite, entries=entries),
            {task: [int(i) for i in ids] for task, ids in todo.items()},
            limit=inputs.spec.limit,
            seed=self.seed,
            include_paths=inputs.include_paths,
            on_task=finished,
            progress=self.session.progress,
        )

    def _log(self, done: Round, judged: Judgement, looks: int) -> None:
        block = judged.block
        state = "verdict not known yet" if block["verdict"] == "undecided" else block["verdict"]
        self.session.progress.log(
            f"sequential look {done.look} of {looks}: {done.items} items evaluated in "
            f"{done.eval_s:.1f} s, statistics {done.stats_s * 1000:.0f} ms; "
            f"{block['items_evaluated']} of {block['items_available']} items so far: {state}"
        )

    def _mark(self, judged: Judgement, looks: int) -> dict[str, Any]:
        """The manifest's ``sequential`` block: per task the items the run directory holds
        of the items available, and the look the task stopped at."""
        block = judged.block
        tasks = {
            t["task"]: {
                "suite": t["suite"],
                "items_evaluated": len(self.scores.get((t["suite"], t["task"]), {})),
                "items_available": t["items_available"],
                "stop_look": t["stop_look"],
            }
            for t in block["tasks"]
        }
        return {
            "looks": looks,
            "stop_look": block["stop_look"],
            "verdict": block["verdict"],
            "order_seed": self.seed,
            "tasks": tasks,
        }

"""`--executor ray`: evaluate checkpoints on a Ray cluster, then finish locally.

The driver (this process) checks every input, connects to the cluster, checks each node's
versions and that some node has the resources a unit asks for, starts as many workers
(Ray actors, each holding what one unit asks for) as the nodes hold side by side, and
deals them the units (one checkpoint x one shard, ``collapse_eval/shards.py``) of every
checkpoint, so candidates run side by side as far as the cluster allows. Workers need no
shared filesystem for data: domain files travel inside the unit, records come back
through Ray's object store. Checkpoints must be at the same path on every node.

Every engine request a worker makes goes to the driver's request cache, through a small
actor on the driver's node (``_CacheServer``): it is answered from there when known, and
each new answer is stored there as soon as it is computed. A worker killed mid-shard is
retried by Ray, and the retry answers the batches already computed from that cache; a
killed driver, run again, resubmits its units, which find their answers there.

The driver stores each finished task whole in its cache (the task cache of
``runner._EngineSession``); the ordinary local run or compare that follows then writes
the run directories, summaries and reports exactly as a local run, without an engine.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapse_eval.errors import (
    ClusterResourcesMissing,
    ClusterUnreachable,
    CollapseEvalError,
    UsageError,
    VersionMismatch,
)
from collapse_eval.progress import Progress
from collapse_eval.records import ItemRecord, is_run_dir
from collapse_eval.runner import (
    CachedTask,
    RunInputs,
    RunSpec,
    _EngineSession,
    default_engine_factory,
    domain_task_info,
    read_inputs,
)
from collapse_eval.shards import DomainPart, Unit, UnitResult, library_versions, plan_shards

# How long the driver waits for every node to say which versions it runs (a node that
# does not answer is named, never waited on forever).
PROBE_TIMEOUT_S = 120.0
RETRIES = 2  # Ray's retries of a unit whose worker process or node died


@dataclass(frozen=True, slots=True)
class Need:
    """What one unit asks of the cluster, and why (for the message when nothing has it)."""

    cpus: float
    gpus: int
    spans_nodes: bool  # vLLM with distributed_executor_backend=ray places its own workers
    why: str


def unit_need(kind: str, engine_args: Mapping[str, str]) -> Need:
    """GPUs = tensor x pipeline parallel size for vLLM; one CPU (or one GPU with a cuda
    --device) for hf; one CPU for a served model."""
    from collapse_eval.engines.registry import typed_engine_args

    args = typed_engine_args(engine_args)
    if kind == "vllm":
        tp = int(args.get("tensor_parallel_size", 1))
        pp = int(args.get("pipeline_parallel_size", 1))
        spans = args.get("distributed_executor_backend") == "ray"
        why = f"vllm tensor_parallel_size={tp} x pipeline_parallel_size={pp}"
        return Need(1, tp * pp, spans, f"{tp * pp} GPU(s) ({why})")
    if kind == "hf" and str(args.get("device", "cpu")).startswith("cuda"):
        return Need(1, 1, False, f"1 GPU (hf --device {args['device']})")
    return Need(1, 0, False, f"1 CPU ({kind})")


def evaluate_on_cluster(
    models: Sequence[str],
    spec: RunSpec,
    *,
    address: str | None,
    shards: int,
    progress: Progress,
) -> None:
    """Evaluate every checkpoint of ``models`` (run directories are skipped) on the Ray
    cluster into the driver's cache; the local run or compare that follows reads it."""
    from collapse_eval.extras import require_extra
    from collapse_eval.runner import check_models_first

    require_extra("ray", "--executor ray")
    check_address(address)
    if not spec.use_cache:
        raise UsageError(
            "--executor ray brings the workers' answers back through the request cache: "
            "drop --no-cache (use --cache-dir DIR for a cache of this run's own)"
        )
    checkpoints = [m for m in dict.fromkeys(models) if not is_run_dir(m)]
    if not checkpoints:
        return
    inputs = read_inputs(spec, progress, resolve_engine=True)
    check_models_first(checkpoints, inputs.spec)
    with _sessions(checkpoints, inputs, progress) as sessions:
        inputs.validate_suite(sessions[0])
        need = unit_need(str(inputs.spec.engine), inputs.spec.engine_args)
        sweep = _Sweep(inputs, sessions, shards)
        if not sweep.units:
            progress.log("ray: every task is in the cache already, nothing to send")
            return
        with _connected(address) as ray:
            nodes = _alive_nodes(ray)
            _check_versions(ray, nodes)
            _check_resources(nodes, need, sweep.units[0].name, address)
            slots = worker_slots(nodes, need)
            _run_units(ray, sweep, need, sessions[0].cache.path.parent, slots, progress)


@contextmanager
def _sessions(
    checkpoints: Sequence[str], inputs: RunInputs, progress: Progress
) -> Iterator[list[_EngineSession]]:
    from collapse_eval.runner import candidate_names

    names = candidate_names(checkpoints)
    # A checkpoint called `base` keeps its name here (the log's): only a candidate's folder
    # may not be called so, and the base of a compare is written to runs/base.
    stems = [Path(m.rstrip("/\\")).name for m in checkpoints]
    if "base" in stems:
        names[stems.index("base")] = "base"
    sessions = [
        _EngineSession(
            dataclasses.replace(inputs.spec, model=m), default_engine_factory, progress, label=n
        )
        for m, n in zip(checkpoints, names, strict=True)
    ]
    try:
        yield sessions
    finally:
        for session in sessions:
            session.cache.close()


@dataclass
class _Checkpoint:
    """One checkpoint's units in flight and the domain records back so far."""

    session: _EngineSession
    pending: set[str]
    domain: dict[str, list[ItemRecord]] = field(default_factory=dict)


class _Sweep:
    """The units of every checkpoint, and what the driver does with each result."""

    def __init__(self, inputs: RunInputs, sessions: Sequence[_EngineSession], shards: int):
        self.inputs = inputs
        self.units: list[Unit] = []
        self.owner: dict[str, _Checkpoint] = {}
        for session in sessions:
            units = self._plan(session, shards)
            state = _Checkpoint(session, {u.name for u in units})
            self.owner.update((u.name, state) for u in units)
            self.units += units

    def _plan(self, session: _EngineSession, shards: int) -> list[Unit]:
        """Units for the tasks the cache does not hold whole (all when the engine's
        resolved arguments are not remembered yet)."""
        inputs, spec = self.inputs, session.spec
        known = session.known_run_spec() is not None

        def todo(suite: str, task_spec: Mapping[str, Any]) -> bool:
            return not known or session.cached(suite, task_spec) is None

        domain = [
            (task, [item.id for item in items])
            for task, items in inputs.domain_sets.items()
            if todo("domain", inputs.request.domain[task])
        ]
        entries = [
            e
            for e in (inputs.suite.entries if inputs.suite else ())
            if todo("general", inputs.request.general[e.task])
        ]
        files = {_task_name(p): p for p in spec.domain_files}
        local = _is_local(spec.model)
        units = []
        for name, ids, mine in plan_shards(session.label, domain, entries, shards):
            parts = tuple(
                DomainPart(task, files[task].name, files[task].read_bytes(), item_ids)
                for task, item_ids in ids.items()
            )
            units.append(
                Unit(
                    name=name,
                    model=spec.model,
                    engine=str(spec.engine),
                    engine_args=dict(spec.engine_args),
                    fingerprint=session.fingerprint,
                    local_checkpoint=local,
                    versions=library_versions(),
                    seed=spec.seed,
                    limit=spec.limit,
                    domain_limit=spec.domain_limit,
                    domain=parts,
                    suite_name=inputs.suite.name if inputs.suite else "",
                    entries=mine,
                    include_paths=tuple(str(p) for p in inputs.include_paths),
                )
            )
        return units

    def done(self, result: UnitResult) -> bool:
        """Store a unit's results; True when that was its checkpoint's last unit."""
        state = self.owner[result.name]
        session, request = state.session, self.inputs.request
        session.resolved(result.engine, result.engine_args)
        by_entry: dict[str, list[CachedTask]] = {}
        for task, info, records in result.general:
            full = request.general_info(task, records, info)
            by_entry.setdefault(str((full.spec or {})["task"]), []).append((task, full, records))
        for entry, leaves in by_entry.items():
            session.store("general", request.general[entry], leaves)
        for task, records in result.domain.items():
            state.domain.setdefault(task, []).extend(records)
        state.pending.discard(result.name)
        if state.pending:
            return False
        for task, records in state.domain.items():
            items = self.inputs.domain_sets[task]
            order = {item.id: i for i, item in enumerate(items)}
            ordered = sorted(records, key=lambda r: order[r.item_id])
            info = domain_task_info(items, request.domain[task])
            session.store("domain", request.domain[task], [(task, info, ordered)])
        return True


def _task_name(path: Any) -> str:
    from collapse_eval.domain.dataset import domain_task_name

    return str(domain_task_name(path))


def _is_local(model: str) -> bool:
    from collapse_eval.engines.base import checkpoint_signature

    return checkpoint_signature(model) is not None


# ---------------------------------------------------------------- the cluster


@contextmanager
def _connected(address: str | None) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address`` (default: RAY_ADDRESS, else the
    cluster `ray start` left on this machine); ClusterUnreachable when none answers."""
    import os

    import ray

    where = address or os.environ.get("RAY_ADDRESS") or "auto"
    _reachable(where)
    try:
        ray.init(address=where, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _unreachable(where, why) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_address(address: str | None) -> None:
    """UsageError (exit 2), before anything is read or started, for an address that is
    not HOST:PORT, ``auto`` or a ``ray://`` client address: a typo, not a cluster down."""
    import os

    given = address or os.environ.get("RAY_ADDRESS")
    if not given or given == "auto" or given.startswith("ray://"):
        return
    host, _, port = given.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return
    said = f"--ray-address {given}" if address else f"RAY_ADDRESS={given}"
    raise UsageError(
        f"{said} is not a Ray cluster's address: give HOST:PORT (the head's, e.g. "
        "10.0.0.5:6379, as `ray start --head` printed it), `auto`, or ray://HOST:10001"
    )


def _reachable(address: str) -> None:
    """A HOST:PORT that refuses connections fails in seconds, not after Ray's retries."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise _unreachable(address, getattr(exc, "strerror", None) or str(exc)) from None


def _unreachable(address: str, why: str) -> ClusterUnreachable:
    return ClusterUnreachable(
        f"no Ray cluster answers at {address} ({why}); nothing was evaluated. Start one "
        "(`ray start --head --port 6379`, then `ray start --address HEAD:6379` on each "
        "worker; docs/distributed.md) or pass its address with --ray-address HOST:PORT."
    )


def _alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _node_name(node: Mapping[str, Any]) -> str:
    return f"{node.get('NodeManagerAddress', '?')} (node {str(node.get('NodeID', '?'))[:8]})"


def _check_versions(ray: Any, nodes: Sequence[Mapping[str, Any]]) -> None:
    """Ask every node which versions it runs, before any unit starts."""
    from ray.exceptions import GetTimeoutError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(library_versions)
    refs = {
        _node_name(n): probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    }
    driver = library_versions()
    for node, ref in refs.items():
        try:
            theirs = ray.get(ref, timeout=PROBE_TIMEOUT_S)
        except GetTimeoutError:
            raise ClusterUnreachable(
                f"node {node} did not answer within {PROBE_TIMEOUT_S:g} s (before any "
                "unit started); check it with `ray status`, or stop it and run again"
            ) from None
        except Exception as exc:  # an import failure there: another install
            raise VersionMismatch(
                f"node {node} cannot run collapse-eval ({_cause(exc)}) (before any unit "
                "started). Install the same collapse-eval on every node, then run again."
            ) from None
        _raise_mismatch(driver, theirs, node, "before any unit started")


def _raise_mismatch(
    driver: Mapping[str, str | None], theirs: Mapping[str, str | None], node: str, unit: str
) -> None:
    from collapse_eval.shards import version_mismatch

    error = version_mismatch(driver, theirs, node, unit)
    if error is not None:
        raise error


def _check_resources(
    nodes: Sequence[Mapping[str, Any]], need: Need, unit: str, address: str | None
) -> None:
    """ClusterResourcesMissing, before anything starts, when no node (or, for a vLLM
    engine spread over nodes, not the whole cluster) has what a unit asks for."""

    def has(node: Mapping[str, Any], key: str) -> float:
        return float(node.get("Resources", {}).get(key, 0))

    if need.spans_nodes:
        enough = sum(has(n, "GPU") for n in nodes) >= need.gpus
    else:
        enough = any(has(n, "GPU") >= need.gpus and has(n, "CPU") >= need.cpus for n in nodes)
    if enough:
        return
    seen = ", ".join(
        f"{_node_name(n)}: {has(n, 'GPU'):g} GPU(s), {has(n, 'CPU'):g} CPU(s)" for n in nodes
    )
    scope = "the cluster has" if need.spans_nodes else "no node has"
    raise ClusterResourcesMissing(
        f"{unit} needs {need.why}, and {scope} that at {address or 'the default address'} "
        f"({seen}); nothing was started. Add nodes with GPUs, or lower "
        "tensor_parallel_size / pipeline_parallel_size (--engine-arg)."
    )


class _CacheServer:
    """The driver's request cache, served to the workers (a Ray actor on the driver's
    node, so the sqlite file stays where the driver keeps it)."""

    def __init__(self, cache_dir: str) -> None:
        from collapse_eval.cache import RequestCache

        self.cache = RequestCache(cache_dir)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return self.cache.get_many(keys)

    def put_many(self, kind: str, items: dict[str, Any]) -> None:
        self.cache.put_many(kind, items)


class _RemoteCache:
    """A worker's view of ``_CacheServer``: each batch looks up its keys there, and
    stores its answers there before the batch's records are written."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def get_many(self, keys: Any) -> dict[str, Any]:
        import ray

        found: dict[str, Any] = ray.get(self.server.get_many.remote(list(keys)))
        return found

    def put_many(self, kind: str, items: Mapping[str, Any]) -> None:
        import ray

        ray.get(self.server.put_many.remote(kind, dict(items)))


class CollapseEvalWorker:
    """One worker process holding one unit's CPUs/GPUs (a Ray actor; its class name is
    the process title) that evaluates units one after another.

    Not one Ray task per unit: a task that blocks in ``ray.get`` (every cache lookup)
    hands its CPU back to Ray, which then starts another worker process on it, so units
    ran two or three to a core, each in a fresh process importing torch and transformers
    again. A worker imports them once and keeps its engine for the next shard of the same
    checkpoint. Killed, it is restarted and its unit run again (``RETRIES``)."""

    def __init__(self) -> None:
        import ray

        from collapse_eval.shards import EngineKeeper

        self.keeper = EngineKeeper()
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def evaluate(self, unit: Unit, server: Any) -> UnitResult:
        # The cache server comes with each unit, not to the constructor: Ray keeps a
        # restartable actor's constructor arguments and prints an error line on the
        # user's terminal when they hold a handle.
        import ray

        from collapse_eval.shards import evaluate_unit

        node_id = ray.get_runtime_context().get_node_id()
        node = f"{ray.util.get_node_ip_address()} (node {node_id[:8]})"  # type: ignore[no-untyped-call]
        result = evaluate_unit(unit, node, _RemoteCache(server), self.keeper)
        restarted, self.restarted = self.restarted, False  # said with its first unit only
        return dataclasses.replace(result, worker_restarted=restarted)


def worker_slots(nodes: Sequence[Mapping[str, Any]], need: Need) -> int:
    """How many workers the nodes hold side by side (at least one: ``_check_resources``
    said before that some node holds one)."""

    def fits(node: Mapping[str, Any]) -> int:
        have = node.get("Resources", {})
        counts = [int(float(have.get("CPU", 0)) // need.cpus)] if need.cpus else []
        if need.gpus and not need.spans_nodes:
            counts.append(int(float(have.get("GPU", 0)) // need.gpus))
        return min(counts, default=1)

    return max(1, sum(fits(n) for n in nodes))


def next_unit(pending: list[Unit], last_model: str | None, busy: Sequence[str]) -> Unit:
    """The unit a free worker takes: the next shard of the checkpoint it has loaded, else
    one of a checkpoint no other worker is on (so each loads its own), else the first."""
    for wanted in (
        lambda u: u.model == last_model,
        lambda u: u.model not in busy,
        lambda u: True,
    ):
        for unit in pending:
            if wanted(unit):
                pending.remove(unit)
                return unit
    raise ValueError("no unit pending")


def _run_units(
    ray: Any, sweep: _Sweep, need: Need, cache_dir: Any, slots: int, progress: Progress
) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    server = (
        ray.remote(num_cpus=0)(_CacheServer)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
        .remote(str(cache_dir))
    )
    worker = ray.remote(CollapseEvalWorker).options(
        num_cpus=need.cpus,
        num_gpus=0 if need.spans_nodes else need.gpus,
        max_restarts=RETRIES,
        max_task_retries=RETRIES,
    )
    workers = [worker.remote() for _ in range(min(slots, len(sweep.units)))]
    pending = list(sweep.units)
    running: dict[Any, tuple[Unit, Any]] = {}  # a unit's result ref -> (unit, its worker)

    def send(to: Any, last_model: str | None) -> None:
        if pending:
            busy = [unit.model for unit, _ in running.values()]
            unit = next_unit(pending, last_model, busy)
            running[to.evaluate.remote(unit, server)] = (unit, to)

    progress.log(
        f"ray: {len(pending)} unit(s) of {len({id(s) for s in sweep.owner.values()})} "
        f"checkpoint(s) on {len(_alive_nodes(ray))} node(s), {len(workers)} worker(s)"
    )
    try:
        for to in workers:
            send(to, None)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            unit, to = running.pop(done[0])
            try:
                result: UnitResult = ray.get(done[0])
            except Exception as exc:
                raise _unit_failed(unit, exc) from None
            _log_unit(result, progress)
            if sweep.done(result):
                progress.log(f"ray: {sweep.owner[result.name].session.label} complete")
            send(to, unit.model)
    finally:
        for actor in (*workers, server):
            ray.kill(actor)


def _log_unit(result: UnitResult, progress: Progress) -> None:
    how = "its worker's engine kept" if result.engine_kept else "engine loaded"
    if result.worker_restarted:
        how = "engine loaded by a restarted worker: a worker process died and its unit ran again"
    progress.log(
        f"ray: {result.name} done on {result.node} in {result.seconds:.1f} s "
        f"({result.cpu_seconds:.1f} CPU s, pid {result.pid}, {how}; answers: "
        f"{result.answers_cached:,} from the cache, {result.answers_computed:,} computed)"
    )


def _cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside Ray's wrapper."""
    return getattr(exc, "cause", None) or exc


def _unit_failed(unit: Unit, exc: BaseException) -> CollapseEvalError:
    cause = _cause(exc)
    if isinstance(cause, CollapseEvalError):
        return cause
    from collapse_eval.errors import EngineError

    first = str(cause).strip().splitlines()
    return EngineError(
        f"{unit.name}: failed on the cluster "
        f"({type(cause).__name__}: {first[-1] if first else ''}). What finished is in the "
        "request cache: run the same command again to go on."
    )

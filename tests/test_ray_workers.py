"""How the Ray executor's workers share out units, without a cluster: how many workers
the nodes hold, which unit a free worker takes, and a worker's engine kept for the next
shard of the checkpoint it has loaded (tests/test_ray_executor.py runs them for real)."""

from __future__ import annotations

from pathlib import Path

from collapse_eval.cache import RequestCache
from collapse_eval.distributed import Need, next_unit, worker_slots
from collapse_eval.engines.base import checkpoint_fingerprint
from collapse_eval.shards import DomainPart, EngineKeeper, Unit, evaluate_unit, library_versions
from tests.testdata import rent_domain_file


def _unit(name: str, model: str, part: DomainPart | None = None) -> Unit:
    return Unit(
        name=name,
        model=model,
        engine="fake",
        engine_args={"default_answer": "rent"},
        fingerprint=checkpoint_fingerprint(model),
        local_checkpoint=False,
        versions=library_versions(),
        domain=(part,) if part else (),
    )


def test_a_free_worker_takes_its_checkpoints_next_shard_else_one_nobody_is_on() -> None:
    units = [_unit(f"{m} shard {k}/2", m) for m in ("a", "b", "c") for k in (1, 2)]
    pending = list(units)
    assert next_unit(pending, "b", ["a"]).name == "b shard 1/2"  # its engine is loaded
    assert next_unit(pending, None, ["a", "b"]).name == "c shard 1/2"  # nobody is on c
    assert next_unit(pending, "c", []).name == "c shard 2/2"
    assert next_unit(pending, None, ["a", "b"]).name == "a shard 1/2"  # all busy: the first
    assert [u.name for u in pending] == ["a shard 2/2", "b shard 2/2"]


def test_workers_are_as_many_as_the_nodes_hold_side_by_side() -> None:
    nodes = [{"Resources": {"CPU": 2.0}}, {"Resources": {"CPU": 1.0}}, {"Resources": {}}]
    assert worker_slots(nodes, Need(1, 0, False, "")) == 3
    gpus = [{"Resources": {"CPU": 16.0, "GPU": 8.0}}, {"Resources": {"CPU": 16.0, "GPU": 3.0}}]
    assert worker_slots(gpus, Need(1, 4, False, "")) == 2  # 8 // 4 + 3 // 4
    # vLLM over nodes reserves its GPUs itself: its units count CPUs only.
    assert worker_slots(gpus, Need(1, 16, True, "")) == 32
    assert worker_slots(gpus[1:], Need(1, 4, False, "")) == 1  # never none


def test_a_worker_keeps_its_engine_for_the_next_shard_of_its_checkpoint(tmp_path: Path) -> None:
    domain = rent_domain_file(tmp_path / "rent.jsonl", 4, "r")
    part = DomainPart("rent", "rent.jsonl", domain.read_bytes(), ("r0", "r1"))
    second = DomainPart("rent", "rent.jsonl", domain.read_bytes(), ("r2", "r3"))
    cache, keeper = RequestCache(tmp_path / "cache"), EngineKeeper()
    first = evaluate_unit(_unit("a shard 1/2", "fake-a", part), "here", cache, keeper)
    loaded, _ = keeper.engine(_unit("a", "fake-a"))
    then = evaluate_unit(_unit("a shard 2/2", "fake-a", second), "here", cache, keeper)
    assert (first.engine_kept, then.engine_kept) == (False, True)
    assert [r.item_id for r in then.domain["rent"]] == ["r2", "r3"]
    assert then.answers_computed == 2 and then.answers_cached == 0
    other = evaluate_unit(_unit("b shard 1/1", "fake-b", part), "here", cache, keeper)
    assert not other.engine_kept and getattr(loaded, "closed", None) is True
    assert keeper.engine(_unit("b", "fake-b"))[1] is True
    keeper.close()
    assert keeper.engine(_unit("b", "fake-b"))[1] is False

"""`--executor ray` on a real two-node Ray cluster started on this machine (a head and a
worker, separate `ray start` processes): the same run directories, summaries and verdicts
as the local executor, a worker killed mid-shard, and the failures a user meets, each
with its exit code."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collapse_eval.cli import main
from collapse_eval.config import BenchmarkEntry
from collapse_eval.errors import (
    EXIT_CLUSTER_RESOURCES,
    EXIT_CLUSTER_UNREACHABLE,
    EXIT_USAGE,
    EXIT_VERSION_MISMATCH,
    EXIT_WORKER_CHECKPOINT,
)
from collapse_eval.shards import plan_shards
from tests.raycluster import Cluster, free_port, ray_cluster
from tests.testdata import rent_domain_file

pytestmark = pytest.mark.slow  # a real two-node Ray cluster: about 50 s

ITEMS = 160  # two shards of 80: each a full domain batch (64 items) and a second one


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Head (1 CPU) + worker (1 CPU). Ray's temp dir is short: its socket paths must fit
    the 107 bytes of a unix socket name."""
    temp = Path(tempfile.mkdtemp(prefix="ce-ray-"))
    try:
        with ray_cluster(temp) as started:
            yield started
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    from collapse_eval.demo.tinymodel import init_tiny_llama

    root = tmp_path_factory.mktemp("ray-inputs")
    return {
        "base": tiny_model,
        "tuned": init_tiny_llama(root / "tuned", seed=1),
        "domain": rent_domain_file(root / "rent.jsonl", ITEMS, "k"),
    }


def _compare_argv(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "compare",
        str(inputs["base"]),
        str(inputs["tuned"]),
        "--domain",
        str(inputs["domain"]),
        "--tasks",
        "demo_arithmetic",
        "--limit",
        "4",
        "--engine",
        "hf",
        "--cache-dir",
        str(out / "cache"),
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="session")
def local_compare(tmp_path_factory: pytest.TempPathFactory, inputs: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("local-compare")
    assert main(_compare_argv(inputs, out)) in (0, 1)
    return out


def _without_times(path: Path) -> dict[str, object]:
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary.pop("created_at")
    for side in ("base", "tuned"):
        summary[side].pop("run")  # where the run directory is: another --out
    return summary


def test_sharded_ray_compare_writes_what_a_local_compare_writes(
    cluster: Cluster, inputs: dict[str, Path], local_compare: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "ray"
    argv = ["--executor", "ray", "--ray-address", cluster.address, "--shards", "2"]
    code = main(_compare_argv(inputs, out, *argv))
    assert code == main(_compare_argv(inputs, local_compare))  # the same verdict
    err = capsys.readouterr().err
    assert "ray: 4 unit(s) of 2 checkpoint(s) on 2 node(s), 2 worker(s)" in err
    # Both nodes worked, and the local phase computed nothing.
    assert len(set(re.findall(r"done on \S+ \(node (\w+)\)", err))) == 2
    # (after the last checkpoint finished on the cluster, whichever of the two that was)
    local_phase = re.split(r"ray: \S+ complete\n", err)[-1]
    assert "model not loaded" in local_phase and "computed" not in local_phase
    for side in ("base", "tuned"):
        ray_run, local_run = out / "runs" / side, local_compare / "runs" / side
        assert (ray_run / "records.jsonl").read_bytes() == (
            local_run / "records.jsonl"
        ).read_bytes()
        manifests = [json.loads((r / "manifest.json").read_text()) for r in (ray_run, local_run)]
        for manifest in manifests:
            manifest.pop("created_at")
        assert manifests[0] == manifests[1]
    assert _without_times(out / "summary.json") == _without_times(local_compare / "summary.json")


def _unit_workers(cluster: Cluster) -> list[int]:
    """Pids of this cluster's worker processes evaluating a unit now (Ray's process title:
    the actor's class and method)."""
    from tests.raycluster import _session_pids

    pids = []
    for process in cluster.processes:
        for pid in _session_pids(process.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::CollapseEvalWorker.evaluate"):
                pids.append(pid)
    return pids


def _answers(cache_dir: Path) -> int:
    path = cache_dir / "requests.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            (n,) = db.execute("SELECT COUNT(*) FROM entries WHERE kind = 'generate'").fetchone()
    except sqlite3.Error:
        return 0
    return int(n)


def test_a_worker_killed_mid_shard_is_retried_and_nothing_is_lost_or_doubled(
    cluster: Cluster, inputs: dict[str, Path], local_compare: Path, tmp_path: Path, capsys
) -> None:
    cache, killed, stop = tmp_path / "cache", [], threading.Event()

    def kill_after_the_first_batch() -> None:
        # The first answers stored in the driver's cache: a unit is mid-shard (its
        # second batch is left); kill the worker process running a unit.
        while not stop.is_set() and not killed:
            if _answers(cache) >= 64:
                for pid in _unit_workers(cluster)[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_after_the_first_batch)
    killer.start()
    try:
        code = main(
            [
                "run",
                str(inputs["base"]),
                "--domain",
                str(inputs["domain"]),
                "--no-general",
                "--engine",
                "hf",
                "--cache-dir",
                str(cache),
                "--out",
                str(tmp_path / "run"),
                "--executor",
                "ray",
                "--ray-address",
                cluster.address,
                "--shards",
                "2",
            ]
        )
    finally:
        stop.set()
        killer.join()
    err = capsys.readouterr().err
    assert code == 0, err
    assert killed, "no unit was running after the first batch"
    finished_by = [int(p) for p in re.findall(r"done on .* pid (\d+),", err)]
    assert len(finished_by) == 2 and killed[0] not in finished_by  # retried elsewhere
    assert err.count("a worker process died and its unit ran again") == 1, err
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    ids = [json.loads(line)["item_id"] for line in lines]
    assert len(ids) == ITEMS and len(set(ids)) == ITEMS
    local = (local_compare / "runs" / "base" / "records.jsonl").read_text().splitlines()
    assert lines == [line for line in local if json.loads(line)["suite"] == "domain"]


def test_an_unreachable_cluster_is_exit_4_naming_the_address(
    inputs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    address = f"127.0.0.1:{free_port()}"
    argv = ["--executor", "ray", "--ray-address", address, "--no-general"]
    code = main(["run", *_run_argv(inputs, tmp_path, argv)])
    err = capsys.readouterr().err
    assert code == EXIT_CLUSTER_UNREACHABLE
    assert f"no Ray cluster answers at {address}" in err and "ray start --head" in err
    assert "Traceback" not in err


def _run_argv(inputs: dict[str, Path], out: Path, extra: list[str]) -> list[str]:
    return [
        str(inputs["base"]),
        "--domain",
        str(inputs["domain"]),
        "--engine",
        "hf",
        "--cache-dir",
        str(out / "cache"),
        "--out",
        str(out / "run"),
        *extra,
    ]


def test_missing_gpus_are_said_before_anything_starts(
    cluster: Cluster, inputs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    argv = ["--executor", "ray", "--ray-address", cluster.address, "--no-general"]
    started = time.monotonic()
    code = main(["run", *_run_argv(inputs, tmp_path, [*argv, "--device", "cuda"])])
    err = capsys.readouterr().err
    assert code == EXIT_CLUSTER_RESOURCES, err
    assert time.monotonic() - started < 60
    assert "ckpt shard 1/1 needs 1 GPU (hf --device cuda)" in err
    assert err.count("0 GPU(s), 1 CPU(s)") == 2  # both nodes named with what they have
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_a_checkpoint_the_driver_sees_and_a_worker_does_not_is_exit_6(
    cluster: Cluster, inputs: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    # A relative path: here (the driver's working directory) it is the checkpoint, on the
    # nodes (started in their own directories) there is nothing there.
    shutil.copytree(inputs["base"], tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    argv = ["--executor", "ray", "--ray-address", cluster.address, "--no-general"]
    code = main(["run", "ckpt", *_run_argv(inputs, tmp_path, argv)[1:]])
    err = capsys.readouterr().err
    assert code == EXIT_WORKER_CHECKPOINT, err
    assert re.search(
        r"ckpt shard 1/1: checkpoint ckpt exists on the driver but not on node "
        r"\S+ \(node \w{8}\)",
        err,
    )


def test_a_node_with_another_collapse_eval_is_exit_7_before_any_unit(
    inputs: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    import collapse_eval

    # Ray puts the driver's working directory first on its workers' sys.path: from the
    # repository root they would import this collapse-eval, not the node's own.
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(Path(collapse_eval.__file__).parent, other / "collapse_eval")
    init = other / "collapse_eval" / "__init__.py"  # the version of an installed release
    init.write_text('__version__ = "0.0.1+other"\n', encoding="utf-8")
    temp = Path(tempfile.mkdtemp(prefix="ce-ray-v-"))
    try:
        with ray_cluster(temp, workers=0, env={"PYTHONPATH": str(other)}) as odd:
            argv = ["--executor", "ray", "--ray-address", odd.address, "--no-general"]
            code = main(["run", *_run_argv(inputs, tmp_path, argv)])
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    err = capsys.readouterr().err
    assert code == EXIT_VERSION_MISMATCH, err
    said = re.escape(f"collapse-eval {collapse_eval.__version__} on the driver, 0.0.1+other on ")
    assert re.search(said + r"\S+ \(node \w{8}\)", err), err
    assert err.startswith("error: before any unit started: node ")


def test_without_ray_the_executor_is_exit_2_naming_the_extra(
    inputs: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    from collapse_eval import extras

    findable = extras._findable
    monkeypatch.setattr(extras, "_findable", lambda m: m != "ray" and findable(m))
    code = main(["run", *_run_argv(inputs, tmp_path, ["--executor", "ray"])])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "--executor ray needs the 'ray' extra" in err and "collapse-eval[ray]" in err


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--shards", "2"], "--shards 2 only apply with --executor ray"),
        (["--ray-address", "h:1"], "--ray-address h:1 only apply with --executor ray"),
        (["--executor", "ray", "--no-cache"], "drop --no-cache"),
        (["--executor", "rey"], "'rey' is not one of 'local', 'ray'"),
        (["--executor", "ray", "--shards", "0"], "0 is not in the range x>=1"),
        (["--executor", "ray", "--ray-address", "localhost"], "give HOST:PORT"),
        (["--executor", "ray", "--ray-address", "h:63 79"], "--ray-address h:63 79 is not a"),
    ],
)
def test_cluster_options_that_cannot_take_effect_are_exit_2(
    inputs: dict[str, Path], tmp_path: Path, capsys, extra: list[str], said: str
) -> None:
    code = main(["run", *_run_argv(inputs, tmp_path, extra)])
    assert code == EXIT_USAGE
    assert said in capsys.readouterr().err


def test_shards_cut_domain_items_in_slices_and_deal_general_tasks_whole() -> None:
    entries = [BenchmarkEntry(task=t) for t in ("a", "b", "c")]
    domain = [("x", ["x1", "x2", "x3"]), ("y", ["y1", "y2"])]
    units = plan_shards("ck", domain, entries, 2)
    assert [u[0] for u in units] == ["ck shard 1/2", "ck shard 2/2"]
    assert units[0][1] == {"x": ("x1", "x2")} and units[1][1] == {"x": ("x3",), "y": ("y1", "y2")}
    assert [e.task for e in units[0][2]] == ["a", "c"] and [e.task for e in units[1][2]] == ["b"]
    # More shards than work: the empty ones are not sent.
    assert [u[0] for u in plan_shards("ck", [("x", ["x1"])], [], 3)] == ["ck shard 3/3"]


def test_a_killed_driver_resumes_from_its_cache_like_a_local_run(
    cluster: Cluster, inputs: dict[str, Path], local_compare: Path, tmp_path: Path, capsys
) -> None:
    import subprocess
    import sys

    argv = _run_argv(inputs, tmp_path, ["--no-general", "--executor", "ray"])
    argv += ["--ray-address", cluster.address]
    driver = subprocess.Popen(
        [sys.executable, "-m", "collapse_eval", "run", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        deadline = time.monotonic() + 240
        while _answers(tmp_path / "cache") < 64 and driver.poll() is None:
            assert time.monotonic() < deadline, "no answer reached the cache in 240 s"
            time.sleep(0.02)
    finally:
        driver.kill()  # SIGKILL: no finally block of the driver runs
        driver.wait()
    assert not (tmp_path / "run" / "records.jsonl").exists()  # killed before the local phase
    capsys.readouterr()
    assert main(["run", *argv]) == 0
    err = capsys.readouterr().err
    cached = sum(int(n.replace(",", "")) for n in re.findall(r"answers: ([\d,]+) from", err))
    assert cached >= 64, err  # the batch answered before the kill is not computed again
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    local = (local_compare / "runs" / "base" / "records.jsonl").read_text().splitlines()
    assert lines == [line for line in local if json.loads(line)["suite"] == "domain"]

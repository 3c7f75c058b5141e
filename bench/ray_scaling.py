"""`compare BASE C1..C4` with the local executor against `--executor ray` on a local
two-node Ray cluster (a head and a worker, one CPU each, started here as separate
`ray start` processes), each on a fresh cache, repeated; then Ray's own cost per unit.

    python bench/ray_scaling.py [--items 2048] [--repeats 2] [--local-threads 1,2]

Five random-init demo-size checkpoints (seeds 0..4: a base and 4 candidates), one domain
file of ``--items`` label items (generation), no general suite. The local executor runs
once per ``--local-threads`` value (OMP_NUM_THREADS: torch's threads) and the best is the
reference; Ray runs a one-CPU worker with one thread. What it prints, per repeat and then
the median over repeats:

  local     : wall and CPU seconds of the compare in one process;
  ray       : wall and CPU seconds of the same compare on the cluster: the driver's, and
              every process of the cluster's (its workers and Ray's own daemons);
  speed-up  : best local wall / ray wall, and per core (the cluster has 2 one-CPU nodes:
              1.0 per core is the ceiling, 2x);
  per unit  : what Ray costs beyond the local run's work, per unit: CPU = (ray CPU -
              local CPU) / units; wall = (ray wall x cores - local wall) / units, the
              core-seconds the cluster spent that one process did not;
  units     : each unit's wall and CPU on its worker: a worker's first (it imports torch,
              transformers and lm-eval) and the others;
  round trip: an empty call to a warm Ray actor.

The machine's load average is printed before and after: on shared cores wall times
stretch, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORES = 2  # the cluster's: two nodes of one CPU each
TICKS = os.sysconf("SC_CLK_TCK")


def _compare(models: list[Path], domain: Path, out: Path, extra: list[str], threads: str) -> float:
    argv = [sys.executable, "-m", "collapse_eval", "compare", *map(str, models)]
    argv += ["--domain", str(domain), "--no-general", "--engine", "hf"]
    argv += ["--cache-dir", str(out / "cache"), "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = threads
    start = time.monotonic()
    with (out.parent / f"{out.name}.log").open("w") as log:
        done = subprocess.run(argv, stderr=log, stdout=subprocess.DEVNULL, env=env)
    wall = time.monotonic() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"compare failed ({done.returncode}): see {out.parent / out.name}.log")
    return wall


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


class _ClusterCpu:
    """CPU seconds of the cluster's processes (its workers and Ray's daemons) during a run,
    sampled every 0.2 s per process: a worker killed at the run's end counts to its last
    sample."""

    def __init__(self, cluster: Any) -> None:
        self.cluster, self.seen, self.stop = cluster, {}, threading.Event()
        self.start = dict(self._now())
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()

    def _now(self) -> list[tuple[int, float]]:
        from tests.raycluster import _session_pids

        found = []
        for process in self.cluster.processes:
            for pid in _session_pids(process.pid):
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                found.append((pid, (int(stat[11]) + int(stat[12])) / TICKS))  # utime, stime
        return found

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            self.seen.update(self._now())

    def seconds(self) -> float:
        self.stop.set()
        self.thread.join()
        self.seen.update(self._now())
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.seen.items())


def _round_trip(address: str, n: int = 50) -> float:
    """Mean round trip of an empty call to a warm actor, in milliseconds."""
    import ray

    ray.init(address=address, logging_level=40, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(_Nothing).remote()
        ray.get(actor.call.remote())  # the worker's start is not part of the round trip
        start = time.monotonic()
        for _ in range(n):
            ray.get(actor.call.remote())
        return (time.monotonic() - start) / n * 1000
    finally:
        ray.shutdown()


class _Nothing:
    def call(self) -> None:
        return None


def _units(log: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(wall, CPU) of each worker's first unit and of the others, from the driver's log."""
    first, later, seen = [], [], set()
    pattern = r"done on .* in ([\d.]+) s \(([\d.]+) CPU s, pid (\d+)"
    for wall, cpu, pid in re.findall(pattern, log.read_text()):
        (later if pid in seen else first).append((float(wall), float(cpu)))
        seen.add(pid)
    return first, later


def _one_repeat(k: int, models: list[Path], domain: Path, root: Path, args, cluster) -> dict:
    local = {}
    for threads in args.local_threads.split(","):
        cpu = _children_cpu()
        wall = _compare(models, domain, root / f"local-{k}-t{threads}", [], threads)
        local[threads] = (wall, _children_cpu() - cpu)
        said = f"{wall:6.1f} s wall, {local[threads][1]:6.1f} CPU s"
        print(f"[{k}] local, OMP_NUM_THREADS={threads}: {said}", flush=True)
    cpu, cluster_cpu = _children_cpu(), _ClusterCpu(cluster)
    extra = ["--executor", "ray", "--ray-address", cluster.address, "--shards", str(args.shards)]
    wall = _compare(models, domain, root / f"ray-{k}", extra, "1")
    driver, workers = _children_cpu() - cpu, cluster_cpu.seconds()
    first, later = _units(root / f"ray-{k}.log")
    print(
        f"[{k}] ray: {wall:6.1f} s wall, {driver + workers:6.1f} CPU s (driver {driver:.1f}, "
        f"cluster {workers:.1f}; units {sum(c for _, c in first + later):.1f})",
        flush=True,
    )
    return {"local": local, "ray": (wall, driver + workers), "first": first, "later": later}


def _spread(xs: list[float], unit: str = "", digits: int = 1) -> str:
    """The median and every run's figure: the spread on a shared machine."""
    runs = ", ".join(f"{x:.{digits}f}" for x in xs)
    return f"{statistics.median(xs):.{digits}f}{unit} (runs {runs})"


def _units_line(units: list[tuple[float, float]]) -> str:
    if not units:
        return "none"
    wall, cpu = statistics.median(w for w, _ in units), statistics.median(c for _, c in units)
    return f"{wall:.1f} s wall, {cpu:.1f} CPU s (median of {len(units)})"


def _summary(runs: list[dict], units: int) -> None:
    med = statistics.median
    threads = min(runs[0]["local"], key=lambda t: med(r["local"][t][0] for r in runs))
    local_wall = [r["local"][threads][0] for r in runs]
    local_cpu = [r["local"][threads][1] for r in runs]
    ray_wall, ray_cpu = [r["ray"][0] for r in runs], [r["ray"][1] for r in runs]
    speed = [lw / rw for lw, rw in zip(local_wall, ray_wall, strict=True)]
    over_cpu = [(rc - lc) / units for rc, lc in zip(ray_cpu, local_cpu, strict=True)]
    over_wall = [(rw * CORES - lw) / units for rw, lw in zip(ray_wall, local_wall, strict=True)]
    print(f"local     : OMP_NUM_THREADS={threads} (the fastest tried)")
    print(f"            {_spread(local_wall)} s wall, {_spread(local_cpu)} CPU s")
    print(f"ray       : {_spread(ray_wall)} s wall, {_spread(ray_cpu)} CPU s")
    print(
        f"speed-up  : {_spread(speed, 'x', 2)}, {med(speed) / CORES:.2f} per core "
        f"({CORES} one-CPU nodes: the ceiling is {CORES}x, 1.00 per core)"
    )
    print(f"per unit  : {_spread(over_cpu)} CPU s, {_spread(over_wall)} core-s wall (Ray's cost)")
    print(f"units     : a worker's first {_units_line([u for r in runs for u in r['first']])}")
    print(f"            the others {_units_line([u for r in runs for u in r['later']])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--items", type=int, default=2048)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--local-threads", default="1,2")
    args = parser.parse_args()

    from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama
    from tests.raycluster import ray_cluster
    from tests.testdata import rent_domain_file

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    root = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    n = args.candidates + 1
    models = [init_tiny_llama(root / f"ckpt-{k:04d}", DEMO_SIZE, seed=k) for k in range(n)]
    domain = rent_domain_file(root / "rent.jsonl", args.items, "r")
    ray_temp = Path(tempfile.mkdtemp(prefix="ce-bench-"))  # short: Ray's socket paths
    with ray_cluster(ray_temp) as cluster:
        runs = [_one_repeat(k, models, domain, root, args, cluster) for k in range(args.repeats)]
        trip = _round_trip(cluster.address)
    shutil.rmtree(ray_temp, ignore_errors=True)
    _summary(runs, n * args.shards)
    print(f"round trip: {trip:.1f} ms per empty call to a warm Ray actor")
    print(f"load average after: {os.getloadavg()[0]:.1f}; inputs, outputs and logs: {root}")


if __name__ == "__main__":
    main()

"""`compare BASE C1..C4` with the local executor against `--executor ray` on a local
two-node Ray cluster (a head and a worker, one CPU each, started here as separate
`ray start` processes), both on fresh caches; then Ray's own overhead per task.

    python bench/ray_scaling.py [--items 256] [--shards 1] [--keep-cluster-warm]

Five random-init demo-size checkpoints (seeds 0..4), one domain file of ``--items``
label items (generation), no general suite. What it prints:

  local     : wall and CPU seconds of the compare in one process;
  ray       : wall and CPU seconds of the same compare on the cluster (the driver's, and
              each unit's as its worker measured it);
  speed-up  : local wall / ray wall. The cluster has two one-CPU nodes on a machine whose
              cores are shared: the ceiling is about 2x, less the cold start of each
              node's worker process (it imports torch, transformers and lm-eval once);
  units     : each unit's wall and CPU seconds on its worker (engine start included);
  overhead  : the round trip of an empty Ray task on a warm worker.

Ray runs a task that asks for one CPU with OMP_NUM_THREADS=1, so torch computes on one
thread in a unit, where the local run uses torch's default (every core): on cores shared
with other work the local run's threads also wait for each other, which is why the
measured speed-up can pass the 2x that two nodes allow. `OMP_NUM_THREADS=1 python
bench/ray_scaling.py` gives both sides one thread per process. Wall time above CPU time
is the machine's load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _compare(models: list[Path], domain: Path, out: Path, extra: list[str]) -> tuple[float, str]:
    argv = [sys.executable, "-m", "collapse_eval", "compare", *map(str, models)]
    argv += ["--domain", str(domain), "--no-general", "--engine", "hf"]
    argv += ["--cache-dir", str(out / "cache"), "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.monotonic() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"compare failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stderr


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def _ray_overhead(address: str, n: int = 50) -> float:
    """Mean round trip of an empty task on a warm worker, in milliseconds."""
    import ray

    ray.init(address=address, logging_level=40, log_to_driver=False)
    try:
        noop = ray.remote(num_cpus=1)(lambda: None)
        ray.get(noop.remote())  # the worker's cold start is not part of the round trip
        start = time.monotonic()
        for _ in range(n):
            ray.get(noop.remote())
        return (time.monotonic() - start) / n * 1000
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()

    from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama
    from tests.raycluster import ray_cluster
    from tests.testdata import rent_domain_file

    root = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    models = [init_tiny_llama(root / f"ckpt-{k:04d}", DEMO_SIZE, seed=k) for k in range(5)]
    domain = rent_domain_file(root / "rent.jsonl", args.items, "r")
    cpu = _children_cpu()
    local_wall, _ = _compare(models, domain, root / "local", [])
    local_cpu = _children_cpu() - cpu
    print(f"local     : {local_wall:6.1f} s wall, {local_cpu:6.1f} CPU s")
    ray_temp = Path(tempfile.mkdtemp(prefix="ce-bench-"))  # short: Ray's socket paths
    with ray_cluster(ray_temp) as cluster:
        cpu = _children_cpu()
        extra = ["--executor", "ray", "--ray-address", cluster.address, "--shards"]
        ray_wall, log = _compare(models, domain, root / "ray", [*extra, str(args.shards)])
        driver_cpu = _children_cpu() - cpu
        units = re.findall(r"done on .* in ([\d.]+) s \(([\d.]+) CPU s", log)
        walls = sorted(float(wall) for wall, _ in units)
        cpus = sorted(float(cpu) for _, cpu in units)
        print(
            f"ray       : {ray_wall:6.1f} s wall, {driver_cpu + sum(cpus):6.1f} CPU s (driver "
            f"{driver_cpu:.1f}, units {sum(cpus):.1f}; Ray's own processes not counted)"
        )
        print(f"speed-up  : {local_wall / ray_wall:.2f}x on 2 one-CPU nodes (ceiling ~2x)")
        print(
            f"units     : {len(units)}, median {walls[len(walls) // 2]:.1f} s wall and "
            f"{cpus[len(cpus) // 2]:.1f} CPU s each, slowest {walls[-1]:.1f} s (a fresh "
            "worker's first unit: it imports torch and transformers)"
        )
        print(f"overhead  : {_ray_overhead(cluster.address):.1f} ms per empty Ray task (warm)")
    shutil.rmtree(ray_temp, ignore_errors=True)
    print(f"inputs and outputs: {root}")


if __name__ == "__main__":
    main()

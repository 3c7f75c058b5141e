"""Whole `collapse-eval compare` runs: the cache's three targets, each as a ratio of one run.

Each scenario is a fresh subprocess, timed end to end (wall and CPU seconds: under a
shared machine's load the CPU seconds are the steadier measure), model loading and lm-eval
task setup included:

  cold          : empty cache, new --out: base + tuned computed;
  warm          : the same compare into a NEW --out (only the cache can help);
  tuned changed : the same base, a new tuned checkpoint, new --out (by default the tuned
                  checkpoint's weights under a reformatted config.json: a new fingerprint,
                  so nothing of it is cached, and the same outputs, so the same work as
                  the tuned side of the cold run: random-init models stop at different
                  lengths, which would otherwise change the work, not the cache's effect);
  floor         : `compare` of the cold run's two run directories (no model, no lm-eval);
  general cold  : base + tuned on the general suite only, empty cache;
  lm_eval x2    : the raw `lm_eval --model hf` CLI on the same tasks, once per checkpoint.

Targets:
  warm          <= floor + 0.05 x (cold - floor)   i.e. (warm - floor) / (cold - floor) <= 0.05
  tuned changed <= 0.55 x cold
  general cold  <= 0.35 x (lm_eval base + lm_eval tuned)

With cold = F + 2M and tuned changed = F + M (F: what a model-loading compare pays once,
M: one checkpoint's evaluation), the second target holds exactly when F <= 2/9 M; the
bench prints F and M so that the size of workload where it holds can be read off.

    python bench/compare_cache.py [--limit 50] [--domain-items 100] [--models B,T,T2]
                                  [--no-lm-eval]

Models: three random-init demo-size Llamas (seeds 0, 1, 2); inputs: the first N items of
the demo domain set and the `quick` general suite (the demo tasks shipped in the package).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

QUICK_TASKS = ("demo_arithmetic", "demo_capitals", "demo_copy", "demo_sort")
BATCH_SIZE = 16


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # user + sys of the subprocess (and its children)


def timed(cmd: list[str], ok: tuple[int, ...] = (0, 1)) -> Timing:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def compare_cmd(base: Path, tuned: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "collapse_eval.cli",
        "compare",
        str(base),
        str(tuned),
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def lm_eval_cmd(model: Path, include: Path, limit: int, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model},dtype=float32",
        "--tasks",
        ",".join(QUICK_TASKS),
        "--include_path",
        str(include),
        "--limit",
        str(limit),
        "--batch_size",
        str(BATCH_SIZE),
        "--device",
        "cpu",
        "--output_path",
        str(out),
        "--log_samples",
    ]


def same_weights_copy(model: Path, dest: Path) -> Path:
    """model's files with config.json rewritten in another layout: same weights and
    outputs, another checkpoint fingerprint."""
    shutil.copytree(model, dest)
    config = dest / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()), indent=1), encoding="utf-8")
    return dest


def line(name: str, t: Timing, extra: str = "") -> str:
    return f"{name:<28}: {t.wall:7.1f} s wall {t.cpu:7.1f} s CPU  {extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--domain-items", type=int, default=100)
    parser.add_argument(
        "--models",
        default=None,
        help="three checkpoint dirs (e.g. the demo world's base, domain-only, "
        "mixed) instead of random-init models",
    )
    parser.add_argument("--no-lm-eval", action="store_true", help="skip the third target")
    options = parser.parse_args()

    from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama
    from collapse_eval.demo.world import DOMAIN_TEST_FILE
    from collapse_eval.general import materialize_task_dirs, shipped_tasks_dir

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        domain = root / "domain.jsonl"
        lines = DOMAIN_TEST_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
        domain.write_text("".join(lines[: options.domain_items]), encoding="utf-8")
        if options.models:
            base, tuned, tuned2 = (Path(p) for p in options.models.split(","))
        else:
            base, tuned = (
                init_tiny_llama(root / f"m{seed}", DEMO_SIZE, seed=seed) for seed in (0, 1)
            )
            tuned2 = same_weights_copy(tuned, root / "m1-copy")
        inputs = ["--domain", str(domain), "--suite", "quick", "--limit", str(options.limit)]
        inputs += ["--engine", "hf", "--engine-arg", f"batch_size={BATCH_SIZE}"]
        cached = [*inputs, "--cache-dir", str(root / "cache")]
        cold = timed(compare_cmd(base, tuned, root / "cold", *cached))
        warm = timed(compare_cmd(base, tuned, root / "warm", *cached))
        changed = timed(compare_cmd(base, tuned2, root / "changed", *cached))
        runs = root / "cold" / "runs"
        floor = timed(compare_cmd(runs / "base", runs / "tuned", root / "floor"))
        same_out = timed(compare_cmd(base, tuned, root / "cold", *cached))
        general = ref = None
        if not options.no_lm_eval:
            general_inputs = ["--suite", "quick", "--limit", str(options.limit), "--engine", "hf"]
            general_inputs += ["--engine-arg", f"batch_size={BATCH_SIZE}"]
            general_inputs += ["--cache-dir", str(root / "cache-general")]
            general = timed(compare_cmd(base, tuned, root / "general", *general_inputs))
            include = materialize_task_dirs([shipped_tasks_dir()], root / "tasks")[0]
            ref_base = timed(lm_eval_cmd(base, include, options.limit, root / "lm-b"), ok=(0,))
            ref_tuned = timed(lm_eval_cmd(tuned, include, options.limit, root / "lm-t"), ok=(0,))
            ref = Timing(ref_base.wall + ref_tuned.wall, ref_base.cpu + ref_tuned.cpu)
    load_after = os.getloadavg()

    print(
        f"engine=hf batch={BATCH_SIZE} limit={options.limit} domain items="
        f"{options.domain_items} (demo domain set + quick suite); cpus={os.cpu_count()}; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
    )
    print(line("cold compare", cold))
    print(line("warm cache, new out dir", warm))
    print(line("tuned changed, base cached", changed))
    print(line("floor (run dirs compared)", floor))
    print(line("same out dir (runs reused)", same_out))

    def warm_ratio(t: str) -> float:
        c, w, f = (getattr(x, t) for x in (cold, warm, floor))
        return (w - f) / (c - f)

    print(
        "target 1, (warm - floor) / (cold - floor) <= 0.05: "
        f"wall {warm_ratio('wall'):.3f}, CPU {warm_ratio('cpu'):.3f}"
    )
    print(
        "target 2, tuned changed / cold <= 0.55: "
        f"wall {changed.wall / cold.wall:.3f}, CPU {changed.cpu / cold.cpu:.3f}"
    )
    fixed, per_model = 2 * changed.wall - cold.wall, cold.wall - changed.wall
    print(
        f"  cold = F + 2M, changed = F + M: F = {fixed:.1f} s, M = {per_model:.1f} s (wall); "
        f"target 2 holds when F <= 2/9 M, i.e. M >= {4.5 * fixed:.0f} s"
    )
    if general is not None and ref is not None:
        print(line("general-suite compare, cold", general))
        print(line("lm_eval CLI x2 (base, tuned)", ref))
        print(
            "target 3, general compare / lm_eval x2 <= 0.35: "
            f"wall {general.wall / ref.wall:.3f}, CPU {general.cpu / ref.cpu:.3f}"
        )


if __name__ == "__main__":
    main()

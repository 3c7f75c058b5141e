"""A cached re-run loads no model: whole tasks from the cache, the hf engine's weights on
the first request the request cache cannot answer, and only then."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.engines import hf
from collapse_eval.records import read_records
from collapse_eval.runner import RunSpec, compare, run_model

DOMAIN_LINES = 4


class Recorder:
    """A Progress that keeps the log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def bar(self, description: str, total: int | None) -> Any:
        from collapse_eval.progress import QuietProgress

        return QuietProgress().bar(description, total)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from collapse_eval.demo.tinymodel import init_tiny_llama
    from collapse_eval.demo.world import DOMAIN_TEST_FILE

    root = tmp_path_factory.mktemp("lazy")
    domain = root / "domain.jsonl"
    lines = DOMAIN_TEST_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    domain.write_text("".join(lines[:DOMAIN_LINES]), encoding="utf-8")
    benchmarks = root / "benchmarks.yaml"
    benchmarks.write_text(
        "suites:\n  two:\n    - {task: demo_arithmetic}\n    - {task: demo_copy}\n",
        encoding="utf-8",
    )
    return {
        "base": init_tiny_llama(root / "base", seed=0),
        "tuned": init_tiny_llama(root / "tuned", seed=1),
        "domain": domain,
        "benchmarks": benchmarks,
        "cache": root / "cache",
    }


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every weight load of the real hf engine, by checkpoint."""
    seen: list[str] = []
    real = hf._load_weights

    def counting(source: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(Path(source).name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(hf, "_load_weights", counting)
    return seen


def _spec(world: dict[str, Path], limit: int) -> RunSpec:
    return RunSpec(
        model=str(world["base"]),
        domain_files=(world["domain"],),
        benchmarks=world["benchmarks"],
        suite="two",
        engine="hf",
        limit=limit,
        cache_dir=world["cache"],
    )


def _compare(world: dict[str, Path], out: Path, limit: int) -> list[str]:
    progress = Recorder()
    compare(str(world["base"]), str(world["tuned"]), _spec(world, limit), out, progress=progress)
    return progress.lines


def _records(out: Path, side: str) -> list[dict[str, Any]]:
    return [r.to_json() for r in read_records(out / "runs" / side / "records.jsonl")]


def test_warm_compare_loads_no_model_and_gives_the_same_results(
    world: dict[str, Path], loads: list[str], tmp_path: Path
) -> None:
    cold = _compare(world, tmp_path / "cold", limit=3)
    assert loads == ["base", "tuned"]
    assert any(line.startswith("base: ") and "model loaded" in line for line in cold)

    loads.clear()
    warm = _compare(world, tmp_path / "warm", limit=3)
    assert loads == []
    assert "base: 3 task(s) reused whole from the cache, model not loaded" in warm
    assert "tuned: 3 task(s) reused whole from the cache, model not loaded" in warm
    for side in ("base", "tuned"):
        assert _records(tmp_path / "warm", side) == _records(tmp_path / "cold", side)
    cold_manifest = json.loads((tmp_path / "cold/runs/base/manifest.json").read_text())
    warm_manifest = json.loads((tmp_path / "warm/runs/base/manifest.json").read_text())
    for manifest in (cold_manifest, warm_manifest):
        del manifest["created_at"]
    assert warm_manifest == cold_manifest

    # A smaller limit is another task (not cached whole), but every request is cached:
    # the engine is built, its weights are not loaded, and the answers are the cold ones.
    loads.clear()
    subset = _compare(world, tmp_path / "subset", limit=2)
    assert loads == []
    line = next(x for x in subset if x.startswith("base: "))
    assert "requests, all from cache, model not loaded" in line
    assert "; 1 task(s) reused whole from the cache" in line  # the domain file
    for side in ("base", "tuned"):
        cold_general = {
            (r["task"], r["item_id"], r["metric"]): r
            for r in _records(tmp_path / "cold", side)
            if r["suite"] == "general"
        }
        subset_general = [r for r in _records(tmp_path / "subset", side) if r["suite"] == "general"]
        assert {r["item_id"] for r in subset_general} == {"0", "1"}
        for record in subset_general:
            assert record == cold_general[(record["task"], record["item_id"], record["metric"])]


def test_partial_cache_loads_each_model_once_on_the_first_miss(
    world: dict[str, Path], loads: list[str], tmp_path: Path
) -> None:
    _compare(world, tmp_path / "small", limit=2)
    loads.clear()
    lines = _compare(world, tmp_path / "larger", limit=4)
    assert loads == ["base", "tuned"]
    assert any(x.startswith(f"loading {world['base']} (") for x in lines)
    base = next(x for x in lines if x.startswith("base: "))
    assert "from cache, model loaded" in base
    assert "all from cache" not in base


def test_fully_cached_run_imports_no_model_library(world: dict[str, Path], tmp_path: Path) -> None:
    """Not transformers, torch nor lm-eval: a cached checkpoint costs its records only."""
    spec = _spec(world, limit=3)
    run_model(spec, tmp_path / "first")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from collapse_eval.progress import PlainProgress\n"
        "from collapse_eval.runner import RunSpec, run_model\n"
        f"spec = RunSpec(model={str(world['base'])!r},"
        f" domain_files=(Path({str(world['domain'])!r}),),"
        f" benchmarks=Path({str(world['benchmarks'])!r}), suite='two', engine='hf', limit=3,"
        f" cache_dir=Path({str(world['cache'])!r}))\n"
        f"run = run_model(spec, {str(tmp_path / 'second')!r}, progress=PlainProgress())\n"
        "print(len(run.records), sorted(m for m in ('torch', 'transformers', 'lm_eval', 'vllm')"
        " if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first = read_records(tmp_path / "first" / "records.jsonl")
    assert proc.stdout.split() == [str(len(first)), "[]"], proc.stderr
    assert "second: 3 task(s) reused whole from the cache, model not loaded" in proc.stderr

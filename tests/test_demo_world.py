"""The demo world: a small world builds, loads with transformers, learns, and is cached."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from collapse_eval.demo import train, world
from collapse_eval.demo.world import (
    DemoWorld,
    GradedCandidate,
    WorldConfig,
    ensure_demo_world,
    world_key,
)
from collapse_eval.workers import run_tasks


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoWorld, list[str]]:
    cache = tmp_path_factory.mktemp("demo-cache")
    messages: list[str] = []
    built = ensure_demo_world(cache, config=WorldConfig.test(), progress=messages.append)
    return cache, built, messages


def _tiny_world(**overrides: object) -> WorldConfig:
    """The test world cut to seconds: 2 base steps, 50 general items a task, 20 dialogues."""
    cut = {"base_steps": 2, "general_per_task": 50, "unlabelled_dialogues": 20}
    return dataclasses.replace(WorldConfig.test(), **{**cut, **overrides})


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base checkpoint of ``_tiny_world()``, trained once for the tests that evaluate,
    fine-tune or re-train it (read it, or copy it to change it). The overrides those
    tests give (fine-tune steps, graded levels) do not reach the base's training."""
    return train.build_base(tmp_path_factory.mktemp("tiny-world") / "base", _tiny_world())


def test_the_world_has_its_checkpoints_and_the_demo_suite(small_world) -> None:
    cache, built, messages = small_world
    root = cache / world_key(WorldConfig.test())
    assert built.base == root / "base" and built.mixed == root / "mixed"
    assert built.domain_only == root / "domain-only"
    assert built.graded == (
        GradedCandidate("graded-00", 0, root / "graded-00", 0.0),
        GradedCandidate("graded-41", 2, root / "graded-41", 779 / 1920),
        GradedCandidate("graded-100", 5, root / "graded-100", 1911 / 1920),
    )
    assert built.suite == "demo" and built.benchmarks.name == "benchmarks.yaml"
    assert built.domain_test.name == "realestate_test.jsonl" and built.domain_test.is_file()
    for ckpt in (built.base, built.domain_only, built.mixed, *(g.checkpoint for g in built.graded)):
        names = {p.name for p in ckpt.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert messages[0].startswith("building the demo world")
    assert any(m.startswith("mixed: step 240/240") for m in messages)  # 120 domain + 120 replay
    assert any(m.startswith("graded-100: step 120/120") for m in messages)  # 60 + 60 replay
    # Only the finished world is left: no temporary build directories.
    assert sorted(p.name for p in cache.iterdir()) == [root.name]
    manifest = json.loads((root / "world.json").read_text())
    assert manifest["config"]["finetune_steps"] == 120
    assert manifest["config"]["graded_steps"] == 60
    assert set(manifest["stages"]) == {
        "base",
        "domain-only",
        "mixed",
        "graded-00",
        "graded-41",
        "graded-100",
    }
    assert all(s["wall_s"] > 0 and s["cpu_s"] > 0 for s in manifest["stages"].values())


def test_checkpoints_load_with_transformers_and_keep_the_chat_template(small_world) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, built, _ = small_world
    tokenizer = AutoTokenizer.from_pretrained(str(built.mixed))
    model = AutoModelForCausalLM.from_pretrained(str(built.mixed))
    assert model.config.tie_word_embeddings and model.config.hidden_size == 64
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "user: hi\nassistant:"
    # Digits are single tokens (arithmetic and budgets are learnable digit by digit).
    assert len(tokenizer("2450", add_special_tokens=False)["input_ids"]) == 4


def test_fine_tuning_moves_the_weights_and_the_domain_score(small_world) -> None:
    _, built, _ = small_world
    base = train.evaluate_checkpoint(built.base, limit=240, general=False)
    domain_only = train.evaluate_checkpoint(built.domain_only, limit=240, general=False)
    # Even the small world learns the domain's answer formats (summaries, labels). On
    # world seeds 0-4 the base scored 0.04 to 0.06 domain and 0.00 to 0.01 on summaries,
    # the domain-only fine-tune 0.27 to 0.35 and 0.52 to 0.69 (240 items: a standard
    # error of about 0.03 on the domain score), on the training split before it dropped
    # the near copies of test dialogues; on the split without them, seed 0's base scores
    # 0.046 and 0.00, its domain-only fine-tune 0.128 and 0.509 (intent, next action and
    # satisfaction at about the base's scores: in 120 steps the small world learns the
    # label tasks by chance, if at all). A fine-tune that only learns to start with "The
    # customer" and then repeats itself gets 0.1 to 0.3 of a summary's ROUGE-L.
    assert domain_only["domain"] > base["domain"] + 0.06
    assert domain_only["domain/summary"] > base["domain/summary"] + 0.35
    assert {"domain", "domain/summary", "domain/entity_extraction"} <= set(base)
    assert "demo_copy" not in base


def test_graded_study_scores_compares_and_correlates(small_world, tmp_path: Path) -> None:
    """The demo's quality -> performance step on the small world (domain items only)."""
    from collapse_eval.demo.run import correlation_lines, run_graded_study
    from collapse_eval.progress import QuietProgress
    from collapse_eval.runner import RunSpec

    _, built, _ = small_world
    spec = RunSpec(
        model=str(built.base),
        domain_files=(built.domain_test,),
        engine="hf",
        engine_args={"batch_size": "64"},
        limit=60,
        run_general=False,
        use_cache=False,
    )
    out = tmp_path / "demo"
    rows = run_graded_study(built, spec, out, QuietProgress())
    assert [r.name for r in rows] == ["graded-00", "graded-41", "graded-100"]
    assert all((out / r.name / "summary.json").is_file() for r in rows)
    overall = [
        json.loads((out / "quality" / r.name / "quality.json").read_text())["overall"] for r in rows
    ]
    assert overall == sorted(overall, reverse=True)
    table = (out / "correlation" / "table.csv").read_text().splitlines()
    assert table[1] == "../graded-00,../quality/graded-00/quality.json,graded-00"
    report = json.loads((out / "correlation" / "correlation.json").read_text())
    assert [r["quality"] for r in report["runs"]] == overall
    assert {c["performance"] for c in report["correlations"]} == {"domain"}
    assert (out / "correlation" / "plots" / "correlation_domain.png").is_file()
    lines = correlation_lines(out)
    assert lines[0].startswith("quality vs domain score: spearman ")
    assert "95% CI [" in lines[0] and lines[0].endswith("n = 3")
    # then each quality dimension's Spearman with the domain score, one line each
    assert lines[1] == "each quality dimension vs performance (spearman, 95% CI, p):"
    assert lines[2].split() == ["dimension", "domain", "score"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert list(rows) == list(report["runs"][0]["dimensions"])
    assert {"format", "completeness", "uniqueness", "balance"} <= set(rows)
    # duplicates copy samples of their own task type: the task-type balance stays put
    assert rows["balance"] == ["constant"]
    by_dim = {r["dimension"]: r for r in report["by_dimension"]}
    assert by_dim["balance"]["estimate"] is None and by_dim["completeness"]["n"] == 3
    _assert_graded_training_blocks(out)


def _assert_graded_training_blocks(out: Path) -> None:
    """Each graded candidate's summary has its training set attached (compare --train):
    at graded-100 the summaries are empty, so that slice's quality is the lowest."""
    block = json.loads((out / "graded-100" / "summary.json").read_text())["training"]
    assert block["quality_source"] == str(out / "quality" / "graded-100" / "quality.json")
    types = {s["task_type"]: s for s in block["slices"] if s["group_by"] == "task_type"}
    assert types["summary"]["flags"]["empty_response"] == types["summary"]["n_train"] == 238
    assert min(types.values(), key=lambda s: s["quality"])["quality"] < 0.5
    assert block["correlations"][0]["n"] == 9
    clean = json.loads((out / "graded-00" / "summary.json").read_text())["training"]
    assert all(s["quality"] > 0.99 for s in clean["slices"] if s["group_by"] == "task_type")


def test_checkpoints_evaluated_in_worker_processes_match_one_process(
    tmp_path: Path, tiny_base: Path
) -> None:
    """The demo evaluates its checkpoints in two single-threaded workers: the runs they
    write hold the records an in-process run gives, and a complete run is reused."""
    from collapse_eval.demo.run import _log_evaluated, evaluation_tasks
    from collapse_eval.progress import QuietProgress
    from collapse_eval.records import load_run
    from collapse_eval.runner import RunSpec, run_model

    base = tiny_base
    shutil.copytree(base, tmp_path / "copy")
    domain = tmp_path / "domain.jsonl"
    lines = world.DOMAIN_TEST_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    domain.write_text("".join(lines[:12]), encoding="utf-8")
    spec = RunSpec(
        model=str(base),
        domain_files=(domain,),
        engine="hf",
        engine_args={"batch_size": "64"},
        run_general=False,
        use_cache=False,
    )
    checkpoints = [("base", base), ("copy", tmp_path / "copy")]
    messages: list[str] = []

    class Log(QuietProgress):
        def log(self, message: str) -> None:
            messages.append(message)

    tasks = evaluation_tasks(checkpoints, spec, tmp_path / "runs")
    assert [(t.name, t.after) for t in tasks] == [("evaluate base", ()), ("evaluate copy", ())]
    run_tasks(tasks, 2, on_done=lambda task, result: _log_evaluated(Log(), task, result))
    assert sorted(m.split()[2] for m in messages) == ["base", "copy"]
    assert all(m.startswith("demo: evaluated ") and m.endswith(" s CPU)") for m in messages)
    for name, checkpoint in checkpoints:
        alone = run_model(dataclasses.replace(spec, model=str(checkpoint)), tmp_path / name)
        in_worker = load_run(tmp_path / "runs" / name)
        assert len(in_worker.records) == 12
        assert [(r.item_id, r.prediction, r.score) for r in in_worker.records] == [
            (r.item_id, r.prediction, r.score) for r in alone.records
        ]
    records = tmp_path / "runs" / "base" / "records.jsonl"
    before = records.stat().st_mtime_ns
    # complete runs: no task, so no worker is started and nothing is rewritten
    assert evaluation_tasks(checkpoints, spec, tmp_path / "runs") == []
    # a checkpoint still being trained: its evaluation waits for it
    later = evaluation_tasks(
        [("late", tmp_path / "late")], spec, tmp_path / "runs", frozenset({"late"})
    )
    assert [(t.name, t.after) for t in later] == [("evaluate late", ("late",))]
    assert records.stat().st_mtime_ns == before


def test_a_second_call_reuses_the_cached_world(small_world, monkeypatch) -> None:
    cache, built, _ = small_world

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached world must not be rebuilt")

    monkeypatch.setattr(world, "build_base", no_training)
    monkeypatch.setattr(world, "finetune", no_training)
    assert ensure_demo_world(cache, config=WorldConfig.test()) == built


def test_the_cache_key_follows_the_config() -> None:
    config = WorldConfig.test()
    assert world_key(config) == world_key(WorldConfig.test())
    assert world_key(config) != world_key(dataclasses.replace(config, finetune_steps=81))
    assert world_key(config) != world_key(WorldConfig.demo())


def test_an_interrupted_build_leaves_no_half_checkpoint_and_resumes(
    tmp_path: Path, monkeypatch
) -> None:
    """Ctrl-C during a fine-tune: the base stays (whole), no scratch directory or
    half checkpoint is left, the world is not marked complete; the next call trains only
    what is missing."""
    tiny = _tiny_world(finetune_steps=1, graded_levels=())

    def interrupted(base: Path, out: Path, *args: object, **kwargs: object) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")  # half written
        raise KeyboardInterrupt

    real_finetune = world.finetune
    monkeypatch.setattr(world, "finetune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_world(tmp_path, config=tiny, workers=1)
    root = tmp_path / world_key(tiny)
    assert sorted(p.name for p in root.iterdir()) == ["base"]
    assert not (root / "world.json").exists()
    # a worker killed mid-build leaves its scratch directory behind: the next build
    # removes it (its pid is gone), and keeps a live builder's
    (root / ".building-999999999-mixed-x1" / "mixed").mkdir(parents=True)
    (root / f".building-{os.getpid()}-mixed-x2").mkdir()

    def no_base(*args: object, **kwargs: object) -> None:
        raise AssertionError("the base is whole: it must not be trained again")

    monkeypatch.setattr(world, "build_base", no_base)
    monkeypatch.setattr(world, "finetune", real_finetune)
    messages: list[str] = []
    built = ensure_demo_world(tmp_path, config=tiny, workers=1, progress=messages.append)
    assert messages[0] == f"resuming the demo world build in {root} (built: base)"
    assert sorted(p.name for p in root.iterdir()) == [
        f".building-{os.getpid()}-mixed-x2",
        "base",
        "domain-only",
        "mixed",
        "world.json",
    ]
    assert built.mixed == root / "mixed"
    stages = json.loads((root / "world.json").read_text())["stages"]
    assert sorted(stages) == ["domain-only", "mixed"]  # what this call trained


def test_training_is_bit_identical_across_runs(tmp_path: Path, tiny_base: Path) -> None:
    again = train.build_base(tmp_path / "again", _tiny_world())
    weights = (tiny_base / "model.safetensors").read_bytes()
    assert weights == (again / "model.safetensors").read_bytes()
    assert (tiny_base / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_the_demo_compares_both_candidates_in_one_compare(small_world, tmp_path: Path) -> None:
    from collapse_eval.demo.run import run_demo

    cache, _, _ = small_world
    out = tmp_path / "demo"
    rows = run_demo(out, cache_dir=cache, world_config=WorldConfig.test())
    graded = ["graded-00", "graded-41", "graded-100"]
    assert [r.name for r in rows] == ["domain-only", "mixed", *graded]
    assert [r.summary for r in rows[:2]] == [
        out / "domain-only" / "summary.json",
        out / "mixed" / "summary.json",
    ]
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == sorted(["base", "domain-only", "mixed", *graded])
    for name in ("domain-only", "mixed"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["base"]["run"] == str(out / "runs" / "base")
        assert (out / name / "report.html").is_file()
    page = (out / "index.html").read_text()
    assert 'href="domain-only/report.html"' in page and 'href="mixed/report.html"' in page
    assert (out / "overview.png").is_file()
    # every candidate's drift on the demo probe, in its summary and the overview column
    from collapse_eval.demo.drift_study import demo_probe_texts
    from collapse_eval.drift.measure import texts_hash

    assert all(r.drift is not None and r.drift > 0 for r in rows)
    for row in rows:
        probe = json.loads(row.summary.read_text())["drift"]["sets"]["general_probe"]
        assert probe["mean_kl"] == row.drift and probe["n_texts"] == 200
        assert probe["texts_sha256"] == texts_hash(demo_probe_texts())
    assert "drift (KL/token)" in page


def test_fine_tunes_in_worker_processes_match_one_process(tmp_path: Path, tiny_base: Path) -> None:
    """Two single-threaded worker processes give the weights one process gives."""
    tiny = _tiny_world(finetune_steps=2, graded_levels=(3,), graded_steps=2)
    roots = tmp_path / "one", tmp_path / "two"
    for root in roots:
        shutil.copytree(tiny_base, root / "base")
    tasks = [world.world_tasks(root, tiny, None) for root in roots]
    assert [t.name for t in tasks[0]] == ["mixed", "domain-only", "graded-66"]
    one = run_tasks(tasks[0], 1)
    two = run_tasks(tasks[1], 2)
    assert sorted(one) == sorted(two) == ["domain-only", "graded-66", "mixed"]
    for job in world._jobs(tiny):
        weights = (roots[0] / job.name / "model.safetensors").read_bytes()
        assert weights == (roots[1] / job.name / "model.safetensors").read_bytes()
    # the graded candidate trained on its own (corrupted) set: other weights than mixed
    assert (roots[0] / "graded-66" / "model.safetensors").read_bytes() != (
        roots[0] / "mixed" / "model.safetensors"
    ).read_bytes()

"""run/compare orchestration with the fake engine: records, manifest, resume, no model reload."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import EngineError, UsageError
from collapse_eval.records import load_run, read_records
from collapse_eval.runner import RunSpec, compare, run_model


def _domain_file(path: Path, n: int = 40) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "task_type": ["intent", "budget"][i % 2],
                        "output_format": ["label", "number"][i % 2],
                        "prompt": f"Q{i}: ",
                        "reference": ["buy", 100 + i][i % 2],
                        "metadata": {"cluster": f"d{i // 4}"},
                    }
                )
                + "\n"
            )
    return path


def _oracle(correct_every: int) -> FakeEngine:
    def answer(prompt: str) -> str:
        i = int(prompt[1:].split(":")[0])
        right = i % correct_every == 0
        return ("buy" if i % 2 == 0 else str(100 + i)) if right else "rent"

    return FakeEngine(name=f"oracle-{correct_every}", answers=answer)


class CrashingEngine(FakeEngine):
    """Dies on its third generate call, like a process killed mid-run."""

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        if sum(1 for kind, _ in self.calls if kind == "generate") >= 2:
            raise EngineError("simulated crash")
        return super().generate(requests)


def test_run_writes_records_and_manifest(tmp_path: Path) -> None:
    spec = RunSpec(
        model="m", domain_files=(_domain_file(tmp_path / "rt.jsonl"),), run_general=False
    )
    run = run_model(spec, tmp_path / "run", engine_factory=lambda s: _oracle(1))
    assert len(run.records) == 40
    assert all(r.score == 1.0 for r in run.records)
    assert run.manifest.complete and run.manifest.tasks["rt"].primary_metric == "score"
    assert run.manifest.tasks["rt"].n == 40
    assert {r.cluster for r in run.records} == {f"d{i}" for i in range(10)}


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl", n=200)
    spec = RunSpec(model="m", domain_files=(domain,), run_general=False)
    crashing = CrashingEngine(name="oracle", answers=lambda p: "buy")
    with pytest.raises(EngineError):
        run_model(spec, tmp_path / "run", engine_factory=lambda s: crashing)
    partial = read_records(tmp_path / "run" / "records.jsonl")
    assert 0 < len(partial) < 200
    assert not json.loads((tmp_path / "run" / "manifest.json").read_text())["complete"]

    resumed = FakeEngine(name="oracle", answers=lambda p: "buy")
    run = run_model(spec, tmp_path / "run", engine_factory=lambda s: resumed)
    assert sorted(r.item_id for r in run.records) == sorted(f"q{i}" for i in range(200))
    generated = sum(n for kind, n in resumed.calls if kind == "generate")
    assert generated == 200 - len(partial)  # only the missing items were asked for
    # A complete run is not recomputed, and no engine is even created.
    run_model(spec, tmp_path / "run", engine_factory=lambda s: pytest.fail("engine loaded"))


def test_run_dir_of_another_model_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl", n=4)
    run_model(
        RunSpec(model="m", domain_files=(domain,), run_general=False),
        tmp_path / "run",
        engine_factory=lambda s: _oracle(1),
    )
    with pytest.raises(UsageError, match="another checkpoint"):
        run_model(
            RunSpec(model=str(tiny_model), domain_files=(domain,), run_general=False),
            tmp_path / "run",
            engine_factory=lambda s: _oracle(1),
        )


def test_compare_checkpoints_with_fake_engines(tmp_path: Path) -> None:
    domain = _domain_file(tmp_path / "rt.jsonl", n=200)
    engines = {"base": _oracle(5), "tuned": _oracle(1)}
    spec = RunSpec(model="", domain_files=(domain,), run_general=False)
    summary = compare(
        "base", "tuned", spec, tmp_path / "out", engine_factory=lambda s: engines[s.model]
    ).to_json()
    task_row = next(
        c for c in summary["comparisons"] if c["suite"] == "domain" and c["group_by"] is None
    )
    assert task_row["base_mean"] == pytest.approx(0.2)
    assert task_row["tuned_mean"] == pytest.approx(1.0)
    assert task_row["status"] == "improved"
    assert summary["verdict"] == "pass"
    groups = {(c["group_by"], c["group"]) for c in summary["comparisons"] if c["group_by"]}
    assert groups == {
        ("task_type", "intent"),
        ("task_type", "budget"),
        ("output_format", "label"),
        ("output_format", "number"),
    }
    # Re-judging from the run directories needs no engine at all.
    again = compare(
        str(tmp_path / "out" / "runs" / "base"),
        str(tmp_path / "out" / "runs" / "tuned"),
        spec,
        tmp_path / "out2",
        engine_factory=lambda s: pytest.fail("engine loaded"),
    ).to_json()
    assert again["comparisons"] == summary["comparisons"]
    assert load_run(tmp_path / "out" / "runs" / "tuned").manifest.engine == "fake"


def test_run_with_general_suite_records_every_task_and_skips_them_on_resume(
    tmp_path: Path, tiny_model: Path
) -> None:
    from collapse_eval.engines.hf import HFEngine

    spec = RunSpec(model=str(tiny_model), suite="quick", limit=3)
    run = run_model(spec, tmp_path / "run", engine_factory=lambda s: HFEngine(s.model))
    tasks = run.manifest.tasks
    assert set(tasks) == {"demo_arithmetic", "demo_capitals", "demo_copy", "demo_sort"}
    assert all(info.suite == "general" and info.n == 3 for info in tasks.values())
    assert tasks["demo_capitals"].primary_metric == "acc"
    for task in tasks:
        primary = [
            r for r in run.records if r.task == task and r.metric == run.primary_metric(task)
        ]
        assert sorted(r.item_id for r in primary) == ["0", "1", "2"]
    # Complete: a second run neither loads a model nor writes anything.
    before = (tmp_path / "run" / "records.jsonl").read_bytes()
    run_model(spec, tmp_path / "run", engine_factory=lambda s: pytest.fail("engine loaded"))
    assert (tmp_path / "run" / "records.jsonl").read_bytes() == before


def test_complete_run_covers_group_entries_by_the_records_group_not_by_name_prefix() -> None:
    from collapse_eval.config import BenchmarkEntry, Suite
    from collapse_eval.records import ItemRecord, RunManifest, TaskInfo
    from collapse_eval.runner import _covers

    manifest = RunManifest(
        model="m",
        complete=True,
        tasks={"mmlu_anatomy": TaskInfo(suite="general"), "arc_easy": TaskInfo(suite="general")},
    )
    records = [
        ItemRecord("general", "mmlu_anatomy", "0", "acc", 1.0, metadata={"group": "mmlu"}),
        ItemRecord("general", "arc_easy", "0", "acc", 1.0),
    ]
    assert _covers(manifest, records, {}, Suite("s", (BenchmarkEntry(task="mmlu"),)))
    # "arc_easy" is not the group "arc": a prefix match would wrongly skip the work.
    assert not _covers(manifest, records, {}, Suite("s", (BenchmarkEntry(task="arc"),)))

"""`compare BASE TUNED --sequential` on a checkpoint: the candidate evaluated in rounds.

The fake engine answers domain items by their number (tests/test_runner.py's oracle), so a
candidate's scores, and the looks that decide it, are known in advance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.columns import load_run_columns
from collapse_eval.compare import compare_runs
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.policy import Policy, SequentialPolicy
from collapse_eval.records import load_run, read_json
from collapse_eval.runner import RunSpec, compare, run_model
from tests.test_runner import _domain_file, _oracle

POLICY = Policy(sequential=SequentialPolicy())  # the default design: 5 looks
N = 400  # domain items (clusters of 4): look k holds 80 k of them


def _spec(tmp_path: Path) -> RunSpec:
    return RunSpec(
        model="", domain_files=(_domain_file(tmp_path / "rt.jsonl", n=N),), run_general=False
    )


def _engines(**extra: FakeEngine) -> dict[str, FakeEngine]:
    # base right on every 5th item, the candidate on every 3rd: a domain gain of 0.13 that
    # the design shows at look 2 (look 1, 80 items, does not hold enough evidence).
    return {"base": _oracle(5), "tuned": _oracle(3), **extra}


def _live(
    tmp_path: Path, engines: dict[str, Any], out: str = "cmp", spec: RunSpec | None = None
) -> Any:
    return compare(
        "base",
        "tuned",
        spec or _spec(tmp_path),
        tmp_path / out,
        policy=POLICY,
        engine_factory=lambda s: engines[s.model],
    )


def _records(run_dir: Path) -> list[tuple[str, float, str | None]]:
    return sorted((r.item_id, r.score, r.prompt_hash) for r in load_run(run_dir).records)


def test_live_run_stops_at_the_replays_look_with_the_replays_block(tmp_path: Path) -> None:
    summary = _live(tmp_path, _engines())
    block = summary.sequential
    assert (summary.verdict, block["verdict"], block["stop_look"]) == ("pass", "pass", 2)
    assert (block["items_evaluated"], block["items_available"]) == (160, 400)
    tuned_dir = tmp_path / "cmp" / "runs" / "tuned"
    assert len(load_run(tuned_dir).records) == 160  # only the items the design looked at
    manifest = read_json(tuned_dir / "manifest.json")
    assert manifest["complete"] is True
    assert manifest["sequential"] == {
        "looks": 5,
        "stop_look": 2,
        "verdict": "pass",
        "order_seed": 0,
        "tasks": {
            "rt": {
                "suite": "domain",
                "items_evaluated": 160,
                "items_available": 400,
                "stop_look": 2,
            }
        },
    }
    # The replay on the candidate's full records takes the same looks and decision.
    full = run_model(
        dataclasses.replace(_spec(tmp_path), model="tuned"),
        tmp_path / "full",
        engine_factory=lambda s: _oracle(3),
    )
    base = load_run_columns(tmp_path / "cmp" / "runs" / "base")
    replay = compare_runs(base, load_run_columns(full.path), POLICY).sequential
    assert replay is not None
    assert {k: v for k, v in block.items() if k != "fixed_n_verdict"} == {
        k: v for k, v in replay.items() if k != "fixed_n_verdict"
    }
    # ... and the items evaluated are the replay's first 160 in its order, scored alike.
    full_scores = {r.item_id: r.score for r in full.records}
    assert all(full_scores[r.item_id] == r.score for r in load_run(tuned_dir).records)


class _StopsAfter(FakeEngine):
    """The candidate, interrupted (Ctrl-C) on the first generation after ``calls`` of them."""

    def __init__(self, calls: int) -> None:
        super().__init__(name="oracle-3", answers=_oracle(3)._answers)
        self.allowed = calls

    def generate(self, requests: Any) -> list[str]:
        if sum(1 for kind, _ in self.calls if kind == "generate") >= self.allowed:
            raise KeyboardInterrupt
        return super().generate(requests)


def test_interrupted_after_round_one_resumes_to_the_same_decision_and_records(
    tmp_path: Path,
) -> None:
    whole = _live(tmp_path, _engines(), out="whole")
    # Round 1 is 80 items: two generate calls (batches of 64 and 16); Ctrl-C on the third.
    with pytest.raises(KeyboardInterrupt):
        _live(tmp_path, {"base": _oracle(5), "tuned": _StopsAfter(2)}, out="cut")
    cut_dir = tmp_path / "cut" / "runs" / "tuned"
    assert (
        len(load_run(cut_dir).records) == 80
        and not read_json(cut_dir / "manifest.json")["complete"]
    )
    resumed_engine = _StopsAfter(10**6)
    resumed = _live(tmp_path, {"base": _oracle(5), "tuned": resumed_engine}, out="cut")
    # Only round 2 was evaluated again: 80 items, none twice.
    assert sum(n for kind, n in resumed_engine.calls if kind == "generate") == 80
    assert resumed.sequential == whole.sequential
    assert _records(cut_dir) == _records(tmp_path / "whole" / "runs" / "tuned")
    # Run again: the records answer every look, nothing is evaluated.
    again_engine = _StopsAfter(0)
    again = _live(tmp_path, {"base": _oracle(5), "tuned": again_engine}, out="cut")
    assert again.sequential == whole.sequential and again_engine.calls == []


def test_collapsed_candidate_fails_at_the_first_testing_look(tmp_path: Path) -> None:
    never = FakeEngine(name="never", default_answer="sell")  # every domain item wrong
    summary = _live(tmp_path, _engines(tuned=never))
    block = summary.sequential
    assert (summary.verdict, block["stop_look"], block["items_evaluated"]) == ("fail", 1, 80)
    (gain,) = block["comparisons"]
    assert gain["status"] == "gain_ruled_out"


def test_several_candidates_each_stop_at_their_own_look(tmp_path: Path) -> None:
    from collapse_eval.runner import compare_candidates

    engines = _engines(never=FakeEngine(name="never", default_answer="sell"))
    results = compare_candidates(
        "base",
        ["tuned", "never"],
        _spec(tmp_path),
        tmp_path / "out",
        policy=POLICY,
        engine_factory=lambda s: engines[s.model],
    )
    stops = {r.name: (r.summary.verdict, r.summary.sequential["stop_look"]) for r in results}
    assert stops == {"tuned": ("pass", 2), "never": ("fail", 1)}
    for name, held in (("tuned", 160), ("never", 80)):
        run_dir = tmp_path / "out" / "runs" / name
        assert len(load_run(run_dir).records) == held
        assert (
            read_json(run_dir / "manifest.json")["sequential"]["tasks"]["rt"]["items_evaluated"]
            == held
        )


def test_a_sequential_run_is_not_compared_as_a_full_run(tmp_path: Path) -> None:
    from collapse_eval.errors import UsageError
    from collapse_eval.runner import check_finished

    _live(tmp_path, _engines())
    tuned = load_run_columns(tmp_path / "cmp" / "runs" / "tuned")
    with pytest.raises(UsageError, match="a sequential run written by `compare --sequential`"):
        check_finished(tuned)
    # `collapse-eval run` into it completes it as a full run (the 240 items left).
    engine = _StopsAfter(10**6)
    run = run_model(
        dataclasses.replace(_spec(tmp_path), model="tuned"),
        tmp_path / "cmp" / "runs" / "tuned",
        engine_factory=lambda s: engine,
    )
    assert len(run.records) == N and run.manifest.sequential is None
    assert sum(n for kind, n in engine.calls if kind == "generate") == N - 160


def _adds(right: Any) -> FakeEngine:
    """Answers 'Q: What is a + b?' with a + b when ``right(a + b)``, else with 0."""

    def answer(prompt: str) -> str:
        a, b = (int(x) for x in prompt.split("What is ")[1].split("?")[0].split(" + "))
        return str(a + b) if right(a + b) else "0"

    return FakeEngine(name=f"adds-{id(right)}", answers=answer)


def test_lm_eval_documents_by_index_score_as_the_full_run(tmp_path: Path) -> None:
    spec = RunSpec(model="", tasks=("demo_arithmetic",), limit=300)
    engines = {"base": _adds(lambda s: s % 3 != 0), "tuned": _adds(lambda s: s % 2 == 0)}
    summary = _live(tmp_path, engines, spec=spec)
    block = summary.sequential
    # 0.67 against 0.5: regressed by far more than the 2-point margin; look 1 (60 items)
    # does not show it beyond its boundary, look 2 (120) does.
    assert (summary.verdict, block["stop_look"], block["items_evaluated"]) == ("fail", 2, 120)
    assert block["comparisons"][0]["status"] == "regressed"
    live = {r.item_id: r for r in load_run(tmp_path / "cmp" / "runs" / "tuned").records}
    full = run_model(
        dataclasses.replace(spec, model="tuned"),
        tmp_path / "full",
        engine_factory=lambda s: engines["tuned"],
    )
    assert len(full.records) == 300 and len(live) == 120
    # lm-eval numbers a subset's documents 0, 1, ...: each record has its own document's
    # index back, and is the full run's record of that document, prompt and score alike.
    by_id = {r.item_id: r for r in full.records}
    for item_id, record in live.items():
        assert record == by_id[item_id]
    assert max(int(i) for i in live) > 200  # the looks are spread over the task
    base = load_run_columns(tmp_path / "cmp" / "runs" / "base")
    replay = compare_runs(base, load_run_columns(full.path), POLICY).sequential
    assert replay is not None and replay["comparisons"] == block["comparisons"]


def test_a_round_is_one_engine_call_for_all_its_lm_eval_tasks(tmp_path: Path) -> None:
    spec = RunSpec(model="", tasks=("demo_arithmetic", "demo_copy"), limit=150)
    engines = {"base": FakeEngine("b", default_answer="x"), "tuned": FakeEngine("t")}
    summary = _live(tmp_path, engines, spec=spec)
    rounds = summary.sequential["stop_look"]
    calls = [n for kind, n in engines["tuned"].calls if kind == "generate"]
    # One generate call per round, holding both tasks' documents of that look (30 each).
    assert len(calls) == rounds and calls == [60] * rounds
    records = load_run(tmp_path / "cmp" / "runs" / "tuned").records
    assert {r.task for r in records} == {"demo_arithmetic", "demo_copy"}
    assert len(records) == 60 * rounds


def test_only_tasks_whose_prompts_do_not_depend_on_the_subset_are_cut() -> None:
    from types import SimpleNamespace

    from collapse_eval.config import BenchmarkEntry
    from collapse_eval.general import _subset_safe

    def task(shots: int, sampler: str | None) -> Any:
        fewshot = SimpleNamespace(sampler=sampler) if sampler else None
        return SimpleNamespace(config=SimpleNamespace(num_fewshot=shots, fewshot_config=fewshot))

    entry = BenchmarkEntry(task="t")
    assert _subset_safe(task(0, None), entry)
    assert _subset_safe(task(5, "first_n"), entry)  # the same examples for every document
    assert not _subset_safe(task(5, None), entry)  # drawn from one stream in document order
    assert not _subset_safe(task(0, None), dataclasses.replace(entry, num_fewshot=3))


def test_hf_engine_on_the_tiny_models_from_the_command_line(
    tmp_path: Path, tiny_model: Path, sharp_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collapse_eval.cli import main

    rows = [
        {
            "id": f"c{i}",
            "task_type": "intent",
            "output_format": "label",
            "prompt": f"Customer {i} wants to",
            "choices": ["rent", "buy"],
            "reference": ["rent", "buy"][i % 2],
        }
        for i in range(90)
    ]
    domain = tmp_path / "intent.jsonl"
    domain.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    policy = tmp_path / "policy.yaml"
    policy.write_text("sequential:\n  looks: 3\n", encoding="utf-8")
    args = ["--domain", str(domain), "--no-general", "--engine", "hf", "--policy", str(policy)]
    args += ["--cache-dir", str(tmp_path / "cache"), "-q"]
    out = tmp_path / "cmp"
    code = main(["compare", str(tiny_model), str(sharp_model), *args, "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    block = summary["sequential"]
    assert code == (0 if summary["verdict"] == "pass" else 1)
    assert block["design"]["looks"] == 3 and block["items_available"] == 90
    tuned = out / "runs" / "tuned"
    manifest = read_json(tuned / "manifest.json")
    assert manifest["sequential"]["stop_look"] == block["stop_look"]
    records = load_run(tuned).records
    assert len(records) == block["items_evaluated"] == 30 * block["stop_look"]
    # The same command again: the run directory answers every look, the same decision.
    assert main(["compare", str(tiny_model), str(sharp_model), *args, "--out", str(out)]) == code
    again = json.loads((out / "summary.json").read_text(encoding="utf-8"))["sequential"]
    assert again["comparisons"] == block["comparisons"]
    assert load_run(tuned).records == records

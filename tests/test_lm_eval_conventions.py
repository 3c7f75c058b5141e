"""Options in lm-eval's spelling (--tasks, --num-fewshot, --model_args, --batch_size,
--device, --output_path), `collapse-eval suites` / `tasks`, and a quiet, informative log:
no git noise from lm-eval, the vLLM fallback notice once, progress lines for general tasks."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli, main
from collapse_eval.config import (
    BenchmarkEntry,
    Suite,
    choose_suite,
    load_benchmarks,
    parse_task_list,
)
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.engines.registry import apply_shorthand_args
from collapse_eval.errors import UsageError
from collapse_eval.progress import PlainProgress
from collapse_eval.records import load_run, read_json
from collapse_eval.runner import RunSpec, run_model
from tests.progresslog import Log


@pytest.fixture
def engine_args_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, str]]]:
    """Every engine the CLI builds is a fake one; the engine arguments it got are kept."""
    seen: list[dict[str, str]] = []

    def make_engine(kind: str | None, model: str, engine_args: Any) -> FakeEngine:
        seen.append(dict(engine_args))
        return FakeEngine(model)

    monkeypatch.setattr("collapse_eval.engines.registry.make_engine", make_engine)
    # the made-up model names are not checkpoints: skip compare's check that they exist
    monkeypatch.setattr("collapse_eval.runner._check_model_source", lambda *args: None)
    yield seen


def _run(tmp_path: Path, *options: str, engine: str = "hf") -> list[str]:
    return [
        "run",
        "no-such-model",
        "--engine",
        engine,
        "--no-general",
        "--no-cache",
        "-q",
        *options,
        "--out",
        str(tmp_path / "run"),
    ]


# ---------------------------------------------------------------- engine arguments


def test_lm_eval_option_spellings_reach_the_engine(
    tmp_path: Path, engine_args_seen: list[dict[str, str]]
) -> None:
    args = ["run", "no-such-model", "--engine", "hf", "--no_general", "--no-cache", "-q"]
    code = main([*args, "--model_args", "dtype=float32,batch_size=16", "--output_path", "r1"])
    assert code == 0
    code = main(_run(tmp_path, "--engine-args", "dtype=bfloat16", "--model-args", "max_length=64"))
    assert code == 0
    assert engine_args_seen == [
        {"dtype": "float32", "batch_size": "16"},
        {"dtype": "bfloat16", "max_length": "64"},
    ]
    assert (tmp_path / "r1" / "manifest.json").is_file()  # --output_path is --out


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative outputs (--output_path r1) land in tmp_path


def test_batch_size_and_device_are_the_hf_engines_arguments(
    tmp_path: Path, engine_args_seen: list[dict[str, str]]
) -> None:
    assert main(_run(tmp_path, "--batch-size", "8", "--device", "cpu")) == 0
    assert main(_run(tmp_path, "--batch_size", "4", "--engine-arg", "dtype=float32")) == 0
    assert engine_args_seen == [
        {"batch_size": "8", "device": "cpu"},
        {"dtype": "float32", "batch_size": "4"},
    ]


def test_batch_size_is_vllms_max_num_seqs_and_openai_refuses_both() -> None:
    assert apply_shorthand_args("vllm", {"dtype": "half"}, {"batch_size": "32"}) == {
        "dtype": "half",
        "max_num_seqs": "32",
    }
    with pytest.raises(UsageError, match=r"--batch-size: the openai engine has no batch size"):
        apply_shorthand_args("openai", {}, {"batch_size": "4", "device": None})
    with pytest.raises(UsageError, match=r"--device: the openai engine has no device"):
        apply_shorthand_args("openai", {}, {"batch_size": None, "device": "cuda"})


def test_device_on_a_vllm_without_a_device_argument_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collapse_eval.engines import registry
    from collapse_eval.engines.args import EngineArgSchema

    fields = ["max_num_seqs", "dtype"]  # a vLLM whose EngineArgs has no `device` field
    schema = EngineArgSchema("vllm", {}, passthrough=lambda: fields)
    monkeypatch.setattr(registry, "engine_arg_schema", lambda kind: schema)
    with pytest.raises(UsageError, match=r"--device: the vllm engine has no device \(this vLLM"):
        apply_shorthand_args("vllm", {}, {"batch_size": "8", "device": "cuda:1"})
    fields.append("device")
    assert apply_shorthand_args("vllm", {}, {"batch_size": "8", "device": "cuda:1"}) == {
        "max_num_seqs": "8",
        "device": "cuda:1",
    }


def test_shorthand_and_engine_arg_for_the_same_argument_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_args_seen: list[dict[str, str]]
) -> None:
    assert main(_run(tmp_path, "--batch-size", "8", "--engine-arg", "batch_size=16")) == 2
    err = capsys.readouterr().err
    assert "--batch-size 8 and --engine-arg batch_size=16 set the same argument" in err
    assert main(_run(tmp_path, "--batch-size", "4", engine="openai")) == 2
    assert "--batch-size: the openai engine has no batch size" in capsys.readouterr().err
    assert engine_args_seen == []  # refused before any engine is built


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--batch-size", "auto"], "'auto' is not a valid integer"),
        (["--batch-size", "0"], "0 is not in the range x>=1"),
        (["--num-fewshot", "-1"], "-1 is not in the range x>=0"),
        (["--taks", "arc_easy"], "Did you mean '--tasks'?"),
        (["--batchsize", "4"], "Did you mean '--batch-size'?"),
        (["--tasks", "a,,b"], "--tasks 'a,,b': an empty task name"),
        (["--tasks", "a,b", "--tasks", "a"], "--tasks: task 'a' is named twice"),
        (["--tasks", "a"], "--tasks chooses general tasks, and --no-general skips them"),
        (["--num-fewshot", "2"], "--num-fewshot chooses general tasks, and --no-general"),
        (["--model_args", "pretrained=gpt2,dtype=float32"], "the model is the MODEL argument"),
    ],
)
def test_bad_new_options_are_exit_2_with_a_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    engine_args_seen: list[dict[str, str]],
    options: list[str],
    message: str,
) -> None:
    assert main(_run(tmp_path, *options)) == 2
    assert message in capsys.readouterr().err
    assert engine_args_seen == []


# ---------------------------------------------------------------- --tasks and --num-fewshot


def test_task_list_splits_commas_and_repeats() -> None:
    assert parse_task_list(["arc_easy,hellaswag", " piqa "]) == ("arc_easy", "hellaswag", "piqa")


def test_tasks_make_an_ad_hoc_suite_with_lm_eval_defaults() -> None:
    config = load_benchmarks(None)
    suite, why = choose_suite(config, None, tasks=("demo_copy", "demo_sort"), num_fewshot=3)
    assert suite.task_names == ("demo_copy", "demo_sort")
    assert [(e.num_fewshot, e.metric, e.margin, e.limit) for e in suite.entries] == [
        (3, None, None, None),
        (3, None, None, None),
    ]
    assert "first lm-eval metric" in why and "policy's default" in why and "3 (--num" in why
    with pytest.raises(UsageError, match="--tasks and --suite both choose the general suite"):
        choose_suite(config, "quick", tasks=("demo_copy",))


def test_num_fewshot_overrides_every_entry_of_a_suite() -> None:
    suite, why = choose_suite(load_benchmarks(None), "quick", num_fewshot=2)
    assert {e.num_fewshot for e in suite.entries} == {2}
    assert {e.limit for e in suite.entries} == {50}  # the rest of each entry is kept
    assert "num_fewshot 2 for every task (--num-fewshot)" in why


def test_tasks_run_resumes_and_recomputes_when_num_fewshot_changes(tmp_path: Path) -> None:
    made: list[FakeEngine] = []

    def factory(spec: RunSpec) -> FakeEngine:
        made.append(FakeEngine(spec.model, default_answer="4"))
        return made[-1]

    spec = RunSpec(model="m", tasks=("demo_arithmetic", "demo_copy"), limit=3, num_fewshot=0)
    out = tmp_path / "run"
    run_model(spec, out, engine_factory=factory)
    manifest = read_json(out / "manifest.json")
    specs = {name: task["spec"] for name, task in manifest["tasks"].items()}
    assert specs["demo_arithmetic"]["num_fewshot"] == 0 and specs["demo_copy"]["limit"] == 3
    assert {task["primary_metric"] for task in manifest["tasks"].values()} == {"exact_match"}

    log = Log()
    run_model(spec, out, engine_factory=factory, progress=log)
    assert len(made) == 1 and any("already complete" in line for line in log.lines)

    log = Log()
    changed = RunSpec(model="m", tasks=("demo_arithmetic", "demo_copy"), limit=3, num_fewshot=1)
    run_model(changed, out, engine_factory=factory, progress=log)
    assert "general demo_arithmetic: num_fewshot 0 -> 1, recomputing" in log.lines
    assert {r.task for r in load_run(out).records} == {"demo_arithmetic", "demo_copy"}
    infos = load_run(out).manifest.tasks
    assert {info.num_fewshot for info in infos.values()} == {1}  # what lm-eval really used


def test_unknown_task_in_tasks_is_exit_2_with_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_args_seen: list[dict[str, str]]
) -> None:
    args = ["run", "m", "--engine", "hf", "--no-cache", "-q", "--out", str(tmp_path / "r")]
    assert main([*args, "--tasks", "demo_copy,demo_arithmetc"]) == 2
    err = capsys.readouterr().err
    assert "--tasks: unknown lm-eval task or group 'demo_arithmetc'." in err
    assert "Did you mean: demo_arithmetic" in err and "collapse-eval tasks PATTERN" in err
    assert main([*args, "--tasks", "demo_copy", "--suite", "quick"]) == 2
    assert "--tasks and --suite both choose the general suite" in capsys.readouterr().err
    assert engine_args_seen == []


def test_compare_of_run_directories_refuses_the_new_evaluation_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = lambda spec: FakeEngine(spec.model)  # noqa: E731
    domain = tmp_path / "d.jsonl"
    row = {"id": "a", "task_type": "t", "output_format": "label", "prompt": "Q", "reference": "x"}
    domain.write_text(json.dumps(row) + "\n", encoding="utf-8")
    for name in ("base", "tuned"):
        spec = RunSpec(model=name, domain_files=(domain,), run_general=False)
        run_model(spec, tmp_path / name, engine_factory=factory)
    base, tuned = str(tmp_path / "base"), str(tmp_path / "tuned")
    out = ["--out", str(tmp_path / "cmp")]
    options = ["--tasks", "demo_copy", "--num-fewshot", "1", "--batch-size", "2", "--device", "cpu"]
    assert main(["compare", base, tuned, *options, *out]) == 2
    err = capsys.readouterr().err
    assert "--tasks demo_copy, --num-fewshot 1, --batch-size 2, --device cpu have no effect" in err


# ---------------------------------------------------------------- suites and tasks


def test_suites_lists_each_suite_with_its_tasks_and_the_default(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    path = tmp_path / "bench.yaml"
    path.write_text(
        "include_paths: [tasks]\n"
        "suites:\n"
        "  mine:\n"
        "    - {task: arc_easy, limit: 20, num_fewshot: 5, metric: acc, margin: 0.03}\n"
        "    - hellaswag\n"
        "  other: [piqa]\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["suites", "--benchmarks", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        str(path),
        f"mine: 2 task(s)  (default: the first suite in {path})",
        "  arc_easy  limit 20, num_fewshot 5, metric acc, margin 0.03",
        "  hellaswag",
        "other: 1 task(s)",
        "  piqa",
    ]
    missing = CliRunner().invoke(cli, ["suites", "--benchmarks", str(tmp_path / "no.yaml")])
    assert missing.exit_code == 2 and "file not found (--benchmarks)" in missing.output


@pytest.fixture
def small_lm_eval(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """lm-eval's own listing replaced by three names (its real index takes ~10 s)."""
    from collapse_eval import task_list
    from collapse_eval.task_list import TaskRow

    calls: list[int] = []

    def rows(cache_dir: Path | None) -> list[TaskRow]:
        calls.append(1)
        return [
            TaskRow("arc_easy", "task", "multiple_choice", "acc", "lm-eval"),
            TaskRow("arc_challenge", "task", "multiple_choice", "acc", "lm-eval"),
            TaskRow("gsm8k", "task", "generate_until", "exact_match:strict-match", "lm-eval"),
        ]

    monkeypatch.setattr(task_list, "_lm_eval_rows", rows)
    monkeypatch.setattr(task_list, "_offline_dirs", lambda: [])
    return calls


def test_tasks_lists_matches_by_substring_or_glob_with_their_metric(
    tmp_path: Path, small_lm_eval: list[int]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_task.yaml").write_text(
        "task: my_arc_task\ndataset_path: json\noutput_type: generate_until\n"
        "doc_to_text: q\ndoc_to_target: a\n"
        "filter_list:\n  - name: strict\n    filter: [{function: take_first}]\n"
        "  - name: loose\n    filter: [{function: take_first}]\n"
        "metric_list: [{metric: exact_match}]\n",
        encoding="utf-8",
    )
    bench = tmp_path / "b.yaml"
    bench.write_text("include_paths: [mine]\nsuites: {s: [my_arc_task]}\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["tasks", "ARC", "--benchmarks", str(bench)])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["arc_challenge", "arc_easy", "my_arc_task"]
    mine_line = result.stdout.splitlines()[2].split()
    assert mine_line[1:3] == ["task", "exact_match:strict"] and mine_line[3] == str(mine)
    glob = runner.invoke(cli, ["tasks", "demo_*"])
    assert [line.split()[0] for line in glob.stdout.splitlines()] == [
        "demo_arithmetic",
        "demo_capitals",
        "demo_copy",
        "demo_sort",
    ]
    assert "collapse-eval" in glob.stdout.splitlines()[0]
    none = runner.invoke(cli, ["tasks", "no_such_thing"])
    assert none.exit_code == 2 and "no lm-eval task, group or tag matches 'no_such_thing'" in (
        none.output
    )


def test_lm_eval_listing_is_indexed_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collapse_eval import task_list
    from collapse_eval.task_list import TaskRow

    built: list[list[Path]] = []

    def index(roots: list[Path], source: str) -> list[TaskRow]:
        built.append(list(roots))
        return [TaskRow("arc_easy", "task", "multiple_choice", "acc", source)]

    monkeypatch.setattr(task_list, "_index_rows", index)
    first = task_list._lm_eval_rows(tmp_path)
    second = task_list._lm_eval_rows(tmp_path)
    assert first == second == [TaskRow("arc_easy", "task", "multiple_choice", "acc", "lm-eval")]
    assert len(built) == 1


# ---------------------------------------------------------------- a quiet, informative log


def _demo_suite(limit: int = 3) -> Suite:
    return Suite("s", (BenchmarkEntry(task="demo_arithmetic", limit=limit),))


def test_general_tasks_outside_a_git_checkout_print_no_git_errors(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from collapse_eval.general import run_general_suite

    assert not any((p / ".git").exists() for p in [tmp_path, *tmp_path.parents])
    got: list[str] = []
    run_general_suite(
        FakeEngine(default_answer="4"), _demo_suite(), on_task=lambda t, r, i: got.append(t)
    )
    assert got == ["demo_arithmetic"]
    err = capfd.readouterr().err
    assert "fatal" not in err and "not a git repository" not in err


def test_general_tasks_skip_the_run_metadata_lm_eval_would_collect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch's collect_env (pip list and a dozen more subprocesses, ~0.45 s) and git
    describe ran once per task and model; collapse-eval never reads what they return."""
    import subprocess

    import lm_eval.evaluator as evaluator
    import torch.utils.collect_env as collect_env

    from collapse_eval.general import run_general_suite

    calls: list[str] = []
    real_run = subprocess.run

    def recording_run(args: Any, *a: Any, **k: Any) -> Any:
        calls.append(str(args))
        return real_run(args, *a, **k)

    def recording_env_info() -> str:
        calls.append("collect_env")
        return ""

    monkeypatch.setattr(collect_env, "get_pretty_env_info", recording_env_info)
    monkeypatch.setattr(subprocess, "run", recording_run)
    originals = (evaluator.add_env_info, evaluator.get_git_commit_hash)
    got: list[str] = []
    suite = Suite(
        "s", (BenchmarkEntry("demo_arithmetic", limit=2), BenchmarkEntry("demo_copy", limit=2))
    )
    run_general_suite(FakeEngine(default_answer="4"), suite, on_task=lambda t, r, i: got.append(t))
    assert got == ["demo_arithmetic", "demo_copy"]
    assert calls == []
    # lm-eval is left as it was found
    assert (evaluator.add_env_info, evaluator.get_git_commit_hash) == originals


def test_fallback_notice_is_printed_once_per_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine_args_seen: list[dict[str, str]]
) -> None:
    from collapse_eval.engines import registry

    registry._notices_shown.clear()
    domain = tmp_path / "d.jsonl"
    row = {"id": "a", "task_type": "t", "output_format": "label", "prompt": "Q", "reference": "x"}
    domain.write_text(json.dumps(row) + "\n", encoding="utf-8")
    args = ["--domain", str(domain), "--no-general", "--no-cache", "--out", str(tmp_path / "c")]
    code = main(["compare", "base-model", "tuned-a", "tuned-b", *args])
    assert code in (0, 1)
    assert len(engine_args_seen) == 3  # base and two candidates were evaluated
    assert capsys.readouterr().err.count(registry.HF_FALLBACK_NOTICE) == 1


@pytest.fixture(autouse=True)
def _no_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collapse_eval.engines.registry.vllm_available", lambda: False)


class _LinesSeen(io.StringIO):
    """A log stream that sets ``enough`` once ``want`` lines start with ``prefix``."""

    def __init__(self, prefix: str, want: int) -> None:
        super().__init__()
        self.prefix, self.want = prefix, want
        self.enough = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if sum(line.startswith(self.prefix) for line in self.getvalue().splitlines()) >= self.want:
            self.enough.set()
        return written


def test_plain_progress_says_when_a_bar_starts_beats_while_it_waits_and_ends() -> None:
    # The opening line and two heartbeats, however long the heartbeat thread waits for a
    # core on a loaded machine: one long engine call, no advance until they are written.
    stream = _LinesSeen("general t: 0/5 requests", 3)
    with PlainProgress(stream, interval=0.05, quiet_interval=0.1).bar("general t", 5) as bar:
        assert stream.enough.wait(timeout=120), stream.getvalue()
        bar.advance(5)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "general t: 0/5 requests, 0s"
    assert len([line for line in lines if line.startswith("general t: 0/5 requests")]) >= 3
    assert lines[-1].startswith("general t: 5/5 requests, ") and "requests/s" in lines[-1]


def test_general_tasks_get_progress_lines_when_they_load_start_and_end() -> None:
    from collapse_eval.general import run_general_suite

    stream = io.StringIO()
    run_general_suite(
        FakeEngine(default_answer="4"),
        _demo_suite(limit=4),
        on_task=lambda t, r, i: stream.write(f"done {t}\n"),
        progress=PlainProgress(stream),
    )
    lines = stream.getvalue().splitlines()
    assert lines[0] == "general demo_arithmetic: loading the lm-eval task and its data"
    # The total (one generation per item) is known when lm-eval hands the requests over.
    assert lines[1] == "general demo_arithmetic: 0 requests, 0s"
    assert lines[2].startswith("general demo_arithmetic: 4/4 requests, ")
    assert lines[3] == "done demo_arithmetic"


@pytest.mark.slow
def test_tasks_end_to_end_on_a_real_checkpoint_outside_a_git_checkout(
    tmp_path: Path, tiny_model: Path
) -> None:
    """`collapse-eval run CKPT --tasks ... --num_fewshot 0 --batch_size 4` as a user types it,
    in a directory outside any git checkout, with its log on a pipe (plain progress)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "collapse_eval", "run", str(tiny_model), "--engine", "hf"]
    argv += ["--tasks", "demo_arithmetic,demo_copy", "--limit", "4", "--num_fewshot", "0"]
    argv += ["--batch_size", "4", "--no-cache", "--output_path", "run"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "fatal" not in done.stderr and "not a git repository" not in done.stderr
    log = done.stderr.splitlines()
    assert log[0].startswith("ad-hoc suite from --tasks: demo_arithmetic, demo_copy")
    assert log.index("general demo_arithmetic: 0 requests, 0s") < log.index(
        "general demo_arithmetic: 4 items"
    )
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["engine_args"]["dtype"] == "float32"
    assert {name: task["spec"]["num_fewshot"] for name, task in manifest["tasks"].items()} == {
        "demo_arithmetic": 0,
        "demo_copy": 0,
    }

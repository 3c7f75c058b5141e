"""The bad-input corpus: one case per failure class, each exit 2, no traceback, and a
message that names the file (line and field where there is one) and says what to do.

Case files live in tests/bad_inputs/<kind>/; cases whose files would be large, binary or
sensitive to git's line-ending handling (a 50 MB line, non-UTF-8 bytes, BOM, CRLF) and
model paths are generated here. Each row of CASES: (id, argv, substrings the output
must contain). ``{B}`` is tests/bad_inputs, ``{T}`` the test's tmp directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collapse_eval.cli import main

BAD = Path(__file__).parent / "bad_inputs"
GOOD_ITEM = {
    "id": "a",
    "task_type": "intent",
    "output_format": "label",
    "prompt": "I want to rent. Intent:",
    "reference": "rent",
}


def _validate(kind: str, name: str) -> list[str]:
    return ["validate", f"{{B}}/{kind}/{name}.jsonl"]


def _compare(run: str) -> list[str]:
    return ["compare", "{B}/runs/base", f"{{B}}/runs/{run}", "--out", "{T}/cmp", "-q"]


def _benchmarks(name: str) -> list[str]:
    return ["run", "{T}/no-model", "--benchmarks", f"{{B}}/benchmarks/{name}.yaml"] + [
        "--out",
        "{T}/run",
        "-q",
    ]


def _policy(name: str) -> list[str]:
    return ["compare", "{B}/runs/base", "{B}/runs/base", "--policy", f"{{B}}/policy/{name}.yaml"]


def _model(model: str) -> list[str]:
    return ["run", model, "--domain", "{T}/ok.jsonl", "--no-general", "--engine", "hf"] + [
        "--no-cache",
        "--out",
        "{T}/run",
        "-q",
    ]


D = "domain"
R = "training"
CASES: list[tuple[str, list[str], list[str]]] = [
    # domain test sets
    ("domain-invalid-json", _validate(D, "invalid_json"), [":2: invalid JSON", "one JSON object"]),
    ("domain-not-an-object", _validate(D, "not_an_object"), [":2: expected a JSON object"]),
    ("domain-missing-id", _validate(D, "missing_id"), [":2: field 'id': missing", 'add "id"']),
    (
        "domain-missing-prompt",
        _validate(D, "missing_prompt"),
        [":2: field 'prompt': needs exactly one", 'add "prompt"'],
    ),
    (
        "domain-missing-reference",
        _validate(D, "missing_reference"),
        [":2: field 'reference': missing", 'add "reference"'],
    ),
    (
        "domain-prompt-and-messages",
        _validate(D, "prompt_and_messages"),
        [":2: field 'prompt'", "found both", "keep one"],
    ),
    ("domain-empty", _validate(D, "empty"), ["empty.jsonl: no items", "one JSON object per line"]),
    (
        "domain-duplicate-ids",
        _validate(D, "duplicate_ids"),
        [":2: field 'id': duplicate id \"a\" (first on line 1)", "must be unique"],
    ),
    (
        "domain-unknown-output-format",
        _validate(D, "unknown_output_format"),
        [":2: field 'output_format'", "Did you mean 'label'?", "one of: label"],
    ),
    (
        "domain-reference-wrong-type",
        _validate(D, "reference_wrong_type"),
        [":2: field 'reference': must be a JSON object for output_format json"],
    ),
    (
        "domain-non-utf8",
        ["validate", "{T}/non_utf8.jsonl"],
        [":2: not UTF-8 text", "save the file as UTF-8"],
    ),
    (
        "domain-50mb-line",
        ["validate", "{T}/huge.jsonl"],
        [":2: line is 50 MB, over the 16 MB limit", "one item per line"],
    ),
    # training sets
    ("training-invalid-json", _validate(R, "invalid_json"), [":2: invalid JSON"]),
    ("training-not-an-object", _validate(R, "not_an_object"), [":2: expected a JSON object"]),
    (
        "training-missing-response",
        _validate(R, "missing_response"),
        [":2: field 'response': missing", 'add "response"'],
    ),
    (
        "training-prompt-and-messages",
        _validate(R, "prompt_and_messages"),
        [":2: field 'prompt'", "found both"],
    ),
    ("training-duplicate-ids", _validate(R, "duplicate_ids"), [":2: field 'id': duplicate id"]),
    (
        "training-unknown-output-format",
        _validate(R, "unknown_output_format"),
        [":2: field 'output_format'", "Did you mean 'json'?"],
    ),
    (
        "training-response-wrong-type",
        _validate(R, "response_wrong_type"),
        [":2: field 'response': must be a number"],
    ),
    # run directories
    (
        "run-missing-manifest",
        _compare("missing_manifest"),
        ["missing_manifest: has records.jsonl but no manifest.json", "Restore manifest.json"],
    ),
    (
        "run-newer-schema-version",
        _compare("newer_schema_version"),
        [
            "manifest.json: field 'schema_version'",
            "upgrade collapse-eval (pip install -U collapse-eval)",
        ],
    ),
    (
        "run-unpaired-items",
        _compare("unpaired_items"),
        ["3 only in base (rt-3, rt-4, rt-5)", "3 only in tuned (rt-10, rt-11, rt-12)", "same"],
    ),
    (
        "run-task-version-differs",
        _compare("task_version_differs"),
        ["task 'rt': version differs", "same task configuration"],
    ),
    (
        "run-fewshot-differs",
        _compare("fewshot_differs"),
        ["task 'rt': num_fewshot differs", "base 0", "tuned 5"],
    ),
    (
        "run-truncated-last-line",
        _compare("truncated_last_line"),
        [
            "warning: ",
            "truncated_last_line/records.jsonl:6: the last line is cut short",
            "this run is incomplete (domain task rt has 5 of its 6 items)",
        ],
    ),
    # benchmarks.yaml
    (
        "benchmarks-unknown-key",
        _benchmarks("unknown_key"),
        ["unknown_key.yaml:3: unknown key 'limt'", "Did you mean 'limit'?"],
    ),
    (
        "benchmarks-wrong-type",
        _benchmarks("wrong_type"),
        ["wrong_type.yaml:3: field 'limit': must be an integer >= 1, got 'many'"],
    ),
    (
        "benchmarks-margin-out-of-range",
        _benchmarks("margin_out_of_range"),
        ["margin_out_of_range.yaml:3: field 'margin': must be a number in [0, 1)"],
    ),
    (
        "benchmarks-unknown-task",
        _benchmarks("unknown_task"),
        ["unknown_task.yaml:4: ", "'arc_easyy'", "Did you mean", "lm-eval ls tasks"],
    ),
    (
        "benchmarks-python-object-tag",
        _benchmarks("python_object_tag"),
        ["python_object_tag.yaml:1: the YAML tag '!!python/object/apply:os.system'", "remove"],
    ),
    # policy.yaml
    (
        "policy-unknown-key",
        _policy("unknown_key"),
        ["unknown_key.yaml:3: unknown key 'margn' in general", "Did you mean 'margin'?"],
    ),
    (
        "policy-wrong-type",
        _policy("wrong_type"),
        ["wrong_type.yaml:2: field 'domain.require_gain': must be true or false"],
    ),
    (
        "policy-margin-out-of-range",
        _policy("margin_out_of_range"),
        ["margin_out_of_range.yaml:2: field 'general.margin': must be in [0.0, 1.0]"],
    ),
    (
        "policy-python-object-tag",
        _policy("python_object_tag"),
        ["python_object_tag.yaml:3: the YAML tag '!!python/object/apply:os.system'"],
    ),
    # models
    (
        "model-path-does-not-exist",
        _model("{T}/no/such/checkpoint"),
        ["checkpoint directory not found", "pass an existing checkpoint directory"],
    ),
    (
        "model-directory-without-config",
        _model("{T}/not_a_checkpoint"),
        ["not_a_checkpoint: not a transformers checkpoint (no config.json)"],
    ),
    (
        "model-hub-name-offline",
        _model("some-org/some-model-that-is-not-cached"),
        ["model not found locally", "the hub is offline (HF_HUB_OFFLINE=1)"],
    ),
]
# Failure classes (one per row above): reported in the README and counted here.
assert len(CASES) == len({case_id for case_id, _, _ in CASES}) == 37


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    """The case files that are not committed."""
    ok = json.dumps(GOOD_ITEM)
    (tmp_path / "ok.jsonl").write_text(ok + "\n", encoding="utf-8")
    (tmp_path / "non_utf8.jsonl").write_bytes(
        ok.encode() + b'\n{"id": "b", "prompt": "caf\xe9", "reference": "rent"}\n'
    )
    (tmp_path / "not_a_checkpoint").mkdir()
    (tmp_path / "not_a_checkpoint" / "model.safetensors").write_bytes(b"\0" * 16)
    return tmp_path


@pytest.fixture
def huge_line(generated: Path) -> None:
    prompt = "x" * (50 * 2**20)
    line = json.dumps({**GOOD_ITEM, "id": "big", "prompt": prompt})
    (generated / "huge.jsonl").write_text(json.dumps(GOOD_ITEM) + "\n" + line + "\n")


def _fill(argv: list[str], tmp_path: Path) -> list[str]:
    return [a.replace("{B}", str(BAD)).replace("{T}", str(tmp_path)) for a in argv]


@pytest.mark.parametrize(("case_id", "argv", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_exit_2_with_a_message(
    case_id: str,
    argv: list[str],
    expected: list[str],
    generated: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if case_id == "domain-50mb-line":
        request.getfixturevalue("huge_line")
    started = time.monotonic()
    code = main(_fill(argv, generated))
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2, output
    assert "Traceback" not in output
    assert "error: " in captured.err
    for text in expected:
        assert text in output, f"{text!r} not in {output!r}"
    if case_id.startswith("model-"):
        assert elapsed < 15, f"{case_id} took {elapsed:.1f}s"  # no hub wait, no torch load


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf_files_load_like_plain_ones(variant: str, tmp_path: Path) -> None:
    from collapse_eval.domain.dataset import load_domain_set, load_training_set

    newline = b"\r\n" if "crlf" in variant else b"\n"
    bom = b"\xef\xbb\xbf" if "bom" in variant else b""
    items = [GOOD_ITEM, {**GOOD_ITEM, "id": "b", "prompt": "Kaufen?\nIntent:"}]
    domain = tmp_path / "d.jsonl"
    domain.write_bytes(bom + newline.join(json.dumps(i).encode() for i in items) + newline)
    loaded = load_domain_set(domain)
    assert [(i.id, i.prompt, i.reference) for i in loaded] == [
        ("a", "I want to rent. Intent:", "rent"),
        ("b", "Kaufen?\nIntent:", "rent"),
    ]
    training = tmp_path / "t.jsonl"
    training.write_bytes(bom + b'{"prompt": "p", "response": "r"}' + newline)
    assert [(t.prompt, t.response) for t in load_training_set(training)] == [("p", "r")]
    assert main(["validate", str(domain)]) == 0


def _subprocess(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(BAD.parent.parent)}
    return subprocess.run(
        [sys.executable, "-m", "collapse_eval", *_fill(argv, tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("case_id", ["domain-non-utf8", "model-hub-name-offline"])
def test_bad_inputs_in_a_real_process(case_id: str, generated: Path) -> None:
    _, argv, expected = next(c for c in CASES if c[0] == case_id)
    started = time.monotonic()
    result = _subprocess(argv, generated)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr
    assert time.monotonic() - started < 60  # no hub wait (seconds of Python start-up only)

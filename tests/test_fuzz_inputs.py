"""Property tests of everything that reads user input: never a stray exception.

Loaders either return or raise the project's typed errors; scorers return a score in
[0, 1] for any model output; the policy and benchmarks parsers raise only ConfigError.
Inputs: arbitrary Unicode, deeply nested JSON, huge numbers, NaN and infinities.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collapse_eval.config import parse_benchmarks
from collapse_eval.domain.dataset import load_domain_set, load_training_set, validate_file
from collapse_eval.domain.scorers import check_reference, output_formats, score_prediction
from collapse_eval.errors import CollapseEvalError, ConfigError
from collapse_eval.policy import load_policy, policy_from_mapping
from collapse_eval.records import read_json, read_records

# Torn last lines are reported as warnings; here they are only noise.
pytestmark = pytest.mark.filterwarnings("ignore::collapse_eval.errors.CollapseEvalWarning")

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# (integers beyond 4300 digits are written as raw text below: hypothesis cannot print them)
huge_ints = st.integers(min_value=-(10**40), max_value=10**40)
numbers = huge_ints | st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
FIELDS = ["id", "task_type", "output_format", "prompt", "messages", "reference", "response"]
item_like = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8), json_values | st.sampled_from(output_formats())
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _line(value: Any) -> str:
    if isinstance(value, str) and value.startswith("RAW:"):
        return value[4:]
    # Python's json writes NaN and Infinity (the reader must refuse or cope).
    return json.dumps(value, ensure_ascii=False)


raw_lines = st.lists(
    item_like
    | json_values
    | st.text(max_size=40).map(lambda t: "RAW:" + t)
    | st.sampled_from(["RAW:" + _deep(3000), "RAW:[1e99999]", 'RAW:{"id": ' + "9" * 5000 + "}"]),
    max_size=6,
)


def _write(lines: list[Any], raw: bytes = b"") -> Path:
    fd, name = tempfile.mkstemp(suffix=".jsonl")
    with open(fd, "wb") as fh:
        fh.write(raw + "\n".join(_line(v) for v in lines).encode("utf-8", "surrogatepass"))
    return Path(name)


@FUZZ
@given(lines=raw_lines, raw=st.binary(max_size=20))
def test_loaders_raise_only_typed_errors(lines: list[Any], raw: bytes) -> None:
    path = _write(lines, raw)
    try:
        for loader in (load_domain_set, load_training_set, read_records):
            with contextlib.suppress(CollapseEvalError):
                loader(path)
        validate_file(path)  # reports problems, never raises for content
    finally:
        path.unlink()


@FUZZ
@given(value=json_values)
def test_read_json_raises_only_typed_errors(value: Any) -> None:
    path = _write([value])
    try:
        read_json(path)
    except CollapseEvalError:
        pass
    finally:
        path.unlink()


@FUZZ
@given(
    output_format=st.sampled_from(output_formats()),
    prediction=st.text(max_size=200)
    | json_values.map(lambda v: json.dumps(v))
    | st.sampled_from(["1e99999", "-inf", "nan", "9" * 5000, "{" * 2000, "[" * 3000 + "]" * 3000]),
    reference=json_values,
)
def test_scorers_return_a_score_in_0_1(output_format: str, prediction: str, reference: Any) -> None:
    if check_reference(output_format, reference) is not None:
        return  # the loader refuses such a reference; the scorer never sees it
    result = score_prediction(output_format, prediction, reference)
    assert isinstance(result.score, float)
    assert 0.0 <= result.score <= 1.0 and not math.isnan(result.score)
    assert isinstance(result.format_ok, bool)


@FUZZ
@given(
    raw=json_values | st.dictionaries(st.sampled_from(["alpha", "general", "domain"]), json_values)
)
def test_policy_mapping_raises_only_config_errors(raw: Any) -> None:
    try:
        policy = policy_from_mapping(raw)
    except ConfigError:
        return
    assert 0 < policy.alpha <= 0.5
    assert 0 <= policy.general.margin <= 1


yaml_texts = st.text(max_size=200) | st.sampled_from(
    [
        "alpha: .nan\n",
        "alpha: .inf\n",
        "general: {margin: 1e400}\n",
        "alpha: " + "9" * 5000 + "\n",
        "a: &x [*x]\n",
        "[" * 2000 + "]" * 2000 + "\n",
        "suites: {q: [" + "[" * 2000 + "]" * 2000 + "]}\n",
        "suites: {q: [{task: a, limit: " + "9" * 5000 + "}]}\n",
        "suites: {q: [{task: a, margin: .nan}]}\n",
        "\ufeffsuites: {q: [arc_easy]}\n",
        "suites: !!python/object/apply:os.system [echo]\n",
    ]
)


@FUZZ
@given(text=yaml_texts)
def test_policy_file_raises_only_config_errors(text: str) -> None:
    fd, name = tempfile.mkstemp(suffix=".yaml")
    with open(fd, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(text)
    try:
        load_policy(name)
    except ConfigError:
        pass
    finally:
        Path(name).unlink()


@FUZZ
@given(text=yaml_texts)
def test_benchmarks_parser_raises_only_config_errors(text: str) -> None:
    try:
        config = parse_benchmarks(text, Path("/nonexistent/benchmarks.yaml"))
    except ConfigError:
        return
    for suite in config.suites.values():
        for entry in suite.entries:
            assert entry.margin is None or 0 <= entry.margin < 1

"""--engine / --engine-arg handling: typed values, defaults, unknown engines and arguments."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from collapse_eval.engines import registry
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.engines.registry import (
    HF_FALLBACK_NOTICE,
    make_engine,
    parse_engine_arg_strings,
    resolve_engine_kind,
    typed_engine_args,
    typed_value,
)
from collapse_eval.errors import ConfigError, UsageError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", 4),
        ("-1", -1),
        ("0.9", 0.9),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("yes", True),
        ("off", False),
        ("None", None),
        ("null", None),
        ("float32", "float32"),
        ("ray", "ray"),
        ('{"rope_scaling": {"factor": 2}}', {"rope_scaling": {"factor": 2}}),
        ("[1, 2]", [1, 2]),
        ('"4"', "4"),
        ("awq", "awq"),
        ("", ""),
    ],
)
def test_typed_value(text: str, value: object) -> None:
    assert typed_value(text) == value
    assert type(typed_value(text)) is type(value)


def test_bad_json_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not valid JSON"):
        typed_value("{oops")


def test_parse_engine_arg_strings() -> None:
    parsed = parse_engine_arg_strings(
        ["tensor_parallel_size=4", "max-model-len=2048", "base_url=http://h:8000/v1?x=1"]
    )
    assert parsed == {
        "tensor_parallel_size": "4",
        "max_model_len": "2048",
        "base_url": "http://h:8000/v1?x=1",
    }
    assert typed_engine_args(parsed) == {
        "tensor_parallel_size": 4,
        "max_model_len": 2048,
        "base_url": "http://h:8000/v1?x=1",
    }
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_engine_arg_strings(["tensor_parallel_size"])
    with pytest.raises(UsageError, match="given twice"):
        parse_engine_arg_strings(["seed=1", "seed=2"])


def test_default_engine_is_vllm_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "vllm_available", lambda: True)
    assert resolve_engine_kind(None) == ("vllm", None)
    monkeypatch.setattr(registry, "vllm_available", lambda: False)
    kind, notice = resolve_engine_kind(None)
    assert kind == "hf" and notice == HF_FALLBACK_NOTICE and "\n" not in notice
    assert resolve_engine_kind("openai") == ("openai", None)


def test_unknown_engine_kind_has_a_hint() -> None:
    with pytest.raises(UsageError, match="'vlm' is not an engine. Did you mean 'vllm'"):
        resolve_engine_kind("vlm")


def test_fallback_notice_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(registry, "vllm_available", lambda: False)
    built = []

    class Recorder:
        def __init__(self, model: str, *, dtype: str = "float32", batch_size: int = 16) -> None:
            built.append((model, dtype, batch_size))

    import collapse_eval.engines.hf as hf

    monkeypatch.setattr(hf, "HFEngine", Recorder)
    with caplog.at_level(logging.INFO, logger="collapse_eval.engines"):
        make_engine(None, "ckpt", {"batch_size": "8"})
    assert built == [("ckpt", "float32", 8)]
    assert HF_FALLBACK_NOTICE in caplog.text


def test_hf_engine_rejects_unknown_arguments(tiny_model: Path) -> None:
    with pytest.raises(ConfigError) as typo:
        make_engine("hf", str(tiny_model), {"batch_sise": "4"})
    assert "hf engine has no argument 'batch_sise'. Did you mean 'batch_size'?" in str(typo.value)
    assert typo.value.exit_code == 2


def test_fake_engine_through_the_registry() -> None:
    engine = make_engine("fake", "some-model", {"default_answer": "42"})
    assert isinstance(engine, FakeEngine) and engine.model_name == "some-model"
    with pytest.raises(ConfigError, match="fake engine has no argument 'tensor_parallel_size'"):
        make_engine("fake", "m", {"tensor_parallel_size": "2"})

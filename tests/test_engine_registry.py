"""--engine / --engine-arg handling: typed values, defaults, unknown engines and arguments."""

from __future__ import annotations

import importlib
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
    assert [typed_value(value) for value in parsed.values()] == [4, 2048, "http://h:8000/v1?x=1"]
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_engine_arg_strings(["tensor_parallel_size"])
    with pytest.raises(UsageError, match=r"seed is given twice \('1' and '2'\)"):
        parse_engine_arg_strings(["seed=1", "seed=2"])


@pytest.mark.parametrize(
    ("items", "parsed"),
    [
        (["dtype=float32,batch_size=16"], {"dtype": "float32", "batch_size": "16"}),
        (["a=1, b-c=2,d=x"], {"a": "1", "b_c": "2", "d": "x"}),
        (['hf_overrides={"a":1,"b":2}'], {"hf_overrides": '{"a":1,"b":2}'}),
        (['seed=0,hf_overrides={"a":1,"b":2}'], {"seed": "0", "hf_overrides": '{"a":1,"b":2}'}),
        (["stop=a,b"], {"stop": "a,b"}),
        (["x=[1,2]"], {"x": "[1,2]"}),
        (['url="http://h/v1?x=1,y=2"'], {"url": '"http://h/v1?x=1,y=2"'}),
    ],
)
def test_comma_form_splits_only_unambiguous_values(
    items: list[str], parsed: dict[str, str]
) -> None:
    assert parse_engine_arg_strings(items) == parsed


def test_duplicates_across_the_comma_form_are_rejected() -> None:
    with pytest.raises(UsageError, match=r"dtype is given twice \('float32' and 'bfloat16'\)"):
        parse_engine_arg_strings(["dtype=float32,batch_size=2", "dtype=bfloat16"])


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


def test_schema_types_values_by_declaration() -> None:
    from collapse_eval.engines.registry import check_engine_args

    typed = check_engine_args(
        "hf", "m", {"batch_size": "8", "max_length": "none", "revision": "20240101"}
    )
    assert typed == {"batch_size": 8, "max_length": None, "revision": "20240101"}
    assert check_engine_args("fake", "m", {"default_answer": "42"}) == {"default_answer": "42"}
    assert check_engine_args("openai", "m", {"timeout_s": "2", "max_gen_toks": "5"}) == {
        "timeout_s": 2.0,
        "max_gen_toks": 5,
    }
    for kind, args, message in [
        ("hf", {"batch_size": "abc"}, "batch_size=abc: the hf engine expects an integer >= 1"),
        ("hf", {"batch_size": "true"}, "expects an integer >= 1"),
        ("hf", {"dtype": "float33"}, "expects one of auto, float32, float16, bfloat16"),
        ("openai", {"max_concurrency": "0"}, "expects an integer >= 1"),
        ("fake", {"max_gen_toks": "0"}, "max_gen_toks=0: the fake engine expects an integer"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            check_engine_args(kind, "m", args)
        assert err.value.exit_code == 2


@pytest.mark.parametrize("kind", ["hf", "openai", "fake"])
def test_declared_schema_matches_the_constructor(kind: str) -> None:
    """Every declared argument reaches the constructor, and the constructor takes no
    undeclared keyword (openai's ``model`` arrives as ``served_model``)."""
    import inspect

    from collapse_eval.engines.registry import engine_arg_schema

    factories = {
        "hf": "collapse_eval.engines.hf.HFEngine",
        "openai": "collapse_eval.engines.openai.OpenAIEngine",
        "fake": "collapse_eval.engines.fake.FakeEngine",
    }
    module, _, name = factories[kind].rpartition(".")
    params = set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    declared = set(engine_arg_schema(kind).args)
    internal = {"model", "name", "served_model", "sleep"}  # positional or not an --engine-arg
    assert params - internal == declared - {"model"}


def test_vllm_schema_is_vllms_engine_args(tiny_model: Path) -> None:
    pytest.importorskip("vllm")
    from collapse_eval.engines.registry import check_engine_args, engine_arg_schema

    schema = engine_arg_schema("vllm")
    assert "tensor_parallel_size" in schema.names() and "max_gen_toks" in schema.names()
    assert not schema.affects_output("tensor_parallel_size")
    assert schema.affects_output("quantization") and schema.affects_output("max_gen_toks")
    with pytest.raises(ConfigError, match="Did you mean 'tensor_parallel_size'"):
        check_engine_args("vllm", str(tiny_model), {"tensor_paralel_size": "2"})
    assert check_engine_args("vllm", str(tiny_model), {"max_gen_toks": "5", "seed": "3"}) == {
        "max_gen_toks": 5,
        "seed": 3,
    }

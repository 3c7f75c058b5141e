"""HFEngine against lm-eval's own HFLM on the tiny random Llama: same numbers, same text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collapse_eval.engines.base import GenRequest, plain_chat_rendering
from collapse_eval.engines.hf import HFEngine
from collapse_eval.errors import EngineError, InputError

BATCH = 4


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> HFEngine:
    return HFEngine(str(tiny_model), batch_size=BATCH)


@pytest.fixture(scope="module")
def hflm(tiny_model: Path) -> Any:
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(tiny_model), device="cpu", batch_size=BATCH, dtype="float32")


def _instances(kind: str, args: list[tuple[Any, ...]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


TRICKY = [
    ("The buyer asked", " the agent"),
    ("The buyer asked ", "the agent"),  # trailing space moves into the continuation
    ("The buyer asked   ", "the agent"),  # several trailing spaces
    ("", "hello world"),  # empty context -> prefix token
    ("Q: 1 + 2 = ? A:", " 3"),  # three requests sharing context: one pass
    ("Q: 1 + 2 = ? A:", " 4"),
    ("Q: 1 + 2 = ? A:", " 34"),
    ("x " * 700, "end of a long context"),  # longer than max_length: left truncation
    ("<|endoftext|>hi", " there"),  # text that starts with the BOS text
    ("价格是多少", "？一百万"),  # non-ASCII, byte-level pieces
]


def test_loglikelihood_identical_to_hflm(engine: HFEngine, hflm: Any) -> None:
    ours = engine.loglikelihood(TRICKY)
    theirs = hflm.loglikelihood(_instances("loglikelihood", TRICKY))
    assert len(ours) == len(TRICKY)
    for (ll, greedy), (ref_ll, ref_greedy) in zip(ours, theirs, strict=True):
        assert ll == pytest.approx(ref_ll, abs=1e-5)
        assert greedy is ref_greedy
    # the shared-context requests are different continuations, so different numbers
    assert len({round(ll, 6) for ll, _ in ours[4:7]}) == 3


def test_is_greedy_true_for_the_models_own_continuation(engine: HFEngine, hflm: Any) -> None:
    prompts = ["the agent", "Q: 5 + 7 = ? A:", "rent deposit"]
    generated = engine.generate([GenRequest(prompt=p, max_tokens=3) for p in prompts])
    requests = list(zip(prompts, generated, strict=True))
    ours = engine.loglikelihood(requests)
    theirs = hflm.loglikelihood(_instances("loglikelihood", requests))
    assert [g for _, g in ours] == [g for _, g in theirs]
    assert any(g for _, g in ours)  # a greedy continuation is recognised as greedy
    for (ll, _), (ref, _) in zip(ours, theirs, strict=True):
        assert ll == pytest.approx(ref, abs=1e-5)


def test_truncation_with_small_max_length(tiny_model: Path) -> None:
    from lm_eval.models.huggingface import HFLM

    ours = HFEngine(str(tiny_model), batch_size=2, max_length=32)
    theirs = HFLM(
        pretrained=str(tiny_model), device="cpu", batch_size=2, dtype="float32", max_length=32
    )
    requests = [("one two three " * 20, " four five"), ("short", " one")]
    for (a, ga), (b, gb) in zip(
        ours.loglikelihood(requests),
        theirs.loglikelihood(_instances("loglikelihood", requests)),
        strict=True,
    ):
        assert a == pytest.approx(b, abs=1e-5) and ga is gb
    texts = ["the buyer asked the agent " * 12, "yes"]
    ours_rolling = ours.loglikelihood_rolling(texts)
    theirs_rolling = theirs.loglikelihood_rolling(
        _instances("loglikelihood_rolling", [(t,) for t in texts])
    )
    assert ours_rolling == pytest.approx(theirs_rolling, abs=1e-4)
    # generation keeps the prompt's last (max_length - max_tokens) tokens
    gen = ours.generate([GenRequest(prompt="one two three " * 20, max_tokens=8)])
    ref = theirs.generate_until(
        _instances("generate_until", [("one two three " * 20, {"max_gen_toks": 8})])
    )
    assert gen == ref


def test_loglikelihood_rolling_identical(engine: HFEngine, hflm: Any) -> None:
    texts = ["hello world " * 5, "x " * 900, "", "价格 rent"]
    ours = engine.loglikelihood_rolling(texts)
    theirs = hflm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in texts]))
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert ours[2] == 0.0 and ours[1] < ours[0] < 0


def test_generate_identical_to_hflm(engine: HFEngine, hflm: Any) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("Q: 1 + 2 = ? A:", {"until": ["\n"], "max_gen_toks": 20}),
        ("the buyer", {"until": ["."], "max_gen_toks": 30}),
        ("the", {"until": ["\n\n", "e"], "do_sample": False}),
        ("x " * 300, {"until": ["x"], "max_gen_toks": 5}),
        ("what is the price", {"until": ["buyer"], "max_gen_toks": 12}),
        ("Q: 9 + 9 = ? A:", {"until": ["\n"], "max_gen_toks": 20}),
    ]
    requests = [
        GenRequest(prompt=c, until=tuple(k["until"]), max_tokens=k.get("max_gen_toks", 256))
        for c, k in cases
    ]
    ours = engine.generate(requests)
    theirs = hflm.generate_until(_instances("generate_until", cases))
    assert ours == theirs
    assert any(len(text) > 3 for text in ours)
    for text, (_, kwargs) in zip(ours, cases, strict=True):
        assert not any(stop in text for stop in kwargs["until"])  # cut at the stop string


def test_chat_template_and_plain_fallback(tiny_model: Path, engine: HFEngine) -> None:
    messages = (("system", "be brief"), ("user", "price?"))
    assert engine.render_chat(messages) == "system: be brief\nuser: price?\nassistant:"
    bare = HFEngine(str(tiny_model))
    bare.tokenizer.chat_template = None
    assert bare.render_chat(messages) == plain_chat_rendering(messages)
    by_messages = engine.generate([GenRequest(messages=messages, max_tokens=5)])
    by_prompt = engine.generate([GenRequest(prompt=engine.render_chat(messages), max_tokens=5)])
    assert by_messages == by_prompt


def test_identity_and_engine_args(engine: HFEngine, tiny_model: Path) -> None:
    from collapse_eval.engines.base import checkpoint_fingerprint

    assert engine.kind == "hf"
    assert engine.fingerprint == checkpoint_fingerprint(str(tiny_model))
    assert engine.engine_args == {"dtype": "float32", "max_length": 512, "device": "cpu"}
    # engine_args records only what the schema declares output-affecting.
    from collapse_eval.engines.hf import ENGINE_ARGS

    assert all(ENGINE_ARGS.affects_output(key) for key in engine.engine_args)
    assert engine.max_length == 512  # from config.max_position_embeddings, as lm-eval


def test_missing_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        HFEngine(str(tmp_path / "no-such-ckpt"))
    assert err.value.exit_code == 2 and "no-such-ckpt" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        HFEngine(str(tmp_path / "empty"))


def test_runtime_failure_is_an_engine_error(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = HFEngine(str(tiny_model))

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory. Tried to allocate 20 GiB")

    monkeypatch.setattr(broken._model, "forward", out_of_memory)
    with pytest.raises(EngineError, match="lower the batch size") as err:
        broken.loglikelihood([("a", " b")])
    assert err.value.exit_code == 3

"""drift: KL(base || tuned) of next-token distributions, exact and top-k lumped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from collapse_eval.drift import PROBE_SET, measure_drift, probe_passages
from collapse_eval.drift.kl import lumped_kl, lumped_kl_sum, ratio_mean_se
from collapse_eval.engines.openai import prompt_top_logprobs_of
from collapse_eval.errors import EngineError, UsageError

TEXTS = probe_passages()[:24]


def _hf(model: Path, batch_size: int = 8):  # type: ignore[no-untyped-def]
    from collapse_eval.engines.hf import HFEngine

    return lambda: HFEngine(str(model), batch_size=batch_size)


def test_probe_set_is_a_few_hundred_distinct_short_passages() -> None:
    passages = probe_passages()
    assert len(passages) == 301
    assert len(set(passages)) == len(passages)
    words = [len(p.split()) for p in passages]
    assert min(words) >= 6 and max(words) <= 40
    assert all(p.isascii() for p in passages)


def test_lumped_kl_by_hand() -> None:
    # base (0.5, 0.3, rest 0.2), tuned (0.25, 0.25, rest 0.5)
    base = {"a": math.log(0.5), "b": math.log(0.3)}
    tuned = {"a": math.log(0.25), "b": math.log(0.25), "c": math.log(0.1)}
    expected = 0.5 * math.log(2) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    assert lumped_kl(base, tuned) == pytest.approx(expected, abs=1e-12)
    assert lumped_kl(base, base) == 0.0


def test_lumped_kl_is_a_lower_bound_that_tightens_with_k() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        logits = rng.normal(size=(2, 50)) * rng.uniform(0.5, 4)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        exact = float((np.exp(logp[0]) * (logp[0] - logp[1])).sum())
        bounds = []
        for k in (1, 5, 20, 50):
            top = [dict((int(i), float(lp[i])) for i in np.argsort(-lp)[:k]) for lp in logp]
            bounds.append(lumped_kl(top[0], top[1]))
        assert all(b <= exact + 1e-9 for b in bounds)
        assert bounds[-1] == pytest.approx(exact, abs=1e-9)  # k = vocabulary: exact


def test_ratio_mean_se() -> None:
    mean, se = ratio_mean_se([2.0, 4.0, 0.0], [2, 2, 4])
    assert mean == pytest.approx(0.75)
    # residuals s - 0.75 c: 0.5, 2.5, -3.0; sqrt(15.5 / 2 / 3) / (8 / 3)
    assert se == pytest.approx(math.sqrt(15.5 / 6) / (8 / 3))
    assert ratio_mean_se([1.0], [4]) == (0.25, None)
    with pytest.raises(ValueError):
        lumped_kl_sum([{}], [])


def test_model_against_itself_is_exactly_zero(tiny_model: Path) -> None:
    result = measure_drift(_hf(tiny_model), _hf(tiny_model), {PROBE_SET: TEXTS})
    probe = result.by_name(PROBE_SET)
    assert probe is not None
    assert probe.mean_kl == 0.0 and probe.se == 0.0
    assert probe.n_texts == 24 and probe.n_tokens > 24 * 10
    assert result.method == "full" and result.to_json()["lower_bound"] is False


def test_perturbed_copy_drifts_and_top_k_bounds_it(tiny_model: Path, sharp_model: Path) -> None:
    sets = {PROBE_SET: TEXTS, "short": ["Hello there.", ""]}
    full = measure_drift(_hf(tiny_model), _hf(sharp_model, batch_size=5), sets)
    top5 = measure_drift(_hf(tiny_model), _hf(sharp_model), sets, top_k=5)
    everything = measure_drift(_hf(tiny_model), _hf(sharp_model), sets, top_k=2048)
    exact = full.by_name(PROBE_SET)
    bound = top5.by_name(PROBE_SET)
    assert exact is not None and bound is not None and everything is not None
    assert exact.mean_kl > 0.1
    assert 0.0 < bound.mean_kl < exact.mean_kl
    assert top5.method == "top_k_lumped" and top5.to_json()["lower_bound"] is True
    whole = everything.by_name(PROBE_SET)
    assert whole is not None and whole.mean_kl == pytest.approx(exact.mean_kl, rel=1e-4)
    short = full.by_name("short")
    assert short is not None and short.n_texts == 1  # the empty text has no token


def test_different_tokenizers_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    from collapse_eval.demo.tinymodel import init_tiny_llama

    other = init_tiny_llama(tmp_path / "other", seed=0, texts=["quartz vexed jumbo fjord"] * 20)
    with pytest.raises(UsageError, match="different tokenizers"):
        measure_drift(_hf(tiny_model), _hf(other), {PROBE_SET: TEXTS[:2]})


def test_openai_prompt_top_logprobs() -> None:
    legacy = {
        "logprobs": {
            "tokens": ["<s>", " a", " b", " c"],
            "token_logprobs": [None, -1.0, -2.0, -0.5],
            "top_logprobs": [None, {" x": -0.1}, {" b": -2.0, " y": -0.2}, {" z": -0.3}],
        }
    }
    assert prompt_top_logprobs_of(legacy, 3) == [
        {" x": -0.1, " a": -1.0},
        {" b": -2.0, " y": -0.2},
    ]
    vllm = {"prompt_logprobs": [None, {"7": {"logprob": -0.7}}, {"8": {"logprob": -0.8}}]}
    assert prompt_top_logprobs_of(vllm, 3) == [{7: -0.7}, {8: -0.8}]
    with pytest.raises(EngineError, match="expected 3"):
        prompt_top_logprobs_of({"logprobs": {"tokens": ["a"]}}, 3)

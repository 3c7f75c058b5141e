"""OpenAI-compatible engine: retry/backoff/concurrency against a loopback fake server.

Its agreement with the transformers engine against a real ``vllm serve`` of the tiny model
is in test_vllm_engine.py, beside the in-process vLLM engine: both compare with the same
transformers answers, computed once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.openai import OpenAIEngine
from collapse_eval.errors import ConfigError, EngineError

# ----------------------------------------------------------------- fake server (unit tests)

Responder = Callable[[int, dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]]


class FakeServer:
    """A loopback HTTP server; ``respond(call_number, body) -> (status, json, headers)``."""

    def __init__(self, respond: Responder, delay_s: float = 0.0) -> None:
        self.respond = respond
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.calls.append(body)
                    fake.headers.append(dict(self.headers))
                    number = len(fake.calls)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                time.sleep(fake.delay_s)
                status, payload, headers = fake.respond(number, body)
                with fake.lock:
                    fake.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(respond: Responder, delay_s: float = 0.0) -> FakeServer:
        servers.append(FakeServer(respond, delay_s))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def completion(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "text": text}]}


def engine_for(
    server: FakeServer, sleeps: list[float] | None = None, **kwargs: Any
) -> OpenAIEngine:
    recorded = sleeps if sleeps is not None else []
    return OpenAIEngine("remote-model", base_url=server.url, sleep=recorded.append, **kwargs)


def test_retries_429_and_5xx_with_exponential_backoff(fake_server) -> None:
    def respond(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if n <= 3:
            return (429 if n == 1 else 503), {"error": {"message": "busy"}}, {}
        return 200, completion("Paris\nmore"), {}

    server = fake_server(respond)
    sleeps: list[float] = []
    engine = engine_for(server, sleeps, backoff_s=0.25)
    out = engine.generate([GenRequest(prompt="Capital of France?", until=("\n",), max_tokens=5)])
    assert out == ["Paris"]
    assert sleeps == [0.25, 0.5, 1.0]
    assert engine.requests_sent == 4
    assert server.calls[-1] == {
        "model": "remote-model",
        "max_tokens": 5,
        "temperature": 0,
        "stop": ["\n"],
        "prompt": "Capital of France?",
    }


def test_retry_after_header_is_honoured_and_capped(fake_server) -> None:
    server = fake_server(
        lambda n, b: (429, {}, {"Retry-After": "120"}) if n == 1 else (200, completion("ok"), {})
    )
    sleeps: list[float] = []
    engine = engine_for(server, sleeps, max_backoff_s=7.0)
    assert engine.generate([GenRequest(prompt="x")]) == ["ok"]
    assert sleeps == [7.0]


def test_gives_up_after_max_retries_with_the_server_message(fake_server) -> None:
    server = fake_server(lambda n, b: (500, {"error": {"message": "CUDA out of memory"}}, {}))
    sleeps: list[float] = []
    with pytest.raises(EngineError) as failure:
        engine_for(server, sleeps, max_retries=2).generate([GenRequest(prompt="x")])
    assert "failed after 3 attempts" in str(failure.value)
    assert "HTTP 500: CUDA out of memory" in str(failure.value)
    assert failure.value.exit_code == 3
    assert len(server.calls) == 3 and sleeps == [0.5, 1.0]


def test_client_errors_are_not_retried(fake_server) -> None:
    server = fake_server(lambda n, b: (400, {"error": {"message": "model 'x' not found"}}, {}))
    expected = "rejected the request \\(HTTP 400: model 'x' not found\\)"
    with pytest.raises(EngineError, match=expected):
        engine_for(server).generate([GenRequest(prompt="x")])
    assert len(server.calls) == 1


def test_timeouts_are_retried_then_reported(fake_server) -> None:
    server = fake_server(lambda n, b: (200, completion("late"), {}), delay_s=0.5)
    with pytest.raises(EngineError, match="timed out|TimeoutError"):
        engine_for(server, timeout_s=0.1, max_retries=1).generate([GenRequest(prompt="x")])
    assert len(server.calls) == 2


def test_connection_refused_is_an_engine_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = OpenAIEngine(
        "m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, sleep=lambda s: None
    )
    with pytest.raises(EngineError, match="failed after 2 attempts .*Is the server running"):
        engine.generate([GenRequest(prompt="x")])


def test_concurrency_is_bounded_and_order_kept(fake_server) -> None:
    # The first three requests are answered only once all three are in the server at once
    # (a barrier, not a delay that a loaded machine may outlast); a fourth in flight beside
    # them would break the bound.
    three_at_once = threading.Barrier(3, timeout=120)

    def respond(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if n <= 3:
            three_at_once.wait()
        return 200, completion(body["prompt"].upper()), {}

    server = fake_server(respond, delay_s=0.05)
    engine = engine_for(server, max_concurrency=3)
    prompts = [f"p{i}" for i in range(12)]
    assert engine.generate([GenRequest(prompt=p) for p in prompts]) == [p.upper() for p in prompts]
    assert server.max_in_flight == 3


def test_api_key_is_sent_but_never_recorded(fake_server, monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    server = fake_server(lambda n, b: (200, completion("ok"), {}))
    engine = OpenAIEngine(
        "m", base_url=server.url.replace("http://", "http://user:pw@"), api_key_env="MY_KEY"
    )
    engine.generate([GenRequest(prompt="x")])
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    monkeypatch.delenv("MY_KEY")
    engine.generate([GenRequest(prompt="x")])
    assert server.headers[1]["Authorization"] == "Basic dXNlcjpwdw=="  # user:pw
    visible = json.dumps(engine.engine_args) + repr(engine) + engine.base_url + engine.fingerprint
    assert "sk-secret" not in visible and "pw" not in visible
    assert engine.engine_args == {"served_model": "m", "scoring": "text"}


def test_planted_api_key_reaches_no_output_file(fake_server, monkeypatch, tmp_path, capsys) -> None:
    """A whole compare through the openai engine: the key (and URL credentials) reach the
    server and nothing else: no manifest, record, cache, summary, report or log line."""
    from collapse_eval.cli import main

    key, url_password = "sk-planted-4f1c9e", "pw-planted-77aa"
    monkeypatch.setenv("PLANTED_KEY", key)
    server = fake_server(lambda n, b: (200, completion(" yes"), {}))
    url = server.url.replace("http://", f"http://user:{url_password}@")
    domain = tmp_path / "dom.jsonl"
    rows = [
        {"id": f"q{i}", "task_type": "t", "output_format": "yes_no", "prompt": f"Q{i}?",
         "reference": "yes"}
        for i in range(4)
    ]  # fmt: skip
    domain.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["compare", "base-model", "tuned-model", "--engine", "openai", "--no-general"]
    argv += ["--engine-arg", f"base_url={url}", "--engine-arg", "api_key_env=PLANTED_KEY"]
    argv += ["--domain", str(domain), "--out", str(out), "--cache-dir", str(cache)]
    assert main(argv) in (0, 1)
    log = capsys.readouterr()
    assert key not in log.out + log.err and url_password not in log.out + log.err
    assert server.headers and all(h["Authorization"] == f"Bearer {key}" for h in server.headers)
    files = [p for root in (out, cache) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any(
        p.name == "report.html" for p in files
    )
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and url_password.encode() not in data, path


def test_chat_messages_use_chat_completions(fake_server) -> None:
    answer = {"choices": [{"message": {"content": "Hi there"}}]}
    server = fake_server(lambda n, b: (200, answer, {}))
    engine = engine_for(server)
    out = engine.generate([GenRequest(messages=(("user", "Hello"),), max_tokens=4)])
    assert out == ["Hi there"]
    assert server.calls[0]["messages"] == [{"role": "user", "content": "Hello"}]


def test_text_mode_loglikelihood_splits_at_the_context_offset(fake_server) -> None:
    # "Paris is" + " big": tokens "Paris"(0) " is"(5) " big"(8) and the generated "!"(12).
    logprobs = {
        "tokens": ["Paris", " is", " big", "!"],
        "text_offset": [0, 5, 8, 12],
        "token_logprobs": [None, -1.5, -0.25, -3.0],
        "top_logprobs": [None, {" is": -1.5}, {" small": -0.1, " big": -0.25}, {"!": -3.0}],
    }
    server = fake_server(lambda n, b: (200, {"choices": [{"text": "", "logprobs": logprobs}]}, {}))
    engine = engine_for(server)
    assert engine.loglikelihood([("Paris is", " big")]) == [(-0.25, False)]
    assert engine.loglikelihood([("Paris", " is big")]) == [(-1.75, False)]
    assert server.calls[0] == {
        "model": "remote-model",
        "prompt": "Paris is big",
        "max_tokens": 1,
        "temperature": 0,
        "echo": True,
        "logprobs": 1,
    }


def test_unknown_engine_args_are_config_errors() -> None:
    from collapse_eval.engines.registry import make_engine

    expected = "no argument 'max_concurency'.*Did you mean 'max_concurrency'"
    with pytest.raises(ConfigError, match=expected):
        make_engine("openai", "m", {"max_concurency": "4"})
    with pytest.raises(ConfigError, match="is not an http"):
        make_engine("openai", "m", {"base_url": "localhost:8000"})
    engine = make_engine(
        "openai",
        "m",
        {
            "base_url": "http://127.0.0.1:9/v1",
            "model": "served",
            "max_concurrency": "2",
            "timeout_s": "1.5",
        },
    )
    assert engine.engine_args == {"served_model": "served", "scoring": "text"}

"""Progress counts engine requests as the engine answers its batches, and a plain log says
something only when the count moved or once a minute (issue 19, item 4)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.progress import PlainProgress, counting_requests, requests_answered
from collapse_eval.runner import RunSpec, run_model


class BatchingEngine(FakeEngine):
    """Answers in batches of ``size`` and reports each, as the hf engine does."""

    def __init__(self, size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = size

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(requests), self.size):
            out += super().generate(requests[start : start + self.size])
            requests_answered(len(requests[start : start + self.size]))
        return out

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.size):
            out += super().loglikelihood(requests[start : start + self.size])
            requests_answered(len(requests[start : start + self.size]))
        return out


class Events:
    """A Progress whose bars record what they are told: ("open", total), ("+", n), ("?", n)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def log(self, message: str) -> None:
        pass

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Any]:
        events = self.events
        events.append(("open", description, total))

        class Bar:
            def advance(self, n: int = 1) -> None:
                events.append(("+", n))

            def expect(self, n: int) -> None:
                events.append(("?", n))

        yield Bar()
        events.append(("close", description))


def test_counting_requests_passes_batches_on_and_the_rest_at_the_end() -> None:
    seen: list[int] = []
    with counting_requests(seen.append, 5):
        requests_answered(2)
        with counting_requests(seen.append, 5):  # a wrapper's own call counts nothing twice
            requests_answered(2)
    assert seen == [2, 2, 1]
    seen.clear()
    with counting_requests(seen.append, 3):
        requests_answered(10)  # more than the call holds (windows of a rolling request)
    assert seen == [3]
    requests_answered(4)  # outside a count: nothing to do, no error
    assert seen == [3]


def test_the_domain_runner_counts_requests_per_engine_batch(tmp_path: Path) -> None:
    domain = tmp_path / "d.jsonl"
    rows = [
        {"id": f"g{i}", "task_type": "t", "output_format": "label", "prompt": f"Q{i}"}
        for i in range(3)
    ]
    rows.append({**rows[0], "id": "r", "choices": ["a", "b", "c"]})
    domain.write_text("".join(json.dumps({**r, "reference": "a"}) + "\n" for r in rows), "utf-8")
    events = Events()
    spec = RunSpec(model="m", domain_files=(domain,), run_general=False, use_cache=False)
    run_model(spec, tmp_path / "run", progress=events, engine_factory=lambda s: BatchingEngine())
    # 3 generations + 3 choices = 6 requests, counted as each engine batch of 2 is answered.
    assert events.events == [
        ("open", "domain d", 6),
        ("+", 2),
        ("+", 1),
        ("+", 2),
        ("+", 1),
        ("close", "domain d"),
    ]


def test_the_lm_adapter_counts_requests_as_the_engine_answers_them() -> None:
    from lm_eval.api.instance import Instance

    from collapse_eval.general import EngineLM

    lm = EngineLM(BatchingEngine(size=2))
    events = Events()
    with events.bar("general t", None) as bar:
        lm.bar = bar
        instances = [
            Instance("loglikelihood", doc={}, arguments=(f"c{i}", " x"), idx=0) for i in range(5)
        ]
        assert len(lm.loglikelihood(instances)) == 5
        gen = [
            Instance("generate_until", doc={}, arguments=("c", {"until": ["\n"]}), idx=0)
            for _ in range(3)
        ]
        assert len(lm.generate_until(gen)) == 3
    assert events.events == [
        ("open", "general t", None),
        ("?", 5),
        ("+", 2),
        ("+", 2),
        ("+", 1),
        ("?", 3),
        ("+", 2),
        ("+", 1),
        ("close", "general t"),
    ]


def test_a_general_task_reports_its_requests_in_a_plain_log() -> None:
    from collapse_eval.config import BenchmarkEntry, Suite
    from collapse_eval.general import run_general_suite

    stream = io.StringIO()
    suite = Suite(name="s", entries=(BenchmarkEntry(task="demo_arithmetic", limit=6),))
    run_general_suite(
        BatchingEngine(size=2, default_answer="4"),
        suite,
        on_task=lambda t, r, i: None,
        progress=PlainProgress(stream, interval=0.0),
    )
    lines = stream.getvalue().splitlines()
    counts = [line.split(": ")[1].split(" requests")[0] for line in lines if "requests" in line]
    assert counts == ["0", "2/6", "4/6", "6/6"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_only_when_the_count_moved_or_once_a_minute() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = PlainProgress(stream, interval=10.0, quiet_interval=60.0, clock=clock)

    def lines() -> list[str]:
        return stream.getvalue().splitlines()

    with progress.bar("domain d", 100) as bar:
        assert lines() == ["domain d: 0/100 requests, 0s"]
        for now in (1010.0, 1020.0, 1059.0):  # an engine call without batch reports
            clock.now = now
            bar.beat()  # type: ignore[attr-defined]
        assert len(lines()) == 1  # the count did not move and a minute has not passed
        clock.now = 1060.0
        bar.beat()  # type: ignore[attr-defined]
        assert lines()[-1] == "domain d: 0/100 requests, 60s"
        clock.now = 1065.0
        bar.advance(30)  # moved, but 5 s after the last line: said at the next beat
        assert len(lines()) == 2
        clock.now = 1070.0
        bar.beat()  # type: ignore[attr-defined]
        assert lines()[-1] == "domain d: 30/100 requests, 0.4 requests/s, 70s"
        clock.now = 1090.0
        bar.beat()  # type: ignore[attr-defined]
        assert len(lines()) == 3  # 20 s later, nothing moved: no repeat
        clock.now = 1100.0
        bar.advance(70)  # the end is always said
        assert lines()[-1] == "domain d: 100/100 requests, 1.0 requests/s, 100s"
    assert len(lines()) == 4  # closing after the last count adds nothing


def test_a_bar_without_a_total_learns_it() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with PlainProgress(stream, clock=clock).bar("general t", None) as bar:
        bar.expect(4)
        bar.expect(2)
        clock.now += 3
        bar.advance(6)
    assert stream.getvalue().splitlines() == [
        "general t: 0 requests, 0s",
        "general t: 6/6 requests, 2.0 requests/s, 3s",
    ]


def test_hf_engine_reports_each_batch(tiny_model: Path) -> None:
    from collapse_eval.engines.hf import HFEngine

    engine = HFEngine(str(tiny_model), batch_size=2)
    try:
        seen: list[int] = []
        requests = [GenRequest(prompt=f"p{i}", max_tokens=2) for i in range(5)]
        with counting_requests(seen.append, len(requests)):
            engine.generate(requests)
        assert seen == [2, 2, 1]
        seen.clear()
        pairs = [(f"c{i}", " x") for i in range(3)] + [("c0", " y")]
        with counting_requests(seen.append, len(pairs)):
            engine.loglikelihood(pairs)
        assert sum(seen) == 4 and len(seen) >= 2  # counted per forward batch
    finally:
        engine.close()


@pytest.mark.parametrize("count", [True, False])
def test_openai_engine_counts_answers_not_windows(count: bool) -> None:
    from collapse_eval.engines.openai import OpenAIEngine

    seen: list[int] = []
    with counting_requests(seen.append, 10):
        OpenAIEngine._counted(iter(["a", "b", "c"]), count)
        requests_answered(0)
        assert seen == ([1, 1, 1] if count else [])


def test_a_rich_bar_learns_its_total_and_counts_requests() -> None:
    from rich.console import Console

    from collapse_eval.progress import RichProgress

    progress = RichProgress()
    progress.console = Console(file=io.StringIO(), width=120, force_terminal=False)
    with progress.bar("general t", None) as bar:
        bar.expect(4)
        bar.advance(2)
        bar.expect(2)
        bar.advance(4)
    shown = progress.console.file.getvalue()  # type: ignore[attr-defined]
    assert "general t" in shown and "6/6" in shown and "requests/s" in shown

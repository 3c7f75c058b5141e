"""Shared fixtures. Nothing here may reach a network: hubs are forced offline."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collapse_eval.columns import RunColumns
    from collapse_eval.report.examples import Examples
    from collapse_eval.summary import Summary

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER" in os.environ:
    # Two workers on two cores: each worker's torch (and the processes it starts) on one
    # thread, set before torch loads, instead of two workers each spinning two threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------- CI: a skip is a failure
# On CI (environment variable CI=true) every test must run: a skip there means a missing
# dependency (vLLM, Chromium, the real-data packages) silently dropped coverage. Locally,
# skips stay skips.


def ci_strict() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    cpu_s = item.stash.get(_PHASE_CPU, {}).get(call.when, 0.0)
    report.user_properties.append((_CPU_PROPERTY, cpu_s))
    if ci_strict() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped, and CI=true does not allow skips: {_skip_reason(report)} "
            "(install what the test needs: bash scripts/setup.sh --dev)"
        )
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Module-level skips happen at collection; under CI they are recorded as errors."""
    if ci_strict() and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"{report.nodeid}: skipped at collection, and CI=true does not allow skips: "
            f"{_skip_reason(report)}"
        )
        _collection_skips.append(report.nodeid)


_collection_skips: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A module skipped at collection leaves no test behind to fail: fail the run here."""
    if _collection_skips and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------- two workers, slow files first
# scripts/test.sh runs the suite in two pytest-xdist workers with `--dist loadfile` (one
# per core of the CI machine; a file's module fixtures are built once, in one worker).
# Workers take files in collection order, so the files with a slow test go first: a long
# file started last would leave the other worker idle at the end.


def _is_xdist_loadfile(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and (
        getattr(config.option, "dist", "no") == "loadfile"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _is_xdist_loadfile(config):
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within


# ---------------------------------------------------------------- where the time goes
# Each phase's CPU seconds (this process and the children it waited for) go with its
# report (user_properties, so pytest-xdist carries them from the workers); the summary at
# the end names the slowest tests and files by wall and CPU time. CPU seconds stay
# comparable on a loaded machine, where wall times do not.

_CPU_PROPERTY = "cpu_s"
_PHASE_CPU = pytest.StashKey[dict[str, float]]()


def _cpu_now() -> float:
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed_phase(item: pytest.Item, when: str) -> Generator[None, None, None]:
    start = _cpu_now()
    try:
        yield
    finally:
        item.stash.setdefault(_PHASE_CPU, {})[when] = _cpu_now() - start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _timed_phase(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _timed_phase(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _timed_phase(item, "teardown"))


_times: dict[str, list[float]] = {}  # nodeid -> [wall s, CPU s], summed over phases


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    cpu = dict(report.user_properties).get(_CPU_PROPERTY, 0.0)
    spent = _times.setdefault(report.nodeid, [0.0, 0.0])
    spent[0] += report.duration
    spent[1] += float(cpu)  # type: ignore[arg-type]


def _slowest(times: dict[str, list[float]], n: int) -> list[str]:
    ranked = sorted(times.items(), key=lambda kv: -kv[1][0])[:n]
    return [f"{wall:8.1f} s {cpu:8.1f} s  {name}" for name, (wall, cpu) in ranked]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _times:
        return
    files: dict[str, list[float]] = {}
    for nodeid, (wall, cpu) in _times.items():
        spent = files.setdefault(nodeid.split("::")[0], [0.0, 0.0])
        spent[0] += wall
        spent[1] += cpu
    write = terminalreporter.write_line
    terminalreporter.section("test time: wall and CPU (this process and its children)")
    wall, cpu = (sum(t[i] for t in _times.values()) for i in (0, 1))
    elapsed = time.monotonic() - _SESSION_START
    write(f"{len(_times)} tests: {wall:.1f} s wall, {cpu:.1f} s CPU; session {elapsed:.1f} s")
    write("slowest tests (wall, CPU):")
    for line in _slowest(_times, 15):
        write(line)
    write("slowest files (wall, CPU):")
    for line in _slowest(files, 10):
        write(line)


_SESSION_START = time.monotonic()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ~100k-parameter Llama checkpoint, built once per test session."""
    from collapse_eval.demo.tinymodel import init_tiny_llama

    return init_tiny_llama(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def sharp_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` with its weights sharpened (``tests.tinyllm.sharpened_copy``), built
    once for the tests that compare vLLM (in process and `vllm serve`) with transformers."""
    from tests.tinyllm import sharpened_copy

    return sharpened_copy(tiny_model, tmp_path_factory.mktemp("sharp") / "ckpt")


@pytest.fixture(scope="session")
def sharp_reference(sharp_model: Path) -> dict[str, Any]:
    """The transformers engine's answers on ``sharp_model``
    (``tests.tinyllm.transformers_answers``), computed once for both of those modules."""
    from tests.tinyllm import transformers_answers

    return transformers_answers(sharp_model)


def write_run(path: Path, model: str, rows: Iterable[dict], tasks: dict | None = None) -> Path:
    """Write a run directory from plain dicts (records default to the domain suite)."""
    path.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": 1, "model": model, "tasks": tasks or {}}
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with (path / "records.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"schema_version": 1, **row}) + "\n")
    return path


def write_run_pair(root: Path, tuned_score: float) -> tuple[Path, Path]:
    """root/base and root/tuned: 100 domain items the base gets half right (0, 1, 0, ...)
    and the tuned model scores tuned_score on each; 1.0 passes the gate, 0.0 fails it."""
    rows = [
        {"suite": "domain", "task": "t", "item_id": str(i), "metric": "score", "score": s}
        for i, s in enumerate([0.0, 1.0] * 50)
    ]
    base = write_run(root / "base", "b", rows)
    tuned = write_run(root / "tuned", "t", [{**r, "score": tuned_score} for r in rows])
    return base, tuned


def synthetic_rows(
    seed: int,
    p_general: float,
    p_domain: float,
    n: int = 300,
    domain_fields: Callable[[int], dict[str, Any]] = lambda i: {},
) -> list[dict[str, Any]]:
    """Records of one general task (arc_easy) and one domain task (realestate), each item
    correct with the given probability; ``domain_fields(i)`` adds or overrides fields."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = [
        {
            "suite": "general",
            "task": "arc_easy",
            "item_id": str(i),
            "metric": "acc",
            "score": float(rng.random() < p_general),
        }
        for i in range(n)
    ]
    for i in range(n):
        rows.append(
            {
                "suite": "domain",
                "task": "realestate",
                "item_id": f"rt-{i}",
                "metric": "score",
                "score": float(rng.random() < p_domain),
                "task_type": ["intent", "extract"][i % 2],
                "output_format": ["label", "json"][i % 2],
                **domain_fields(i),
            }
        )
    return rows


def default_sigint() -> None:
    """Popen ``preexec_fn``: SIGINT back to its default action in the child, as in a
    terminal's foreground job. A test run started as a background job of a non-interactive
    shell (``cmd &``, as some CI runners do) inherits SIGINT ignored, and a Python child
    that starts with SIGINT ignored never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_run_argv(model: Path, domain: Path, out: Path) -> list[str]:
    """`collapse-eval run` of ``model`` on one domain file, uncached, as a subprocess argv
    (the tests that kill or interrupt a real run start it this way)."""
    return [
        sys.executable,
        "-m",
        "collapse_eval",
        "run",
        str(model),
        "--domain",
        str(domain),
        "--no-general",
        "--engine",
        "hf",
        "--engine-arg",
        "batch_size=16",
        "--no-cache",
        "--out",
        str(out),
    ]


def examples_of(
    summary: dict[str, Any] | Summary,
    summary_dir: Path,
    runs: tuple[RunColumns, RunColumns] | None = None,
    *,
    index: Path | None = None,
) -> Examples:
    """The examples the report of ``summary_dir`` shows: its runs found once with
    ``side_run_dir`` (as `collapse-eval report DIR` does), or the columns given (compare)."""
    from collapse_eval.report.examples import examples_for
    from collapse_eval.summary import SUMMARY_FILE, Summary, side_run_dirs

    typed = summary if isinstance(summary, Summary) else Summary.from_json(summary)
    dirs = None if runs is not None else side_run_dirs(typed, summary_dir / SUMMARY_FILE)
    return examples_for(typed, summary_dir, run_dirs=dirs, runs=runs, index=index)


def reports_of(
    out: Path, summary: dict[str, Any] | Summary, env: dict[str, str] | None = None
) -> dict[str, Path]:
    """``write_reports`` as `collapse-eval report OUT` calls it, for a summary.json object."""
    from collapse_eval.report.html import write_reports
    from collapse_eval.summary import SUMMARY_FILE, Summary, side_run_dirs

    typed = summary if isinstance(summary, Summary) else Summary.from_json(summary)
    return write_reports(out, typed, env, run_dirs=side_run_dirs(typed, out / SUMMARY_FILE))

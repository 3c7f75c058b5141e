"""Faults: processes killed at chosen points, a corrupt or locked cache, a full disk, and
two compares sharing one output and one cache. Process deaths are real: each scenario runs
the CLI in a subprocess (``python -c CHILD FAULT -- ARGS``) whose monkeypatches pick the
point and send SIGKILL to itself there; nothing in the product knows about faults.
The engine is the fake one (patched in for ``--engine hf``), so each run takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collapse_eval.cache import CachedEngine, RequestCache
from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.records import read_records
from tests.conftest import synthetic_rows, write_run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

N_ITEMS = 160  # per domain task; 64 items per batch -> batches of 64, 64, 32

# The child: patch the engine registry to a deterministic fake engine, install the fault,
# then call the CLI's main. FAULT is "none", "batch:N:mid-line" or "batch:N:no-newline"
# (SIGKILL while writing the N-th batch of records: five whole lines, then half of the
# sixth, or all of the sixth but its newline), "manifest:N" (SIGKILL halfway through
# the N-th manifest write), "cache:N" (SIGKILL inside the N-th cache transaction, before COMMIT),
# "enospc:NAME" (writing file NAME fails with ENOSPC) or "slow" (each batch takes 0.3 s).
CHILD = r"""
import errno, os, signal, sys, time
fault, args = sys.argv[1], sys.argv[3:]
kind, _, arg = fault.partition(":")

from collapse_eval.engines import registry
from collapse_eval.engines.fake import FakeEngine

def answer(prompt):
    i = int(prompt.split()[1].rstrip(":"))
    return "rent" if i % 3 else "buy"

class Engine(FakeEngine):
    def generate(self, requests):
        if kind == "slow":
            time.sleep(0.3)
        return super().generate(requests)

registry.make_engine = lambda k, model, engine_args: Engine(name=model, answers=answer)
# the made-up model names are not checkpoints: skip compare's check that they exist
from collapse_eval import runner
runner._check_model_source = lambda *args: None

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def nth(n):
    count = [0]
    def hit():
        count[0] += 1
        return count[0] == n
    return hit

if kind == "batch":
    from collapse_eval import records
    arg, _, mode = arg.partition(":")
    hit, original = nth(int(arg)), records.RecordWriter.write_batch
    def write_batch(self, recs):
        recs = list(recs)
        if hit():
            lines = [records.json.dumps(r.to_json()) + "\n" for r in recs]
            torn = lines[5][: len(lines[5]) // 2] if mode == "mid-line" else lines[5][:-1]
            self._fh.write("".join(lines[:5]) + torn)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            die()
        original(self, recs)
    records.RecordWriter.write_batch = write_batch
elif kind == "manifest":
    import tempfile
    from collapse_eval import records
    hit, original = nth(int(arg)), records.atomic_write_text
    def atomic_write_text(path, text):
        if os.path.basename(path) == "manifest.json" and hit():
            fd, _ = tempfile.mkstemp(
                dir=os.path.dirname(path), prefix=".manifest.json.", suffix=".tmp"
            )
            os.write(fd, text[: len(text) // 2].encode())
            os.fsync(fd)
            die()
        original(path, text)
    records.atomic_write_text = atomic_write_text
elif kind == "cache":
    from collapse_eval import cache
    hit, original = nth(int(arg)), cache.RequestCache.put_many
    def put_many(self, request_kind, items):
        if hit():
            rows = [(k, request_kind, cache.json.dumps(v)) for k, v in items.items()]
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?)", rows)
            die()
        original(self, request_kind, items)
    cache.RequestCache.put_many = put_many
elif kind == "enospc":
    from collapse_eval import records
    original = records.atomic_write_text
    def atomic_write_text(path, text):
        if os.path.basename(path) != arg:
            return original(path, text)
        real_fsync = records.os.fsync
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        records.os.fsync = fsync
        try:
            original(path, text)
        finally:
            records.os.fsync = real_fsync
    records.atomic_write_text = atomic_write_text

from collapse_eval.cli import main
sys.exit(main(args))
"""


def _domain_file(path: Path, n: int = N_ITEMS) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            item = {
                "id": f"{path.stem}{i}",
                "task_type": ["intent", "route"][i % 2],
                "output_format": "label",
                "prompt": f"Customer {i}: I want to rent. Intent:",
                "reference": "rent",
                "metadata": {"cluster": f"c{i // 4}"},
            }
            fh.write(json.dumps(item) + "\n")
    return path


def _cli(
    fault: str, *args: str | Path, wait: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    cmd = [sys.executable, "-c", CHILD, fault, "--", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "PYTHONUNBUFFERED": "1"}
    if not wait:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _run_args(tmp: Path, out: Path, cache: Path | None) -> list[str | Path]:
    args: list[str | Path] = ["run", "base-model", "--no-general", "--engine", "hf", "-q"]
    for name in ("listings", "contracts"):
        args += ["--domain", tmp / f"{name}.jsonl"]
    args += ["--cache-dir", cache] if cache is not None else ["--no-cache"]
    return [*args, "--out", out]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two domain files and a clean, uninterrupted run of them (the reference)."""
    tmp = tmp_path_factory.mktemp("faults")
    _domain_file(tmp / "listings.jsonl")
    _domain_file(tmp / "contracts.jsonl")
    done = _cli("none", *_run_args(tmp, tmp / "clean", None))
    assert done.returncode == 0, done.stderr
    return tmp


def _complete_lines(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1]


@pytest.mark.parametrize(
    ("fault", "cached", "records_before"),
    [
        ("batch:3:mid-line", False, 128),  # mid-batch: 5 lines and half a line written
        ("batch:3:no-newline", False, 128),  # mid-batch: the 6th line lacks its newline
        ("manifest:3", False, N_ITEMS),  # the manifest naming the second task, half written
        ("manifest:4", False, 2 * N_ITEMS),  # the final 'complete' manifest, half written
        # inside the third batch's cache transaction, before COMMIT (the first transaction
        # remembers the engine's resolved arguments)
        ("cache:4", True, 128),
    ],
)
def test_sigkill_at_a_chosen_point_then_resume(
    world: Path, tmp_path: Path, fault: str, cached: bool, records_before: int
) -> None:
    out, cache = tmp_path / "run", (tmp_path / "cache" if cached else None)
    killed = _cli(fault, *_run_args(world, out, cache))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    records = out / "records.jsonl"
    before = _complete_lines(records)
    if fault.startswith("batch"):  # the whole lines of the torn batch are kept, not redone
        assert before.count(b"\n") == records_before + 5
        assert not records.read_bytes().endswith(b"\n")
    else:
        assert before.count(b"\n") == records_before

    if fault.startswith("manifest"):
        assert len(list(out.glob(".manifest.json.*.tmp"))) == 1  # the half-written one
        assert json.loads((out / "manifest.json").read_text())["complete"] is False
    resumed = _cli("none", *_run_args(world, out, cache))
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob(".manifest.json.*.tmp"))  # the stale temporary is removed
    final = records.read_bytes()
    assert final.startswith(before)  # records written before the kill kept byte for byte
    assert final == (world / "clean" / "records.jsonl").read_bytes()  # complete, in order
    ids = [r.item_id for r in read_records(records)]
    assert len(ids) == len(set(ids)) == 2 * N_ITEMS
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and set(manifest["tasks"]) == {"listings", "contracts"}
    if cached:
        with sqlite3.connect(cache / "requests.sqlite") as conn:  # type: ignore[operator]
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM entries WHERE kind = 'generate'"
            ).fetchone()
            (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        assert check == "ok"
        assert count == N_ITEMS  # the two tasks share prompts; the killed batch redone once


def _requests(n: int) -> list[GenRequest]:
    return [GenRequest(prompt=f"Customer {i}: Intent:", until=(), max_tokens=8) for i in range(n)]


def test_corrupt_cache_is_moved_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"\x00garbage, not sqlite\xff" * 500
    (tmp_path / "requests.sqlite").write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="collapse_eval.cache"):
        cache = RequestCache(tmp_path)
    assert "was not a usable database" in caplog.text
    aside = list(tmp_path.glob("requests.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    engine = CachedEngine(FakeEngine("m", answers=lambda p: p[:12]), cache)
    assert engine.generate(_requests(5)) == [f"Customer {i}: " for i in range(5)]
    assert len(cache) == 5 and cache.bypassed is None


def test_corrupt_cache_in_a_real_run_gives_the_clean_records(world: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "requests.sqlite").write_bytes(os.urandom(8192))
    done = _cli("none", *_run_args(world, tmp_path / "run", cache))
    assert done.returncode == 0, done.stderr
    assert "warning: request cache" in done.stderr and "moved it to" in done.stderr
    clean = (world / "clean" / "records.jsonl").read_bytes()
    assert (tmp_path / "run" / "records.jsonl").read_bytes() == clean


LOCKER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":  # nobody else may even read (only possible with no reader)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")  # in WAL mode: no other writer
conn.execute("INSERT OR IGNORE INTO entries VALUES ('locker', 'x', '1')")
print("locked", flush=True)
time.sleep(60)
"""


def _hold_exclusive_lock(db: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("when", ["at open", "mid-run"])
def test_locked_cache_is_bypassed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, when: str
) -> None:
    RequestCache(tmp_path).close()  # an empty cache file
    engine_kwargs = {"answers": lambda p: p[:12]}
    cache = RequestCache(tmp_path, timeout_s=0.3) if when == "mid-run" else None
    mode = "exclusive" if when == "at open" else "write"
    locker = _hold_exclusive_lock(tmp_path / "requests.sqlite", mode)
    try:
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="collapse_eval.cache"):
            cache = cache or RequestCache(tmp_path, timeout_s=0.3)
            engine = CachedEngine(FakeEngine("m", **engine_kwargs), cache)
            first = engine.generate(_requests(4))
            again = engine.generate(_requests(4))
        assert time.monotonic() - start < 10  # waits the timeout once, then bypasses
    finally:
        locker.kill()
        locker.wait()
    assert first == again == [f"Customer {i}: " for i in range(4)]
    assert cache.bypassed is not None and "locked" in cache.bypassed
    assert caplog.text.count("is not used") == 1
    assert engine.inner.calls == [("generate", 4), ("generate", 4)]  # computed, not cached


def _tree(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("full_at", ["report.html", "summary.json"])
def test_disk_full_while_writing_the_report(tmp_path: Path, full_at: str) -> None:
    base = write_run(tmp_path / "base", "base", synthetic_rows(0, 0.7, 0.5, n=100))
    tuned = write_run(tmp_path / "tuned", "tuned", synthetic_rows(1, 0.7, 0.6, n=100))
    out = tmp_path / "out"
    first = _cli("none", "compare", base, tuned, "--out", out, "-q")
    assert first.returncode in (0, 1), first.stderr
    earlier = json.loads((out / "summary.json").read_text())
    runs_before = _tree(tmp_path / "base") | _tree(tmp_path / "tuned")
    (out / "report.html").unlink()

    full = _cli(f"enospc:{full_at}", "compare", base, tuned, "--out", out, "-q")
    assert full.returncode == 3, full.stderr
    assert "no space left on the device" in full.stderr and "Traceback" not in full.stderr
    if full_at == "summary.json":
        assert "The run directories are intact" in full.stderr
        assert json.loads((out / "summary.json").read_text()) == earlier  # the old one
    else:
        assert "summary.json and the run directories are written and intact" in full.stderr
        assert f"collapse-eval report {out}" in full.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["comparisons"] == earlier["comparisons"]
        assert not (out / "report.html").exists()
    assert _tree(tmp_path / "base") | _tree(tmp_path / "tuned") == runs_before
    assert not list(out.glob(".*.tmp"))  # no half-written temporary file left behind


def test_two_compares_share_one_output_and_one_cache(world: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["compare", "base-model", "tuned-model", "--no-general", "--engine", "hf"]
    args += ["--domain", str(world / "listings.jsonl"), "--domain", str(world / "contracts.jsonl")]
    args += ["--cache-dir", str(cache), "--out", str(out)]
    procs = [_cli("slow", *args, wait=False) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode in (0, 1), err
    assert procs[0].returncode == procs[1].returncode
    assert results[0][0] == results[1][0]  # the same verdict table, number for number
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["comparisons"]) > 0
    for side in ("base", "tuned"):
        records = read_records(out / "runs" / side / "records.jsonl")  # raises on duplicates
        assert len(records) == 2 * N_ITEMS
    clean = (world / "clean" / "records.jsonl").read_bytes()
    assert (out / "runs" / "base" / "records.jsonl").read_bytes() == clean
    assert any("waiting" in err for _, err in results)  # one really waited for the other

"""Paths of the wrong kind, a full disk, file modes and torn lines, through cli.main."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from collapse_eval.cli import main
from collapse_eval.errors import EXIT_RUNTIME, EXIT_USAGE, StorageError, UsageError, os_error
from tests.conftest import write_run

ROWS = [
    {"suite": "domain", "task": "t", "item_id": str(i), "metric": "score", "score": float(i % 2)}
    for i in range(60)
]


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    base = write_run(tmp_path / "base", "b", ROWS)
    tuned = write_run(tmp_path / "tuned", "t", [{**r, "score": 1.0} for r in ROWS])
    return base, tuned


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _clean(err: str) -> None:
    assert "Traceback" not in err
    for name in ("IsADirectoryError", "NotADirectoryError", "FileExistsError", "OSError"):
        assert name not in err


def test_gate_on_a_directory_is_a_usage_error_naming_the_summary(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["gate", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    _clean(err)
    hint = f"(did you mean {out / 'summary.json'}?)"
    assert f"{out}: is a directory, expected a JSON file {hint}" in err


def test_report_on_a_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "summary.md"
    file.write_text("x", encoding="utf-8")
    assert main(["report", str(file)]) == EXIT_USAGE
    err = capsys.readouterr().err
    _clean(err)
    assert f"{file / 'summary.json'}: is not a directory: a part of this path is a file" in err


def test_out_where_a_file_exists_is_a_usage_error(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x", encoding="utf-8")
    assert main(["compare", *map(str, runs), "--out", str(blocker / "cmp"), "-q"]) == EXIT_USAGE
    err = capsys.readouterr().err
    _clean(err)
    assert str(blocker) in err and "a part of this path is a file" in err


def test_correlate_with_a_directory_as_table_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["correlate", str(tmp_path), "--out", str(tmp_path / "c")]) == EXIT_USAGE
    err = capsys.readouterr().err
    _clean(err)
    assert f"{tmp_path}: is a directory, not a file" in err


def test_disk_full_is_a_runtime_error_with_a_sentence(
    runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "-q"]) == EXIT_RUNTIME
    err = capsys.readouterr().err
    _clean(err)
    assert f"cannot write {out / 'summary.json'}: no space left on the device" in err
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def test_os_error_wording_per_errno() -> None:
    denied = os_error(PermissionError(errno.EACCES, "Permission denied", "/x/y"), "--out")
    assert isinstance(denied, UsageError) and denied.exit_code == EXIT_USAGE
    assert str(denied) == (
        "/x/y (--out): permission denied; choose a path you can read and write, "
        "or fix its permissions."
    )
    quota = os_error(OSError(errno.EDQUOT, "Disk quota exceeded", "/x/r.jsonl"))
    assert isinstance(quota, StorageError) and quota.exit_code == EXIT_RUNTIME
    assert str(quota).startswith("/x/r.jsonl: cannot write: disk quota exceeded.")


def test_outputs_respect_the_umask(
    runs: tuple[Path, Path], tmp_path: Path, umask_022: None
) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "-q"]) == 0
    for name in ("summary.json", "summary.md", "report.html"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_atomic_writes_follow_a_stricter_umask(tmp_path: Path) -> None:
    from collapse_eval.records import atomic_write_text

    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "m.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o640


def test_torn_last_line_is_a_warning_on_stderr(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, tuned = runs
    records = tuned / "records.jsonl"
    good = json.dumps({"schema_version": 1, **ROWS[0], "item_id": "extra"})
    with records.open("a", encoding="utf-8") as fh:
        fh.write(good[:20])  # the run was killed mid-write
    assert main(["compare", str(base), str(tuned), "--out", str(tmp_path / "c"), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {records}:61: the last line is cut short" in err

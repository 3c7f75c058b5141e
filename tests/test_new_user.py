"""What a new user hit on a real model (issue 19): checks that come before any model loads,
and the command line's smaller promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.cli import main
from tests.conftest import write_run


def _domain(path: Path, n: int = 8) -> Path:
    rows = (
        {
            "id": f"d{i}",
            "task_type": "intent",
            "output_format": "label",
            "prompt": f"Customer {i}: I want to rent. Intent:",
            "reference": "rent",
        }
        for i in range(n)
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _compare_hf(tiny_model: Path, tmp_path: Path, *candidates: str) -> list[str]:
    return [
        "compare",
        str(tiny_model),
        *candidates,
        "--domain",
        str(_domain(tmp_path / "d.jsonl")),
        "--no-general",
        "--engine",
        "hf",
        "--no-cache",
        "--out",
        str(tmp_path / "cmp"),
        "-q",
    ]


def test_a_missing_candidate_is_refused_before_the_base_is_evaluated(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _compare_hf(tiny_model, tmp_path, str(tiny_model), str(tmp_path / "nope"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nope'}: checkpoint directory not found" in err
    assert not (tmp_path / "cmp" / "runs").exists()  # the base was not evaluated first


def test_an_unfinished_run_directory_as_candidate_is_refused_first(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "half", "m", [])
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    assert main(_compare_hf(tiny_model, tmp_path, str(run))) == 2
    assert "this run is incomplete (manifest.json says complete: false" in capsys.readouterr().err
    assert not (tmp_path / "cmp" / "runs").exists()


def test_a_bad_engine_argument_is_refused_before_any_model_loads(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _compare_hf(tiny_model, tmp_path, str(tiny_model))
    assert main([*argv, "--engine-arg", "dtyp=float32"]) == 2
    err = capsys.readouterr().err
    assert "dtyp" in err and "dtype" in err  # the did-you-mean
    assert not (tmp_path / "cmp" / "runs").exists()

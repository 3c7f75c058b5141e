"""`collapse-eval drift` and `compare --drift / --screen drift` on tiny local models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli
from collapse_eval.drift.measure import DriftResult, SetDrift
from collapse_eval.drift.run import Screen, apply_screen
from collapse_eval.errors import UsageError
from tests.test_compare import SCHEMA
from tests.testdata import rent_domain_file

HF = ["--engine", "hf", "-q"]


def _result(kl: float) -> DriftResult:
    return DriftResult(
        "b", "t", "hf", "full", None, (SetDrift("general_probe", kl, 0.0, 1, 9, "x"),)
    )


def test_drift_colour_is_a_heat_scale_within_the_overview() -> None:
    from collapse_eval.report.overview import drift_colour

    assert drift_colour(0.0, 2.0) == "rgb(255, 255, 255)"
    assert drift_colour(2.0, 2.0) == "rgb(255, 120, 120)"
    assert drift_colour(1.0, 2.0) == "rgb(255, 188, 188)"
    assert drift_colour(None, 2.0) == drift_colour(1.0, None) == "transparent"


def test_screen_by_threshold_and_by_best_k() -> None:
    drifts = {"a": _result(0.3), "b": _result(0.1), "c": _result(0.1), "d": _result(0.05)}
    assert apply_screen(drifts, Screen(max_kl=0.1)) == {
        "a": "drift 0.3 nats/token on the general probe, above --screen-max-kl 0.1"
    }
    skipped = apply_screen(drifts, Screen(best=2))
    assert sorted(skipped) == ["a", "c"]  # the tie at 0.1 keeps candidate order: b first
    assert skipped["c"].startswith("drift 0.1 nats/token on the general probe, rank 3 of 4")
    with pytest.raises(UsageError, match="exactly one of"):
        Screen()
    with pytest.raises(UsageError, match="exactly one of"):
        Screen(max_kl=1.0, best=1)


def test_drift_command_writes_json_and_a_table(
    tiny_model: Path, sharp_model: Path, tmp_path: Path
) -> None:
    domain = rent_domain_file(tmp_path / "rent.jsonl", 6, "r")
    out = tmp_path / "drift"
    args = ["drift", str(tiny_model), str(sharp_model), "--domain", str(domain), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, *HF])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "drift.json").read_text())
    assert data["schema_version"] == 1 and data["method"] == "full" and data["top_k"] is None
    assert set(data["sets"]) == {"general_probe", "domain"}
    assert data["sets"]["general_probe"]["n_texts"] == 301
    assert data["sets"]["domain"]["n_texts"] == 6
    assert data["sets"]["general_probe"]["mean_kl"] > 0.1
    assert "exact KL from full next-token distributions" in result.output
    assert "general_probe" in result.output and "written:" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--screen", "drfit"], "Invalid value for '--screen'"),
        (["--screen", "drift"], "exactly one of --screen-max-kl"),
        (["--screen-best", "1"], "--screen-best is a threshold of --screen drift"),
        (["--screen-max-kl", "0.1"], "--screen-max-kl is a threshold of --screen drift"),
        (["--top-k", "5"], "--top-k sets how drift is measured"),
        (["--screen", "drift", "--screen-best", "0"], "0 is not in the range x>=1"),
        (["--screen", "drift", "--screen-max-kl", "-1"], "-1.0 is not in the range x>=0"),
    ],
)
def test_screen_option_mistakes_are_exit_2(extra: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["compare", "b", "t", *extra, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output


def test_drift_needs_checkpoints_not_run_directories(tmp_path: Path) -> None:
    from tests.conftest import synthetic_rows, write_run

    tasks = {"rt": {"suite": "domain", "primary_metric": "score"}}
    base = write_run(tmp_path / "base", "m", synthetic_rows(1, 0.5, 0.5), tasks)
    tuned = write_run(tmp_path / "tuned", "m2", synthetic_rows(2, 0.5, 0.5), tasks)
    result = CliRunner().invoke(
        cli, ["compare", str(base), str(tuned), "--drift", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "is a run directory; drift compares" in result.output


def test_compare_screens_candidates_by_drift(
    tiny_model: Path, sharp_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "same"
    shutil.copytree(tiny_model, copy)
    domain = rent_domain_file(tmp_path / "rent.jsonl", 4, "r")
    out = tmp_path / "out"
    args = [
        "compare",
        str(tiny_model),
        str(sharp_model),
        str(copy),
        "--domain",
        str(domain),
        "--domain-limit",
        "3",
        "--no-general",
        "--no-cache",
        "--screen",
        "drift",
        "--screen-best",
        "1",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, [*args, *HF])
    assert result.exit_code in (0, 1), result.output
    assert "screened out (not evaluated): ckpt: drift" in result.output
    screen = json.loads((out / "screen.json").read_text())
    assert screen["candidates"]["same"]["evaluated"] is True
    assert screen["candidates"]["same"]["drift"]["sets"]["general_probe"]["mean_kl"] == 0.0
    assert screen["candidates"]["ckpt"]["evaluated"] is False
    assert "rank 2 of 2" in screen["candidates"]["ckpt"]["why_skipped"]
    assert not (out / "runs" / "ckpt").exists()  # the screened-out candidate never ran
    summary = json.loads((out / "same" / "summary.json").read_text())
    assert summary["drift"]["sets"]["general_probe"]["mean_kl"] == 0.0
    assert set(summary["drift"]["sets"]) == {"general_probe", "domain"}
    assert summary["drift"]["sets"]["domain"]["n_texts"] == 3  # what --domain-limit evaluates
    jsonschema.validate(summary, SCHEMA)
    broken = {**summary, "drift": {**summary["drift"], "method": "guessed"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    page = (out / "index.html").read_text()
    assert "Screened out (not evaluated)" in page and "drift (KL/token)" in page


def test_a_mistyped_tuned_checkpoint_fails_before_the_base_loads(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collapse_eval.engines.registry as registry

    def no_engine(*args: object) -> None:
        raise AssertionError("no engine may be built")

    monkeypatch.setattr(registry, "make_engine", no_engine)
    missing = tmp_path / "no" / "ckpt"
    result = CliRunner().invoke(cli, ["drift", str(tiny_model), str(missing), *HF])
    assert result.exit_code == 2
    assert "checkpoint directory not found" in result.output

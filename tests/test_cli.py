"""CLI exit codes and outputs through click's CliRunner, on run directories (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collapse_eval.cli import cli, main
from tests.conftest import synthetic_rows, write_run

XSS = "<script>alert(1)</script>"


def _rows(seed: int, p_general: float, p_domain: float) -> list[dict]:
    return synthetic_rows(
        seed,
        p_general,
        p_domain,
        domain_fields=lambda i: {"prediction": XSS if i == 0 else f"answer {i}", "reference": "x"},
    )


TASKS = {
    "arc_easy": {"suite": "general", "primary_metric": "acc"},
    "realestate": {"suite": "domain", "primary_metric": "score"},
}


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    return {
        "base": write_run(tmp_path / "base", "base-model", _rows(1, 0.6, 0.2), TASKS),
        # gains on the domain, keeps general ability
        "good": write_run(tmp_path / "good", "good-model", _rows(1, 0.6, 0.7), TASKS),
        # gains on the domain, collapses on general
        "collapsed": write_run(tmp_path / "collapsed", f"bad {XSS}", _rows(2, 0.3, 0.7), TASKS),
    }


def test_compare_run_dirs_pass_exits_0_and_writes_reports(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["compare", str(runs["base"]), str(runs["good"]), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "pass"
    general = [c for c in summary["comparisons"] if c["suite"] == "general"]
    assert general[0]["delta"] == pytest.approx(0.0) and general[0]["status"] == "non_inferior"
    for name in ("summary.md", "report.html", "plots/general.png", "plots/domain_task_type.png"):
        assert (out / name).is_file(), name


def test_compare_collapse_exits_1_with_reason(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["compare", str(runs["base"]), str(runs["collapsed"]), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "fail"
    assert any("arc_easy" in reason for reason in summary["reasons"])
    html = (out / "report.html").read_text()
    # Untrusted text (model name, predictions) is escaped, never executed.
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_gate_rejudges_under_a_stricter_policy(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        CliRunner()
        .invoke(cli, ["compare", str(runs["base"]), str(runs["good"]), "--out", str(out)])
        .exit_code
        == 0
    )
    assert CliRunner().invoke(cli, ["gate", str(out / "summary.json")]).exit_code == 0
    strict = tmp_path / "strict.yaml"
    # A zero-width margin cannot be met by a CI around 0: inconclusive, and we fail on it.
    strict.write_text("general: {margin: 0.0, fail_on: [regressed, inconclusive]}\n")
    result = CliRunner().invoke(cli, ["gate", str(out / "summary.json"), "--policy", str(strict)])
    assert result.exit_code == 1, result.output


def test_bad_policy_is_exit_2_with_hint_before_any_work(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("alpha: 0.05\ngeneral: {margn: 0.02}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["compare", str(runs["base"]), str(runs["good"]), "--policy", str(bad), "--out", str(out)],
    )
    assert result.exit_code == 2
    assert "margn" in result.output and "margin" in result.output
    assert "Traceback" not in result.output
    assert not (out / "summary.json").exists()


def test_missing_inputs_are_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["gate", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "nope.json: file not found" in result.output
    result = runner.invoke(
        cli,
        [
            "compare",
            str(runs["base"]),
            str(runs["good"]),
            "--domain",
            str(tmp_path / "missing.jsonl"),
        ],
    )
    assert result.exit_code == 2 and "missing.jsonl" in result.output
    result = runner.invoke(cli, ["compare", str(runs["base"])])
    assert result.exit_code == 2


def test_corrupt_records_are_exit_2_naming_the_line(runs: dict[str, Path], tmp_path: Path) -> None:
    records = runs["good"] / "records.jsonl"
    lines = records.read_text().splitlines()
    lines[3] = lines[3].replace('"score": ', '"score": "x", "was": ')
    records.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        cli, ["compare", str(runs["base"]), str(runs["good"]), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "records.jsonl:4" in result.output


def test_report_rerenders_from_summary(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    CliRunner().invoke(cli, ["compare", str(runs["base"]), str(runs["good"]), "--out", str(out)])
    (out / "report.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "arc_easy" in (out / "report.html").read_text()


def test_main_returns_exit_codes_without_a_subprocess(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    assert (
        main(
            [
                "compare",
                str(runs["base"]),
                str(runs["collapsed"]),
                "--out",
                str(tmp_path / "o"),
                "-q",
            ]
        )
        == 1
    )
    assert main(["gate", str(tmp_path / "absent.json")]) == 2
    assert main(["--version"]) == 0


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "id": "a",
                        "task_type": "t",
                        "output_format": "label",
                        "prompt": "p",
                        "reference": "x",
                    }
                ),
                "{oops",
                json.dumps(
                    {
                        "id": "a",
                        "task_type": "t",
                        "output_format": "lable",
                        "prompt": "p",
                        "reference": "x",
                    }
                ),
            ]
        )
        + "\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2" in result.output and f"{path}:3" in result.output
    assert "label" in result.output  # did-you-mean for 'lable'


def _run_args(tmp_path: Path, *engine_args: str) -> list[str]:
    args = ["run", "no-such-model", "--engine", "hf", "--no-general", "--no-cache", "-q"]
    for item in engine_args:
        args += ["--engine-arg", item]
    return [*args, "--out", str(tmp_path / "run")]


def test_engine_arg_given_twice_is_exit_2_naming_both_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_run_args(tmp_path, "batch_size=1", "batch_size=2")) == 2
    assert "--engine-arg batch_size is given twice ('1' and '2')" in capsys.readouterr().err


def test_unknown_or_ill_typed_engine_arg_is_exit_2_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_run_args(tmp_path, "batch_sise=4")) == 2
    err = capsys.readouterr().err
    assert "the hf engine has no argument 'batch_sise'. Did you mean 'batch_size'?" in err
    assert main(_run_args(tmp_path, "dtype=float32,batch_size=many")) == 2
    assert "batch_size=many: the hf engine expects an integer >= 1" in capsys.readouterr().err


def test_engine_args_in_lm_eval_comma_form_reach_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collapse_eval.engines import registry
    from collapse_eval.engines.fake import FakeEngine

    seen: list[dict[str, str]] = []

    def recording_make_engine(kind: str | None, model: str, engine_args: dict) -> FakeEngine:
        seen.append(dict(engine_args))
        return FakeEngine(model)

    monkeypatch.setattr(registry, "make_engine", recording_make_engine)
    code = main(_run_args(tmp_path, "dtype=float32,batch_size=16", 'hf_overrides={"a":1,"b":2}'))
    assert code == 0
    assert seen == [{"dtype": "float32", "batch_size": "16", "hf_overrides": '{"a":1,"b":2}'}]

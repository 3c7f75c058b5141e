"""`compare RUN RUN --sequential` and `gate` from the command line (exit codes, output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.cli import main
from tests.conftest import write_run_pair


def test_compare_sequential_on_run_directories_and_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, tuned = write_run_pair(tmp_path, tuned_score=0.0)  # the domain gain is ruled out
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(tuned), "--sequential", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    # 100 items: look 1 (20 items) is below the 30 an interim look needs; look 2 decides.
    assert (
        "sequential gate (5 looks, O'Brien-Fleming alpha spending): decided at look 2 of 5"
        in printed
    )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    block = summary["sequential"]
    assert summary["policy"]["sequential"] == {"looks": 5}
    assert block["tasks"] == [
        {
            "suite": "domain",
            "task": "t",
            "items_evaluated": 40,
            "items_available": 100,
            "stop_look": 2,
        }
    ]
    (gain,) = block["comparisons"]
    assert gain["status"] == "gain_ruled_out" and gain["looks"][0]["decision"] is None
    assert main(["gate", str(out / "summary.json")]) == 1
    assert "gain_ruled_out at look 2 (40 of 100 items" in capsys.readouterr().out
    # The report shows the boundary plot of the gating comparison.
    assert (out / "plots" / "sequential.png").stat().st_size > 1000
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="sequential"><h2>Sequential gate</h2>' in html
    assert "domain gain gain_ruled_out at look 2 (40 of 100 items)" in html


def test_fixed_n_report_has_no_sequential_plot(tmp_path: Path) -> None:
    base, tuned = write_run_pair(tmp_path, tuned_score=1.0)
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(tuned), "--out", str(out)]) == 0
    assert not (out / "plots" / "sequential.png").exists()
    assert 'id="sequential"' not in (out / "report.html").read_text(encoding="utf-8")


def test_good_candidate_passes_and_the_policy_section_turns_it_on(tmp_path: Path) -> None:
    base, tuned = write_run_pair(tmp_path, tuned_score=1.0)
    policy = tmp_path / "policy.yaml"
    policy.write_text("sequential:\n  looks: 4\n", encoding="utf-8")
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(tuned), "--policy", str(policy), "--out", str(out)]) == 0
    block = json.loads((out / "summary.json").read_text(encoding="utf-8"))["sequential"]
    assert (block["design"]["looks"], block["stop_look"], block["verdict"]) == (4, 2, "pass")


def test_mistakes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, tuned = write_run_pair(tmp_path, tuned_score=1.0)
    assert main(["compare", str(base), str(tuned), "--sequentail"]) == 2
    err = capsys.readouterr().err  # click may offer '--screen' beside it
    assert "Did you mean" in err and "'--sequential'" in err
    # A checkpoint is evaluated in rounds; a mistyped one fails before anything loads.
    assert main(["compare", str(base), str(tmp_path / "no-such-model"), "--sequential"]) == 2
    assert "no-such-model: checkpoint directory not found" in capsys.readouterr().err
    out = ["--out", str(tmp_path / "o")]
    assert (
        main(["compare", str(base), str(tuned), "--sequential", "--policy", "equivalence", *out])
        == 2
    )
    assert "equivalence requirement" in capsys.readouterr().err

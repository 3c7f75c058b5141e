"""The overview's by-training-step figure: candidates named with their step are plotted
against it (learning, forgetting, drift); other names leave the page as it was."""

from __future__ import annotations

from pathlib import Path

from collapse_eval.report.overview import Candidate, write_overview
from collapse_eval.report.steps import candidate_step, stepped
from collapse_eval.summary import Summary
from tests.test_many_candidates import _summary

_PNG = b"\x89PNG\r\n\x1a\n"


def _candidate(name: str, gain: float, retention: float, drift: float | None = None) -> Candidate:
    raw = _summary(name, "pass" if retention > 0.95 else "fail", gain, retention)
    if drift is not None:
        raw["drift"] = {"sets": {"general_probe": {"mean_kl": drift}}}
    return Candidate(name, Summary.from_json(raw))


def test_steps_are_read_from_the_names() -> None:
    names = ["step-0015", "runs/step-0180", "checkpoint-500", "ckpt_7", "Step-3", "mixed"]
    assert [candidate_step(n) for n in names] == [15, 180, 500, 7, 3, None]
    assert [candidate_step(n) for n in ("step-x1", "missteps-12", "step-12-final")] == [
        None,
        None,
        None,
    ]


def test_the_overview_plots_stepped_candidates_by_step(tmp_path: Path) -> None:
    candidates = [
        _candidate("step-0030", 0.20, 0.90, 1.5),
        _candidate("step-0015", 0.10, 0.99, 0.7),
        _candidate("mixed", 0.30, 1.00, 0.4),
        _candidate("step-0045", 0.25, 0.60, 2.5),
    ]
    assert [s for s, _ in stepped(candidates)] == [15, 30, 45]
    written = write_overview(tmp_path, candidates)
    assert sorted(written) == ["index.html", "overview.png", "overview_steps.png"]
    assert (tmp_path / "overview_steps.png").read_bytes()[:8] == _PNG
    page = (tmp_path / "index.html").read_text()
    assert "<h2>By training step</h2>" in page and 'id="overview-steps"' in page
    assert "domain gain (points): step 15: 10, step 30: 20, step 45: 25" in page
    assert "general retention (index): step 15: 0.99, step 30: 0.9, step 45: 0.6" in page
    assert "drift (KL/token, nats): step 15: 0.7, step 30: 1.5, step 45: 2.5" in page
    assert page.index("By training step") < page.index("<h2>Candidates</h2>")


def test_no_step_figure_without_a_run_of_steps(tmp_path: Path) -> None:
    for names in (["domain-only", "mixed"], ["step-0010", "mixed"], ["a/step-5", "b/step-5"]):
        out = tmp_path / names[0].replace("/", "_")
        written = write_overview(out, [_candidate(n, 0.1, 0.99) for n in names])
        assert sorted(written) == ["index.html", "overview.png"], names
        assert "By training step" not in (out / "index.html").read_text()

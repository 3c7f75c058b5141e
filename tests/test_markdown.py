from __future__ import annotations

from collapse_eval.compare import compare_runs
from collapse_eval.policy import default_policy
from collapse_eval.report.markdown import escape_cell, render_summary_markdown
from tests.test_compare import _world


def test_escape_cell() -> None:
    assert escape_cell("a|b\nc") == "a\\|b c"
    assert escape_cell(None) == ""


def test_render_summary() -> None:
    base, tuned = _world()
    text = render_summary_markdown(compare_runs(base, tuned, default_policy(), seed=0))
    lines = text.splitlines()
    assert lines[0] == "## collapse-eval: FAIL"
    assert "tuned **tuned\\|model v2** vs base **base-model**" in lines[2]  # layout intact
    assert text.index("### Why") < text.index("### General benchmarks") < text.index("### Domain")
    assert "arc\\_challenge dropped" in text
    assert "### Domain by task type" in text and "### Domain by output format" in text
    assert "Retention index" in text and "only in the base run" in text
    arc_row = next(line for line in lines if line.startswith("| arc\\_challenge |"))
    # ... status, then lost / gained (flips): arc_challenge lost 69 items and gained none
    assert arc_row.count(" | ") == 9 and "**regressed**" in arc_row
    assert arc_row.endswith("| 69 / 0 |")
    for line in lines:
        if line.startswith("| intent |"):
            assert line.count(" | ") == 9

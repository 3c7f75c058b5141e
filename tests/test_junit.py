"""junit.xml: one testcase per gated comparison; a failure carries the verdict's reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from collapse_eval.report import junit
from collapse_eval.summary import Summary


def render_junit(summary: dict[str, Any]) -> str:
    """junit.xml of a summary.json object."""
    return junit.render_junit(Summary.from_json(summary))


def _row(suite: str, task: str, status: str, **extra: Any) -> dict[str, Any]:
    row = {
        "suite": suite, "task": task, "group_by": None, "group": None, "metric": "acc",
        "n": 300, "base_mean": 0.6, "tuned_mean": 0.55, "delta": -0.05, "ci_low": -0.08,
        "ci_high": -0.02, "test": "mcnemar_exact", "p_value": 0.0, "p_adjusted": 0.0,
        "status": status, "margin": 0.02,
    }  # fmt: skip
    row.update(extra)
    return row


def _summary(**policy: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "verdict": "fail",
        "reasons": [
            "arc_easy dropped 5.0 points (95% CI -8.0 to -2.0, Holm p < 0.001), beyond the margin",
            "note: hellaswag dropped 1.0 points: a drop beyond the margin cannot be ruled out",
            "domain (all items pooled) changed -1.0 points (95% CI -3 to +1): no significant gain",
        ],
        "base": {"model": "/m/base", "run": "runs/base"},
        "tuned": {"model": "/m/tuned</testcase>\x01", "run": "runs/tuned"},
        "policy": {
            "alpha": 0.05,
            "general": {"margin": 0.02, "fail_on": ["regressed"], "critical": ["mmlu"], **policy},
            "domain": {"require_gain": True, "min_gain": 0.0, "margin": 0.02, "fail_on": []},
        },
        "alpha": 0.05,
        "comparisons": [
            _row("general", "arc_easy", "regressed"),
            _row("general", "hellaswag", "inconclusive"),
            _row("domain", "real</testcase><x>\x1b", "non_inferior", metric="score"),
            _row("domain", "*", "regressed", group_by="task_type", group="intent"),
        ],
        "domain_gain": {"required": True, "met": False},
    }


def _cases(text: str) -> dict[str, ET.Element]:
    root = ET.fromstring(text.encode("utf-8"))
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_one_case_per_benchmark_domain_task_and_gain_rule() -> None:
    text = render_junit(_summary())
    root = ET.fromstring(text.encode("utf-8"))
    cases = _cases(text)
    assert list(cases) == [
        "arc_easy",
        "hellaswag",
        "domain task real</testcase><x>",  # control characters dropped, markup kept as text
        "domain gain (all items pooled)",
        "mmlu",  # critical but not compared
    ]
    assert root.get("tests") == "5" and root.get("failures") == "3"
    failure = cases["arc_easy"].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("arc_easy dropped 5.0 points")
    assert "margin 2 points" in (failure.text or "")
    assert cases["hellaswag"].find("failure") is None  # a note, not a failure
    gain = cases["domain gain (all items pooled)"].find("failure")
    assert gain is not None and "no significant gain" in gain.get("message", "")
    mmlu = cases["mmlu"].find("failure")
    assert mmlu is not None and "critical task mmlu was not compared" in mmlu.get("message", "")
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["tuned_model"] == "/m/tuned</testcase>"


def test_inconclusive_fails_when_the_policy_says_so_and_groups_gate_with_domain_fail_on() -> None:
    summary = _summary(fail_on=["regressed", "inconclusive"])
    summary["policy"]["domain"]["fail_on"] = ["regressed"]
    cases = _cases(render_junit(summary))
    assert cases["hellaswag"].find("failure") is not None
    group = cases["domain task_type=intent"].find("failure")
    assert group is not None and group.get("message") == "domain task_type=intent: regressed"


def test_groups_are_not_cases_when_the_policy_cannot_fail_them() -> None:
    assert "domain task_type=intent" not in _cases(render_junit(_summary()))


def test_passing_summary_has_no_failures() -> None:
    summary = _summary()
    summary["comparisons"] = [_row("general", "arc_easy", "non_inferior")]
    summary["domain_gain"] = {"required": True, "met": True}
    summary["policy"]["general"]["critical"] = []
    root = ET.fromstring(render_junit(summary).encode("utf-8"))
    assert root.get("failures") == "0" and root.get("tests") == "2"

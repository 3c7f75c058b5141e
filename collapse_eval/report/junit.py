"""junit.xml: the gate as test cases, so CI systems show which benchmark failed it.

One testcase per general benchmark, per domain task, per domain group the policy can fail
(``domain.fail_on`` not empty) and for the domain gain rule when the policy requires it;
a ``<failure>`` carries the verdict's own reason. Built with ElementTree and stripped of
XML-illegal control characters, so whatever a task or model name holds, it parses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from collapse_eval.report.fmt import (
    alpha_of,
    ci_points,
    decision_interval,
    p_value,
    points,
    row_margin,
    signed_points,
    xml_text,
)
from collapse_eval.summary import Comparison, Summary

Row = Comparison


def _verdict_label(row: Row) -> str:
    """The name the verdict's reasons start with for this row."""
    if row.group_by:
        return f"domain {row.group_by}={row.group}"
    return str(row.task) if row.suite == "general" else f"domain task {row.task}"


def _fails(row: Row, policy: Mapping[str, Any]) -> bool:
    status = row.status
    if row.suite == "general":
        general = policy.get("general") or {}
        if status in (general.get("fail_on") or ["regressed"]):
            return True
        critical = row.critical or row.task in (general.get("critical") or [])
        return bool(critical) and status in ("regressed", "inconclusive")
    return status in ((policy.get("domain") or {}).get("fail_on") or [])


def _reason_for(label: str, reasons: Sequence[str]) -> str | None:
    for reason in reasons:
        if not reason.startswith("note:") and reason.startswith(label + " "):
            return reason
    return None


def _stats(row: Row, alpha: float) -> str:
    interval = decision_interval(row, alpha)  # the TOST interval on an equivalence row
    return (
        f"status {row.status}; n {row.n}; base {points(row.base_mean)}, "
        f"tuned {points(row.tuned_mean)}, delta {signed_points(row.delta)} points "
        f"({interval.label} {ci_points(interval.low, interval.high)}); "
        f"margin {row_margin(row)} points; Holm p {p_value(row.p_adjusted)}"
    )


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(
        suite, "testcase", {"classname": xml_text(classname), "name": xml_text(name), "time": "0"}
    )


def _fail(case: ET.Element, message: str, detail: str) -> None:
    failure = ET.SubElement(
        case, "failure", {"message": xml_text(message), "type": "collapse-eval.gate"}
    )
    failure.text = xml_text(detail)


def _row_cases(suite: ET.Element, rows: Sequence[Row], summary: Summary) -> None:
    policy = _policy(summary)
    reasons = [str(r) for r in summary.reasons]
    alpha = alpha_of(summary)
    for row in rows:
        label = _verdict_label(row)
        name = label if row.metric != "format_ok" else f"{label} (format_ok)"
        case = _case(suite, f"collapse_eval.{row.suite}", name)
        stats = _stats(row, alpha)
        out = ET.SubElement(case, "system-out")
        out.text = xml_text(stats)
        if _fails(row, policy):
            reason = _reason_for(label, reasons) or f"{label}: {row.status}"
            _fail(case, reason, stats)


def _policy(summary: Summary) -> Mapping[str, Any]:
    """The policy the summary was judged under, as its JSON form."""
    return summary.policy if isinstance(summary.policy, Mapping) else {}


def _gated_rows(summary: Summary) -> list[Row]:
    comparisons = summary.comparisons
    domain_fail_on = (_policy(summary).get("domain") or {}).get("fail_on") or []
    rows = [c for c in comparisons if c.suite == "general" and c.group_by is None]
    rows += [c for c in comparisons if c.suite == "domain" and c.group_by is None]
    if domain_fail_on:
        rows += [
            c
            for c in comparisons
            if c.suite == "domain" and c.group_by in ("task_type", "output_format")
        ]
    return rows


def _extra_cases(suite: ET.Element, summary: Summary) -> None:
    reasons = [str(r) for r in summary.reasons]
    gain = summary.domain_gain
    if gain is not None and gain.required:
        case = _case(suite, "collapse_eval.domain", "domain gain (all items pooled)")
        if not gain.met:
            reason = next(
                (r for r in reasons if r.startswith("domain (all items pooled)")),
                "domain: no significant gain",
            )
            _fail(case, reason, reason)
    critical = (_policy(summary).get("general") or {}).get("critical") or []
    compared = {c.task for c in summary.comparisons if c.suite == "general"}
    for task in critical:
        if task not in compared:
            case = _case(suite, "collapse_eval.general", str(task))
            message = f"critical task {task} was not compared (not in both runs)"
            _fail(case, message, message)


def render_junit(summary: Summary) -> str:
    """The junit.xml text for a summary."""
    root = ET.Element("testsuites", {"name": "collapse-eval"})
    suite = ET.SubElement(root, "testsuite", {"name": "collapse-eval gate"})
    _row_cases(suite, _gated_rows(summary), summary)
    _extra_cases(suite, summary)
    cases = suite.findall("testcase")
    failures = sum(1 for c in cases if c.find("failure") is not None)
    for element in (root, suite):
        element.set("tests", str(len(cases)))
        element.set("failures", str(failures))
        element.set("errors", "0")
    suite.set("skipped", "0")
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", summary.verdict),
        ("created_at", summary.created_at),
        ("collapse_eval_version", summary.collapse_eval_version),
        ("seed", summary.seed),
        ("alpha", summary.alpha),
    ):
        if value is not None:
            ET.SubElement(props, "property", {"name": key, "value": xml_text(value)})
    for side, model in (("base", summary.base.model), ("tuned", summary.tuned.model)):
        if model is not None:
            ET.SubElement(props, "property", {"name": f"{side}_model", "value": xml_text(model)})
    suite.remove(props)
    suite.insert(0, props)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

"""The table `collapse-eval plan` prints (rich), from planning.TaskPlan rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collapse_eval.planning import SCENARIOS, TaskPlan
from collapse_eval.report.fmt import margin_points, points


def _items(x: float | int | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def plan_table(plans: Sequence[TaskPlan], *, power: float, looks: int, alpha: float) -> Any:
    """Per task: base accuracy, margin, design effect, fixed-n items needed at the wanted
    power and the power with the items available, the sequential design's expected items
    in each scenario, and whether the task can reach the power at all."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"collapse-eval plan: items for non-inferiority at {power:.0%} power "
        f"(alpha {alpha:g}; sequential: {looks} looks)",
        caption="fixed-n needed: items for the wanted power when nothing changed; "
        "sequential columns: expected items of the candidate when its true delta is the "
        "scenario's (m = the task's margin)",
    )
    headers: tuple[str, ...] = ("task", "base", "margin", "design effect", "fixed-n needed")
    headers += ("available",)
    headers += ("fixed-n power", *(f"sequential, {name}" for name, _ in SCENARIOS), "reachable")
    for header in headers:
        table.add_column(header)
    for p in plans:
        expected = p.expected_items or (None,) * len(SCENARIOS)
        power_now = "n/a" if p.power_at_available is None else f"{p.power_at_available:.0%}"
        reach = {True: "yes", False: "no: too few items", None: "n/a (give --items)"}
        cells = (
            p.task,
            points(p.base_accuracy),
            margin_points(p.margin),
            f"{p.design_effect:.2f}",
            _items(p.items_needed),
            _items(p.items_available),
            power_now,
            *(_items(e) for e in expected),
            reach[p.reachable],
        )
        table.add_row(*(Text(str(c)) for c in cells))  # task names come from user files
    return table

"""The statuses in their one order, and numbers as every report and the verdict's reasons
write them.

Below both ``verdict.py`` and ``report/``: the verdict's reasons and the reports must
agree on every digit, and the verdict must not import report code. Scores and deltas are
shown in points (0..100, the 0..1 score scale times 100); statuses keep their
summary.json spelling. Standard library only.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

# The order reports list them in (legend, tables, plots): best to worst.
STATUSES = ("improved", "non_inferior", "equivalent", "inconclusive", "regressed")


def is_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ci_label(alpha: float) -> str:
    """'95% CI' for alpha 0.05, '90% CI' for 0.1, '99.5% CI' for 0.005."""
    level = round((1 - alpha) * 100, 6)
    return f"{level:g}% CI"


def points(x: Any) -> str:
    """A score on the 0..1 scale as points: 0.613 -> '61.3'."""
    return f"{x * 100:.1f}" if is_number(x) else "n/a"


def signed_points(x: Any) -> str:
    return f"{x * 100:+.1f}" if is_number(x) else "n/a"


def margin_points(x: Any) -> str:
    return f"{x * 100:g}" if is_number(x) else "n/a"


def ci_points(low: Any, high: Any) -> str:
    if not (is_number(low) and is_number(high)):
        return "n/a"
    return f"{signed_points(low)} to {signed_points(high)}"


def p_phrase(x: Any) -> str:
    """A p-value in a sentence, after "p": '< 0.001', '= 0.004' (below 0.01), '= 0.70'."""
    if x is None:
        return "n/a"
    if x < 0.001:
        return "< 0.001"
    return f"= {x:.3f}" if x < 0.01 else f"= {x:.2f}"

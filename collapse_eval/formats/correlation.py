"""correlation.json (docs/formats.md#correlationjson): what `collapse-eval correlate`
writes, training-data quality against model performance over several runs."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = ["Correlation", "CorrelationReport", "CorrelationRun"]

Performance = Literal["domain", "general", "general_retention"]
Coefficient = Annotated[float, Meta(ge=-1, le=1)]


class CorrelationRun(Struct, frozen=True, forbid_unknown_fields=True):
    """One row of the table: the run, its quality and its performance measures."""

    label: str
    run: str
    quality: float
    domain: float | None
    general: float | None
    general_retention: float | None
    quality_source: str | None
    dimensions: dict[str, float] | None


class Correlation(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A correlation of quality (``dimension``: of one quality dimension, in
    ``by_dimension``) with a performance measure; null where undefined."""

    dimension: str | UnsetType = UNSET
    performance: Performance
    method: Literal["spearman", "pearson", "kendall"]
    n: Annotated[int, Meta(ge=3)]
    estimate: Coefficient | None
    ci_low: Coefficient | None
    ci_high: Coefficient | None
    p_value: Annotated[float, Meta(ge=0, le=1)] | None
    p_method: Literal["exact_permutation", "monte_carlo_permutation"]


class CorrelationReport(Struct, frozen=True, forbid_unknown_fields=True):
    """Written by `collapse-eval correlate TABLE.csv`."""

    schema_version: Literal[1]
    quality_dimension: str
    runs: list[CorrelationRun]
    correlations: list[Correlation]
    by_dimension: list[Correlation]

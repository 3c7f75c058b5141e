"""Training-data quality: a cascade of rule, dataset-level, model-based and LLM-judge checks
on a fine-tuning set (``collapse-eval quality``)."""

from __future__ import annotations

from collapse_eval.quality.pipeline import (
    QUALITY_SCHEMA_VERSION,
    QualityResult,
    assess,
    assess_file,
)
from collapse_eval.quality.report import load_quality, write_outputs

__all__ = [
    "QUALITY_SCHEMA_VERSION",
    "QualityResult",
    "assess",
    "assess_file",
    "load_quality",
    "write_outputs",
]

"""Domain test sets: loading and validation, scorers keyed by output_format, the runner."""

from collapse_eval.domain.dataset import (
    DomainItem,
    TrainingItem,
    domain_task_name,
    item_doc_hash,
    load_domain_set,
    load_training_set,
    validate_file,
)
from collapse_eval.domain.runner import evaluate_domain
from collapse_eval.domain.scorers import (
    ScoreResult,
    output_formats,
    register_scorer,
    score_prediction,
)

__all__ = [
    "DomainItem",
    "ScoreResult",
    "TrainingItem",
    "domain_task_name",
    "evaluate_domain",
    "item_doc_hash",
    "load_domain_set",
    "load_training_set",
    "output_formats",
    "register_scorer",
    "score_prediction",
    "validate_file",
]

"""Drift: a forgetting signal that needs no labels.

The mean per-token KL divergence KL(base || tuned) of the two models' next-token
distributions on a general probe set shipped here (``probe/``) and on a domain test
set's prompts. ``measure.py`` computes it (exact from full distributions on the hf
engine; a lumped top-k lower bound from servers' top-k log-probabilities, ``kl.py``).
Importing this package imports neither torch nor transformers.
"""

from collapse_eval.drift.measure import (
    DOMAIN_SET,
    PROBE_SET,
    DriftResult,
    SetDrift,
    measure_drift,
    probe_passages,
)

__all__ = [
    "DOMAIN_SET",
    "PROBE_SET",
    "DriftResult",
    "SetDrift",
    "measure_drift",
    "probe_passages",
]

"""Building domain training data the study's way (``collapse-eval data build``):
instruction construction and evolution, labeling real dialogues, the quality cascade and
a held-out test split from disjoint dialogues."""

from __future__ import annotations

from collapse_eval.databuild.pipeline import BuildOptions, BuildResult, build
from collapse_eval.databuild.spec import BuildSpec, load_spec

__all__ = ["BuildOptions", "BuildResult", "BuildSpec", "build", "load_spec"]

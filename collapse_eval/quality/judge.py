"""Optional LLM-judge stage: accuracy, relevance and faithfulness to the dialogue, 1-5.

The prompt is the packaged file ``tasks/quality/judge.txt`` (``$prompt``, ``$response``,
``$task_type`` and ``$output_format`` are substituted). The judge runs through any
Engine, wrapped in the request cache by the caller. An answer that does not contain the
three scores counts as unparseable; it never stops the run.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from collapse_eval.domain.dataset import TrainingItem
from collapse_eval.domain.scorers import extract_json_object
from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.quality.rules import prompt_text, response_text

__all__ = [
    "JUDGE_DIMENSIONS",
    "JUDGE_LOW",
    "JUDGE_MAX_TOKENS",
    "Judgement",
    "load_judge_template",
    "render_judge_prompt",
    "parse_judgement",
    "run_judge",
]

JUDGE_DIMENSIONS = ("accuracy", "relevance", "faithfulness")
# judge_low when any of the three scores is at or below this.
JUDGE_LOW = 2
JUDGE_MAX_TOKENS = 128
_FALLBACK_RE = {
    name: re.compile(rf"{name}\W{{0,4}}([1-5])\b", re.IGNORECASE) for name in JUDGE_DIMENSIONS
}


@dataclass(frozen=True, slots=True)
class Judgement:
    """The judge's 1-5 scores and one-line rationale (None: the answer was unparseable)."""

    scores: dict[str, int] | None
    rationale: str
    raw: str

    def dimension_scores(self) -> dict[str, float]:
        """Each 1-5 score mapped to 0..1 as (score - 1) / 4, named judge_<dimension>."""
        if self.scores is None:
            return {}
        return {f"judge_{k}": (v - 1) / 4 for k, v in self.scores.items()}


def load_judge_template() -> str:
    return (
        resources.files("collapse_eval")
        .joinpath("tasks/quality/judge.txt")
        .read_text(encoding="utf-8")
    )


def render_judge_prompt(template: str, item: TrainingItem) -> str:
    return string.Template(template).safe_substitute(
        prompt=prompt_text(item),
        response=response_text(item),
        task_type=item.task_type or "unknown",
        output_format=item.output_format or "unspecified",
    )


def _score_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer() and 1 <= value <= 5:
        return int(value)
    if isinstance(value, str) and value.strip() in {"1", "2", "3", "4", "5"}:
        return int(value.strip())
    return None


def parse_judgement(text: str) -> Judgement:
    """Read the three scores from a JSON object, else from 'accuracy: 4'-style text."""
    obj = extract_json_object(text) or {}
    lowered = {str(k).strip().casefold(): v for k, v in obj.items()}
    scores: dict[str, int] = {}
    for name in JUDGE_DIMENSIONS:
        value = _score_value(lowered.get(name))
        if value is None:
            match = _FALLBACK_RE[name].search(text)
            value = int(match.group(1)) if match else None
        if value is not None:
            scores[name] = value
    rationale = str(lowered.get("rationale") or "").strip().splitlines()
    line = rationale[0][:300] if rationale else ""
    if len(scores) != len(JUDGE_DIMENSIONS):
        return Judgement(None, line, text)
    return Judgement(scores, line, text)


def run_judge(items: Sequence[TrainingItem], engine: Engine) -> list[Judgement]:
    """One greedy generation per sample (batched), parsed into a Judgement."""
    template = load_judge_template()
    requests = [
        GenRequest(
            messages=(("user", render_judge_prompt(template, item)),),
            max_tokens=JUDGE_MAX_TOKENS,
        )
        for item in items
    ]
    outputs = engine.generate(requests) if requests else []
    return [parse_judgement(text) for text in outputs]

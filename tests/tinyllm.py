"""Helpers shared by the engine tests that run the tiny checkpoint on real backends."""

from __future__ import annotations

import shutil
from pathlib import Path


def sharpened_copy(source: Path, target: Path, factor: float = 4.0) -> Path:
    """Copy a checkpoint with every 2-D weight multiplied by ``factor``.

    A random-init tiny Llama has logits so flat that every prompt gets the same greedy
    output, so agreement between engines would prove nothing; x4 gives ~30 distinct
    generations over 105 demo prompts.
    """
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    for weights in target.glob("*.safetensors"):
        state = load_file(str(weights))
        state = {n: (t * factor if t.ndim == 2 else t).contiguous() for n, t in state.items()}
        save_file(state, str(weights), metadata={"format": "pt"})
    return target

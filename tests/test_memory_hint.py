"""Out of memory in vLLM is exit 3 with what to change (max_model_len, gpu_memory_utilization)."""

from __future__ import annotations

import pytest

from collapse_eval.engines.vllm import memory_hint


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ValueError(
            "To serve at least one request with the models's max seq len (32768), (4.0 GiB KV "
            "cache) is needed, which is larger than the available KV cache memory (1.2 GiB)."
        ),
        ValueError("No available memory for the cache blocks. Try increasing "),
    ],
)
def test_memory_failures_name_the_arguments_to_change(exc: BaseException) -> None:
    hint = memory_hint(exc)
    assert "max_model_len" in hint and "gpu_memory_utilization" in hint


@pytest.mark.parametrize("exc", [ValueError("unknown architecture"), OSError("no config.json")])
def test_other_failures_get_no_memory_hint(exc: BaseException) -> None:
    assert memory_hint(exc) == ""

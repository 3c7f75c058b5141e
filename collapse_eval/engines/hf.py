"""The transformers engine: one causal LM on CPU or GPU, scored exactly like lm-eval's HFLM.

Every number this engine produces equals what ``lm_eval --model hf`` computes for the same
checkpoint, dtype, batch size and max length, because it reproduces HFLM step by step:

- token boundaries (``engines.tokenization``): trailing context spaces move into the
  continuation, no BOS unless the tokenizer adds one, an empty context becomes the
  prefix token (BOS, else EOS);
- batching: requests sharing ``context + continuation[:-1]`` are scored once (HFLM's
  ``logits_cache``), the rest sorted longest first and cut into ``batch_size`` chunks,
  right-padded, left-truncated to ``max_length``; the same batches give the same floats;
- generation: requests grouped by generation settings, sorted longest prompt first,
  left-padded batches, greedy ``model.generate`` with HFLM's multi-token stop criteria,
  the EOS text added to the stop strings, output cut at the first stop string.

Only ``general.py`` imports lm_eval, so the few HFLM helpers needed are re-implemented
here (and tested against HFLM itself in ``tests/test_hf_engine.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from collapse_eval.engines.args import Arg, EngineArgSchema, NoneType
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
    prefix_token_id,
    rolling_loglikelihoods,
)
from collapse_eval.errors import CollapseEvalWarning, ConfigError, EngineError, InputError
from collapse_eval.progress import requests_answered

log = logging.getLogger("collapse_eval.engines.hf")

# lm-eval's fallback context length when neither config nor tokenizer names one.
DEFAULT_MAX_LENGTH = 2048
# transformers' "no limit" sentinel for tokenizer.model_max_length.
_TOKENIZER_INFINITY = 1000000000000000019884624838656
_DTYPES = ("auto", "float32", "float16", "bfloat16")

TokenPair = tuple[list[int], list[int]]

# The --engine-arg schema (checked by the registry before HFEngine is built).
ENGINE_ARGS = EngineArgSchema(
    "hf",
    {
        "dtype": Arg((str,), affects_output=True, choices=_DTYPES),
        "device": Arg((str,), affects_output=True),
        "batch_size": Arg((int,), minimum=1),
        "max_length": Arg((int, NoneType), affects_output=True, minimum=2),
        "trust_remote_code": Arg((bool,)),
        "gguf_file": Arg((str, NoneType), affects_output=True),
        "revision": Arg((str, NoneType), affects_output=True),
    },
)


class HFEngine(EngineDefaults):
    """A transformers ``AutoModelForCausalLM`` behind the Engine protocol.

    ``model`` is a checkpoint directory, a single ``.gguf`` file, or a hub name (used only
    if it is already in the local Hugging Face cache; nothing here downloads on purpose).
    ``batch_size`` and ``max_length`` must match lm-eval's ``--batch_size`` and
    ``max_length=`` for bit-identical scores; ``max_gen_toks`` is the generation budget
    that lm-eval tasks get when their ``generation_kwargs`` name none (HFLM's 256).
    """

    kind = "hf"

    def __init__(
        self,
        model: str,
        *,
        dtype: str | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        trust_remote_code: bool = False,
        gguf_file: str | None = None,
        revision: str | None = None,
    ) -> None:
        self._name = model
        self._source, self._gguf_file = _resolve_source(model, gguf_file)
        self._revision = revision
        # float32 unless asked: the same numbers on every CPU (bfloat16 is several times
        # faster with avx512_bf16 or AMX and several times slower without them, and rounds
        # differently), and the run settings of earlier runs stay valid. A checkpoint
        # stored in another dtype is said so when its weights load (``_dtype_notice``).
        self._dtype = dtype or "float32"
        self._dtype_given = dtype is not None
        self.batch_size = batch_size
        self.max_gen_toks = max_gen_toks
        self._device_name = device
        self._trust_remote_code = trust_remote_code
        # Config and tokenizer only (cheap): they decide the identity (max_length) and the
        # chat rendering. The weights load on the first scoring or generation call, so a
        # run answered wholly from the request cache never loads them.
        config, self._tokenizer = _load_config_and_tokenizer(
            self._source,
            trust_remote_code=trust_remote_code,
            gguf_file=self._gguf_file,
            revision=revision,
        )
        self._config = config
        self._loaded: Any = None
        self._torch_device: Any = None
        self.max_length = max_length or _resolve_max_length(config, self._tokenizer)
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ identity

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            target = str(Path(self._source) / self._gguf_file) if self._gguf_file else self._source
            self._fingerprint = checkpoint_fingerprint(target, self._revision)
        return self._fingerprint

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def engine_args(self) -> dict[str, Any]:
        # What can change an output: batch size is left out (it changes floats only in the
        # last bits, and a cache keyed on it would miss for no reason).
        args: dict[str, Any] = {
            "dtype": self._dtype,
            "max_length": self.max_length,
            "device": self._device_name,
        }
        if self._gguf_file:
            args["gguf_file"] = self._gguf_file
        if self._revision:
            args["revision"] = self._revision
        return args | self._budget_args()

    # ------------------------------------------------------------------ weights

    @property
    def weights_loaded(self) -> bool:
        """Whether the weights are loaded (they load on the first request)."""
        return self._loaded is not None

    def _weights(self) -> tuple[Any, Any]:
        """(model, torch.device), the weights loaded on first use (see ``__init__``)."""
        if self._loaded is None:
            self._dtype_notice()
            self._loaded, self._torch_device = _load_weights(
                self._source,
                self._config,
                dtype=self._dtype,
                device=self._device_name,
                trust_remote_code=self._trust_remote_code,
                gguf_file=self._gguf_file,
                revision=self._revision,
            )
        return self._loaded, self._torch_device

    def _dtype_notice(self) -> None:
        """A warning when the default float32 is not the checkpoint's own dtype (a bf16
        checkpoint upcast without a word surprised users: lm-eval's default follows it)."""
        stored = str(getattr(self._config, "dtype", None) or "").removeprefix("torch.")
        if self._dtype_given or stored in ("", "None", self._dtype):
            return
        warnings.warn(
            CollapseEvalWarning(
                f"{self._name} is stored in {stored} and is computed in {self._dtype}, the "
                "hf engine's default (the same numbers on every CPU). --engine-arg dtype=auto "
                f"follows the checkpoint ({stored}), as lm-eval's default does: faster on a "
                "GPU or a CPU with avx512_bf16/AMX, slower on other CPUs"
            ),
            stacklevel=2,
        )

    @property
    def _model(self) -> Any:
        return self._weights()[0]

    @property
    def _device(self) -> Any:
        return self._weights()[1]

    # ------------------------------------------------------------------ scoring

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), is_greedy) per request, as HFLM computes it.

        An empty continuation (which HFLM rejects) scores (0.0, True): nothing to predict.
        """
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        pairs: list[TokenPair] = []
        where: list[int] = []
        for index, (context, continuation) in enumerate(requests):
            context_enc, continuation_enc = encode_pair(self._tokenizer, context, continuation)
            if not continuation_enc:
                results[index] = (0.0, True)
                continue
            if not context_enc:
                # A context of only spaces, with a tokenizer that adds no BOS: HFLM fails on
                # it; conditioning on the prefix token is what an empty context gets.
                context_enc = [prefix_token_id(self._tokenizer)]
            pairs.append((context_enc, continuation_enc))
            where.append(index)
        for index, answer in zip(where, self._score_tokens(pairs), strict=True):
            results[index] = answer
        return [r for r in results if r is not None]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Whole-text log-likelihood in disjoint max_length windows (HFLM, context_len=1);
        HFLM scores the windows of all texts in consecutive slices of batch_size."""
        return rolling_loglikelihoods(
            self._tokenizer, texts, self.max_length, self._score_windows, self.batch_size
        )

    def _score_windows(self, pairs: Sequence[TokenPair]) -> list[tuple[float, bool]]:
        # Windows are not requests (a text has one or more): its caller counts the texts.
        return self._score_tokens(pairs, report=False)

    def _score_tokens(
        self, pairs: Sequence[TokenPair], *, report: bool = True
    ) -> list[tuple[float, bool]]:
        """HFLM._loglikelihood_tokens with logits_cache: same groups, order and batches.

        With ``report``, each finished batch's requests (its groups' members) are counted
        for the progress bar."""
        # Requests whose inputs are identical (same context + continuation[:-1]) share one
        # forward pass; the member with the longest continuation represents the group.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, pair in enumerate(pairs):
            groups.setdefault(_group_key(pair), []).append(i)
        representatives = [
            max(members, key=lambda i: len(pairs[i][1])) for members in groups.values()
        ]
        representatives.sort(
            key=lambda i: (-len(pairs[i][0]) - len(pairs[i][1]), tuple(pairs[i][0] + pairs[i][1]))
        )
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        for start in range(0, len(representatives), self.batch_size):
            chunk = representatives[start : start + self.batch_size]
            with self._runtime_errors("log-likelihood"):
                self._score_chunk(pairs, chunk, groups, results)
            if report:
                requests_answered(sum(len(groups[_group_key(pairs[i])]) for i in chunk))
        return [r for r in results if r is not None]

    def _score_chunk(
        self,
        pairs: Sequence[TokenPair],
        chunk: list[int],
        groups: dict[tuple[int, ...], list[int]],
        results: list[tuple[float, bool] | None],
    ) -> None:
        import torch
        import torch.nn.functional as F

        inputs = []
        for i in chunk:
            ctx, cont = pairs[i]
            # Left-truncate to max_length; the last token is never an input.
            inputs.append((ctx + cont)[-(self.max_length + 1) :][:-1])
        width = max(len(x) for x in inputs)
        batch = torch.zeros((len(inputs), width), dtype=torch.long)
        for row, tokens in enumerate(inputs):
            batch[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        with torch.inference_mode():
            logits = self._model(batch.to(self._device)).logits
            logprobs = F.log_softmax(logits, dim=-1)
            for row, i in enumerate(chunk):
                ctx, cont = pairs[i]
                inplen = len(inputs[row])
                scored = logprobs[row, inplen - len(cont) : inplen].unsqueeze(0)  # [1, cont, vocab]
                greedy = scored.argmax(dim=-1)
                for member in groups[_group_key(pairs[i])]:
                    member_cont = torch.tensor(
                        pairs[member][1], dtype=torch.long, device=self._device
                    ).unsqueeze(0)
                    n = member_cont.shape[1]
                    is_greedy = bool((greedy[:, -n:] == member_cont).all())
                    picked = torch.gather(scored[:, -n:], 2, member_cont.unsqueeze(-1)).squeeze(-1)
                    results[member] = (float(picked.sum()), is_greedy)

    def next_token_logprobs(self, rows: Sequence[list[int]]) -> Any:
        """log p(next token | the row up to and including each position), in float32: a
        [len(rows), longest row, vocab] tensor, right-padded (a shorter row's positions
        past its end hold padding's distributions). ``drift`` compares two models with it;
        rows must fit ``max_length``."""
        import torch

        width = max(len(row) for row in rows)
        batch = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        with self._runtime_errors("next-token distributions"), torch.inference_mode():
            logits = self._model(batch.to(self._device)).logits
            return torch.log_softmax(logits.float(), dim=-1)

    def prompt_top_logprobs(
        self, rows: Sequence[list[int]], k: int
    ) -> list[list[dict[Any, float]]]:
        """What vLLM's ``prompt_logprobs=k`` returns, from the full distributions: per row,
        for each token after the first, the ``k`` most likely tokens there (ids) and the
        row's own token, with their log-probabilities (``drift --top-k`` on hf shows
        how far the servers' top-k bound is below the exact KL)."""
        answers: list[list[dict[Any, float]]] = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            logprobs = self.next_token_logprobs(chunk)
            values, ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
            for i, row in enumerate(chunk):
                positions = []
                for j, token in enumerate(row[1:]):
                    top = dict(zip(ids[i, j].tolist(), values[i, j].tolist(), strict=True))
                    top[token] = float(logprobs[i, j, token])
                    positions.append(top)
                answers.append(positions)
        return answers

    # ------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        """Greedy continuations with HFLM.generate_until's grouping, batching and stops."""
        prompts = [
            r.prompt if r.prompt is not None else self.render_chat(r.messages or ())
            for r in requests
        ]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault((req.until, req.max_tokens, req.params), []).append(i)
        results: list[str | None] = [None] * len(requests)
        for (until, max_tokens, params), members in groups.items():
            ordered = sorted(
                members, key=lambda i: (-len(encode(self._tokenizer, prompts[i])), prompts[i])
            )
            for start in range(0, len(ordered), self.batch_size):
                chunk = ordered[start : start + self.batch_size]
                with self._runtime_errors("generation"):
                    outputs = self._generate_batch(
                        [prompts[i] for i in chunk], until, max_tokens, params
                    )
                for i, text in zip(chunk, outputs, strict=True):
                    results[i] = text
                requests_answered(len(chunk))
        return [r if r is not None else "" for r in results]

    def _generate_batch(
        self,
        prompts: list[str],
        until: Sequence[str],
        max_tokens: int,
        params: Sequence[tuple[str, Any]],
    ) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        tok = self._tokenizer
        stops = list(until)
        if tok.eos_token_id is not None:
            eos_text = tok.decode(tok.eos_token_id, skip_special_tokens=False)
            if eos_text not in stops:
                stops.append(eos_text)
        max_context = self.max_length - max_tokens
        if max_context <= 0:
            raise ConfigError(
                f"asked for {max_tokens} new tokens, but the model's context is only "
                f"{self.max_length} tokens; lower max_gen_toks / max_tokens or raise max_length."
            )
        special: dict[str, Any] = {}
        # HFLM checks only the first prompt of the batch for a leading BOS text.
        if tok.bos_token and prompts[0].startswith(tok.bos_token):
            special["add_special_tokens"] = False
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            encoded = tok(
                prompts, truncation=False, padding="longest", return_tensors="pt", **special
            )
        finally:
            tok.padding_side = old_side
        input_ids = encoded["input_ids"][:, -max_context:]
        attention_mask = encoded["attention_mask"][:, -max_context:]
        if input_ids.shape[1] == 0:
            # Only empty prompts (HFLM fails here): condition on the prefix token, as an
            # empty log-likelihood context does.
            input_ids = torch.full((len(prompts), 1), prefix_token_id(tok), dtype=torch.long)
            attention_mask = torch.ones_like(input_ids)
        input_ids = input_ids.to(self._device)
        attention_mask = attention_mask.to(self._device)

        kwargs = dict(params)
        total_length = kwargs.pop("max_length", input_ids.shape[1] + max_tokens)
        # HFLM._model_generate: temperature 0 without do_sample means greedy.
        kwargs["temperature"] = kwargs.get("temperature", 0.0)
        do_sample = kwargs.get("do_sample")
        if kwargs["temperature"] == 0.0 and do_sample is None:
            kwargs["do_sample"] = do_sample = False
        if do_sample is False and kwargs["temperature"] == 0.0:
            kwargs.pop("temperature")
        stop_class = _stop_sequence_class()
        criteria = StoppingCriteriaList(
            [stop_class(s, tok, input_ids.shape[1], input_ids.shape[0]) for s in stops]
        )
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_length=total_length,
                stopping_criteria=criteria,
                pad_token_id=tok.pad_token_id,
                use_cache=True,
                **kwargs,
            )
        texts = []
        for row in output.tolist():
            text = tok.decode(row[input_ids.shape[1] :], skip_special_tokens=True)
            texts.append(truncate_at_stops(text, stops))
        return texts

    # ------------------------------------------------------------------ lifecycle

    @contextlib.contextmanager
    def _runtime_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ConfigError:
            raise
        except MemoryError as exc:
            raise EngineError(
                f"{self._name}: out of memory during {what}; lower the batch size "
                f"(--engine-arg batch_size=N, now {self.batch_size})"
            ) from exc
        except RuntimeError as exc:  # torch's OutOfMemoryError is a RuntimeError too
            hint = (
                f"; lower the batch size (--engine-arg batch_size=N, now {self.batch_size})"
                if "out of memory" in str(exc).lower()
                else ""
            )
            raise EngineError(f"{self._name}: {what} failed: {exc}{hint}") from exc

    def close(self) -> None:
        # Drop the references so the weights can be freed before the next model loads.
        if self._loaded is None:
            return
        self._loaded = None
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _group_key(pair: TokenPair) -> tuple[int, ...]:
    """Requests with the same model input (context + continuation[:-1]) share a forward pass."""
    context, continuation = pair
    return tuple(context + continuation[:-1])


@functools.lru_cache(maxsize=1)
def _stop_sequence_class() -> type:
    """Built on first use so that importing this module does not import transformers."""
    from transformers import StoppingCriteria

    class StopSequence(StoppingCriteria):  # type: ignore[misc, unused-ignore]
        """lm-eval's MultiTokenEOSCriteria: stop once every row's new text contains ``sequence``.

        The last len(tokens(sequence)) + 2 generated tokens are decoded and searched, because
        a model may emit a stop string with other token boundaries than the tokenizer's.
        """

        def __init__(self, sequence: str, tokenizer: Any, prompt_length: int, batch_size: int):
            self.prompt_length = prompt_length
            self.done = [False] * batch_size
            self.sequence = sequence
            self.lookback = len(tokenizer.encode(sequence, add_special_tokens=False)) + 2
            self.tokenizer = tokenizer

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            recent = input_ids[:, self.prompt_length :][:, -self.lookback :]
            texts = self.tokenizer.batch_decode(recent)
            for i, done in enumerate(self.done):
                if not done:
                    self.done[i] = self.sequence in texts[i]
            return False not in self.done

    return StopSequence


# ---------------------------------------------------------------------- loading


def _looks_like_path(model: str) -> bool:
    """A hub name is ``name`` or ``org/name``; anything else that does not exist is a path."""
    return (
        model.startswith(("/", ".", "~"))
        or model.count("/") > 1
        or "\\" in model
        or model.endswith(".gguf")
    )


def _resolve_source(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(directory or hub name, gguf file name or None); InputError for missing local paths."""
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError(
                path,
                "is a file; expected a checkpoint directory (with config.json) or a .gguf file",
            )
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file:
            if not (path / gguf_file).is_file():
                raise InputError(path / gguf_file, "GGUF file not found", field="gguf_file")
        elif not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = (
                f"pass --engine-arg gguf_file={ggufs[0]}"
                if ggufs
                else "a transformers checkpoint directory has config.json and weights"
            )
            raise InputError(path, "not a transformers checkpoint (no config.json)", hint=hint)
        return str(path), gguf_file
    if _looks_like_path(model):
        raise InputError(
            path,
            "checkpoint directory not found",
            hint="pass an existing checkpoint directory, a .gguf file or a hub name",
        )
    _check_cached_when_offline(model)
    return model, gguf_file


def check_model_source(model: str, gguf_file: str | None = None) -> None:
    """InputError when ``model`` is a missing path, a directory that is not a checkpoint,
    or a hub name absent from the cache with the hub offline; nothing is loaded (a
    compare checks every candidate this way before the first model loads)."""
    _resolve_source(model, gguf_file)


def _hub_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _check_cached_when_offline(model: str) -> None:
    """A hub name with the hub switched off must be in the local cache: say so at once,
    before torch and transformers load (seconds), instead of after them."""
    if not _hub_offline():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a valid repo id either: let transformers word it
        return
    if not isinstance(cached, str):
        raise InputError(
            model,
            "model not found locally (not a directory, not in the Hugging Face cache) and "
            "the hub is offline (HF_HUB_OFFLINE=1), so it cannot be downloaded",
            hint="pass a local checkpoint directory, or download it once with network "
            "access (unset HF_HUB_OFFLINE)",
        )


def _common_kwargs(
    trust_remote_code: bool, gguf_file: str | None, revision: str | None
) -> dict[str, Any]:
    common: dict[str, Any] = {
        "revision": revision or "main",
        "trust_remote_code": trust_remote_code,
    }
    if gguf_file:
        common["gguf_file"] = gguf_file
    return common


def _load_config_and_tokenizer(
    source: str, *, trust_remote_code: bool, gguf_file: str | None, revision: str | None
) -> tuple[Any, Any]:
    """The model config and tokenizer (padding configured as HFLM does); no weights."""
    import transformers

    common = _common_kwargs(trust_remote_code, gguf_file, revision)
    try:
        config = transformers.AutoConfig.from_pretrained(source, **common)
        if getattr(config, "is_encoder_decoder", False):
            raise InputError(
                source,
                "is an encoder-decoder model; the hf engine evaluates "
                "decoder-only (causal) language models",
            )
        tok_kwargs = dict(common)
        if not gguf_file:
            tok_kwargs["use_fast"] = True
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **tok_kwargs)
    except InputError:
        raise
    except OSError as exc:
        raise _not_loadable(source, exc) from exc
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise EngineError(f"{source}: loading the model failed: {exc}") from exc
    _configure_pad_token(tokenizer)
    return config, tokenizer


def _not_loadable(source: str, exc: OSError) -> InputError:
    return InputError(
        source,
        f"cannot load the checkpoint: {exc}",
        hint="a hub name works only if it is already in the local Hugging "
        "Face cache; otherwise pass a local directory",
    )


def _load_weights(
    source: str,
    config: Any,
    *,
    dtype: str,
    device: str,
    trust_remote_code: bool,
    gguf_file: str | None,
    revision: str | None,
) -> tuple[Any, Any]:
    """The model (eval mode, on device) and its torch.device, as HFLM loads them."""
    import torch
    import transformers

    log.info("loading the weights of %s", source)
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"hf engine: device '{device}' is not a torch device ({exc})") from exc
    common = _common_kwargs(trust_remote_code, gguf_file, revision)
    try:
        torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(
            source, config=config, dtype=torch_dtype, **common
        )
    except OSError as exc:
        raise _not_loadable(source, exc) from exc
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise EngineError(f"{source}: loading the model failed: {exc}") from exc
    model.eval()
    with contextlib.suppress(Exception):
        model.tie_weights()
    try:
        model.to(torch_device)
    except (RuntimeError, AssertionError) as exc:
        raise EngineError(f"{source}: cannot move the model to {device}: {exc}") from exc
    return model, torch_device


def _configure_pad_token(tokenizer: Any) -> None:
    """lm-eval's configure_pad_token: unk, else eos, else a new <|pad|> token."""
    if tokenizer.pad_token_id is not None or tokenizer.pad_token:
        return
    if tokenizer.unk_token:
        tokenizer.pad_token_id = tokenizer.unk_token_id
    elif tokenizer.eos_token:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    else:
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})


def _resolve_max_length(config: Any, tokenizer: Any) -> int:
    """lm-eval's resolve_max_length: text config, config, tokenizer, then 2048."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max != _TOKENIZER_INFINITY:
        return int(model_max)
    return DEFAULT_MAX_LENGTH

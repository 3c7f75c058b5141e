"""Token boundaries shared by the engines that score token ids (vllm, openai with a tokenizer).

These reproduce lm-evaluation-harness 0.4 exactly (``TemplateLM.loglikelihood`` /
``_encode_pair``, ``HFLM.tok_encode``, ``utils.get_rolling_token_windows``) so that a
log-likelihood from our engines equals the one lm-eval's own backends compute. They are
re-implemented, not imported, because only ``general.py`` may import lm_eval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol


class Tokenizer(Protocol):
    """The slice of a tokenizer used here: transformers' tokenizers and vLLM's
    ``TokenizerLike`` both fit it (read-only ids, only ``add_special_tokens`` passed)."""

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    def __call__(self, text: str, /, *, add_special_tokens: bool = ...) -> Any: ...

    def decode(self, token_ids: Any, /) -> str: ...


def prefix_token_id(tokenizer: Tokenizer) -> int:
    """The token that conditions the first scored token (BOS, else EOS), as lm-eval."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition on")
    return int(token)


def encode(tokenizer: Tokenizer, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """``HFLM.tok_encode``: tokenizer defaults, except no second BOS when text starts with one."""
    if not text:
        return []
    kwargs: dict[str, Any] = {}
    if add_special_tokens is not None:
        kwargs["add_special_tokens"] = add_special_tokens
    elif text.startswith(tokenizer.decode(prefix_token_id(tokenizer))):
        kwargs["add_special_tokens"] = False
    return list(tokenizer(text, **kwargs)["input_ids"])


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Context and continuation token ids with lm-eval's boundaries.

    Trailing spaces of the context move to the continuation; the whole string is encoded
    once and split after the context's tokens. An empty context becomes the prefix token.
    """
    if context == "":
        cont = encode(tokenizer, continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        if cont and cont[0] == prefix:
            return cont[:1], cont[1:]
        return [prefix], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    context_enc = encode(tokenizer, context)
    if not context_enc:
        # A context of only spaces with a tokenizer that adds no BOS (lm-eval fails here):
        # condition on the prefix token, as an empty context is.
        return [prefix_token_id(tokenizer)], whole
    return context_enc, whole[len(context_enc) :]


def fit_scoring_input(
    context_enc: Sequence[int], continuation_enc: Sequence[int], max_len: int
) -> tuple[list[int], int]:
    """Left-truncate context+continuation to ``max_len`` tokens; return (tokens, context length)."""
    tokens = (list(context_enc) + list(continuation_enc))[-max_len:]
    ctxlen = len(context_enc) - max(0, len(context_enc) + len(continuation_enc) - max_len)
    return tokens, ctxlen


def rolling_windows(
    token_list: Sequence[int], prefix_token: int, max_seq_len: int
) -> Iterator[tuple[list[int], list[int]]]:
    """Disjoint (context, prediction) windows covering ``token_list`` (lm-eval, context_len=1)."""
    tokens = list(token_list)
    if not tokens:
        return
    first = min(max_seq_len, len(tokens))
    yield [prefix_token], tokens[:first]  # disjoint form of ([prefix] + tokens[:first-1], ...)
    predicted = first
    while predicted < len(tokens):
        pred_len = min(len(tokens) - predicted, max_seq_len)
        end = predicted + pred_len
        window = tokens[end - max_seq_len - 1 : end - 1]
        yield window[: len(window) - (pred_len - 1)], tokens[end - pred_len : end]
        predicted += pred_len


def rolling_loglikelihoods(
    tokenizer: Any,
    texts: Sequence[str],
    max_seq_len: int,
    score: Callable[[list[tuple[list[int], list[int]]]], Sequence[tuple[float, bool]]],
    batch_size: int | None = None,
) -> list[float]:
    """Each text's whole log-likelihood: its :func:`rolling_windows` (over every text, in
    order) are scored by ``score`` — in consecutive slices of ``batch_size`` windows when
    given (how HFLM batches them), else all at once — and summed per text."""
    prefix = prefix_token_id(tokenizer)
    owners: list[int] = []
    windows: list[tuple[list[int], list[int]]] = []
    for index, text in enumerate(texts):
        for window in rolling_windows(encode(tokenizer, text), prefix, max_seq_len):
            owners.append(index)
            windows.append(window)
    step = batch_size or max(len(windows), 1)
    totals = [0.0] * len(texts)
    for start in range(0, len(windows), step):
        scores = score(windows[start : start + step])
        for owner, (logprob, _greedy) in zip(owners[start : start + step], scores, strict=True):
            totals[owner] += logprob
    return totals


def truncate_left(tokens: Sequence[int], max_tokens: int, max_len: int) -> list[int]:
    """Keep the prompt's last ``max_len - max_tokens`` tokens so generation fits (lm-eval)."""
    if len(tokens) + max_tokens <= max_len:
        return list(tokens)
    keep = max(max_len - max_tokens, 1)
    return list(tokens)[-keep:]


def score_continuation(
    tokens: Sequence[int], ctxlen: int, logprobs: Sequence[Mapping[int, float] | None]
) -> tuple[float, bool]:
    """lm-eval's ``_parse_logprobs``: (sum of log p over tokens[ctxlen:], all of them top-1).

    ``logprobs[i]`` maps token ids to log-probs at prompt position ``i`` (it holds at least
    the actual token and the top-1 token); position 0 has none.
    """
    total = 0.0
    greedy = True
    for token, options in zip(tokens[ctxlen:], logprobs[ctxlen:], strict=True):
        if options is None:
            continue
        total += float(options[token])
        if greedy and max(options, key=options.__getitem__) != token:
            greedy = False
    return total, greedy

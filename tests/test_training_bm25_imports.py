"""compare --train's BM25 must leave numba and llvmlite out of the process: a vLLM engine
loaded after it (the next candidate of a many-candidate compare) scans every module when
it registers its kernels, and llvmlite's ffi wrappers break that scan. Seen in CI as
"AttributeError: '_lib_fn_wrapper' object has no attribute 'get'" from every vLLM test
that ran after the --train tests."""

from __future__ import annotations

import subprocess
import sys


def test_nearest_samples_imports_no_numba_or_llvmlite() -> None:
    code = (
        "import sys\n"
        "from collapse_eval.training import _import_bm25s\n"
        "_import_bm25s()\n"
        "print('numba' in sys.modules, 'llvmlite' in sys.modules, 'bm25s' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "False False True"

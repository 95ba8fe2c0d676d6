"""Deliberately broken copies of a kernel, for ``test_cuda_compile.py``: Python
semantics accept them (Numba's CUDA simulator runs them), numba-cuda's compiler
does not. Not a test module; not under ``kernels/``, so never shipped."""

from __future__ import annotations

import numpy as np
from numba import cuda


@cuda.jit
def run_time_sized_local_array(out):  # pragma: no cover - compiled by Numba
    """``probe_cuda._double_index`` with a scratch array sized at run time."""
    scratch = cuda.local.array(out.shape[0], np.int32)
    i = cuda.grid(1)
    if i < out.size:
        scratch[0] = 2 * i
        out[i] = scratch[0]


@cuda.jit
def numpy_allocation(out):  # pragma: no cover - compiled by Numba
    """``probe_cuda._double_index`` with a NumPy allocation in the kernel."""
    scratch = np.zeros(4, np.int32)
    i = cuda.grid(1)
    if i < out.size:
        scratch[0] = 2 * i
        out[i] = scratch[0]


@cuda.jit
def unlisted(out):  # pragma: no cover - compiled by Numba
    """A correct kernel that :data:`LAUNCH_ARGS` forgets: the compile check must say so."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = 2 * i


#: launch arguments by kernel name (``unlisted`` left out on purpose)
LAUNCH_ARGS = {
    "run_time_sized_local_array": lambda: (np.zeros(64, np.int32),),
    "numpy_allocation": lambda: (np.zeros(64, np.int32),),
}

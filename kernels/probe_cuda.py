"""The smallest CUDA kernel: compiling and running it tells whether the CUDA
stack (driver, numba-cuda, numpy) can run ours at all."""

from __future__ import annotations

import numpy as np
from numba import cuda


@cuda.jit
def _double_index(out):  # pragma: no cover - compiled by Numba
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i < out.size:
        out[i] = 2 * i


def run_probe(n: int = 64) -> bool:
    """Compile and launch the probe over ``n`` threads; ``True`` when every value is right.

    Raises whatever the compiler or driver raises when the stack is broken.
    """
    d_out = cuda.device_array(n, np.int32)
    _double_index[1, n](d_out)
    return bool(np.array_equal(d_out.copy_to_host(), 2 * np.arange(n)))

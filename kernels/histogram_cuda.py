"""CUDA twin of :func:`kernels.histogram.channel_histogram` (Numba CUDA).

Counts a batch of device images where they are, so a store's statistics need
no raw image on the host (nvCOMP and nvJPEG keep them on the GPU). Each block
counts a grid-stride share of the pixels into a ``uint32`` table in shared
memory (fast atomics, no contention across blocks), then adds it to the
global ``int64`` table: one global atomic per bin and block. A block's share is
at most ``pixels / blocks`` pixels, far below 2**32 for any shard.
Runs under Numba's CUDA simulator when ``NUMBA_ENABLE_CUDASIM=1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from kernels.checks import check_array

#: threads per block
THREADS = 256
#: most blocks per launch: enough to fill an H100/H200 (132 SMs × several blocks)
MAX_BLOCKS = 1024
_BINS = 3 * 256


@cuda.jit
def _count_cuda(flat, counts):  # pragma: no cover - compiled by Numba
    table = cuda.shared.array(_BINS, np.uint32)
    t = cuda.threadIdx.x
    for k in range(t, _BINS, cuda.blockDim.x):
        table[k] = 0
    cuda.syncthreads()
    n = flat.shape[0]
    stride = cuda.gridDim.x * cuda.blockDim.x
    i = cuda.blockIdx.x * cuda.blockDim.x + t
    while i < n:
        cuda.atomic.add(table, np.int32(flat[i, 0]), np.uint32(1))
        cuda.atomic.add(table, 256 + np.int32(flat[i, 1]), np.uint32(1))
        cuda.atomic.add(table, 512 + np.int32(flat[i, 2]), np.uint32(1))
        i += stride
    cuda.syncthreads()
    for k in range(t, _BINS, cuda.blockDim.x):
        if table[k] != 0:
            cuda.atomic.add(counts, (k // 256, k % 256), np.int64(table[k]))


def channel_histogram_cuda(d_images: Any, d_counts: Any, stream: Any = 0) -> None:
    """Add the per-channel histogram of device images into ``d_counts`` (asynchronous).

    Args:
        d_images: ``(B, H, W, 3) uint8`` device array (C-contiguous), ``B`` ≥ 0.
        d_counts: ``(3, 256) int64`` device array to add into (zero it for a fresh count).
        stream: the CUDA stream to launch on (after the kernel that wrote the images).
    """
    check_array(d_images, "d_images", np.uint8, ["B", "H", "W", 3])
    check_array(d_counts, "d_counts", np.int64, [3, 256])
    pixels = d_images.shape[0] * d_images.shape[1] * d_images.shape[2]
    if pixels == 0:
        return
    blocks = min(MAX_BLOCKS, (pixels + THREADS - 1) // THREADS)
    _count_cuda[blocks, THREADS, stream](d_images.reshape(pixels, 3), d_counts)

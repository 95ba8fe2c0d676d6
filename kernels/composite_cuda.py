"""CUDA twin of :func:`kernels.composite.composite_batch` (Numba CUDA).

The per-pixel math is :func:`kernels.composite.composite_pixel`, compiled here
as a device function, so CPU and GPU results are bit-identical. One thread per
output pixel over a 1-D grid of the batch's ``B*H*W`` pixels: consecutive
threads take consecutive columns of a row, so global reads and writes
coalesce. (A 2-D grid with one axis over ``B*H`` rows broke CUDA's 65,535-block
limit on grid y at 4096 samples of 224 rows; a 1-D grid allows 2**31 - 1
blocks.) Runs under Numba's CUDA simulator when ``NUMBA_ENABLE_CUDASIM=1``
(slow: use tiny batches there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from kernels.composite import check_composite_inputs, check_objects_inputs, composite_objects_pixel, composite_pixel

_pixel_cuda = cuda.jit(device=True)(composite_pixel)

#: threads per block (a multiple of the 32-thread warp)
THREADS = 256
#: CUDA's limit on blocks along grid x
MAX_BLOCKS = 2**31 - 1


def launch_blocks(n: int, height: int, width: int) -> int:
    """Blocks of :data:`THREADS` covering ``n * height * width`` pixels.

    Raises:
        ValueError: more blocks than one launch may have.
    """
    blocks = (n * height * width + THREADS - 1) // THREADS
    if blocks > MAX_BLOCKS:
        raise ValueError(f"{n} samples of {height}x{width} exceed one kernel launch: use a smaller shard")
    return blocks


@cuda.jit
def _composite_cuda(
    bg_images, bg_depth, atlas, table, threshold,
    out_images, out_masks, out_depth, out_alpha, write_alpha, occlusion,
):  # pragma: no cover - compiled by Numba
    n, height, width = out_masks.shape
    # int64 arithmetic: B*H*W may pass 2**32 with large shards of large images
    pixel = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    if pixel >= np.int64(n) * height * width:
        return
    row = pixel // width  # over B * H, sample-major
    c = pixel - row * width
    b = row // height
    r = row - b * height
    _pixel_cuda(
        b, r, c, bg_images, bg_depth, atlas, table, threshold,
        out_images, out_masks, out_depth, out_alpha, write_alpha, occlusion,
    )


def composite_batch_cuda(
    bg_images: Any,
    bg_depth: Any,
    atlas: Any,
    table: Any,
    threshold: int,
    out_images: Any,
    out_masks: Any,
    out_depth: Any,
    out_alpha: Any | None = None,
    stream: Any = 0,
    host_table: np.ndarray | None = None,
    occlusion: bool = False,
) -> None:
    """Composite a batch on the GPU: one kernel launch, no host round trip.

    Arguments are as for :func:`kernels.composite.composite_batch` but may be
    Numba device arrays or anything exposing ``__cuda_array_interface__``
    (e.g. CUDA torch tensors); host arrays are copied by Numba. ``stream`` is a
    Numba stream (0 = default stream). ``host_table``: a host copy of
    ``table`` for the bounds check, saving a device-to-host copy.
    """
    check_composite_inputs(
        bg_images, bg_depth, atlas, _host_table(table) if host_table is None else host_table, threshold,
        out_images, out_masks, out_depth, out_alpha,
    )
    n, height, width = out_masks.shape
    write_alpha = out_alpha is not None
    if out_alpha is None:
        out_alpha = cuda.device_array((0, 0, 0), np.uint8)
    if n == 0:
        return
    _composite_cuda[launch_blocks(n, height, width), THREADS, stream](
        bg_images, bg_depth, atlas, table, np.int32(threshold),
        out_images, out_masks, out_depth, out_alpha, write_alpha, np.int32(occlusion),
    )


def _host_table(table: Any) -> np.ndarray:
    """The placement table as a host array, for the bounds check."""
    if isinstance(table, np.ndarray):
        return table
    if hasattr(table, "copy_to_host"):
        return table.copy_to_host()
    return np.asarray(table.cpu()) if hasattr(table, "cpu") else np.asarray(table)


_objects_pixel_cuda = cuda.jit(device=True)(composite_objects_pixel)


@cuda.jit
def _composite_objects_cuda(
    bg_images, bg_depth, atlas, table, offset, threshold,
    out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, occlusion,
):  # pragma: no cover - compiled by Numba
    n, height, width = out_masks.shape
    pixel = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    if pixel >= np.int64(n) * height * width:
        return
    row = pixel // width
    c = pixel - row * width
    b = row // height
    r = row - b * height
    _objects_pixel_cuda(
        b, r, c, bg_images, bg_depth, atlas, table, offset, threshold,
        out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, occlusion,
    )


def composite_objects_batch_cuda(
    bg_images: Any,
    bg_depth: Any,
    atlas: Any,
    table: Any,
    offset: Any,
    threshold: int,
    out_images: Any,
    out_masks: Any,
    out_depth: Any,
    out_instances: Any,
    out_alpha: Any | None = None,
    stream: Any = 0,
    host_table: np.ndarray | None = None,
    host_offset: np.ndarray | None = None,
    occlusion: bool = False,
) -> None:
    """CUDA twin of :func:`kernels.composite.composite_objects_batch` (same
    per-pixel function, same bits); arguments as for :func:`composite_batch_cuda`,
    ``host_offset`` a host copy of ``offset`` for the checks."""
    check_objects_inputs(
        bg_images, bg_depth, atlas, _host_table(table) if host_table is None else host_table,
        _host_table(offset) if host_offset is None else host_offset, threshold,
        out_images, out_masks, out_depth, out_instances, out_alpha,
    )
    n, height, width = out_masks.shape
    write_alpha = out_alpha is not None
    if out_alpha is None:
        out_alpha = cuda.device_array((0, 0, 0), np.uint8)
    if n == 0:
        return
    _composite_objects_cuda[launch_blocks(n, height, width), THREADS, stream](
        bg_images, bg_depth, atlas, table, offset, np.int32(threshold),
        out_images, out_masks, out_depth, out_instances, out_alpha, write_alpha, np.int32(occlusion),
    )

"""CUDA twin of :func:`kernels.jpeg.encode_jpeg_batch` (Numba CUDA).

Two launches per batch: one thread per segment (an image's row of 8×8
blocks: 57,344 threads for 2,048 images of 224×224) codes it with
:func:`kernels.jpeg.encode_segment`, compiled here as a device function, into
a fixed slot; then one block per segment copies it, with its marker, to its
place in a packed buffer (the headers included), so that only the files'
bytes cross to the host, in one copy. Between the two, the segments' lengths
(4 bytes each) come back to compute where each goes. The same integer math on
both targets: the files equal the CPU's byte for byte. Runs under Numba's CUDA
simulator when ``NUMBA_ENABLE_CUDASIM=1`` (slow: a few small images there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from kernels.checks import check_array
from kernels.jpeg import (
    blocks_per_side,
    build_segment_encoder,
    encode_jpeg_batch,
    file_starts,
    jpeg_tables,
    overflowing_images,
    segment_capacity_words,
    split_files,
)

_encode_segment_cuda = build_segment_encoder(cuda.jit(device=True))

#: threads per block of the coding kernel (each codes a whole segment: few registers spare)
CODE_THREADS = 64
#: threads per block of the packing kernel (one block per segment)
PACK_THREADS = 128


@cuda.jit(cache=True)
def _code_cuda(images, recip, dc_code, dc_len, ac_code, ac_len, dct, zigzag, out, lengths):  # pragma: no cover
    s = cuda.grid(1)
    n, n_rows = lengths.shape
    if s >= n * n_rows:
        return
    px = cuda.local.array(192, np.int32)
    tmp = cuda.local.array(64, np.int32)
    coef = cuda.local.array(64, np.int32)
    b = s // n_rows
    r = s - b * n_rows
    lengths[b, r] = _encode_segment_cuda(images, b, r, s, recip, dc_code, dc_len, ac_code, ac_len, dct, zigzag,
                                         px, tmp, coef, out)


@cuda.jit(cache=True)
def _pack_cuda(segments, lengths, header, starts, seg_starts, packed):  # pragma: no cover - compiled by Numba
    s = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n, n_rows = lengths.shape
    b = s // n_rows
    r = s - b * n_rows
    k = lengths[b, r]
    dst = seg_starts[b, r]
    for i in range(t, k, cuda.blockDim.x):
        packed[dst + i] = segments[s, i]
    if t == 0:
        packed[dst + k] = 0xFF
        packed[dst + k + 1] = 0xD9 if r == n_rows - 1 else 0xD0 + (r % 8)  # RSTn between rows, EOI after the last
    if r == 0:
        for i in range(t, header.shape[0], cuda.blockDim.x):
            packed[starts[b] + i] = header[i]


def segment_starts(lengths: np.ndarray, starts: np.ndarray, header_bytes: int) -> np.ndarray:
    """``(B, rows) int64`` where each segment's bytes go in the packed buffer."""
    within = np.cumsum(lengths + 2, axis=1) - (lengths + 2)
    return starts[:-1, None] + header_bytes + within


class CudaJpegEncoder:
    """Codes batches of device images to JPEG files on the GPU; keeps its
    device tables and buffers between batches (one encoder per thread: a batch
    uses them until :meth:`encode` returns).

    Args:
        stream: the CUDA stream to launch on (``0``: the default stream).
    """

    def __init__(self, stream: Any = 0) -> None:
        self.stream = stream
        self._tables: dict[tuple[int, int, int], tuple[Any, ...]] = {}
        self._buffers: dict[str, Any] = {}

    def _buffer(self, name: str, size: int, dtype: Any, pinned: bool = False) -> Any:
        """A 1-D device (or pinned host) buffer of at least ``size`` items, grown as needed."""
        have = self._buffers.get(name)
        if have is None or len(have) < size:
            size = max(size, 1)
            have = cuda.pinned_array(size, dtype) if pinned else cuda.device_array(size, dtype)
            self._buffers[name] = have
        return have[:size]

    def _device_tables(self, height: int, width: int, quality: int) -> tuple[Any, ...]:
        key = (height, width, quality)
        if key not in self._tables:
            t = jpeg_tables(height, width, quality)
            self._tables[key] = tuple(cuda.to_device(a, stream=self.stream) for a in t.arrays()) + (
                cuda.to_device(np.frombuffer(t.header, np.uint8).copy(), stream=self.stream),)
        return self._tables[key]

    def encode(self, d_images: Any, quality: int) -> np.ndarray:
        """``(B, H, W, 3) uint8`` device images (C-contiguous, complete on or
        before :attr:`stream`) → ``(B,) object`` JPEG ``bytes``, equal to
        :func:`kernels.jpeg.encode_jpeg_batch`'s."""
        dims = check_array(d_images, "d_images", np.uint8, ["B", "H", "W", 3])
        if not hasattr(d_images, "copy_to_host"):  # a torch tensor or CuPy array: view it as Numba's
            d_images = cuda.as_cuda_array(d_images)
        n, height, width = dims["B"], dims["H"], dims["W"]
        if n == 0:
            return np.empty(0, dtype=object)
        stream = self.stream
        tables = self._device_tables(height, width, quality)
        header = jpeg_tables(height, width, quality).header
        n_rows = blocks_per_side(height)
        words = segment_capacity_words(width)
        segs = n * n_rows
        d_segments = self._buffer("segments", segs * words, np.uint32).reshape(segs, words)
        d_lengths = self._buffer("lengths", segs, np.int64).reshape(n, n_rows)
        _code_cuda[(segs + CODE_THREADS - 1) // CODE_THREADS, CODE_THREADS, stream](
            d_images, *tables[:-1], d_segments, d_lengths)
        lengths = d_lengths.copy_to_host(stream=stream)
        stream_sync(stream)
        redo, room = overflowing_images(lengths, words)
        starts = file_starts(lengths, len(header))
        seg_starts = segment_starts(lengths, starts, len(header))
        d_lengths.copy_to_device(lengths, stream=stream)  # the files re-coded below are packed empty
        d_starts = cuda.to_device(starts, stream=stream)
        d_seg_starts = cuda.to_device(seg_starts, stream=stream)
        total = int(starts[-1])
        d_packed = self._buffer("packed", total, np.uint8)
        _pack_cuda[segs, PACK_THREADS, stream](d_segments.view(np.uint8), d_lengths, tables[-1], d_starts,
                                               d_seg_starts, d_packed)
        packed = self._buffer("host", total, np.uint8, pinned=True)
        d_packed.copy_to_host(packed, stream=stream)
        stream_sync(stream)
        files = split_files(packed, starts)
        if len(redo):  # rare (near-random pixels at high quality): the same code on the host, with room
            files[redo] = list(encode_jpeg_batch(d_images.copy_to_host()[redo], quality, room))
        return files


def stream_sync(stream: Any) -> None:
    """Wait for ``stream`` (``0``: the whole device)."""
    if stream == 0:
        cuda.synchronize()
    else:
        stream.synchronize()

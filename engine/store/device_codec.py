"""Compressing a shard's chunks where the data is: nvCOMP Zstandard on the GPU.

The store's lossless arrays are Zarr v3 shards of Zstandard-compressed
chunks (:mod:`engine.store.shard_codec`). On the GPU path the composites,
masks and depth never come back to the host raw: nvCOMP compresses each chunk
on the device in its *raw* bitstream, which is a standard Zstandard frame, and
only those frames cross PCIe; :func:`~engine.store.shard_codec.assemble_shard`
then writes them into the same shard format. Any zstd decoder (zarr-python
with numcodecs, tensorstore) reads the result; the decoded arrays equal the
CPU store's, the compressed bytes do not (nvCOMP has one fixed zstd mode and
no levels), so the store records which compressor wrote it.

A compressor takes a 1-D ``uint8`` device array (``__cuda_array_interface__``:
a Numba device array) holding ``n_chunks`` chunks of ``chunk_bytes`` each,
back to back, and returns each chunk's compressed bytes, in order.
:class:`HostZstdStandIn` does the same through the host, with the CPU's zstd:
it lets the whole device path be tested without a GPU (Numba's simulator),
and writes exactly the CPU store's bytes.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

#: compressor names as the store records them
NVCOMP = "nvcomp-zstd"
HOST_STAND_IN = "host-zstd-stand-in"


class ChunkCompressor(Protocol):
    """Compresses chunks of a device buffer; see the module docstring."""

    name: str

    def compress(self, buffer: Any, chunk_bytes: int, n_chunks: int) -> list[bytes]:
        """``buffer``: 1-D ``uint8`` device array of at least ``chunk_bytes * n_chunks``
        bytes → ``n_chunks`` Zstandard frames (``bytes``), one per chunk, in order."""
        ...


def check_chunks(buffer: Any, chunk_bytes: int, n_chunks: int) -> None:
    """Raise ``ValueError`` unless ``buffer`` holds ``n_chunks`` whole chunks."""
    if chunk_bytes < 1 or n_chunks < 1:
        raise ValueError(f"need at least one chunk of at least one byte, got {n_chunks} of {chunk_bytes}")
    if buffer.ndim != 1 or np.dtype(buffer.dtype) != np.uint8 or buffer.size < chunk_bytes * n_chunks:
        raise ValueError(f"need a 1-D uint8 buffer of at least {chunk_bytes * n_chunks} bytes, "
                         f"got {buffer.shape} {buffer.dtype}")


class NvcompZstd:
    """nvCOMP's batched Zstandard (raw bitstream: plain zstd frames) on the GPU.

    One nvCOMP codec per calling thread, each on its own CUDA stream, so
    writer threads compress different shards at once. The caller makes sure
    the buffer's data is complete (the kernel that wrote it has finished).
    """

    name = NVCOMP
    #: nvCOMP's zstd compressor needs chunk starts aligned to 4 bytes (nvcomp/zstd.h)
    ALIGNMENT = 4

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self._local = threading.local()

    def _codec(self) -> Any:
        codec = getattr(self._local, "codec", None)
        if codec is None:
            from nvidia import nvcomp

            codec = self._local.codec = nvcomp.Codec(
                algorithm="Zstd", bitstream_kind=nvcomp.BitstreamKind.RAW, device_id=self.device_id
            )
        return codec

    def compress(self, buffer: Any, chunk_bytes: int, n_chunks: int) -> list[bytes]:
        return self.compress_parts([(buffer, chunk_bytes, n_chunks)])[0]

    def compress_parts(self, parts: list[tuple[Any, int, int]]) -> list[list[bytes]]:
        """Several buffers' chunks in one nvCOMP batch (one call, e.g. a whole
        shard's arrays): per ``(buffer, chunk_bytes, n_chunks)`` its frames, in order."""
        for buffer, chunk_bytes, n_chunks in parts:
            check_chunks(buffer, chunk_bytes, n_chunks)
            if chunk_bytes % self.ALIGNMENT:
                raise ValueError(f"nvCOMP zstd needs chunks of a multiple of {self.ALIGNMENT} bytes, got {chunk_bytes}")
        from nvidia import nvcomp

        chunks: list[Any] = []
        for buffer, chunk_bytes, n_chunks in parts:
            offsets = [i * chunk_bytes for i in range(n_chunks)]
            chunks += nvcomp.as_arrays(buffer, offsets, [chunk_bytes] * n_chunks)  # views, no copy
        encoded = self._codec().encode(chunks)  # asynchronous, on this thread's codec stream
        sizes = encoded.buffer_sizes  # waits for the compression
        host = encoded.cpu()  # only the compressed bytes cross PCIe
        frames = [bytes(memoryview(host[i]).cast("B")[: sizes[i]]) for i in range(len(chunks))]
        return split_frames(frames, [n for _, _, n in parts])


class HostZstdStandIn:
    """Stand-in for :class:`NvcompZstd` where there is no GPU (tests, the
    simulator): copies the chunks to the host and compresses them with the
    CPU's Zstandard at ``level``, so a store written through the device path
    is byte-identical to the CPU store."""

    name = HOST_STAND_IN

    def __init__(self, level: int) -> None:
        from numcodecs import Zstd

        self.codec = Zstd(level=level)

    def compress(self, buffer: Any, chunk_bytes: int, n_chunks: int) -> list[bytes]:
        check_chunks(buffer, chunk_bytes, n_chunks)
        host = buffer[: chunk_bytes * n_chunks].copy_to_host()
        return [bytes(self.codec.encode(host[i * chunk_bytes : (i + 1) * chunk_bytes])) for i in range(n_chunks)]

    def compress_parts(self, parts: list[tuple[Any, int, int]]) -> list[list[bytes]]:
        """As :meth:`NvcompZstd.compress_parts`: each part's frames, in order."""
        return [self.compress(*part) for part in parts]


def split_frames(frames: list[bytes], counts: list[int]) -> list[list[bytes]]:
    """``frames`` of several parts back to back → one list per part of ``counts[k]`` frames."""
    if sum(counts) != len(frames):
        raise ValueError(f"{len(frames)} frames for parts of {counts} chunks")
    ends = np.cumsum([0, *counts])
    return [frames[a:b] for a, b in zip(ends[:-1], ends[1:])]


def nvcomp_problem() -> str | None:
    """``None`` when nvCOMP can compress on this machine's GPU, else why not (one line).

    Runs :class:`NvcompZstd` itself on a small device buffer and decodes the
    frames with the CPU's zstd: the same calls a store's chunks go through.
    """
    try:
        from nvidia import nvcomp  # noqa: F401 - the import is the first check
    except ImportError:
        return "nvCOMP is not installed (pip install nvidia-nvcomp-cu13)"
    from numcodecs import Zstd

    probe = (np.arange(16384, dtype=np.uint32) // 7).view(np.uint8)
    try:
        from numba import cuda

        frames = NvcompZstd().compress(cuda.to_device(probe), probe.size // 4, 4)
        decoded = b"".join(bytes(Zstd().decode(frame)) for frame in frames)
    except Exception as e:  # noqa: BLE001 - any failure means: compress on the CPU
        lines = str(e).strip().splitlines()
        return f"nvCOMP cannot run here ({type(e).__name__}: {(lines[-1] if lines else '')[:160]})"
    if decoded != probe.tobytes():
        return "nvCOMP's zstd frames do not decode to their input with the CPU's zstd"
    return None

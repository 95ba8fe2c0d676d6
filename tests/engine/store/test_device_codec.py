"""Chunk compressors of the GPU path: the host stand-in (runs anywhere) and nvCOMP's checks."""

from __future__ import annotations

import numpy as np
import pytest
from numcodecs import Zstd

from engine.store.device_codec import HostZstdStandIn, NvcompZstd, check_chunks, nvcomp_problem


@pytest.fixture()
def device_bytes():
    from numba import cuda

    rng = np.random.default_rng(0)
    host = rng.integers(0, 4, 3 * 96 + 5, dtype=np.uint8)  # compressible, with a tail past the chunks
    return host, cuda.to_device(host)


def test_stand_in_frames_decode_to_each_chunk(device_bytes) -> None:
    host, d = device_bytes
    frames = HostZstdStandIn(level=3).compress(d, 96, 3)
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        assert bytes(Zstd().decode(frame)) == host[i * 96 : (i + 1) * 96].tobytes()
        assert frame == bytes(Zstd(level=3).encode(host[i * 96 : (i + 1) * 96]))  # the CPU path's bytes


@pytest.mark.parametrize("compressor", [HostZstdStandIn(level=3), NvcompZstd()])
def test_compressors_refuse_bad_chunking(device_bytes, compressor) -> None:
    _, d = device_bytes
    with pytest.raises(ValueError, match="at least 400 bytes"):
        compressor.compress(d, 100, 4)
    with pytest.raises(ValueError, match="at least one chunk"):
        compressor.compress(d, 96, 0)


def test_nvcomp_needs_aligned_chunks(device_bytes) -> None:
    _, d = device_bytes
    with pytest.raises(ValueError, match="multiple of 4 bytes"):
        NvcompZstd().compress(d, 95, 3)


def test_check_chunks_wants_a_flat_byte_buffer() -> None:
    with pytest.raises(ValueError, match="1-D uint8"):
        check_chunks(np.zeros((4, 4), np.uint8), 4, 2)
    with pytest.raises(ValueError, match="1-D uint8"):
        check_chunks(np.zeros(16, np.uint16), 4, 2)


def test_nvcomp_problem_is_one_line_without_a_gpu() -> None:
    problem = nvcomp_problem()
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    if not gpu:
        assert problem is not None and "\n" not in problem


def test_parts_in_one_call_give_each_part_its_frames(device_bytes) -> None:
    """compress_parts (one batch for a whole shard's arrays) = compress per part."""
    _, d = device_bytes
    stand_in = HostZstdStandIn(level=3)
    parts = [(d, 96, 3), (d[:192], 64, 3), (d, 32, 1)]
    assert stand_in.compress_parts(parts) == [stand_in.compress(*part) for part in parts]
    with pytest.raises(ValueError, match="multiple of 4 bytes"):  # checked before nvCOMP is imported
        NvcompZstd().compress_parts([(d, 96, 3), (d, 95, 3)])


def test_split_frames_follows_the_counts() -> None:
    from engine.store.device_codec import split_frames

    assert split_frames([b"a", b"b", b"c"], [2, 0, 1]) == [[b"a", b"b"], [], [b"c"]]
    with pytest.raises(ValueError, match="3 frames for parts of"):
        split_frames([b"a", b"b", b"c"], [1, 1])

"""Choices made from a (faked) hardware description."""

from __future__ import annotations

import dataclasses

import pytest

from engine.compose.hardware import (
    Hardware,
    choose_slots,
    choose_writer_threads,
    hybrid_writers,
    resolve_compressor,
    route_shard,
)
from engine.config import GenerateConfig, RunOptions
from engine.errors import ConfigError

H200 = Hardware(cores=16, gpu_memory=141 * 10**9, nvcomp=None, nvimgcodec=None, torch_cuda=True)
LAPTOP = Hardware(cores=2, nvcomp="no GPU", nvimgcodec="no GPU")


@pytest.mark.parametrize("device, compressor, hw, want", [
    ("cpu", "cpu", LAPTOP, 1),  # one writer keeps 2 cores' compression pool busy
    ("cpu", "cpu", H200, 2),  # the compression pool already takes every core
    ("cuda", "nvcomp", H200, 4),
    ("cuda", "cpu", H200, 8),
    ("cuda", "cpu", Hardware(cores=2), 2),
    ("cuda", "hybrid", H200, 12),  # the CPU's 8 and nvCOMP's 4 side by side
    ("cuda", "hybrid", Hardware(cores=2), 4),
])
def test_writer_threads_follow_the_machine(device: str, compressor: str, hw: Hardware, want: int) -> None:
    assert choose_writer_threads(RunOptions(device=device), device, compressor, hw) == want
    if device == "cpu":  # JPEG images are encoded in the writer threads: two of them
        assert choose_writer_threads(RunOptions(device=device), device, compressor, hw, "jpeg") == 2
    assert choose_writer_threads(RunOptions(device=device, writer_threads=3), device, compressor, hw) == 3


def test_slots_fit_in_gpu_memory() -> None:
    shard = 2048 * 224 * 224 * 6  # images + mask + depth
    assert choose_slots(4, shard, H200) == 6
    small = Hardware(cores=16, gpu_memory=4 * shard)
    assert choose_slots(4, shard, small) == 2
    with pytest.raises(ConfigError, match="smaller --shard-size"):
        choose_slots(4, shard, Hardware(cores=16, gpu_memory=3 * shard))
    assert choose_slots(4, shard, Hardware(cores=2)) == 6  # unknown memory (the simulator)


def test_slots_fit_in_host_memory() -> None:
    """Pinned host buffers (every slot's, with hybrid) count against half the host's memory."""
    shard = 2048 * 224 * 224 * 6
    host = dataclasses.replace(H200, host_memory=10 * shard)
    assert choose_slots(12, shard, host, host_bytes=shard) == 5
    assert choose_slots(12, shard, host) == 14  # nothing comes back raw (nvcomp)
    with pytest.raises(ConfigError, match="host memory"):
        choose_slots(12, shard, dataclasses.replace(H200, host_memory=3 * shard), host_bytes=shard)


@pytest.mark.parametrize("requested, device, codec, teacher, hw, want", [
    ("auto", "cuda", "zstd", False, H200, "hybrid"),  # both compressors at once (unmeasured: RESULTS.md)
    ("auto", "cuda", "jpeg", False, H200, "cpu"),  # only masks and depth to compress
    ("auto", "cpu", "zstd", False, H200, "cpu"),
    ("auto", "cuda", "none", False, H200, "cpu"),
    ("auto", "cuda", "zstd", True, H200, "cpu"),
    ("auto", "cuda", "zstd", False, Hardware(cores=16, nvcomp="nvCOMP is not installed"), "cpu"),
    ("cpu", "cuda", "zstd", False, H200, "cpu"),
    ("nvcomp", "cuda", "zstd", False, H200, "nvcomp"),
    ("hybrid", "cuda", "zstd", False, H200, "hybrid"),
    ("hybrid", "cuda", "jpeg", False, H200, "hybrid"),
])
def test_compressor_choice(requested: str, device: str, codec: str, teacher: bool, hw: Hardware, want: str) -> None:
    assert resolve_compressor(requested, device, GenerateConfig(image_codec=codec), hw, teacher) == want


@pytest.mark.parametrize("device, codec, teacher, message", [
    ("cpu", "zstd", False, "runs on the GPU"),
    ("cuda", "none", False, "nothing to compress"),
    ("cuda", "zstd", True, "teacher-composite"),
])
def test_nvcomp_where_it_cannot_run_is_one_line(device: str, codec: str, teacher: bool, message: str) -> None:
    for requested in ("nvcomp", "hybrid"):
        with pytest.raises(ConfigError, match=f"--compressor {requested}: .*{message}"):
            resolve_compressor(requested, device, GenerateConfig(image_codec=codec), H200, teacher)


@pytest.mark.parametrize("cpu_busy, gpu_busy, want", [
    (0, 0, "cpu"),  # nothing in flight: the faster compressor with the better ratio
    (7, 0, "cpu"),  # the CPU's pool could still idle
    (8, 0, "gpu"),  # the CPU side is full: the GPU takes it
    (8, 3, "gpu"),
    (8, 4, "cpu"),  # both full: the CPU's writers are the likelier to free up first
    (3, 4, "cpu"),
])
def test_route_shard(cpu_busy: int, gpu_busy: int, want: str) -> None:
    assert route_shard(cpu_busy, gpu_busy, cpu_writers=8, gpu_writers=4) == want


def test_route_shard_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        route_shard(-1, 0, 8, 4)


@pytest.mark.parametrize("given, want", [(None, (8, 4)), (12, (8, 4)), (3, (2, 1)), (2, (1, 1)), (1, (1, 0))])
def test_hybrid_writers_split(given: int | None, want: tuple[int, int]) -> None:
    assert hybrid_writers(RunOptions(device="cuda", writer_threads=given), H200) == want
    assert route_shard(want[0], 0, *want) == ("gpu" if want[1] else "cpu")

"""Choices made from a (faked) hardware description."""

from __future__ import annotations

import pytest

from engine.compose.hardware import (
    Hardware,
    choose_slots,
    choose_writer_threads,
    resolve_compressor,
)
from engine.config import GenerateConfig, RunOptions
from engine.errors import ConfigError

H200 = Hardware(cores=16, gpu_memory=141 * 10**9, nvcomp=None, nvimgcodec=None, torch_cuda=True)
LAPTOP = Hardware(cores=2, nvcomp="no GPU", nvimgcodec="no GPU")


@pytest.mark.parametrize("device, compressor, hw, want", [
    ("cpu", "cpu", LAPTOP, 2),
    ("cpu", "cpu", H200, 2),  # the compression pool already takes every core
    ("cuda", "nvcomp", H200, 4),
    ("cuda", "cpu", H200, 8),
    ("cuda", "cpu", Hardware(cores=2), 2),
])
def test_writer_threads_follow_the_machine(device: str, compressor: str, hw: Hardware, want: int) -> None:
    assert choose_writer_threads(RunOptions(device=device), device, compressor, hw) == want
    assert choose_writer_threads(RunOptions(device=device, writer_threads=3), device, compressor, hw) == 3


def test_slots_fit_in_gpu_memory() -> None:
    shard = 2048 * 224 * 224 * 6  # images + mask + depth
    assert choose_slots(4, shard, H200) == 6
    small = Hardware(cores=16, gpu_memory=4 * shard)
    assert choose_slots(4, shard, small) == 2
    with pytest.raises(ConfigError, match="smaller --shard-size"):
        choose_slots(4, shard, Hardware(cores=16, gpu_memory=3 * shard))
    assert choose_slots(4, shard, Hardware(cores=2)) == 6  # unknown memory (the simulator)


@pytest.mark.parametrize("requested, device, codec, teacher, hw, want", [
    ("auto", "cuda", "zstd", False, H200, "cpu"),  # measured faster on an H200 (RESULTS.md)
    ("auto", "cuda", "jpeg", False, H200, "cpu"),
    ("auto", "cpu", "zstd", False, H200, "cpu"),
    ("auto", "cuda", "none", False, H200, "cpu"),
    ("auto", "cuda", "zstd", True, H200, "cpu"),
    ("auto", "cuda", "zstd", False, Hardware(cores=16, nvcomp="nvCOMP is not installed"), "cpu"),
    ("cpu", "cuda", "zstd", False, H200, "cpu"),
    ("nvcomp", "cuda", "zstd", False, H200, "nvcomp"),
])
def test_compressor_choice(requested: str, device: str, codec: str, teacher: bool, hw: Hardware, want: str) -> None:
    assert resolve_compressor(requested, device, GenerateConfig(image_codec=codec), hw, teacher) == want


@pytest.mark.parametrize("device, codec, teacher, message", [
    ("cpu", "zstd", False, "runs on the GPU"),
    ("cuda", "none", False, "nothing to compress"),
    ("cuda", "zstd", True, "teacher-composite"),
])
def test_nvcomp_where_it_cannot_run_is_one_line(device: str, codec: str, teacher: bool, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_compressor("nvcomp", device, GenerateConfig(image_codec=codec), H200, teacher)

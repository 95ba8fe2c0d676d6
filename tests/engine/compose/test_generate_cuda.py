"""The CUDA engine writes the same store as the CPU engine, bit for bit.

Without a GPU these run the real CUDA path (streams, pinned buffers, events,
slot ring) on Numba's CUDA simulator, at tiny sizes; ``gpu``-marked tests
repeat it at full size where a GPU exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.compose.compositor_cuda import cuda_status, resolve_device
from engine.compose.generate import generate
from engine.config import GenerateConfig, RunOptions
from engine.errors import ConfigError
from tests.engine.compose.test_generate import tree


def tiny(**overrides) -> GenerateConfig:
    """2 backgrounds x 2 cars x 2 flips x 3 positions = 24 samples of 16x24, 5 shards."""
    base = dict(builtin_backgrounds=2, builtin_foregrounds=2, height=16, width=24, positions=3,
                shard_size=5, chunk_size=5, scale_min=0.3, scale_max=0.9)
    return GenerateConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides", [{}, {"save_alpha": True, "image_codec": "none", "occlusion": "background"}])
def test_cuda_store_equals_cpu_store(tmp_path: Path, overrides: dict) -> None:
    generate(tiny(**overrides), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    report = generate(tiny(**overrides), tmp_path / "cuda.zarr", RunOptions(device="cuda", writer_threads=1))
    assert report.device == "cuda"
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")


def test_cuda_atlas_reset_and_growth_keep_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny atlas budget forces resets between batches: the device copy must follow."""
    from engine.compose import compositor

    real_init = compositor.ForegroundAtlas.__init__

    def small_budget(self, foregrounds, max_bytes=0):
        real_init(self, foregrounds, max_bytes=1)

    monkeypatch.setattr(compositor.ForegroundAtlas, "__init__", small_budget)
    generate(tiny(), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    generate(tiny(), tmp_path / "cuda.zarr", RunOptions(device="cuda"))
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")


def test_auto_never_picks_the_simulator() -> None:
    available, simulated = cuda_status()
    if simulated:
        assert resolve_device("auto") == "cpu"
    else:
        assert resolve_device("auto") == ("cuda" if available else "cpu")


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.compose.compositor_cuda as cc

    monkeypatch.setattr(cc, "cuda_status", lambda: (False, False))
    with pytest.raises(ConfigError, match="--device cuda: no CUDA GPU is available"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="--device must be"):
        resolve_device("tpu")


@pytest.mark.gpu
def test_real_gpu_store_equals_cpu_store(tmp_path: Path) -> None:
    config = GenerateConfig(builtin_backgrounds=8, builtin_foregrounds=8, positions=4, shard_size=128)
    generate(config, tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    generate(config, tmp_path / "cuda.zarr", RunOptions(device="cuda"))
    assert tree(tmp_path / "cuda.zarr") == tree(tmp_path / "cpu.zarr")

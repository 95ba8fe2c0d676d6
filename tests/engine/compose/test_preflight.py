"""Checks before a long generate: perspective sizes outside the scale range,
memory, and the time a CPU poisson run takes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.compose import preflight
from engine.compose.generate import generate
from engine.errors import ConfigError
from tests.small_stores import small


def test_small_objects_under_perspective_warn_and_name_the_fix(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        generate(small(object_height=0.3, placement="perspective", scale_min=0.25, limit=8, shard_size=8,
                       chunk_size=4), tmp_path / "s.zarr")
    text = caplog.text
    assert "perspective placement cannot honour --scale-min 0.25" in text
    assert "smaller than --scale-min" in text and "--object-height" in text


def test_objects_of_their_real_height_do_not_warn(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        generate(small(placement="perspective", scale_min=0.05, scale_max=1.0, limit=8, shard_size=8,
                       chunk_size=4), tmp_path / "s.zarr")
    assert "cannot honour" not in caplog.text


def test_memory_too_small_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "available_memory", lambda: 200_000)  # bytes
    out = tmp_path / "s.zarr"
    with pytest.raises(ConfigError, match=r"in memory.*use --shard-size \d+.*--force"):
        generate(small(), out)
    assert not out.exists()


def test_memory_estimate_of_a_4096_run() -> None:
    config = small(height=4096, width=4096, shard_size=2048)
    need = preflight.memory_estimate(config, 400_000, 2048, 2)
    assert need > 400e9  # 2048 samples of 16.8 Mpx: far beyond any host
    with pytest.raises(ConfigError, match="--shard-size 9 "):
        preflight.check_memory(config, 400_000, 2048, 2, available=8 * 10**9)
    assert preflight.check_memory(config, 400_000, 2048, 2, available=8 * 10**9, force=True) is not None
    assert preflight.check_memory(small(), 48, 16, 2, available=8 * 10**9) is None  # the small store: nothing


def test_poisson_on_the_cpu_gets_a_time_estimate() -> None:
    long = small(blend="poisson", height=224, width=224)
    line = preflight.time_estimate(long, 10_000, "cpu")
    assert line is not None and "10,000 samples take about" in line and "--device cuda" in line
    assert preflight.time_estimate(long, 10_000, "cuda") is None
    assert preflight.time_estimate(long, 20, "cpu") is None  # short: no line
    assert preflight.time_estimate(small(height=224, width=224), 10_000, "cpu") is None  # alpha: fast


def test_generate_logs_the_time_estimate(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(preflight, "LONG_RUN_SECONDS", 0.0)
    monkeypatch.setattr(preflight, "time_estimate",
                        lambda config, n, device: f"estimate for {n} samples" if config.blend == "alpha" else None)
    with caplog.at_level(logging.WARNING):
        generate(small(limit=4, shard_size=4, chunk_size=4), tmp_path / "s.zarr")
    assert "estimate for 4 samples" in caplog.text


def test_memory_is_checked_before_the_assets_are_drawn(tmp_path: Path, monkeypatch) -> None:
    import engine.compose.generate as gen

    monkeypatch.setattr(preflight, "available_memory", lambda: 200_000)

    def never(config):
        raise AssertionError("assets drawn before the memory check")

    monkeypatch.setattr(gen, "load_assets", never)
    with pytest.raises(ConfigError, match="--shard-size"):
        generate(small(height=4096, width=4096), tmp_path / "s.zarr")
    assert preflight.known_samples(small()) == 48 and preflight.known_samples(small(limit=5)) == 5

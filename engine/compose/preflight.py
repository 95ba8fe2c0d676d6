"""Checks before a long ``generate``: what the run will cost, and what the plan
cannot give. Each returns a line for the user (the caller logs it as a warning)
or raises :class:`~engine.errors.ConfigError` naming the option to change.

No heavy imports: NumPy and the plan only.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from engine.config import GenerateConfig
from engine.errors import ConfigError

#: bytes per output pixel while a shard is composited on the CPU: the float32 RGB
#: working image and the stored arrays (issue 22: about 8 GB at 40 samples of 4096x4096)
WORKING_BYTES_PER_PIXEL = 12
#: --blend poisson on the CPU: images per second at 224x224 (3-6 on 2 cores in the issue 22 report; the slow end)
POISSON_CPU_IMAGES_PER_SECOND_224 = 3.0
#: a run longer than this gets a time estimate before it starts
LONG_RUN_SECONDS = 60.0
#: sampled placements checked against --scale-min/--scale-max
SCALE_CHECK_SAMPLES = 4096


def stored_bytes_per_pixel(config: GenerateConfig) -> int:
    """Bytes of one sample's raw arrays per pixel: image 3, mask 1, depth 2 (float16),
    alpha 1 (``save_alpha``), instances 2 (several objects)."""
    return 3 + 1 + 2 + int(config.save_alpha) + 2 * int(config.multi_object)


def memory_estimate(config: GenerateConfig, n_samples: int, shard_size: int, writer_threads: int) -> int:
    """Host bytes a CPU ``generate`` holds at once: one shard being composited
    (:data:`WORKING_BYTES_PER_PIXEL`) and up to ``writer_threads`` composited shards
    waiting for their writers (raw arrays)."""
    samples = min(shard_size, n_samples)
    pixels = samples * config.height * config.width
    return pixels * (WORKING_BYTES_PER_PIXEL + writer_threads * stored_bytes_per_pixel(config))


def known_samples(config: GenerateConfig) -> int | None:
    """The plan's sample count when it is known before the inputs are read: ``--limit``
    bounds it, the built-in assets fix it; ``None`` for the user's folders without one."""
    if config.builtin:
        grid = config.builtin_backgrounds * config.builtin_foregrounds * (2 if config.flip else 1) * config.positions
        return grid if config.limit is None else min(grid, config.limit)
    return config.limit


def available_memory() -> int:
    """Bytes of host memory available now (``MemAvailable``), else all of it; 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_memory(config: GenerateConfig, n_samples: int, shard_size: int, writer_threads: int,
                 available: int | None = None, force: bool = False) -> str | None:
    """Refuse a run whose shards would not fit in memory, naming a ``--shard-size`` that fits.

    Returns:
        A warning when the run takes more than half of the available memory, else ``None``.

    Raises:
        ConfigError: the estimate exceeds the available memory (unless ``force``).
    """
    available = available_memory() if available is None else available
    need = memory_estimate(config, n_samples, shard_size, writer_threads)
    if available <= 0 or need <= available // 2:
        return None
    per_sample = max(1, need // max(1, min(shard_size, n_samples)))
    fits = max(1, int(available // 2 // per_sample))
    size = f"{config.width}x{config.height}"
    line = (f"generate would hold about {need / 1e9:.1f} GB in memory ({min(shard_size, n_samples):,} samples of "
            f"{size} per shard, {writer_threads} writers) of {available / 1e9:.1f} GB available")
    fix = f"--shard-size {fits} (or fewer --writer-threads, or a smaller --size)"
    if need > available and not force:
        raise ConfigError(f"{line}: use {fix}, or --force to start anyway")
    return f"{line}: if it runs out of memory, use {fix}"


def time_estimate(config: GenerateConfig, n_samples: int, device: str) -> str | None:
    """A line estimating a long ``--blend poisson`` run on the CPU (the slowest mode there),
    ``None`` for a short or GPU run."""
    if config.blend != "poisson" or device == "cuda":
        return None
    rate = POISSON_CPU_IMAGES_PER_SECOND_224 * (224 * 224) / (config.height * config.width)
    seconds = n_samples / rate
    if seconds < LONG_RUN_SECONDS:
        return None
    return (f"--blend poisson on the CPU: about {rate:.2g} images/s at {config.width}x{config.height}, so "
            f"{n_samples:,} samples take about {_duration(seconds)}; --device cuda, --blend feather or "
            "a smaller --limit are faster")


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def scale_range_warning(plan: Any) -> str | None:
    """A line when perspective placement gives sizes outside ``--scale-min/--scale-max``.

    Under perspective the height follows from the object's metres and where it
    stands (:mod:`engine.compose.plan`); objects too small or too large for the
    camera cannot reach the scale range anywhere on the ground, and the plan
    falls back to the nearest row. Sampled placements (up to
    :data:`SCALE_CHECK_SAMPLES`, spread over the plan) are checked; heights the
    object's own aspect limits (too wide to fit) are not perspective's doing and
    not counted.

    Args:
        plan: a :class:`~engine.compose.plan.SamplePlan`.
    """
    if not getattr(plan, "perspective", False):
        return None
    n = plan.n_samples
    index = np.unique(np.linspace(0, n - 1, min(n, SCALE_CHECK_SAMPLES)).astype(np.int64))  # (k,)
    p = plan.placements_at(index)
    H, W = plan.height, plan.width
    fg_h = plan.fg_sizes[p.fg, 0].astype(np.float64)
    fg_w = plan.fg_sizes[p.fg, 1].astype(np.float64)
    width_limited = np.floor(W * fg_h / fg_w) < plan.scale_min * H  # too wide to be that tall at all
    low = (p.h < plan.scale_min * H - 1) & ~width_limited  # a pixel of rounding either way
    high = p.h > plan.scale_max * H + 1
    bad = low | high
    if not bad.any():
        return None
    scales = p.h[bad] / H
    share = 100 * bad.mean()
    if low.sum() >= high.sum():
        fix = ("raise --object-height (or --object-heights) to the objects' real height in metres, "
               f"lower --scale-min to {np.floor(scales.min() * 100) / 100:g}, or use --placement uniform")
        what = "smaller than --scale-min"
    else:
        fix = ("lower --object-height (or --object-heights) to the objects' real height in metres, "
               f"raise --scale-max to {min(1.0, np.ceil(scales.max() * 100) / 100):g}, or use --placement uniform")
        what = "larger than --scale-max"
    return (f"perspective placement cannot honour --scale-min {plan.scale_min:g} / --scale-max {plan.scale_max:g}: "
            f"{share:.0f}% of the placements are {what} (scales {scales.min():.3f}-{scales.max():.3f}), as the "
            f"objects' height in metres and the camera set their size; {fix}")

"""Per-channel mean and standard deviation of a store's images (0..255 units).

What a network trained on the store normalises its inputs with. The pixels
are counted into one 256-bin histogram per channel: integer counts, so sums
are exact and order-free. A store's statistics are the same whichever
threads, shards or runs counted them, and counts from several runs (a
resumed store) add up to exactly what one streaming pass gives. Mean and
variance come from the histogram in exact integer arithmetic, then float64.

Two ways to fill it:

- :func:`channel_stats`: one streaming pass over the done shards, a chunk at
  a time on several threads (memory: one chunk per thread). JPEG stores are
  decoded with Pillow: the statistics are of the pixels training reads.
- :class:`ChannelHistogram` fed during ``generate`` with each shard's
  counts (lossless stores only: there the stored pixels are the composites
  themselves), counted where the images are: by the writers from host images
  (:mod:`kernels.histogram`), or on the GPU when they never come back raw
  (:mod:`kernels.histogram_cuda`); saved when the store completes; see
  ``engine/compose/generate.py``.

Saved under ``attrs["fgbg"]["stats"]`` as ``{"mean": [3 floats], "std": [3
floats], "samples": n, "source": "images" | "images_jpeg"}`` (population
std over every pixel of the ``samples`` done samples).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import StoreError

log = logging.getLogger(__name__)

_LEVELS = np.arange(256, dtype=np.int64)


@dataclass
class ChannelHistogram:
    """Pixel counts per channel and value, and how many samples they cover.

    Attributes:
        counts: ``(3, 256) int64``: pixels of each channel at each value.
        samples: images counted.
    """

    counts: np.ndarray = field(default_factory=lambda: np.zeros((3, 256), np.int64))
    samples: int = 0

    def add(self, images: np.ndarray) -> ChannelHistogram:
        """Count ``(k, H, W, 3) uint8`` images in; returns ``self``."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"need (k, H, W, 3) uint8 images, got {images.shape} {images.dtype}")
        from kernels.histogram import channel_histogram  # numba: not for `info` without --stats

        channel_histogram(images, self.counts)  # releases the GIL: writer threads count side by side
        self.samples += len(images)
        return self

    def add_counts(self, counts: np.ndarray, samples: int) -> ChannelHistogram:
        """Add a ``(3, 256)`` integer table counted elsewhere (e.g. on the GPU) of
        ``samples`` images; returns ``self``."""
        counts = np.asarray(counts)
        if counts.shape != (3, 256) or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"need (3, 256) integer counts, got {counts.shape} {counts.dtype}")
        self.counts += counts.astype(np.int64)
        self.samples += samples
        return self

    def merge(self, other: ChannelHistogram) -> ChannelHistogram:
        """Add ``other``'s counts in; returns ``self``."""
        self.counts += other.counts
        self.samples += other.samples
        return self

    def to_stats(self, source: str) -> dict[str, Any]:
        """The ``stats`` attribute: mean and std per channel in 0..255 units."""
        if self.samples == 0:
            raise ValueError("no images counted")
        mean, std = [], []
        for c in range(3):
            h = [int(v) for v in self.counts[c]]  # Python ints: exact whatever the store's size
            n = sum(h)
            s = sum(v * k for k, v in enumerate(h))
            q = sum(v * k * k for k, v in enumerate(h))
            mean.append(s / n)
            std.append(float(np.sqrt((n * q - s * s) / (n * n))))  # exact numerator: no cancellation
        return {"mean": mean, "std": std, "samples": int(self.samples), "source": source}


def image_array_name(root: Path) -> str:
    """``images`` or ``images_jpeg``: which array holds the store's images."""
    for name in ("images", "images_jpeg"):
        if (root / name / "zarr.json").is_file():
            return name
    raise StoreError(f"{root}: no 'images' array")


def histogram(path: str | Path, shards: Iterable[int] | None = None, threads: int | None = None) -> ChannelHistogram:
    """Count the images of ``shards`` (default: every done shard) of the store at ``path``.

    Reads one chunk at a time per thread (chunks decode independently), so
    memory is ``threads`` chunks whatever the store's size.

    Raises:
        StoreError: no such store, a shard not done, or a damaged shard (one line).
    """
    from engine.store.verify import StoreShards

    root = Path(path)
    store = StoreShards(root)
    name = image_array_name(root)
    todo = store.done if shards is None else sorted(int(k) for k in shards)
    missing = sorted(set(todo) - set(store.done))
    if missing:
        raise StoreError(f"{root}: shards {missing[:5]} are not done; statistics cover done shards only")
    chunk = store.formats[name].chunk_samples
    jobs = [(a, min(a + chunk, stop)) for start, stop in map(store.sample_range, todo) for a in range(start, stop, chunk)]
    read = _chunk_reader(root, name, store)

    def count(job: tuple[int, int]) -> ChannelHistogram:
        return ChannelHistogram().add(read(*job))

    total = ChannelHistogram()
    with ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="fgbg-stats") as pool:
        for part in pool.map(count, jobs):  # results are (3, 256): bounded however many jobs queue
            total.merge(part)
    return total


def _chunk_reader(root: Path, name: str, store: Any):
    """``read(start, stop) -> (k, H, W, 3) uint8`` for one chunk's samples of array ``name``."""
    import zarr

    array = zarr.open_array(root / name, mode="r")
    shard_size = store.shard_size
    if name == "images":
        from engine.store.shard_codec import ShardReader, shard_spec

        spec = shard_spec(json.loads((root / name / "zarr.json").read_text()))
        if spec is not None:  # fgbg's own layout: decode just the chunk, off zarr's GIL-bound path
            reader = ShardReader(lambda k: store.path(name, k), spec, tuple(array.shape[1:]), array.dtype,
                                 array.shape[0], name=name, store=root)
            return lambda start, stop: reader.read(np.arange(start, stop))
        return lambda start, stop: store.guard(name, [start // shard_size], lambda: array[start:stop])

    from PIL import Image

    def decode(start: int, stop: int) -> np.ndarray:
        raw = store.guard(name, [start // shard_size], lambda: array[start:stop])
        return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in raw])

    return decode


def channel_stats(path: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Mean and std per channel (0..255) of the done shards' images, in one streaming pass.

    Returns:
        ``{"mean": [r, g, b], "std": [r, g, b], "samples": n, "source": "images" | "images_jpeg"}``.

    Raises:
        StoreError: no such store, no done shard, or a damaged shard.
    """
    root = Path(path)
    counted = histogram(root, threads=threads)
    if counted.samples == 0:
        raise StoreError(f"{root}: no finished shard to compute statistics from")
    return counted.to_stats(image_array_name(root))


def save_stats(path: str | Path, stats: dict[str, Any]) -> None:
    """Write ``stats`` into the store's attributes (``attrs["fgbg"]["stats"]``), durably.

    Raises:
        StoreError: no store, or the attributes cannot be written.
    """
    import zarr

    from engine.store.zarr_store import ATTRS_KEY, _fsync, read_attrs

    root = Path(path)
    attrs = dict(read_attrs(root))
    attrs["stats"] = stats
    try:
        zarr.open_group(root, mode="r+").attrs.update({ATTRS_KEY: attrs})  # zarr writes zarr.json atomically
        _fsync(root / "zarr.json")
    except OSError as e:
        raise StoreError(f"{root}: cannot update the store's attributes ({e.strerror or e})") from None


def read_stats(path: str | Path) -> dict[str, Any] | None:
    """The saved statistics of the store at ``path``, or ``None`` when none were saved.

    Raises:
        StoreError: no fgbg store there.
    """
    from engine.store.zarr_store import read_attrs

    return read_attrs(Path(path)).get("stats")


def store_stats(path: str | Path, save: bool = True, threads: int | None = None) -> dict[str, Any]:
    """The store's statistics: the saved ones when they cover every done sample,
    else a streaming pass (:func:`channel_stats`), saved when ``save``.

    What ``info --stats`` calls.
    """
    from engine.store.zarr_store import StoreLayout, read_attrs

    root = Path(path)
    attrs = read_attrs(root)
    lay = attrs["layout"]
    layout = StoreLayout(lay["n_samples"], lay["height"], lay["width"], lay["shard_size"], lay["chunk_size"])
    done = sum(b - a for a, b in map(layout.shard_range, attrs["progress"]["shards_done"]))
    saved = attrs.get("stats")
    if saved is not None and saved.get("samples") == done:
        return saved
    stats = channel_stats(root, threads)
    if save:
        save_stats(root, stats)
    return stats


def finish_stats(path: str | Path, counted: ChannelHistogram, earlier_shards: Iterable[int],
                 threads: int | None = None) -> dict[str, Any] | None:
    """Save the statistics of a store ``generate`` just completed: ``counted``
    (the shards this run wrote) plus a streaming pass over ``earlier_shards``
    (done by an earlier, interrupted run, so a resumed store's statistics
    cover every sample). Statistics already saved for every sample are kept.

    Returns the statistics, or ``None`` when an earlier shard could not be read
    (logged; the store itself is complete, ``info --stats`` retries).
    """
    root = Path(path)
    saved = read_stats(root)
    earlier = sorted(earlier_shards)
    if saved is not None and counted.samples == 0:
        return saved  # nothing written by this run: what was saved still holds
    total = ChannelHistogram().merge(counted)
    try:
        if earlier:
            total.merge(histogram(root, earlier, threads))
        stats = total.to_stats(image_array_name(root))
        save_stats(root, stats)
    except StoreError as e:
        log.warning("channel statistics not saved: %s", e)
        return None
    return stats

"""A split held whole in device memory, batched and augmented there.

For small models the loader, not the network, limits the step rate: a host
loader pays per batch for gathering, pinning and copying. Here the split's
arrays cross to the device once (images stay ``uint8``: 400k samples at
224×224 are ~60 GB, which an H100/H200 holds); each batch is then an
index-select, flips, gains and normalisation on the device, with only the
batch's row numbers and augmentation draws (a few KB) crossing per step.

Batches follow the shared contract of :mod:`engine.learn.epochs`: which rows
form batch ``i`` of ``epoch`` (:class:`EpochPlan`) and how each sample is
augmented (:func:`augmentation`), so the result is the same batch a host
loader would make from the same plan, within float32 rounding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError
from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD, SplitArrays, load_split
from engine.learn.epochs import EpochPlan, augmentation, permutation

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: memory left free beside the split (the model, activations, the allocator's
#: slack): the larger of these bytes and this fraction of what is free
RESERVE_BYTES = 2 << 30
RESERVE_FRACTION = 0.10


def split_bytes(n: int, input_size: tuple[int, int], output_size: tuple[int, int]) -> tuple[int, int]:
    """``(image bytes, depth + mask bytes)`` of ``n`` samples held as
    ``uint8`` images, ``float32`` depth and ``bool`` masks."""
    (H, W), (h, w) = input_size, output_size
    return n * H * W * 3, n * h * w * (4 + 1)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the CUDA driver's count, or the host's available RAM
    (a seam: tests fake a small budget)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(n: int, input_size: tuple[int, int], output_size: tuple[int, int], device: torch.device) -> None:
    """Refuse a split that would not fit in ``device``'s free memory with a margin.

    Raises:
        ConfigError: one line naming the sizes.
    """
    images, labels = split_bytes(n, input_size, output_size)
    free = free_memory(device)
    reserve = max(RESERVE_BYTES, int(RESERVE_FRACTION * free))
    if images + labels > free - reserve:
        H, W = input_size
        raise ConfigError(
            f"the split's {n:,} samples need {_gb(images + labels)} on {device} (images {_gb(images)} uint8 at "
            f"{H}x{W}, depth + masks {_gb(labels)}) but {_gb(free)} is free and {_gb(reserve)} is kept for "
            "training; use a smaller split or input size, or a loader that streams from the store")


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class DeviceSplit:
    """A split's arrays on ``device`` and the batches of one :class:`EpochPlan`.

    Attributes:
        images: ``(N, H, W, 3) uint8`` on the device.
        depth: ``(N, h, w) float32`` metres on the device.
        masks: ``(N, h, w) bool`` on the device.
        plan: which rows form each batch.
        augment: apply :func:`augmentation`'s flips and gains.

    Use :meth:`load` (from a store) or :meth:`from_arrays` (a loaded split).
    """

    def __init__(self, images: torch.Tensor, depth: torch.Tensor, masks: torch.Tensor, plan: EpochPlan,
                 mean: Sequence[float] = tuple(IMAGENET_MEAN), std: Sequence[float] = tuple(IMAGENET_STD),
                 augment: bool = True) -> None:
        import torch

        if plan.n != len(images) or len(depth) != len(images) or len(masks) != len(images):
            raise ValueError(f"plan of {plan.n} samples for {len(images)} images, {len(depth)} depth maps, "
                             f"{len(masks)} masks")
        self.images, self.depth, self.masks = images, depth, masks
        self.plan = plan
        self.augment = augment
        self.device = images.device
        self.mean = torch.tensor(_three(mean, "mean"), dtype=torch.float32, device=self.device)
        self.std = torch.tensor(_three(std, "std"), dtype=torch.float32, device=self.device)
        self._positions = plan.positions()
        self._perm: tuple[int, np.ndarray] | None = None  # (epoch, its permutation): computed once per epoch

    @classmethod
    def from_arrays(cls, data: SplitArrays, device: str | torch.device, batch: int, seed: int, *,
                    mean: Sequence[float] = tuple(IMAGENET_MEAN), std: Sequence[float] = tuple(IMAGENET_STD),
                    augment: bool = True, shard_id: int = 0, num_shards: int = 1,
                    drop_last: bool = False) -> DeviceSplit:
        """Move a split already in host memory (:func:`load_split`, not streamed) to ``device``.

        Raises:
            ConfigError: streamed images, a batch larger than the split (this
                rank's share of it), or the split does not fit on the device.
        """
        import torch

        if not isinstance(data.images, np.ndarray):
            raise ConfigError("a device-resident split needs its images in memory, not streamed from the store")
        dev = torch.device(device)
        plan = make_plan(len(data), batch, seed, shard_id, num_shards, drop_last)
        if dev.type != "cpu":  # on the CPU the tensors share the arrays' memory: nothing new to hold
            check_fits(len(data), data.images.shape[1:3], data.depth.shape[1:3], dev)
        # one copy each, the only time the split crosses to the device
        images = torch.from_numpy(data.images).to(dev)
        depth = torch.from_numpy(data.depth).to(dev)
        masks = torch.from_numpy(data.masks).to(dev)
        return cls(images, depth, masks, plan, mean, std, augment)

    @classmethod
    def load(cls, path: str | Path, index: np.ndarray, input_size: tuple[int, int], output_size: tuple[int, int],
             device: str | torch.device, batch: int, seed: int, *,
             mean: Sequence[float] = tuple(IMAGENET_MEAN), std: Sequence[float] = tuple(IMAGENET_STD),
             augment: bool = True, shard_id: int = 0, num_shards: int = 1, drop_last: bool = False,
             threads: int | None = None) -> DeviceSplit:
        """Read samples ``index`` (sorted) of the store at ``path`` once, resized as
        :func:`load_split` does, and hold them on ``device``.

        The memory check runs before anything is read, so a split that cannot
        fit fails in a moment rather than after minutes of loading.

        Args:
            mean, std: per-channel normalisation in 0..1 units (e.g. the store's
                statistics divided by 255).

        Raises:
            ConfigError: the split does not fit, or a batch larger than the split.
            StoreError: the store cannot be read.
        """
        import torch

        dev = torch.device(device)
        make_plan(len(index), batch, seed, shard_id, num_shards, drop_last)  # bad options fail before reading
        check_fits(len(index), tuple(input_size), tuple(output_size), dev)
        data = load_split(path, index, tuple(input_size), tuple(output_size), threads=threads)
        return cls.from_arrays(data, dev, batch, seed, mean=mean, std=std, augment=augment, shard_id=shard_id,
                               num_shards=num_shards, drop_last=drop_last)

    @property
    def batches_per_epoch(self) -> int:
        return self.plan.batches_per_epoch()

    def rows(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, positions)`` of batch ``i`` of ``epoch`` (as :meth:`EpochPlan.rows`)."""
        if not 0 <= i < self.batches_per_epoch:
            raise IndexError(f"batch {i} of an epoch of {self.batches_per_epoch}")
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, permutation(self.plan.n, self.plan.seed, epoch))
        pos = self._positions[i * self.plan.batch : (i + 1) * self.plan.batch]
        return self._perm[1][pos], pos

    def batch(self, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``i`` of ``epoch`` on the device: ``x (B, 3, H, W) float32`` normalised
        (channels-last memory), ``depth (B, 1, h, w) float32``, ``masks (B, 1, h, w) bool``.

        Only the row numbers and the augmentation draws cross to the device.
        """
        import torch

        rows, pos = self.rows(epoch, i)
        idx = torch.from_numpy(rows).to(self.device)
        images = self.images.index_select(0, idx)
        depth = self.depth.index_select(0, idx)
        masks = self.masks.index_select(0, idx)
        draws = augmentation(self.plan.seed, epoch, pos) if self.augment else None
        return finish_batch(images, depth, masks, draws, self.mean, self.std)


def finish_batch(images: torch.Tensor, depth: torch.Tensor, masks: torch.Tensor,
                 draws: tuple[np.ndarray, np.ndarray] | None, mean: torch.Tensor, std: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch's augmentation and normalisation, where its tensors are.

    Args:
        images: ``(B, H, W, 3) uint8``; depth: ``(B, h, w) float32``; masks: ``(B, h, w) bool``.
        draws: ``(flip (B,) bool, gain (B, 3) float32)`` from :func:`augmentation`, or ``None``.
        mean, std: ``(3,) float32`` tensors on the batch's device, 0..1 units.

    Returns:
        ``x (B, 3, H, W) float32`` (channels-last memory), ``depth (B, 1, h, w)``, ``masks (B, 1, h, w)``.
    """
    import torch

    x = images.float() / 255.0  # (B, H, W, 3)
    if draws is not None:
        flip, gain = draws
        f = torch.from_numpy(flip).to(x.device)
        x = torch.where(f[:, None, None, None], x.flip(2), x)
        depth = torch.where(f[:, None, None], depth.flip(2), depth)
        masks = torch.where(f[:, None, None], masks.flip(2), masks)
        x = (x * torch.from_numpy(gain).to(x.device)[:, None, None, :]).clamp_(0.0, 1.0)
    x = ((x - mean) / std).permute(0, 3, 1, 2)  # a (B, 3, H, W) view of NHWC memory: channels-last
    return x, depth[:, None].contiguous(), masks[:, None].contiguous()


def make_plan(n: int, batch: int, seed: int, shard_id: int = 0, num_shards: int = 1,
              drop_last: bool = False) -> EpochPlan:
    """The :class:`EpochPlan` of a device-resident split, checked.

    Raises:
        ConfigError: a batch larger than this rank's share of the split, or bad ranks.
    """
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    if not 0 <= shard_id < num_shards:
        raise ConfigError(f"rank {shard_id} of {num_shards} does not exist")
    share = len(range(shard_id, n, num_shards))
    if batch > share:
        raise ConfigError(f"a batch of {batch} is larger than the split ({share:,} samples"
                          f"{' on this rank' if num_shards > 1 else ''}); use a smaller --batch")
    return EpochPlan(n=n, batch=batch, seed=seed, shard_id=shard_id, num_shards=num_shards, drop_last=drop_last)


def _three(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    if len(out) != 3:
        raise ConfigError(f"{name} needs 3 values (one per channel), got {len(out)}")
    if name == "std" and min(out) <= 0:
        raise ConfigError(f"std must be positive, got {out}")
    return out


def describe(split: DeviceSplit) -> dict[str, Any]:
    """Sizes for a log line: samples, bytes on the device, device."""
    nbytes = sum(t.numel() * t.element_size() for t in (split.images, split.depth, split.masks))
    return {"samples": split.plan.n, "bytes": nbytes, "device": str(split.device)}

"""Training batches composited on demand instead of read from a store.

A *sample source* (``engine.compose.online.OnlineSamples``, built by the CLI
and passed in: learning never imports the compositor) returns any plan
samples, exactly as a store made with the same settings holds them. This
module turns them into the batches of an :class:`~engine.learn.epochs.EpochPlan`,
resized exactly as :func:`~engine.learn.data.load_split` resizes a store's
(antialiased images to the input size, depth and masks by torch's
``nearest-exact`` picks to the output size) and augmented and normalised as
the device-resident split does (:func:`~engine.learn.device_cache.finish_batch`),
so for the same seed the batches equal the device-resident ones, bit for bit.
Unlimited fresh samples: no store needs to hold the training images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from engine.errors import ConfigError
from engine.learn.data import nearest_exact, resize_images
from engine.learn.device_cache import finish_batch, make_plan
from engine.learn.epochs import augmentation

if TYPE_CHECKING:
    import torch


class SampleSource(Protocol):
    """What composites samples on demand (``engine.compose.online.OnlineSamples``)."""

    n_samples: int
    height: int
    width: int

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(B,)`` plan indices → images ``(B, H, W, 3) uint8``, depth ``(B, H, W)``
        float16 metres, masks ``(B, H, W) uint8``."""
        ...


class OnlineBatches:
    """The batches of a split, composited when drawn.

    Args:
        source: the sample source (plan indices → samples at the store's size).
        index: ``(N,) int64`` the split's plan indices.
        input_size, output_size: the network's ``(H, W)`` and ``(h, w)``.
        batch, seed: as for :class:`~engine.learn.epochs.EpochPlan`.
        device: where batches are finished and returned.
        mean, std: per channel, 0..1 units.
        augment: apply :func:`~engine.learn.epochs.augmentation`'s draws.
    """

    def __init__(self, source: SampleSource, index: np.ndarray, input_size: tuple[int, int],
                 output_size: tuple[int, int], batch: int, seed: int, device: str, *,
                 mean: Sequence[float], std: Sequence[float], augment: bool = True) -> None:
        import torch

        self.source = source
        self.index = np.asarray(index, dtype=np.int64)
        if len(self.index) == 0 or self.index.min() < 0 or self.index.max() >= source.n_samples:
            raise ConfigError(f"the split's samples must be in the plan's [0, {source.n_samples})")
        self.plan = make_plan(len(self.index), batch, seed)
        self.input_size = tuple(input_size)
        self.rows_out = nearest_exact(source.height, output_size[0])
        self.cols_out = nearest_exact(source.width, output_size[1])
        self.device = torch.device(device)
        self.mean = torch.tensor([float(v) for v in mean], dtype=torch.float32, device=self.device)
        self.std = torch.tensor([float(v) for v in std], dtype=torch.float32, device=self.device)
        self.augment = augment

    @property
    def batches_per_epoch(self) -> int:
        return self.plan.batches_per_epoch()

    def batch(self, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``i`` of ``epoch``: the shapes and dtypes of :func:`~engine.learn.data.make_batch`."""
        import torch

        rows, pos = self.plan.rows(epoch, i)
        images, depth, masks = self.source.read(self.index[rows])  # composited now, at the store's size
        images = resize_images(images, self.input_size)  # (B, H, W, 3) uint8
        sel = np.ix_(np.arange(len(rows)), self.rows_out, self.cols_out)
        depth_out = depth[sel].astype(np.float32)
        masks_out = masks[sel] > 0

        def upload(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        draws = augmentation(self.plan.seed, epoch, pos) if self.augment else None
        return finish_batch(upload(images), upload(depth_out), upload(masks_out), draws, self.mean, self.std)

    def from_step(self, step: int):
        """Batches from global step ``step`` on, through the epochs without end (resume)."""
        epoch, start = self.plan.locate(step)
        while True:
            for i in range(start, self.batches_per_epoch):
                yield self.batch(epoch, i)
            epoch, start = epoch + 1, 0

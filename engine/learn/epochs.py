"""Which samples each batch holds, and how each sample is augmented: the
contract every loader shares (DALI, device-resident, online compositing).

An epoch is a seeded permutation of the split, a pure function of
``(seed, epoch)``. Under ``num_shards`` ranks, rank ``shard_id`` takes every
``num_shards``-th position of it, so the ranks cover the split exactly once
between them. Its batches are consecutive runs of ``batch`` positions; the
last one is partial unless ``drop_last`` drops it. Augmentation draws (flip,
colour gains) are a pure function of ``(seed, epoch, position)``, so a sample
gets the same augmentation whichever loader reads it, on any device, after a
resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: colour jitter: brightness and per-channel gains, each uniform in [1 - J, 1 + J]
JITTER = 0.2


@dataclass(frozen=True)
class EpochPlan:
    """Batches of one epoch on one rank.

    Attributes:
        n: samples in the split.
        batch: samples per batch (per rank).
        seed: the run's seed.
        shard_id, num_shards: this rank and how many there are.
        drop_last: drop the last batch when it is partial.
        shuffle: the seeded permutation (training); ``False``: the split in
            order, every epoch (evaluation).
    """

    n: int
    batch: int
    seed: int
    shard_id: int = 0
    num_shards: int = 1
    drop_last: bool = False
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.n < 1 or self.batch < 1:
            raise ValueError(f"need at least one sample and a batch of at least one, got {self.n} and {self.batch}")
        if not 0 <= self.shard_id < self.num_shards:
            raise ValueError(f"shard_id must be in [0, {self.num_shards}), got {self.shard_id}")

    def positions(self) -> np.ndarray:
        """``(k,) int64`` positions (into the epoch's permutation) this rank reads, in order.

        With ``drop_last`` the ranks read the first ``n - n % num_shards``
        positions, the same count each, so they run the same number of batches
        (ranks that step together must).
        """
        stop = self.n - self.n % self.num_shards if self.drop_last else self.n
        return np.arange(self.shard_id, stop, self.num_shards, dtype=np.int64)

    def batches_per_epoch(self) -> int:
        k = len(self.positions())
        return k // self.batch if self.drop_last else -(-k // self.batch)

    def rows(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``i`` of ``epoch``: ``(rows, positions)``, each ``(b,) int64``;
        rows index the split, positions the epoch (for :func:`augmentation`)."""
        if not 0 <= i < self.batches_per_epoch():
            raise IndexError(f"batch {i} of an epoch of {self.batches_per_epoch()}")
        pos = self.positions()[i * self.batch : (i + 1) * self.batch]
        return (permutation(self.n, self.seed, epoch)[pos] if self.shuffle else pos), pos

    def locate(self, step: int) -> tuple[int, int]:
        """``(epoch, batch)`` of global step ``step`` (steps run through epochs in order)."""
        per = self.batches_per_epoch()
        if per == 0:
            raise ValueError(f"{len(self.positions())} samples on this rank cannot fill one batch of {self.batch} "
                             "with drop_last")
        return divmod(step, per)


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """``(n,) int64`` the seeded order of epoch ``epoch``."""
    return np.random.default_rng([seed, 0xE90C, epoch]).permutation(n).astype(np.int64)


def augmentation(seed: int, epoch: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample draws: ``flip (b,) bool`` (horizontal, image, depth and mask
    together) and ``gain (b, 3) float32`` (brightness × per-channel gain, image only).

    A pure function of ``(seed, epoch, position)``: one generator per sample
    position, so any subset of an epoch gets the same draws.
    """
    flip = np.empty(len(positions), bool)
    gain = np.empty((len(positions), 3), np.float32)
    for j, p in enumerate(np.asarray(positions, dtype=np.int64)):
        rng = np.random.default_rng([seed, 0xA06, epoch, int(p)])
        flip[j] = rng.random() < 0.5
        gain[j] = rng.uniform(1 - JITTER, 1 + JITTER) * rng.uniform(1 - JITTER, 1 + JITTER, 3)
    return flip, gain

"""Batches of a store's split for any model: one object over the loaders ``train`` uses.

:class:`Loader` wraps, without copying them, the four ways ``train`` feeds
its network (``kind``):

- ``dali``: :class:`~engine.learn.dali_loader.DaliLoader` (shard-aligned reads,
  decode/resize/augment in a DALI graph, on the GPU when ``device`` is one);
- ``torch``: the split resized into memory by :func:`~engine.learn.data.load_split`,
  batches by :class:`~engine.learn.data.BatchSampler` and :func:`~engine.learn.data.make_batch`
  (with ``stream``: images read batch by batch);
- ``device``: :class:`~engine.learn.device_cache.DeviceSplit`, the split held
  in the device's memory;
- ``online``: :class:`~engine.learn.online_feed.OnlineBatches`, composited
  when drawn by a sample source (``samples``).

Every batch is a pure function of the loader's step (its seed, the split and
the rank), so :meth:`Loader.state_dict` is one number and a resumed loader
yields exactly the batches an uninterrupted one would, the per-sample draws
of ``train`` included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from engine.learn.data import SplitArrays
    from engine.learn.online_feed import SampleSource

KINDS = ("dali", "torch", "device", "online")


def torchrun_rank() -> tuple[int, int]:
    """``(rank, world)`` from torchrun's ``RANK``/``WORLD_SIZE`` (``(0, 1)`` without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class Loader:
    """Batches of a split on a device (built by :func:`engine.loader`; ``train`` builds one too).

    Args:
        path: the store.
        index: ``(N,) int64`` sorted sample indices of the split.
        batch_size: the *global* batch: each of ``world`` ranks gets ``batch_size / world``.
        kind: ``dali``, ``torch``, ``device`` or ``online`` (see the module).
        device: where batches are returned (``cpu``, ``cuda``, ``cuda:N``).
        input_size: ``(H, W)`` of ``image``.
        output_size: ``(h, w)`` of ``depth`` and ``mask`` (default ``input_size``).
        mean, std: ``(3,)`` per-channel normalisation in 0..1 units.
        augment: random horizontal flip (image, depth, mask together) and colour gains.
        shuffle: a seeded permutation each epoch (``False``: the split in order; ``torch`` and ``dali``).
        seed: of the order and the draws.
        rank, world: this process and how many share the split.
        drop_last: drop an epoch's partial last batch (always with several ranks).
        stream: ``torch`` only: read each batch's images from the store (stores larger than memory).
        data: the split already loaded (:class:`~engine.learn.data.SplitArrays` of ``index``), to reuse.
        samples: ``online`` only: the sample source that composites them.

    Iterating yields one epoch from the current step: dicts of tensors on ``device``:

    - ``image``: ``(B, 3, H, W) float32`` normalised (channels-last memory);
    - ``depth``: ``(B, 1, h, w) float32`` metres (0: unknown);
    - ``mask``: ``(B, 1, h, w) bool`` foreground.

    ``B`` is ``batch_size / world`` (smaller for a last partial batch).

    Raises:
        ConfigError: unknown kind, a batch that does not split across the ranks
            or is larger than the split, options a kind does not take.
        StoreError: from the store, when it is read (one line).
    """

    def __init__(self, path: str | Path, index: np.ndarray, batch_size: int, *, kind: str = "torch",
                 device: str = "cpu", input_size: tuple[int, int] = (128, 128),
                 output_size: tuple[int, int] | None = None, mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                 std: tuple[float, ...] = (0.229, 0.224, 0.225), augment: bool = True, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world: int = 1, drop_last: bool | None = None, stream: bool = False,
                 data: SplitArrays | None = None, samples: SampleSource | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if batch_size < 1 or world < 1 or not 0 <= rank < world:
            raise ConfigError(f"need batch_size >= 1 and 0 <= rank < world, got {batch_size}, {rank}, {world}")
        if batch_size % world:
            raise ConfigError(f"batch_size {batch_size} (the global batch) must be a multiple of the {world} ranks")
        if world > 1 and kind in ("device", "online"):
            raise ConfigError(f"kind={kind!r} reads the whole split on one rank: use dali or torch with several")
        if not shuffle and kind in ("device", "online"):
            raise ConfigError(f"kind={kind!r} always shuffles: use dali or torch for the split in order")
        if stream and kind != "torch":
            raise ConfigError("stream is for kind='torch' (dali reads batch by batch, device loads the split)")
        if kind == "online" and samples is None:
            raise ConfigError("kind='online' needs a sample source (engine.loader builds it from the store)")
        self.path, self.kind, self.device = Path(path), kind, str(device)
        self.index = np.asarray(index, dtype=np.int64)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.input_size = tuple(input_size)
        self.output_size = tuple(output_size or input_size)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.augment, self.shuffle = augment, shuffle
        # several ranks drop the partial last batch so every rank runs the same steps per epoch
        self.drop_last = world > 1 if drop_last is None else drop_last
        self.stream = stream
        self.step = 0
        self._backend = self._build(data, samples)

    # -- what the loader is ------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._per_epoch

    def __repr__(self) -> str:
        return (f"Loader(kind={self.kind!r}, samples={len(self.index)}, batch_size={self.batch_size}, "
                f"batches={len(self)}, device={self.device!r}, step={self.step})")

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self.step // len(self)

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: the next batch's step, and what must match to resume."""
        return {"step": self.step, "kind": self.kind, "seed": self.seed, "samples": len(self.index),
                "batch_size": self.batch_size, "world": self.world}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (:meth:`state_dict`): the next batch is the one it was at.

        Raises:
            ConfigError: the state is of a loader over other samples, seed, batch or rank count.
        """
        mine = self.state_dict()
        differ = [k for k in ("seed", "samples", "batch_size", "world") if state.get(k) != mine[k]]
        if differ:
            raise ConfigError(f"loader state of another loader ({', '.join(differ)} differ)")
        self.step = int(state["step"])

    # -- batches -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of the current epoch, from :attr:`step` on, as dicts."""
        epoch, start = divmod(self.step, len(self))
        for x, depth, masks in self._epoch(epoch, start):
            self.step += 1
            yield {"image": x, "depth": depth, "mask": masks}

    def from_step(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(image, depth, mask)`` tuples from global step ``step`` on, through the epochs
        without end (``train``'s loop); :attr:`step` follows."""
        self.step = step
        while True:
            epoch, start = divmod(self.step, len(self))
            for batch in self._epoch(epoch, start):
                self.step += 1
                yield batch

    def close(self) -> None:
        """Free the DALI pipeline and reading threads (other kinds: nothing to free)."""
        if self.kind == "dali":
            self._backend.close()

    def _epoch(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.kind == "dali":
            yield from self._backend.epoch(epoch, start)
            return
        for i in range(start, len(self)):
            yield self._batch(epoch * len(self) + i, epoch, i)

    def _batch(self, step: int, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.kind in ("device", "online"):
            return self._backend.batch(epoch, i)
        from engine.learn.data import make_batch

        data = self._backend
        rows = self._torch_rows(step)
        batch = make_batch(data, rows, self.seed * 2**32 + step if self.augment else None, self.device,
                           np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32))  # (B, 3, H, W)
        if self.stream:
            data.prefetch(self._torch_rows(step + 1))  # streamed images: read while this batch trains
        return batch

    def _torch_rows(self, step: int) -> np.ndarray:
        """This rank's rows of ``step``: the sampler's global batch (``train``'s draws,
        running across epoch boundaries), split ``rows[rank::world]``; in order without shuffle."""
        if self.shuffle:
            return self._sampler(step)[self.rank :: self.world]
        epoch, i = divmod(step, len(self))
        return self._plan.rows(epoch, i)[0]

    # -- building ----------------------------------------------------------------------------

    def _build(self, data: SplitArrays | None, samples: SampleSource | None) -> Any:
        from engine.learn.data import BatchSampler, load_split
        from engine.learn.epochs import EpochPlan

        per_rank = self.batch_size // self.world
        if data is not None and not np.array_equal(data.index, self.index):
            raise ValueError("data is not the split of index")
        if self.kind == "online":
            from engine.learn.online_feed import OnlineBatches

            backend: Any = OnlineBatches(samples, self.index, self.input_size, self.output_size,  # type: ignore[arg-type]
                                         self.batch_size, self.seed, self.device, mean=self.mean, std=self.std,
                                         augment=self.augment)
            self._per_epoch = backend.batches_per_epoch
            return backend
        if self.kind == "dali":
            from engine.learn.dali_loader import DaliLoader, require_dali

            require_dali("kind='dali'", "kind='torch'")
            backend = DaliLoader(self.path, self.index, self.input_size, self.output_size, per_rank, self.seed,
                                 shard_id=self.rank, num_shards=self.world, drop_last=self.drop_last,
                                 augment=self.augment, mean=self.mean, std=self.std, device=self.device,
                                 split=data, shuffle=self.shuffle)
            self._per_epoch = backend.batches_per_epoch
            return backend
        if data is None:
            data = load_split(self.path, self.index, self.input_size, self.output_size,
                              stream_images=self.stream)
        if self.kind == "device":
            from engine.learn.device_cache import DeviceSplit

            backend = DeviceSplit.from_arrays(data, self.device, self.batch_size, self.seed, mean=self.mean,
                                              std=self.std, augment=self.augment, drop_last=self.drop_last)
            self._per_epoch = backend.batches_per_epoch
            return backend
        # torch: the sampler draws global batches across epochs; an epoch is the batches that cover the split once
        self._sampler = BatchSampler(len(self.index), self.batch_size, self.seed)
        try:
            self._plan = EpochPlan(len(self.index), per_rank, self.seed, self.rank, self.world, self.drop_last,
                                   shuffle=False)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        n = len(self.index)
        # (the sampler's batches are always full, wrapping into the next epoch's order: at least one)
        self._per_epoch = max(1, n // self.batch_size if self.drop_last else -(-n // self.batch_size)) \
            if self.shuffle else self._plan.batches_per_epoch()
        if self._per_epoch < 1:
            raise ConfigError(f"{n} samples cannot fill one batch of {self.batch_size} with drop_last")
        return data

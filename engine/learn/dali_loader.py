"""Training batches through NVIDIA DALI: the batches of :class:`EpochPlan`, images
decoded, resized, flipped, colour-jittered and normalised in a DALI graph.

What runs where:

- Host, Python (the ``external_source`` callback, on the thread that runs the
  pipeline, with the next batch read ahead on a background thread): the batch's
  rows and augmentation draws (:mod:`engine.learn.epochs`, so every loader
  gives a sample the same flip and gains), its images read from the store
  decoding only the chunks that hold them (lossless ``images``: Zstandard
  chunks on ``read_threads`` threads; ``images_jpeg``: the JPEG files' bytes,
  not decoded), and its depth and masks taken from memory, where
  :func:`load_split` put them once at the network's output size.
- The DALI graph, on the GPU when a device is given (``device='cuda'``), on
  DALI's CPU threads otherwise: JPEG decoding (nvJPEG, ``mixed``), antialiased
  resize to the input size, colour gains, clamp, flip, normalisation, layout
  and dtype (one fused ``crop_mirror_normalize``), and the same flip of depth
  and masks.
- Where data crosses to the GPU: the callback's host batch — JPEG bytes, or
  ``uint8`` images at the store's size, plus depth/masks at the output size and
  the per-sample draws — enters the GPU at the graph's first GPU operator (the
  ``mixed`` decoder, or ``.gpu()``); only the finished batch leaves DALI, copied
  device to device into torch tensors on torch's current stream.

Normalisation: ``mean`` and ``std`` are per channel in 0..1 units (ImageNet's
by default, as :func:`engine.learn.data.make_batch`); the graph applies them in
0..255 units (``(x - 255 mean) / (255 std)``), which is the same mapping.

Errors (a damaged shard, a missing array) are raised by the callback on the
caller's thread and reach the caller as the library's one-line exception; the
pipeline is rebuilt before the next epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ConfigError, StoreError
from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD
from engine.learn.epochs import EpochPlan, augmentation

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


def loader_pipeline_graph(source: Callable[[Any], tuple], *, jpeg: bool, resize: tuple[int, int] | None, augment: bool,
                          mean: tuple[float, float, float], std: tuple[float, float, float], channels_last: bool,
                          float16: bool, gpu: bool):
    """The DALI graph (called once, at build time, inside a pipeline).

    Args:
        source: batch callable for ``fn.external_source`` (``batch_info=True``)
            returning ``(images, depth, masks)`` and, with ``augment``, ``(flip, gain)``:
            images ``(B, H0, W0, 3) uint8`` (lossless) or B ``(n,) uint8`` JPEG files;
            depth ``(B, h, w, 1) float32``; masks ``(B, h, w, 1) uint8`` 0/1;
            flip B ``() int32`` 0/1; gain B ``(3,) float32``.
        jpeg: the images are JPEG files.
        resize: ``(H, W)`` to resize to, or ``None`` when the store has that size.
        augment: apply the flip and gains.
        mean, std: per channel, 0..1 units.
        channels_last: images out as HWC (else CHW).
        float16: images out as float16 (else float32).
        gpu: decode on the GPU (``mixed``) and run every operator there.

    Returns:
        ``(x, depth, masks)``: x ``(H, W, 3)`` or ``(3, H, W)`` per sample, depth
        ``(h, w, 1) float32``, masks ``(h, w, 1) uint8``.
    """
    from nvidia.dali import fn, types
    from nvidia.dali import math as dmath

    layouts = [None if jpeg else "HWC", "HWC", "HWC"] + (["", ""] if augment else [])
    outs = fn.external_source(source=source, num_outputs=len(layouts), batch=True, batch_info=True, layout=layouts)
    images, depth, masks = outs[:3]
    if jpeg:
        images = fn.decoders.image(images, device="mixed" if gpu else "cpu", output_type=types.RGB)
    elif gpu:
        images = images.gpu()  # uint8 at the store's size: the smallest form of the image to copy
    if gpu:
        depth, masks = depth.gpu(), masks.gpu()
    if resize is not None:
        # uint8 out, rounded: the same quantisation as the in-memory loader's resize
        images = fn.resize(images, size=list(resize), antialias=True, interp_type=types.INTERP_LINEAR)
    flip = 0
    if augment:
        flip, gain = outs[3], outs[4]
        images = dmath.clamp(images * (gain.gpu() if gpu else gain), 0.0, 255.0)
        depth = fn.flip(depth, horizontal=flip)
        masks = fn.flip(masks, horizontal=flip)
    x = fn.crop_mirror_normalize(
        images, mirror=flip, mean=[255.0 * m for m in mean], std=[255.0 * s for s in std],
        output_layout="HWC" if channels_last else "CHW", dtype=types.FLOAT16 if float16 else types.FLOAT)
    return x, depth, masks


def require_dali(option: str, instead: str) -> None:
    """Raise a one-line :class:`ConfigError` when NVIDIA DALI is not installed.

    Args:
        option: what needs it (``--loader dali``).
        instead: the option that works without it (``--loader torch``).
    """
    try:
        import nvidia.dali  # noqa: F401 - the loader's library: a missing one is the user's choice to fix
    except ImportError:
        raise ConfigError(f"{option} needs NVIDIA DALI (pip install nvidia-dali-cuda130); or use {instead}") from None


def _pipeline(**kwargs):
    """``loader_pipeline_graph`` as a ``@pipeline_def`` (DALI imported only when a loader is built)."""
    from nvidia.dali import pipeline_def

    return pipeline_def(loader_pipeline_graph)(**kwargs)


class DaliLoader:
    """The batches of one rank's :class:`EpochPlan` over a split, through DALI.

    Args:
        path: the store.
        index: ``(N,) int64`` sorted sample indices of the split (:func:`split_indices`).
        input_size: ``(H, W)`` of the network's input.
        output_size: ``(h, w)`` of its output (depth and masks).
        batch, seed, shard_id, num_shards, drop_last, shuffle: the :class:`EpochPlan`
            (``shuffle=False``: the split in order, for evaluation).
        augment: flip and colour gains from :func:`engine.learn.epochs.augmentation`.
        mean, std: per-channel normalisation, 0..1 units.
        dtype: of ``x``: ``float32``, ``float16`` (DALI writes it) or ``bfloat16``
            (DALI writes float32, torch casts).
        channels_last: ``x`` in NHWC memory viewed as ``(B, 3, H, W)`` (else contiguous NCHW).
        device: ``cpu`` or ``cuda`` / ``cuda:N`` (DALI on that GPU, tensors there).
        num_threads: DALI's CPU threads (default: every core, at most 8).
        prefetch_queue_depth: batches DALI prepares ahead.
        read_threads: threads decoding lossless chunks (default: every core, at most 8).
        split: the split's depth and masks already loaded at ``output_size``
            (a :class:`~engine.learn.data.SplitArrays` of this ``index``), to reuse.

    Each batch is ``(x, depth, masks)``: ``x (B, 3, H, W)`` normalised, ``depth
    (B, 1, h, w) float32`` metres, ``masks (B, 1, h, w) bool``, on ``device`` —
    the shapes and dtypes of :func:`engine.learn.data.make_batch`'s.

    Raises:
        StoreError: the store lacks an array the loader needs, or its images are
            not in fgbg's sharded layout; later, from a batch: a damaged shard.
        ConfigError: a batch larger than this rank's share of the split, an
            unknown dtype or device.
    """

    def __init__(self, path: str | Path, index: np.ndarray, input_size: tuple[int, int], output_size: tuple[int, int],
                 batch: int, seed: int, shard_id: int = 0, num_shards: int = 1, drop_last: bool = False,
                 augment: bool = True, mean: tuple[float, ...] = tuple(IMAGENET_MEAN.tolist()),
                 std: tuple[float, ...] = tuple(IMAGENET_STD.tolist()), dtype: str = "float32",
                 channels_last: bool = True, device: str = "cpu", num_threads: int | None = None,
                 prefetch_queue_depth: int = 2, read_threads: int | None = None, split: Any = None,
                 shuffle: bool = True) -> None:
        import torch

        from engine.learn.data import load_split

        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {device!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ConfigError(f"mean and std need 3 values each, std positive; got {mean} and {std}")
        self.index = np.asarray(index, dtype=np.int64)
        if len(self.index) == 0:
            raise ConfigError("the split is empty")
        try:
            self.plan = EpochPlan(len(self.index), batch, seed, shard_id, num_shards, drop_last, shuffle)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        share = len(self.plan.positions())
        if batch > share:
            where = f" on rank {shard_id} of {num_shards}" if num_shards > 1 else ""
            raise ConfigError(f"batch {batch} is larger than the split's {share} samples{where}")
        self.input_size, self.output_size = tuple(input_size), tuple(output_size)
        self.augment, self.dtype, self.channels_last = augment, dtype, channels_last
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        self.prefetch_queue_depth = prefetch_queue_depth
        self.reader, self.jpeg, self.store_size = _image_reader(Path(path))
        if split is None or not np.array_equal(split.index, self.index):  # depth/masks at the output size, once
            split = load_split(path, self.index, self.input_size, self.output_size, threads=read_threads,
                               with_images=False)
        self._depth = split.depth[..., None]  # (N, h, w, 1) float32: DALI's flip wants a channel axis
        self._masks = split.masks.view(np.uint8)[..., None]  # (N, h, w, 1) 0/1
        self._decode = ThreadPoolExecutor(read_threads or min(8, os.cpu_count() or 1), thread_name_prefix="fgbg-dali-read")
        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="fgbg-dali-ahead")
        self._next: tuple[tuple[int, int], Future] | None = None
        self._pipe: Any = None
        self._clean = False  # the pipeline sits at an epoch's start (fresh, or reset after one ran out)
        self._cursor = (0, 0)  # (epoch, first batch) the callback serves

    # -- public -----------------------------------------------------------------------------

    @property
    def batches_per_epoch(self) -> int:
        """Batches of one epoch on this rank."""
        return self.plan.batches_per_epoch()

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` from batch ``start`` on, each ``(x, depth, masks)``."""
        per = self.batches_per_epoch
        if not 0 <= start <= per:
            raise IndexError(f"batch {start} of an epoch of {per}")
        if start == per:
            return
        pipe = self._ready()
        self._cursor = (epoch, start)
        self._clean = False
        finished = False
        try:
            for _ in range(start, per):
                yield self._to_torch(pipe.run())
            try:  # the callback has signalled the end: DALI raises once its queue is empty
                pipe.run()
            except StopIteration:
                pipe.reset()
                finished = True
        finally:
            if finished:
                self._clean = True
            else:  # abandoned or failed mid-epoch: the queue holds stale batches, build afresh
                self._discard()

    def from_step(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches from global step ``step`` on, through the epochs without end (resume)."""
        epoch, start = self.plan.locate(step)
        while True:
            yield from self.epoch(epoch, start)
            epoch, start = epoch + 1, 0

    def close(self) -> None:
        """Free the pipeline and the reading threads."""
        self._discard()
        self._decode.shutdown(wait=False, cancel_futures=True)
        self._ahead.shutdown(wait=False, cancel_futures=True)

    # -- the pipeline -----------------------------------------------------------------------

    def _ready(self) -> Any:
        if self._pipe is None or not self._clean:
            self._discard()
            gpu = self.device.type == "cuda"
            self._pipe = _pipeline(
                source=self._source, jpeg=self.jpeg,
                resize=None if self.store_size == self.input_size else self.input_size, augment=self.augment,
                mean=self.mean, std=self.std, channels_last=self.channels_last, float16=self.dtype == "float16",
                gpu=gpu, batch_size=self.plan.batch, num_threads=self.num_threads,
                device_id=(self.device.index or 0) if gpu else None, prefetch_queue_depth=self.prefetch_queue_depth,
            )
            self._pipe.build()
            self._clean = True
        return self._pipe

    def _discard(self) -> None:
        if self._next is not None:
            self._next[1].cancel()
            self._next = None
        self._pipe, self._clean = None, False

    def _source(self, info: Any) -> tuple:
        """DALI's callback: the host batch of ``info.iteration`` batches after the cursor."""
        epoch, start = self._cursor
        i = start + info.iteration
        if i >= self.batches_per_epoch:
            raise StopIteration
        ahead, self._next = self._next, None
        batch = ahead[1].result() if ahead is not None and ahead[0] == (epoch, i) else self._read(epoch, i)
        if i + 1 < self.batches_per_epoch:  # overlap the next read with this batch's DALI work and training
            self._next = ((epoch, i + 1), self._ahead.submit(self._read, epoch, i + 1))
        return batch

    def _read(self, epoch: int, i: int) -> tuple:
        rows, positions = self.plan.rows(epoch, i)
        images = self.reader.read(self.index[rows], self._decode.map)
        if self.jpeg:
            images = [np.frombuffer(b, np.uint8) for b in images]
        out = (images, self._depth[rows], self._masks[rows])
        if not self.augment:
            return out
        flip, gain = augmentation(self.plan.seed, epoch, positions)
        return (*out, list(flip.astype(np.int32)), gain)

    def _to_torch(self, outputs: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        x, depth, masks = (_tensor(o, self.device) for o in outputs)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # NHWC memory viewed as (B, 3, H, W): torch's channels_last
        if self.dtype == "bfloat16":
            x = x.to(torch.bfloat16)  # keeps the memory format
        # (B, h, w, 1) and (B, 1, h, w) are the same memory
        b, h, w, _ = depth.shape
        return x, depth.view(b, 1, h, w), masks.view(torch.bool).view(b, 1, h, w)


def _tensor(tensor_list: Any, device: torch.device) -> torch.Tensor:
    """A dense DALI batch as a torch tensor of its own on ``device`` (a copy: DALI reuses its buffers)."""
    import torch

    if device.type == "cpu":
        return torch.from_numpy(np.array(tensor_list.as_array(), copy=True))
    from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

    dense = tensor_list.as_tensor()
    out = torch.empty(dense.shape(), dtype=to_torch_type[dense.dtype], device=device)
    feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(device))  # device to device, on torch's stream
    return out


def _image_reader(root: Path) -> tuple[Any, bool, tuple[int, int]]:
    """``(reader, jpeg, (H0, W0))``: random access to the store's images, the lossless
    ``images`` (:class:`ShardReader`) or the JPEG files (:class:`VlenShardReader`).

    Raises:
        StoreError: not a training store, no masks, or images not in fgbg's sharded layout.
    """
    import json

    from engine.learn.data import open_training_store
    from engine.store.shard_codec import ShardReader, VlenShardReader, shard_spec

    group, _ = open_training_store(root)
    if "masks" not in group:
        raise StoreError(f"{root}: no 'masks' array (was it made by fgbg generate?)")
    jpeg = "images" not in group
    name = "images_jpeg" if jpeg else "images"
    array = group[name]
    size = tuple(int(s) for s in group["depth"].shape[1:3])
    meta = json.loads((root / name / "zarr.json").read_text())
    key = (lambda k: root / name / array.metadata.encode_chunk_key((k,))) if jpeg else (
        lambda k: root / name / array.metadata.encode_chunk_key((k, 0, 0, 0)))
    if jpeg:
        codecs = meta.get("codecs", [])
        conf = codecs[0].get("configuration", {}) if codecs else {}
        inner = [c["name"] for c in conf.get("codecs", [])]
        vlen = inner in (["vlen-bytes"], ["vlen-bytes", "crc32c"])  # crc32c: chunk checksums (newer stores)
        if codecs[:1] and codecs[0]["name"] == "sharding_indexed" and vlen \
                and conf.get("index_location", "end") == "end":
            shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
            return VlenShardReader(key, shard, int(conf["chunk_shape"][0]), array.shape[0], name, root,
                                   checksum=inner[-1] == "crc32c"), True, size
    else:
        spec = shard_spec(meta)
        if spec is not None:
            return ShardReader(key, spec, tuple(array.shape[1:]), array.dtype, array.shape[0], name, root), False, size
    raise StoreError(f"{root}: its {name} array is not in fgbg's sharded layout (the DALI loader reads only that)")

"""Training data from a store: held-out splits by background, resized arrays, batches.

The validation split holds out whole backgrounds, chosen reproducibly from
the store's ``meta/bg_index`` (a seeded permutation of the backgrounds), so
the network is judged on scenes it never saw. A split's samples are read
chunk-aligned from the store once, resized to the network's input (images)
and output (depth, masks), and kept in memory; batches are drawn from them
by a sampler that is a pure function of ``(seed, step)``, so a resumed run
sees exactly the batches an uninterrupted one would.

Stores larger than memory can stream their images instead
(:class:`StoreImages`): each batch's images are read from the store when it
is drawn (the next batch's while this one trains), and depth and masks, small
at the output size, stay in memory. The batches are the same bits either way.
"""

from __future__ import annotations

import io
import logging
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import StoreError

log = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SPLITS = ("train", "val", "all")


@dataclass(frozen=True)
class SplitArrays:
    """One split, resized and in memory.

    Attributes:
        index: ``(N,) int64`` sample indices in the store.
        images: ``(N, H, W, 3) uint8`` at the network's input size, in memory
            or read on demand (:class:`StoreImages`, indexed the same way), or
            ``None`` when the caller reads them itself (``load_split(with_images=False)``).
        depth: ``(N, h, w) float32`` metres at its output size (0 = unknown).
        masks: ``(N, h, w) bool`` foreground at the output size.
        bg_index: ``(N,) int64`` background of each sample.
    """

    index: np.ndarray
    images: np.ndarray | StoreImages | None
    depth: np.ndarray
    masks: np.ndarray
    bg_index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def prefetch(self, rows: np.ndarray) -> None:
        """Start reading the images of ``rows`` (streamed images only; else nothing to do)."""
        if isinstance(self.images, StoreImages):
            self.images.prefetch(rows)


class StoreImages:
    """A split's images read from the store on demand, resized to the input size.

    Stands in for the in-memory ``(N, H, W, 3) uint8`` array: ``images[rows]``
    reads just those samples (decoding only their chunks, on ``threads``
    threads) and resizes them exactly as :func:`load_split` would.
    :meth:`prefetch` starts that for the next batch in the background.

    Raises:
        StoreError: a JPEG store, or an images array not in fgbg's sharded layout.
    """

    def __init__(self, path: str | Path, index: np.ndarray, input_size: tuple[int, int], threads: int | None = None) -> None:
        import json
        import os

        from engine.store.shard_codec import ShardReader, shard_spec

        group, _ = open_training_store(path)
        root = Path(path)
        if "images" not in group:
            raise StoreError(f"{root}: streaming reads lossless images; this store has JPEGs (train without --stream)")
        array = group["images"]
        spec = shard_spec(json.loads((root / "images" / "zarr.json").read_text()))
        if spec is None:
            raise StoreError(f"{root}: its images array is not in fgbg's sharded layout (train without --stream)")
        self.reader = ShardReader(
            lambda k: root / "images" / array.metadata.encode_chunk_key((k, 0, 0, 0)),
            spec, tuple(array.shape[1:]), array.dtype, array.shape[0], name="images", store=root,
        )
        self.index = index
        self.input_size = tuple(input_size)
        self.shape = (len(index), *self.input_size, 3)
        self._decode = ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="fgbg-stream")
        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="fgbg-prefetch")
        self._pending: dict[bytes, Future[np.ndarray]] = {}
        for pool in (self._ahead, self._decode):  # threads end with the object, not at exit
            weakref.finalize(self, pool.shutdown, wait=False)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: Any) -> np.ndarray:
        if np.ndim(rows) == 0:
            return self[np.array([rows])][0]
        rows = np.asarray(rows, dtype=np.int64)
        pending = self._pending.pop(rows.tobytes(), None)
        return pending.result() if pending is not None else self._read(rows)

    def prefetch(self, rows: np.ndarray) -> None:
        """Read ``rows`` in the background; the next ``self[rows]`` picks them up.
        Only the latest prefetch is kept: call it after taking the current batch."""
        rows = np.asarray(rows, dtype=np.int64)
        self._pending = {rows.tobytes(): self._ahead.submit(self._read, rows)}  # only the latest is kept

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return resize_images(self.reader.read(self.index[rows], self._decode.map), self.input_size)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(k, H0, W0, 3) uint8`` → ``(k, H, W, 3) uint8``: antialiased bilinear,
    rounded (the input as is when it already has that size)."""
    import torch
    import torch.nn.functional as F

    if images.shape[1:3] == tuple(size):
        return images
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # (k, 3, H0, W0)
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def validation_backgrounds(n_backgrounds: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted backgrounds held out for validation when the samples hold every one of
    ``n_backgrounds`` (:func:`engine.splits.held_out_backgrounds`)."""
    from engine.splits import held_out_backgrounds

    if n_backgrounds < 2:
        raise StoreError("the store has one background: a split by background needs at least two")
    return held_out_backgrounds(n_backgrounds, fraction, seed)


def open_training_store(path: str | Path):
    """Open a store for training/evaluation, checking what the model needs.

    Returns:
        ``(group, attrs)``.

    Raises:
        StoreError: not an fgbg store, no depth, or arrays of mismatched shapes.
    """
    import zarr

    from engine.store.zarr_store import read_attrs

    root = Path(path)
    attrs = read_attrs(root)
    group = zarr.open_group(root, mode="r")
    image_name = "images" if "images" in group else "images_jpeg" if "images_jpeg" in group else None
    if image_name is None:
        raise StoreError(f"{root}: no 'images' array")
    if "depth" not in group:
        raise StoreError(f"{root}: no 'depth' array (was it made by fgbg generate?)")
    n = group[image_name].shape[0]
    depth = group["depth"]
    if depth.shape[0] != n or (image_name == "images" and tuple(depth.shape[1:]) != tuple(group["images"].shape[1:3])):
        raise StoreError(f"{root}: depth {tuple(depth.shape)} does not match images {tuple(group[image_name].shape)}")
    if "meta/bg_index" not in group or group["meta/bg_index"].shape[0] != n:
        raise StoreError(f"{root}: meta/bg_index missing or of the wrong length")
    return group, attrs


def check_complete(path: str | Path, allow_incomplete: bool) -> str | None:
    """``None`` for a store whose every shard is done; else, with ``allow_incomplete``,
    a line saying how much of its plan is there.

    Raises:
        StoreError: an incomplete store without ``allow_incomplete``.
    """
    from engine.store.zarr_store import read_attrs

    attrs = read_attrs(Path(path))
    lay = attrs["layout"]
    done = attrs["progress"]["shards_done"]
    if len(done) >= lay["n_shards"]:
        return None
    samples = sum(min((k + 1) * lay["shard_size"], lay["n_samples"]) - k * lay["shard_size"] for k in done)
    part = (f"{samples:,} of the plan's {lay['n_samples']:,} samples "
            f"({len(done)} of {lay['n_shards']} shards, {100 * samples / lay['n_samples']:.0f}%)")
    if not allow_incomplete:
        raise StoreError(f"{path}: the store is incomplete, {part}; finish it with generate --resume, "
                         "or pass --allow-incomplete to use what is there")
    return f"{path}: incomplete store: using {part}"


def split_indices(path: str | Path, split: str, val_fraction: float, seed: int,
                  val_backgrounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices of ``split`` (``train``, ``val`` or ``all``) among completed shards.

    The held-out backgrounds are drawn among those the completed samples hold
    (:func:`engine.splits.held_out_among`), unless ``val_backgrounds`` gives them
    (a checkpoint's record: evaluate and ``train --resume`` keep the split trained with).

    Returns:
        ``(indices, validation backgrounds)``.

    Raises:
        StoreError: unknown or empty split (saying what to change).
    """
    from engine.store.reader import split_indices as store_split
    from engine.store.verify import StoreShards

    if split not in SPLITS:
        raise StoreError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    group, attrs = open_training_store(path)
    bg = StoreShards(path, attrs).read_array("meta/bg_index")  # damage is an error, never zeros
    try:  # the one rule, shared with engine.store.reader.Store.split
        return store_split(attrs, bg, split, val_fraction, seed, val_backgrounds)
    except StoreError as e:
        raise StoreError(f"{path}: {e}") from None


def load_split(path: str | Path, index: np.ndarray, input_size: tuple[int, int], output_size: tuple[int, int],
               block: int = 2048, threads: int | None = None, stream_images: bool = False,
               with_images: bool = True) -> SplitArrays:
    """Read samples ``index`` (sorted) and resize them for the network.

    Images: antialiased bilinear to ``input_size``. Depth and masks: nearest
    (pixel-centre) to ``output_size`` — averaging depth across an object's
    edge would invent surfaces. Reads contiguous runs in blocks, never one
    sample at a time, on ``threads`` threads (default: every core; decoding
    and resizing release the GIL), each filling its own rows of the result.
    With ``stream_images`` the images stay in the store (:class:`StoreImages`);
    with ``with_images=False`` they are not touched at all (``images`` is ``None``:
    a loader that reads them itself, lossless or JPEG, e.g. the DALI loader).
    """
    import os

    from engine.store.verify import StoreShards

    group, attrs = open_training_store(path)
    shards = StoreShards(path, attrs)  # a done shard's missing or damaged file is an error, not zeros
    n = len(index)
    H, W = input_size
    h, w = output_size
    images: np.ndarray | StoreImages | None = (
        None if not with_images else StoreImages(path, index, input_size, threads) if stream_images
        else np.empty((n, H, W, 3), np.uint8))
    depth = np.empty((n, h, w), np.float32)
    masks = np.empty((n, h, w), bool)
    jpeg = "images" not in group
    H0, W0 = group["depth"].shape[1:]
    rows, cols = nearest_exact(H0, h), nearest_exact(W0, w)  # depth/mask pixels kept: torch's choice
    runs = _runs(index, block)
    firsts = np.searchsorted(index, [start for start, _ in runs])  # row of each run's first sample

    def load(run: int) -> None:
        start, stop = runs[run]
        out = int(firsts[run])
        sel = index[out : np.searchsorted(index, stop)] - start
        k = len(sel)
        touched = range(start // shards.shard_size, (stop - 1) // shards.shard_size + 1)

        def read(name: str) -> np.ndarray:
            return shards.guard(name, touched, lambda: group[name][start:stop])

        # depth and masks: pick pixels at full resolution, convert only the small result
        depth[out : out + k] = read("depth")[np.ix_(sel, rows, cols)]
        masks[out : out + k] = read("masks")[np.ix_(sel, rows, cols)] > 0
        if stream_images or not with_images:
            return
        if jpeg:
            from PIL import Image

            def decode() -> np.ndarray:
                raw = group["images_jpeg"][start:stop]
                return np.stack([np.asarray(Image.open(io.BytesIO(raw[i])).convert("RGB")) for i in sel])

            imgs = shards.guard("images_jpeg", touched, decode)
        else:
            imgs = read("images")[sel]
        images[out : out + k] = resize_images(imgs, (H, W))  # type: ignore[index]

    from engine.torch_threads import single_threaded_torch

    # one torch thread per worker: these small resizes run slower, not faster, with intra-op threads
    with single_threaded_torch(), ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="fgbg-load") as pool:
        list(pool.map(load, range(len(runs))))  # list(): re-raises a worker's error here
    bg = shards.read_array("meta/bg_index")[index].astype(np.int64)
    return SplitArrays(index=index, images=images, depth=depth, masks=masks, bg_index=bg)


def nearest_exact(size: int, out: int) -> np.ndarray:
    """``(out,) int64`` source indices that torch's ``nearest-exact`` picks when
    resizing ``size`` samples to ``out`` (asked of torch itself, so they agree)."""
    import torch
    import torch.nn.functional as F

    ramp = torch.arange(size, dtype=torch.float32)[None, None]  # (1, 1, size): exact integers; float32 as
    # for the depth maps, since torch computes the scale in the input's precision
    return F.interpolate(ramp, size=out, mode="nearest-exact")[0, 0].long().numpy()


def _runs(index: np.ndarray, block: int, gap: int = 64) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``index`` (sorted): a new range starts
    after a jump of more than ``gap`` samples or ``block`` samples into a range,
    so reads skip what is not needed without going one chunk at a time."""
    if len(index) == 0:
        return []
    cuts = np.flatnonzero(np.diff(index) > gap) + 1
    bounds = np.concatenate([[0], cuts, [len(index)]])
    runs: list[tuple[int, int]] = []
    for a, b in zip(bounds[:-1], bounds[1:]):  # one iteration per contiguous segment
        first, last = int(index[a]), int(index[b - 1]) + 1
        runs.extend((s, min(s + block, last)) for s in range(first, last, block))
    return runs


class BatchSampler:
    """Which samples form batch ``step``: epochs of seeded permutations, a pure
    function of ``(seed, step)`` (resume sees the same batches)."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed
        self._perm: dict[int, np.ndarray] = {}

    def __call__(self, step: int) -> np.ndarray:
        positions = step * self.batch + np.arange(self.batch)
        epochs, offsets = positions // self.n, positions % self.n
        return np.array([self._permutation(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perm[epoch]


def normalization(checkpoint_or_config: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)``, each ``(3,) float32`` in 0..1 units, that a model's inputs
    are normalised with: the ones recorded in a checkpoint (``normalization``),
    else ImageNet's (checkpoints made before stores had statistics)."""
    norm = (checkpoint_or_config or {}).get("normalization")
    if not norm:
        return IMAGENET_MEAN, IMAGENET_STD
    return np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)


def make_batch(data: SplitArrays, rows: np.ndarray, augment_seed: int | None, device: str = "cpu",
               mean: np.ndarray = IMAGENET_MEAN, std: np.ndarray = IMAGENET_STD):
    """Tensors on ``device`` for rows of ``data``: ``x (B, 3, H, W) float32``
    normalised (channels-last in memory), ``depth (B, 1, h, w) float32``,
    ``masks (B, 1, h, w) bool``.

    Only the ``uint8`` images cross to the device (a quarter of the float
    bytes); flips, jitter and normalisation run there, so a GPU is not kept
    waiting on the host's float arithmetic.

    ``mean``/``std``: ``(3,)`` per channel in 0..1 units (ImageNet's by default;
    training uses the store's own, :func:`normalization`).

    With ``augment_seed``: a random horizontal flip of image, depth and mask
    together, and colour jitter of the image only (brightness and per-channel
    gain in [0.8, 1.2]). The draws come from ``augment_seed`` alone, so a
    batch is the same on every device and after a resume.
    """
    import torch

    cuda = torch.device(device).type == "cuda"

    def upload(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.pin_memory().to(device, non_blocking=True) if cuda else t

    images = upload(data.images[rows])  # (B, H, W, 3) uint8
    depth = upload(data.depth[rows])  # (B, h, w)
    masks = upload(data.masks[rows])
    x = images.float() / 255.0
    if augment_seed is not None:
        rng = np.random.default_rng([augment_seed, 0xA06])
        flip = rng.random(len(rows)) < 0.5
        gain = rng.uniform(0.8, 1.2, (len(rows), 1, 1, 1)) * rng.uniform(0.8, 1.2, (len(rows), 1, 1, 3))
        f = torch.from_numpy(flip).to(x.device)
        x = torch.where(f[:, None, None, None], x.flip(2), x)
        depth = torch.where(f[:, None, None], depth.flip(2), depth)
        masks = torch.where(f[:, None, None], masks.flip(2), masks)
        x = (x * torch.from_numpy(gain.astype(np.float32)).to(x.device)).clamp_(0.0, 1.0)
    mean_t = torch.from_numpy(np.asarray(mean, np.float32)).to(x.device)
    std_t = torch.from_numpy(np.asarray(std, np.float32)).to(x.device)
    x = ((x - mean_t) / std_t).permute(0, 3, 1, 2)  # a (B, 3, H, W) view of NHWC memory: channels-last
    return x, depth[:, None].contiguous(), masks[:, None].contiguous()

"""Turn a range of the plan into composites, masks and depth, in one batch.

The foreground for a sample is its canonical asset resized to the sample's
``(h, w)``. Those resizes are few (at most one per foreground per output
height) next to the samples that use them, so :class:`ForegroundAtlas`
computes each once and keeps it in a flat RGBA buffer the kernel reads by
offset; flips are done by the kernel reading columns backwards.

With a blending mode other than ``alpha`` (or ``--harmonize``), one post-pass
(:mod:`kernels.blend`, torch) rewrites the batch's images after the kernel;
masks and depth stay the kernel's. With several objects per image it blends
them layer by layer, far to near. With ``alpha`` it is skipped entirely.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from engine.assets.images import AssetSet
from engine.compose.depth import DepthSource
from engine.compose.plan import ObjectPlacements, Placements
from engine.config import GenerateConfig
from engine.errors import ConfigError
from engine.torch_threads import single_threaded_torch
from kernels import placement as P

#: stage name of the host-side work per batch (placement table, atlas, plane depth)
HOST_TABLES = "placement table + atlas (host)"
#: stage name of the blending post-pass
BLEND_PASS = "blend post-pass"
#: stage name of counting the store's statistics where the objects changed the background
COUNT_CHANGED = "statistics: pixels the objects changed"


def blend_spec(config: GenerateConfig) -> object | None:
    """The :class:`kernels.blend.BlendSpec` of ``config``, or ``None`` for plain
    ``alpha`` without harmonizing (the post-pass is skipped; torch is not imported)."""
    if config.blend == "alpha" and not config.harmonize:
        return None
    from kernels.blend import BlendSpec

    try:
        import kornia.filters  # noqa: F401 - checked here so a missing Kornia fails before any work
    except ImportError as e:
        what = f"--blend {config.blend}" if config.blend != "alpha" else "--harmonize"
        raise ConfigError(f"{what} needs Kornia ({e}): pip install kornia; on a GPU machine without network, "
                          "make gpu-wheels and benchmarks/gpu_setup.sh install it") from None

    return BlendSpec(
        mode=config.blend, harmonize=config.harmonize, feather_sigma=config.feather_sigma,
        motion_length=config.motion_length, motion_angle=config.motion_angle,
        poisson_iterations=config.poisson_iterations, poisson_tolerance=config.poisson_tolerance,
        harmonize_ring=config.harmonize_ring,
    )


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Batch:
    """One batch of finished samples, in host memory.

    Attributes:
        images: ``(B, H, W, 3) uint8`` composites, or ``None`` when they stayed
            on the GPU to be JPEG-encoded there (see ``encode_jpeg``).
        masks: ``(B, H, W) uint8`` 0/255 foreground masks.
        depth: ``(B, H, W) float16`` metres.
        alpha: ``(B, H, W) uint8`` soft alpha, or ``None`` when not saved.
        instances: ``(B, H, W) uint16`` instance ids (0 = background), or
            ``None`` (one object per image).
        objects: several objects per image: ``offset (B + 1,) int64`` (sample
            ``b``'s objects are ``offset[b]:offset[b + 1]``, in plan order) and
            ``depth (M,) float32`` each object's plane depth; else ``None``.
        ready: blocks until the arrays hold the results (GPU batches are still
            being copied back when they are returned).
        release: hands the arrays back for reuse; call once after the last read.
        encode_jpeg: ``quality → (B,) object`` JPEG bytes encoded where the
            images are (nvJPEG on the GPU), or ``None``: encode ``images`` on
            the host. Call after ``ready()`` and before ``release()``.
        compressed: per array name (``images``, ``masks``, ``depth``,
            ``alpha``), a function returning that array's chunks already
            compressed where the data is (nvCOMP on the GPU), as Zstandard
            frames in order; such arrays are ``None`` above (they never came
            back raw). Call after ``ready()`` and before ``release()``.
        count: samples in the batch, when no host array says it.
        histogram: ``(3, 256) int64`` per-channel counts of the images,
            counted where they are (the GPU), for the store's statistics; or
            ``None``: count ``images`` on the host. Read after ``ready()``
            and before ``release()``.
    """

    images: np.ndarray | None
    masks: np.ndarray | None
    depth: np.ndarray | None
    alpha: np.ndarray | None
    ready: Callable[[], None] = _nothing
    release: Callable[[], None] = _nothing
    encode_jpeg: Callable[[int], np.ndarray] | None = None
    compressed: dict[str, Callable[[], list[bytes]]] = dataclasses.field(default_factory=dict)
    count: int | None = None
    instances: np.ndarray | None = None
    objects: dict[str, np.ndarray] | None = None
    histogram: np.ndarray | None = None

    def __len__(self) -> int:
        if self.count is not None:
            return self.count
        return len(self.masks)  # type: ignore[arg-type]


class StageClock:
    """Seconds spent in each named stage, summed over threads (thread-safe).

    ``with clock("stage"): ...`` adds the block's wall time to ``seconds["stage"]``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[stage] += time.perf_counter() - t0


def _codes(fg: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(B,) int64`` one sortable code per ``(fg, h, w)``: ``fg << 32 | h << 16 | w``
    (so codes sort as the triples do)."""
    fg, h, w = (np.asarray(v, dtype=np.int64) for v in (fg, h, w))
    if fg.size and (fg.min() < 0 or min(h.min(), w.min()) < 1 or max(h.max(), w.max()) > 0xFFFF):
        raise ValueError("atlas keys need foreground >= 0 and sizes in 1..65535")
    return (fg << 32) | (h << 16) | w


def _sizes(codes: np.ndarray) -> np.ndarray:
    """``(K,) int64`` pixels ``h * w`` of each key code."""
    return ((codes >> 16) & 0xFFFF) * (codes & 0xFFFF)


class ForegroundAtlas:
    """Resized foregrounds, each computed once, packed in one ``uint8`` buffer.

    Args:
        foregrounds: canonical ``(h_i, w_i, 4) uint8`` RGBA foregrounds.
        max_bytes: when the buffer would grow past this, it is emptied and
            refilled with just the current batch's entries (memory stays
            bounded whatever the number of foregrounds and sizes).
    """

    def __init__(self, foregrounds: list[np.ndarray], max_bytes: int = 1 << 30) -> None:
        self.foregrounds = foregrounds
        self.max_bytes = max_bytes
        self.buffer = np.empty(1 << 20, np.uint8)
        self.used = 0
        self.offsets: dict[tuple[int, int, int], int] = {}
        # The same entries as sorted key codes (see _codes) and their offsets:
        # a batch's lookups are then array searches, no Python per sample or key
        # (the per-key loop held the GIL ~14 ms a 2,048-sample shard, measured).
        self._codes = np.empty(0, np.int64)
        self._code_offsets = np.empty(0, np.int64)
        self.generation = 0  #: bumped whenever entries move (a device copy must be redone)

    def lookup(self, fg: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Offsets of ``(fg, h, w)`` entries in :attr:`buffer`, adding missing ones.

        Args:
            fg, h, w: ``(B,) int64`` foreground index and target size per sample
                (sizes below 65,536).

        Returns:
            ``(B,) int64`` byte offsets into ``self.buffer``.
        """
        codes = _codes(fg, h, w)
        keys, inverse = np.unique(codes, return_inverse=True)  # sorted = (fg, h, w) order
        missing = keys[~self._known(keys)]
        need = int(_sizes(missing).sum()) * 4
        if self.used + need > self.max_bytes and self.offsets:
            # A fresh buffer, never the old one overwritten: a batch prepared
            # earlier may still be reading (or uploading) the old entries.
            self.buffer = np.empty_like(self.buffer)
            self.offsets.clear()
            self._codes, self._code_offsets = self._codes[:0], self._code_offsets[:0]
            self.used = 0
            self.generation += 1
            missing = keys
            need = int(_sizes(missing).sum()) * 4
        if len(missing):
            self._reserve(self.used + need)
            added = self._add([(int(c >> 32), int((c >> 16) & 0xFFFF), int(c & 0xFFFF)) for c in missing])
            merged = np.concatenate([self._codes, missing])
            order = np.argsort(merged, kind="stable")
            self._codes = merged[order]
            self._code_offsets = np.concatenate([self._code_offsets, added])[order]
        table = self._code_offsets[np.searchsorted(self._codes, keys)]
        return table[inverse.reshape(-1)]

    def _known(self, keys: np.ndarray) -> np.ndarray:
        """``(K,) bool``: which sorted key codes already have an entry."""
        pos = np.minimum(np.searchsorted(self._codes, keys), max(len(self._codes) - 1, 0))
        return self._codes[pos] == keys if len(self._codes) else np.zeros(len(keys), bool)

    def view(self) -> np.ndarray:
        """``(used,) uint8`` the filled part of the buffer."""
        return self.buffer[: self.used]

    def _reserve(self, size: int) -> None:
        if size > len(self.buffer):
            grown = np.empty(max(size, 2 * len(self.buffer)), np.uint8)
            grown[: self.used] = self.buffer[: self.used]
            self.buffer = grown
            self.generation += 1

    def _add(self, keys: list[tuple[int, int, int]]) -> np.ndarray:
        """Resize and append ``keys`` (sorted); returns their ``(K,) int64`` offsets, in order."""
        by_fg: dict[int, list[tuple[int, int]]] = {}
        for fg, h, w in keys:
            by_fg.setdefault(fg, []).append((h, w))
        jobs = sorted(by_fg.items())
        # One foreground per task, single-threaded torch inside: for images this
        # small, torch's own threading makes antialiased interpolate ~10x slower
        # (measured on 2 cores), while separate resizes scale with the cores.
        with single_threaded_torch(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            results = list(pool.map(lambda job: self._resize_all(*job), jobs))
        for (fg, sizes), resized in zip(jobs, results):
            for (h, w), image in zip(sizes, resized):
                n = h * w * 4
                self.buffer[self.used : self.used + n] = image.reshape(-1)
                self.offsets[(fg, h, w)] = self.used
                self.used += n
        return np.array([self.offsets[k] for k in keys], dtype=np.int64)

    def _resize_all(self, fg: int, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Foreground ``fg`` at each of ``sizes`` (premultiplied once)."""
        from kernels.resample import premultiply, resize_premultiplied  # torch: only when compositing

        canonical = self.foregrounds[fg]
        pm = None
        out = []
        for h, w in sizes:
            if canonical.shape[:2] == (h, w):
                out.append(canonical)
                continue
            pm = premultiply(canonical) if pm is None else pm
            out.append(resize_premultiplied(pm, h, w))
        return out

    @property
    def resizes(self) -> int:
        """Entries held that needed a resize (for tests and benchmarks)."""
        return sum(1 for fg, h, w in self.offsets if self.foregrounds[fg].shape[:2] != (h, w))


@dataclass(frozen=True)
class Prepared:
    """A batch's host-side work, done ahead of its kernel (see :meth:`Compositor.prepare`).

    Attributes:
        placements: the batch's placements (each sample's object 0 when it has several).
        table: ``(B, 8) int64`` kernel placement table, or with several
            objects ``(M, 9) int64`` one row per object, each sample's rows
            ordered far to near (:func:`object_table`).
        atlas: the atlas bytes the table's offsets point into: ``(used,) uint8``
            on the host, or the device array they were uploaded to.
        objects: several objects per image: the objects, else ``None``.
        object_depth: ``(M,) float32`` each object's plane depth, in plan order.
    """

    placements: Placements
    table: np.ndarray
    atlas: object
    objects: ObjectPlacements | None = None
    object_depth: np.ndarray | None = None

    def objects_offset(self) -> np.ndarray | None:
        """Several objects: ``(B + 1,) int64`` each sample's rows of :attr:`table`; else ``None``."""
        return None if self.objects is None else self.objects.offset

    def batch_objects(self) -> dict[str, np.ndarray] | None:
        """The ``objects`` entry of this batch's :class:`Batch`."""
        if self.objects is None:
            return None
        return {"offset": self.objects.offset, "depth": self.object_depth}


def object_table(objects: ObjectPlacements, table: np.ndarray) -> np.ndarray:
    """``(M, 9) int64`` the several-objects kernel table: ``table``'s rows (plan
    order) with the instance id column, each sample's rows reordered far to
    near by plane depth (ties: lower instance id first, so it is drawn below)."""
    ids = objects.instance_id
    # float16 bits of positive depths sort as the depths do
    order = np.lexsort((ids, -table[:, P.DEPTH], objects.sample_of))
    return np.ascontiguousarray(np.concatenate([table, ids[:, None]], axis=1)[order])


def small_pages(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An uninitialised array in anonymous memory of ordinary pages.

    NumPy asks for transparent huge pages on large arrays; where memory is
    fragmented (after other work filled the page cache) each huge page then
    costs the kernel a compaction on first touch: measured on 2 cores right
    after the naive loop, ``generate`` took 11.6-11.8 s with them and 10.6-10.7 s
    without (system time 3.1 vs 1.2 s). The arrays are reused, so their pages are
    touched once.
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype, count=int(np.prod(shape))).reshape(shape)


class OutputBuffers:
    """Reused output arrays for the CPU compositor's batches.

    A shard's outputs are a lot of memory (616 MB for 2,048 samples at
    224x224); freshly mapped pages cost the OS a zeroing pass every batch (~15%
    of ``generate``'s CPU on 2 cores, measured with perf: ``clear_page``), so a
    batch's arrays go back here on
    :meth:`Batch.release` and the next batch of no more samples writes into them.
    At most ``keep`` sets are kept (those in flight are the caller's); thread-safe,
    since writer threads release what the main thread takes.
    """

    def __init__(self, height: int, width: int, alpha: bool, keep: int = 4) -> None:
        self.height, self.width, self.alpha, self.keep = height, width, alpha, keep
        self._free: list[dict[str, np.ndarray]] = []
        self._lock = threading.Lock()

    def take(self, n: int, instances: bool) -> tuple[dict[str, np.ndarray], Callable[[], None]]:
        """Arrays for ``n`` samples (``images (n, H, W, 3) uint8``, ``masks (n, H, W)
        uint8``, ``depth (n, H, W) uint16``, ``alpha`` and ``instances`` when asked
        (else ``None``); contents undefined) and the function that gives them back."""
        with self._lock:
            found = next((i for i, f in enumerate(self._free)
                          if len(f["masks"]) >= n and (f["instances"] is not None) == instances), None)
            whole = self._free.pop(found) if found is not None else None
        if whole is None:
            h, w = self.height, self.width
            whole = {
                "images": small_pages((n, h, w, 3), np.uint8), "masks": small_pages((n, h, w), np.uint8),
                "depth": small_pages((n, h, w), np.uint16),
                "alpha": small_pages((n, h, w), np.uint8) if self.alpha else None,
                "instances": small_pages((n, h, w), np.uint16) if instances else None,
            }
        given = threading.Event()  # a second release must not hand the arrays out twice

        def give_back() -> None:
            if given.is_set():
                return
            given.set()
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(whole)

        return {k: None if a is None else a[:n] for k, a in whole.items()}, give_back

    def clear(self) -> None:
        """Drop the kept arrays (their memory goes back to the system)."""
        with self._lock:
            self._free.clear()


class Compositor:
    """Composites batches of placements on the CPU.

    A returned :class:`Batch`'s arrays are reused for a later batch once its
    ``release()`` is called (as the batch's contract says): read or copy them first.

    Args:
        assets: backgrounds and canonical foregrounds.
        depth: the depth source (background depth and foreground plane depth).
        config: mask threshold and whether soft alpha is kept.
        count_images: give each batch its images' per-channel histogram
            (``Batch.histogram``, a store's statistics), counted from the
            backgrounds' histograms and the pixels the objects changed; only
            without a blending post-pass (which changes pixels around the
            objects): then the caller counts the images.
    """

    def __init__(self, assets: AssetSet, depth: DepthSource, config: GenerateConfig, count_images: bool = False) -> None:
        self.bg_images = np.ascontiguousarray(assets.bg_images)
        self.bg_depth16 = depth.background_depth().astype(np.float16).view(np.uint16)
        self.depth = depth
        self.atlas = ForegroundAtlas(assets.fg_images)
        self.threshold = config.mask_threshold
        self.save_alpha = config.save_alpha
        self.occlusion = config.occlusion == "background"
        self.blend = blend_spec(config)  #: ``None``: no post-pass (``--blend alpha``)
        self.clock = StageClock()  #: where the compositing time goes (read by generate's report)
        _, height, width, _ = self.bg_images.shape
        self.buffers = OutputBuffers(height, width, alpha=config.save_alpha)
        self.bg_counts: np.ndarray | None = None  #: ``(NB, 3, 256) int64`` each background's histogram
        if count_images and self.blend is None:
            from kernels.histogram import image_histograms

            self.bg_counts = image_histograms(self.bg_images)

    def table(self, p: Placements) -> np.ndarray:
        """``(B, 8) int64`` kernel placement table for ``p`` (fills the atlas)."""
        t = np.empty((len(p), P.N_COLUMNS), np.int64)
        t[:, P.BG] = p.bg
        t[:, P.OFFSET] = self.atlas.lookup(p.fg, p.h, p.w)
        t[:, P.X] = p.x
        t[:, P.Y] = p.y
        t[:, P.H] = p.h
        t[:, P.W] = p.w
        t[:, P.FLIP] = p.flip
        plane = self.depth.plane_depth(p, t, self.atlas.view(), self.threshold)
        t[:, P.DEPTH] = plane.astype(np.float16).view(np.uint16)
        return t

    def prepare(self, p: Placements | ObjectPlacements) -> Prepared:
        """The host-side work of a batch: placement table, atlas entries (resized
        foregrounds) and plane depth. Safe to run for batch k+1 in another thread
        while batch k composites, as long as one thread prepares (in plan order)."""
        with self.clock(HOST_TABLES):
            return self._prepare(p, self.atlas.view)

    def _prepare(self, p: Placements | ObjectPlacements, atlas: Callable[[], object]) -> Prepared:
        if isinstance(p, ObjectPlacements):
            table = self.table(p.objects)
            depth = table[:, P.DEPTH].astype(np.uint16).view(np.float16).astype(np.float32)
            return Prepared(p.samples, object_table(p, table), atlas(), p, depth)
        return Prepared(p, self.table(p), atlas())

    def composite(self, p: Placements | ObjectPlacements | Prepared) -> Batch:
        """Composite every sample of ``p`` (placements, objects, or a batch already
        :meth:`prepare`-d): returns a :class:`Batch` of ``len(p)``."""
        from kernels.composite import composite_batch, composite_objects_batch  # numba: only when compositing

        prepared = p if isinstance(p, Prepared) else self.prepare(p)
        p, table = prepared.placements, prepared.table
        n = len(p)
        out, release = self.buffers.take(n, instances=prepared.objects is not None)
        images, masks, depth, alpha, instances = (out[k] for k in ("images", "masks", "depth", "alpha", "instances"))
        with self.clock("composite kernel (CPU)"):
            if prepared.objects is None:
                composite_batch(
                    self.bg_images, self.bg_depth16, prepared.atlas, table, self.threshold,
                    images, masks, depth, alpha, occlusion=self.occlusion,
                )
            else:
                composite_objects_batch(
                    self.bg_images, self.bg_depth16, prepared.atlas, table, prepared.objects.offset,
                    self.threshold, images, masks, depth, instances, alpha, occlusion=self.occlusion,
                )
        if self.blend is not None:
            with self.clock(BLEND_PASS):
                self.blend_host(images, table, prepared.atlas, prepared.objects_offset())
        histogram = None
        if self.bg_counts is not None:
            with self.clock(COUNT_CHANGED):
                histogram = self.count(images, table, prepared.objects_offset())
        batch = Batch(images, masks, depth.view(np.float16), alpha, instances=instances,
                      objects=prepared.batch_objects(), release=release, histogram=histogram)
        self.replace_depth(batch, p)
        return batch

    def count(self, images: np.ndarray, table: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
        """``(3, 256) int64`` histogram of the kernel's ``(B, H, W, 3) uint8`` composites
        of ``table`` (``(B, 8)``, or ``(M, 9)`` with ``offset``: several objects)."""
        from kernels.histogram import changed_rectangles, composite_histogram

        _, height, width, _ = images.shape
        rects = changed_rectangles(table, height, width, offset)
        bg_index = np.ascontiguousarray(table[:, P.BG] if offset is None else table[offset[:-1], P.BG])
        assert self.bg_counts is not None
        return composite_histogram(self.bg_counts, self.bg_images, images, bg_index, rects)

    def blend_host(
        self, images: np.ndarray, table: np.ndarray, atlas: np.ndarray, offset: np.ndarray | None = None
    ) -> None:
        """Run the blending post-pass on host composites, in place.

        Args:
            images: ``(B, H, W, 3) uint8`` the kernel's composites.
            table: ``(B, 8) int64`` their placement table, or with several
                objects the kernel's ``(M, 9) int64`` table (far to near per sample).
            atlas: ``(A,) uint8`` the atlas bytes the table points into.
            offset: several objects: ``(B + 1,) int64`` each sample's rows of
                ``table`` (blended layer by layer); ``None``: one object each.
        """
        import torch

        from kernels.blend import blend_batch, blend_objects_batch

        depth = torch.from_numpy(self.bg_depth16.view(np.int16)) if self.occlusion else None
        args = (torch.from_numpy(images), torch.from_numpy(self.bg_images), torch.from_numpy(atlas),
                torch.from_numpy(table))
        with torch.no_grad():
            if offset is None:
                blend_batch(*args, self.blend, depth, chunk=16)
            else:
                blend_objects_batch(*args, torch.from_numpy(offset), self.blend, depth, chunk=16)

    def close(self) -> None:
        """Release what compositing held (reused output arrays); after the last batch is written."""
        self.buffers.clear()

    def replace_depth(self, batch: Batch, p: Placements) -> None:
        """Overwrite the batch's depth when the source predicts it per composite."""
        if not self.depth.per_composite:
            return
        batch.ready()  # a GPU batch is still copying back: the network must see finished images
        with self.clock("teacher network per composite"):
            predicted = self.depth.composite_depth(batch.images, p.bg)
        if predicted is not None:
            batch.depth[...] = predicted.astype(np.float16)

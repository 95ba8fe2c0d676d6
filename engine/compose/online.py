"""Online compositing: any samples of the plan, made on demand, equal to the stored ones.

:class:`OnlineSamples` loads the assets, the depth source and the
:class:`~engine.compose.plan.SamplePlan` exactly as ``generate`` does, and
composites whatever plan indices a loader asks for (shuffled, repeated) with
the same kernels: sample ``i`` is bit for bit sample ``i`` of a lossless store
made with the same config (images, masks, depth), with no store at all.

What runs where:

- once, on the host: assets loaded, depth source built (``teacher-bg`` runs
  its network here), plan made; on CUDA, backgrounds and their depth are
  uploaded and stay on the GPU.
- per read, on the host: the placements of the indices (a pure function of
  ``(seed, index)``), the kernel's placement table, plane depth, and any
  (foreground, size) not yet in the atlas resized on the CPU (few, reused by
  every later sample; on the CPU so that both devices give the same bits).
- per read, the composite kernel: Numba on every CPU core (``cpu``), or one
  launch on the GPU (``cuda``). :meth:`OnlineSamples.read` brings the results
  back to host arrays; :meth:`OnlineSamples.read_device` writes them straight
  into CUDA torch tensors, on torch's current stream, with no host round trip.

Several objects per image (``--objects-per-image``) take the same path with
the plan's objects and the objects kernel; the instance map is not returned
(training reads images, masks and depth).

What a store has that these samples do not: JPEG stores hold the encoded
images (these are the composites before encoding), and ``teacher-composite``
depth is the network's output for a different grouping of images (equal only
as far as the network is batch-independent).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from engine import splits
from engine.compose.compositor import Compositor, Prepared
from engine.compose.compositor_cuda import CudaCompositor, resolve_device
from engine.compose.depth import make_depth_source
from engine.compose.generate import load_assets
from engine.compose.plan import ObjectPlacements, Placements, plan_for
from engine.config import GenerateConfig
from engine.errors import ConfigError

#: the splits :meth:`OnlineSamples.split_indices` knows (as ``engine.learn.data.SPLITS``)
SPLITS = ("train", "val", "all")


def held_out_backgrounds(n_backgrounds: int, fraction: float, seed: int) -> np.ndarray:
    """``(k,) int64`` backgrounds held out for validation (:func:`engine.splits.held_out_backgrounds`,
    the rule the store's loaders use too).

    Raises:
        ConfigError: fewer than two backgrounds.
    """
    if n_backgrounds < 2:
        raise ConfigError("the plan has one background: a split by background needs at least two")
    return splits.held_out_backgrounds(n_backgrounds, fraction, seed)


class OnlineSamples:
    """The plan of ``config``, composited on demand.

    Args:
        config: the generation config a store would be made with.
        device: ``cpu``, ``cuda`` or ``auto`` (resolved as ``generate`` does).
        capacity: on CUDA, most samples per kernel launch (larger reads are
            split); sizes the GPU and pinned buffers.

    Attributes:
        skipped: ``"path: reason"`` of each input left out (``--on-bad-input skip``),
            as ``generate`` reports them.

    Thread-safe: reads from several threads run one at a time (the atlas is
    filled in order).

    Raises:
        InputError: an input file or folder is unusable.
        ConfigError: options that cannot work together, or ``cuda`` without a GPU.
    """

    def __init__(self, config: GenerateConfig, device: str = "cpu", capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.device = resolve_device(device)
        self.config = config
        assets = load_assets(config)
        depth = make_depth_source(config, assets, self.device)
        self.plan = plan_for(config, assets, depth)
        self.n_backgrounds = len(assets.bg_images)
        self.skipped = [f"{b.path}: {b.reason}" for b in assets.skipped]
        self.height, self.width = config.height, config.width
        self.per_composite = depth.per_composite
        # Composites only: encoding, compression and alpha are the store's business.
        plain = dataclasses.replace(config, image_codec="none", jpeg_encoder="auto", save_alpha=False)
        self.capacity = capacity
        self.compositor: Compositor = (
            CudaCompositor(assets, depth, plain, capacity=capacity, slots=1) if self.device == "cuda"
            else Compositor(assets, depth, plain)
        )
        self._lock = threading.Lock()

    @property
    def n_samples(self) -> int:
        return self.plan.n_samples

    def __len__(self) -> int:
        return self.plan.n_samples

    def bg_index(self, indices: np.ndarray) -> np.ndarray:
        """``(B,) int64`` background of each sample (as the store's ``meta/bg_index``).

        Raises:
            ValueError: an index outside the plan.
        """
        return self.plan.placements_at(indices).bg

    def split_indices(self, split: str, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices of ``split`` (``train``, ``val`` or ``all``) and the held-out
        backgrounds: what ``engine.learn.data.split_indices`` gives for a complete
        store made with the same config.

        Returns:
            ``(indices (k,) int64 sorted, validation backgrounds (v,) int64)``.

        Raises:
            ConfigError: unknown split, fewer than two backgrounds, or an empty split.
        """
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        bg = self.bg_index(np.arange(self.n_samples, dtype=np.int64))
        try:  # drawn among the backgrounds the plan's samples hold, as for a store (engine.splits)
            val_bgs = splits.held_out_among(bg, val_fraction, seed)
        except ValueError:
            raise ConfigError("the plan: " + splits.too_few_backgrounds(
                self.n_samples, int(self.plan.n_fg), len(np.unique(bg)))) from None
        in_val = np.isin(bg, val_bgs)
        keep = in_val if split == "val" else ~in_val if split == "train" else np.ones(len(bg), bool)
        index = np.flatnonzero(keep)
        if len(index) == 0:
            raise ConfigError(f"the {split} split of the plan is empty")
        return index, val_bgs

    def fill_atlas(self) -> bool:
        """Resize, now, every foreground size the plan uses (on the host, all
        cores), so that reads run at their steady speed from the first batch
        instead of resizing as new sizes come up. The default 400k plan has
        about 5,400 sizes (270 MiB). Returns ``False`` (and does nothing) when
        they would not fit the atlas's memory budget.
        """
        if self.config.multi_object:
            p = self.plan.objects(0, self.n_samples).objects  # every object's size, not just object 0's
        else:
            p = self.plan.placements(0, self.n_samples)
        keys = np.unique(np.stack([p.fg, p.h, p.w], axis=1), axis=0)
        atlas = self.compositor.atlas
        if int((keys[:, 1] * keys[:, 2] * 4).sum()) > atlas.max_bytes:
            return False
        with self._lock:
            atlas.lookup(keys[:, 0], keys[:, 1], keys[:, 2])  # the GPU copy follows at the next read
        return True

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples ``indices`` (``(B,)`` integers, any order, repeats allowed), in that order.

        Returns:
            ``images (B, H, W, 3) uint8``, ``depth (B, H, W) float16`` metres,
            ``masks (B, H, W) uint8`` 0/255: fresh host arrays.

        Raises:
            ValueError: an index outside ``[0, n_samples)`` or not a 1-D integer array.
        """
        p = self.plan.placements_at(indices)  # checks the indices before any work
        n, H, W = len(p), self.height, self.width
        images = np.empty((n, H, W, 3), np.uint8)
        depth = np.empty((n, H, W), np.float16)
        masks = np.empty((n, H, W), np.uint8)
        step = self.capacity if self.device == "cuda" else max(n, 1)
        idx = np.asarray(indices, dtype=np.int64)
        with self._lock:
            for a in range(0, n, step):
                b = min(a + step, n)
                batch = self.compositor.composite(self._plan_at(idx[a:b]))
                try:
                    batch.ready()  # a GPU batch is still copying back into pinned buffers
                    images[a:b] = batch.images
                    depth[a:b] = batch.depth
                    masks[a:b] = batch.masks
                finally:
                    batch.release()  # the pinned buffers go back to the compositor
        return images, depth, masks

    def _plan_at(self, indices: np.ndarray) -> Placements | ObjectPlacements:
        """What the compositor takes for samples ``indices``: their objects
        (``--objects-per-image``), else their placements."""
        if self.config.multi_object:
            return self.plan.objects_at(indices)
        return self.plan.placements_at(indices)

    def read_device(self, indices: np.ndarray) -> tuple[Any, Any, Any]:
        """:meth:`read` as CUDA torch tensors, composited straight into them
        (``cuda`` only): no host round trip, ordered on torch's current stream.

        Returns:
            ``images (B, H, W, 3) torch.uint8``, ``depth (B, H, W) torch.float16``,
            ``masks (B, H, W) torch.uint8``, on the current CUDA device.

        Raises:
            ConfigError: not on CUDA.
            ValueError: as :meth:`read`.
        """
        import torch

        if self.device != "cuda":
            raise ConfigError("read_device needs the cuda device (use read on the CPU)")
        if self.per_composite:  # the teacher needs host images: composite there, then upload
            return tuple(torch.from_numpy(a).cuda() for a in self.read(indices))  # type: ignore[return-value]
        from numba import cuda

        p = self.plan.placements_at(indices)
        n, H, W = len(p), self.height, self.width
        images = torch.empty((n, H, W, 3), dtype=torch.uint8, device="cuda")
        depth = torch.empty((n, H, W), dtype=torch.float16, device="cuda")
        masks = torch.empty((n, H, W), dtype=torch.uint8, device="cuda")
        stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
        with self._lock:
            prepared = self.compositor.prepare(self._plan_at(indices))
            # torch's allocator keeps these alive until this stream has used them
            d_table = torch.from_numpy(prepared.table).to("cuda")
            d_offset = instances = None
            if prepared.objects is not None:  # the instance map is the kernel's scratch here: training reads no ids
                d_offset = torch.from_numpy(prepared.objects.offset).to("cuda")
                instances = torch.empty((n, H, W), dtype=torch.uint16, device="cuda")
            self.launch(prepared, d_table, images, masks, depth.view(torch.uint16), stream, d_offset, instances)
        return images, depth, masks

    def launch(self, prepared: Prepared, d_table: Any, images: Any, masks: Any, depth_bits: Any, stream: Any,
               d_offset: Any = None, instances: Any = None) -> None:
        """Composite ``prepared`` into device outputs on ``stream`` (``cuda`` only).

        Args:
            prepared: from ``self.compositor.prepare`` (its atlas is on the device).
            d_table: device copy of ``prepared.table``: ``(B, 8) int64``, or
                ``(M, 9) int64`` with several objects per image.
            images, masks, depth_bits: ``(B, H, W, 3) uint8``, ``(B, H, W) uint8``
                and ``(B, H, W) uint16`` (float16 bits) device arrays: anything with
                ``__cuda_array_interface__`` (Numba arrays, torch tensors).
            stream: Numba stream the kernel is queued on.
            d_offset: several objects per image (``prepared.objects``): ``(B + 1,)
                int64`` device copy of ``prepared.objects.offset``; else unused.
            instances: several objects per image: ``(B, H, W) uint16`` device
                array the instance ids are written to; else unused.

        With ``--blend``/``--harmonize`` the blending post-pass rewrites the
        images after the kernel (this waits for ``stream``), as ``generate`` does.

        Raises:
            ConfigError: not on CUDA.
            ValueError: several objects without ``d_offset`` and ``instances``.
        """
        from kernels.composite_cuda import composite_batch_cuda, composite_objects_batch_cuda

        c = self.compositor
        if not isinstance(c, CudaCompositor):
            raise ConfigError("launch needs the cuda device")
        if prepared.objects is not None and (d_offset is None or instances is None):
            raise ValueError("several objects per image: launch needs d_offset and instances")
        # Backgrounds and new atlas entries were uploaded on the compositor's own
        # stream: they must be there before another stream's kernel reads them.
        c.compute.synchronize()
        if prepared.objects is None:
            composite_batch_cuda(
                c.d_bg, c.d_bg_depth, prepared.atlas, d_table, c.threshold, images, masks, depth_bits,
                stream=stream, host_table=prepared.table, occlusion=c.occlusion,
            )
        else:
            composite_objects_batch_cuda(
                c.d_bg, c.d_bg_depth, prepared.atlas, d_table, d_offset, c.threshold, images, masks, depth_bits,
                instances, stream=stream, host_table=prepared.table, host_offset=prepared.objects.offset,
                occlusion=c.occlusion,
            )
        if c.blend is not None:  # --blend / --harmonize: the same post-pass as generate's
            stream.synchronize()  # the kernel's images are complete before the post-pass reads them
            c.blend_device(images, prepared.table, prepared.atlas, prepared.objects_offset())

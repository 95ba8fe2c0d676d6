"""The compositor on a CUDA GPU: same placements, same kernel maths, same bits.

What runs where:

- once: backgrounds and their depth are uploaded and stay on the GPU;
- per batch, on the host: the placement table, and any (foreground, size)
  not yet in the atlas is resized (a few thousand resizes for a whole 400k
  store, reused by every sample after; done on the CPU so that CPU and GPU
  stores are bit-identical) and its bytes appended to the device atlas;
- per batch, on the GPU: one composite kernel launch (image, mask, depth,
  alpha) on the compute stream; then, on a separate copy stream, the outputs go
  back into pinned host buffers. With ``--jpeg-encoder nvjpeg`` the images stay
  on the GPU: a writer thread has them encoded there (torchvision's nvJPEG,
  sharing the buffer through ``__cuda_array_interface__``) and only the JPEG
  bytes cross PCIe;
- with a blending mode (``--blend`` other than ``alpha``, or ``--harmonize``):
  after the kernel, the post-pass of :mod:`kernels.blend` rewrites the images
  on the device (torch on the slot's buffers, shared through
  ``__cuda_array_interface__``), before they are encoded or copied back. The
  compute stream is synchronised around it (torch runs on its own stream), so
  that batch's kernel and post-pass do not overlap with the next kernel. With
  several objects per image it runs layer by layer, far to near.

Buffers come from a ring of ``slots``: while batch k+1 computes, batch k
copies back and batch k-1 is compressed and written by the writer threads.
``composite`` blocks only when every slot is still held by a writer, so memory
stays bounded whatever the number of samples.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.assets.images import AssetSet
from engine.compose.compositor import BLEND_PASS, HOST_TABLES, Batch, Compositor, Prepared
from engine.compose.depth import DepthSource
from engine.compose.plan import ObjectPlacements, Placements
from engine.config import ANY_DEVICE_JPEG, ON_DEVICE_JPEG, GenerateConfig
from engine.errors import ConfigError
from engine.store.device_codec import ChunkCompressor
from kernels import placement as P

log = logging.getLogger(__name__)


def cuda_status() -> tuple[bool, bool]:
    """``(available, simulated)``: whether Numba can run CUDA kernels, and whether
    that is Numba's CPU simulator (``NUMBA_ENABLE_CUDASIM=1``) rather than a GPU."""
    from numba import config

    simulated = bool(config.ENABLE_CUDASIM)
    if not simulated and not cuda_driver_present():
        return False, False  # no driver, no GPU: numba.cuda's import (~0.7 s) is not paid for nothing
    from numba import cuda

    try:
        available = bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver means no GPU for us
        available = False
    return available, simulated


def cuda_driver_present() -> bool:
    """Whether the CUDA driver library can be loaded (what Numba needs for any GPU):
    one ``dlopen``, or Numba's own ``NUMBA_CUDA_DRIVER`` path when set."""
    import ctypes

    try:
        ctypes.CDLL(os.environ.get("NUMBA_CUDA_DRIVER") or "libcuda.so.1")
    except OSError:
        return False
    return True


def cuda_stack_problem() -> str | None:
    """``None`` when Numba can compile and run a CUDA kernel here, else one line
    saying what broke (with the versions that usually explain it).

    ``cuda.is_available()`` only asks the driver: it was ``True`` on a machine
    whose numba-cuda could compile no kernel at all (numba-cuda vs numpy 2.5),
    so ``--device cuda`` checks once, with a tiny kernel, before any work.
    """
    try:
        from kernels.probe_cuda import run_probe

        right = run_probe()
    except Exception as e:  # noqa: BLE001 - any failure here means the stack cannot run our kernels
        lines = str(e).strip().splitlines()
        return (f"a test kernel failed to compile or run ({type(e).__name__}: {(lines[-1] if lines else '')[:160]}); "
                f"{_versions()}: check that numba-cuda supports this numpy (numpy < 2.5 with numba-cuda 0.2x)")
    if not right:
        return f"a test kernel ran but returned wrong values; {_versions()}"
    return None


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("numba", "numba-cuda", "numpy"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def resolve_device(requested: str) -> str:
    """The device ``generate`` runs on: ``cpu`` or ``cuda``.

    ``auto`` picks CUDA when a real GPU is there (never the simulator, which is
    for tests) and a test kernel runs on it, else the CPU with a warning saying
    why; ``cuda`` without a working GPU is an error, never a silent fallback.

    Raises:
        ConfigError: ``cuda`` without a GPU, or with a CUDA stack that cannot run kernels.
    """
    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {requested!r}")
    available, simulated = cuda_status()
    if requested == "auto" and (not available or simulated):
        return "cpu"
    if not available:
        raise ConfigError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    if simulated:
        log.warning("--device cuda runs on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): slow")
    problem = cuda_stack_problem()
    if problem is None:
        return "cuda"
    if requested == "cuda":
        raise ConfigError(f"--device cuda: the GPU is there but {problem}")
    log.warning("--device auto: using the CPU, because the GPU is there but %s", problem)
    return "cpu"


def device_name() -> str:
    """Name of the current CUDA device, for reports."""
    from numba import cuda

    available, simulated = cuda_status()
    if simulated:
        return "Numba CUDA simulator"
    if not available:
        return "none"
    try:
        name = cuda.get_current_device().name
    except Exception:  # noqa: BLE001 - a name is only for reports
        return "CUDA device"
    return name.decode() if isinstance(name, bytes) else str(name)


@dataclass
class _Slot:
    """Device outputs of one batch in flight, and pinned host mirrors of those that come back raw.

    ``device``/``host`` are keyed by array name (``images``, ``masks``,
    ``depth`` as uint16 bits of float16, ``alpha``).
    """

    d_table: Any
    d_offset: Any
    device: dict[str, Any]
    host: dict[str, np.ndarray]
    d_counts: Any  #: ``(3, 256) int64`` the images' per-channel histogram
    h_counts: np.ndarray  #: its pinned host mirror
    computed: Any
    copied: Any


class CudaCompositor(Compositor):
    """Composites batches on the GPU (Numba CUDA), double/triple buffered.

    Args:
        assets, depth, config: as for :class:`~engine.compose.compositor.Compositor`.
        capacity: most samples in one batch (the shard size).
        slots: batches in flight at once (computing, copying, being written).
        compressor: compresses the lossless arrays' chunks on the device
            (:class:`~engine.store.device_codec.NvcompZstd`), so only compressed
            bytes come back; ``None``: raw arrays come back and the CPU compresses.
        hybrid: each batch says where it is compressed (``composite(...,
            on_device=)``): every slot then has pinned host buffers for the
            raw arrays too, used by the batches the CPU compresses.
        count_images: count each batch's per-channel histogram on the GPU
            (``Batch.histogram``: a store's statistics); off for readers such
            as online compositing, which need no statistics.
    """

    def __init__(
        self, assets: AssetSet, depth: DepthSource, config: GenerateConfig, capacity: int, slots: int = 3,
        compressor: ChunkCompressor | None = None, hybrid: bool = False, count_images: bool = False,
    ) -> None:
        super().__init__(assets, depth, config)
        from numba import cuda

        if compressor is not None and depth.per_composite:
            raise ValueError("a per-composite depth source rewrites depth on the host: compress on the CPU")
        if hybrid and compressor is None:
            raise ValueError("hybrid compression needs a device compressor")
        self.cuda = cuda
        self.compressor = compressor
        self.chunk_samples = config.samples_per_chunk
        # nvJPEG: images are encoded on the device, so they need not come back
        # (unless a teacher must see them on the host first).
        self.jpeg_encoder = config.jpeg_encoder
        self._local = threading.local()  # per writer thread: its nvImageCodec encoder
        #: --jpeg-encoder nvimgcodec-streams: several encoders and streams per writer
        self.jpeg_streams: Any = None
        if config.image_codec == "jpeg" and config.jpeg_encoder == "nvimgcodec-streams":
            self.jpeg_streams = make_jpeg_streams()
        self.jpeg_on_device = config.image_codec == "jpeg" and config.jpeg_encoder in ON_DEVICE_JPEG + ANY_DEVICE_JPEG
        self.objects_max = config.objects_max
        names = ["images", "masks", "depth"] + (["alpha"] if self.save_alpha else [])
        names += ["instances"] if config.multi_object else []
        # instances always come back raw: the host counts each object's visible pixels from them
        lossless = [n for n in names if (n != "images" or config.image_codec == "zstd") and n != "instances"]
        #: arrays a batch compressed on the device has (never copied back raw)
        self.lossless = set(lossless) if config.image_codec != "none" else set()
        self.names = names
        self.per_composite = depth.per_composite
        #: arrays compressed on the device by default (``composite`` without ``on_device``)
        self.on_device = self.lossless if compressor is not None else set()
        #: arrays copied back raw by default, for the host to encode, compress or read
        self.back = self._back(self.on_device)
        #: arrays with pinned host buffers in every slot (hybrid: those of a CPU-compressed batch)
        self.hosted = self._back(set()) if hybrid else self.back
        self.copy_images = "images" in self.back
        #: count the images' histogram (the store's statistics) on the GPU, so neither
        #: the writers nor the host need them raw
        self.count_images = count_images
        self.zero_counts = np.zeros((3, 256), np.int64)
        self.compute = cuda.stream()
        self.copy = cuda.stream()
        self.d_bg = cuda.to_device(self.bg_images, stream=self.compute)
        self.d_bg_depth = cuda.to_device(self.bg_depth16, stream=self.compute)
        self.d_atlas = cuda.device_array(len(self.atlas.buffer), np.uint8)
        self.atlas_uploaded = 0
        self.atlas_generation = self.atlas.generation
        _, height, width, _ = self.bg_images.shape
        self.free: queue.Queue[_Slot] = queue.Queue()
        for _ in range(slots):
            self.free.put(self._make_slot(capacity, height, width))

    def _make_slot(self, n: int, height: int, width: int) -> _Slot:
        cuda = self.cuda
        shapes = {"images": ((n, height, width, 3), np.uint8), "masks": ((n, height, width), np.uint8),
                  "depth": ((n, height, width), np.uint16), "alpha": ((n, height, width), np.uint8),
                  "instances": ((n, height, width), np.uint16)}
        if not self.save_alpha:
            del shapes["alpha"]
        if self.objects_max == 1:
            del shapes["instances"]
            table_shape = (n, P.N_COLUMNS)
        else:
            table_shape = (n * self.objects_max, P.N_OBJECT_COLUMNS)
        return _Slot(
            d_table=cuda.device_array(table_shape, np.int64),
            d_offset=cuda.device_array(n + 1, np.int64),
            device={name: cuda.device_array(shape, dtype) for name, (shape, dtype) in shapes.items()},
            host={name: cuda.pinned_array(*shapes[name]) for name in self.hosted},
            d_counts=cuda.device_array((3, 256), np.int64),
            h_counts=cuda.pinned_array((3, 256), np.int64),
            computed=cuda.event(),
            copied=cuda.event(),
        )

    def _back(self, on_device: set[str]) -> list[str]:
        """The arrays a batch copies back raw when ``on_device`` are compressed on the device."""
        return [n for n in self.names if n not in on_device
                and not (n == "images" and self.jpeg_on_device and not self.per_composite)]

    def close(self) -> None:
        """Stop the ``nvimgcodec-streams`` encoding threads, if any."""
        if self.jpeg_streams is not None:
            self.jpeg_streams.close()
        super().close()

    def _sync_atlas(self) -> Any:
        """Bring the device atlas up to the host one and return it: append new
        entries, or upload it all into a new device array when the host buffer
        moved (grew or was emptied). A new array, never the old one rewritten:
        a kernel queued earlier may still read the old entries."""
        atlas = self.atlas
        if atlas.generation != self.atlas_generation or len(self.d_atlas) < atlas.used:
            self.d_atlas = self.cuda.device_array(max(len(atlas.buffer), 1), np.uint8)
            self.atlas_uploaded = 0
            self.atlas_generation = atlas.generation
        if atlas.used > self.atlas_uploaded:
            # Same stream as the kernels: earlier launches finish reading first.
            self.d_atlas[self.atlas_uploaded : atlas.used].copy_to_device(
                atlas.buffer[self.atlas_uploaded : atlas.used], stream=self.compute
            )
            self.atlas_uploaded = atlas.used
        return self.d_atlas[: max(atlas.used, 1)]

    def prepare(self, p: Placements) -> Prepared:
        """Host-side work of a batch, and its new atlas entries uploaded
        (see :meth:`Compositor.prepare`: one thread prepares, in plan order)."""
        with self.clock(HOST_TABLES):
            return self._prepare(p, self._sync_atlas)  # host table (and atlas resizes), then the upload

    def composite(self, p: Placements | ObjectPlacements | Prepared, on_device: bool | None = None) -> Batch:
        """Launch the batch, its copy back and (on use) its compression; returns at once.

        ``on_device``: compress this batch's lossless arrays on the device
        (``True``) or copy them back raw for the CPU (``False``); ``None``: as
        the compressor given at construction says. Either way but the default
        needs a compositor made with ``hybrid=True``.

        The returned :class:`Batch` views pinned buffers: call ``ready()``
        before reading them and ``release()`` after the last read.
        """
        from kernels.composite_cuda import composite_batch_cuda, composite_objects_batch_cuda

        here = self.on_device if on_device is None else (self.lossless if on_device else set())
        back = self.back if on_device is None else self._back(here)
        if (here and self.compressor is None) or not set(back) <= set(self.hosted):
            raise ValueError(f"on_device={on_device}: this compositor was made for "
                             f"{'device' if self.on_device else 'host'} compression only (hybrid=False)")

        prepared = p if isinstance(p, Prepared) else self.prepare(p)
        p, table = prepared.placements, prepared.table
        n = len(p)
        with self.clock("wait for a free GPU buffer (all held by writers)"):
            slot = self.free.get()  # blocks while every slot is being written
        if n + 1 > len(slot.d_offset) or len(table) > len(slot.d_table) or (prepared.objects is None) != (self.objects_max == 1):
            self.free.put(slot)
            raise ValueError(f"batch of {n} samples ({len(table)} objects) does not fit the compositor's buffers")
        m = len(table)
        slot.d_table[:m].copy_to_device(table, stream=self.compute)
        outs = {name: d[:n] for name, d in slot.device.items()}
        if prepared.objects is None:
            composite_batch_cuda(
                self.d_bg, self.d_bg_depth, prepared.atlas, slot.d_table[:n], self.threshold,
                outs["images"], outs["masks"], outs["depth"], outs.get("alpha"),
                stream=self.compute, host_table=table, occlusion=self.occlusion,
            )
        else:
            offset = prepared.objects.offset
            slot.d_offset[: n + 1].copy_to_device(offset, stream=self.compute)
            composite_objects_batch_cuda(
                self.d_bg, self.d_bg_depth, prepared.atlas, slot.d_table[:m], slot.d_offset[: n + 1],
                self.threshold, outs["images"], outs["masks"], outs["depth"], outs["instances"], outs.get("alpha"),
                stream=self.compute, host_table=table, host_offset=offset, occlusion=self.occlusion,
            )
        if self.blend is not None:
            with self.clock(BLEND_PASS):
                self.blend_device(outs["images"], table, prepared.atlas, prepared.objects_offset())
        if self.count_images:
            from kernels.histogram_cuda import channel_histogram_cuda

            slot.d_counts.copy_to_device(self.zero_counts, stream=self.compute)
            channel_histogram_cuda(outs["images"], slot.d_counts, stream=self.compute)
        slot.computed.record(self.compute)
        slot.computed.wait(self.copy)  # the copy stream waits for this kernel only
        hosts = {name: slot.host[name][:n] for name in back}
        for name, h in hosts.items():
            outs[name].copy_to_host(h, stream=self.copy)
        if self.count_images:
            slot.d_counts.copy_to_host(slot.h_counts, stream=self.copy)
        slot.copied.record(self.copy)  # recorded after the kernel: ready() implies computed
        batch = Batch(
            images=hosts.get("images"), masks=hosts.get("masks"),
            depth=hosts["depth"].view(np.float16) if "depth" in hosts else None, alpha=hosts.get("alpha"),
            ready=slot.copied.synchronize, release=lambda: self.free.put(slot),
            encode_jpeg=self._jpeg_encoder(outs["images"]) if self.jpeg_on_device else None,
            compressed={name: self._device_chunks(slot.device[name], n) for name in here},
            count=n, instances=hosts.get("instances"), objects=prepared.batch_objects(),
            histogram=slot.h_counts if self.count_images else None,
        )
        self.replace_depth(batch, p)  # teacher-composite: waits for this batch, runs the network
        return batch

    def blend_device(self, d_images: Any, table: np.ndarray, d_atlas: Any, offset: np.ndarray | None) -> None:
        """The blending post-pass on device images, in place (``table``/``offset``
        as for :meth:`Compositor.blend_host`): a slot's, or online compositing's.

        Torch reads the Numba arrays through ``__cuda_array_interface__``; under
        Numba's CUDA simulator (tests, no GPU) the images make a round trip
        through the host and the CPU post-pass runs instead.
        """
        import torch

        from kernels.blend import blend_batch, blend_objects_batch

        self.compute.synchronize()  # the kernel's images are complete before torch reads them
        if not torch.cuda.is_available():
            host = d_images.copy_to_host()
            self.blend_host(host, table, np.asarray(self.atlas.view()), offset)
            d_images.copy_to_device(host)
            return

        def tensor(d: Any) -> torch.Tensor:
            return torch.as_tensor(d, device="cuda")

        depth = tensor(self.d_bg_depth.view(np.int16)) if self.occlusion else None
        args = (tensor(d_images), tensor(self.d_bg), tensor(d_atlas), torch.from_numpy(table).cuda())
        with torch.no_grad():
            if offset is None:
                blend_batch(*args, self.blend, depth, chunk=256)
            else:  # chunks of samples: each layer blends at most 256 objects side by side
                blend_objects_batch(*args, torch.from_numpy(offset), self.blend, depth, chunk=256)
        torch.cuda.current_stream().synchronize()  # images final before the copy/encode streams read them

    def _device_chunks(self, d_array: Any, n: int) -> Callable[[], list[bytes]]:
        """A function compressing the first ``n`` samples of a slot array on the
        device, chunk by chunk as the store chunks them; returns the frames."""

        def compressed() -> list[bytes]:
            c = self.chunk_samples
            n_chunks = -(-n // c)
            whole = n_chunks * c
            if whole > n:  # edge chunk: zarr pads it to the full chunk shape with the fill value
                pad = d_array[n:whole]
                pad.copy_to_device(np.zeros(pad.shape, pad.dtype))
            flat = d_array[:whole].reshape(-1).view(np.uint8)  # a view: no copy
            return self.compressor.compress(flat, flat.size // n_chunks, n_chunks)  # type: ignore[union-attr]

        return compressed

    def _jpeg_encoder(self, d_images: Any) -> Callable[[int], np.ndarray]:
        """``quality → (B,) object`` JPEG bytes of the slot's device images."""
        encoder = self.jpeg_encoder
        local = self._local

        def encode(quality: int) -> np.ndarray:
            if self.jpeg_streams is not None:  # takes the device array as it is, split over its streams
                return self.jpeg_streams.encode(d_images, quality)
            if encoder == "fgbg":  # our kernels, on this writer's own stream (the images are final: ready())
                if getattr(local, "fgbg_jpeg", None) is None:
                    local.fgbg_jpeg = make_fgbg_jpeg_encoder()
                return local.fgbg_jpeg.encode(d_images, quality)
            import torch

            from engine.store.jpeg import encode_jpeg_nvimgcodec, encode_jpeg_torchvision

            images = torch.as_tensor(d_images, device="cuda")
            if encoder == "nvimgcodec":
                if getattr(local, "nvimgcodec", None) is None:  # one encoder (its streams, its states) per writer
                    from nvidia import nvimgcodec

                    local.nvimgcodec = nvimgcodec.Encoder(device_id=images.device.index or 0)
                return encode_jpeg_nvimgcodec(images, quality, local.nvimgcodec)
            return encode_jpeg_torchvision(images, quality)

        return encode


class HostJpegStandIn:
    """Under Numba's simulator, a writer's ``fgbg`` JPEG: the images copied
    back and coded by the CPU twin (the same bytes). The simulator runs one
    kernel at a time and writers encode while the compositor launches; the
    CUDA kernels themselves are tested against the twin on their own."""

    def encode(self, d_images: Any, quality: int) -> np.ndarray:
        from kernels.jpeg import encode_jpeg_batch

        return encode_jpeg_batch(d_images.copy_to_host(), quality, parallel=False)


def make_fgbg_jpeg_encoder() -> Any:
    """One writer's ``fgbg`` JPEG encoder: :class:`kernels.jpeg_cuda.CudaJpegEncoder`
    on a stream of its own; :class:`HostJpegStandIn` under the simulator."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return HostJpegStandIn()
    from kernels.jpeg_cuda import CudaJpegEncoder

    return CudaJpegEncoder(cuda.stream())


def make_jpeg_streams() -> Any:
    """The ``nvimgcodec-streams`` encoder (a seam: tests swap in host stand-ins)."""
    from engine.store.jpeg import NvimgcodecStreams

    return NvimgcodecStreams()

"""JPEG encoding of composite batches: libjpeg on the CPU cores, nvJPEG on the GPU
(through torchvision, or through nvImageCodec: one encoder per writer, or
several encoders on several CUDA streams per writer, :class:`NvimgcodecStreams`),
or fgbg's own kernels (:mod:`kernels.jpeg`: a restart interval per block row,
every row coded at once, on the GPU or the CPU cores, the same bytes on both).

All return one baseline JPEG file per sample as a ``(B,) object`` array of
``bytes`` (what the store's ``images_jpeg`` array holds). All keep colour at
full resolution (4:4:4): with 4:2:0, quality 95 decodes to only ~39 dB PSNR on
the composites (colour edges of pasted cars), 4:4:4 to over 41 dB, for files
about a quarter larger. libjpeg and nvJPEG still write different bytes.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def encode_jpeg_pillow(images: np.ndarray, quality: int) -> np.ndarray:
    """``(B, H, W, 3) uint8`` host images → ``(B,) object`` JPEG ``bytes`` (4:4:4).

    One libjpeg call per image through Pillow, which releases the GIL while
    encoding, so writer threads encode shards in parallel.
    """
    from PIL import Image

    out = np.empty(len(images), dtype=object)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling="4:4:4")
        out[i] = buffer.getvalue()
    return out


def encode_jpeg_fgbg(images: np.ndarray, quality: int, pool: Executor | None = None) -> np.ndarray:
    """``(B, H, W, 3) uint8`` host images → ``(B,) object`` JPEG ``bytes`` (4:4:4)
    coded by :func:`kernels.jpeg.encode_jpeg_batch`, the bytes the GPU writes.

    Args:
        images: the batch.
        quality: 1..100.
        pool: split the batch over this executor's threads, one core each (a
            writer's pool); ``None``: every core through Numba's own threads.
    """
    from kernels.jpeg import encode_jpeg_batch

    if pool is None or len(images) < 2:
        return encode_jpeg_batch(images, quality)
    parts = np.array_split(np.arange(len(images)), min(len(images), 4 * (os.cpu_count() or 1)))
    coded = pool.map(lambda ix: encode_jpeg_batch(images[ix[0] : ix[-1] + 1], quality, parallel=False), parts)
    return np.concatenate(list(coded))


def fgbg_jpeg_problem() -> str | None:
    """``None`` when fgbg's JPEG kernels run on this GPU and write the CPU's
    bytes (a tiny batch, compiled on first use and cached), else why not (one line)."""
    try:
        from numba import cuda

        from kernels.jpeg import encode_jpeg_batch
        from kernels.jpeg_cuda import CudaJpegEncoder

        probe = np.random.default_rng(0).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
        got = CudaJpegEncoder().encode(cuda.to_device(probe), 95)
        if list(got) != list(encode_jpeg_batch(probe, 95, parallel=False)):
            return "fgbg's JPEG kernels wrote other bytes on this GPU than on the CPU"
    except Exception as e:  # noqa: BLE001 - any failure means: another encoder
        lines = str(e).strip().splitlines()
        return f"fgbg's JPEG kernels cannot run here ({type(e).__name__}: {(lines[-1] if lines else '')[:160]})"
    return None


def encode_jpeg_torchvision(images: torch.Tensor, quality: int) -> np.ndarray:
    """``(B, H, W, 3) uint8`` tensor on any device → ``(B,) object`` JPEG ``bytes``.

    On a CUDA tensor torchvision encodes with nvJPEG, batched, and only the
    encoded bytes come back to the host, in one copy; nvJPEG encodes 4:4:4.
    On a CPU tensor torchvision uses libjpeg with 4:2:0 chroma (below 40 dB at
    quality 95 here), so the store uses :func:`encode_jpeg_pillow` on the host;
    the CPU path exists to test this function's handling without a GPU.
    """
    import torch
    from torchvision.io import encode_jpeg

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"need (B, H, W, 3) uint8 images, got {tuple(images.shape)} {images.dtype}")
    out = np.empty(len(images), dtype=object)
    if len(images) == 0:
        return out
    planar = images.permute(0, 3, 1, 2).contiguous()  # nvJPEG reads planar (3, H, W) images
    if planar.is_cuda:
        # torchvision encodes on its own stream, which does not wait for ours.
        torch.cuda.current_stream(planar.device).synchronize()
    encoded = encode_jpeg(list(planar.unbind(0)), quality=quality)
    lengths = [int(e.numel()) for e in encoded]
    flat = torch.cat(encoded).cpu().numpy()
    ends = np.cumsum(lengths)
    for i, (start, end) in enumerate(zip(ends - lengths, ends)):
        out[i] = flat[start:end].tobytes()
    return out


def encode_jpeg_nvimgcodec(images: torch.Tensor, quality: int, encoder: Any = None, stream: Any = None) -> np.ndarray:
    """``(B, H, W, 3) uint8`` CUDA tensor → ``(B,) object`` JPEG ``bytes`` (4:4:4),
    encoded by nvImageCodec on the GPU.

    nvImageCodec spreads a batch over several nvJPEG encoder states and CUDA
    streams and writes each bitstream straight into pinned host memory, where
    torchvision's encoder takes one image at a time behind a lock with three
    host synchronisations per image. Its JPEG default is 4:2:0, so 4:4:4 is
    asked for explicitly (quality 95 keeps ≥ 40 dB PSNR only with full colour).

    Args:
        images: composites on the GPU, interleaved RGB (HWC), C-contiguous.
        quality: 1..100.
        encoder: an ``nvidia.nvimgcodec.Encoder`` to reuse (one per thread), or ``None``.
        stream: a ``torch.cuda.Stream`` to encode on, or ``None`` (the encoder's default).
    """
    import torch
    from nvidia import nvimgcodec

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not images.is_cuda:
        raise ValueError(f"need (B, H, W, 3) uint8 CUDA images, got {tuple(images.shape)} {images.dtype}")
    out = np.empty(len(images), dtype=object)
    if len(images) == 0:
        return out
    stream = torch.cuda.current_stream(images.device)
    stream.synchronize()  # the images come from the compositor's own stream
    encoder = encoder or nvimgcodec.Encoder(device_id=images.device.index or 0)
    params = nvimgcodec.EncodeParams(quality_type=nvimgcodec.QualityType.QUALITY, quality_value=float(quality),
                                     chroma_subsampling=nvimgcodec.ChromaSubsampling.CSS_444)
    on = {} if stream is None else {"cuda_stream": int(stream.cuda_stream)}
    frames = encoder.encode(nvimgcodec.as_images(list(images.contiguous().unbind(0))), "jpeg", params=params, **on)
    for i, frame in enumerate(frames):
        if frame is None:
            raise RuntimeError(f"nvImageCodec could not encode image {i} of the batch")
        out[i] = bytes(frame)
    return out


#: encoders (nvJPEG states) and CUDA streams per writer of :class:`NvimgcodecStreams`
JPEG_STREAMS = 4

#: encodes a part of a batch: ``(part, quality) → (b,) object`` JPEG bytes
PartEncoder = Callable[[Any, int], np.ndarray]


def encode_split(images: Any, quality: int, encoders: Sequence[PartEncoder], pool: Executor) -> np.ndarray:
    """Encode a batch as ``len(encoders)`` contiguous parts at once, one per encoder.

    Args:
        images: ``(B, H, W, 3) uint8`` images, anything sliced along its first
            axis (a CUDA tensor, a Numba device array, a host array).
        quality: 1..100, passed to each encoder.
        encoders: one per part; each is called once, from a thread of ``pool``.
        pool: runs the parts (at least ``len(encoders)`` workers to run them all at once).

    Returns:
        ``(B,) object`` JPEG ``bytes``, in the batch's order.

    Raises:
        RuntimeError: an encoder failed or returned the wrong number of images
            (the first such part, by position).
    """
    if not encoders:
        raise ValueError("need at least one encoder")
    n = len(images)
    out = np.empty(n, dtype=object)
    bounds = np.linspace(0, n, min(len(encoders), max(n, 1)) + 1).astype(int)
    parts = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    futures = [pool.submit(enc, images[a:b], quality) for enc, (a, b) in zip(encoders, parts)]
    for (a, b), future in zip(parts, futures):
        try:
            encoded = future.result()
        except Exception as e:
            raise RuntimeError(f"JPEG encoding of images {a}..{b - 1} of the batch failed: {type(e).__name__}: {e}") from e
        if len(encoded) != b - a:
            raise RuntimeError(f"JPEG encoder returned {len(encoded)} images for {b - a} (images {a}..{b - 1})")
        out[a:b] = list(encoded)
    return out


def nvimgcodec_part_encoder(device_id: int) -> PartEncoder:
    """One nvImageCodec encoder (its own nvJPEG state) on its own CUDA stream;
    takes any CUDA array (``__cuda_array_interface__``) of ``(b, H, W, 3) uint8``."""
    import torch
    from nvidia import nvimgcodec

    encoder = nvimgcodec.Encoder(device_id=device_id)
    stream = torch.cuda.Stream(device=device_id)

    def encode(part: Any, quality: int) -> np.ndarray:
        return encode_jpeg_nvimgcodec(torch.as_tensor(part, device=f"cuda:{device_id}"), quality, encoder, stream)

    return encode


class NvimgcodecStreams:
    """``--jpeg-encoder nvimgcodec-streams``: each writer thread splits its
    shard over ``streams`` nvImageCodec encoders, each with its own nvJPEG
    encoder state and CUDA stream, encoding at once from as many threads; a
    shard's parts overlap each other's GPU work, host Huffman coding and
    copies back (one encoder per writer serialises them within the shard).

    Args:
        streams: encoders (and streams) per writer thread.
        device_id: the GPU.
        make_part_encoder: builds one part encoder (a seam: tests give host
            stand-ins); default :func:`nvimgcodec_part_encoder`.
    """

    name = "nvimgcodec-streams"

    def __init__(self, streams: int = JPEG_STREAMS, device_id: int = 0,
                 make_part_encoder: Callable[[int], PartEncoder] = nvimgcodec_part_encoder) -> None:
        if streams < 1:
            raise ValueError(f"need at least one stream, got {streams}")
        self.streams = streams
        self.device_id = device_id
        self.make_part_encoder = make_part_encoder
        self._local = threading.local()  # per writer thread: its encoders and their threads
        self._pools: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def _state(self) -> tuple[list[PartEncoder], ThreadPoolExecutor]:
        state = getattr(self._local, "state", None)
        if state is None:
            encoders = [self.make_part_encoder(self.device_id) for _ in range(self.streams)]
            pool = ThreadPoolExecutor(self.streams, thread_name_prefix="fgbg-jpeg")
            with self._lock:
                self._pools.append(pool)
            state = self._local.state = (encoders, pool)
        return state

    def close(self) -> None:
        """Stop the encoding threads (after the last :meth:`encode`)."""
        with self._lock:
            pools, self._pools = self._pools, []
        for pool in pools:
            pool.shutdown(wait=True)

    def encode(self, images: Any, quality: int) -> np.ndarray:
        """``(B, H, W, 3) uint8`` CUDA images (any ``__cuda_array_interface__``
        array) → ``(B,) object`` JPEG ``bytes``, in order."""
        encoders, pool = self._state()
        return encode_split(images, quality, encoders, pool)


def nvimgcodec_problem() -> str | None:
    """``None`` when nvImageCodec can encode JPEG on this GPU, else why not (one line)."""
    try:
        import torch
        from nvidia import nvimgcodec  # noqa: F401 - the import is the first check
    except ImportError:
        return "nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu13 nvidia-nvjpeg)"
    try:
        if not torch.cuda.is_available():
            return "PyTorch sees no CUDA GPU"
        probe = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, device="cuda")
        encode_jpeg_nvimgcodec(probe, 95)
    except Exception as e:  # noqa: BLE001 - any failure means: another encoder
        lines = str(e).strip().splitlines()
        return f"nvImageCodec cannot encode here ({type(e).__name__}: {(lines[-1] if lines else '')[:160]})"
    return None

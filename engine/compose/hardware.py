"""Choices made from the machine: writer threads, GPU slots, compressor, JPEG encoder.

``cli.py generate`` with no tuning flags must be the fast path on any
machine, so what used to be benchmark flags is chosen here from a
:class:`Hardware` description (detected once, or given by tests). Only
choices that leave the decoded store unchanged depend on the machine: the
store's layout (shard and chunk sizes) never does, so CPU and GPU stores stay
interchangeable sample for sample.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

from engine.config import ON_DEVICE_JPEG, GenerateConfig, RunOptions
from engine.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hardware:
    """What the choices depend on.

    Attributes:
        cores: CPU cores this process may use.
        gpu_memory: bytes of GPU memory (0 without a GPU).
        nvcomp: ``None`` when nvCOMP compresses on this GPU, else why not.
        nvimgcodec: ``None`` when nvImageCodec encodes JPEG on this GPU, else why not.
        torch_cuda: PyTorch sees the GPU (torchvision's nvJPEG needs it).
    """

    cores: int
    gpu_memory: int = 0
    nvcomp: str | None = "not checked"
    nvimgcodec: str | None = "not checked"
    torch_cuda: bool = False


def detect_hardware(device: str) -> Hardware:
    """The machine as seen from here; the GPU parts only when ``device`` is ``cuda``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if device != "cuda":
        return Hardware(cores=cores, nvcomp="no GPU", nvimgcodec="no GPU")
    from numba import cuda

    from engine.store.device_codec import nvcomp_problem
    from engine.store.jpeg import nvimgcodec_problem

    try:
        _, total = cuda.current_context().get_memory_info()
        total = int(total) if total < float("inf") else 0  # the simulator says infinity
    except Exception:  # noqa: BLE001 - no memory info: the slots are not limited by it
        total = 0
    try:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch CUDA: no nvJPEG through torchvision
        torch_cuda = False
    return Hardware(cores=cores, gpu_memory=int(total), nvcomp=nvcomp_problem(),
                    nvimgcodec=nvimgcodec_problem(), torch_cuda=torch_cuda)


def resolve_compressor(requested: str, device: str, config: GenerateConfig, hw: Hardware,
                       per_composite_depth: bool) -> str:
    """``cpu`` or ``nvcomp``: where the lossless chunks get compressed.

    ``auto`` is the CPU's zstd on every machine measured so far. On one H200
    with 16 cores (benchmarks/RESULTS.md) nvCOMP's zstd compressed the store's
    1.2 MB chunks at 1.7 GB/s and to half the CPU's ratio (6.4 vs 11.9): the
    store came out 19 GB instead of 10, so the disk alone needed 15 s, and
    400k samples took 140 s against 49 s with the CPU compressing. nvCOMP
    stays available (``--compressor nvcomp``) for machines where it wins.

    Raises:
        ConfigError: ``nvcomp`` asked for where it cannot run.
    """
    if requested in ("cpu", "auto"):
        return "cpu"
    reasons = []
    if device != "cuda":
        reasons.append("it runs on the GPU: use --device cuda")
    if config.image_codec == "none":
        reasons.append("--image-codec none stores raw bytes: nothing to compress")
    if per_composite_depth:
        reasons.append("--depth-source teacher-composite rewrites depth on the host")
    if not reasons and hw.nvcomp is not None:
        reasons.append(hw.nvcomp)
    if not reasons:
        return "nvcomp"
    raise ConfigError(f"--compressor nvcomp: {reasons[0]}")


#: ``--jpeg-encoder auto`` on the GPU: the first of these that runs. The order is
#: measured: on one H200 + 16 cores (one 2,048-sample shard at 224x224, one
#: encoder call) torchvision's nvJPEG 6,279, nvImageCodec 4,861 images/s (Pillow
#: on 16 cores 1,716). ``nvimgcodec-streams`` is not measured yet: it comes
#: last until ``bench_gpu.py`` (its ``jpeg_encode`` stage, at the writer count
#: ``generate`` uses) says where it belongs.
JPEG_PREFERENCE = ("nvjpeg", "nvimgcodec", "nvimgcodec-streams")


def resolve_jpeg_encoder(config: GenerateConfig, device: str, hw: Hardware) -> GenerateConfig:
    """``config`` with ``jpeg_encoder='auto'`` made concrete (the store records the
    encoder that wrote it); an explicit GPU encoder that cannot run is an error.

    ``auto`` on the GPU takes the first of :data:`JPEG_PREFERENCE` that runs
    here, else libjpeg on the CPU cores; without ``--image-codec jpeg`` it is
    ``libjpeg``, as stores made before ``auto`` existed say.

    Raises:
        ConfigError: a GPU encoder asked for where it cannot run.
    """
    encoder = config.jpeg_encoder
    if encoder == "auto":
        runs = {"nvjpeg": hw.torch_cuda, "nvimgcodec": hw.nvimgcodec is None,
                "nvimgcodec-streams": hw.nvimgcodec is None and hw.torch_cuda}
        if config.image_codec != "jpeg" or device != "cuda":
            encoder = "libjpeg"
        else:
            encoder = next((e for e in JPEG_PREFERENCE if runs[e]), "libjpeg")
    elif encoder in ON_DEVICE_JPEG:
        if device != "cuda":
            raise ConfigError(f"--jpeg-encoder {encoder} runs on the GPU: it needs --device cuda "
                              "(or auto on a GPU machine)")
        if encoder == "nvjpeg" and not hw.torch_cuda:
            raise ConfigError("--jpeg-encoder nvjpeg: PyTorch sees no CUDA GPU (Numba's simulator cannot run "
                              "nvJPEG); use --jpeg-encoder libjpeg")
        if encoder.startswith("nvimgcodec") and hw.nvimgcodec is not None:
            raise ConfigError(f"--jpeg-encoder {encoder}: {hw.nvimgcodec}")
        if encoder == "nvimgcodec-streams" and not hw.torch_cuda:
            raise ConfigError("--jpeg-encoder nvimgcodec-streams: PyTorch sees no CUDA GPU (its CUDA streams "
                              "are PyTorch's); use --jpeg-encoder nvimgcodec")
    return dataclasses.replace(config, jpeg_encoder=encoder)


def choose_writer_threads(run: RunOptions, device: str, compressor: str, hw: Hardware) -> int:
    """Shards written at once, unless given.

    On the CPU path each writer hands its chunks to a pool of every core, so
    two writers keep that pool busy (more only add memory). On the GPU path a
    writer waits on its own nvCOMP/nvJPEG stream and on the disk, so up to
    four overlap those waits; with CPU compression behind a GPU, half the cores
    (measured on one H200 + 16 cores: 8 writers 48.7 s, 2 writers 58.3 s,
    14 writers 63.6 s for 400k).
    """
    if run.writer_threads is not None:
        return run.writer_threads
    if device != "cuda":
        return 2
    if compressor == "nvcomp":
        return max(2, min(4, hw.cores))
    return max(2, min(8, hw.cores // 2))


def choose_slots(writer_threads: int, slot_bytes: int, hw: Hardware) -> int:
    """GPU batches in flight: one computing, one copying, one per writer —
    as many of those as fit in half the GPU's memory, at least two.

    Raises:
        ConfigError: not even two batches fit.
    """
    want = writer_threads + 2
    if hw.gpu_memory <= 0:  # unknown (the simulator)
        return want
    fit = int(0.5 * hw.gpu_memory // max(slot_bytes, 1))
    if fit < 2:
        raise ConfigError(f"one shard takes {slot_bytes / 2**30:.1f} GiB on the GPU and two must fit in half "
                          f"of its {hw.gpu_memory / 2**30:.0f} GiB: use a smaller --shard-size")
    return min(want, fit)

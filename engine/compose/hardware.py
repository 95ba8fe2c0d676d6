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
        jpeg_kernels: ``None`` when fgbg's JPEG kernels run on this GPU (and write
            the CPU's bytes), else why not; checked only where JPEG is written
            on the GPU (:func:`check_jpeg_kernels`: it compiles them).
        torch_cuda: PyTorch sees the GPU (torchvision's nvJPEG needs it).
        host_memory: bytes of host memory (0: unknown); GPU slots pin some of it.
    """

    cores: int
    gpu_memory: int = 0
    nvcomp: str | None = "not checked"
    nvimgcodec: str | None = "not checked"
    jpeg_kernels: str | None = "not checked"
    torch_cuda: bool = False
    host_memory: int = 0


def host_memory_bytes() -> int:
    """Physical memory of this machine in bytes (0 where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 0


def detect_hardware(device: str) -> Hardware:
    """The machine as seen from here; the GPU parts only when ``device`` is ``cuda``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if device != "cuda":
        return Hardware(cores=cores, nvcomp="no GPU", nvimgcodec="no GPU", jpeg_kernels="no GPU")
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
                    nvimgcodec=nvimgcodec_problem(), torch_cuda=torch_cuda, host_memory=host_memory_bytes())


def resolve_compressor(requested: str, device: str, config: GenerateConfig, hw: Hardware,
                       per_composite_depth: bool) -> str:
    """``cpu``, ``nvcomp`` or ``hybrid``: where the lossless chunks get compressed.

    ``hybrid`` compresses each shard either on the GPU (nvCOMP) or on the CPU
    (zstd on every core), chosen shard by shard so that both stay busy
    (:func:`route_shard`); decoded arrays are the same either way (which
    shards nvCOMP takes depends on timing: the compressed bytes vary by run).

    ``auto`` is ``hybrid`` where nvCOMP runs (``--device cuda``, lossless
    images, depth not rewritten on the host), else the CPU. Why, on one H200
    with 16 cores (benchmarks/RESULTS.md): with the CPU compressing, 400k
    samples took 49-59 s (~8k images/s) while the GPU's nvCOMP idled; with
    nvCOMP alone 140 s (~2.9k images/s; its 1.2 MB chunks come out at half the
    CPU's ratio, 6.4 vs 11.9, a 19 GB store instead of 10). One compressor
    limits either run while the other idles, so both at once should approach
    8k + 2.9k ~ 11k images/s (~36 s for 400k), for a store about a quarter
    larger (the GPU's share of the shards, ~2x larger each): small next to the
    time saved (the disk wrote 19 GB in 15 s there). This sum is
    **unmeasured** until ``bash benchmarks/gpu_check.sh`` runs
    ``generate_cuda_zstd`` (auto) next to ``generate_cuda_zstd_cpu``; if
    hybrid loses, ``auto`` goes back to ``cpu``. JPEG stores stay on the CPU under
    ``auto``: there only masks and depth are compressed (highly compressible,
    a small share of the CPU's work), so nvCOMP would cost ratio for no
    measured gain. ``nvcomp`` alone stays available for machines where it wins.

    Raises:
        ConfigError: ``nvcomp`` or ``hybrid`` asked for where nvCOMP cannot run.
    """
    if requested == "cpu":
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
    if requested == "auto":
        return "hybrid" if not reasons and config.image_codec == "zstd" else "cpu"
    if not reasons:
        return requested
    raise ConfigError(f"--compressor {requested}: {reasons[0]}")


def route_shard(cpu_busy: int, gpu_busy: int, cpu_writers: int, gpu_writers: int) -> str:
    """``hybrid``: which compressor takes the next shard, ``cpu`` or ``gpu``.

    The CPU's zstd is the faster compressor with the better ratio, so it takes
    a shard whenever fewer than ``cpu_writers`` CPU shards are being written
    (its chunk pool could idle); otherwise the GPU's nvCOMP does, while it has
    fewer than ``gpu_writers``; with both sides full, the CPU (the next writer
    to free up is likelier to be one of its many).

    Args:
        cpu_busy, gpu_busy: shards of each side launched and not yet written.
        cpu_writers, gpu_writers: writers each side keeps busy (:func:`hybrid_writers`).
    """
    if min(cpu_busy, gpu_busy, cpu_writers, gpu_writers) < 0:
        raise ValueError(f"negative counts: {cpu_busy}, {gpu_busy}, {cpu_writers}, {gpu_writers}")
    if cpu_busy < cpu_writers:
        return "cpu"
    if gpu_busy < gpu_writers:
        return "gpu"
    return "cpu"


def hybrid_writers(run: RunOptions, hw: Hardware) -> tuple[int, int]:
    """``hybrid``: ``(cpu_writers, gpu_writers)``, the writers each side keeps busy.

    Each side gets the writer count it has alone (:func:`choose_writer_threads`
    for ``cpu`` and ``nvcomp`` behind a GPU), on threads of its own; shards in
    flight are their sum. A given ``--writer-threads`` is split in the same
    proportion, at least one each (one writer: the CPU's alone).
    """
    cpu = choose_writer_threads(RunOptions(device="cuda"), "cuda", "cpu", hw)
    gpu = choose_writer_threads(RunOptions(device="cuda"), "cuda", "nvcomp", hw)
    if run.writer_threads is None:
        return cpu, gpu
    total = run.writer_threads
    if total < 2:
        return 1, 0
    gpu_share = min(total - 1, max(1, round(total * gpu / (cpu + gpu))))
    return total - gpu_share, gpu_share


#: ``--jpeg-encoder auto`` on the GPU: the first of these that runs. Measured on
#: one H200 + 16 cores (one 2,048-sample shard at 224x224, one encoder call):
#: torchvision's nvJPEG 6,279, nvImageCodec 4,861 images/s (Pillow on 16 cores
#: 1,716). ``fgbg`` (our kernels: every block row of a shard coded at once, a
#: few launches per shard instead of several per image) comes first by its
#: design, not yet by a measurement; it is taken only where its kernels compile,
#: run and write the CPU's bytes (:func:`check_jpeg_kernels`), and
#: ``bench_gpu.py``'s ``jpeg_encode`` stage reports whether it is the fastest
#: (``auto.confirmed``); if not, reorder this tuple to ``measured_order``.
#: ``nvimgcodec-streams`` is not measured yet either.
JPEG_PREFERENCE = ("fgbg", "nvjpeg", "nvimgcodec", "nvimgcodec-streams")


def check_jpeg_kernels(config: GenerateConfig, device: str, hw: Hardware) -> Hardware:
    """``hw`` with :attr:`Hardware.jpeg_kernels` checked where ``config`` may
    use them on the GPU (JPEG, ``--jpeg-encoder auto`` or ``fgbg``, ``--device
    cuda``): a tiny batch coded on the device (compiling the kernels on first use)."""
    wants = config.image_codec == "jpeg" and config.jpeg_encoder in ("auto", "fgbg") and device == "cuda"
    if not wants or hw.jpeg_kernels != "not checked":
        return hw
    from engine.store.jpeg import fgbg_jpeg_problem

    return dataclasses.replace(hw, jpeg_kernels=fgbg_jpeg_problem())


def resolve_jpeg_encoder(config: GenerateConfig, device: str, hw: Hardware) -> GenerateConfig:
    """``config`` with ``jpeg_encoder='auto'`` made concrete (the store records the
    encoder that wrote it); an explicit GPU encoder that cannot run is an error.

    ``auto`` on the GPU takes the first of :data:`JPEG_PREFERENCE` that runs
    here, else libjpeg on the CPU cores; without ``--image-codec jpeg`` it is
    ``libjpeg``, as stores made before ``auto`` existed say. ``fgbg`` runs on
    either device (on the CPU: its twin on every core, the same bytes).

    Raises:
        ConfigError: a GPU encoder asked for where it cannot run.
    """
    encoder = config.jpeg_encoder
    if encoder == "auto":
        runs = {"fgbg": hw.jpeg_kernels is None, "nvjpeg": hw.torch_cuda, "nvimgcodec": hw.nvimgcodec is None,
                "nvimgcodec-streams": hw.nvimgcodec is None and hw.torch_cuda}
        if config.image_codec != "jpeg" or device != "cuda":
            encoder = "libjpeg"
        else:
            encoder = next((e for e in JPEG_PREFERENCE if runs[e]), "libjpeg")
    elif encoder == "fgbg":
        if device == "cuda" and hw.jpeg_kernels is not None and hw.jpeg_kernels != "not checked":
            raise ConfigError(f"--jpeg-encoder fgbg: {hw.jpeg_kernels}; use --jpeg-encoder nvjpeg or libjpeg")
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


def choose_writer_threads(run: RunOptions, device: str, compressor: str, hw: Hardware,
                          image_codec: str = "zstd") -> int:
    """Shards written at once, unless given.

    On the CPU path each writer hands its chunks to a pool of every core, so
    two writers keep that pool busy (more only add memory); on 2 cores one
    does, for lossless images, since the shard file is written past the page
    cache (measured, 40k samples from user files: 0.96x the wall time and
    0.92x the CPU of two writers, one shard of memory less), while JPEG
    images are encoded in the writer threads, two of them. On the GPU path a
    writer waits on its own nvCOMP/nvJPEG stream and on the disk, so up to
    four overlap those waits; with CPU compression behind a GPU, half the cores
    (measured on one H200 + 16 cores: 8 writers 48.7 s, 2 writers 58.3 s,
    14 writers 63.6 s for 400k); ``hybrid``: both of those side by side
    (:func:`hybrid_writers`).
    """
    if run.writer_threads is not None:
        return run.writer_threads
    if device != "cuda":
        return 1 if hw.cores <= 2 and image_codec != "jpeg" else 2
    if compressor == "hybrid":
        return sum(hybrid_writers(run, hw))
    if compressor == "nvcomp":
        return max(2, min(4, hw.cores))
    return max(2, min(8, hw.cores // 2))


def choose_slots(writer_threads: int, slot_bytes: int, hw: Hardware, host_bytes: int = 0) -> int:
    """GPU batches in flight: one computing, one copying, one per writer —
    as many of those as fit in half the GPU's memory (``slot_bytes`` each) and
    in half the host's (``host_bytes`` of pinned buffers each: the arrays that
    come back raw; with ``hybrid`` every slot has them), at least two.

    Raises:
        ConfigError: not even two batches fit.
    """
    want = writer_threads + 2
    fits = []
    if hw.gpu_memory > 0:  # else unknown (the simulator)
        fits.append((int(0.5 * hw.gpu_memory // max(slot_bytes, 1)), slot_bytes, hw.gpu_memory, "the GPU"))
    if hw.host_memory > 0 and host_bytes > 0:
        fits.append((int(0.5 * hw.host_memory // host_bytes), host_bytes, hw.host_memory, "host memory (pinned)"))
    for fit, size, total, where in fits:
        if fit < 2:
            raise ConfigError(f"one shard takes {size / 2**30:.1f} GiB in {where} and two must fit in half "
                              f"of its {total / 2**30:.0f} GiB: use a smaller --shard-size")
        want = min(want, fit)
    return want

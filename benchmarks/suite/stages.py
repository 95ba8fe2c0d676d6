"""The stage registry: what ``bench`` measures, on which devices, at which sizes.

Every stage is a plain function ``(ctx, device) -> Measured`` that builds what
it needs from the shared :class:`Context` (assets, a plan, one composited
batch, a small store: built once, outside every timing) and times its own
work with :func:`.timer.measure`. The registry (:data:`STAGES`) says what each
measures and on which devices it exists; :func:`problem` says why a stage
cannot run here (a missing GPU, DALI or nvCOMP), so the run skips it and says so.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .machine import usable_cores
from .timer import MIN_REPEATS, Timing, measure

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (saved in the record's settings).

    Attributes:
        image: output height and width of the composites, pixels.
        assets: built-in backgrounds and foregrounds (each).
        batch: samples per batch of the per-batch stages (resize, composite,
            compress, JPEG, shard write): one shard.
        generate_samples: samples of one ``generate`` call, per device.
        naive_samples: samples of the naive loop per process.
        loader_samples: samples of the store the loaders and training read.
        input_size: network input height and width for loaders and training.
        train_batch: samples per loader / training batch.
        loader_batches: batches per timed repeat of a loader stage.
        train_batches: batches per timed repeat of a training stage.
        ceiling_bytes: bytes moved by each ceiling measurement.
        repeats: timed repeats of every figure (after warm-up).
    """

    image: int
    assets: int
    batch: int
    generate_samples: dict[str, int]
    naive_samples: int
    loader_samples: int
    input_size: int
    train_batch: int
    loader_batches: int
    train_batches: int
    ceiling_bytes: int
    repeats: int = MIN_REPEATS

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


#: ``--quick``: every stage in under a minute on a 2-core CPU; not comparable with FULL
QUICK = Sizes(image=128, assets=8, batch=256, generate_samples={"cpu": 768, "cuda": 8192}, naive_samples=64,
              loader_samples=256, input_size=64, train_batch=8, loader_batches=8, train_batches=1,
              ceiling_bytes=64 << 20)
#: the default: the paper-sized 224 x 224 composites, shards of 2048, sizes that leave the caches
FULL = Sizes(image=224, assets=100, batch=2048, generate_samples={"cpu": 20_000, "cuda": 100_000}, naive_samples=300,
             loader_samples=2000, input_size=112, train_batch=32, loader_batches=10, train_batches=10,
             ceiling_bytes=1 << 30)


@dataclass
class Measured:
    """What a stage returns.

    Attributes:
        timing: warm-up and timed repeats of one call.
        items: samples one call processes (images/s = items / seconds).
        batch: the batch size the stage ran at, for the table.
        ceiling: the ceiling (a key of the record's ``ceilings``) bounding this
            stage, or ``None``.
        bytes_per_item: bytes of that ceiling's kind one sample moves.
        notes: a few words of context for the table (e.g. which encoder).
        writer_cost: ``generate``'s writer cost model (the median run's
            :meth:`WriterCostReport.to_dict`: thread CPU ms per sample by step,
            compression share), or ``None``.
    """

    timing: Timing
    items: int
    batch: int
    ceiling: str | None = None
    bytes_per_item: float | None = None
    notes: str = ""
    writer_cost: dict | None = None


@dataclass
class Context:
    """What the stages share, each built on first use (outside any timing)."""

    sizes: Sizes
    scratch: Path
    cores: int = field(default_factory=usable_cores)

    def config(self, **overrides: Any):
        """The stages' :class:`GenerateConfig`: built-in assets at ``sizes``."""
        from engine.config import GenerateConfig

        s = self.sizes
        base = dict(builtin_backgrounds=s.assets, builtin_foregrounds=s.assets, height=s.image, width=s.image,
                    shard_size=s.batch, limit=max(s.generate_samples.values()))
        return GenerateConfig(**{**base, **overrides})

    @cached_property
    def assets(self):
        from engine.compose.generate import load_assets

        return load_assets(self.config())

    @cached_property
    def depth(self):
        from engine.compose.depth import make_depth_source

        return make_depth_source(self.config(), self.assets)

    @cached_property
    def plan(self):
        from engine.compose.plan import plan_for

        return plan_for(self.config(), self.assets, self.depth)

    @cached_property
    def placements(self):
        """One batch of placements (the plan's first)."""
        return self.plan.placements(0, min(self.sizes.batch, self.plan.n_samples))

    @cached_property
    def compositor(self):
        """A CPU compositor whose atlas already holds this batch's resized foregrounds."""
        from engine.compose.compositor import Compositor

        compositor = Compositor(self.assets, self.depth, self.config())
        compositor.table(self.placements)
        return compositor

    @cached_property
    def batch(self):
        """The batch composited on the CPU: ``images (B, H, W, 3) uint8``, masks, depth (non-zero data)."""
        batch = self.compositor.composite(self.placements)
        batch.ready()
        return batch

    @cached_property
    def store(self) -> Path:
        """A lossless store of ``loader_samples`` samples for the loaders and training."""
        from engine.compose.generate import generate
        from engine.config import RunOptions

        path = self.scratch / "loader.zarr"
        generate(self.config(limit=self.sizes.loader_samples, image_codec="zstd"), path,
                 RunOptions(overwrite=True, device="cpu"))
        return path

    @cached_property
    def split(self):
        """The store's samples in memory at the network's sizes (``SplitArrays``)."""
        from engine.learn.data import load_split

        return load_split(self.store, self.index, *self.model_sizes)

    @cached_property
    def index(self) -> np.ndarray:
        return np.arange(self.sizes.loader_samples)

    @property
    def model_sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        from engine.learn.model import ModelConfig

        mc = ModelConfig(height=self.sizes.input_size, width=self.sizes.input_size)
        return (mc.height, mc.width), mc.output_size


def _sync(device: str) -> Callable[[], None] | None:
    if device != "cuda":
        return None
    import torch

    return torch.cuda.synchronize


def _per_sample_out(ctx: Context) -> int:
    """Bytes one composite writes: RGB uint8, mask uint8, depth float16."""
    return ctx.sizes.image * ctx.sizes.image * (3 + 1 + 2)


# -- the stages -------------------------------------------------------------------------------


def resize(ctx: Context, device: str) -> Measured:
    """A fresh atlas filled for one batch: every distinct (foreground, size) resized once."""
    from engine.compose.compositor import ForegroundAtlas

    p = ctx.placements
    t = measure(lambda: ForegroundAtlas(ctx.assets.fg_images).lookup(p.fg, p.h, p.w), repeats=ctx.sizes.repeats)
    atlas = ForegroundAtlas(ctx.assets.fg_images)
    atlas.lookup(p.fg, p.h, p.w)
    return Measured(t, len(p), len(p), notes=f"{atlas.resizes} distinct resizes")


def composite(ctx: Context, device: str) -> Measured:
    """The composite kernel alone on one batch, warm atlas (placement tables built outside the timing)."""
    n = len(ctx.placements)
    if device == "cpu":
        prepared = ctx.compositor.prepare(ctx.placements)
        t = measure(lambda: ctx.compositor.composite(prepared), repeats=ctx.sizes.repeats)
        return Measured(t, n, n, notes=f"Numba on {ctx.cores} cores")
    from numba import cuda

    from engine.compose.compositor_cuda import CudaCompositor
    from kernels.composite_cuda import composite_batch_cuda

    comp = CudaCompositor(ctx.assets, ctx.depth, ctx.config(), capacity=n, slots=1)
    slot = comp.free.get()
    prepared = comp.prepare(ctx.placements)
    slot.d_table[:n].copy_to_device(prepared.table)
    outs = [slot.device[k][:n] for k in ("images", "masks", "depth")]

    def launch() -> None:
        composite_batch_cuda(comp.d_bg, comp.d_bg_depth, prepared.atlas, slot.d_table[:n], comp.threshold,
                             *outs, None, stream=0, host_table=prepared.table)

    t = measure(launch, repeats=ctx.sizes.repeats, sync=cuda.synchronize)
    comp.free.put(slot)
    return Measured(t, n, n, ceiling="device_copy_GBps", bytes_per_item=_per_sample_out(ctx), notes="Numba CUDA")


def compress(ctx: Context, device: str) -> Measured:
    """Lossless zstd of one batch's images, masks and depth in the store's chunks."""
    config = ctx.config()
    batch, n, chunk = ctx.batch, len(ctx.batch), config.samples_per_chunk
    arrays = (batch.images, batch.masks, batch.depth)
    raw = sum(a[:n].nbytes for a in arrays) / n
    if device == "cpu":
        import numcodecs

        zstd = numcodecs.Zstd(level=config.compression_level)
        pieces = [np.ascontiguousarray(a[i : i + chunk]) for a in arrays for i in range(0, n, chunk)]
        t = measure(lambda: [zstd.encode(p) for p in pieces], repeats=ctx.sizes.repeats)
        return Measured(t, n, n, notes=f"numcodecs zstd-{config.compression_level}, 1 thread")
    from numba import cuda

    from engine.store.device_codec import NvcompZstd

    n_chunks = n // chunk
    flat = [cuda.to_device(np.ascontiguousarray(a[: n_chunks * chunk]).reshape(-1).view(np.uint8)) for a in arrays]
    codec = NvcompZstd()
    t = measure(lambda: [codec.compress(f, f.size // n_chunks, n_chunks) for f in flat], repeats=ctx.sizes.repeats,
                sync=cuda.synchronize)
    return Measured(t, n_chunks * chunk, n, ceiling="device_copy_GBps", bytes_per_item=raw, notes="nvCOMP zstd")


def jpeg(ctx: Context, device: str) -> Measured:
    """JPEG quality 95 (4:4:4) of one batch's images."""
    images, n = ctx.batch.images, len(ctx.batch)
    if device == "cpu":
        from engine.store.jpeg import encode_jpeg_pillow

        parts = np.array_split(np.arange(n), ctx.cores)
        with ThreadPoolExecutor(ctx.cores) as pool:
            t = measure(lambda: list(pool.map(lambda ix: encode_jpeg_pillow(images[ix], 95), parts)),
                        repeats=ctx.sizes.repeats)
        return Measured(t, n, n, notes=f"Pillow on {ctx.cores} threads")
    import torch

    from engine.store.jpeg import encode_jpeg_nvimgcodec, encode_jpeg_torchvision, nvimgcodec_problem

    on_device = torch.as_tensor(images).to("cuda")
    if nvimgcodec_problem() is None:
        from nvidia import nvimgcodec

        encoder = nvimgcodec.Encoder()
        fn, notes = (lambda: encode_jpeg_nvimgcodec(on_device, 95, encoder)), "nvImageCodec"
    else:
        fn, notes = (lambda: encode_jpeg_torchvision(on_device, 95)), "torchvision nvJPEG"
    t = measure(fn, repeats=ctx.sizes.repeats, sync=torch.cuda.synchronize)
    return Measured(t, n, n, ceiling="device_copy_GBps", bytes_per_item=images[0].nbytes, notes=notes)


def write(ctx: Context, device: str) -> Measured:
    """One shard written as ``generate`` writes it: compression, the shard file, fsync."""
    from engine.store.zarr_store import ZarrWriter

    config, n = ctx.config(), len(ctx.batch)
    path = ctx.scratch / "write.zarr"
    with ZarrWriter.create(path, config, ctx.plan, ctx.assets, ctx.depth.background_depth(), ctx.depth.describe(),
                           overwrite=True) as writer:
        t = measure(lambda: writer.write_shard(0, ctx.batch), repeats=ctx.sizes.repeats)
    stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path, ignore_errors=True)
    return Measured(t, n, n, ceiling="disk_write_GBps", bytes_per_item=stored / n, notes="zstd, fsync'd")


@dataclass(frozen=True)
class GenerateRun:
    """One ``generate`` call: seconds of its writing phase (first shard started to store
    complete) and of the whole call, and its report (stage seconds, bottleneck)."""

    writing_s: float
    whole_s: float
    report: Any


def generate_runs(config, path: Path, device: str, runs: int) -> list[GenerateRun]:
    """``runs`` calls of ``generate`` writing ``config`` to ``path`` (overwritten each time)."""
    from engine.compose.generate import generate
    from engine.config import RunOptions

    out = []
    for _ in range(runs):
        marks: list[float] = []
        t0 = time.perf_counter()
        report = generate(config, path, RunOptions(overwrite=True, device=device),
                          progress=lambda *_: marks.append(time.perf_counter()))
        end = time.perf_counter()
        out.append(GenerateRun(end - marks[0], end - t0, report))
    return out


def generate_e2e(ctx: Context, device: str) -> Measured:
    """``generate`` end to end (lossless): its writing phase; imports, assets and
    planning excluded, as they are for the naive loop."""
    samples = ctx.sizes.generate_samples[device]
    config = ctx.config(limit=samples)
    path = ctx.scratch / f"generate-{device}.zarr"
    # warm-up: Numba's compilation or the CUDA context, the atlas, the page cache
    warmup = generate_runs(config, path, device, 1)[0].whole_s
    runs = generate_runs(config, path, device, ctx.sizes.repeats)
    stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path, ignore_errors=True)
    # the writer cost model of the run with the median writer CPU time: thread CPU time,
    # meaningful on a loaded machine where the wall-clock rate is not
    costs = sorted((r.report.writer_cost for r in runs if r.report.writer_cost is not None),
                   key=lambda c: c.total_ms_per_sample)
    cost = costs[len(costs) // 2] if costs else None
    notes = f"{samples} samples, zstd"
    if cost is not None:
        notes += f"; writers at {100 * cost.compression_share:.0f}% of compression ceiling"
    return Measured(Timing(warmup, tuple(r.writing_s for r in runs)), samples, config.shard_size,
                    ceiling="disk_write_GBps", bytes_per_item=stored / samples, notes=notes,
                    writer_cost=None if cost is None else cost.to_dict())


def _batches(make: Callable[[int, int], Any], per_epoch: int) -> Iterator[Any]:
    epoch = 0
    while True:
        for i in range(per_epoch):
            yield make(epoch, i)
        epoch += 1


def _loader(ctx: Context, kind: str, device: str) -> tuple[Iterator[tuple], Callable[[], None], str]:
    """An endless iterator of ``(x, depth, masks)`` batches from loader ``kind``, its closer, a note."""
    from engine.learn.epochs import EpochPlan

    s = ctx.sizes
    if kind == "resident":
        from engine.learn.device_cache import DeviceSplit

        resident = DeviceSplit.from_arrays(ctx.split, device, s.train_batch, 0)
        return _batches(resident.batch, resident.batches_per_epoch), lambda: None, "split on the device"
    if kind == "torch":
        from engine.learn.data import make_batch

        plan = EpochPlan(len(ctx.index), s.train_batch, seed=0)

        def make(epoch: int, i: int) -> tuple:
            rows, _ = plan.rows(epoch, i)
            return make_batch(ctx.split, rows, epoch * 2**20 + i, device)

        return _batches(make, plan.batches_per_epoch()), lambda: None, "make_batch, split in memory"
    from engine.learn.dali_loader import DaliLoader

    loader = DaliLoader(ctx.store, ctx.index, *ctx.model_sizes, s.train_batch, 0, device=device, split=ctx.split)
    return loader.from_step(0), loader.close, "DALI, lossless store"


def _loader_stage(kind: str, train: bool) -> Callable[[Context, str], Measured]:
    def run(ctx: Context, device: str) -> Measured:
        s = ctx.sizes
        batches, close, notes = _loader(ctx, kind, device)
        step = _train_step(ctx, device) if train else (lambda b: None)

        count = s.train_batches if train else s.loader_batches

        def some() -> None:
            for _ in range(count):
                step(next(batches))

        try:
            t = measure(some, repeats=s.repeats, warmup=1, sync=_sync(device))
        finally:
            close()
        items = count * s.train_batch
        if train:
            notes = f"coarse SGD step, {notes}"
            return Measured(t, items, s.train_batch, notes=notes)
        if device == "cuda" and kind != "resident":  # uint8 images cross PCIe
            return Measured(t, items, s.train_batch, "h2d_pinned_GBps", s.input_size**2 * 3, notes)
        return Measured(t, items, s.train_batch, notes=notes)

    run.__doc__ = (f"{'A coarse-network training step fed by' if train else 'Batches alone from'} "
                   f"the {kind} loader.")
    return run


def _train_step(ctx: Context, device: str) -> Callable[[tuple], None]:
    """One SGD step of the coarse network (bf16 autocast on a GPU, fp32 on the CPU)."""
    import torch

    from engine.learn.evaluate import autocast, autocast_dtype
    from engine.learn.metrics import scale_invariant_loss
    from engine.learn.model import EigenDepth, ModelConfig, param_groups

    (h, w), _ = ctx.model_sizes
    model = EigenDepth(ModelConfig(height=h, width=w)).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(param_groups(model, "coarse", 1.0), momentum=0.9)
    dtype = autocast_dtype("auto", torch.device(device).type)

    def step(b: tuple) -> None:
        x, depth, _ = b
        with autocast(torch.device(device).type, dtype):
            log_pred = model(x, "coarse")
        loss = scale_invariant_loss(log_pred.float(), depth, depth > 0, 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


@dataclass(frozen=True)
class Stage:
    """One entry of the registry.

    Attributes:
        name: what ``--stages`` names (a prefix before ``-`` picks a family: ``loader``).
        measures: one line for the README and ``--help``.
        devices: where it exists.
        run: the measuring function.
    """

    name: str
    measures: str
    devices: tuple[str, ...]
    run: Callable[[Context, str], Measured]


STAGES: tuple[Stage, ...] = (
    Stage("resize", "foreground resize: a cold atlas filled for one shard's placements", ("cpu",), resize),
    Stage("composite", "the composite kernel alone, one shard, warm atlas", DEVICES, composite),
    Stage("compress", "lossless zstd of one shard's chunks (CPU one thread; GPU nvCOMP)", DEVICES, compress),
    Stage("jpeg", "JPEG q95 of one shard's images (CPU Pillow on every core; GPU nvImageCodec/nvJPEG)", DEVICES, jpeg),
    Stage("write", "one shard written: compression, shard file, fsync", ("cpu",), write),
    Stage("generate", "generate end to end, lossless: the writing phase", DEVICES, generate_e2e),
    Stage("loader-resident", "training batches from the device-resident split", DEVICES, _loader_stage("resident", False)),
    Stage("loader-torch", "training batches from the torch loader (make_batch)", DEVICES, _loader_stage("torch", False)),
    Stage("loader-dali", "training batches from the DALI loader", DEVICES, _loader_stage("dali", False)),
    Stage("train-resident", "coarse training step fed by the device-resident split", DEVICES,
          _loader_stage("resident", True)),
    Stage("train-torch", "coarse training step fed by the torch loader", DEVICES, _loader_stage("torch", True)),
    Stage("train-dali", "coarse training step fed by the DALI loader", DEVICES, _loader_stage("dali", True)),
)


def select(names: list[str] | None) -> list[Stage]:
    """The registry's stages named in ``names`` (exact names or families like ``loader``), all for ``None``.

    Raises:
        ValueError: a name that matches no stage (the message lists them).
    """
    if not names:
        return list(STAGES)
    chosen = []
    for name in names:
        found = [s for s in STAGES if s.name == name or s.name.split("-")[0] == name]
        if not found:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")
        chosen += [s for s in found if s not in chosen]
    return [s for s in STAGES if s in chosen]


def problem(stage: Stage, device: str) -> str | None:
    """Why ``stage`` cannot run on ``device`` here, or ``None`` when it can."""
    if device not in stage.devices:
        return f"no {device} variant"
    if stage.name.endswith("-dali"):
        try:
            import nvidia.dali  # noqa: F401
        except ImportError:
            return "DALI is not installed (nvidia-dali-cuda130)"
    if device == "cuda" and stage.name == "compress":
        from engine.store.device_codec import nvcomp_problem

        return nvcomp_problem()
    return None

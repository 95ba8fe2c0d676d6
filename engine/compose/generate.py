"""``generate``: assets → plan → composite → Zarr, shard by shard.

The main thread composites shard ``k + 1`` (Numba on every core, or the GPU,
whose results copy back asynchronously) while a small pool compresses and
writes shard ``k`` (``--compressor hybrid``: two pools, the GPU's nvCOMP and
the CPU's zstd, each shard to the one with room); at most ``writer_threads``
finished shards wait in memory, so memory stays bounded whatever N is. A shard
is recorded as done only after its files are durable, so an interrupted run
(kill -9 included) is completed by ``--resume`` to the same bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.assets.heights import read_heights_file
from engine.assets.images import AssetSet, builtin_assets, load_backgrounds, load_depth_maps, load_foregrounds
from engine.compose.compositor import HOST_TABLES, Batch, Compositor, Prepared, blend_spec
from engine.compose.compositor_cuda import CudaCompositor, device_name, resolve_device
from engine.compose.depth import make_depth_source
from engine.compose.hardware import (
    choose_slots,
    choose_writer_threads,
    check_jpeg_kernels,
    detect_hardware,
    hybrid_writers,
    resolve_compressor,
    resolve_jpeg_encoder,
    route_shard,
)
from engine.compose.plan import ObjectPlacements, Placements, SamplePlan, plan_for
from engine.config import GenerateConfig, RunOptions
from engine.distributed import Ranks, assigned_shards, barrier, gather_floats
from engine.errors import ConfigError, StoreError
from engine.store.device_codec import ChunkCompressor, NvcompZstd
from engine.store.location import Mirror, StoreLocation, locate, remote_exists, working_folder
from engine.store.stats import ChannelHistogram, finish_stats
from engine.store.writer_cost import STATISTICS, WriterCostReport, cost_report, threads_cpu_seconds
from engine.store.zarr_store import (
    WholeSources,
    ZarrWriter,
    discard_old_store,
    input_records,
    plan_space,
    read_attrs,
)

log = logging.getLogger(__name__)

#: called with (samples just finished, samples done in total, samples in the store)
ProgressCallback = Callable[[int, int, int], None]


@dataclass(frozen=True)
class GenerateReport:
    """Summary of one ``generate`` run."""

    path: Path | str
    n_samples: int
    samples_written: int
    shards_written: int
    resumed: bool
    seconds: float
    skipped: list[str]
    device: str
    #: seconds per pipeline stage, summed over the threads that ran it (see :func:`bottleneck`)
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    writer_threads: int = 0
    #: what compressed the lossless arrays (see :func:`compressor_name`) and encoded JPEGs
    compressor: str = ""
    #: shards this run wrote, by what compressed their lossless arrays (``hybrid``: both)
    compressed_shards: dict[str, int] = dataclasses.field(default_factory=dict)
    jpeg_encoder: str = ""
    #: seconds of the store-writing phase: from the first progress call (assets,
    #: depth source and store set up) to the end; ``seconds`` is the whole call
    write_seconds: float = 0.0
    #: this process among the ranks writing the store (``rank`` of ``world``)
    rank: int = 0
    world: int = 1
    #: ``(samples written, seconds writing)`` of every rank of this process's torchrun
    #: group, in rank order (just this process's without torchrun)
    rank_figures: tuple[tuple[int, float], ...] = ()
    #: the store was complete when this process finished (all ranks' shards written)
    complete: bool = False
    #: the writers' thread CPU time per sample, step by step (``None``: nothing written)
    writer_cost: WriterCostReport | None = None

    @property
    def images_per_second(self) -> float:
        """Samples written per second of the whole call (start-up included)."""
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def writing_images_per_second(self) -> float:
        """Samples written per second of the store-writing phase (what the progress bar shows)."""
        return self.samples_written / self.write_seconds if self.write_seconds > 0 else 0.0


def load_assets(config: GenerateConfig) -> AssetSet:
    """The built-in assets, or the user's folders (with ``--fg``'s heights file, if any), as ``config`` says."""
    if config.builtin:
        return builtin_assets(
            config.seed, config.builtin_backgrounds, config.builtin_foregrounds, config.height, config.width
        )
    bg, bg_files, bad_bg = load_backgrounds(
        config.bg_dir, config.height, config.width, config.max_pixels, config.on_bad_input  # type: ignore[arg-type]
    )
    fg, fg_files, bad_fg = load_foregrounds(
        config.fg_dir, config.fg_mask_dir, config.height, config.width,  # type: ignore[arg-type]
        config.max_pixels, config.on_bad_input,
    )
    assets = AssetSet(bg_images=bg, fg_images=fg, bg_files=bg_files, fg_files=fg_files, skipped=bad_bg + bad_fg)
    if config.depth_maps_dir is not None:
        maps, map_files, kept, bad_maps = load_depth_maps(
            config.depth_maps_dir, bg_files, config.height, config.width, config.max_pixels,
            config.depth_png_scale, config.on_bad_input,
        )
        assets = AssetSet(  # backgrounds whose map was bad are left out with it
            bg_images=bg[kept], fg_images=fg, bg_files=[bg_files[i] for i in kept], fg_files=fg_files,
            bg_depth=maps, skipped=bad_bg + bad_fg + bad_maps, depth_files=map_files,
        )
    heights = read_heights_file(config.fg_dir)  # type: ignore[arg-type]
    if heights is not None:
        assets = dataclasses.replace(assets, heights=heights[0], heights_file=heights[1])
    return assets


def _preflight(config: GenerateConfig, plan: SamplePlan, device: str, writer_threads: int, force: bool) -> None:
    """Warn (logging) about what the run will cost and what the plan cannot give;
    refuse a CPU run that would not fit in memory (:mod:`engine.compose.preflight`)."""
    from engine.compose.preflight import check_memory, scale_range_warning, time_estimate

    lines = [scale_range_warning(plan), time_estimate(config, plan.n_samples, device)]
    if device != "cuda":  # the GPU path sizes its batches in flight itself (choose_slots)
        lines.append(check_memory(config, plan.n_samples, config.shard_size, writer_threads, force=force))
    for line in lines:
        if line:
            log.warning(line)


def generate(
    config: GenerateConfig,
    out: str | Path,
    run: RunOptions | None = None,
    progress: ProgressCallback | None = None,
    notice: Callable[[str], None] | None = None,
    ranks: Ranks | None = None,
) -> GenerateReport:
    """Generate (or complete, with ``run.resume``) the store at ``out``.

    With ``ranks`` of several processes (torchrun, ``--shard i/n``), this one
    writes only its shards (:func:`engine.distributed.assigned_shards`); see
    :func:`open_shared` for how they share the store.

    ``notice`` receives one-line messages for the user before the work starts
    (the estimated store size and the free space).

    Raises:
        InputError: an input file or folder is unusable.
        ConfigError: options that cannot work together.
        StoreError: the output exists, is incompatible, or cannot be written.
    """
    run = run or RunOptions()
    t0 = time.perf_counter()
    device = resolve_device(run.device)
    hw = check_jpeg_kernels(config, device, detect_hardware(device))
    config = resolve_jpeg_encoder(config, device, hw)
    blend = blend_spec(config)  # a blending mode that cannot run fails here, before any output exists
    ranks = ranks or Ranks()
    where = locate(out)
    out = remote_working_folder(where, run, ranks) if where.remote else where.local  # type: ignore[assignment]
    if ranks.leader and device != "cuda":  # before the assets are drawn or read (slow at large sizes)
        from engine.compose.preflight import check_memory, known_samples

        known = known_samples(config)
        if known is not None:
            check_memory(config, known, config.shard_size, run.writer_threads or 2, force=run.force)
    assets = load_assets(config)
    depth = make_depth_source(config, assets, device)
    compressor = resolve_compressor(run.compressor, device, config, hw, depth.per_composite)
    writer_threads = choose_writer_threads(run, device, compressor, hw, config.image_codec)
    plan = plan_for(config, assets, depth)
    if ranks.leader:  # before anything is written: a refusal leaves no store behind
        _preflight(config, plan, device, writer_threads, run.force)
    joins = ranks.shared and ranks.world > ranks.group_size  # --shard: other jobs may have made the store
    if ranks.leader and (not out.exists() or run.overwrite or run.resume or joins):
        space = plan_space(out, config, plan.n_samples, run.force, run.resume or joins)  # raises when too small
        if notice:
            notice(space)

    writer = None
    if ranks.shared:
        writer, resumed = open_shared(out, config, plan, assets, depth, run, ranks)
    elif run.resume and out.exists():
        sources = WholeSources(plan, assets, depth.background_depth)
        writer = ZarrWriter.open_resume(out, config, input_records(assets, config), run.resume_check, sources=sources)
    if not ranks.shared:
        resumed = writer is not None
    if writer is None:
        writer = ZarrWriter.create(
            out, config, plan, assets, depth.background_depth(), depth.describe(),
            overwrite=run.overwrite or run.resume,
        )
    if where.remote:  # every durable file is copied to the URL; the store's files first, its progress last
        writer.mirror = Mirror(out, where.url)  # type: ignore[arg-type]
        writer.mirror.put_tree(missing_only=resumed)
    mine = set(assigned_shards(writer.layout.n_shards, ranks))
    todo = [k for k in writer.todo() if k in mine]
    total = writer.layout.n_samples
    share = sum(b - a for a, b in map(writer.layout.shard_range, mine))  # this rank's samples
    done_samples = share - sum(b - a for a, b in map(writer.layout.shard_range, todo))
    log.info("%s: %d samples in %d shards, %d to write%s", out, total, writer.layout.n_shards, len(todo),
             f" (rank {ranks.rank} of {ranks.world})" if ranks.shared else "")
    if config.image_codec != "jpeg" and device != "cuda" and blend is not None:
        # after a blending post-pass the writers count the host images: load the counting kernel
        # (Numba's cache) now, with the other start-up work, not in the first shard's write
        # (writer cost model: per-sample steps)
        ChannelHistogram().add(np.zeros((1, 1, 1, 3), np.uint8))
    t_write = time.perf_counter()
    if progress:
        progress(0, done_samples, share)

    device_compressor = make_device_compressor() if compressor in ("nvcomp", "hybrid") else None
    hybrid = compressor == "hybrid"
    # hybrid: each shard's compressor is chosen as it launches (route_shard); both are recorded
    cpu_name = compressor_name(None, config)
    names = {"gpu": compressor_name(device_compressor, config), "cpu": cpu_name}
    compressed_by = f"hybrid ({names['gpu']} + {cpu_name})" if hybrid else compressor_name(device_compressor, config)
    jpeg_encoder = config.jpeg_encoder if config.image_codec == "jpeg" else None
    for name in (names["gpu"], cpu_name) if hybrid else (compressed_by,):
        writer.record_writer(name, jpeg_encoder)
    cpu_writers, gpu_writers = hybrid_writers(run, hw) if hybrid else (writer_threads, 0)
    # channel statistics of lossless stores: each shard's counts come from the GPU with
    # its batch, or the writers count the host images (JPEG stores: left to `info --stats`)
    counted: ChannelHistogram | None = ChannelHistogram() if config.image_codec != "jpeg" else None
    if device == "cuda":
        log.info("compositing on %s; compressing on the %s", device_name(),
                 {"nvcomp": "GPU (nvCOMP)", "hybrid": f"GPU (nvCOMP, {gpu_writers} writers) and the CPU "
                  f"({cpu_writers} writers), shard by shard"}.get(compressor, "CPU"))
        lay = writer.layout
        slot_bytes = lay.shard_size * lay.height * lay.width * (3 + 1 + 2 + int(config.save_alpha) + 2 * int(config.multi_object))
        host_bytes = 0 if compressor == "nvcomp" else slot_bytes  # at most every array comes back raw
        compositor: Compositor = CudaCompositor(
            assets, depth, config, capacity=lay.shard_size,
            slots=choose_slots(writer_threads, slot_bytes, hw, host_bytes), compressor=device_compressor, hybrid=hybrid,
            count_images=counted is not None,
        )
    else:
        # the compositor counts the statistics from the backgrounds' counts and the pixels
        # the objects changed (without a blending post-pass), the writers only add them up
        compositor = Compositor(assets, depth, config, count_images=counted is not None)
    written = 0
    parts: dict[int, ChannelHistogram] = {}
    pending: deque[tuple[int, int, Future[None]]] = deque()
    side_of: dict[int, str] = {}  # hybrid: "cpu" or "gpu", per shard in flight
    compressed_shards: Counter[str] = Counter()

    clock = compositor.clock

    def write(index: int, batch: Batch) -> None:
        try:
            with clock(WAIT_RESULTS):
                batch.ready()  # GPU batches may still be copying back
            with clock(WRITE):
                with writer.cost.step(STATISTICS):
                    if counted is not None and batch.histogram is not None:
                        parts[index] = ChannelHistogram().add_counts(batch.histogram, len(batch))
                    elif counted is not None and batch.images is not None:
                        parts[index] = ChannelHistogram().add(batch.images)
                writer.write_shard(index, batch)
        finally:
            batch.release()

    def finish_next() -> None:
        """Finish the oldest shard; hybrid: the first written (a slow side must not hold up the other)."""
        nonlocal written, done_samples, counted
        entry = pending[0]
        if hybrid and not entry[2].done():
            with clock(WAIT_WRITERS):
                wait([f for _, _, f in pending], return_when=FIRST_COMPLETED)
            entry = next(e for e in pending if e[2].done())
        pending.remove(entry)
        index, n, future = entry
        with clock(WAIT_WRITERS):
            future.result()  # re-raises a write error here, in the main thread
        part = parts.pop(index, None)
        side = side_of.pop(index, "gpu" if device_compressor is not None else "cpu")
        compressed_shards[names[side]] += 1
        writer.mark_done(index, None if part is None else {"counts": part.counts.tolist(), "samples": part.samples},
                         compressor=names[side] if hybrid else None)
        counted = None if counted is None or part is None else counted.merge(part)
        written += n
        done_samples += n
        if progress:
            progress(n, done_samples, share)

    # several objects per image: each shard's objects, else its placements
    shard_plan = plan.objects if config.multi_object else plan.placements

    def busy(side: str) -> int:
        return sum(1 for index, _, future in pending if side_of.get(index) == side and not future.done())

    def launch(work: Placements | ObjectPlacements | Prepared, index: int) -> Batch:
        if not hybrid:
            return compositor.composite(work)
        side_of[index] = route_shard(busy("cpu"), busy("gpu"), cpu_writers, gpu_writers)
        return compositor.composite(work, on_device=side_of[index] == "gpu")  # type: ignore[call-arg]

    def prepare(i: int) -> Prepared:
        return compositor.prepare(shard_plan(*writer.layout.shard_range(todo[i])))

    # On the GPU the host side of shard k+1 (placement table, new atlas entries)
    # is prepared in a thread while shard k composites, off the main thread's
    # path; on the CPU the kernel already takes every core.
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgbg-prepare") if device == "cuda" else None
    # hybrid: each side writes on its own threads, so nvCOMP's per-thread codecs (device
    # memory each) stay as few as its writers
    gpu_pool = ThreadPoolExecutor(max_workers=gpu_writers, thread_name_prefix="fgbg-writer-gpu") if gpu_writers else None
    cpu_threads = cpu_writers if hybrid else writer_threads
    with closing(compositor), writer, ThreadPoolExecutor(max_workers=cpu_threads, thread_name_prefix="fgbg-writer") as pool:
        try:
            upcoming = ahead.submit(prepare, 0) if ahead and todo else None
            for i, index in enumerate(todo):
                start, stop = writer.layout.shard_range(index)
                with clock(MAIN):
                    if upcoming is None:
                        batch = launch(shard_plan(start, stop), index)
                    else:
                        with clock(WAIT_HOST):
                            prepared = upcoming.result()
                        upcoming = ahead.submit(prepare, i + 1) if i + 1 < len(todo) else None
                        batch = launch(prepared, index)
                on = gpu_pool if gpu_pool is not None and side_of.get(index) == "gpu" else pool
                pending.append((index, stop - start, on.submit(write, index, batch)))
                while len(pending) > writer_threads:
                    finish_next()
            while pending:
                finish_next()
            # read before the pools shut down: their threads' whole CPU time, against the steps'
            writers_cpu = threads_cpu_seconds([pool, writer._pool, *([gpu_pool] if gpu_pool else [])])
        except BaseException:
            if writer.replaced is not None:  # --overwrite: nothing of the old store is lost
                log.warning("the store being replaced is kept at %s until %s is complete "
                            "(--resume completes it; then delete the old one)", writer.replaced, out)
            raise
        finally:
            for _, _, future in pending:
                future.cancel()
            if ahead is not None:
                ahead.shutdown(wait=True, cancel_futures=True)
            if gpu_pool is not None:
                gpu_pool.shutdown(wait=True, cancel_futures=True)
    write_seconds = time.perf_counter() - t_write
    writer_cost = cost_report(writer.cost.snapshot(), written, writers_cpu)
    figures = tuple((int(n), s) for n, s in gather_floats(ranks, [float(written), write_seconds]))
    if ranks.shared:
        complete = finish_shared(writer, ranks, config)
    else:
        writer.finish_replacing()  # every shard written: the store it replaces can go
        complete = len(writer.done) == writer.layout.n_shards
        if complete:
            writer.finalise()  # a store that ranks started: fold their progress markers in
        if counted is not None and complete:
            finish_stats(out, counted, earlier_shards=set(range(writer.layout.n_shards)) - set(todo))
    if writer.mirror is not None:
        writer.put_attrs()  # the statistics
        if complete:  # the URL holds the whole store: the working copy can go
            shutil.rmtree(out, ignore_errors=True)
            log.info("%s complete; deleted its working copy %s", where, out)
    return GenerateReport(
        path=out if not where.remote else where.text, n_samples=total, samples_written=written, shards_written=len(todo), resumed=resumed,
        seconds=time.perf_counter() - t0, skipped=[f"{b.path}: {b.reason}" for b in assets.skipped],
        device=device, stage_seconds=dict(clock.seconds), write_seconds=write_seconds,
        writer_threads=writer_threads, compressor=compressed_by, jpeg_encoder=config.jpeg_encoder,
        compressed_shards=dict(compressed_shards),
        rank=ranks.rank, world=ranks.world, rank_figures=figures, complete=complete, writer_cost=writer_cost,
    )


def remote_working_folder(where: StoreLocation, run: RunOptions, ranks: Ranks) -> Path:
    """The local folder a store at a URL is built in (``run.work_dir``, else
    under ``~/.cache/fgbg/work``), after checking the URL as ``--overwrite``
    and ``--resume`` ask.

    Raises:
        ConfigError: several ranks with a URL.
        StoreError: the URL holds a store (without ``--overwrite``/``--resume``),
            or ``--resume`` without the working copy of the interrupted run.
    """
    if ranks.shared:
        raise ConfigError(f"{where}: several ranks write to a local or mounted shared folder, not to a URL")
    url = where.url or ""
    folder = working_folder(url, run.work_dir)
    exists = remote_exists(url)
    if run.overwrite:
        Mirror(folder, url).remove_existing()
        shutil.rmtree(folder, ignore_errors=True)
    elif exists and not run.resume:
        raise StoreError(f"{where} exists: use --overwrite to replace it or --resume to complete it")
    elif run.resume and exists and not folder.exists():
        raise StoreError(f"{where}: resuming needs the working copy of the interrupted run, {folder} "
                         "(give its --work-dir), or start again with --overwrite")
    elif not exists:
        shutil.rmtree(folder, ignore_errors=True)  # left by a run whose store never reached the URL
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: building in %s, each file copied as soon as it is durable", where, folder)
    return folder


def open_shared(
    out: Path, config: GenerateConfig, plan: SamplePlan, assets: AssetSet, depth, run: RunOptions, ranks: Ranks,
) -> tuple[ZarrWriter, bool]:
    """The writer of one rank of several writing ``out`` at once, and whether
    the store existed (a resume).

    Rank 0 of a torchrun group creates the store (metadata, assets,
    attributes) while the group waits at a barrier; ``--shard`` jobs, which
    cannot wait for each other, each create it aside and rename it into place
    (:meth:`ZarrWriter.create_shared`: the first wins, the others open it) —
    so a ``--shard`` job joins a store made with the same options as if
    resuming it. Each rank then checks only its own done shards.

    Raises:
        ConfigError: ``--overwrite`` with ``--shard`` (each job would replace the others' store).
        StoreError: the store exists (without ``--resume`` under torchrun alone), or differs.
    """
    joins = ranks.world > ranks.group_size
    if run.overwrite and joins:
        raise ConfigError("--overwrite with --shard: each job would replace the others' store; "
                          "delete the old store first")
    existed = out.exists()
    replaced = None
    if ranks.leader:
        bg_depth, described = depth.background_depth(), depth.describe()
        if run.overwrite:
            made = ZarrWriter.create(out, config, plan, assets, bg_depth, described, overwrite=True)
            replaced = made.replaced
            made.close()
            existed = False
        elif existed and not (run.resume or joins):
            raise StoreError(f"{out} exists: use --overwrite to replace it or --resume to complete it")
        else:
            existed = not ZarrWriter.create_shared(out, config, plan, assets, bg_depth, described) and existed
    barrier(ranks)  # torchrun: the store exists for every rank from here on
    mine = assigned_shards(-(-plan.n_samples // config.shard_size), ranks)
    writer = ZarrWriter.open_resume(out, config, input_records(assets, config), run.resume_check, owned=mine)
    if writer is None:
        raise StoreError(f"{out}: its creation never finished (a killed run); delete it and run again")
    writer.shared = True
    writer.replaced = replaced
    return writer, existed


def finish_shared(writer: ZarrWriter, ranks: Ranks, config: GenerateConfig) -> bool:
    """After this rank's shards: the torchrun group waits for all its ranks,
    then its rank 0 completes the store if every shard of every rank is done
    (progress markers folded into the attributes, statistics from their
    histograms; ``--shard`` jobs: whichever finishes last). Returns whether
    the store is complete.
    """
    barrier(ranks)
    if not ranks.leader:
        return False
    markers = writer.finalise()
    if not markers:  # shards missing, or another job completed it first
        return bool(read_attrs(writer.root)["progress"]["complete"])
    discard_old_store(writer.replaced)
    writer.replaced = None
    if config.image_codec != "jpeg":
        counted = ChannelHistogram()
        for m in markers.values():
            if m.get("histogram") is not None:
                counted.merge(ChannelHistogram(np.asarray(m["histogram"]["counts"], np.int64), m["histogram"]["samples"]))
        earlier = set(range(writer.layout.n_shards)) - {k for k, m in markers.items() if m.get("histogram")}
        finish_stats(writer.root, counted, earlier_shards=earlier)
    return True


def make_device_compressor() -> ChunkCompressor:
    """The GPU chunk compressor (a seam: tests swap in the host stand-in)."""
    return NvcompZstd()


def compressor_name(device_compressor: ChunkCompressor | None, config: GenerateConfig) -> str:
    """What the store records as having compressed its lossless arrays."""
    if config.image_codec == "none":
        return "none"
    if device_compressor is not None:
        return device_compressor.name
    return f"cpu-zstd-{config.compression_level}"


#: stage names of the report (the compositor adds its own inside MAIN)
MAIN = "main thread: compositing a shard (all of it)"
WAIT_WRITERS = "main thread: waiting for the oldest shard's write"
WAIT_HOST = "main thread: waiting for the next shard's host tables"
WAIT_RESULTS = "writers: waiting for GPU results (kernel + copy back)"
WRITE = "writers: encode + compress + write + fsync"


def bottleneck(report: GenerateReport) -> str:
    """One line saying which stage limits a run, from its stage times.

    The main thread composites shard k+1 while writers finish shard k: if the
    main thread mostly waits for writers, they limit (and, within them, either
    the GPU's results or the compression and disk); otherwise compositing does.
    """
    s = report.stage_seconds
    main = s.get(MAIN, 0.0) + s.get(WAIT_WRITERS, 0.0)
    if main <= 0:
        return "nothing was written"
    waiting = s.get(WAIT_WRITERS, 0.0) + s.get("wait for a free GPU buffer (all held by writers)", 0.0)
    busy = s.get(WAIT_RESULTS, 0.0) + s.get(WRITE, 0.0)
    if s.get(WAIT_HOST, 0.0) / main >= 0.25:
        return (f"host tables limit: the main thread waited {100 * s[WAIT_HOST] / main:.0f}% of the time for the "
                f"next shard's placement table + atlas (prepared in a thread, {s.get(HOST_TABLES, 0.0):.1f} s in all)")
    if waiting / main < 0.25:
        host = s.get(HOST_TABLES, 0.0)
        return (f"compositing limits: the main thread waited on writers {100 * waiting / main:.0f}% of the time; "
                f"host placement + atlas took {100 * host / main:.0f}%")
    on_gpu = s.get(WAIT_RESULTS, 0.0) / busy if busy else 0.0
    what = "the GPU's results (kernel + copy back)" if on_gpu > 0.5 else "encoding + compression + disk"
    threads = f"{report.writer_threads} thread{'s' if report.writer_threads != 1 else ''}"
    return (f"writers limit ({threads}): the main thread waited on them {100 * waiting / main:.0f}% "
            f"of the time; they spent {100 * on_gpu:.0f}% waiting for GPU results and "
            f"{100 * (1 - on_gpu):.0f}% encoding, compressing and writing -> {what}")

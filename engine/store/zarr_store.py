"""The Zarr v3 store: layout, creation, shard writes, resume and inspection.

Layout (a documented contract; see docs/store.md)::

    images        (N, H, W, 3) uint8        composites (lossless codecs)
    images_jpeg   (N,) bytes                one JPEG file per sample (--image-codec jpeg)
    masks         (N, H, W) uint8           0/255
    depth         (N, H, W) float16         metres
    alpha         (N, H, W) uint8           soft alpha (--save-alpha)
    instances     (N, H, W) uint16          instance ids, 0 = background (--objects-per-image MAX > 1)
    meta/{bg_index, fg_index, flip, x, y, h, w, scale}   (N,)
    meta/object_offset (N + 1,) int64, meta/objects/{fg_index, x, y, h, w, flip,
        depth, visible_pixels} (M,), meta/objects/box (M, 4) int32
        (several objects: sample i's objects are rows object_offset[i]:object_offset[i + 1])
    assets/bg (NB, H, W, 3) uint8, assets/bg_depth (NB, H, W) float16,
    assets/fg (NF, Hf, Wf, 4) uint8 (zero-padded), assets/fg_size (NF, 2) int32
    zarr.json     attributes["fgbg"]: format, versions, config, inputs, depth, progress

Per-sample arrays are sharded along N (``shard_size`` samples per shard file,
``chunk_size`` per chunk inside it) so 400k samples stay a few hundred files.
A shard is the unit of work and of resume: its files are written (zarr writes
each file atomically: temp file + rename), fsynced, and only then is the shard
recorded in ``progress.shards_done``. Metadata is the plan, which is known up
front, so it is written whole when the store is created; the per-object results
(several objects per image) are written with each shard, or, when several
processes write the store, into side files that the last one copies in
(:mod:`engine.store.progress`).

This module imports zarr and numpy only (``info`` must stay fast).
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import __version__
from engine.config import GenerateConfig
from engine.errors import StoreError
from engine.store.attrs import ATTRS_KEY, StoreInfo, describe_array, read_attrs  # noqa: F401 (their old home)
from engine.store.jpeg import encode_jpeg_fgbg, encode_jpeg_pillow
from engine.store.location import Mirror, inspect_remote, locate
from engine.store.progress import (
    encode_objects,
    fold_markers,
    marker_dir,
    objects_path,
    read_markers,
    read_objects,
    remove_markers,
    write_marker,
)
from engine.store.shard_codec import encode_shard_parts, shard_parts, shard_spec
from engine.store.verify import OBJECT_RESULT_ARRAYS, StoreShards, files_damaged
from engine.store.writer_cost import ASSEMBLE, COMPRESS, FILE_WRITE, JPEG, OBJECTS, ZARR_WRITE, WriterCost

if TYPE_CHECKING:  # pragma: no cover
    from engine.assets.images import AssetSet
    from engine.store.written import SampleMeta, ShardContent

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FIELDS = ("bg_index", "fg_index", "flip", "x", "y", "h", "w", "scale")
#: samples per metadata chunk, and chunks per metadata shard
META_CHUNK = 65536
META_CHUNKS_PER_SHARD = 64
#: per-object fields known only after compositing, written shard by shard (unsharded chunks of this many objects)
OBJECT_RESULTS = {"depth": np.float32, "visible_pixels": np.int32, "box": np.int32}
OBJECT_CHUNK = 16384


def _zarr():
    import zarr

    return zarr


#: zarr's runtime setting for every array fgbg writes: a chunk of fill values only
#: is written too, so that a missing chunk is always damage (verify, readers)
WRITE_ALL_CHUNKS = {"write_empty_chunks": True}


def checksum_codecs() -> list[Any]:
    """What ends every array's codecs: Zarr v3's ``crc32c`` (after the compressor),
    a checksum on every chunk that zarr-python, tensorstore and fgbg's readers check."""
    from zarr.codecs import Crc32cCodec

    return [Crc32cCodec()]


def lossless_codecs(codec: str, level: int) -> list[Any]:
    """Compressors for a lossless array, each chunk ending with its CRC32C
    (:func:`checksum_codecs`; with ``codec="none"`` only that: raw bytes + checksum).

    Plain Zstandard for every array: measured on built-in composites
    (``benchmarks/bench_codecs.py``, RESULTS.md) it beat Blosc with byte- or
    bit-shuffle on ratio for images, masks *and* float16 depth, at 450 MB/s
    per core (level 3). Chunks hold consecutive samples, which share a
    background, so Zstandard's long matches find it again across the chunk.
    """
    from zarr.codecs import ZstdCodec

    if codec == "none":
        return checksum_codecs()
    return [ZstdCodec(level=level), *checksum_codecs()]


@dataclass(frozen=True)
class StoreLayout:
    """Sizes that fix the store's files."""

    n_samples: int
    height: int
    width: int
    shard_size: int
    chunk_size: int

    @property
    def n_shards(self) -> int:
        return -(-self.n_samples // self.shard_size)

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_size
        return start, min(start + self.shard_size, self.n_samples)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_files(root: Path) -> int:
    """Delete temp files left by writes that were killed (zarr's ``*.partial``)."""
    n = 0
    for path in root.rglob("*.partial"):
        path.unlink(missing_ok=True)
        n += 1
    return n


class ZarrWriter:
    """Writes one store: created fresh, or reopened to resume.

    Use :meth:`create` or :meth:`open_resume`; then :meth:`write_shard` (any
    thread, one call per shard) and :meth:`mark_done` (one thread).
    """

    def __init__(self, root: Path, group: Any, layout: StoreLayout, config: GenerateConfig, done: set[int]) -> None:
        self.root = root
        self.group = group
        self.layout = layout
        self.config = config
        self.done = set(done)
        #: several processes write this store (``generate --shard``, torchrun): finished
        #: shards are recorded as marker files, not in the attributes (engine/store/progress.py)
        self.shared = False
        self._writer_entry: dict[str, Any] | None = None
        #: copies each durable file to the store's URL (engine/store/location.py); ``None``: a local store
        self.mirror: Mirror | None = None
        #: the store this one replaces (``--overwrite``), moved aside until this one is complete
        self.replaced: Path | None = None
        zarr = _zarr()
        self.arrays = {name: zarr.open_array(root / name, mode="r+", config=WRITE_ALL_CHUNKS)
                       for name in data_array_names(config)}
        # Shards of fixed-size arrays are encoded here, chunks compressed on every
        # core (engine/store/shard_codec.py); variable-length JPEG bytes go through zarr.
        self.specs = {name: shard_spec(json.loads((root / name / "zarr.json").read_text())) for name in self.arrays}
        #: several objects per image: the per-object results, written under a lock (shards share their chunks)
        self.object_arrays: dict[str, Any] = {}
        self.object_offset: np.ndarray | None = None
        self._objects_lock = threading.Lock()
        if config.multi_object:
            self.object_offset = np.asarray(zarr.open_array(root / "meta" / "object_offset", mode="r")[:], np.int64)
            self.object_arrays = {name: zarr.open_array(root / "meta" / "objects" / name, mode="r+",
                                                        config=WRITE_ALL_CHUNKS) for name in OBJECT_RESULTS}
        cores = usable_cores()
        self._pool = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="fgbg-compress")
        #: chunks go to the pool in runs, a few per thread: one task per chunk cost more in
        #: futures, wake-ups and context switches than compressing a small chunk
        self._chunk_map = grouped_map(self._pool, 2 * cores)
        #: thread CPU time of each step of :meth:`write_shard` (engine/store/writer_cost.py)
        self.cost = WriterCost()

    def close(self) -> None:
        """Stop the compression threads."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ZarrWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creation -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        config: GenerateConfig,
        plan: SampleMeta,
        assets: AssetSet,
        bg_depth: np.ndarray,
        depth_info: dict[str, Any],
        overwrite: bool = False,
    ) -> ZarrWriter:
        """Create the store: arrays, metadata (the whole plan), assets, attributes.

        Args:
            path: output folder.
            config: generation config (saved in the attributes).
            plan: every sample's placement (:class:`~engine.store.written.SampleMeta`; compose fills it).
            assets: inputs (saved under ``assets/`` with their names and hashes).
            bg_depth: ``(NB, H, W) float32`` background depth used.
            depth_info: the depth source's description.
            overwrite: replace an existing fgbg store at ``path``: it is moved
                aside (``writer.replaced``) and deleted by :meth:`finish_replacing`
                once every shard of the new store is written, so a run that
                fails or is interrupted loses nothing.
        """
        root = Path(path)
        old = prepare_output(root, overwrite)
        try:
            writer = cls._create(root, config, plan, assets, bg_depth, depth_info)
        except BaseException:
            _restore_old_store(root, old)
            raise
        writer.replaced = old
        return writer

    @classmethod
    def create_shared(
        cls, path: str | Path, config: GenerateConfig, plan: SampleMeta, assets: AssetSet,
        bg_depth: np.ndarray, depth_info: dict[str, Any],
    ) -> bool:
        """Create the store when several processes may try at once (``--shard``):
        it is built in a sibling folder and renamed into place, so one process
        wins and the others open what it made (the same bytes: the store's
        creation is a pure function of the config and inputs).

        Returns:
            Whether this process created it (``False``: it was there already).
        """
        root = Path(path)
        if root.exists() and not (root.is_dir() and not any(root.iterdir())):
            return False
        tmp = root.with_name(f"{root.name}.creating-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            cls._create(tmp, config, plan, assets, bg_depth, depth_info).close()
            os.rename(tmp, root)  # fails when another process's store is already there
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_fgbg_store(root):
                return False
            raise StoreError(f"{root}: cannot create the store") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync(root.parent)
        return True

    def finish_replacing(self) -> None:
        """The new store is complete: delete the store it replaces, if any."""
        discard_old_store(self.replaced)
        self.replaced = None

    @classmethod
    def _create(
        cls, root: Path, config: GenerateConfig, plan: SampleMeta, assets: AssetSet,
        bg_depth: np.ndarray, depth_info: dict[str, Any],
    ) -> ZarrWriter:
        zarr = _zarr()
        layout = StoreLayout(plan.n_samples, config.height, config.width, config.shard_size, config.samples_per_chunk)
        N, H, W, S, C = layout.n_samples, layout.height, layout.width, layout.shard_size, layout.chunk_size
        try:
            group = zarr.open_group(root, mode="w")
            level, codec = config.compression_level, config.image_codec
            label_codec = "none" if codec == "none" else "zstd"

            def per_sample(name: str, shape: tuple[int, ...], dtype: Any, codecs: list[Any], dims: Sequence[str]) -> None:
                group.create_array(
                    name, shape=(N, *shape), dtype=dtype, chunks=(C, *shape), shards=(S, *shape),
                    compressors=codecs, fill_value=0, dimension_names=("sample", *dims), config=WRITE_ALL_CHUNKS,
                )

            if codec == "jpeg":
                with warnings.catch_warnings():  # zarr flags the vlen dtype as not yet in the v3 spec
                    warnings.simplefilter("ignore")
                    group.create_array(
                        "images_jpeg", shape=(N,), dtype=zarr.dtype.VariableLengthBytes(),
                        chunks=(C,), shards=(S,), compressors=checksum_codecs(), dimension_names=("sample",),
                        config=WRITE_ALL_CHUNKS,
                    )
            else:
                per_sample("images", (H, W, 3), np.uint8, lossless_codecs(codec, level), ("y", "x", "channel"))
            per_sample("masks", (H, W), np.uint8, lossless_codecs(label_codec, level), ("y", "x"))
            per_sample("depth", (H, W), np.float16, lossless_codecs(label_codec, level), ("y", "x"))
            if config.save_alpha:
                per_sample("alpha", (H, W), np.uint8, lossless_codecs(label_codec, level), ("y", "x"))
            if config.multi_object:
                per_sample("instances", (H, W), np.uint16, lossless_codecs(label_codec, level), ("y", "x"))
            _write_meta(group, plan, codec=lossless_codecs("zstd", level))
            if config.multi_object:
                _write_object_meta(group["meta"], plan, codec=lossless_codecs("zstd", level))
            _write_assets(group, assets, bg_depth, lossless_codecs("zstd", level))
            attrs = {
                "format_version": FORMAT_VERSION,
                "tool": "fgbg",
                "tool_version": __version__,
                "config": config.to_dict(),
                "seed": config.seed,
                "layout": {
                    "n_samples": N, "height": H, "width": W, "shard_size": S, "chunk_size": C,
                    "n_shards": layout.n_shards, "image_codec": codec,
                    "data_arrays": list(data_array_names(config)),
                },
                "inputs": input_records(assets, config),
                "skipped": [{"path": b.path, "reason": b.reason} for b in assets.skipped],
                "depth": depth_info,
                "progress": {"shards_done": [], "complete": False},
            }
            from engine.store.verify import whole_array_names  # imports this module

            # the arrays written whole, so that verify misses none whose zarr.json is lost
            attrs["layout"]["whole_arrays"] = list(whole_array_names(root))
            # Written last: a store without these attributes was never fully created.
            group.attrs.update({ATTRS_KEY: attrs})
            _fsync(root / "zarr.json")
        except OSError as e:
            raise StoreError(f"{root}: cannot create the store ({e.strerror or e})") from None
        return cls(root, group, layout, config, set())

    @classmethod
    def open_resume(
        cls, path: str | Path, config: GenerateConfig, inputs: dict[str, Any], verify: str = "index",
        owned: Collection[int] | None = None, sources: WholeSources | None = None,
    ) -> ZarrWriter | None:
        """Reopen a store made with the same config and inputs, to complete it.

        Done shards are checked first (``verify``: ``index`` reads each file's
        index, ``full`` decodes every chunk; see :mod:`engine.store.verify`);
        damaged ones are left out of the done set, so they are written again.
        With ``sources`` (what the store was created from) the arrays written
        whole (``meta/*``, ``assets/*``) are checked at the same level and the
        damaged ones written again, the same bytes; damaged per-object results
        make the done shards holding their rows be written again.
        With ``owned`` (the shards this process writes, when several write the
        store at once) only those are checked and temp files of killed writes
        are left alone (other ranks may be writing theirs); the process that
        completes the store removes them (:meth:`finalise`).

        Returns:
            The writer, or ``None`` when the store's creation itself never
            finished (nothing to keep: the caller creates it afresh).

        Raises:
            StoreError: not an fgbg store, another format, or different settings/inputs.
        """
        zarr = _zarr()
        root = Path(path)
        attrs = read_attrs(root, allow_unfinished=True)
        if attrs is None:
            return None
        if attrs.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{root}: store format {attrs.get('format_version')} cannot be resumed by this version")
        stored = GenerateConfig.from_dict(attrs["config"])
        given, made = config.identity(), stored.identity()
        differ = [k for k, v in given.items() if made.get(k) != v]
        if differ:
            what = ", ".join(f"{k}: the store's {made.get(k)!r}, this run's {given[k]!r}" for k in differ)
            raise StoreError(f"{root}: made with different settings ({what}); resume with the store's options "
                             "(info STORE --config FILE writes them; generate --config FILE), or use --overwrite")
        if attrs["inputs"] != inputs:
            changed = sorted(k for k in {*attrs["inputs"], *inputs} if attrs["inputs"].get(k) != inputs.get(k))
            raise StoreError(f"{root}: made from different input files ({', '.join(changed)}); "
                             "resume with the same inputs, or use --overwrite")
        if owned is None:
            remove_partial_files(root)
        group = zarr.open_group(root, mode="r+")
        lay = attrs["layout"]
        layout = StoreLayout(lay["n_samples"], lay["height"], lay["width"], lay["shard_size"], lay["chunk_size"])

        # done shards whose files were lost or damaged since are written again; their
        # files go first, so no write reads a damaged one (zarr merges into a partial shard)
        if owned is not None:  # check only this rank's shards
            mine = sorted(set(attrs["progress"]["shards_done"]) & set(owned))
            attrs = {**attrs, "progress": {**attrs["progress"], "shards_done": mine}}
        redo: set[int] = set()
        if sources is not None and owned is None:
            redo = _repair_whole(root, attrs, sources, verify)
        shards = StoreShards(root, attrs)
        damaged = shards.damaged_shards(verify) | (redo & set(attrs["progress"]["shards_done"]))
        if stored.multi_object:  # a rank's done shard: its per-object results are in its side file
            candidates = set(owned) if owned is not None else set(attrs["progress"]["shards_done"])
            lost = {k for k in read_markers(root) if k in candidates and read_objects(root, k) is None}
            damaged |= lost
        if damaged:
            log.warning("%s: rewriting %d damaged shards: %s", root, len(damaged), sorted(damaged))
        for k in damaged:
            for name in shards.names:
                shards.path(name, k).unlink(missing_ok=True)
            (marker_dir(root) / f"shard-{k:07d}.json").unlink(missing_ok=True)
            objects_path(root, k).unlink(missing_ok=True)
        done = set(read_attrs(root)["progress"]["shards_done"]) if owned is not None else set(attrs["progress"]["shards_done"])
        return cls(root, group, layout, stored, done - damaged)

    # -- writing --------------------------------------------------------------

    def todo(self) -> list[int]:
        """Shards not yet recorded as done, in order."""
        return [k for k in range(self.layout.n_shards) if k not in self.done]

    def write_shard(self, index: int, batch: ShardContent) -> None:
        """Write shard ``index`` from ``batch`` (its samples, in order) and fsync it.

        Safe to call from several threads for different shards.

        Raises:
            StoreError: the write failed (disk full, permissions…); done shards are kept.
        """
        start, stop = self.layout.shard_range(index)
        if len(batch) != stop - start:
            raise ValueError(f"shard {index} needs {stop - start} samples, got {len(batch)}")
        cost = self.cost
        arrays: dict[str, Any] = {"masks": batch.masks, "depth": batch.depth}
        if self.config.image_codec == "jpeg":
            q = self.config.jpeg_quality
            with cost.step(JPEG):
                if batch.encode_jpeg is not None:  # where the images are (the GPU)
                    arrays["images_jpeg"] = batch.encode_jpeg(q)
                elif self.config.jpeg_encoder == "fgbg":
                    arrays["images_jpeg"] = encode_jpeg_fgbg(batch.images, q, self._pool)
                else:
                    arrays["images_jpeg"] = encode_jpeg_pillow(batch.images, q)
        else:
            arrays["images"] = batch.images
        if self.config.save_alpha:
            arrays["alpha"] = batch.alpha
        if self.config.multi_object:
            arrays["instances"] = batch.instances
        written = []
        try:
            for name, data in arrays.items():
                path = self._shard_path(name, index)
                written.append(path)
                spec = self.specs[name]
                if name in batch.compressed:  # compressed where the data is (nvCOMP on the GPU)
                    if spec is None or spec.zstd_level is None:
                        raise ValueError(f"{name}: chunks compressed elsewhere need a zstd array")
                    with cost.step(COMPRESS + name):  # this thread's part: waiting for the device's chunks
                        chunks = batch.compressed[name]()
                    with cost.step(ASSEMBLE):
                        shard = shard_parts(chunks, spec)
                elif spec is not None:
                    # the writer thread's own CPU here is slicing and assembling; the chunks'
                    # compression runs on the pool's threads and is timed there
                    with cost.step(ASSEMBLE):
                        shard = encode_shard_parts(data, spec, cost.timed_map(COMPRESS + name, self._chunk_map))
                else:
                    with cost.step(ZARR_WRITE):
                        self.arrays[name][start:stop] = data
                        _fsync(path)
                    continue
                with cost.step(FILE_WRITE):
                    atomic_write(path, shard, direct=True)
                del shard
            if self.config.multi_object:
                with cost.step(OBJECTS):
                    written += self._write_objects(start, stop, batch)
            if self.mirror is not None:  # before mark_done copies the progress that records them
                self.mirror.put(written)
        except OSError as e:
            raise StoreError(
                f"{self.root}: writing shard {index} failed ({e.strerror or e}); "
                "finished shards are kept: free space and run again with --resume"
            ) from None

    def _write_objects(self, start: int, stop: int, batch: ShardContent) -> list[Path]:
        """Write the per-object results of samples ``start:stop`` (plane depth,
        visible pixels and box, from the batch's instance map) and fsync them;
        returns the chunk files written."""
        from kernels.composite import instance_stats  # numba: only when writing

        offset = self.object_offset
        objects = batch.objects
        if offset is None or objects is None or batch.instances is None:
            raise ValueError("a store of several objects per image needs each batch's instances and objects")
        lo, hi = int(offset[start]), int(offset[stop])
        if not np.array_equal(np.asarray(objects["offset"]) + lo, offset[start : stop + 1]):
            raise ValueError(f"samples {start}:{stop}: the batch's objects differ from the store's plan")
        visible, box = instance_stats(batch.instances, np.asarray(objects["offset"], np.int64))
        values = {"depth": np.asarray(objects["depth"], np.float32), "visible_pixels": visible.astype(np.int32),
                  "box": box}
        if self.shared:  # other processes write neighbouring rows: a side file, copied in by finalise
            path = objects_path(self.root, start // self.layout.shard_size)
            atomic_write(path, encode_objects(values))
            return [path]
        with self._objects_lock:  # neighbouring shards share chunks: zarr rewrites a chunk whole
            for name, array in self.object_arrays.items():
                array[lo:hi] = values[name]
            return self._object_chunk_files(lo, hi)

    def _object_chunk_files(self, lo: int, hi: int) -> list[Path]:
        """fsync the per-object result chunk files holding rows ``lo:hi``; returns them."""
        paths = []
        for name, array in self.object_arrays.items():
            for k in range(lo // OBJECT_CHUNK, -(-hi // OBJECT_CHUNK)):
                path = self.root / "meta" / "objects" / name / "c" / str(k)
                path = path / "0" if array.ndim == 2 else path
                if path.exists():  # zarr writes no file for a chunk of fill values only (it deletes it)
                    _fsync(path)
                    paths.append(path)
        return paths

    def _fold_objects(self, shards: Collection[int]) -> None:
        """Copy the per-object results of ``shards`` from their side files (written
        by ranks) into the flat arrays, and fsync them: the arrays then hold what
        one process would have written.

        Raises:
            StoreError: a side file is missing or unreadable (``--resume`` finds
                it so and writes its shard again).
        """
        offset = self.object_offset
        if offset is None or not shards:
            return
        current = {name: array[:] for name, array in self.object_arrays.items()}
        for k in sorted(shards):
            start, stop = self.layout.shard_range(k)
            values = read_objects(self.root, k)
            lo, hi = int(offset[start]), int(offset[stop])
            if values is None or any(len(values.get(n, ())) != hi - lo for n in current):
                raise StoreError(f"{self.root}: the per-object results of shard {k} are missing or damaged "
                                 f"({objects_path(self.root, k)}); run again with --resume")
            for name in current:
                current[name][lo:hi] = values[name]
        for name, array in self.object_arrays.items():
            array[:] = current[name]
        paths = self._object_chunk_files(0, int(offset[-1]))
        if self.mirror is not None:
            self.mirror.put(paths)

    def record_writer(self, compressor: str, jpeg_encoder: str | None) -> None:
        """Record in the attributes what compresses (and JPEG-encodes) this run's
        shards: a resumed store may have been written by several."""
        entry = {"compressor": compressor, "jpeg_encoder": jpeg_encoder}
        if self.shared:  # recorded with each finished shard, folded in at the end
            self._writer_entry = entry
            return
        attrs = dict(self.group.attrs[ATTRS_KEY])
        writers = list(attrs.get("writers", []))
        if entry in writers:
            return
        attrs["writers"] = [*writers, entry]
        try:
            self.group.attrs.update({ATTRS_KEY: attrs})
            _fsync(self.root / "zarr.json")
            self.put_attrs()
        except OSError as e:
            raise StoreError(f"{self.root}: cannot update the store's attributes ({e.strerror or e})") from None

    def mark_done(self, index: int, histogram: dict[str, Any] | None = None, compressor: str | None = None) -> None:
        """Record shard ``index`` as complete (after :meth:`write_shard` returned).

        ``histogram`` (its images' channel counts) is kept with the marker of a
        shared store, for the statistics of whoever completes it; so is
        ``compressor``, what compressed this shard when it differs shard by
        shard (``--compressor hybrid``; else the one :meth:`record_writer` gave).
        """
        self.done.add(index)
        if self.shared:
            entry = self._writer_entry
            if compressor is not None and entry is not None:
                entry = {**entry, "compressor": compressor}
            try:
                write_marker(self.root, index, entry, histogram)
            except OSError as e:
                raise StoreError(f"{self.root}: recording progress failed ({e.strerror or e}); "
                                 "run again with --resume") from None
            return
        attrs = dict(self.group.attrs[ATTRS_KEY])
        attrs["progress"] = {
            "shards_done": sorted(self.done),
            "complete": len(self.done) == self.layout.n_shards,
        }
        try:
            self.group.attrs.update({ATTRS_KEY: attrs})
            _fsync(self.root / "zarr.json")
            self.put_attrs()
        except OSError as e:
            raise StoreError(
                f"{self.root}: recording progress failed ({e.strerror or e}); run again with --resume"
            ) from None

    def put_attrs(self) -> None:
        """Copy the attributes (``zarr.json``) to the store's URL, if it has one."""
        if self.mirror is not None:
            self.mirror.put([self.root / "zarr.json"])

    def finalise(self) -> dict[int, dict[str, Any]]:
        """Fold the progress markers of a complete store into its attributes,
        remove them and any temp files of killed writes; a no-op (``{}``) while
        shards are missing or when there are no markers.

        Returns:
            The markers folded in, by shard (their image histograms feed the statistics).
        """
        raw = read_attrs(self.root, markers=False)
        folded, markers = fold_markers(self.root, raw)  # type: ignore[arg-type]
        if not markers or not folded["progress"]["complete"]:
            return {}
        if self.config.multi_object:  # before the markers go: they say which side files there are
            self._fold_objects(markers)
        try:
            self.group.attrs.update({ATTRS_KEY: folded})
            _fsync(self.root / "zarr.json")
        except OSError as e:
            raise StoreError(f"{self.root}: recording progress failed ({e.strerror or e}); run again with --resume") from None
        remove_partial_files(self.root)
        remove_markers(self.root)
        self.done = set(folded["progress"]["shards_done"])
        return markers

    def _shard_path(self, name: str, index: int) -> Path:
        array = self.arrays[name]
        return self.root / name / array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))


def usable_cores() -> int:
    """CPUs this process may run on (``taskset``, cgroup cpusets), not the machine's count:
    one compression thread each."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def atomic_write(path: Path, data: bytes | Sequence[bytes], direct: bool = False) -> None:
    """Write ``data`` (bytes, or parts written in order as one file) to ``path``
    durably and atomically: temp file, fsync, rename.

    Parts go to the file with ``writev`` (one system call for a shard's chunks,
    no joined copy); with ``direct`` (shard files), through the page cache's
    bypass where the filesystem has one (:func:`_write_direct`), else the same way.
    A killed write leaves at most a ``*.partial`` file, removed on resume.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        if not (direct and _write_direct(tmp, parts)):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
            try:
                _write_all(fd, parts)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


#: ``O_DIRECT`` writes go through a staging buffer of this size, aligned to (and a multiple of)
#: :data:`_DIRECT_ALIGN`, the largest logical block size disks use
_DIRECT_STAGE = 4 << 20
_DIRECT_ALIGN = 4096
_direct_stage = threading.local()


def _write_direct(tmp: Path, parts: Sequence[bytes]) -> bool:
    """Write ``parts`` to a new file ``tmp`` with ``O_DIRECT`` and fsync it; ``False``
    (nothing left at ``tmp``) where the filesystem refuses ``O_DIRECT`` (tmpfs, some
    network filesystems): the caller writes it the usual way.

    Why: the usual write copies every byte into the page cache, whose pages the
    kernel then allocates and tracks - the writers' largest cost after compression
    (perf: ``copy_folio_from_iter_atomic``, ~8% of ``generate``'s CPU on 2 cores). Here
    the parts are copied into a small, cache-resident staging buffer and the disk
    reads them from there. The last block is padded, then the file is cut back to its
    length. The file's bytes and the fsync before the rename are the same.
    """
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o666)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    refused = False
    try:
        stage = getattr(_direct_stage, "buffer", None)
        if stage is None:  # page-aligned anonymous memory, one per writer thread
            stage = _direct_stage.buffer = memoryview(mmap.mmap(-1, _DIRECT_STAGE))
        total = fill = 0
        for part in parts:
            view = memoryview(part).cast("B")
            total += len(view)
            while view:
                k = min(len(view), _DIRECT_STAGE - fill)
                stage[fill : fill + k] = view[:k]
                fill += k
                view = view[k:]
                if fill == _DIRECT_STAGE:
                    _write_stage(fd, stage)
                    fill = 0
        if fill:
            padded = -(-fill // _DIRECT_ALIGN) * _DIRECT_ALIGN
            stage[fill:padded] = bytes(padded - fill)
            _write_stage(fd, stage[:padded])
        os.ftruncate(fd, total)
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        refused = True
    finally:
        os.close(fd)
    if refused:
        tmp.unlink(missing_ok=True)  # O_DIRECT opened but refused the write: the usual way then
    return not refused


def _write_stage(fd: int, stage: memoryview) -> None:
    """Write all of ``stage`` (a multiple of :data:`_DIRECT_ALIGN` bytes) at the file's position."""
    done = 0
    while done < len(stage):
        n = os.write(fd, stage[done:])
        if n % _DIRECT_ALIGN:  # a short write that breaks the alignment: no O_DIRECT write can follow it
            raise OSError(errno.EINVAL, "short unaligned O_DIRECT write")
        done += n


def grouped_map(executor: Executor, tasks: int) -> Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]:
    """An ordered ``map`` over ``executor`` that sends the items in ``tasks`` runs
    (one task per run, not per item); results come back in the items' order."""

    def map_fn(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        items = list(items)
        size = max(1, -(-len(items) // tasks))
        runs = [items[i : i + size] for i in range(0, len(items), size)]
        for results in executor.map(lambda run: [fn(item) for item in run], runs):
            yield from results

    return map_fn


def _write_all(fd: int, parts: Sequence[bytes]) -> None:
    """Write ``parts`` to ``fd`` in order, whole (``writev`` may write less than asked)."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    if not hasattr(os, "writev"):  # Windows
        for view in views:
            while view:
                view = view[os.write(fd, view):]
        return
    limit = _IOV_MAX
    first = 0
    while first < len(views):
        n = os.writev(fd, views[first : first + limit])
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:
            views[first] = views[first][n:]


#: buffers one ``writev`` takes at most
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") and "SC_IOV_MAX" in os.sysconf_names else 16


def data_array_names(config: GenerateConfig) -> tuple[str, ...]:
    """Per-sample arrays a store made with ``config`` has."""
    names = ["images_jpeg" if config.image_codec == "jpeg" else "images", "masks", "depth"]
    if config.save_alpha:
        names.append("alpha")
    if config.multi_object:
        names.append("instances")
    return tuple(names)


def _record(f: Any) -> dict[str, Any]:
    d = {"name": f.name, "sha256": f.sha256}
    if f.mask is not None:
        d.update(mask=f.mask, mask_sha256=f.mask_sha256)
    return d


def input_records(assets: AssetSet, config: GenerateConfig) -> dict[str, Any]:
    """The ``inputs`` attribute: every input file's name and hash (compared on resume);
    with a heights file in ``--fg``, also the metres each foreground got (``heights.metres``)."""
    records: dict[str, Any] = {
        "backgrounds": [_record(f) for f in assets.bg_files],
        "foregrounds": [_record(f) for f in assets.fg_files],
    }
    if assets.depth_files:
        records["depth_maps"] = [_record(f) for f in assets.depth_files]
    if config.teacher is not None:
        from engine.assets.images import file_record

        records["teacher"] = _record(file_record(config.teacher, "teacher model"))
    if assets.heights_file is not None:
        from engine.assets.heights import resolve_heights

        # the metres each foreground got, so the store says what it was made with
        metres = resolve_heights([f.name for f in assets.fg_files], config.object_height, config.object_heights,
                                 assets.heights, f"{config.fg_dir}/{assets.heights_file.name}")
        records["heights"] = {**_record(assets.heights_file), "metres": metres.tolist()}
    return records


@dataclass(frozen=True)
class WholeSources:
    """What a store's whole arrays (``meta/*``, ``assets/*``) are written from."""

    plan: SampleMeta
    assets: AssetSet
    bg_depth: Callable[[], np.ndarray]  # () -> (NB, H, W) float32, called only for a repair


def _repair_whole(root: Path, attrs: dict[str, Any], sources: WholeSources, level: str) -> set[int]:
    """Check the arrays written whole at ``level`` (``full`` also checks every
    chunk's checksum) and write the damaged ones again from ``sources`` (a pure
    function of them: the same bytes). Returns the done shards to write again
    because per-object results in their rows are damaged (those chunk files are
    deleted: zarr rewrites a chunk whole from what it reads).
    """
    shards = StoreShards(root, attrs)
    problems = shards.check("full" if level == "full" else "index", arrays=shards.whole_names, threads=2)
    if not problems:
        return set()
    log.warning("%s: writing again damaged %s", root, ", ".join(sorted({p.array for p in problems})))
    config = GenerateConfig.from_dict(attrs["config"])
    arrays = sorted({p.array for p in problems if p.array not in OBJECT_RESULT_ARRAYS})
    if arrays:
        scratch = root / f".repair-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            group = _zarr().open_group(scratch, mode="w")
            codec = lossless_codecs("zstd", config.compression_level)
            _write_meta(group, sources.plan, codec)
            if config.multi_object:
                _write_object_meta(group["meta"], sources.plan, codec)
            _write_assets(group, sources.assets, sources.bg_depth(), codec)
            for name in arrays:
                shutil.rmtree(root / name, ignore_errors=True)
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(scratch / name, root / name)
                for group_dir in Path(name).parents[:-1]:  # groups lost with it (meta/, meta/objects/)
                    if not (root / group_dir / "zarr.json").is_file():
                        shutil.copyfile(scratch / group_dir / "zarr.json", root / group_dir / "zarr.json")
                        _fsync(root / group_dir / "zarr.json")
                for path in (root / name).rglob("*"):
                    if path.is_file():
                        _fsync(path)
                _fsync((root / name).parent)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    redo: set[int] = set()
    results = [p for p in problems if p.array in OBJECT_RESULT_ARRAYS]
    if results:
        offset = np.asarray(_zarr().open_array(root / "meta" / "object_offset", mode="r")[:], np.int64)
        layout = attrs["layout"]
        for p in results:  # rows p.start:p.stop: every done shard whose objects fall in them
            first = int(np.searchsorted(offset, p.start, side="right")) - 1  # sample holding row p.start
            stop = int(np.searchsorted(offset, p.stop, side="left"))  # samples before it start before p.stop
            redo |= set(range(max(first, 0) // layout["shard_size"], (stop - 1) // layout["shard_size"] + 1))
            shards.path(p.array, p.shard).unlink(missing_ok=True)
    return {k for k in redo if 0 <= k < int(attrs["layout"]["n_shards"])}


def _write_meta(group: Any, plan: SampleMeta, codec: list[Any]) -> None:
    N = plan.n_samples
    chunk = min(META_CHUNK, N)
    shard = chunk * min(META_CHUNKS_PER_SHARD, -(-N // chunk))
    dtypes = {"bg_index": np.int32, "fg_index": np.int32, "flip": np.uint8, "x": np.int32,
              "y": np.int32, "h": np.int32, "w": np.int32, "scale": np.float32}
    meta = group.create_group("meta")
    arrays = {
        name: meta.create_array(name, shape=(N,), dtype=dtype, chunks=(chunk,), shards=(shard,),
                                compressors=codec, fill_value=0, dimension_names=("sample",), config=WRITE_ALL_CHUNKS)
        for name, dtype in dtypes.items()
    }
    for start in range(0, N, shard):
        p = plan.placements(start, min(start + shard, N))
        values = {"bg_index": p.bg, "fg_index": p.fg, "flip": p.flip, "x": p.x, "y": p.y,
                  "h": p.h, "w": p.w, "scale": p.scale}
        for name, array in arrays.items():
            array[start : start + len(p)] = values[name].astype(dtypes[name])


def _write_object_meta(meta: Any, plan: SampleMeta, codec: list[Any]) -> None:
    """``meta/object_offset`` and ``meta/objects/*``: what the plan says of every
    object now, and empty per-object results the shards fill in."""
    N = plan.n_samples
    counts = np.zeros(N, np.int64)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in ("fg_index", "x", "y", "h", "w", "flip")}
    for start in range(0, N, META_CHUNK):
        o = plan.objects(start, min(start + META_CHUNK, N))
        counts[start : start + len(o)] = np.diff(o.offset)
        p = o.objects
        for name, values in (("fg_index", p.fg), ("x", p.x), ("y", p.y), ("h", p.h), ("w", p.w), ("flip", p.flip)):
            parts[name].append(values)
    offset = np.zeros(N + 1, np.int64)
    np.cumsum(counts, out=offset[1:])
    M = int(offset[-1])
    meta.create_array("object_offset", data=offset, chunks=(min(META_CHUNK, N + 1),), compressors=codec,
                      dimension_names=("sample_edge",), config=WRITE_ALL_CHUNKS)
    objects = meta.create_group("objects")
    chunk = min(META_CHUNK, M)
    for name, values in parts.items():
        dtype = np.uint8 if name == "flip" else np.int32
        objects.create_array(name, data=np.concatenate(values).astype(dtype), chunks=(chunk,), compressors=codec,
                             dimension_names=("object",), config=WRITE_ALL_CHUNKS)
    for name, dtype in OBJECT_RESULTS.items():
        shape = (M, 4) if name == "box" else (M,)
        objects.create_array(name, shape=shape, dtype=dtype, chunks=(min(OBJECT_CHUNK, M), *shape[1:]),
                             compressors=codec, fill_value=0, dimension_names=("object", "xywh")[: len(shape)],
                             config=WRITE_ALL_CHUNKS)


#: assets per shard file (one chunk per asset inside it): 10,000 foregrounds are
#: 40 files, not 10,000
ASSETS_PER_SHARD = 256


def _asset_shards(n: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shard shape of an asset array of ``n`` items of ``shape``."""
    return (max(1, min(n, ASSETS_PER_SHARD)), *shape)


def _write_assets(group: Any, assets: AssetSet, bg_depth: np.ndarray, codec: list[Any]) -> None:
    g = group.create_group("assets")
    bg = assets.bg_images
    g.create_array("bg", data=bg, chunks=(1, *bg.shape[1:]), shards=_asset_shards(len(bg), bg.shape[1:]),
                   compressors=codec, dimension_names=("background", "y", "x", "channel"), config=WRITE_ALL_CHUNKS)
    g.create_array("bg_depth", data=bg_depth.astype(np.float16), chunks=(1, *bg.shape[1:3]),
                   shards=_asset_shards(len(bg), bg.shape[1:3]),
                   compressors=codec, dimension_names=("background", "y", "x"), config=WRITE_ALL_CHUNKS)
    sizes = assets.fg_sizes
    fg = np.zeros((len(sizes), int(sizes[:, 0].max()), int(sizes[:, 1].max()), 4), np.uint8)
    for i, image in enumerate(assets.fg_images):
        fg[i, : image.shape[0], : image.shape[1]] = image
    g.create_array("fg", data=fg, chunks=(1, *fg.shape[1:]), shards=_asset_shards(len(fg), fg.shape[1:]),
                   compressors=codec, dimension_names=("foreground", "y", "x", "channel"), config=WRITE_ALL_CHUNKS)
    g.create_array("fg_size", data=sizes.astype(np.int32), compressors=codec,
                   dimension_names=("foreground", "hw"), config=WRITE_ALL_CHUNKS)


# -- output handling and inspection ---------------------------------------------


def is_fgbg_store(root: Path) -> bool:
    """True when ``root`` holds a zarr group (finished or not) this tool made."""
    meta = root / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("node_type") == "group"
    except (OSError, ValueError):
        return False


def prepare_output(root: Path, overwrite: bool) -> Path | None:
    """Make sure ``root`` can be created; move an old store aside if ``overwrite``.

    The old store is renamed (atomic, same folder) rather than deleted here, so
    a store that cannot be deleted is never left half gone: the caller deletes
    it once the new one exists (:func:`discard_old_store`).

    Returns:
        Where the old store now is (``<root>.old-<pid>``), or ``None``.

    Raises:
        StoreError: ``root`` exists (without ``overwrite``), is something other
            than a store (never touched, even with ``overwrite``), or cannot be moved.
    """
    if root.exists() or root.is_symlink():
        if not overwrite:
            raise StoreError(f"{root} exists: use --overwrite to replace it or --resume to complete it")
        if root.is_dir() and not root.is_symlink() and (is_fgbg_store(root) or not any(root.iterdir())):
            aside = root.with_name(f"{root.name}.old-{os.getpid()}")
            n = 1
            while aside.exists() or aside.is_symlink():
                aside = root.with_name(f"{root.name}.old-{os.getpid()}-{n}")
                n += 1
            try:
                os.rename(root, aside)
            except OSError as e:
                raise StoreError(f"{root}: cannot move the old store aside to replace it ({e.strerror or e})") from None
            return aside
        raise StoreError(f"{root} exists and is not a Zarr store; refusing to delete it")
    return None


def discard_old_store(old: Path | None) -> None:
    """Delete a store moved aside by :func:`prepare_output`; a failure is a warning
    naming the leftover folder, not an error (the new store is already in place)."""
    if old is None:
        return
    try:
        shutil.rmtree(old)
    except OSError as e:
        log.warning("could not delete the old store, left at %s (%s); delete it yourself", old, e.strerror or e)


def _restore_old_store(root: Path, old: Path | None) -> None:
    """Creating the new store failed: remove what it wrote and put the old one back."""
    if old is None:
        return
    shutil.rmtree(root, ignore_errors=True)
    try:
        os.rename(old, root)
    except OSError as e:
        log.warning("could not put the old store back at %s; it is at %s (%s)", root, old, e.strerror or e)


#: compression ratios measured on built-in composites (benchmarks/RESULTS.md:
#: zstd level 3; level 1 gives images 3.6x, level 2 about 0.91x level 3's ratio)
#: and JPEG q95 4:4:4 bits per pixel
#: (100k samples at 224x224: 2.54 GB lossless, 2.20 GB with JPEG images)
IMAGE_RATIO = {1: 3.6, 2: 5.3}
IMAGE_RATIO_DEFAULT = 5.85
MASK_RATIO = 180.0
DEPTH_RATIO = 123.0
ALPHA_RATIO = 60.0  # soft edges compress worse than 0/255 masks
JPEG_BITS_PER_PIXEL = 3.3


def estimate_store_bytes(config: GenerateConfig, n_samples: int) -> int:
    """About how many bytes a finished store of ``n_samples`` takes: raw sizes
    divided by the measured ratios of its codecs (photos compress less than
    the built-in scenes; an estimate, not a promise)."""
    pixels = n_samples * config.height * config.width
    lossless = config.image_codec != "none"
    if config.image_codec == "jpeg":
        images = pixels * JPEG_BITS_PER_PIXEL / 8
    else:
        images = 3 * pixels / (IMAGE_RATIO.get(config.compression_level, IMAGE_RATIO_DEFAULT) if lossless else 1)
    labels = pixels / (MASK_RATIO if lossless else 1) + 2 * pixels / (DEPTH_RATIO if lossless else 1)
    if config.save_alpha:
        labels += pixels / (ALPHA_RATIO if lossless else 1)
    if config.multi_object:  # ids compress about as masks do, at twice the bytes
        labels += 2 * pixels / (MASK_RATIO if lossless else 1)
    meta = 29 * n_samples / 2  # 8 small fields per sample, zstd
    return int(images + labels + meta)


def store_bytes(root: Path) -> int:
    """Bytes of the files of the fgbg store at ``root`` (0 when there is none)."""
    if not is_fgbg_store(root):
        return 0
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def free_bytes(root: Path) -> tuple[int, Path]:
    """Free bytes on the disk that will hold ``root``, and the folder measured
    (``root``'s nearest existing ancestor)."""
    folder = root.resolve().parent
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free, folder


def check_free_space(root: Path, needed: int, force: bool = False) -> None:
    """Refuse to start a store the disk cannot hold.

    Raises:
        StoreError: ``needed`` bytes exceed the free space (unless ``force``).
    """
    free, folder = free_bytes(root)
    if needed > free and not force:
        raise StoreError(f"{root}: needs about {_gb(needed)} but {folder} has {_gb(free)} free; "
                         "free space or use --force to try anyway")


def plan_space(root: Path, config: GenerateConfig, n_samples: int, force: bool = False, resume: bool = False) -> str:
    """Estimate the store's size, refuse (unless ``force``) when the disk cannot
    hold what is left to write, and return a line saying both.

    An fgbg store already at ``root`` counts as free space only with
    ``resume`` (it keeps what it wrote); one that ``--overwrite`` replaces stays
    until the new store is complete, so the disk must hold both.

    Raises:
        StoreError: the disk is too small (without ``force``).
    """
    estimate = estimate_store_bytes(config, n_samples)
    needed = max(0, estimate - (store_bytes(root) if resume else 0))
    check_free_space(root, needed, force)
    free, folder = free_bytes(root)
    return f"store size: about {_gb(estimate)} (an estimate from measured codec ratios); {_gb(free)} free on {folder}"


def _gb(n: float) -> str:
    if n >= 1e8:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def inspect_store(path: str | Path) -> StoreInfo:
    """Read a store's attributes, array descriptions and size on disk (no data read);
    ``path`` may be an fsspec URL (:func:`engine.store.location.inspect_remote`)."""
    where = locate(path)
    if where.remote:
        return inspect_remote(where.url)  # type: ignore[arg-type]
    root = where.local  # type: ignore[assignment]
    attrs = read_attrs(root)
    arrays: dict[str, dict[str, Any]] = {}
    for meta in sorted(root.rglob("zarr.json")):
        doc = json.loads(meta.read_text())
        if doc.get("node_type") != "array":
            continue
        name = meta.parent.relative_to(root).as_posix()
        arrays[name] = describe_array(doc, sum(p.stat().st_size for p in (root / name).rglob("*") if p.is_file()))
    files = [p for p in root.rglob("*") if p.is_file()]
    damaged = tuple(files_damaged(root, attrs))
    return StoreInfo(root, attrs, arrays, sum(p.stat().st_size for p in files), len(files), damaged)

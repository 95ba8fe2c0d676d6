"""A store in the formats other tools read: COCO instances, and plain folders.

Both exports stream: samples are read one inner chunk at a time (a few MB),
files are encoded by a thread pool, and the COCO JSON is written once, front
to back (its annotations go to a side file that is appended at the end), so
memory stays flat however large the store. Only the store's done shards are
exported; a damaged shard stops the export with one line naming it.

Labels follow from the store's arrays:

- instances: the store's ``instances`` map (uint16, 0 = background) where it
  has one (``--objects-per-image``), each instance with its own foreground
  (``meta/objects/fg_index``); otherwise its union mask is one instance, the
  sample's foreground;
- a category per foreground folder, its path below ``--fg``: ``builtin:car/00001``
  → ``car``, ``sedans/a.png`` → ``sedans``, ``vehicles/sedans/a.png`` →
  ``vehicles/sedans``; files at the top of the foreground folder are ``object``;
- COCO ``file_name`` is relative to the images folder (``00000012.png``, the
  file ``<out>/images/00000012.png``), as pycocotools-based tools join
  ``img_dir/file_name``: give them ``<out>/images`` as the image folder;
- boxes and areas are those of the *visible* pixels; an instance with none is
  left out;
- depth as 16-bit PNG in KITTI's convention: ``uint16 = round(metres · 256)``,
  0 = unknown, so 0–255.99 m at 4 mm steps (the store's float16 is coarser
  than that beyond 8 m);
- the soft ``alpha`` (``--save-alpha``; with several objects their union
  coverage) as an 8-bit PNG per sample in ``folders``, as stored; COCO leaves it out.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.assets.images import category_of
from engine.errors import ConfigError, StoreError

#: what every export writes at its top, and what ``--overwrite`` looks for
#: before it deletes a folder
MARKER = "fgbg-export.json"
#: the KITTI depth PNG convention: metres × 256 in uint16, 0 = unknown
DEPTH_PNG_SCALE = 256.0
IMAGE_FORMATS = ("auto", "png", "jpeg")
SPLITS = ("all", "train", "val")


@dataclass(frozen=True)
class ExportConfig:
    """What ``export coco`` / ``export folders`` was asked for; saved in the export.

    Args:
        store: the store read.
        out: the folder written.
        kind: ``coco`` or ``folders``.
        image_format: ``auto`` (a JPEG store's bytes as they are, lossless
            images as PNG), ``png`` or ``jpeg``.
        jpeg_quality: quality of images encoded as JPEG here.
        split: ``all``, or ``train``/``val`` by held-out background as ``train`` splits.
        val_fraction, split_seed: that split's rule (``train``'s options).
        limit: export at most this many samples (the first of the split), ``None``: all.
    """

    store: str
    out: str
    kind: str
    image_format: str = "auto"
    jpeg_quality: int = 95
    split: str = "all"
    val_fraction: float = 0.1
    split_seed: int = 0
    limit: int | None = None


def check_export_config(c: ExportConfig) -> None:
    """Raise :class:`ConfigError` for values no export can use."""
    if c.kind not in ("coco", "folders"):
        raise ValueError(f"kind must be coco or folders, got {c.kind!r}")  # the CLI only passes these
    if c.image_format not in IMAGE_FORMATS:
        raise ConfigError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, got {c.image_format!r}")
    if not 1 <= c.jpeg_quality <= 100:
        raise ConfigError(f"--jpeg-quality must be 1..100, got {c.jpeg_quality}")
    if c.split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {c.split!r}")
    if not 0.0 < c.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {c.val_fraction}")
    if c.limit is not None and c.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {c.limit}")


# -- labels ------------------------------------------------------------------------


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed run-length encoding of a binary mask.

    Runs are counted in column-major order starting with a (possibly empty)
    run of zeros, then written as pycocotools writes them: each count after
    the second as the difference from the count two before, in 5-bit groups
    with a continuation bit, offset into printable ASCII.

    Args:
        mask: ``(H, W)`` array; non-zero is inside.

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    if mask.ndim != 2:
        raise ValueError(f"need an (H, W) mask, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5
            more = not (x == 0 and not c & 0x10 or x == -1 and c & 0x10)
            chars.append(chr(c + 48 + (0x20 if more else 0)))
            if not more:
                break
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """``(H, W) uint8`` mask (0/1) of a compressed RLE made by :func:`encode_rle` or pycocotools."""
    h, w = rle["size"]
    text = rle["counts"]
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    values = np.zeros(len(counts), np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ValueError(f"RLE holds {flat.size} pixels, its size says {h}x{w}")
    return flat.reshape((w, h)).T.copy()


def visible_box(mask: np.ndarray) -> list[int] | None:
    """``[x, y, width, height]`` in pixels of the non-zero pixels of ``(H, W)`` ``mask``; ``None`` if none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """``(H, W)`` metres → ``(H, W) uint16`` = ``round(depth · 256)``; 0 where unknown
    (0, negative or not finite); clipped to 65,535 (255.996 m)."""
    d = np.asarray(depth, dtype=np.float64)
    known = np.isfinite(d) & (d > 0)
    out = np.rint(np.where(known, d, 0.0) * DEPTH_PNG_SCALE)
    return np.clip(out, 0, 65535).astype(np.uint16)


# -- reading the store ------------------------------------------------------------


@dataclass
class SampleBlock:
    """Consecutive exported samples, as the store holds them.

    ``indices``: ``(k,) int64`` store indices; ``images``: ``(k, H, W, 3) uint8``
    or ``(k,) object`` JPEG ``bytes``; ``masks``: ``(k, H, W) uint8``;
    ``depth``: ``(k, H, W)`` float; ``instances``: ``(k, H, W) uint16`` or ``None``;
    ``fg``: ``(k,) int64`` foreground of each sample; ``alpha``: ``(k, H, W) uint8``
    or ``None`` (the store has none, or it was not asked for).
    """

    indices: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    depth: np.ndarray
    instances: np.ndarray | None
    fg: np.ndarray
    alpha: np.ndarray | None = None


class StoreSamples:
    """The done, selected samples of a store, read a chunk at a time.

    ``alpha``: also read the store's ``alpha`` array, when it has one.

    Raises:
        StoreError: not a store, no done shard, or arrays the export needs missing.
    """

    def __init__(self, path: str | Path, split: str = "all", val_fraction: float = 0.1, split_seed: int = 0,
                 limit: int | None = None, alpha: bool = False) -> None:
        import zarr

        from engine.store.verify import StoreShards

        self.root = Path(path)
        self.shards = StoreShards(self.root)
        self.attrs = self.shards.attrs
        group = zarr.open_group(str(self.root), mode="r")
        self.jpeg = "images_jpeg" in self.shards.names
        self.image_name = "images_jpeg" if self.jpeg else "images"
        for name in (self.image_name, "masks", "depth"):
            if name not in group:
                raise StoreError(f"{self.root}: no {name!r} array to export")
        self.arrays = {name: group[name] for name in (self.image_name, "masks", "depth")}
        if "instances" in group:
            self.arrays["instances"] = group["instances"]
        if alpha and "alpha" in group:
            self.arrays["alpha"] = group["alpha"]
        self.height, self.width = (int(s) for s in self.arrays["depth"].shape[1:3])
        self.chunk = int(self.arrays["depth"].chunks[0])
        self.fg_names = [f["name"] for f in self.attrs["inputs"]["foregrounds"]]
        meta = group["meta"]
        read = self.shards.read_array  # a damaged meta array is an error, never zeros
        bg = np.asarray(read("meta/bg_index"), dtype=np.int64)
        self.fg_index = np.asarray(read("meta/fg_index"), dtype=np.int64)
        #: several objects per image: sample i's instance k is object object_offset[i] + k - 1
        self.object_offset: np.ndarray | None = None
        self.object_fg: np.ndarray | None = None
        if "instances" in self.arrays:
            if "object_offset" not in meta or "objects" not in meta:
                raise StoreError(f"{self.root}: an 'instances' array without meta/object_offset and meta/objects")
            self.object_offset = np.asarray(read("meta/object_offset"), dtype=np.int64)
            self.object_fg = np.asarray(read("meta/objects/fg_index"), dtype=np.int64)
        selected = np.zeros(len(bg), bool)
        for k in self.shards.done:
            start, stop = self.shards.sample_range(k)
            selected[start:stop] = True
        if not selected.any():
            raise StoreError(f"{self.root}: no finished shard to export")
        if split != "all":
            from engine.splits import held_out_among, too_few_backgrounds

            try:  # among the backgrounds the finished samples hold: train's rule (engine.splits)
                held = held_out_among(bg[selected], val_fraction, split_seed)
            except ValueError:
                raise StoreError(f"{self.root}: no {split} split: " + too_few_backgrounds(
                    int(selected.sum()), len(self.fg_names), len(np.unique(bg[selected])))) from None
            in_val = np.isin(bg, held)
            selected &= in_val if split == "val" else ~in_val
        self.indices = np.flatnonzero(selected)
        if limit is not None:
            self.indices = self.indices[:limit]

    def __len__(self) -> int:
        return len(self.indices)

    def blocks(self) -> Iterator[SampleBlock]:
        """The selected samples in store order, one inner chunk's worth at a time."""
        chunk_of = self.indices // self.chunk
        edges = np.flatnonzero(np.diff(chunk_of)) + 1
        for picked in np.split(self.indices, edges):
            if picked.size == 0:
                continue
            start = int(picked[0] // self.chunk * self.chunk)
            stop = min(start + self.chunk, self.shards.n_samples)
            read = {name: self._read(name, start, stop) for name in self.arrays}
            rows = picked - start
            yield SampleBlock(indices=picked, images=read[self.image_name][rows], masks=read["masks"][rows],
                              depth=read["depth"][rows], instances=read["instances"][rows] if "instances" in read
                              else None, fg=self.fg_index[picked],
                              alpha=read["alpha"][rows] if "alpha" in read else None)

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        shard = start // self.shards.shard_size
        return self.shards.guard(name, [shard], lambda: self.arrays[name][start:stop])

    def instances_of(self, block: SampleBlock, row: int) -> list[tuple[int, np.ndarray]]:
        """``[(foreground index, (H, W) bool visible mask), ...]`` of sample ``row`` of
        ``block``: its visible instances, in instance id order (a fully occluded
        one has no pixel in the map, so it is not listed).

        A store without an ``instances`` map has one instance per sample: its mask.
        """
        if block.instances is None:
            return [(int(block.fg[row]), block.masks[row] > 0)]
        ids = block.instances[row]
        first = int(self.object_offset[block.indices[row]]) - 1  # type: ignore[index]
        return [(int(self.object_fg[first + i]), ids == i)  # type: ignore[index]
                for i in np.unique(ids[ids > 0]).tolist()]


# -- writing ---------------------------------------------------------------------------


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make ``out`` an empty folder; an existing non-empty one only with ``overwrite``,
    and only when an earlier export made it (so a typo never deletes a user's folder).

    Raises:
        ConfigError: ``out`` exists and holds files, and may not or cannot be replaced.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ConfigError(f"{out} exists and is not empty: choose another --out, or --overwrite an earlier export")
        if not (out / MARKER).is_file():
            raise ConfigError(f"{out} was not written by fgbg export ({MARKER} missing): refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # fast: exports are large
    return buffer.getvalue()


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling="4:4:4")
    return buffer.getvalue()


def _image_file(samples: StoreSamples, image: Any, config: ExportConfig) -> tuple[str, bytes]:
    """``(extension, bytes)`` of one exported image."""
    if samples.jpeg:
        if config.image_format in ("auto", "jpeg"):
            return "jpg", bytes(image)  # the store's own JPEG, not re-encoded
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(bytes(image))).convert("RGB"))
        return "png", _png(image)
    if config.image_format == "jpeg":
        return "jpg", _jpeg(image, config.jpeg_quality)
    return "png", _png(image)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _write_png(path: Path, array: np.ndarray) -> None:
    _write(path, _png(array))


@dataclass
class ExportReport:
    """What an export wrote."""

    out: Path
    samples: int
    instances: int
    files: int


Progress = Callable[[int, int], None]


def export_store(config: ExportConfig, overwrite: bool = False, threads: int | None = None,
                 progress: Progress | None = None) -> ExportReport:
    """Export ``config.store`` as ``config.kind`` into ``config.out``.

    ``progress(samples done, samples to do)`` is called after each chunk.

    Raises:
        ConfigError: bad options, or an ``--out`` that may not be replaced.
        StoreError: the store cannot be read (a damaged shard is named).
    """
    check_export_config(config)
    samples = StoreSamples(config.store, config.split, config.val_fraction, config.split_seed, config.limit,
                           alpha=config.kind == "folders")
    out = Path(config.out)
    prepare_out(out, overwrite)
    names = sorted({category_of(n) for n in samples.fg_names})
    category_ids = {name: i + 1 for i, name in enumerate(names)}
    categories = [category_ids[category_of(n)] for n in samples.fg_names]
    info = {"tool": "fgbg", "store": str(Path(config.store).resolve()), "export": asdict(config),
            "store_config": samples.attrs.get("config"), "depth_png": "uint16 = metres * 256, 0 = unknown"}
    _write(out / MARKER, json.dumps(info, indent=2).encode())
    image_dir = out / "images"
    image_dir.mkdir()
    if config.kind == "folders":
        (out / "masks").mkdir()
        (out / "depth").mkdir()
        for name in ("instances", "alpha"):
            if name in samples.arrays:
                (out / name).mkdir()
        coco = None
    else:
        coco = CocoWriter(out / "annotations.json", info,
                          [{"id": i, "name": n, "supercategory": "foreground"} for n, i in category_ids.items()])
    done = instances = files = 0
    total = len(samples)
    if progress:
        progress(0, total)
    try:
        instances, files, done = _export_blocks(samples, config, out, image_dir, coco, categories, threads, progress)
    except BaseException:  # Ctrl-C or an error: no .partial JSON left behind
        if coco is not None:
            coco.abort()
        raise
    if coco is not None:
        coco.close()
        files += 1
    return ExportReport(out=out, samples=done, instances=instances, files=files)


def count_instances(block: SampleBlock, row: int) -> int:
    """Visible instances of sample ``row`` of ``block``: ids in its ``instances`` map,
    else 1 when its mask has a pixel (as COCO counts them)."""
    if block.instances is not None:
        ids = block.instances[row]
        return int(np.unique(ids[ids > 0]).size)
    return int(bool(block.masks[row].any()))


def _export_blocks(samples: StoreSamples, config: ExportConfig, out: Path, image_dir: Path, coco: CocoWriter | None,
                   categories: list[int], threads: int | None, progress: Progress | None) -> tuple[int, int, int]:
    """Write every selected sample; returns ``(instances, files, samples)``."""
    done = instances = files = 0
    total = len(samples)
    with ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="fgbg-export") as pool:
        for block in samples.blocks():
            stems = [f"{index:08d}" for index in block.indices.tolist()]
            images = [pool.submit(_image_file, samples, block.images[row], config) for row in range(len(stems))]
            labels = []
            if coco is None:
                for row, stem in enumerate(stems):
                    labels.append(pool.submit(_write_png, out / "masks" / f"{stem}.png", block.masks[row]))
                    labels.append(pool.submit(_write_png, out / "depth" / f"{stem}.png",
                                              depth_to_png16(block.depth[row])))
                    if block.instances is not None:
                        labels.append(pool.submit(_write_png, out / "instances" / f"{stem}.png",
                                                  block.instances[row]))
                    if block.alpha is not None:
                        labels.append(pool.submit(_write_png, out / "alpha" / f"{stem}.png", block.alpha[row]))
            for row, (stem, job) in enumerate(zip(stems, images)):
                ext, data = job.result()
                _write(image_dir / f"{stem}.{ext}", data)
                if coco is None:
                    instances += count_instances(block, row)
                else:
                    index = int(block.indices[row])
                    coco.image(index, f"{stem}.{ext}", samples.width, samples.height)  # relative to images/
                    for fg, mask in samples.instances_of(block, row):
                        box = visible_box(mask)
                        if box is None:  # fully occluded or outside the image: no annotation
                            continue
                        coco.annotation(index, categories[fg], box, int(mask.sum()), encode_rle(mask))
                        instances += 1
            for job in labels:
                job.result()
            files += len(images) + len(labels)
            done += len(stems)
            if progress:
                progress(done, total)
    return instances, files, done


class CocoWriter:
    """A COCO instances JSON written once, front to back, in constant memory.

    ``images`` entries stream into the file as they come; ``annotations`` go
    to a side file appended at :meth:`close`, which also renames the
    ``.partial`` file into place (a killed export leaves no half-valid JSON).
    """

    def __init__(self, path: Path, info: dict[str, Any], categories: list[dict[str, Any]]) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.side = path.with_name(path.name + ".annotations.partial")
        self.f = open(self.partial, "w")
        self.a = open(self.side, "w")
        self.f.write('{"info": ' + json.dumps(info) + ', "licenses": [], "categories": '
                     + json.dumps(categories) + ', "images": [')
        self.n_images = self.n_annotations = 0

    def image(self, image_id: int, file_name: str, width: int, height: int) -> None:
        self.f.write(("," if self.n_images else "") + "\n" + json.dumps(
            {"id": image_id, "file_name": file_name, "width": width, "height": height}))
        self.n_images += 1

    def annotation(self, image_id: int, category_id: int, box: list[int], area: int, rle: dict[str, Any]) -> None:
        self.n_annotations += 1
        self.a.write(("," if self.n_annotations > 1 else "") + "\n" + json.dumps(
            {"id": self.n_annotations, "image_id": image_id, "category_id": category_id, "bbox": box,
             "area": area, "segmentation": rle, "iscrowd": 0}))

    def abort(self) -> None:
        """Close and delete the partial files (an interrupted export)."""
        for f in (self.a, self.f):
            f.close()
        for path in (self.side, self.partial):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self.a.close()
        self.f.write('], "annotations": [')
        with open(self.side) as side:
            shutil.copyfileobj(side, self.f)
        self.f.write("]}\n")
        self.f.close()
        os.replace(self.partial, self.path)
        self.side.unlink()

"""Check that every array of a store is really there and readable: the shards
of the per-sample arrays that the store records as done, and every file of the
arrays written whole when the store was created (``meta/*``, ``assets/*``; the
per-object results ``meta/objects/{depth,visible_pixels,box}`` where done
shards wrote them).

Three levels, each including the one before:

- ``stat``: the file exists and is at least as long as its index (one
  ``stat`` per file; what readers do before each read).
- ``index``: the index at the end of a shard file passes its CRC32C and every
  chunk it must hold is there and lies inside the file (what ``info`` does, and
  ``generate --resume`` before it trusts a done shard).
- ``full``: every chunk passes its own CRC32C and decodes to the size it must
  have; JPEG samples also decode as images (what ``verify`` does).

Stores written since chunk checksums (every array's codecs end with Zarr's
``crc32c``) also write chunks of fill values only, so a missing chunk or file
is always damage. Older stores have neither: a flipped bit inside compressed
data that still decompresses to the right length goes unnoticed there, and a
missing file of a ``meta``/``assets`` array cannot be told from one of zeros
(:attr:`StoreShards.unchecksummed` lists their arrays; ``info`` says so).

Readers use :meth:`StoreShards.guard`: a done shard's missing file is an error
(zarr would return zeros), and a read that fails is traced to the damaged
shard, so the user sees one line instead of a traceback.

This module reads files directly (no zarr at import) so ``info`` stays fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from engine.errors import StoreError
from engine.store.attrs import read_attrs
from engine.store.shard_codec import damaged_shard_error

LEVELS = ("stat", "index", "full")
_ABSENT = 2**64 - 1
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One damaged file (shard, or chunk of an unsharded array) of one array.

    ``unit`` is ``"shard"`` or ``"chunk"``; ``items`` what the array's first axis
    counts (``"samples"``, ``"backgrounds"``, ``"objects"``…).
    """

    array: str
    shard: int
    start: int
    stop: int
    reason: str
    unit: str = "shard"
    items: str = "samples"

    def __str__(self) -> str:
        if self.unit == "array":  # the array itself (its zarr.json) is gone
            return f"{self.array}: {self.reason}"
        return f"{self.array} {self.unit} {self.shard} ({self.items} {self.start}-{self.stop - 1}): {self.reason}"


@dataclass(frozen=True)
class _ArrayFormat:
    """What checking an array's shard files needs, read from its ``zarr.json``.

    ``inner`` is ``"raw"``, ``"zstd"``, ``"vlen"`` or ``None`` (codecs this module
    does not decode itself; ``full`` then reads the shard through zarr).
    An unsharded array's files are its chunks: one "shard" of one chunk, no index.
    """

    name: str
    doc: dict[str, Any]
    chunk_samples: int
    chunks_per_shard: int
    index_at_end: bool
    inner: str | None
    sample_bytes: int  # bytes of one decoded sample (fixed-size arrays)
    sharded: bool = True
    checksum: bool = False  # each chunk ends with its CRC32C

    @property
    def index_bytes(self) -> int:
        return self.chunks_per_shard * 16 + 4 if self.sharded else 0  # (offset, nbytes) uint64 pairs + CRC32C

    @property
    def n_items(self) -> int:
        return int(self.doc["shape"][0])

    @property
    def unit_items(self) -> int:
        """Items (along the first axis) per file."""
        return self.chunk_samples * self.chunks_per_shard

    @property
    def n_units(self) -> int:
        return -(-self.n_items // self.unit_items)

    @property
    def items(self) -> str:
        """What the first axis counts, plural (its dimension name)."""
        dim = (self.doc.get("dimension_names") or [None])[0] or "item"
        return {"sample_edge": "offsets"}.get(dim, dim + "s")

    def key(self, shard: int) -> str:
        """Path of shard ``shard``'s file relative to the array folder."""
        coords = [str(shard)] + ["0"] * (len(self.doc["shape"]) - 1)
        enc = self.doc.get("chunk_key_encoding", {"name": "default"})
        sep = enc.get("configuration", {}).get("separator", "/" if enc["name"] == "default" else ".")
        return "c" + sep + sep.join(coords) if enc["name"] == "default" else sep.join(coords)


def _array_format(root: Path, name: str) -> _ArrayFormat:
    try:
        doc = json.loads((root / name / "zarr.json").read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{root}: array '{name}' is missing or its zarr.json is unreadable ({e})") from None
    codecs = doc.get("codecs", [])
    grid = doc["chunk_grid"]["configuration"]["chunk_shape"]
    if list(grid[1:]) != list(doc["shape"][1:]) and 0 not in doc["shape"]:
        raise StoreError(f"{root}: array '{name}' is split along more than its first axis; fgbg cannot check it")
    sharded = bool(codecs) and codecs[0].get("name") == "sharding_indexed"
    if sharded:
        conf = codecs[0]["configuration"]
        shard, chunk, inner_codecs = grid[0], conf["chunk_shape"][0], conf["codecs"]
        chunk_shape = conf["chunk_shape"]
        index_ok = [c["name"] for c in conf["index_codecs"]] == ["bytes", "crc32c"]
    else:
        conf = {}
        shard, chunk, inner_codecs, chunk_shape, index_ok = grid[0], grid[0], codecs, grid, True
    names = [c["name"] for c in inner_codecs]
    checksum = bool(names) and names[-1] == "crc32c"
    names = names[:-1] if checksum else names
    zstd_checksum = any(c["name"] == "zstd" and c.get("configuration", {}).get("checksum") for c in inner_codecs)
    inner = {("bytes",): "raw", ("bytes", "zstd"): "zstd", ("vlen-bytes",): "vlen"}.get(tuple(names))
    little = all(c.get("configuration", {}).get("endian", "little") == "little"
                 for c in inner_codecs if c["name"] == "bytes")
    if zstd_checksum or not index_ok or not little:
        inner = None
    sample_bytes = 0
    if inner in ("raw", "zstd"):
        itemsize = {"uint8": 1, "int8": 1, "float16": 2, "uint16": 2, "int16": 2, "float32": 4, "int32": 4,
                    "uint32": 4, "float64": 8, "int64": 8, "uint64": 8}.get(doc["data_type"])
        if itemsize is None:
            inner = None
        else:
            sample_bytes = itemsize * int(np.prod(chunk_shape[1:], dtype=np.int64))
    return _ArrayFormat(name, doc, chunk, shard // chunk, conf.get("index_location", "end") == "end", inner,
                        sample_bytes, sharded, checksum)


#: folders of the arrays written whole when a store is created
WHOLE_ARRAY_FOLDERS = ("meta", "assets")
#: per-object results, written by each shard (several objects per image)
OBJECT_RESULT_ARRAYS = ("meta/objects/depth", "meta/objects/visible_pixels", "meta/objects/box")


def whole_array_names(root: Path) -> tuple[str, ...]:
    """The arrays under ``meta/`` and ``assets/`` (relative paths, sorted)."""
    names = []
    for folder in WHOLE_ARRAY_FOLDERS:
        for meta in sorted((root / folder).rglob("zarr.json")):
            try:
                if json.loads(meta.read_text()).get("node_type") == "array":
                    names.append(meta.parent.relative_to(root).as_posix())
            except (OSError, ValueError):
                names.append(meta.parent.relative_to(root).as_posix())  # _array_format names the damage
    return tuple(names)


class StoreShards:
    """The done shards of a store's per-sample arrays, and checks of their files.

    Args:
        root: the store.
        attrs: its ``fgbg`` attributes (read from ``root`` if ``None``).

    Raises:
        StoreError: not an fgbg store, or its per-sample arrays are unreadable.
    """

    def __init__(self, root: str | Path, attrs: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.attrs = attrs if attrs is not None else read_attrs(self.root)
        lay = self.attrs["layout"]
        self.n_samples, self.shard_size = int(lay["n_samples"]), int(lay["shard_size"])
        self.done = sorted(int(k) for k in self.attrs["progress"]["shards_done"])
        self._done_set = set(self.done)
        self.names = tuple(lay.get("data_arrays") or (
            n for n in ("images", "images_jpeg", "masks", "depth", "alpha") if (self.root / n / "zarr.json").is_file()))
        #: arrays written whole (``meta/*``, ``assets/*``), checked file by file
        self.whole_names = tuple(lay.get("whole_arrays") or whole_array_names(self.root))
        self.formats = {name: _array_format(self.root, name) for name in self.names}
        #: whole arrays whose zarr.json is gone or unreadable: the reason
        self.broken: dict[str, str] = {}
        for name in self.whole_names:
            try:
                self.formats[name] = _array_format(self.root, name)
            except StoreError:
                self.broken[name] = "zarr.json missing or unreadable"
        #: arrays whose chunks carry no checksum (stores written before chunk checksums)
        self.unchecksummed = tuple(name for name, f in self.formats.items() if not f.checksum)
        self._required: dict[str, list[int]] = {}
        for name in self.whole_names:  # in order: the per-object results need meta/object_offset's
            self._required[name] = self._required_units(name)

    def _required_units(self, name: str) -> list[int]:
        """Files of whole array ``name`` that must be there: all of them (an old
        store: those that are, as a missing one may have held zeros only), and of
        the per-object results those holding the rows of shards that wrote them."""
        if name in self.broken:
            return [0]
        fmt = self.formats[name]
        units = range(fmt.n_units)
        if not fmt.checksum:
            return [k for k in units if (self.root / name / fmt.key(k)).is_file()]
        if name not in OBJECT_RESULT_ARRAYS:
            return list(units)
        # shards recorded in the attributes (not in markers: their results are still in side files)
        recorded = read_attrs(self.root, markers=False)["progress"]["shards_done"]  # type: ignore[index]
        if not recorded:
            return []
        try:
            offset = self._object_offset()
        except StoreError:  # reported as meta/object_offset's own damage
            return []
        rows = [(int(offset[a]), int(offset[b])) for a, b in (self.sample_range(k) for k in recorded)]
        return sorted({u for lo, hi in rows if hi > lo for u in range(lo // fmt.unit_items, -(-hi // fmt.unit_items))})

    def _object_offset(self) -> np.ndarray:
        import zarr

        path = self.root / "meta" / "object_offset"
        return self.guard("meta/object_offset", None, lambda: zarr.open_array(path, mode="r")[:])

    def sample_range(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.n_samples)

    def item_range(self, name: str, unit: int) -> tuple[int, int]:
        """Items (samples for per-sample arrays) of file ``unit`` of array ``name``."""
        if name in self.names:
            return self.sample_range(unit)
        if name in self.broken:
            return 0, 1
        fmt = self.formats[name]
        start = unit * fmt.unit_items
        return start, min(start + fmt.unit_items, fmt.n_items)

    def units(self, name: str) -> list[int]:
        """The files of array ``name`` that must be there: done shards, or whole arrays' files."""
        return self.done if name in self.names else self._required[name]

    def path(self, name: str, shard: int) -> Path:
        return self.root / name / self.formats[name].key(shard)

    # -- checks -------------------------------------------------------------------------

    def problem(self, name: str, shard: int, level: str = "full", decode_jpeg: bool = True) -> Problem | None:
        """What is wrong with shard ``shard`` of array ``name`` at ``level``, or ``None``."""
        try:
            reason = self._check(name, shard, level, decode_jpeg)
        except OSError as e:
            reason = f"unreadable ({e.strerror or e})"
        if reason is None:
            return None
        if name in self.broken:
            return Problem(name, 0, 0, 1, reason, "array", "files")
        fmt = self.formats[name]
        unit = "shard" if fmt.sharded else "chunk"
        items = "samples" if name in self.names else fmt.items
        return Problem(name, shard, *self.item_range(name, shard), reason, unit, items)

    def check(self, level: str = "full", threads: int | None = None, decode_jpeg: bool = True,
              progress: Callable[[int, int], None] | None = None, arrays: Iterable[str] | None = None) -> list[Problem]:
        """Check every done shard of every per-sample array, and every file of the
        arrays written whole, ``threads`` at a time.

        ``progress(files checked, files to check)`` is called after each file;
        ``arrays`` limits the check to those (default: all).
        Returns the problems sorted by array, then shard.
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        jobs = [(name, k) for name in (self.all_names if arrays is None else arrays) for k in self.units(name)]
        if progress:
            progress(0, len(jobs))
        found: list[Problem] = []
        work = threads or os.cpu_count() or 1
        with ThreadPoolExecutor(work, thread_name_prefix="fgbg-verify") as pool:
            for n, p in enumerate(pool.map(lambda job: self.problem(*job, level, decode_jpeg), jobs), 1):
                if p is not None:
                    found.append(p)
                if progress:
                    progress(n, len(jobs))
        order = {name: i for i, name in enumerate(self.all_names)}
        return sorted(found, key=lambda p: (order[p.array], p.shard))

    @property
    def all_names(self) -> tuple[str, ...]:
        return (*self.names, *self.whole_names)

    def files_to_check(self) -> int:
        return sum(len(self.units(name)) for name in self.all_names)

    def damaged_shards(self, level: str = "index") -> set[int]:
        """Done shards with a problem in any per-sample array (at ``level``)."""
        return {p.shard for p in self.check(level, arrays=self.names)}

    # -- reading ------------------------------------------------------------------------

    def guard(self, name: str, shards: Iterable[int] | None, read: Callable[[], T]) -> T:
        """``read()`` (a zarr read of array ``name`` touching ``shards``), made safe.

        Done shards among ``shards`` must have their file (zarr would return
        zeros); when ``read`` fails (a chunk's checksum, a damaged index), the
        damaged shard it met is named. For an array written whole (``meta/*``,
        ``assets/*``) ``shards`` are its files (``None``: all of them), each
        checked at ``index`` level first (a few small files: a chunk missing
        inside one is found too).

        Raises:
            StoreError: a done shard or file is missing or damaged (one line).
        """
        if name in self.names:
            touched, first = sorted({int(k) for k in (() if shards is None else shards)} & self._done_set), "stat"
        else:
            required = self.units(name)
            touched = required if shards is None else sorted({int(k) for k in shards} & set(required))
            first = "index"
        for k in touched:
            p = self.problem(name, k, first)
            if p is not None:
                raise self.error(p)
        try:
            return read()
        except Exception:  # re-raised unless verification finds the damage
            for k in touched:
                p = self.problem(name, k, "full")
                if p is not None:
                    raise self.error(p) from None
            raise  # no damage found: a bug, keep its traceback

    def read_array(self, name: str, select: Any = slice(None)) -> np.ndarray:
        """``select`` of array ``name`` written whole (``meta/*``, ``assets/*``),
        read through :meth:`guard`: a missing file or chunk, or one failing its
        checksum, is a one-line error, never zeros.

        Raises:
            StoreError: the array is damaged, or the store has no such array.
        """
        import zarr

        if name not in self.whole_names:
            raise StoreError(f"{self.root}: no array '{name}'")
        return self.guard(name, None, lambda: zarr.open_array(self.root / name, mode="r")[select])

    def error(self, problem: Problem) -> StoreError:
        """The one-line error a reader raises for ``problem``."""
        if problem.array in self.names:
            return damaged_shard_error(self.root, problem.array, problem.shard, problem.start, problem.stop,
                                       problem.reason)
        return StoreError(f"{self.root}: {problem} (damaged); see `cli.py verify {self.root}`, "
                          f"repair with {REPAIR_WHOLE}")

    # -- one file -------------------------------------------------------------------------

    def _check(self, name: str, shard: int, level: str, decode_jpeg: bool) -> str | None:
        if name in self.broken:
            return self.broken[name]
        fmt = self.formats[name]
        path = self.path(name, shard)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "file missing"
        if size < fmt.index_bytes or (fmt.checksum and size < 4):
            return f"file truncated ({size} bytes, its index alone is {fmt.index_bytes})"
        if level == "stat":
            return None
        start, stop = self.item_range(name, shard)
        if not fmt.sharded:
            if level == "index":
                return None
            if fmt.inner is None:
                return self._check_with_zarr(name, start, stop)
            reason = _check_chunk(fmt, path.read_bytes(), range(start, stop), decode_jpeg)
            return reason
        n_chunks = -(-(stop - start) // fmt.chunk_samples)
        # an old store's whole arrays left out chunks of fill values only
        may_lack = name not in self.names and not fmt.checksum
        with open(path, "rb") as f:
            data = f.read() if level == "full" else None
            if data is None:
                f.seek(-fmt.index_bytes if fmt.index_at_end else 0, 2 if fmt.index_at_end else 0)
                tail = f.read(fmt.index_bytes)
            else:
                tail = data[-fmt.index_bytes:] if fmt.index_at_end else data[: fmt.index_bytes]
        from engine.store.shard_codec import _crc32c

        if _crc32c(tail[:-4]) != tail[-4:]:
            return "index checksum mismatch (file truncated or overwritten)"
        index = np.frombuffer(tail[:-4], dtype="<u8").reshape(fmt.chunks_per_shard, 2)
        lo, hi = (0, size - fmt.index_bytes) if fmt.index_at_end else (fmt.index_bytes, size)
        for slot in range(n_chunks):
            offset, nbytes = (int(v) for v in index[slot])
            if offset == _ABSENT:
                if may_lack:
                    continue
                return f"chunk {slot} missing from the index"
            if offset < lo or offset + nbytes > hi:
                return f"chunk {slot} lies outside the file (offset {offset}, {nbytes} bytes, file {size} bytes)"
        if level == "index":
            return None
        if fmt.inner is None:
            return self._check_with_zarr(name, start, stop)
        for slot in range(n_chunks):
            offset, nbytes = (int(v) for v in index[slot])
            if offset == _ABSENT:
                continue
            raw = data[offset : offset + nbytes]  # type: ignore[index]
            first = start + slot * fmt.chunk_samples
            reason = _check_chunk(fmt, raw, range(first, min(first + fmt.chunk_samples, stop)), decode_jpeg)
            if reason is not None:
                return f"chunk {slot}: {reason}"
        return None

    def _check_with_zarr(self, name: str, start: int, stop: int) -> str | None:
        import zarr

        try:
            zarr.open_array(self.root / name, mode="r")[start:stop]  # zarr checks the crc32c codec itself
        except Exception as e:  # noqa: BLE001 - zarr raises many kinds for bad bytes
            return f"does not decode ({type(e).__name__}: {str(e)[:120]})"
        return None


def _check_chunk(fmt: _ArrayFormat, raw: bytes, samples: range, decode_jpeg: bool) -> str | None:
    """Why the encoded chunk ``raw`` is damaged, or ``None``; ``samples`` are the
    store samples it holds (an edge chunk's padding excluded)."""
    if fmt.checksum:
        from engine.store.shard_codec import strip_checksum

        try:
            raw = strip_checksum(raw)
        except ValueError as e:
            return str(e)
    if fmt.inner == "vlen":
        return _check_vlen(raw, fmt.chunk_samples, len(samples), decode_jpeg)
    if fmt.inner == "zstd":
        from numcodecs import Zstd

        try:
            raw = Zstd().decode(raw)
        except Exception as e:  # noqa: BLE001 - numcodecs raises RuntimeError for corrupt frames
            return f"does not decompress ({str(e)[:120]})"
    want = fmt.chunk_samples * fmt.sample_bytes
    if len(raw) != want:
        return f"decodes to {len(raw)} bytes, expected {want}"
    return None


def _check_vlen(raw: bytes, n_items: int, n_used: int, decode_jpeg: bool) -> str | None:
    """The ``vlen-bytes`` layout: item count (uint32), then per item its length
    (uint32) and bytes. Parsed here with bounds checks (zarr trusts the
    lengths and may try to allocate gigabytes for a flipped one)."""
    if len(raw) < 4:
        return "shorter than its item count"
    count = int.from_bytes(raw[:4], "little")
    if count != n_items:
        return f"holds {count} items, expected {n_items}"
    pos, items = 4, []
    for i in range(count):
        if pos + 4 > len(raw):
            return f"item {i} runs past the chunk's end"
        length = int.from_bytes(raw[pos : pos + 4], "little")
        pos += 4
        if pos + length > len(raw):
            return f"item {i} runs past the chunk's end"
        items.append(raw[pos : pos + length])
        pos += length
    if pos != len(raw):
        return f"{len(raw) - pos} stray bytes after its items"
    for i, item in enumerate(items[:n_used]):
        if not item:
            return f"sample {i} is empty"
        if decode_jpeg:
            reason = _jpeg_problem(item)
            if reason is not None:
                return f"sample {i}: {reason}"
    return None


def _jpeg_problem(data: bytes) -> str | None:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError… for bad files
        return f"JPEG does not decode ({str(e)[:80]})"
    return None


#: the command that repairs a damaged ``meta``/``assets`` array
REPAIR_WHOLE = "`generate --resume --resume-check full` (same options)"


def repair_advice(shards: StoreShards, problems: list[Problem]) -> str:
    """The command that repairs ``problems``: plain ``--resume`` rewrites done shards
    whose file is missing or whose index is damaged; damage inside chunks, and any
    damage to ``meta``/``assets``, needs ``--resume-check full``."""
    index_level = all(p.array in shards.names and shards.problem(p.array, p.shard, "index") is not None
                      for p in problems)
    return "generate --resume (same options)" if index_level else "generate --resume --resume-check full (same options)"


def files_damaged(root: str | Path, attrs: dict[str, Any]) -> list[Problem]:
    """``index``-level problems of the done shards, for ``info``: a ``stat`` and a
    read of the index (a few KB) per file, no decoding."""
    return StoreShards(root, attrs).check("index", threads=4)

"""Check that the shards a store records as done are really there and readable.

Three levels, each including the one before:

- ``stat``: the file exists and is at least as long as its index (one
  ``stat`` per file; what readers do before each read).
- ``index``: the index at the end of the file passes its CRC32C and every
  chunk of the shard's samples lies inside the file (what ``info`` does, and
  ``generate --resume`` before it trusts a done shard).
- ``full``: every chunk decodes to the size it must have; JPEG samples also
  decode as images (what ``verify`` does).

What no level can see: fgbg's chunks carry no checksum of their own (Zstandard
without its optional checksum, or raw bytes), so a flipped bit inside
compressed data that still decompresses to the right length goes unnoticed.

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
    """One damaged shard file of one array."""

    array: str
    shard: int
    start: int
    stop: int
    reason: str

    def __str__(self) -> str:
        return f"{self.array} shard {self.shard} (samples {self.start}-{self.stop - 1}): {self.reason}"


@dataclass(frozen=True)
class _ArrayFormat:
    """What checking an array's shard files needs, read from its ``zarr.json``.

    ``inner`` is ``"raw"``, ``"zstd"``, ``"vlen"`` or ``None`` (codecs this module
    does not decode itself; ``full`` then reads the shard through zarr).
    """

    name: str
    doc: dict[str, Any]
    chunk_samples: int
    chunks_per_shard: int
    index_at_end: bool
    inner: str | None
    sample_bytes: int  # bytes of one decoded sample (fixed-size arrays)

    @property
    def index_bytes(self) -> int:
        return self.chunks_per_shard * 16 + 4  # (offset, nbytes) uint64 pairs + CRC32C

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
    if not codecs or codecs[0].get("name") != "sharding_indexed":
        raise StoreError(f"{root}: array '{name}' is not sharded; fgbg cannot check it")
    conf = codecs[0]["configuration"]
    shard = doc["chunk_grid"]["configuration"]["chunk_shape"][0]
    chunk = conf["chunk_shape"][0]
    names = [c["name"] for c in conf["codecs"]]
    zstd_checksum = any(c["name"] == "zstd" and c.get("configuration", {}).get("checksum") for c in conf["codecs"])
    inner = {("bytes",): "raw", ("bytes", "zstd"): "zstd", ("vlen-bytes",): "vlen"}.get(tuple(names))
    if zstd_checksum or [c["name"] for c in conf["index_codecs"]] != ["bytes", "crc32c"]:
        inner = None
    sample_bytes = 0
    if inner in ("raw", "zstd"):
        itemsize = {"uint8": 1, "int8": 1, "float16": 2, "uint16": 2, "int16": 2, "float32": 4, "int32": 4,
                    "uint32": 4, "float64": 8, "int64": 8, "uint64": 8}.get(doc["data_type"])
        if itemsize is None:
            inner = None
        else:
            sample_bytes = itemsize * int(np.prod(conf["chunk_shape"][1:], dtype=np.int64))
    return _ArrayFormat(name, doc, chunk, shard // chunk, conf.get("index_location", "end") == "end", inner, sample_bytes)


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
        self.formats = {name: _array_format(self.root, name) for name in self.names}

    def sample_range(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.n_samples)

    def path(self, name: str, shard: int) -> Path:
        return self.root / name / self.formats[name].key(shard)

    # -- checks -------------------------------------------------------------------------

    def problem(self, name: str, shard: int, level: str = "full", decode_jpeg: bool = True) -> Problem | None:
        """What is wrong with shard ``shard`` of array ``name`` at ``level``, or ``None``."""
        try:
            reason = self._check(name, shard, level, decode_jpeg)
        except OSError as e:
            reason = f"unreadable ({e.strerror or e})"
        return None if reason is None else Problem(name, shard, *self.sample_range(shard), reason)

    def check(self, level: str = "full", threads: int | None = None, decode_jpeg: bool = True,
              progress: Callable[[int, int], None] | None = None) -> list[Problem]:
        """Check every done shard of every per-sample array, ``threads`` at a time.

        ``progress(files checked, files to check)`` is called after each file.
        Returns the problems sorted by array, then shard.
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        jobs = [(name, k) for name in self.names for k in self.done]
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
        order = {name: i for i, name in enumerate(self.names)}
        return sorted(found, key=lambda p: (order[p.array], p.shard))

    def damaged_shards(self, level: str = "index") -> set[int]:
        """Done shards with a problem in any array (at ``level``)."""
        return {p.shard for p in self.check(level)}

    # -- reading ------------------------------------------------------------------------

    def guard(self, name: str, shards: Iterable[int], read: Callable[[], T]) -> T:
        """``read()`` (a zarr read of array ``name`` touching ``shards``), made safe.

        Done shards among ``shards`` must have their file (zarr would return
        zeros); when ``read`` fails, the damaged shard it met is named.

        Raises:
            StoreError: a done shard is missing or damaged (one line).
        """
        touched = sorted({int(k) for k in shards} & self._done_set)
        for k in touched:
            p = self.problem(name, k, "stat")
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

    def error(self, problem: Problem) -> StoreError:
        """The one-line error a reader raises for ``problem``."""
        return damaged_shard_error(self.root, problem.array, problem.shard, problem.start, problem.stop, problem.reason)

    # -- one file -------------------------------------------------------------------------

    def _check(self, name: str, shard: int, level: str, decode_jpeg: bool) -> str | None:
        fmt = self.formats[name]
        path = self.path(name, shard)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "file missing"
        if size < fmt.index_bytes:
            return f"file truncated ({size} bytes, its index alone is {fmt.index_bytes})"
        if level == "stat":
            return None
        start, stop = self.sample_range(shard)
        n_chunks = -(-(stop - start) // fmt.chunk_samples)
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
                return f"chunk {slot} missing from the index"
            if offset < lo or offset + nbytes > hi:
                return f"chunk {slot} lies outside the file (offset {offset}, {nbytes} bytes, file {size} bytes)"
        if level == "index":
            return None
        if fmt.inner is None:
            return self._check_with_zarr(name, start, stop)
        for slot in range(n_chunks):
            offset, nbytes = (int(v) for v in index[slot])
            raw = data[offset : offset + nbytes]  # type: ignore[index]
            first = start + slot * fmt.chunk_samples
            reason = _check_chunk(fmt, raw, range(first, min(first + fmt.chunk_samples, stop)), decode_jpeg)
            if reason is not None:
                return f"chunk {slot}: {reason}"
        return None

    def _check_with_zarr(self, name: str, start: int, stop: int) -> str | None:
        import zarr

        try:
            zarr.open_array(self.root / name, mode="r")[start:stop]
        except Exception as e:  # noqa: BLE001 - zarr raises many kinds for bad bytes
            return f"does not decode ({type(e).__name__}: {str(e)[:120]})"
        return None


def _check_chunk(fmt: _ArrayFormat, raw: bytes, samples: range, decode_jpeg: bool) -> str | None:
    """Why the encoded chunk ``raw`` is damaged, or ``None``; ``samples`` are the
    store samples it holds (an edge chunk's padding excluded)."""
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


def files_damaged(root: str | Path, attrs: dict[str, Any]) -> list[Problem]:
    """``index``-level problems of the done shards, for ``info``: a ``stat`` and a
    read of the index (a few KB) per file, no decoding."""
    return StoreShards(root, attrs).check("index", threads=4)

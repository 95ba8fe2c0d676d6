"""Encode Zarr v3 shards directly: compress chunks on all cores, write one file.

zarr-python's own write path ran at about half the speed of its compressor
here (its per-chunk Python work holds the GIL), so the writer builds shard
files itself for the arrays fgbg creates. The format is the Zarr v3 sharding
codec with ``index_location = "end"``: the encoded inner chunks back to back,
then an index of ``(offset, nbytes)`` uint64 pairs, one per inner chunk in C
order (``2**64 - 1`` twice for an absent chunk), then the CRC32C of the index.
Each inner chunk ends with its own CRC32C (Zarr v3's ``crc32c`` codec after
the compressor; stores written before it have none), so a flipped byte inside
compressed data is found by every reader: zarr-python, tensorstore and
:class:`ShardReader` check it.
Edge chunks are padded to the full chunk shape with the fill value, as zarr
does. Tests check the bytes equal zarr-python's for the same data, and
:func:`shard_spec` refuses any array whose codecs this does not implement.

:class:`ShardReader` is the reverse for random access (training batches):
it decodes only the chunks that hold the wanted samples, reading each shard's
index once; zarr-python's own ``oindex`` took ~250 ms for 32 random samples
of a 224×224 store here, and one read per sample ~2 ms each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import StoreError

_ABSENT = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class ShardSpec:
    """What :func:`encode_shard` needs to know about an array.

    Attributes:
        shard_samples: samples per shard (along axis 0; other axes are whole).
        chunk_samples: samples per inner chunk.
        zstd_level: Zstandard level of the inner chunks, or ``None`` for raw bytes.
        fill_value: value used to pad an edge chunk.
        checksum: each encoded chunk ends with its CRC32C (little-endian uint32).
    """

    shard_samples: int
    chunk_samples: int
    zstd_level: int | None
    fill_value: Any
    checksum: bool = False


def shard_spec(metadata: dict[str, Any]) -> ShardSpec | None:
    """The spec of an array's ``zarr.json`` (a dict), or ``None`` when its codecs
    are not exactly what :func:`encode_shard` writes (the caller then lets zarr write)."""
    codecs = metadata.get("codecs", [])
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    conf = codecs[0]["configuration"]
    shard = metadata["chunk_grid"]["configuration"]["chunk_shape"]
    chunk = conf["chunk_shape"]
    if list(shard[1:]) != list(metadata["shape"][1:]) or list(chunk[1:]) != list(shard[1:]):
        return None  # only splits along the sample axis are implemented
    if conf.get("index_location", "end") != "end":
        return None
    if [c["name"] for c in conf["index_codecs"]] != ["bytes", "crc32c"]:
        return None
    if conf["index_codecs"][0].get("configuration", {}).get("endian", "little") != "little":
        return None
    inner = conf["codecs"]
    checksum = bool(inner) and inner[-1]["name"] == "crc32c"
    inner = inner[:-1] if checksum else inner
    if not inner or inner[0]["name"] != "bytes" or inner[0].get("configuration", {}).get("endian", "little") != "little":
        return None
    level: int | None = None
    if len(inner) == 2 and inner[1]["name"] == "zstd" and not inner[1]["configuration"].get("checksum", False):
        level = int(inner[1]["configuration"]["level"])
    elif len(inner) != 1:
        return None
    return ShardSpec(int(shard[0]), int(chunk[0]), level, metadata.get("fill_value", 0), checksum)


def encode_shard(
    data: np.ndarray, spec: ShardSpec, map_fn: Callable[[Callable[[np.ndarray], bytes], Iterable[np.ndarray]], Iterable[bytes]] | None = None
) -> bytes:
    """Encode the samples of one shard into the bytes of its file (:func:`encode_shard_parts` joined)."""
    return b"".join(encode_shard_parts(data, spec, map_fn))


def encode_shard_parts(
    data: np.ndarray, spec: ShardSpec, map_fn: Callable[[Callable[[np.ndarray], bytes], Iterable[np.ndarray]], Iterable[bytes]] | None = None
) -> list[bytes]:
    """Encode the samples of one shard into its file's bytes, as parts in file order
    (the encoded chunks, then the index with its CRC32C): the writer hands them to
    one ``writev`` instead of joining them (a copy of the whole shard, twice).

    Args:
        data: ``(n, ...)`` samples of the shard, ``1 ≤ n ≤ spec.shard_samples``
            (fewer only for the store's last shard), little-endian dtype.
        spec: the array's :class:`ShardSpec`.
        map_fn: an ordered ``map`` to compress chunks with, e.g. an executor's
            ``map`` (Zstandard releases the GIL); the built-in ``map`` if ``None``.

    Returns:
        The shard file's bytes, in parts.
    """
    n = len(data)
    if not 1 <= n <= spec.shard_samples:
        raise ValueError(f"a shard holds 1..{spec.shard_samples} samples, got {n}")
    if data.dtype.byteorder == ">":
        raise ValueError("big-endian data is not supported")
    c = spec.chunk_samples
    chunks = []
    for start in range(0, n, c):
        piece = data[start : start + c]
        if len(piece) < c:  # edge chunk: zarr stores the full chunk shape
            padded = np.full((c, *data.shape[1:]), spec.fill_value, dtype=data.dtype)
            padded[: len(piece)] = piece
            piece = padded
        chunks.append(np.ascontiguousarray(piece))
    encode = _encoder(spec.zstd_level)
    return shard_parts(list((map_fn or map)(encode, chunks)), spec)


def assemble_shard(encoded: list[bytes], spec: ShardSpec) -> bytes:
    """The shard file's bytes from its chunks, already compressed (here or
    elsewhere, e.g. on the GPU): :func:`shard_parts` joined."""
    return b"".join(shard_parts(encoded, spec))


def shard_parts(encoded: list[bytes], spec: ShardSpec) -> list[bytes]:
    """The shard file's bytes from its compressed chunks, as parts in file order:
    the chunks back to back, each followed by its CRC32C when ``spec.checksum``,
    then the index and its CRC32C. Every write path (CPU zstd, nvCOMP, raw) goes
    through here, so all get the checksum.

    Args:
        encoded: the shard's compressed chunks in order, ``1 ≤ len ≤ shard_samples / chunk_samples``
            (fewer only for the store's last shard); an edge chunk must have been
            padded to the full chunk shape before encoding, as zarr does.
        spec: the array's :class:`ShardSpec`.
    """
    per_shard = spec.shard_samples // spec.chunk_samples
    if not 1 <= len(encoded) <= per_shard:
        raise ValueError(f"a shard holds 1..{per_shard} chunks, got {len(encoded)}")
    if spec.checksum:
        encoded = [part for e in encoded for part in (e, _crc32c(e))]
        sizes = np.array([len(e) + len(c) for e, c in zip(encoded[::2], encoded[1::2])], dtype=np.uint64)
    else:
        sizes = np.array([len(e) for e in encoded], dtype=np.uint64)
    index = np.full((per_shard, 2), _ABSENT, dtype="<u8")
    index[: len(sizes), 0] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    index[: len(sizes), 1] = sizes
    index_bytes = index.tobytes()
    return [*encoded, index_bytes + _crc32c(index_bytes)]


def encode_shard_with(executor: Executor | None) -> Callable[[np.ndarray, ShardSpec], bytes]:
    """:func:`encode_shard` bound to ``executor`` for chunk compression."""
    return lambda data, spec: encode_shard(data, spec, None if executor is None else executor.map)


def _encoder(level: int | None) -> Callable[[np.ndarray], bytes]:
    if level is None:
        return lambda chunk: chunk.tobytes()
    from numcodecs import Zstd

    codec = Zstd(level=level)
    return lambda chunk: bytes(codec.encode(chunk))


def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return google_crc32c.value(data).to_bytes(4, "little")


def strip_checksum(raw: bytes) -> bytes:
    """``raw`` without its trailing CRC32C (Zarr's ``crc32c`` codec), checked.

    Raises:
        ValueError: the checksum does not match (the chunk's bytes changed).
    """
    if len(raw) < 4 or _crc32c(raw[:-4]) != raw[-4:]:
        raise ValueError("checksum mismatch (its bytes changed on disk)")
    return raw[:-4]


class ShardReader:
    """Random access to the samples of one array written with a :class:`ShardSpec`.

    Args:
        shard_path: file of shard ``k``.
        spec: the array's spec (:func:`shard_spec`).
        sample_shape: shape of one sample, e.g. ``(H, W, 3)``.
        dtype: the array's dtype.
        n_samples: samples in the array.
        name, store: the array's name and store, for error messages.

    Thread-safe: :meth:`read` may run in several threads at once.
    """

    def __init__(self, shard_path: Callable[[int], Path], spec: ShardSpec, sample_shape: tuple[int, ...],
                 dtype: Any, n_samples: int, name: str = "array", store: str | Path | None = None) -> None:
        self.shard_path = shard_path
        self.name = name
        self.store = store
        self.spec = spec
        self.sample_shape = tuple(sample_shape)
        self.dtype = np.dtype(dtype)
        self.n_samples = n_samples
        self._indexes: dict[int, np.ndarray] = {}  # shard -> (chunks, 2) offsets and sizes
        self._decode = _decoder(spec.zstd_level)

    def read(self, samples: np.ndarray, map_fn: Callable[..., Iterable[np.ndarray]] | None = None) -> np.ndarray:
        """``(k, *sample_shape)`` samples in the order given (repeats allowed).

        ``map_fn`` (e.g. an executor's ``map``) decodes the distinct chunks in parallel.

        Raises:
            ValueError: a sample out of range.
            StoreError: a shard file missing or damaged, a chunk missing or failing
                its checksum (one line naming array, shard and samples).
        """
        samples = np.asarray(samples, dtype=np.int64)
        if samples.size and (samples.min() < 0 or samples.max() >= self.n_samples):
            raise ValueError(f"samples must be in [0, {self.n_samples}), got {samples.min()}..{samples.max()}")
        c = self.spec.chunk_samples
        chunks, where = np.unique(samples // c, return_inverse=True)
        decoded = list((map_fn or map)(self._chunk, chunks.tolist()))
        out = np.empty((len(samples), *self.sample_shape), self.dtype)
        for j, chunk in enumerate(decoded):
            pick = np.flatnonzero(where.ravel() == j)
            out[pick] = chunk[samples[pick] - chunks[j] * c]
        return out

    def _chunk(self, chunk: int) -> np.ndarray:
        shard = chunk // (self.spec.shard_samples // self.spec.chunk_samples)
        try:
            return self._decode_chunk(chunk)
        except FileNotFoundError:
            reason = "file missing"
        except (OSError, ValueError, RuntimeError) as e:  # numcodecs raises RuntimeError for corrupt frames
            reason = str(e).removeprefix(f"{self.shard_path(shard)}: ")
        start = shard * self.spec.shard_samples
        stop = min(start + self.spec.shard_samples, self.n_samples)
        raise damaged_shard_error(self.store or self.shard_path(shard), self.name, shard, start, stop, reason)

    def _verified(self, raw: bytes, slot: int) -> bytes:
        """``raw`` without its checksum, checked (as is when the array has none)."""
        if not self.spec.checksum:
            return raw
        try:
            return strip_checksum(raw)
        except ValueError as e:
            raise ValueError(f"chunk {slot}: {e}") from None

    def _raw_chunk(self, chunk: int) -> tuple[Path, int, bytes | None]:
        """``(shard file, slot in it, encoded bytes)`` of ``chunk``; ``None`` bytes for an absent chunk."""
        per_shard = self.spec.shard_samples // self.spec.chunk_samples
        shard, slot = divmod(chunk, per_shard)
        path = self.shard_path(shard)
        with open(path, "rb") as f:
            index = self._indexes.get(shard)
            if index is None:
                index = self._indexes[shard] = _read_index(f, path, per_shard)
            offset, size = index[slot]
            if offset == _ABSENT:
                return path, slot, None
            f.seek(int(offset))
            raw = f.read(int(size))
        if len(raw) != int(size):
            raise ValueError(f"{path}: chunk {slot} runs past the end of the file")
        return path, slot, raw

    def _decode_chunk(self, chunk: int) -> np.ndarray:
        shape = (self.spec.chunk_samples, *self.sample_shape)
        path, slot, raw = self._raw_chunk(chunk)
        if raw is None:  # fgbg writes every chunk of a shard: an absent one was lost, not empty
            raise ValueError(f"chunk {slot} missing from the index")
        data = np.frombuffer(self._decode(self._verified(raw, slot)), dtype=self.dtype.newbyteorder("<"))
        if data.size != int(np.prod(shape)):
            raise ValueError(f"{path}: chunk {slot} decodes to {data.size} values, expected {int(np.prod(shape))}")
        return data.reshape(shape)


class VlenShardReader(ShardReader):
    """:class:`ShardReader` for a ``(N,)`` array of ``vlen-bytes`` samples (``images_jpeg``):
    :meth:`read` returns a ``(k,) object`` array of ``bytes``, undecoded.

    Args:
        shard_path, n_samples, name, store: as for :class:`ShardReader`.
        shard_samples, chunk_samples: samples per shard file and per inner chunk.

    An absent chunk is damage here (a done shard holds every chunk), not a fill value.
    ``checksum``: the chunks end with a CRC32C (the array's codecs end with ``crc32c``).
    """

    def __init__(self, shard_path: Callable[[int], Path], shard_samples: int, chunk_samples: int, n_samples: int,
                 name: str = "array", store: str | Path | None = None, checksum: bool = False) -> None:
        super().__init__(shard_path, ShardSpec(shard_samples, chunk_samples, None, b"", checksum), (), object,
                         n_samples, name=name, store=store)

    def _decode_chunk(self, chunk: int) -> np.ndarray:
        _, slot, raw = self._raw_chunk(chunk)
        if raw is None:
            raise ValueError(f"chunk {slot} missing from the index")
        out = np.empty(self.spec.chunk_samples, dtype=object)
        out[:] = vlen_items(self._verified(raw, slot), self.spec.chunk_samples, f"chunk {slot}")
        return out


def vlen_items(raw: bytes, n_items: int, what: str = "chunk") -> list[bytes]:
    """The items of a ``vlen-bytes`` encoded chunk: item count (uint32 LE), then per item
    its length (uint32 LE) and bytes. Bounds-checked (a flipped length must not
    read past the chunk).

    Raises:
        ValueError: ``what`` does not hold exactly ``n_items`` well-formed items.
    """
    if len(raw) < 4 or int.from_bytes(raw[:4], "little") != n_items:
        raise ValueError(f"{what} does not hold {n_items} items")
    view = memoryview(raw)
    pos, items = 4, []
    for i in range(n_items):
        length = int.from_bytes(view[pos : pos + 4], "little") if pos + 4 <= len(raw) else -1
        if length < 0 or pos + 4 + length > len(raw):
            raise ValueError(f"{what}: item {i} runs past the chunk's end")
        items.append(bytes(view[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    if pos != len(raw):
        raise ValueError(f"{what}: {len(raw) - pos} stray bytes after its items")
    return items


def _read_index(f: Any, path: Path, n_chunks: int) -> np.ndarray:
    """The ``(n_chunks, 2)`` index at the end of an open shard file, checksum verified."""
    size = n_chunks * 16
    if f.seek(0, 2) < size + 4:
        raise ValueError(f"{path}: file truncated (shorter than its index)")
    f.seek(-(size + 4), 2)
    tail = f.read(size + 4)
    if len(tail) != size + 4 or _crc32c(tail[:size]) != tail[size:]:
        raise ValueError(f"{path}: damaged shard index (checksum mismatch)")
    return np.frombuffer(tail[:size], dtype="<u8").reshape(n_chunks, 2)


def damaged_shard_error(store: str | Path, array: str, shard: int, start: int, stop: int, reason: str) -> StoreError:
    """The one-line error for a damaged shard file, naming what to run."""
    return StoreError(f"{store}: {array} shard {shard} (samples {start}-{stop - 1}) is damaged: {reason}; "
                      f"see `cli.py verify {store}`, "
                      "repair with `generate --resume --resume-check full` (same options)")


def _decoder(level: int | None) -> Callable[[bytes], bytes]:
    if level is None:
        return lambda raw: raw
    from numcodecs import Zstd

    codec = Zstd()
    return lambda raw: codec.decode(raw)

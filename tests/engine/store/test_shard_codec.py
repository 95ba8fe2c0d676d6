"""Shards encoded by fgbg are byte-identical to zarr-python's own."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from engine.store.shard_codec import encode_shard, shard_spec


@pytest.mark.parametrize(
    "dtype, inner, n, shard, chunk, level",
    [
        (np.uint8, (5, 7, 3), 37, 16, 4, 3),  # last shard partial, with absent chunks and a padded edge chunk
        (np.float16, (6, 5), 16, 16, 8, 1),
        (np.uint8, (4, 4), 10, 8, 2, None),  # raw (no compressor)
        (np.int32, (), 20, 8, 8, 5),
    ],
)
@pytest.mark.parametrize("threads", [0, 2])
def test_encoded_shards_equal_zarrs(tmp_path: Path, dtype, inner, n, shard, chunk, level, threads) -> None:
    rng = np.random.default_rng(0)
    data = (rng.random((n, *inner)) * 100).astype(dtype)
    array = zarr.open_group(tmp_path / "g.zarr", mode="w").create_array(
        "x", shape=data.shape, dtype=dtype, chunks=(chunk, *inner), shards=(shard, *inner),
        compressors=[] if level is None else [ZstdCodec(level=level)], fill_value=0,
        config={"write_empty_chunks": True},
    )
    array[:] = data
    spec = shard_spec(json.loads((tmp_path / "g.zarr" / "x" / "zarr.json").read_text()))
    assert spec is not None and spec.zstd_level == level
    pool = ThreadPoolExecutor(threads) if threads else None
    for k in range(-(-n // shard)):
        key = array.metadata.encode_chunk_key((k,) + (0,) * len(inner))
        want = (tmp_path / "g.zarr" / "x" / key).read_bytes()
        got = encode_shard(data[k * shard : (k + 1) * shard], spec, None if pool is None else pool.map)
        assert got == want
    # and zarr reads what we wrote
    for k in range(-(-n // shard)):
        key = array.metadata.encode_chunk_key((k,) + (0,) * len(inner))
        (tmp_path / "g.zarr" / "x" / key).write_bytes(encode_shard(data[k * shard : (k + 1) * shard], spec))
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "g.zarr" / "x")[:], data)


def test_unsupported_layouts_are_refused(tmp_path: Path) -> None:
    g = zarr.open_group(tmp_path / "g.zarr", mode="w")
    g.create_array("plain", shape=(8, 4), dtype=np.uint8, chunks=(2, 4))  # not sharded
    g.create_array("split", shape=(8, 4), dtype=np.uint8, chunks=(2, 2), shards=(4, 4))  # chunks split axis 1
    for name in ("plain", "split"):
        assert shard_spec(json.loads((tmp_path / "g.zarr" / name / "zarr.json").read_text())) is None


def test_rejects_bad_sizes() -> None:
    from engine.store.shard_codec import ShardSpec

    with pytest.raises(ValueError, match="1..4 samples"):
        encode_shard(np.zeros((5, 2), np.uint8), ShardSpec(4, 2, None, 0))


def test_shards_assembled_from_chunks_compressed_elsewhere_read_back(tmp_path: Path) -> None:
    """The GPU path compresses chunks with another zstd encoder (nvCOMP: other
    bytes, same format); assembled into a shard, zarr decodes the same data."""
    from numcodecs import Zstd

    from engine.store.shard_codec import assemble_shard

    rng = np.random.default_rng(1)
    n, shard, chunk, inner = 21, 8, 4, (6, 5)
    data = rng.integers(0, 255, (n, *inner), dtype=np.uint8)
    array = zarr.open_group(tmp_path / "g.zarr", mode="w").create_array(
        "x", shape=data.shape, dtype=np.uint8, chunks=(chunk, *inner), shards=(shard, *inner),
        compressors=[ZstdCodec(level=3)], fill_value=0,
    )
    spec = shard_spec(json.loads((tmp_path / "g.zarr" / "x" / "zarr.json").read_text()))
    other = Zstd(level=19, checksum=True)  # not the array's settings: other bytes, the same format
    for k in range(-(-n // shard)):
        piece = data[k * shard : (k + 1) * shard]
        padded = np.zeros((-(-len(piece) // chunk) * chunk, *inner), np.uint8)  # edge chunk padded with the fill value
        padded[: len(piece)] = piece
        frames = [bytes(other.encode(padded[i : i + chunk])) for i in range(0, len(padded), chunk)]
        shard_bytes = assemble_shard(frames, spec)
        assert shard_bytes != encode_shard(piece, spec)
        path = tmp_path / "g.zarr" / "x" / array.metadata.encode_chunk_key((k, 0, 0))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(shard_bytes)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "g.zarr" / "x")[:], data)
    with pytest.raises(ValueError, match="1..2 chunks"):
        assemble_shard([b"x"] * 3, spec)


def test_vlen_reader_returns_zarrs_bytes_and_names_a_damaged_shard(tmp_path: Path) -> None:
    import warnings

    from engine.errors import StoreError
    from engine.store.shard_codec import VlenShardReader

    rng = np.random.default_rng(1)
    items = np.empty(21, dtype=object)
    items[:] = [rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes() for _ in range(21)]
    with warnings.catch_warnings():  # zarr flags the vlen dtype as not yet in the v3 spec
        warnings.simplefilter("ignore")
        array = zarr.open_group(tmp_path / "g.zarr", mode="w").create_array(
            "x", shape=(21,), dtype=zarr.dtype.VariableLengthBytes(), chunks=(4,), shards=(8,), compressors=[])
        array[:] = items
    reader = VlenShardReader(lambda k: tmp_path / "g.zarr" / "x" / array.metadata.encode_chunk_key((k,)), 8, 4, 21,
                             name="x", store=tmp_path)
    samples = np.array([20, 3, 3, 9, 0, 16])
    got = reader.read(samples)
    assert got.dtype == object and list(got) == [items[i] for i in samples]
    shard = tmp_path / "g.zarr" / "x" / array.metadata.encode_chunk_key((1,))
    raw = bytearray(shard.read_bytes())
    raw[4:8] = (10**6).to_bytes(4, "little")  # the first item's length now runs past its chunk
    shard.write_bytes(bytes(raw))
    reader = VlenShardReader(reader.shard_path, 8, 4, 21, name="x", store=tmp_path)
    with pytest.raises(StoreError, match=r"x shard 1 \(samples 8-15\) is damaged: chunk 0: item 0 runs past"):
        reader.read(np.array([9]))
    assert list(reader.read(np.array([13]))) == [items[13]]  # the shard's other chunk is intact


def test_shard_parts_join_to_the_shard_bytes() -> None:
    from engine.store.shard_codec import ShardSpec, encode_shard_parts

    spec = ShardSpec(8, 2, 3, 0)
    data = np.random.default_rng(0).integers(0, 4, (7, 5, 3), dtype=np.uint8)
    parts = encode_shard_parts(data, spec)
    assert len(parts) == 4 + 1  # 4 chunks (the last padded), then the index with its checksum
    assert b"".join(parts) == encode_shard(data, spec)

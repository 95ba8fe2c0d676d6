"""Every chunk of every array carries a checksum: a flipped byte inside compressed
data, or a missing chunk or file, of any array is found by verify (exit 1),
refused by every reader in one line, and repaired by the command verify names."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cli import app
from engine.compose.generate import generate
from engine.config import RunOptions
from engine.errors import StoreError
from engine.learn.data import load_split, split_indices
from engine.store.preview import contact_sheet
from engine.store.verify import StoreShards
from tests.small_stores import several_objects, small, tree

runner = CliRunner()

#: the stores: several objects with alpha (every lossless array, meta/objects), and JPEG images
CONFIGS = {"lossless": several_objects(save_alpha=True), "jpeg": small(image_codec="jpeg")}


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("integrity")
    out = {}
    for kind, config in CONFIGS.items():
        out[kind] = root / f"{kind}.zarr"
        generate(config, out[kind])
    return out


def chunk_span(shards: StoreShards, array: str, unit: int) -> tuple[Path, int, int]:
    """``(file, offset, bytes)`` of the first chunk in file ``unit`` of ``array``."""
    path = shards.path(array, unit)
    fmt = shards.formats[array]
    if not fmt.sharded:
        return path, 0, path.stat().st_size
    raw = path.read_bytes()
    offset, nbytes = np.frombuffer(raw[-fmt.index_bytes : -4], "<u8").reshape(-1, 2)[0]
    return path, int(offset), int(nbytes)


def flip_inside(shards: StoreShards, array: str, unit: int) -> None:
    """Flip one byte in the middle of the first chunk's compressed data (not its checksum)."""
    path, offset, nbytes = chunk_span(shards, array, unit)
    raw = bytearray(path.read_bytes())
    raw[offset + (nbytes - 4) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def delete(shards: StoreShards, array: str, unit: int) -> None:
    shards.path(array, unit).unlink()


def truncate(shards: StoreShards, array: str, unit: int) -> None:
    path = shards.path(array, unit)
    os.truncate(path, path.stat().st_size // 2)


DAMAGE: dict[str, Callable[[StoreShards, str, int], None]] = {"flipped": flip_inside, "deleted": delete,
                                                               "truncated": truncate}

#: (store, array) of every array kind; per-sample arrays are damaged in shard 1, the others in their first file
ARRAYS = [
    ("lossless", "images"), ("jpeg", "images_jpeg"), ("lossless", "masks"), ("lossless", "depth"),
    ("lossless", "alpha"), ("lossless", "instances"),
    ("lossless", "meta/bg_index"), ("lossless", "meta/fg_index"), ("lossless", "meta/scale"),
    ("lossless", "meta/object_offset"), ("lossless", "meta/objects/fg_index"), ("lossless", "meta/objects/box"),
    ("lossless", "meta/objects/depth"), ("lossless", "meta/objects/visible_pixels"),
    ("lossless", "assets/bg"), ("lossless", "assets/bg_depth"), ("lossless", "assets/fg"),
    ("lossless", "assets/fg_size"), ("jpeg", "meta/fg_index"), ("jpeg", "assets/fg"),
]


def unit_of(array: str) -> int:
    return 0 if "/" in array else 1


def damaged_copy(stores: dict[str, Path], tmp_path: Path, kind: str, array: str, damage: str) -> Path:
    copy = tmp_path / f"{kind}.zarr"
    shutil.copytree(stores[kind], copy)
    DAMAGE[damage](StoreShards(copy), array, unit_of(array))
    return copy


def test_every_array_carries_chunk_checksums(stores: dict[str, Path]) -> None:
    for store in stores.values():
        shards = StoreShards(store)
        assert shards.unchecksummed == ()
        assert set(shards.whole_names) >= {"meta/fg_index", "assets/bg"}
        for meta in store.rglob("zarr.json"):
            doc = json.loads(meta.read_text())
            if doc["node_type"] != "array":
                continue
            codecs = doc["codecs"]
            inner = codecs[0]["configuration"]["codecs"] if codecs[0]["name"] == "sharding_indexed" else codecs
            assert inner[-1]["name"] == "crc32c", meta


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize(("kind", "array"), ARRAYS)
def test_verify_finds_damage_in_any_array(stores: dict[str, Path], tmp_path: Path, kind: str, array: str,
                                          damage: str) -> None:
    store = damaged_copy(stores, tmp_path, kind, array, damage)
    result = runner.invoke(app, ["verify", str(store), "--quiet"])
    assert result.exit_code == 1, result.output
    assert f"  {array} " in result.output and "DAMAGED" in result.output
    # damage inside a chunk, or to meta/assets, needs the full check to be repaired
    full = damage == "flipped" or "/" in array
    assert ("--resume-check full" in result.output) == full, result.output
    info = runner.invoke(app, ["info", str(store)])
    sharded = StoreShards(stores[kind]).formats[array].sharded
    if damage == "deleted" or (damage == "truncated" and sharded):  # info reads shard indexes only, no chunk data
        assert "damaged: run `cli.py verify" in info.output


def _export(kind: str) -> Callable[[Path, Path], None]:
    def run(store: Path, out: Path) -> None:
        result = runner.invoke(app, ["export", kind, str(store), "--out", str(out / "export")])
        assert result.exit_code == 2, result.output
        raise StoreError(result.output.strip())

    return run


def _preview(store: Path, out: Path) -> None:
    result = runner.invoke(app, ["preview", str(store), "--n", "48", "--out", str(out / "p.png")])
    assert result.exit_code == 2, result.output
    raise StoreError(result.output.strip())


def _train(store: Path, out: Path) -> None:  # train and evaluate read through these
    index, _ = split_indices(store, "all", 0.1, 0)
    load_split(store, index, (16, 24), (4, 6), threads=2)


def _dali(store: Path, out: Path) -> None:  # the DALI loader's reads, without DALI
    from engine.learn.dali_loader import _image_reader

    reader, _, _ = _image_reader(store)
    reader.read(np.arange(48))


READERS: dict[str, Callable[[Path, Path], None]] = {
    "export-coco": _export("coco"), "export-folders": _export("folders"), "preview": _preview, "train": _train,
    "dali": _dali,
}
#: what each reader reads
READS = {
    "export-coco": {"images", "images_jpeg", "masks", "instances", "meta/bg_index", "meta/fg_index",
                    "meta/object_offset", "meta/objects/fg_index"},
    "export-folders": {"images", "images_jpeg", "masks", "depth", "instances", "meta/bg_index", "meta/fg_index",
                       "meta/object_offset", "meta/objects/fg_index"},
    "preview": {"images", "images_jpeg", "masks", "depth", "alpha", "instances", "meta/bg_index", "meta/fg_index"},
    "train": {"images", "images_jpeg", "masks", "depth", "meta/bg_index"},
    "dali": {"images", "images_jpeg"},
}


@pytest.mark.parametrize("damage", ["flipped", "deleted"])
@pytest.mark.parametrize(("reader", "kind", "array"),
                         [(r, k, a) for r in READERS for k, a in ARRAYS if a in READS[r]])
def test_readers_refuse_damage_in_one_line(stores: dict[str, Path], tmp_path: Path, reader: str, kind: str,
                                           array: str, damage: str) -> None:
    store = damaged_copy(stores, tmp_path, kind, array, damage)
    with pytest.raises(StoreError) as e:
        READERS[reader](store, tmp_path)
    message = str(e.value)
    assert "\n" not in message and f"{array} " in message and "damaged" in message, message
    where = "(samples 16-31)" if "/" not in array else ""
    assert where in message


@pytest.mark.parametrize("damage", ["flipped", "truncated", "deleted"])
@pytest.mark.parametrize("array", ["meta/fg_index", "meta/object_offset", "meta/objects/box", "assets/bg",
                                   "assets/fg_size", "images", "instances"])
def test_the_advised_command_repairs_the_damage(stores: dict[str, Path], tmp_path: Path, array: str,
                                                damage: str) -> None:
    store = damaged_copy(stores, tmp_path, "lossless", array, damage)
    result = runner.invoke(app, ["verify", str(store), "--quiet"])
    check = "full" if "--resume-check full" in result.output else "index"
    generate(CONFIGS["lossless"], store, RunOptions(resume=True, resume_check=check))
    assert tree(store) == tree(stores["lossless"])
    assert runner.invoke(app, ["verify", str(store), "--quiet"]).exit_code == 0


def test_plain_resume_repairs_what_verify_advises_it_for(stores: dict[str, Path], tmp_path: Path) -> None:
    store = damaged_copy(stores, tmp_path, "jpeg", "images_jpeg", "truncated")
    result = runner.invoke(app, ["verify", str(store), "--quiet"])
    assert "repair with generate --resume (same options)" in result.output
    assert generate(CONFIGS["jpeg"], store, RunOptions(resume=True)).shards_written == 1
    assert tree(store) == tree(stores["jpeg"])


def test_verify_of_a_store_with_no_finished_shard_is_not_clean(stores: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "empty.zarr"
    shutil.copytree(stores["jpeg"], store)
    group = zarr.open_group(store, mode="r+")
    attrs = dict(group.attrs["fgbg"])
    attrs["progress"] = {"shards_done": [], "complete": False}
    group.attrs.update({"fgbg": attrs})
    result = runner.invoke(app, ["verify", str(store), "--quiet"])
    assert result.exit_code == 0 and "clean" not in result.output
    assert "empty: 0 of 3 shards finished" in result.output


def test_stores_without_chunk_checksums_stay_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.store.zarr_store as zarr_store

    monkeypatch.setattr(zarr_store, "checksum_codecs", lambda: [])  # the codecs of earlier versions
    old = tmp_path / "old.zarr"
    generate(small(), old)
    monkeypatch.undo()
    shards = StoreShards(old)
    assert "images" in shards.unchecksummed and "meta/fg_index" in shards.unchecksummed
    assert runner.invoke(app, ["verify", str(old), "--quiet"]).exit_code == 0
    assert "carry no chunk checksums" in runner.invoke(app, ["info", str(old)]).output
    index, _ = split_indices(old, "all", 0.1, 0)
    assert len(load_split(old, index, (16, 24), (4, 6), threads=1).index) == 48
    contact_sheet(old, n=8)
    # resume keeps writing it as it was written
    copy = tmp_path / "copy.zarr"
    shutil.copytree(old, copy)
    StoreShards(copy).path("images", 1).unlink()
    generate(small(), copy, RunOptions(resume=True))
    assert tree(copy) == tree(old)


def test_new_stores_say_they_carry_checksums(stores: dict[str, Path]) -> None:
    result = runner.invoke(app, ["info", str(stores["jpeg"])])
    assert "every chunk carries a CRC32C" in result.output
    doc = json.loads(runner.invoke(app, ["info", str(stores["jpeg"]), "--json"]).output)
    assert doc["chunk_checksums"] is True


def test_a_lost_meta_folder_is_damage_not_a_store_without_meta(stores: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "nometa.zarr"
    shutil.copytree(stores["jpeg"], store)
    shutil.rmtree(store / "meta")
    result = runner.invoke(app, ["verify", str(store), "--quiet"])
    assert result.exit_code == 1 and "  meta/fg_index: zarr.json missing" in result.output, result.output
    with pytest.raises(StoreError, match="meta/bg_index: zarr.json missing"):
        contact_sheet(store, n=8)
    generate(CONFIGS["jpeg"], store, RunOptions(resume=True, resume_check="full"))
    assert tree(store) == tree(stores["jpeg"])

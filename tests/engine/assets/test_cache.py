"""The on-disk cache of the built-in assets: byte-identical to drawing them, never stale, never fatal."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import engine.assets.cache as cache_module
import engine.assets.cars as cars
import engine.assets.streets as streets
from engine.assets.camera import GroundPlane
from engine.assets.images import AssetSet, InputFile, builtin_assets, canonical_foreground

SEED, NB, NF, H, W = 3, 3, 2, 24, 32


def reference(seed: int, nb: int, nf: int, height: int, width: int) -> AssetSet:
    """The built-in assets drawn directly, as before the cache: the plain reference."""
    scenes = [streets.street_scene(seed, i, height, width) for i in range(nb)]
    fgs = [canonical_foreground(cars.car_sprite(seed, i, height), height, width) for i in range(nf)]

    def record(kind: str, i: int, *arrays: np.ndarray) -> InputFile:
        return InputFile(f"builtin:{kind}/{i:05d}", hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest())

    return AssetSet(
        bg_images=np.stack([s.image for s in scenes]),
        fg_images=fgs,
        bg_files=[record("street", i, s.image, s.depth) for i, s in enumerate(scenes)],
        fg_files=[record("car", i, c) for i, c in enumerate(fgs)],
        bg_grounds=[s.ground for s in scenes],
        bg_depth=np.stack([s.depth for s in scenes]).astype(np.float32),
    )


def assert_same(got: AssetSet, want: AssetSet) -> None:
    """Byte for byte: arrays (dtype, shape, bytes), records, cameras (exact floats)."""
    for a, b in [(got.bg_images, want.bg_images), (got.bg_depth, want.bg_depth),
                 *zip(got.fg_images, want.fg_images, strict=True)]:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    assert got.bg_files == want.bg_files
    assert got.fg_files == want.fg_files
    assert got.bg_grounds == want.bg_grounds
    assert all(type(v) is float for g in got.bg_grounds for v in (g.horizon, g.focal, g.camera_height))


@pytest.fixture(scope="module")
def want() -> AssetSet:
    return reference(SEED, NB, NF, H, W)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FGBG_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the scenes and cars drawn (not loaded from the cache)."""
    count = {"street": 0, "car": 0}
    street_scene, car_sprite = streets.street_scene, cars.car_sprite

    def counted_scene(*args, **kwargs):
        count["street"] += 1
        return street_scene(*args, **kwargs)

    def counted_car(*args, **kwargs):
        count["car"] += 1
        return car_sprite(*args, **kwargs)

    monkeypatch.setattr(streets, "street_scene", counted_scene)
    monkeypatch.setattr(cars, "car_sprite", counted_car)
    return count


def forbid_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("drew a piece the cache holds")

    monkeypatch.setattr(streets, "street_scene", refuse)
    monkeypatch.setattr(cars, "car_sprite", refuse)


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npz"))


def test_cached_equals_drawn_byte_for_byte(cache_dir: Path, want: AssetSet, monkeypatch: pytest.MonkeyPatch) -> None:
    cold = builtin_assets(SEED, NB, NF, H, W)
    assert_same(cold, want)
    assert len(entries(cache_dir)) == NB + NF
    forbid_drawing(monkeypatch)
    warm = builtin_assets(SEED, NB, NF, H, W)
    assert_same(warm, want)


def test_fewer_pieces_share_entries(cache_dir: Path, want: AssetSet, monkeypatch: pytest.MonkeyPatch) -> None:
    builtin_assets(SEED, NB, NF, H, W)
    forbid_drawing(monkeypatch)
    fewer = builtin_assets(SEED, NB - 1, NF - 1, H, W)
    assert fewer.bg_files == want.bg_files[: NB - 1] and fewer.fg_files == want.fg_files[: NF - 1]


def test_other_seed_or_size_misses(cache_dir: Path, draws: dict[str, int]) -> None:
    builtin_assets(SEED, 1, 1, H, W)
    builtin_assets(SEED + 1, 1, 1, H, W)
    builtin_assets(SEED, 1, 1, H, W + 8)
    assert draws == {"street": 3, "car": 3}
    assert len(entries(cache_dir)) == 6


def test_edited_generator_misses(cache_dir: Path, draws: dict[str, int], monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    """The key holds the generator's source: editing streets.py redraws the scenes, not the cars."""
    copy = tmp_path / "src"
    for name in {n for files, _ in cache_module.SOURCES.values() for n in files}:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cache_module.ROOT / name, copy / name)
    monkeypatch.setattr(cache_module, "ROOT", copy)
    builtin_assets(SEED, NB, NF, H, W)
    assert draws == {"street": NB, "car": NF}
    with (copy / "engine/assets/streets.py").open("a") as f:
        f.write("\n# an edit\n")
    builtin_assets(SEED, NB, NF, H, W)
    assert draws == {"street": 2 * NB, "car": NF}


def test_package_version_is_in_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_module.fingerprint("car"), cache_module.fingerprint("street")
    real = cache_module.importlib.metadata.version
    monkeypatch.setattr(cache_module.importlib.metadata, "version",
                        lambda name: "0.0-other" if name == "torch" else real(name))
    assert cache_module.fingerprint("car") != before[0]
    assert cache_module.fingerprint("street") == before[1]  # scenes do not use torch


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "valid-zip-wrong-pixels"])
def test_corrupt_entry_is_rebuilt(cache_dir: Path, want: AssetSet, draws: dict[str, int], damage: str,
                                  caplog: pytest.LogCaptureFixture) -> None:
    builtin_assets(SEED, NB, NF, H, W)
    victim = entries(cache_dir)[0]
    data = victim.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # a byte of the arrays: the zip and npy headers stay readable
        k = len(data) // 3
        data = data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1 :]
    elif damage == "garbage":
        data = b"not a zip file at all"
    elif damage == "empty":
        data = b""
    if damage == "valid-zip-wrong-pixels":  # only the entry's own checksum can tell
        with np.load(victim) as entry:
            arrays = {k: entry[k] for k in entry.files}
        first = next(k for k in arrays if k != "sha256")
        arrays[first] = arrays[first] + np.ones((), arrays[first].dtype)
        np.savez(victim, **arrays)
    else:
        victim.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="engine.assets.cache"):
        again = builtin_assets(SEED, NB, NF, H, W)
    assert_same(again, want)
    assert sum(draws.values()) == NB + NF + 1  # only the damaged piece was drawn again
    assert any(str(victim) in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    builtin_assets(SEED, NB, NF, H, W)  # and rewritten whole: no more drawing
    assert sum(draws.values()) == NB + NF + 1


def test_disabled_writes_nothing(tmp_path: Path, want: AssetSet, draws: dict[str, int],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGBG_CACHE_DIR", "OFF")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert_same(builtin_assets(SEED, NB, NF, H, W), want)
    assert_same(builtin_assets(SEED, NB, NF, H, W), want)
    assert draws == {"street": 2 * NB, "car": 2 * NF}
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_still_works(tmp_path: Path, want: AssetSet, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FGBG_CACHE_DIR", str(blocker / "cache"))  # mkdir fails even as root
    with caplog.at_level(logging.INFO, logger="engine.assets.cache"):
        assert_same(builtin_assets(SEED, NB, NF, H, W), want)
    assert sum("cannot write" in r.getMessage() for r in caplog.records) == 1  # said once, not per piece
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_concurrent_writers_agree(cache_dir: Path, want: AssetSet) -> None:
    """Several builders of one cold cache at once (torchrun ranks): every result exact, no temp files left."""
    results: list[AssetSet] = []
    threads = [threading.Thread(target=lambda: results.append(builtin_assets(SEED, NB, NF, H, W))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for got in results:
        assert_same(got, want)
    assert sorted(p.name for p in cache_dir.rglob("*") if p.is_file()) == sorted(p.name for p in entries(cache_dir))


def test_entry_is_plain_npz(cache_dir: Path, want: AssetSet) -> None:
    """Uncompressed arrays plus their checksum, readable without fgbg."""
    builtin_assets(SEED, 1, 1, H, W)
    (street,) = cache_dir.glob("street-*/*.npz")
    with np.load(street) as entry:
        assert sorted(entry.files) == ["depth", "ground", "image", "sha256"]
        np.testing.assert_array_equal(entry["image"], want.bg_images[0])
        g = want.bg_grounds[0]
        assert GroundPlane(*entry["ground"].tolist()) == g


def test_store_from_the_cache_equals_store_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: a store made from cached assets is the store made without the cache, file for file
    (input records included, which ``--resume`` compares)."""
    from engine.compose.generate import generate
    from engine.config import RunOptions
    from tests.small_stores import small, tree

    config = small()
    monkeypatch.setenv("FGBG_CACHE_DIR", "off")
    generate(config, tmp_path / "drawn.zarr", RunOptions(device="cpu"))
    monkeypatch.setenv("FGBG_CACHE_DIR", str(tmp_path / "cache"))
    generate(config, tmp_path / "cold.zarr", RunOptions(device="cpu"))  # fills the cache
    forbid_drawing(monkeypatch)
    generate(config, tmp_path / "warm.zarr", RunOptions(device="cpu"))
    drawn = tree(tmp_path / "drawn.zarr")
    assert tree(tmp_path / "cold.zarr") == drawn
    assert tree(tmp_path / "warm.zarr") == drawn

"""The public API (``from engine import open_store, loader, generate``): docs/api.md's
examples run as printed, the examples/ scripts run, damage is one line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(page: Path) -> list[str]:
    """The ```python blocks of a markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def docs_ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/api.md's examples executed in order, in a fresh folder (the first makes data/cars.zarr)."""
    where = tmp_path_factory.mktemp("docs")
    blocks = code_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 4
    here = os.getcwd()
    os.chdir(where)
    try:
        namespace: dict = {"__name__": "__docs__"}
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    finally:
        os.chdir(here)
    return where


def test_docs_examples_run_as_printed(docs_ran: Path) -> None:
    assert (docs_ran / "data" / "cars.zarr" / "zarr.json").is_file()


def test_the_package_root_stays_light() -> None:
    code = ("import sys, engine; heavy = [m for m in ('torch', 'numba', 'zarr', 'nvidia.dali') if m in sys.modules];"
            "assert not heavy, heavy; assert callable(engine.open_store) and callable(engine.loader)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def run_example(name: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_read_store_example(docs_ran: Path) -> None:
    out = run_example("read_store.py", "data/cars.zarr", "--out", "sample.png", "--index", "5", cwd=docs_ran)
    from PIL import Image

    assert Image.open(docs_ran / "sample.png").size == (3 * 48, 32)
    assert "train / val samples: 32 / 16" in out


def test_train_segmentation_example_beats_all_background(docs_ran: Path) -> None:
    out = run_example("train_segmentation.py", "data/cars.zarr", "--steps", "30", "--batch", "8", "--model", "small",
                      "--device", "cpu", cwd=docs_ran)
    found = re.search(r"model ([0-9.]+) \| all-background ([0-9.]+)", out)
    assert found, out
    model, background = float(found[1]), float(found[2])
    assert model > background + 0.05, out


def test_damaged_shard_is_one_line(docs_ran: Path, tmp_path: Path) -> None:
    from engine import open_store
    from engine.errors import StoreError

    copy = shutil.copytree(docs_ran / "data" / "cars.zarr", tmp_path / "cars.zarr")
    shard = copy / "masks" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:40])  # truncated
    store = open_store(copy)
    assert store[0]["mask"].shape == (32, 48)  # shard 0 is intact
    with pytest.raises(StoreError, match="masks shard 1") as e:
        store[20]
    assert "\n" not in str(e.value)
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "nothing.zarr")


def test_slices_and_indices_agree(docs_ran: Path) -> None:
    from engine import open_store

    store = open_store(docs_ran / "data" / "cars.zarr")
    picked = store[[3, 17, 40]]
    for j, i in enumerate((3, 17, 40)):
        one = store[i]
        for name in ("image", "mask", "depth"):
            np.testing.assert_array_equal(picked[name][j], one[name])
        assert picked["meta"]["fg_index"][j] == one["meta"]["fg_index"]
    np.testing.assert_array_equal(store[-1]["image"], store[47]["image"])
    with pytest.raises(IndexError):
        store[48]


def test_loader_batches_are_train_s_batches(docs_ran: Path) -> None:
    """kind='torch' draws what train's torch loader drew: BatchSampler rows, make_batch's seeded augmentation."""
    import torch

    from engine import loader
    from engine.learn.data import BatchSampler, load_split, make_batch

    path = docs_ran / "data" / "cars.zarr"
    feed = loader(path, 8, "train", input_size=(16, 24), output_size=(8, 12), seed=3, normalize="imagenet")
    data = load_split(path, feed.index, (16, 24), (8, 12))
    sampler = BatchSampler(len(feed.index), 8, 3)
    feed.load_state_dict({**feed.state_dict(), "step": 5})
    got = next(iter(feed))
    x, depth, masks = make_batch(data, sampler(5), 3 * 2**32 + 5)
    assert torch.equal(got["image"], x) and torch.equal(got["depth"], depth) and torch.equal(got["mask"], masks)


def test_loader_state_of_another_loader_is_refused(docs_ran: Path) -> None:
    from engine import loader
    from engine.errors import ConfigError

    path = docs_ran / "data" / "cars.zarr"
    a = loader(path, 8, input_size=(16, 24), seed=0)
    b = loader(path, 8, input_size=(16, 24), seed=1)
    with pytest.raises(ConfigError, match="seed"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="multiple of the 3 ranks"):
        loader(path, 8, input_size=(16, 24), rank=0, world=3)


def test_dali_loader_resumes_mid_epoch(docs_ran: Path) -> None:
    pytest.importorskip("nvidia.dali")
    import torch

    from engine import loader

    path = docs_ran / "data" / "cars.zarr"
    feed = loader(path, 8, kind="dali", input_size=(16, 24), seed=2)
    first = [b["image"] for b in feed]
    again = loader(path, 8, kind="dali", input_size=(16, 24), seed=2)
    again.load_state_dict({**feed.state_dict(), "step": 2})
    rest = [b["image"] for b in again]
    assert len(first) == len(feed) == 4 and len(rest) == 2
    assert all(torch.equal(a, b) for a, b in zip(first[2:], rest))
    feed.close()
    again.close()


def test_jpeg_store_with_several_objects_reads_as_arrays(tmp_path: Path) -> None:
    """Whatever the codec: JPEG images come back decoded, objects and alpha per sample."""
    from engine import RunOptions, generate, open_store
    from tests.small_stores import several_objects

    generate(several_objects(image_codec="jpeg", save_alpha=True, limit=16), tmp_path / "s.zarr", RunOptions())
    store = open_store(tmp_path / "s.zarr")
    one, three = store[5], store[4:7]
    assert one["image"].shape == (32, 48, 3) and one["image"].dtype == np.uint8
    assert one["instances"].dtype == np.uint16 and one["alpha"].dtype == np.uint8
    objects = one["objects"]
    assert 2 <= len(objects["fg_index"]) <= 4  # several_objects: 2 to 4 per image
    assert objects["box"].shape == (len(objects["fg_index"]), 4)
    assert isinstance(three["objects"], list) and len(three["objects"]) == 3
    np.testing.assert_array_equal(three["objects"][1]["x"], objects["x"])
    np.testing.assert_array_equal(three["image"][1], one["image"])

"""export coco / export folders: RLE against pycocotools, boxes and depth PNGs
against plain references, whole exports against the store they came from."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from typer.testing import CliRunner

from cli import app
from engine.assets.images import category_of
from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.errors import ConfigError, StoreError
from engine.splits import held_out_backgrounds
from engine.store.export import (
    MARKER,
    ExportConfig,
    decode_rle,
    depth_to_png16,
    encode_rle,
    export_store,
    visible_box,
)
from tests.small_stores import several_objects

runner = CliRunner()
# pycocotools' decode trips numpy 2's copy-keyword deprecation; its results are what is tested
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
#: float16 depth → uint16 at 1/256 m: rounding moves a value by at most half a step
DEPTH_STEP = 1 / 256


def random_masks(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if i % 5 == 0:
            mask[:] = i % 2  # all out, all in: the runs' edge cases
        yield mask


def test_rle_equals_pycocotools():
    coco = pytest.importorskip("pycocotools.mask")
    for mask in random_masks(300):
        ours = encode_rle(mask)
        ref = coco.encode(np.asfortranarray(mask))
        assert ours["size"] == list(ref["size"])
        assert ours["counts"] == ref["counts"].decode()
        np.testing.assert_array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}), mask)


def test_rle_round_trip_without_pycocotools():
    for mask in random_masks(100, seed=1):
        np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask)
    with pytest.raises(ValueError, match="H, W"):
        encode_rle(np.zeros((2, 2, 2)))


def test_visible_box_against_loops():
    for mask in random_masks(100, seed=2):
        ys, xs = [], []
        for y in range(mask.shape[0]):
            for x in range(mask.shape[1]):
                if mask[y, x]:
                    ys.append(y)
                    xs.append(x)
        expected = None if not ys else [min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1]
        assert visible_box(mask) == expected


def test_depth_png16():
    depth = np.array([[0.0, -1.0, np.nan, np.inf], [1.0, 2.5, 255.0, 300.0]], dtype=np.float32)
    np.testing.assert_array_equal(depth_to_png16(depth), [[0, 0, 0, 0], [256, 640, 65280, 65535]])


@pytest.mark.parametrize("name, category", [("builtin:car/00001", "car"), ("sedans/a.png", "sedans"),
                                            ("a.png", "object"), ("x\\vans\\b.png", "x/vans"),
                                            ("a/b/cat.png", "a/b")])
def test_category_of(name: str, category: str):
    assert category_of(name) == category


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    out = {}
    for codec in ("zstd", "jpeg"):
        out[codec] = root / f"{codec}.zarr"
        generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=48, positions=4,
                                shard_size=16, chunk_size=4, image_codec=codec), out[codec])
    return out


def test_coco_export_matches_the_store(stores: dict[str, Path], tmp_path: Path):
    coco_mask = pytest.importorskip("pycocotools.mask")
    store = stores["zstd"]
    report = export_store(ExportConfig(store=str(store), out=str(tmp_path / "coco"), kind="coco"))
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    group = zarr.open_group(str(store), mode="r")
    images, masks = group["images"][:], group["masks"][:]
    assert report.samples == len(doc["images"]) == 48
    assert [c["name"] for c in doc["categories"]] == ["car"]
    assert [im["id"] for im in doc["images"]] == list(range(48))
    for entry in doc["images"]:
        png = np.asarray(Image.open(tmp_path / "coco" / "images" / entry["file_name"]))
        np.testing.assert_array_equal(png, images[entry["id"]])  # lossless store → lossless PNG
        assert (entry["width"], entry["height"]) == (48, 32)
    by_image = {a["image_id"]: a for a in doc["annotations"]}
    assert len(doc["annotations"]) == report.instances == sum(bool(m.any()) for m in masks)
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        a = by_image[i]
        np.testing.assert_array_equal(coco_mask.decode({"size": a["segmentation"]["size"],
                                                        "counts": a["segmentation"]["counts"].encode()}), mask > 0)
        assert a["bbox"] == visible_box(mask > 0)
        assert a["area"] == int((mask > 0).sum()) and a["iscrowd"] == 0
    assert not list((tmp_path / "coco").glob("*.partial"))
    marker = json.loads((tmp_path / "coco" / MARKER).read_text())
    assert marker["export"]["kind"] == "coco" and marker["store_config"]["height"] == 32


def test_folders_export_of_a_jpeg_store_copies_its_bytes(stores: dict[str, Path], tmp_path: Path):
    store = stores["jpeg"]
    out = tmp_path / "folders"
    export_store(ExportConfig(store=str(store), out=str(out), kind="folders", limit=10))
    group = zarr.open_group(str(store), mode="r")
    jpegs = group["images_jpeg"][:10]  # a slice: zarr wraps a single vlen item in nested 0-d arrays
    for i in range(10):
        assert (out / "images" / f"{i:08d}.jpg").read_bytes() == jpegs[i]
        mask = np.asarray(Image.open(out / "masks" / f"{i:08d}.png"))
        np.testing.assert_array_equal(mask, group["masks"][i])
        depth_png = Image.open(out / "depth" / f"{i:08d}.png")
        assert depth_png.mode.startswith("I")  # 16-bit grey, never JPEG
        depth = np.asarray(depth_png).astype(np.float64) / 256
        np.testing.assert_allclose(depth, group["depth"][i].astype(np.float64), atol=DEPTH_STEP / 2 + 1e-9)
    assert len(list((out / "images").iterdir())) == 10


def test_split_selects_held_out_backgrounds(stores: dict[str, Path], tmp_path: Path):
    store = stores["zstd"]
    bg = zarr.open_group(str(store), mode="r")["meta"]["bg_index"][:]
    held = held_out_backgrounds(3, 0.34, 0)
    counts = {}
    for split in ("train", "val"):
        out = tmp_path / split
        export_store(ExportConfig(store=str(store), out=str(out), kind="folders", split=split, val_fraction=0.34))
        got = sorted(int(p.stem) for p in (out / "images").iterdir())
        expected = [i for i in range(48) if (bg[i] in held) == (split == "val")]
        assert got == expected
        counts[split] = len(got)
    assert counts["train"] + counts["val"] == 48 and counts["val"] > 0


def test_jpeg_re_encoding_of_a_lossless_store(stores: dict[str, Path], tmp_path: Path):
    out = tmp_path / "jpeg"
    export_store(ExportConfig(store=str(stores["zstd"]), out=str(out), kind="folders", image_format="jpeg",
                              jpeg_quality=95, limit=4))
    image = zarr.open_group(str(stores["zstd"]), mode="r")["images"][0].astype(np.float64)
    decoded = np.asarray(Image.open(io.BytesIO((out / "images" / "00000000.jpg").read_bytes()))).astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((decoded - image) ** 2))
    assert psnr > 30


def test_out_folder_rules(stores: dict[str, Path], tmp_path: Path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    config = ExportConfig(store=str(stores["zstd"]), out=str(user), kind="folders", limit=2)
    with pytest.raises(ConfigError, match="not empty"):
        export_store(config)
    with pytest.raises(ConfigError, match="refusing to delete"):
        export_store(config, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep me"
    again = ExportConfig(store=str(stores["zstd"]), out=str(tmp_path / "again"), kind="folders", limit=2)
    export_store(again)
    export_store(again, overwrite=True)  # an earlier export may be replaced
    with pytest.raises(ConfigError, match="--image-format"):
        export_store(ExportConfig(store=str(stores["zstd"]), out=str(tmp_path / "x"), kind="coco", image_format="gif"))


def test_damaged_shard_is_one_line(stores: dict[str, Path], tmp_path: Path):
    import shutil

    store = tmp_path / "damaged.zarr"
    shutil.copytree(stores["zstd"], store)
    shard = next(p for p in sorted((store / "masks").rglob("*")) if p.is_file() and p.name != "zarr.json")
    os.truncate(shard, 20)
    with pytest.raises(StoreError, match="masks shard"):
        export_store(ExportConfig(store=str(store), out=str(tmp_path / "out"), kind="coco"))


def test_cli_export(stores: dict[str, Path], tmp_path: Path):
    result = runner.invoke(app, ["export", "coco", str(stores["jpeg"]), "--out", str(tmp_path / "c"), "--limit", "5",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "5 samples" in result.output and "5 instances" in result.output
    result = runner.invoke(app, ["export", "folders", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["export", "--help"])
    assert result.exit_code == 0 and "coco" in result.output and "folders" in result.output


@pytest.fixture(scope="module")
def objects_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several objects per image, with two foreground categories (the store's
    foreground names renamed as if from two sub-folders: export reads the names)."""
    out = tmp_path_factory.mktemp("export") / "objects.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=48, positions=4,
                            shard_size=16, chunk_size=4, objects_min=2, objects_max=4, max_overlap=1.0), out)
    doc = json.loads((out / "zarr.json").read_text())
    for record, name in zip(doc["attributes"]["fgbg"]["inputs"]["foregrounds"], ("sedans/a.png", "vans/b.png")):
        record["name"] = name
    (out / "zarr.json").write_text(json.dumps(doc))
    return out


def test_coco_export_of_several_objects_per_image(objects_store: Path, tmp_path: Path):
    report = export_store(ExportConfig(store=str(objects_store), out=str(tmp_path / "coco"), kind="coco"))
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    g = zarr.open_group(str(objects_store), mode="r")
    ids, offset = g["instances"][:], g["meta/object_offset"][:]
    fg, visible, box = (g[f"meta/objects/{n}"][:] for n in ("fg_index", "visible_pixels", "box"))
    assert [c["name"] for c in doc["categories"]] == ["sedans", "vans"]
    assert (visible == 0).any()  # some objects are hidden by nearer ones: they get no annotation
    assert len(doc["annotations"]) == report.instances == int((visible > 0).sum())
    by_image: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for i in range(48):
        shown = [m for m in range(offset[i], offset[i + 1]) if visible[m] > 0]
        got = by_image.get(i, [])
        assert len(got) == len(shown)
        for a, m in zip(got, shown):  # in instance id order
            np.testing.assert_array_equal(decode_rle(a["segmentation"]), ids[i] == m - offset[i] + 1)
            assert a["bbox"] == box[m].tolist() and a["area"] == visible[m]
            assert a["category_id"] == int(fg[m]) + 1  # sedans (fg 0) = 1, vans (fg 1) = 2
    assert {a["category_id"] for a in doc["annotations"]} == {1, 2}


def test_folders_export_writes_the_instance_map_as_16_bit_png(objects_store: Path, tmp_path: Path):
    out = tmp_path / "folders"
    export_store(ExportConfig(store=str(objects_store), out=str(out), kind="folders", limit=6))
    ids = zarr.open_group(str(objects_store), mode="r")["instances"][:6]
    for i in range(6):
        png = Image.open(out / "instances" / f"{i:08d}.png")
        assert png.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(png), ids[i])


def test_coco_categories_are_the_foreground_sub_folders(tmp_path: Path):
    """User foregrounds in sub-folders: one COCO category per sub-folder, each instance in its own;
    --object-heights takes those categories, and a bad value is one line at the CLI."""
    rng = np.random.default_rng(0)
    bg, fg = tmp_path / "bg", tmp_path / "fg"
    for sub in ("vans", "people"):
        (fg / sub).mkdir(parents=True)
    bg.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(bg / f"b{i}.png")
    for name in ("vans/v1.png", "vans/v2.png", "people/p1.png"):
        rgba = rng.integers(0, 256, (20, 16, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        Image.fromarray(rgba).save(fg / name)
    store = tmp_path / "user.zarr"
    generate(GenerateConfig(bg_dir=str(bg), fg_dir=str(fg), height=32, width=48, positions=2, shard_size=8,
                            object_heights=(("people", 1.8),)), store)
    export_store(ExportConfig(store=str(store), out=str(tmp_path / "coco"), kind="coco"))
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert sorted(names.values()) == ["people", "vans"]
    fg_index = zarr.open_group(str(store), mode="r")["meta"]["fg_index"][:]
    fg_names = ["people/p1.png", "vans/v1.png", "vans/v2.png"]  # sorted by relative path
    for a in doc["annotations"]:
        assert names[a["category_id"]] == fg_names[fg_index[a["image_id"]]].split("/")[0]
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x.zarr"), "--object-heights", "car"])
    assert result.exit_code == 2 and "CATEGORY=METRES" in result.output


@pytest.fixture(scope="module")
def alpha_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``objects_store``'s config with --save-alpha (its foreground names not renamed)."""
    out = tmp_path_factory.mktemp("export") / "alpha.zarr"
    generate(several_objects(save_alpha=True), out)
    return out


def test_save_alpha_with_several_objects_is_their_union_coverage_and_changes_nothing_else(
        alpha_store: Path, objects_store: Path):
    g, plain = zarr.open_group(str(alpha_store), mode="r"), zarr.open_group(str(objects_store), mode="r")
    assert g.attrs["fgbg"]["layout"]["data_arrays"] == ["images", "masks", "depth", "alpha", "instances"]
    for name in ("images", "masks", "depth", "instances", "meta/objects/box", "meta/objects/visible_pixels"):
        np.testing.assert_array_equal(g[name][:], plain[name][:], err_msg=name)
    alpha, masks, ids = g["alpha"][:], g["masks"][:], g["instances"][:]
    assert alpha.dtype == np.uint8 and alpha.shape == masks.shape
    assert (alpha[masks == 255] > 127).all() and (masks[ids > 0] == 255).all()
    assert ((alpha > 0) & (masks == 0)).any()  # soft rims outside the mask
    offset = g["meta/object_offset"][:]
    x, y, h, w = (g[f"meta/objects/{n}"][:] for n in ("x", "y", "h", "w"))
    covered = np.zeros(masks.shape, bool)
    for i in range(len(masks)):
        for m in range(offset[i], offset[i + 1]):
            covered[i, y[m] : y[m] + h[m], x[m] : x[m] + w[m]] = True
    assert not alpha[~covered].any()  # no coverage outside every object's box


def test_folders_export_writes_alpha_as_8_bit_png_and_coco_ignores_it(alpha_store: Path, objects_store: Path,
                                                                      tmp_path: Path):
    out = tmp_path / "folders"
    report = export_store(ExportConfig(store=str(alpha_store), out=str(out), kind="folders", limit=6))
    alpha = zarr.open_group(str(alpha_store), mode="r")["alpha"][:6]
    assert report.files == 6 * 5  # image, mask, depth, instances, alpha
    for i in range(6):
        png = Image.open(out / "alpha" / f"{i:08d}.png")
        assert png.mode == "L"
        np.testing.assert_array_equal(np.asarray(png), alpha[i])
    annotations = []
    for store, name in ((alpha_store, "a"), (objects_store, "b")):
        export_store(ExportConfig(store=str(store), out=str(tmp_path / name), kind="coco"))
        assert not (tmp_path / name / "alpha").exists()
        doc = json.loads((tmp_path / name / "annotations.json").read_text())
        annotations.append([{k: a[k] for k in ("image_id", "bbox", "area", "segmentation")} for a in doc["annotations"]])
    assert annotations[0] == annotations[1]

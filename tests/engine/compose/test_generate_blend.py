"""generate --blend: images blended, labels exact, the mode part of the store's identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from engine.compose.compositor import blend_spec
from engine.compose.generate import generate
from engine.config import GenerateConfig, RunOptions
from engine.errors import ConfigError, StoreError
from tests.small_stores import small

MODES = [
    {"blend": "feather", "feather_sigma": 1.5},
    {"blend": "motion", "motion_length": 5, "motion_angle": 20.0},
    {"blend": "poisson"},
    {"harmonize": True},
]


def arrays(root: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(root, mode="r")
    return {name: g[name][:] for name in ("images", "masks", "depth")}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("alpha") / "a.zarr"
    generate(small(occlusion="background"), out)
    return arrays(out)


def test_default_alpha_skips_the_post_pass() -> None:
    assert GenerateConfig().blend == "alpha" and blend_spec(GenerateConfig()) is None
    assert blend_spec(GenerateConfig(harmonize=True)) is not None


@pytest.mark.parametrize("overrides", MODES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_mode_blends_images_and_keeps_labels(tmp_path: Path, plain: dict, overrides: dict) -> None:
    out = tmp_path / "b.zarr"
    generate(small(occlusion="background", **overrides), out)
    got = arrays(out)
    np.testing.assert_array_equal(got["masks"], plain["masks"])  # labels are never blended
    np.testing.assert_array_equal(got["depth"], plain["depth"])
    changed = np.any(got["images"] != plain["images"], axis=-1)
    assert changed.any()
    # only pixels near the object change (within the blur reach of the mask)
    near = np.zeros_like(changed)
    for b, m in enumerate(plain["masks"] > 0):
        rows, cols = np.nonzero(m)
        if len(rows):
            near[b, max(rows.min() - 8, 0) : rows.max() + 9, max(cols.min() - 8, 0) : cols.max() + 9] = True
    assert not (changed & ~near).any()
    config = zarr.open_group(out, mode="r").attrs["fgbg"]["config"]
    assert all(config[k] == v for k, v in overrides.items())


def test_blending_objects_cut_by_the_border(tmp_path: Path) -> None:
    """--truncation with --blend feather: labels are the alpha store's, images change near the objects only."""
    plain_out, out = tmp_path / "a.zarr", tmp_path / "f.zarr"
    generate(small(truncation=0.5, placement="uniform"), plain_out)
    generate(small(truncation=0.5, placement="uniform", blend="feather", feather_sigma=1.5), out)
    plain, got = arrays(plain_out), arrays(out)
    x, w = (zarr.open_group(out, mode="r")[f"meta/{k}"][:] for k in ("x", "w"))
    assert ((x < 0) | (x + w > 48)).any()
    np.testing.assert_array_equal(got["masks"], plain["masks"])
    np.testing.assert_array_equal(got["depth"], plain["depth"])
    changed = np.any(got["images"] != plain["images"], axis=-1)
    near = np.zeros_like(changed)
    for b, m in enumerate(plain["masks"] > 0):
        rows, cols = np.nonzero(m)
        if len(rows):
            near[b, max(rows.min() - 8, 0) : rows.max() + 9, max(cols.min() - 8, 0) : cols.max() + 9] = True
    assert changed.any() and not (changed & ~near).any()


def test_resume_refuses_another_blend(tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    generate(small(limit=16), out)
    with pytest.raises(StoreError, match="blend"):
        generate(small(limit=16, blend="feather"), out, RunOptions(resume=True))


def test_bad_blend_values_are_config_errors() -> None:
    for bad in ({"blend": "smudge"}, {"feather_sigma": -1.0}, {"motion_length": 0}, {"poisson_tolerance": 2.0},
                {"harmonize_ring": 0}):
        with pytest.raises(ConfigError):
            small(**bad)


@pytest.mark.parametrize("overrides", [
    MODES[0], MODES[2],
    {"blend": "feather", "feather_sigma": 1.5, "harmonize": True, "objects_min": 2, "objects_max": 3,
     "max_overlap": 0.8, "occlusion": "background"},
], ids=["feather", "poisson", "objects-feather-harmonize"])
def test_cuda_path_runs_the_post_pass(tmp_path: Path, overrides: dict) -> None:
    """CUDA (the simulator without a GPU) against the CPU: labels exact, images within 2 levels."""
    from tests.engine.compose.test_generate_cuda import tiny

    generate(tiny(**overrides), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    generate(tiny(**overrides), tmp_path / "cuda.zarr", RunOptions(device="cuda", writer_threads=1))
    cpu, cuda = arrays(tmp_path / "cpu.zarr"), arrays(tmp_path / "cuda.zarr")
    np.testing.assert_array_equal(cuda["masks"], cpu["masks"])
    np.testing.assert_array_equal(cuda["depth"], cpu["depth"])
    if overrides.get("objects_max", 1) > 1:
        g_cpu, g_cuda = zarr.open_group(tmp_path / "cpu.zarr", mode="r"), zarr.open_group(tmp_path / "cuda.zarr", mode="r")
        np.testing.assert_array_equal(g_cuda["instances"][:], g_cpu["instances"][:])
    diff = np.abs(cuda["images"].astype(int) - cpu["images"].astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_stores_written_before_blending_read_as_alpha() -> None:
    d = GenerateConfig().to_dict()
    for key in ("blend", "harmonize", "feather_sigma", "motion_length", "motion_angle", "poisson_iterations",
                "poisson_tolerance", "harmonize_ring"):
        d.pop(key)
    assert GenerateConfig.from_dict(d).identity() == GenerateConfig().identity()


def test_cli_blend_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    base = ["generate", "--builtin-backgrounds", "2", "--builtin-foregrounds", "1", "--size", "32", "--positions",
            "1", "--device", "cpu", "-q"]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "x.zarr"), "--blend", "smudge"])
    assert result.exit_code == 2 and "'alpha', 'feather', 'motion', 'poisson'" in result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "y.zarr"), "--blend", "feather", "--feather-sigma", "-1"])
    assert result.exit_code == 2 and "--feather-sigma" in result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "z.zarr"), "--blend", "motion", "--motion-length",
                                 "7", "--motion-angle", "45", "--harmonize"])
    assert result.exit_code == 0, result.output
    config = zarr.open_group(tmp_path / "z.zarr", mode="r").attrs["fgbg"]["config"]
    assert (config["blend"], config["motion_length"], config["motion_angle"], config["harmonize"]) == (
        "motion", 7, 45.0, True)
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "o.zarr"), "--objects-per-image", "1", "3",
                                 "--scale-min", "0.1", "--scale-max", "0.3", "--blend", "feather", "--harmonize"])
    assert result.exit_code == 0, result.output
    config = zarr.open_group(tmp_path / "o.zarr", mode="r").attrs["fgbg"]["config"]
    assert (config["objects_max"], config["blend"], config["harmonize"]) == (3, "feather", True)


def test_missing_kornia_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "kornia.filters", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="--blend motion needs Kornia"):
        blend_spec(small(blend="motion"))


SEVERAL = {"objects_min": 1, "objects_max": 3, "max_overlap": 0.6, "occlusion": "background"}


def object_arrays(root: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(root, mode="r")
    got = {name: g[name][:] for name in ("images", "masks", "depth", "instances")}
    got["object_offset"] = g["meta/object_offset"][:]
    got.update({f"objects/{name}": g["meta/objects"][name][:] for name in ("depth", "visible_pixels", "box")})
    return got


@pytest.fixture(scope="module")
def plain_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("alpha-objects") / "a.zarr"
    generate(small(**SEVERAL), out)
    return object_arrays(out)


@pytest.mark.parametrize("overrides", [{"blend": "feather", "feather_sigma": 1.5}, {"harmonize": True}],
                         ids=["feather", "harmonize"])
def test_several_objects_are_blended_and_keep_their_labels(tmp_path: Path, plain_objects: dict,
                                                          overrides: dict) -> None:
    """--objects-per-image 1 3 with a blending mode: images blended near the objects only;
    masks, depth, instance maps and per-object metadata exactly the alpha store's."""
    out = tmp_path / "b.zarr"
    generate(small(**SEVERAL, **overrides), out)
    got = object_arrays(out)
    assert (np.diff(got["object_offset"]) > 1).any()  # some samples really have several objects
    for name, want in plain_objects.items():
        if name != "images":
            np.testing.assert_array_equal(got[name], want, err_msg=name)
    changed = np.any(got["images"] != plain_objects["images"], axis=-1)
    assert changed.any()
    near = np.zeros_like(changed)  # within the blur reach (8 px) of some object's visible pixels
    for b, ids in enumerate(plain_objects["instances"]):
        for k in np.unique(ids[ids > 0]):
            rows, cols = np.nonzero(ids == k)
            near[b, max(rows.min() - 8, 0) : rows.max() + 9, max(cols.min() - 8, 0) : cols.max() + 9] = True
    assert not (changed & ~near).any()
    config = zarr.open_group(out, mode="r").attrs["fgbg"]["config"]
    assert all(config[k] == v for k, v in overrides.items()) and config["objects_max"] == 3


def test_feather_of_sigma_zero_with_several_objects_is_the_alpha_store(tmp_path: Path, plain_objects: dict) -> None:
    """The layered pass rounds per object as the kernel does: no blur, same bytes."""
    generate(small(**SEVERAL, blend="feather", feather_sigma=0.0), tmp_path / "f.zarr")
    got = object_arrays(tmp_path / "f.zarr")
    for name, want in plain_objects.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_several_objects_blended_store_resumes_to_the_same_bytes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.store.zarr_store import ZarrWriter
    from tests.small_stores import disk_full_at_shard, tree

    config = small(**SEVERAL, blend="feather", harmonize=True)
    generate(config, tmp_path / "whole.zarr")
    real = disk_full_at_shard(monkeypatch, 1)
    with pytest.raises(OSError):
        generate(config, tmp_path / "resumed.zarr", RunOptions(writer_threads=1))
    monkeypatch.setattr(ZarrWriter, "write_shard", real)
    generate(config, tmp_path / "resumed.zarr", RunOptions(resume=True))
    assert tree(tmp_path / "resumed.zarr") == tree(tmp_path / "whole.zarr")


def test_blend_modes_are_accepted_with_several_objects() -> None:
    """Formerly refused (the post-pass read one row per sample); now blended layer by layer."""
    for options in ({"blend": "feather"}, {"blend": "motion"}, {"blend": "poisson"}, {"harmonize": True}):
        config = small(objects_min=1, objects_max=3, **options)
        assert blend_spec(config) is not None

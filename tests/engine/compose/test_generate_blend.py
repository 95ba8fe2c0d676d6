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


@pytest.mark.parametrize("overrides", [MODES[0], MODES[2]], ids=["feather", "poisson"])
def test_cuda_path_runs_the_post_pass(tmp_path: Path, overrides: dict) -> None:
    """CUDA (the simulator without a GPU) against the CPU: labels exact, images within 2 levels."""
    from tests.engine.compose.test_generate_cuda import tiny

    generate(tiny(**overrides), tmp_path / "cpu.zarr", RunOptions(device="cpu"))
    generate(tiny(**overrides), tmp_path / "cuda.zarr", RunOptions(device="cuda", writer_threads=1))
    cpu, cuda = arrays(tmp_path / "cpu.zarr"), arrays(tmp_path / "cuda.zarr")
    np.testing.assert_array_equal(cuda["masks"], cpu["masks"])
    np.testing.assert_array_equal(cuda["depth"], cpu["depth"])
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


def test_missing_kornia_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "kornia.filters", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="--blend motion needs Kornia"):
        blend_spec(small(blend="motion"))


def test_blend_modes_need_one_object_per_image() -> None:
    """The post-pass reads one placement row per sample; several objects are refused, not mis-blended."""
    for options in ({"blend": "feather"}, {"blend": "poisson"}, {"harmonize": True}):
        with pytest.raises(ConfigError, match="one object per image"):
            small(objects_min=1, objects_max=3, **options)
    small(objects_min=1, objects_max=3)  # alpha with several objects is fine
    small(blend="motion")  # and blending with one

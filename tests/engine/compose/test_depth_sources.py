"""Depth sources for real photographs: user maps, teachers, occlusion, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from PIL import Image
from typer.testing import CliRunner

from cli import app
from engine.compose.generate import generate
from engine.config import GenerateConfig, RunOptions
from engine.errors import InputError, StoreError
from kernels import placement as P
from kernels.plane_depth import CONTACT, MIN_FOOTPRINT, plane_depth_reference
from kernels.resample import resize_rgba

SIZE = 32


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Two 'photos' (60x80) with depth maps (.npy and 16-bit PNG), one car."""
    root = tmp_path / "in"
    for d in ("bg", "fg", "depth"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(root / "bg" / f"street{i}.jpg")
    rows = np.linspace(5.0, 40.0, 60, dtype=np.float32)[::-1, None] * np.ones((1, 80), np.float32)  # far at the top
    np.save(root / "depth" / "street0.npy", rows)
    Image.fromarray((rows * 1000).astype(np.uint16)).save(root / "depth" / "street1.png")
    sprite = np.zeros((20, 30, 4), np.uint8)
    sprite[2:18, 2:28] = (200, 40, 40, 255)
    sprite[17, 2:28, 3] = 0
    sprite[17, [4, 5, 23, 24], 3] = 255  # wheels on the bottom row
    Image.fromarray(sprite).save(root / "fg" / "car.png")
    return root


def maps_config(root: Path, **overrides) -> GenerateConfig:
    base = dict(bg_dir=str(root / "bg"), fg_dir=str(root / "fg"), depth_source="bg-maps",
                depth_maps_dir=str(root / "depth"), height=SIZE, width=SIZE, positions=4, shard_size=8)
    return GenerateConfig(**{**base, **overrides})


def plane_of(g: zarr.Group, i: int, mode: int) -> float:
    """Independent recomputation of sample i's plane depth from the store alone."""
    f = int(g["meta/fg_index"][i])
    size = g["assets/fg_size"][f]
    canonical = np.ascontiguousarray(g["assets/fg"][f, : size[0], : size[1]])
    h, w = int(g["meta/h"][i]), int(g["meta/w"][i])
    sprite = resize_rgba(canonical, h, w)
    row = np.array([[g["meta/bg_index"][i], 0, g["meta/x"][i], g["meta/y"][i], h, w, g["meta/flip"][i], 0]], np.int64)
    bg_depth = g["assets/bg_depth"][:].astype(np.float32)
    return float(plane_depth_reference(bg_depth, sprite.reshape(-1), row, 127, mode)[0])


@pytest.mark.parametrize("rule, mode", [("contact", CONTACT), ("min-footprint", MIN_FOOTPRINT)])
def test_bg_maps_place_the_foreground_on_the_map(photos: Path, tmp_path: Path, rule: str, mode: int) -> None:
    out = tmp_path / "m.zarr"
    generate(maps_config(photos, fg_depth=rule), out)
    g = zarr.open_group(out, mode="r")
    attrs = g.attrs["fgbg"]
    assert attrs["depth"]["source"] == "bg-maps" and [r["name"] for r in attrs["inputs"]["depth_maps"]] == [
        "street0.npy", "street1.png"]
    bg_depth = g["assets/bg_depth"][:].astype(np.float32)
    # both maps hold the same rows: 5 m at the bottom to 40 m at the top, resized by nearest neighbour
    np.testing.assert_allclose(bg_depth[0], bg_depth[1], rtol=1e-3)
    assert bg_depth[0, -1, 0] < 6 and bg_depth[0, 0, 0] > 39
    depth, masks = g["depth"][:].astype(np.float32), g["masks"][:] > 0
    for i in range(len(depth)):
        want = np.float16(plane_of(g, i, mode))
        np.testing.assert_array_equal(depth[i][masks[i]], want)
        np.testing.assert_array_equal(depth[i][~masks[i]], bg_depth[int(g["meta/bg_index"][i])][~masks[i]].astype(np.float16))


def test_constant_plane_depth(photos: Path, tmp_path: Path) -> None:
    generate(maps_config(photos, fg_depth="constant", fg_depth_value=12.5), tmp_path / "c.zarr")
    g = zarr.open_group(tmp_path / "c.zarr", mode="r")
    assert (g["depth"][:][g["masks"][:] > 0] == 12.5).all()


def test_occlusion_hides_the_car_behind_a_near_box(photos: Path, tmp_path: Path) -> None:
    box = np.full((60, 80), 50.0, np.float32)
    box[10:50, 30:50] = 2.0  # a pole or parked van in the middle, nearer than the car at 10 m
    for name in ("street0.npy", "street1.png"):
        (photos / "depth" / name).unlink()
    np.save(photos / "depth" / "street0.npy", box)
    np.save(photos / "depth" / "street1.npy", box)
    common = dict(fg_depth="constant", fg_depth_value=10.0, positions=8, scale_min=0.6, scale_max=0.9)
    generate(maps_config(photos, **common), tmp_path / "top.zarr")
    generate(maps_config(photos, occlusion="background", **common), tmp_path / "behind.zarr")
    top, behind = zarr.open_group(tmp_path / "top.zarr"), zarr.open_group(tmp_path / "behind.zarr")
    near = top["assets/bg_depth"][0].astype(np.float32) < 10
    m_top, m_behind = top["masks"][:] > 0, behind["masks"][:] > 0
    assert (m_top & near).any(), "some car pixels overlap the box"
    assert not (m_behind & near).any(), "none survive behind it"
    np.testing.assert_array_equal(m_behind, m_top & ~near)
    d = behind["depth"][:].astype(np.float32)
    assert (d[:, near] == 2).all()
    images_top, images_behind, bg = top["images"][:], behind["images"][:], top["assets/bg"][:]
    for i in range(len(d)):
        b = int(top["meta/bg_index"][i])
        np.testing.assert_array_equal(images_behind[i][near], bg[b][near])
        np.testing.assert_array_equal(images_behind[i][~near], images_top[i][~near])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "street1.png").unlink(), "no depth map for background street1.jpg"),
        (lambda d: np.save(d / "street0.npy", np.ones((60, 81), np.float32)), "depth map is 81x60 but its background street0.jpg is 80x60"),
        (lambda d: np.save(d / "street0.npy", np.zeros((60, 80), np.float32)), "no valid depth"),
        (lambda d: np.save(d / "street0.npy", np.full((60, 80), np.nan, np.float32)), "no valid depth"),
        (lambda d: (d / "street0.npy").write_bytes(b"\x93NUMPY garbage"), "unreadable depth map"),
        (lambda d: Image.fromarray(np.zeros((60, 80), np.uint8)).save(d / "street1.png"), "L image cannot hold depth"),
    ],
)
def test_bad_depth_maps_name_the_file(photos: Path, tmp_path: Path, damage, message: str) -> None:
    damage(photos / "depth")
    with pytest.raises(InputError, match=message):
        generate(maps_config(photos), tmp_path / "bad.zarr")
    report = generate(maps_config(photos, on_bad_input="skip"), tmp_path / "skip.zarr")
    assert len(report.skipped) == 1 and report.n_samples == 1 * 1 * 2 * 4  # one background left


def test_exr_depth_maps(photos: Path, tmp_path: Path) -> None:
    OpenEXR = pytest.importorskip("OpenEXR")
    depth = np.load(photos / "depth" / "street0.npy")
    (photos / "depth" / "street0.npy").unlink()
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": depth}) as f:
        f.write(str(photos / "depth" / "street0.exr"))
    generate(maps_config(photos), tmp_path / "e.zarr")
    g = zarr.open_group(tmp_path / "e.zarr", mode="r")
    np.testing.assert_allclose(g["assets/bg_depth"][0].astype(np.float32), g["assets/bg_depth"][1].astype(np.float32), rtol=1e-3)


# -- teachers --------------------------------------------------------------------------


class ConstantDepth(torch.nn.Module):
    def __init__(self, value: float, half: bool = True) -> None:
        super().__init__()
        self.value = value
        self.half = half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        size = (h // 2, w // 2) if self.half else (h, w)
        return torch.full((n, 1, *size), self.value, dtype=x.dtype, device=x.device)


class Brightness(torch.nn.Module):
    """Depth from the image: 1 + |mean of the normalised channels| (changes with the car)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + x.mean(dim=1, keepdim=True).abs()


def script(module: torch.nn.Module, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript; users still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))
    return path


def test_torch_export_teacher(tmp_path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Brightness(), (torch.zeros(2, 3, SIZE, SIZE),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "b.pt2"))
    generate(teacher_config(tmp_path / "b.pt2", "teacher-composite"), tmp_path / "x.zarr")
    script(Brightness(), tmp_path / "b.pt")
    generate(teacher_config(tmp_path / "b.pt", "teacher-composite"), tmp_path / "s.zarr")
    a = zarr.open_group(tmp_path / "x.zarr")["depth"][:].astype(np.float32)
    b = zarr.open_group(tmp_path / "s.zarr")["depth"][:].astype(np.float32)
    np.testing.assert_array_equal(a, b)


def teacher_config(teacher: Path, source: str, **overrides) -> GenerateConfig:
    base = dict(builtin_backgrounds=2, builtin_foregrounds=2, height=SIZE, width=SIZE, positions=2, shard_size=8,
                depth_source=source, teacher=str(teacher))
    return GenerateConfig(**{**base, **overrides})


def test_teacher_bg_runs_once_per_background(tmp_path: Path) -> None:
    teacher = script(ConstantDepth(7.0), tmp_path / "t.pt")
    generate(teacher_config(teacher, "teacher-bg"), tmp_path / "t.zarr")
    g = zarr.open_group(tmp_path / "t.zarr", mode="r")
    assert (g["assets/bg_depth"][:] == 7).all() and (g["depth"][:] == 7).all()
    attrs = g.attrs["fgbg"]
    assert attrs["depth"]["teacher"] == "t.pt" and len(attrs["inputs"]["teacher"]["sha256"]) == 64


def test_inverse_depth_and_scale(tmp_path: Path) -> None:
    teacher = script(ConstantDepth(0.25), tmp_path / "inv.pt")
    cfg = teacher_config(teacher, "teacher-bg", teacher_output="inverse-depth", teacher_scale=2.0)
    generate(cfg, tmp_path / "i.zarr")
    assert (zarr.open_group(tmp_path / "i.zarr")["assets/bg_depth"][:] == 8).all()  # 2 / 0.25


def test_align_to_ground_matches_the_prior_median(tmp_path: Path) -> None:
    from engine.compose.generate import load_assets

    teacher = script(ConstantDepth(3.0), tmp_path / "c.pt")
    cfg = teacher_config(teacher, "teacher-bg", align_to_ground=True, max_depth=1000.0)
    generate(cfg, tmp_path / "a.zarr")
    bg_depth = zarr.open_group(tmp_path / "a.zarr")["assets/bg_depth"][:].astype(np.float64)
    for b, ground in enumerate(load_assets(cfg).bg_grounds):
        prior = ground.ground_depth(np.arange(SIZE))
        below = np.isfinite(prior)
        ratio = np.median(prior[below, None] / bg_depth[b][below])
        assert ratio == pytest.approx(1.0, rel=2e-3)


def test_teacher_composite_runs_on_every_composite(tmp_path: Path) -> None:
    teacher = script(Brightness(), tmp_path / "b.pt")
    generate(teacher_config(teacher, "teacher-composite"), tmp_path / "c.zarr")
    g = zarr.open_group(tmp_path / "c.zarr", mode="r")
    images = g["images"][:].astype(np.float32) / 255
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want = 1 + np.abs(((images - mean) / std).mean(axis=-1))
    np.testing.assert_allclose(g["depth"][:].astype(np.float32), want, rtol=2e-3)


def test_teacher_composite_waits_for_the_copy_back(tmp_path: Path) -> None:
    """A GPU batch is returned while its images still copy back: the teacher
    must only see them after ``ready()`` (a fake copy fills them in here)."""
    from engine.compose.compositor import Batch, Compositor
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for

    cfg = teacher_config(script(Brightness(), tmp_path / "b.pt"), "teacher-composite")
    assets = load_assets(cfg)
    depth = make_depth_source(cfg, assets)
    plan = plan_for(cfg, assets, depth)
    comp = Compositor(assets, depth, cfg)
    p = plan.placements(0, 4)
    done = comp.composite(p)
    pending = np.zeros_like(done.images)
    late = Batch(images=pending, masks=done.masks.copy(), depth=np.zeros_like(done.depth), alpha=None,
                 ready=lambda: np.copyto(pending, done.images))
    comp.replace_depth(late, p)
    np.testing.assert_array_equal(late.depth, done.depth)


def test_onnx_teacher(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=1, axes=[1]),
         helper.make_node("Abs", ["m"], ["a"]),
         helper.make_node("Add", ["a", "one"], ["y"])],
        "brightness",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "b.onnx")
    generate(teacher_config(tmp_path / "b.onnx", "teacher-composite"), tmp_path / "o.zarr")
    script(Brightness(), tmp_path / "b.pt")
    generate(teacher_config(tmp_path / "b.pt", "teacher-composite"), tmp_path / "s.zarr")
    a = zarr.open_group(tmp_path / "o.zarr")["depth"][:].astype(np.float32)
    b = zarr.open_group(tmp_path / "s.zarr")["depth"][:].astype(np.float32)
    np.testing.assert_allclose(a, b, rtol=2e-3)


class WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class NotANumber(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * float("nan")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"definitely not a model"), "not a TorchScript or ONNX model"),
        (lambda p: __import__("zipfile").ZipFile(p, "w").close(), "not a loadable TorchScript or torch.export model"),
        (lambda p: script(WrongShape(), p), r"returned shape \(2, 3, 32, 32\).*expected \(N, 1, h, w\)"),
        (lambda p: script(NotANumber(), p), "NaN or infinite"),
        (lambda p: script(ConstantDepth(-1.0), p), "depth <= 0"),
    ],
)
def test_bad_teachers_are_one_line_errors(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(InputError, match=message):
        generate(teacher_config(path, "teacher-bg"), tmp_path / "x.zarr")
    result = CliRunner().invoke(app, ["generate", "--builtin-backgrounds", "2", "--builtin-foregrounds", "2",
                                      "--size", "32", "--positions", "2", "-q", "--out", str(tmp_path / "y.zarr"),
                                      "--depth-source", "teacher-bg", "--teacher", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "bad.pt" in result.output


def test_resume_notices_a_changed_teacher(tmp_path: Path) -> None:
    teacher = script(ConstantDepth(7.0), tmp_path / "t.pt")
    generate(teacher_config(teacher, "teacher-bg", limit=8), tmp_path / "r.zarr")
    script(ConstantDepth(9.0), teacher)
    with pytest.raises(StoreError, match="different input files"):
        generate(teacher_config(teacher, "teacher-bg", limit=8), tmp_path / "r.zarr", RunOptions(resume=True))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"depth_source": "bg-maps"}, "needs --depth-maps"),
        ({"depth_source": "teacher-bg"}, "needs --teacher"),
        ({"fg_depth": "constant"}, "--fg-depth-value"),
        ({"occlusion": "sometimes"}, "--occlusion"),
    ],
)
def test_option_errors(overrides: dict, message: str) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        GenerateConfig(**overrides)


def test_placement_table_column_order_is_stable() -> None:
    assert (P.BG, P.OFFSET, P.X, P.Y, P.H, P.W, P.FLIP, P.DEPTH) == tuple(range(8))

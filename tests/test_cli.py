"""The command line through Typer's test runner, plus import-cost checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--builtin-backgrounds", "3", "--builtin-foregrounds", "2", "--size", "32",
         "--positions", "4", "--shard-size", "16", "-q"]

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "s.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 48 samples" in result.output and "images/s" in result.output
    return out


def test_generate_reports_the_writing_rate_and_the_whole_call(tmp_path: Path) -> None:
    from engine.compose.generate import generate
    from engine.config import GenerateConfig

    report = generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=32, positions=4,
                                     shard_size=16), tmp_path / "r.zarr")
    assert 0 < report.write_seconds < report.seconds  # the assets and the store's setup come before writing
    assert report.writing_images_per_second == pytest.approx(48 / report.write_seconds)
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(tmp_path / "c.zarr")])
    line = result.output.strip().splitlines()[-1]
    assert re.fullmatch(rf"wrote 48 samples \(48 in store\) to {re.escape(str(tmp_path / 'c.zarr'))} in [0-9.]+ s "
                        r"\([0-9,]+ images/s writing; [0-9.]+ s whole call incl. start-up, [0-9,]+ images/s\)", line), line


def test_progress_bar_rate_is_the_mean_since_writing_started(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli

    clock = iter([10.0, 12.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    bar = cli._Progress(disabled=True, header="device: cpu")
    bar.update(0, 16, 116)  # writing starts at t=10 with 16 samples done (a resume)
    assert bar.rate(116) == 50.0  # 100 samples in 2 s, the first shard included


def test_info_describes_a_store(store: Path) -> None:
    result = runner.invoke(app, ["info", str(store)])
    assert result.exit_code == 0, result.output
    for text in ("complete", "48 of 48", "3 backgrounds x 2 foregrounds", "images", "zstd", "ground-plane"):
        assert text in result.output


def test_info_json(store: Path) -> None:
    result = runner.invoke(app, ["info", str(store), "--json"])
    data = json.loads(result.output)
    assert data["complete"] and data["samples"] == 48 and data["arrays"]["depth"]["dtype"] == "float16"


def test_info_reports_an_incomplete_store(store: Path, tmp_path: Path) -> None:
    import shutil

    partial = tmp_path / "p.zarr"
    shutil.copytree(store, partial)
    doc = json.loads((partial / "zarr.json").read_text())
    doc["attributes"]["fgbg"]["progress"] = {"shards_done": [0], "complete": False}
    (partial / "zarr.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["info", str(partial)])
    assert "INCOMPLETE (1/3 shards" in result.output and "16 of 48" in result.output


def test_preview_writes_a_contact_sheet(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    result = runner.invoke(app, ["preview", str(store), "--n", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[1] == 32 * 3 * 1 and sheet.shape[0] == 6 * (32 + 14) + 28  # 1 triplet per row for n=6, colour bar
    assert sheet.std() > 10


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--out", "{tmp}/x.zarr", "--bg", "{tmp}/nope", "--fg", "{tmp}"], "background folder does not exist"),
        (["generate", "--out", "{tmp}/x.zarr", "--bg", "{tmp}"], "give both --bg and --fg"),
        (["generate", "--out", "{tmp}/x.zarr", "--scale-min", "0.9", "--scale-max", "0.2"], "--scale-min"),
        (["generate", "--out", "{tmp}/x.zarr", "--overwrite", "--resume"], "exclude each other"),
        (["info", "{tmp}/missing.zarr"], "no such store"),
        (["preview", "{tmp}/missing.zarr"], "no such store"),
        (["generate", "--out", "{tmp}/x.zarr", "--shard", "2/2"], "--shard must be i/n"),
        (["generate", "--out", "nope://bucket/x.zarr"], "unsupported URL scheme 'nope'"),
        (["info", "memory://fgbg-nothing/x.zarr"], "no store there"),
        (["preview", "s3://bucket/x.zarr"], "s3://bucket/x.zarr: this command reads a local store"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_generate_says_which_device_it_chose(tmp_path: Path) -> None:
    args = [a for a in SMALL if a != "-q"]
    result = runner.invoke(app, ["generate", *args, "--limit", "8", "--out", str(tmp_path / "d.zarr")])
    assert result.exit_code == 0, result.output
    assert "device: cpu (no CUDA GPU found)" in result.output or "device: cuda (" in result.output
    result = runner.invoke(app, ["generate", *SMALL, "--device", "cpu", "--out", str(tmp_path / "e.zarr")])
    assert "device:" not in result.output


def test_existing_output_needs_overwrite_or_resume(store: Path) -> None:
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(store)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(store), "--resume"])
    assert result.exit_code == 0 and "completed 0 samples" in result.output


def test_resume_keeps_the_stores_own_compression_level(tmp_path: Path) -> None:
    """A store made at level 3 (the default before 2026-12-06) resumes without the flag;
    a new store gets today's default; a level given that differs is a one-line refusal."""
    from engine.config import DEFAULT_COMPRESSION_LEVEL
    from engine.store.attrs import recorded_setting

    old = tmp_path / "old.zarr"
    assert runner.invoke(app, ["generate", *SMALL, "--out", str(old), "--compression-level", "3"]).exit_code == 0
    shard = next((old / "images" / "c").rglob("*"))
    while shard.is_dir():
        shard = next(shard.iterdir())
    shard.unlink()  # an interrupted store: one shard to write again
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(old), "--resume"])
    assert result.exit_code == 0 and "completed 16 samples" in result.output, result.output
    assert recorded_setting(old, "compression_level") == 3
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(old), "--resume", "--compression-level", "2"])
    assert result.exit_code == 2 and "compression_level: the store's 3, this run's 2" in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {old}: made with different settings")
    new = tmp_path / "new.zarr"
    assert runner.invoke(app, ["generate", *SMALL, "--out", str(new)]).exit_code == 0
    assert recorded_setting(new, "compression_level") == DEFAULT_COMPRESSION_LEVEL == 2
    assert recorded_setting(tmp_path / "none.zarr", "compression_level") is None
    assert recorded_setting("s3://bucket/store.zarr", "compression_level") is None


def folders_with_a_broken_background(tmp_path: Path) -> tuple[Path, Path]:
    """``bg/`` with one good image and one broken JPEG, ``fg/`` with one sprite."""
    bg, fg = tmp_path / "bg", tmp_path / "fg"
    bg.mkdir()
    fg.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(bg / "ok.png")
    (bg / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    sprite = np.zeros((20, 20, 4), np.uint8)
    sprite[4:16, 4:16] = 255
    Image.fromarray(sprite).save(fg / "a.png")
    return bg, fg


def test_bad_input_skip_lists_the_files(tmp_path: Path) -> None:
    bg, fg = folders_with_a_broken_background(tmp_path)
    common = ["generate", "--bg", str(bg), "--fg", str(fg), "--size", "32", "--positions", "2", "-q"]
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "a.zarr")])
    assert result.exit_code == 2 and "broken.jpg" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "b.zarr"), "--on-bad-input", "skip"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output


@pytest.mark.parametrize("shards_done, message", [
    (None, "before any shard was written"),
    ([], "before the first shard finished"),
    ([0], "1 finished shards are kept; complete"),
])
def test_interrupt_says_what_was_kept(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      shards_done: list[int] | None, message: str) -> None:
    import shutil

    import engine.compose.generate

    out = tmp_path / "i.zarr"
    if shards_done is not None:
        shutil.copytree(store, out)
        doc = json.loads((out / "zarr.json").read_text())
        doc["attributes"]["fgbg"]["progress"] = {"shards_done": shards_done, "complete": False}
        (out / "zarr.json").write_text(json.dumps(doc))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.compose.generate, "generate", ctrl_c)
    result = runner.invoke(app, ["generate", *SMALL, "--resume", "--out", str(out)])
    assert result.exit_code == 130 and message in result.output, result.output


def test_generate_prints_the_size_estimate_and_refuses_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    result = runner.invoke(app, ["generate", *SMALL, "--out", str(tmp_path / "a.zarr")])
    assert result.exit_code == 0 and "store size: about" in result.output and "free on" in result.output
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6, 0))
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(tmp_path / "b.zarr")])
    assert result.exit_code == 2 and "--force" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["generate", *SMALL, "--force", "--out", str(tmp_path / "c.zarr")])
    assert result.exit_code == 0, result.output


def test_skipped_files_are_listed_once(tmp_path: Path) -> None:
    """The engine logged each skipped file as a warning and the CLI listed it again."""
    bg, fg = folders_with_a_broken_background(tmp_path)
    args = ["generate", "--bg", str(bg), "--fg", str(fg), "--size", "32", "--positions", "2", "-q",
            "--device", "cpu", "--on-bad-input", "skip", "--out", str(tmp_path / "s.zarr")]
    out = subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert (out.stdout + out.stderr).count("broken.jpg") == 1, out.stderr


def test_help_is_readable_at_80_columns_and_lists_choices() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "cli.py", "generate", "-h"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    assert max(map(len, out.splitlines())) <= 80
    lines = [line.strip() for line in out.splitlines()]
    # whole option names, choices and defaults, each on one line
    for text in ("--builtin-backgrounds <int>", "--depth-source <ground-plane|bg-maps|teacher-bg|teacher-composite>",
                 "--image-codec <zstd|none|jpeg>", "--on-bad-input <error|skip>", "--device <auto|cpu|cuda>",
                 "[default: 224]", "--overwrite / --no-overwrite"):
        assert any(text in line for line in lines), text
    out = subprocess.run([sys.executable, "cli.py", "train", "-h"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    for text in ("--stage <coarse|fine>", "--optimizer <sgd|adamw>", "--precision <auto|fp32|bf16|fp16>",
                 "--loss-mask <all|foreground|background>", "--device <auto|cpu|cuda>"):
        assert any(text in line for line in out.splitlines()), text


@pytest.mark.parametrize("args, choices", [
    (["train", "--data", "x", "--out", "y", "--stage", "bogus"], "'coarse', 'fine'"),
    (["train", "--data", "x", "--out", "y", "--precision", "fp64"], "'auto', 'fp32', 'bf16', 'fp16'"),
    (["evaluate", "--data", "x", "--checkpoint", "y", "--split", "test"], "'val', 'train', 'all'"),
    (["predict", "--checkpoint", "y", "--device", "tpu", "a.png"], "'auto', 'cpu', 'cuda'"),
])
def test_bad_choices_are_rejected_with_the_choices(args: list[str], choices: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and choices in result.output, result.output


def test_version() -> None:
    from engine import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fgbg {__version__}"


@pytest.mark.parametrize("command", [["--help"], ["generate", "--help"], ["info", "{store}"], ["--version"], ["-h"]])
def test_light_commands_do_not_import_heavy_packages(store: Path, command: list[str]) -> None:
    code = (
        "import sys\n"
        "sys.argv = ['cli.py'] + sys.argv[1:]\n"
        "import cli\n"
        "try:\n    cli.app()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numba', 'nvidia.dali', 'kornia') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    args = [c.format(store=store) for c in command]
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_info_stats_computes_saves_and_prints_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app
    from engine.compose.generate import generate
    from engine.config import GenerateConfig
    from engine.store.stats import read_stats

    out = tmp_path / "j.zarr"
    generate(GenerateConfig(builtin_backgrounds=2, builtin_foregrounds=2, height=32, width=32, positions=2,
                            shard_size=8, image_codec="jpeg"), out)
    assert read_stats(out) is None  # JPEG stores get them from a pass over the decoded images
    result = CliRunner().invoke(app, ["info", str(out), "--stats"])
    assert result.exit_code == 0, result.output
    saved = read_stats(out)
    assert saved is not None and saved["samples"] == 16
    assert f"mean {saved['mean'][0]:.1f}" in result.output and "0-255" in result.output


def test_generate_several_objects_per_image_then_info_and_verify(tmp_path: Path) -> None:
    out = tmp_path / "objects.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--objects-per-image", "2", "3", "--max-overlap", "0.4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    import zarr

    g = zarr.open_group(out, mode="r")
    assert g["instances"].dtype == np.uint16 and np.diff(g["meta/object_offset"][:]).min() >= 1
    assert g.attrs["fgbg"]["config"]["objects_max"] == 3
    assert runner.invoke(app, ["info", str(out)]).exit_code == 0
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["preview", str(out), "--n", "4", "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    sheet = np.asarray(Image.open(tmp_path / "p.png"))
    assert sheet.shape[1] == 32 * 4  # image | mask | depth | instances
    from engine.store.preview import INSTANCE_PALETTE

    ids = np.asarray(Image.open(tmp_path / "p.png"))[14 : 14 + 32, 3 * 32 :].reshape(-1, 3)  # first sample's tile
    assert {tuple(c) for c in ids} <= {(0, 0, 0)} | {tuple(c) for c in INSTANCE_PALETTE.tolist()}
    assert len({tuple(c) for c in ids}) >= 2


@pytest.mark.parametrize("args", [["--objects-per-image", "3", "1"], ["--objects-per-image", "0", "2"],
                                  ["--max-overlap", "1.5"], ["--truncation", "0.95"], ["--truncation", "-0.1"],
                                  ["--truncation", "nan"]])
def test_generate_refuses_bad_object_options(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["generate", *SMALL, *args, "--out", str(tmp_path / "x.zarr")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_generate_with_heights_per_file_and_a_heights_file(tmp_path: Path) -> None:
    """--object-heights FILE=METRES and --fg's heights.csv end to end; a bad line or an unknown
    name is one line, exit 2."""
    import zarr

    bg, fg = folders_with_a_broken_background(tmp_path)
    (bg / "broken.jpg").unlink()
    (fg / "vans").mkdir()
    sprite = np.zeros((20, 30, 4), np.uint8)
    sprite[2:18, 2:28] = 255
    Image.fromarray(sprite).save(fg / "vans" / "v.png")
    (fg / "heights.csv").write_text("a.png,1.1\nvans,2.4\n")
    common = ["generate", "--bg", str(bg), "--fg", str(fg), "--size", "32", "--positions", "2", "--horizon", "0.4",
              "-q"]
    result = runner.invoke(app, [*common, "--object-heights", "vans/v=2.0", "--out", str(tmp_path / "h.zarr")])
    assert result.exit_code == 0, result.output
    attrs = zarr.open_group(tmp_path / "h.zarr", mode="r").attrs["fgbg"]
    assert attrs["config"]["object_heights"] == [["vans/v", 2.0]] and attrs["inputs"]["heights"]["metres"] == [1.1, 2.0]
    assert "heights   from heights.csv" in runner.invoke(app, ["info", str(tmp_path / "h.zarr")]).output
    result = runner.invoke(app, [*common, "--object-heights", "vans/w=2.0", "--out", str(tmp_path / "u.zarr")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "no foreground or category named vans/w" in lines[0]
    assert "vans/v.png" in lines[0], result.output
    (fg / "heights.csv").write_text("a.png,1.1\nvans 2.4\n")
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "b.zarr")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and f"{fg / 'heights.csv'}, line 2: " in lines[0], result.output


def test_generate_with_truncation_then_export_coco_boxes_lie_inside(tmp_path: Path) -> None:
    """--truncation 0.5 with 1-3 objects: placements reach beyond the border, while the stored
    visible boxes and the COCO boxes (visible, clipped) lie inside the image and match the masks."""
    import zarr

    from engine.store.export import decode_rle

    out = tmp_path / "cut.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--positions", "8", "--truncation", "0.5",
                                 "--objects-per-image", "1", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    g = zarr.open_group(out, mode="r")
    assert g.attrs["fgbg"]["config"]["truncation"] == 0.5
    x, y, h, w = (g[f"meta/objects/{n}"][:] for n in ("x", "y", "h", "w"))
    # cut left or right (perspective: never the bottom; the top only for objects taller than the camera is high)
    assert (x < 0).any() and (x + w > 32).any()
    assert (np.maximum(-x, 0) <= 0.5 * w).all() and (np.maximum(x + w - 32, 0) <= 0.5 * w).all()
    assert (np.maximum(-y, 0) <= 0.5 * h).all() and (y + h <= 32).all()
    visible, box = g["meta/objects/visible_pixels"][:], g["meta/objects/box"][:]
    seen = visible > 0
    assert (box[seen, :2] >= 0).all() and (box[seen, 0] + box[seen, 2] <= 32).all()
    assert (box[seen, 1] + box[seen, 3] <= 32).all()
    ids, masks = g["instances"][:], g["masks"][:]
    np.testing.assert_array_equal(ids > 0, masks > 0)
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    result = runner.invoke(app, ["preview", str(out), "--n", "4", "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["export", "coco", str(out), "--out", str(tmp_path / "coco"), "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert len(doc["annotations"]) == int(seen.sum())
    offset = g["meta/object_offset"][:]
    for a in doc["annotations"]:
        bx, by, bw, bh = a["bbox"]
        assert bx >= 0 and by >= 0 and bw >= 1 and bh >= 1 and bx + bw <= 32 and by + bh <= 32
        mask = decode_rle(a["segmentation"])
        rows, cols = np.nonzero(mask)
        assert [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1] == a["bbox"]
        objects = range(offset[a["image_id"]], offset[a["image_id"] + 1])
        assert a["bbox"] in [box[m].tolist() for m in objects]


def test_generate_with_truncation_under_uniform_placement_cuts_the_bottom_too(tmp_path: Path) -> None:
    import zarr

    out = tmp_path / "uniform.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--positions", "8", "--truncation", "0.5", "--placement",
                                 "uniform", "--out", str(out)])
    assert result.exit_code == 0, result.output
    g = zarr.open_group(out, mode="r")
    y, h = g["meta/y"][:], g["meta/h"][:]
    below = y + h > 32
    assert below.any() and (y + h - 32 <= 0.5 * h).all()
    depth, masks = g["depth"][:].astype(np.float32), g["masks"][:]
    assert (depth[masks > 0] > 0).all() and np.isfinite(depth).all()


@pytest.mark.parametrize("compressor", ["hybrid", "nvcomp"])
def test_gpu_compressors_on_the_cpu_are_one_line(tmp_path: Path, compressor: str) -> None:
    out = tmp_path / "s.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--device", "cpu", "--compressor", compressor, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"--compressor {compressor}: it runs on the GPU" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_generate_verbose_reports_the_writers_cpu_by_step(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", *SMALL, "-v", "--out", str(tmp_path / "v.zarr")])
    assert result.exit_code == 0, result.output
    assert "writer CPU time per sample (" in result.output and "compress images" in result.output
    assert re.search(r"writers at \d+% of their compression ceiling", result.output)
    quiet = runner.invoke(app, ["generate", *SMALL, "--out", str(tmp_path / "q.zarr")])
    assert "compression ceiling" not in quiet.output

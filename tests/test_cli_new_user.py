"""What a new user hit (issue 22): one-line errors, honest messages, guards before long runs."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

SMALL = ["--builtin-backgrounds", "3", "--builtin-foregrounds", "2", "--size", "32",
         "--positions", "4", "--shard-size", "16", "-q"]
TRAIN = ["--input-size", "64", "--steps", "2", "--batch", "4", "--val-fraction", "0.34", "--device", "cpu",
         "--loader", "torch", "-q"]

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("newuser") / "s.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def one_line_error(result) -> str:
    """The CLI's refusal: exit 2, one ``error:`` line, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# -- train --------------------------------------------------------------------------------------


def test_refused_train_leaves_no_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nope.zarr"), "--out", str(out), *TRAIN])
    one_line_error(result)
    assert not out.exists()


def test_refused_train_on_a_one_background_store_leaves_no_run_folder(tmp_path: Path) -> None:
    store = tmp_path / "one.zarr"
    result = runner.invoke(app, ["generate", *SMALL, "--limit", "2", "--out", str(store)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    line = one_line_error(runner.invoke(app, ["train", "--data", str(store), "--out", str(out), *TRAIN]))
    assert "--limit" in line  # says what to change
    assert not out.exists()


def test_train_out_on_a_read_only_file_system_is_one_line(store: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.learn.train as train_module

    import os
    import types

    # what a read-only mount answers, for train's check alone (typer checks --data with os.access too)
    monkeypatch.setattr(train_module, "os", types.SimpleNamespace(access=lambda path, mode: False,
                                                                   W_OK=os.W_OK, X_OK=os.X_OK))
    line = one_line_error(runner.invoke(app, ["train", "--data", str(store), "--out", str(tmp_path / "ro"), *TRAIN]))
    assert "read-only" in line and "choose another --out" in line


def test_train_write_failure_later_is_one_line(store: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.learn.train as train_module

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "late" / "coarse.pt"))

    monkeypatch.setattr(train_module.Path, "mkdir", read_only)
    line = one_line_error(runner.invoke(app, ["train", "--data", str(store), "--out", str(tmp_path / "late"), *TRAIN]))
    assert "Read-only file system" in line


def test_ctrl_c_before_the_first_checkpoint_does_not_advise_resume(store: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.learn.data as data

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "load_split", interrupt)
    result = runner.invoke(app, ["train", "--data", str(store), "--out", str(tmp_path / "run"), *TRAIN])
    assert result.exit_code == 130
    assert "before the first checkpoint" in result.output and "--resume" not in result.output.replace(
        "without --resume", "")


# -- preview ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p4", "sheet.xyz"])
def test_preview_out_without_an_image_extension_is_one_line(store: Path, tmp_path: Path, name: str) -> None:
    line = one_line_error(runner.invoke(app, ["preview", str(store), "--out", str(tmp_path / name)]))
    assert ".png" in line


# -- export -------------------------------------------------------------------------------------


def test_export_folders_counts_the_instances_it_writes(store: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "folders", str(store), "--out", str(tmp_path / "f"), "-q"])
    assert result.exit_code == 0, result.output
    assert "wrote 48 samples, 48 instances" in result.output  # one visible car per sample (was 0)


def test_export_folders_counts_instance_ids(tmp_path: Path) -> None:
    from engine.compose.generate import generate
    from engine.store.export import ExportConfig, export_store
    from tests.small_stores import several_objects

    objects = tmp_path / "o.zarr"
    generate(several_objects(limit=16, shard_size=16), objects)
    report = export_store(ExportConfig(store=str(objects), out=str(tmp_path / "f"), kind="folders"))
    coco = export_store(ExportConfig(store=str(objects), out=str(tmp_path / "c"), kind="coco"))
    assert report.instances == coco.instances > 16  # several per sample, as COCO counts them


def test_coco_file_name_is_relative_to_the_images_folder(store: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "coco"
    assert runner.invoke(app, ["export", "coco", str(store), "--out", str(out), "-q"]).exit_code == 0
    doc = json.loads((out / "annotations.json").read_text())
    for entry in doc["images"]:
        assert "/" not in entry["file_name"] and (out / "images" / entry["file_name"]).is_file()


def test_ctrl_c_in_export_says_so_and_leaves_no_partial_json(store: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.store.export as export

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "encode_rle", interrupt)
    out = tmp_path / "coco"
    result = runner.invoke(app, ["export", "coco", str(store), "--out", str(out), "-q"])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "--overwrite" in result.output
    assert not list(out.glob("*.partial")), sorted(p.name for p in out.iterdir())


# -- generate options ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--width", "0"], ["--width", "-5"], ["--size", "0"]])
def test_non_positive_sizes_are_refused(tmp_path: Path, option: list[str]) -> None:
    out = tmp_path / "s.zarr"
    line = one_line_error(runner.invoke(app, ["generate", *SMALL, *option, "--out", str(out)]))
    assert "output size" in line
    assert not out.exists()


def test_nested_foreground_folders_are_one_category(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from engine.assets.heights import resolve_heights
    from engine.assets.images import category_of, load_foregrounds

    (tmp_path / "fg" / "a" / "b").mkdir(parents=True)
    (tmp_path / "fg" / "c" / "b").mkdir(parents=True)
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[2:8, 2:8] = 255
    Image.fromarray(rgba).save(tmp_path / "fg" / "a" / "b" / "cat.png")
    Image.fromarray(rgba).save(tmp_path / "fg" / "c" / "b" / "dog.png")
    _, files, _ = load_foregrounds(tmp_path / "fg", None, 32, 32, 10**6)
    assert [category_of(f.name) for f in files] == ["a/b", "c/b"]  # the path below --fg, not the last folder
    heights = resolve_heights([f.name for f in files], 1.5, (("a/b", 0.3),), (), "heights.csv")
    assert heights.tolist() == [0.3, 1.5]  # --object-heights names the same categories


# -- bench --------------------------------------------------------------------------------------


def test_bench_table_fits_the_width() -> None:
    from benchmarks.suite.report import render_table
    from tests.benchmarks.suite.fixture_records import BASE, figure

    record = {**BASE, "baselines": {"naive_single": figure("naive", 100.0), "naive_pool": figure("naive-pool", 180.0)},
              "figures": [figure("composite", 1234.5), figure("loader-torch", 99.0)]}
    for width in (80, 100):
        text = render_table(record, "fgbg bench (quick sizes): Test CPU, 2 cores; no GPU", width)
        assert max(len(line) for line in text.splitlines()) <= width
        assert "composite" in text and "loader-torch" in text


def test_quick_bench_records_stay_out_of_the_history(tmp_path: Path) -> None:
    import subprocess

    from benchmarks.suite.record import DEFAULT_FOLDER, QUICK_FOLDER, record_folder

    assert record_folder(DEFAULT_FOLDER, quick=True) == QUICK_FOLDER
    assert record_folder(DEFAULT_FOLDER, quick=False) == DEFAULT_FOLDER  # full runs: the history
    assert record_folder(tmp_path, quick=True) == tmp_path  # an explicit --out wins
    root = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(QUICK_FOLDER / "bench-x.json")], cwd=root)
    assert ignored.returncode == 0  # git ignores it: no untracked file in the checkout

"""Training: overfitting a batch, exact resume, the fine stage, the CLI, bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli import app
from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.errors import ConfigError, InputError, StoreError
from engine.learn.checkpoint import load_checkpoint
from engine.learn.train import TrainConfig, train

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 backgrounds x 2 cars x 2 flips x 4 positions = 48 samples at 64x64."""
    out = tmp_path_factory.mktemp("train") / "s.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=64, width=64, positions=4,
                            shard_size=16), out)
    return out


def config(store: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(data=str(store), out=str(out), height=64, width=64, batch=8, steps=6, val_fraction=0.34,
                eval_every=3, checkpoint_every=3, eval_samples=8, device="cpu")
    return TrainConfig(**{**base, **overrides})


def losses(out: Path, stage: str = "coarse") -> list[float]:
    with open(out / f"{stage}_log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_overfits_one_batch(store: Path, tmp_path: Path) -> None:
    # 60 steps: the last 10 losses average ~3% of the first 5 (0.1 is the bar); one checkpoint, at the end
    report = train(config(store, tmp_path / "o", steps=60, batch=8, max_train_samples=8, optimizer="adamw",
                          adamw_lr=1e-3, eval_every=1000, checkpoint_every=1000))
    curve = losses(tmp_path / "o")
    assert np.mean(curve[-10:]) < 0.1 * np.mean(curve[:5])
    assert report.steps_run == 60 and set(report.metrics) == {"model", "constant"}


def test_resume_equals_uninterrupted(store: Path, tmp_path: Path) -> None:
    train(config(store, tmp_path / "a", steps=6))
    train(config(store, tmp_path / "b", steps=3))
    train(config(store, tmp_path / "b", steps=6), resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "coarse.pt"), load_checkpoint(tmp_path / "b" / "coarse.pt")
    assert a["step"] == b["step"] == 6
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_resume_refuses_other_settings(store: Path, tmp_path: Path) -> None:
    train(config(store, tmp_path / "r", steps=3))
    with pytest.raises(ConfigError, match="different settings \\(batch\\)"):
        train(config(store, tmp_path / "r", steps=6, batch=4), resume=True)
    with pytest.raises(ConfigError, match="already at step 3 of 3"):
        train(config(store, tmp_path / "r", steps=3), resume=True)


def test_fine_stage_keeps_coarse_fixed(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "f"
    train(config(store, out, steps=3))
    report = train(config(store, out, stage="fine", init=str(out / "coarse.pt"), steps=3), plot=True)
    coarse, fine = load_checkpoint(out / "coarse.pt"), load_checkpoint(out / "fine.pt")
    for key, tensor in coarse["model"].items():
        if key.startswith("coarse."):
            assert torch.equal(tensor, fine["model"][key]), key
    assert any(not torch.equal(coarse["model"][k], fine["model"][k]) for k in fine["model"] if k.startswith("fine."))
    assert (out / "fine_curves.png").exists()
    sheet = np.asarray(Image.open(out / "fine_predictions.png"))  # labels | 6 rows of image, truth, prediction | colour bar
    assert sheet.shape == (14 + 6 * 64 + 28, 3 * 64, 3) and (sheet[:14] > 150).any() and (sheet[-12:] > 150).any()
    assert json.loads((out / "fine_metrics.json").read_text())["model"]["rmse"] == report.metrics["model"]["rmse"]


def test_fine_needs_a_matching_coarse_checkpoint(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    train(config(store, out, steps=2))
    with pytest.raises(ConfigError, match="needs --init"):
        train(config(store, out, stage="fine"))
    with pytest.raises(ConfigError, match="made for input 64x64, this run is 72x72"):
        train(config(store, out, stage="fine", init=str(out / "coarse.pt"), height=72, width=72))


def test_store_problems_are_clear_errors(store: Path, tmp_path: Path) -> None:
    broken = tmp_path / "nodepth.zarr"
    shutil.copytree(store, broken)
    shutil.rmtree(broken / "depth")
    with pytest.raises(StoreError, match="no 'depth' array"):
        train(config(broken, tmp_path / "x"))
    mismatched = tmp_path / "mismatched.zarr"
    shutil.copytree(store, mismatched)
    meta = json.loads((mismatched / "depth" / "zarr.json").read_text())
    meta["shape"][2] += 1
    (mismatched / "depth" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="depth \\(48, 64, 65\\) does not match images \\(48, 64, 64, 3\\)"):
        train(config(mismatched, tmp_path / "w"))
    empty = tmp_path / "empty.zarr"
    shutil.copytree(store, empty)
    doc = json.loads((empty / "zarr.json").read_text())
    doc["attributes"]["fgbg"]["progress"]["shards_done"] = []
    (empty / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="the train split is empty"):
        train(config(empty, tmp_path / "y"))
    with pytest.raises(InputError, match="checkpoint does not exist"):
        train(config(store, tmp_path / "z", stage="fine", init=str(tmp_path / "nope.pt")))


def test_cli_train_evaluate_predict(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["train", "--data", str(store), "--out", str(out), "--input-size", "64", "--steps", "3", "--batch", "8",
            "--val-fraction", "0.34", "--device", "cpu", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "coarse: 3 steps" in result.output and "constant" in result.output
    result = runner.invoke(app, ["evaluate", "--data", str(store), "--checkpoint", str(out / "coarse.pt"), "--json"])
    data = json.loads(result.output)
    assert data["split"] == "val" and data["samples"] == 16 and set(data["metrics"]) == {"model", "constant"}
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(image)
    result = runner.invoke(app, ["predict", "--checkpoint", str(out / "coarse.pt"), str(image), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    depth = np.load(tmp_path / "d" / "street_depth.npy")
    assert depth.shape == (14, 14) and (depth > 0).all()
    assert Image.open(tmp_path / "d" / "street_depth.png").size == (120, 90)
    assert "street.png (120x90, crop 90x90 at (15, 0)): street_depth.npy 14x14 metres" in result.output
    result = runner.invoke(app, ["evaluate", "--data", str(store), "--checkpoint", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1


def test_evaluate_warns_on_a_store_it_was_not_trained_on(store: Path, tmp_path: Path) -> None:
    from engine.learn.evaluate import other_store_warning

    copy, other = tmp_path / "copy.zarr", tmp_path / "other.zarr"
    shutil.copytree(store, copy)
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=64, width=64, positions=4,
                            shard_size=16, seed=1), other)
    assert other_store_warning(store, store) is None
    assert other_store_warning(store, copy) is None  # same settings and inputs: the same data
    assert "trained on" in other_store_warning(store, other)
    assert "trained on" in other_store_warning(tmp_path / "gone.zarr", copy)
    train(config(store, tmp_path / "m", steps=1, eval_every=1000))
    checkpoint = str(tmp_path / "m" / "coarse.pt")
    result = runner.invoke(app, ["evaluate", "--data", str(other), "--checkpoint", checkpoint, "--device", "cpu"])
    assert result.exit_code == 0 and "warning: the checkpoint was trained on" in result.output, result.output
    result = runner.invoke(app, ["evaluate", "--data", str(copy), "--checkpoint", checkpoint, "--device", "cpu"])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(store: Path, tmp_path: Path, precision: str) -> None:
    """The autocast and grad-scaler paths, on the CPU (a GPU picks bf16 or fp16 by itself):
    the loss stays finite and close to fp32's, and the scaler's state survives a resume."""
    fast = dict(precision=precision, eval_every=1000, checkpoint_every=1, eval_samples=1)  # fp16 convs are slow on CPUs
    train(config(store, tmp_path / "a", steps=2, **fast))
    train(config(store, tmp_path / "b", steps=1, **fast))
    train(config(store, tmp_path / "b", steps=2, **fast), resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "coarse.pt"), load_checkpoint(tmp_path / "b" / "coarse.pt")
    assert losses(tmp_path / "a") == losses(tmp_path / "b") and np.isfinite(losses(tmp_path / "a")).all()
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    scaler = a["scaler"]
    if precision == "fp16":
        assert scaler and scaler["scale"] > 0 and scaler["_growth_tracker"] == b["scaler"]["_growth_tracker"]
    train(config(store, tmp_path / "f", steps=1, **{**fast, "precision": "fp32"}))
    assert losses(tmp_path / "a")[0] == pytest.approx(losses(tmp_path / "f")[0], rel=0.05)  # same init, same batch


@pytest.mark.parametrize("input_size", [64, 80])  # the store's size, and a resize
def test_streamed_images_train_the_same_bits(store: Path, tmp_path: Path, input_size: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """--stream reads each batch's images from the store: the same batches, so
    the same weights and losses as loading the split into memory; each batch is
    read once (prefetched while the previous step runs)."""
    from engine.learn.data import StoreImages
    from engine.learn.evaluate import evaluate_checkpoint

    kw = dict(steps=4, height=input_size, width=input_size, eval_every=2, loader="torch")
    train(config(store, tmp_path / "m", **kw))
    reads: list[bytes] = []
    original = StoreImages._read
    monkeypatch.setattr(StoreImages, "_read", lambda self, rows: reads.append(rows.tobytes()) or original(self, rows))
    train(config(store, tmp_path / "s", stream=True, **kw))
    assert len(reads) >= 4 and len(reads) == len(set(reads))  # no batch read twice
    a, b = load_checkpoint(tmp_path / "m" / "coarse.pt"), load_checkpoint(tmp_path / "s" / "coarse.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert losses(tmp_path / "m") == losses(tmp_path / "s") and a["metrics"] == b["metrics"]
    assert evaluate_checkpoint(tmp_path / "m" / "coarse.pt", store, device="cpu", stream=True,
                               loader="torch")["metrics"] == a["metrics"]


def test_stream_needs_lossless_images(tmp_path: Path) -> None:
    out = tmp_path / "j.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=32, positions=2,
                            shard_size=8, image_codec="jpeg"), out)
    result = runner.invoke(app, ["train", "--data", str(out), "--out", str(tmp_path / "r"), "--steps", "1",
                                 "--input-size", "64", "--loader", "torch", "--stream", "-q"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {out}: streaming reads lossless images; this store has JPEGs (train without --stream)"]


def test_incomplete_store_needs_allow_incomplete(store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    partial = tmp_path / "partial.zarr"
    shutil.copytree(store, partial)
    doc = json.loads((partial / "zarr.json").read_text())
    doc["attributes"]["fgbg"]["progress"] = {"shards_done": [0, 2], "complete": False}
    (partial / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=r"incomplete, 32 of the plan's 48 samples \(2 of 3 shards, 67%\).*--allow-incomplete"):
        train(config(partial, tmp_path / "a"))
    args = ["train", "--data", str(partial), "--out", str(tmp_path / "b"), "--input-size", "64", "--steps", "1",
            "--batch", "4", "--val-fraction", "0.34", "--device", "cpu", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--allow-incomplete" in result.output, result.output
    with caplog.at_level("WARNING"):
        result = runner.invoke(app, [*args, "--allow-incomplete"])
    assert result.exit_code == 0, result.output
    assert "using 32 of the plan's 48 samples (2 of 3 shards, 67%)" in caplog.text


def test_an_earlier_run_needs_resume_or_overwrite(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    train(config(store, out, steps=3))
    before = (out / "coarse.pt").read_bytes()
    with pytest.raises(ConfigError, match="an earlier coarse run is there; continue it with --resume, replace it"):
        train(config(store, out, steps=2))
    assert (out / "coarse.pt").read_bytes() == before
    with pytest.raises(ConfigError, match="exclude each other"):
        train(config(store, out, steps=2), resume=True, overwrite=True)
    report = train(config(store, out, steps=2), overwrite=True)
    assert load_checkpoint(out / "coarse.pt")["step"] == 2 and len(losses(out)) == 2 and report.removed_fine == ()


def test_overwriting_coarse_removes_the_fine_stage_built_on_it(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    train(config(store, out, steps=2))
    train(config(store, out, stage="fine", init=str(out / "coarse.pt"), steps=2))
    with pytest.raises(ConfigError, match="an earlier fine run"):
        train(config(store, out, stage="fine", init=str(out / "coarse.pt"), steps=2))
    report = train(config(store, out, steps=2, seed=1), overwrite=True)
    assert not (out / "fine.pt").exists() and not (out / "fine_log.csv").exists()
    assert {p.name for p in report.removed_fine} == {"fine.pt", "fine_log.csv", "fine_metrics.json"}


def test_fine_checkpoint_records_its_coarse_network(store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from engine.learn.checkpoint import coarse_fingerprint
    from engine.learn.evaluate import evaluate_checkpoint, predict_images

    out = tmp_path / "c"
    train(config(store, out, steps=2))
    train(config(store, out, stage="fine", init=str(out / "coarse.pt"), steps=2))
    fine = load_checkpoint(out / "fine.pt")
    assert fine["coarse_sha256"] == coarse_fingerprint(load_checkpoint(out / "coarse.pt")["model"])
    assert fine["coarse_checkpoint"] == str((out / "coarse.pt").resolve())
    assert evaluate_checkpoint(out / "fine.pt", store, device="cpu")["stage"] == "fine"
    # coarse retrained elsewhere and copied over: the fine network no longer belongs to it
    train(config(store, tmp_path / "other", steps=2, seed=5))
    shutil.copy(tmp_path / "other" / "coarse.pt", out / "coarse.pt")
    image = tmp_path / "i.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    for call in (lambda: evaluate_checkpoint(out / "fine.pt", store, device="cpu"),
                 lambda: predict_images(out / "fine.pt", [image], "cpu")):
        with pytest.raises(ConfigError, match="built on a different coarse network than .*coarse.pt holds now"):
            call()
    with pytest.raises(ConfigError, match="not the coarse network .*fine.pt was started from"):
        train(config(store, out, stage="fine", init=str(out / "coarse.pt"), steps=3), resume=True)
    # moved away from its coarse checkpoint: a warning, not an error
    (out / "coarse.pt").unlink()
    with caplog.at_level("WARNING"):
        assert len(predict_images(out / "fine.pt", [image], "cpu")) == 1
    assert "the coarse checkpoint it was built on" in caplog.text and "cannot check it" in caplog.text


def test_cli_refuses_to_replace_a_run_without_a_flag(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["train", "--data", str(store), "--out", str(out), "--input-size", "64", "--steps", "1", "--batch", "4",
            "--val-fraction", "0.34", "--device", "cpu", "--eval-samples", "1", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--stage", "fine", "--init", str(out / "coarse.pt")]).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--overwrite" in result.output
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "removed fine.pt, fine_log.csv, fine_metrics.json: built on the replaced coarse network" in result.output


def test_cli_predict_upsamples_and_takes_folders(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    train(config(store, out, steps=1, eval_samples=1))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, (h, w) in {"wide.png": (40, 80), "tall.jpg": (80, 40)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
    result = runner.invoke(app, ["predict", "--checkpoint", str(out / "coarse.pt"), str(folder), "--upsample",
                                 "--out", str(tmp_path / "d"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    wide = np.load(tmp_path / "d" / "wide_depth.npy")
    assert wide.shape == (40, 80) and np.isnan(wide[:, :20]).all() and np.isnan(wide[:, 60:]).all()
    assert (wide[:, 20:60] > 0).all()
    assert np.load(tmp_path / "d" / "tall_depth.npy").shape == (80, 40)
    assert Image.open(tmp_path / "d" / "tall_depth.png").size == (40, 80)
    assert "wrote 2 depth maps" in result.output and "at the image's size" in result.output
    (folder / "wide.jpg").write_bytes((folder / "tall.jpg").read_bytes())
    result = runner.invoke(app, ["predict", "--checkpoint", str(out / "coarse.pt"), str(folder), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "outputs would overwrite each other" in result.output


@pytest.mark.parametrize("loader, cache", [("dali", "none"), ("torch", "device")])
def test_loaders_resume_exactly_and_learn(store: Path, tmp_path: Path, loader: str, cache: str) -> None:
    """The DALI loader and the device-resident split feed the loop: a resumed run
    equals an uninterrupted one bit for bit (batches are a pure function of the
    step), and the loss goes down as with the torch loader."""
    kw = dict(loader=loader, cache=cache, eval_every=1000, checkpoint_every=3)
    train(config(store, tmp_path / "a", steps=6, **kw))
    train(config(store, tmp_path / "b", steps=3, **kw))
    train(config(store, tmp_path / "b", steps=6, **kw), resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "coarse.pt"), load_checkpoint(tmp_path / "b" / "coarse.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert all(np.isfinite(losses(tmp_path / "a")))


def test_loader_options_are_checked(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--loader must be dali or torch"):
        config(store, tmp_path, loader="tf")
    with pytest.raises(ConfigError, match="--stream is for --loader torch"):
        config(store, tmp_path, stream=True)
    with pytest.raises(ConfigError, match="trained with different settings \\(loader\\)"):
        train(config(store, tmp_path / "c", steps=2, loader="torch"))
        train(config(store, tmp_path / "c", steps=4), resume=True)


def test_inputs_are_normalised_by_the_stores_statistics(store: Path, tmp_path: Path) -> None:
    """A coarse run records the store's mean/std (0..1) in its checkpoint, the
    fine stage takes its coarse network's, and evaluation reproduces the
    training run's final metrics only with that normalisation."""
    from engine.learn.data import IMAGENET_MEAN
    from engine.learn.evaluate import evaluate_checkpoint
    from engine.store.stats import store_stats

    stats = store_stats(store, save=False)
    train(config(store, tmp_path / "s", steps=2))
    ckpt = load_checkpoint(tmp_path / "s" / "coarse.pt")
    np.testing.assert_allclose(ckpt["normalization"]["mean"], np.asarray(stats["mean"]) / 255, rtol=1e-6)
    np.testing.assert_allclose(ckpt["normalization"]["std"], np.asarray(stats["std"]) / 255, rtol=1e-6)
    assert evaluate_checkpoint(tmp_path / "s" / "coarse.pt", store, device="cpu")["metrics"] == ckpt["metrics"]
    train(config(store, tmp_path / "s", stage="fine", steps=2, init=str(tmp_path / "s" / "coarse.pt"),
                 normalize="imagenet"))
    assert load_checkpoint(tmp_path / "s" / "fine.pt")["normalization"] == ckpt["normalization"]
    train(config(store, tmp_path / "i", steps=2, normalize="imagenet"))
    np.testing.assert_allclose(load_checkpoint(tmp_path / "i" / "coarse.pt")["normalization"]["mean"], IMAGENET_MEAN)


def test_dali_missing_is_one_line(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # import fails as on a machine without DALI
    with pytest.raises(ConfigError, match="--loader dali needs NVIDIA DALI"):
        train(config(store, tmp_path / "x", steps=1))


def test_cuda_graphs_on_the_cpu_train_the_eager_bits(store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """--cuda-graphs where no graph can be captured (the CPU): each step runs eagerly
    through TrainStep, with the reason logged, and gives the plain loop's weights bit for bit."""
    kw = dict(loader="torch", eval_every=1000, steps=4)
    train(config(store, tmp_path / "eager", **kw))
    with caplog.at_level("WARNING", logger="engine.learn.train"):
        train(config(store, tmp_path / "graphs", cuda_graphs=True, **kw))
    assert "CUDA graphs need a CUDA device" in caplog.text
    a, b = load_checkpoint(tmp_path / "eager" / "coarse.pt"), load_checkpoint(tmp_path / "graphs" / "coarse.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert losses(tmp_path / "eager") == losses(tmp_path / "graphs")
    with pytest.raises(ConfigError, match="--cuda-graphs and --compile exclude each other"):
        config(store, tmp_path, cuda_graphs=True, compile=True)


@pytest.mark.parametrize("optimizer, rule, batch, factor", [
    ("sgd", "linear", 16, 0.5), ("sgd", "sqrt", 8, 0.5), ("sgd", "none", 8, 1.0), ("adamw", "linear", 8, 0.25),
])
def test_learning_rates_scale_with_the_batch(store: Path, tmp_path: Path, optimizer: str, rule: str, batch: int,
                                              factor: float) -> None:
    """Each parameter group's rate is the paper's (for batch 32) x --lr-scale x the rule's
    factor (hand-computed: linear 16/32, sqrt sqrt(8/32), adamw linear 8/32), in the optimiser and the checkpoint."""
    out = tmp_path / f"{optimizer}{rule}"
    train(config(store, out, loader="torch", steps=1, batch=batch, lr_scaling=rule, lr_scale=2.0, optimizer=optimizer,
                 eval_every=1000, adamw_lr=1e-3))
    ckpt = load_checkpoint(out / "coarse.pt")
    want = ({"coarse convs": 0.001 * 2.0 * factor, "coarse fulls": 0.1 * 2.0 * factor} if optimizer == "sgd"
            else {"coarse convs": 1e-3 * factor, "coarse fulls": 1e-3 * factor})
    assert ckpt["learning_rates"] == pytest.approx(want, rel=1e-12)
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == pytest.approx(list(want.values()), rel=1e-12)
    assert ckpt["train_config"]["lr_scaling"] == rule


def test_lr_scaling_is_checked_and_resumes(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--lr-scaling must be linear, sqrt or none"):
        config(store, tmp_path, lr_scaling="cubic")
    train(config(store, tmp_path / "r", loader="torch", steps=1, lr_scaling="sqrt", eval_every=1000))
    with pytest.raises(ConfigError, match="trained with different settings \\(lr_scaling\\)"):
        train(config(store, tmp_path / "r", loader="torch", steps=2, eval_every=1000), resume=True)
    train(config(store, tmp_path / "r", loader="torch", steps=2, lr_scaling="sqrt", eval_every=1000, cuda_graphs=True),
          resume=True)  # how, not what: --cuda-graphs may change on resume


def test_validation_reads_as_training_does(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DALI-fed run validates through DALI (the periodic subset and the whole split, one
    pipeline each, reused), and its final metrics are evaluate --loader dali's; with
    --cache device validation reads the split in memory, and DALI is not needed."""
    import engine.learn.evaluate as E
    from engine.learn.evaluate import evaluate_checkpoint

    built: list[int] = []
    real = E.DaliEvalBatches

    def counting(*args, **kwargs):
        built.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(E, "DaliEvalBatches", counting)
    train(config(store, tmp_path / "d", steps=3, eval_every=1, eval_samples=4))
    assert built == [4, 16]  # the subset (built at step 1, reused at step 2), then the whole held-out split
    ckpt = load_checkpoint(tmp_path / "d" / "coarse.pt")
    assert evaluate_checkpoint(tmp_path / "d" / "coarse.pt", store, device="cpu", loader="dali")["metrics"] == ckpt["metrics"]
    built.clear()
    train(config(store, tmp_path / "c", steps=2, eval_every=1, cache="device"))
    assert built == []


@pytest.mark.gpu
def test_cuda_graphs_on_a_gpu_capture_and_train_like_eager(store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU (bf16, no grad scaler): the step is captured after the warm-up and the
    run's weights and losses follow the eager run's. Dropout is off: a graph's replays
    draw their masks at other offsets of the generator than eager steps do."""
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)
    kw = dict(loader="torch", eval_every=1000, steps=8, device="cuda", precision="bf16")
    train(config(store, tmp_path / "eager", **kw))
    with caplog.at_level("INFO", logger="engine.learn.step_runner"):
        train(config(store, tmp_path / "graphs", cuda_graphs=True, **kw))
    assert "captured into a CUDA graph" in caplog.text
    a, b = load_checkpoint(tmp_path / "eager" / "coarse.pt"), load_checkpoint(tmp_path / "graphs" / "coarse.pt")
    for key, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][key], tensor, rtol=1e-3, atol=1e-5, msg=key)
    np.testing.assert_allclose(losses(tmp_path / "graphs"), losses(tmp_path / "eager"), rtol=1e-3)


def test_trains_on_a_store_of_several_objects_per_image(tmp_path: Path) -> None:
    """Loaders read images, masks and depth only: the extra arrays change nothing for them."""
    out = tmp_path / "objects.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=64, width=64, positions=2,
                            shard_size=8, objects_min=2, objects_max=3), out)
    report = train(config(out, tmp_path / "t", steps=3, batch=4, eval_every=3, checkpoint_every=3, eval_samples=4))
    assert report.steps_run == 3 and np.isfinite(losses(tmp_path / "t")).all()

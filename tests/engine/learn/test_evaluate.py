"""Evaluation through the DALI loader: the torch path's metrics, in order, for
lossless and JPEG stores; bad stores are one clear error, never a hang."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli import app
from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.errors import ConfigError, StoreError
from engine.learn.data import load_split, split_indices
from engine.learn.evaluate import DaliEvalBatches, evaluate_arrays, evaluate_batches, evaluate_checkpoint
from engine.learn.train import TrainConfig, train

pytest.importorskip("nvidia.dali")

runner = CliRunner()
NORM = (np.array([0.4, 0.45, 0.5], np.float32), np.array([0.2, 0.25, 0.3], np.float32))
#: relative difference of a metric, DALI vs torch, at the store's size: only float32 rounding
#: of the normalisation differs (measured 1.1e-8 lossless, 1.4e-8 JPEG: on the CPU DALI and
#: Pillow both decode with libjpeg-turbo, to the same pixels; nvJPEG on a GPU is not this test)
SAME_SIZE = 1e-6
#: resized: DALI's antialiased filter differs from torch's on the outermost pixels (up to ~10
#: levels there); measured 1.0e-4 (si_log) lossless, 1.1e-4 JPEG
RESIZED = 1e-3


class Brightness(torch.nn.Module):
    """A 'network' whose log depth is the image's local brightness: metrics that move with every input pixel."""

    def __init__(self, output_size: tuple[int, int]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor, stage: str) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, h, w)
        return 1.5 + 0.5 * F.adaptive_avg_pool2d(x.float().mean(1, keepdim=True), self.output_size)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """48 samples at 64x64 (shards of 16, chunks of 4), lossless and JPEG."""
    root = tmp_path_factory.mktemp("eval")
    out = {}
    for codec in ("zstd", "jpeg"):
        out[codec] = root / f"{codec}.zarr"
        generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=64, width=64, positions=4,
                                shard_size=16, chunk_size=4, image_codec=codec), out[codec])
    return out


def relative(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in b}


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
@pytest.mark.parametrize("input_size", [(64, 64), (48, 40)])
def test_dali_metrics_equal_the_torch_paths(stores: dict[str, Path], codec: str, input_size: tuple[int, int]) -> None:
    """Same samples in the same order and batches; the metrics differ only by how
    the images were decoded and resized."""
    index, _ = split_indices(stores[codec], "val", 0.34, 0)
    arrays = load_split(stores[codec], index, input_size, (12, 10))
    model = Brightness((12, 10))
    want = evaluate_arrays(model, arrays, "coarse", "cpu", None, 1.0, batch=7, norm=NORM)
    batches = DaliEvalBatches(stores[codec], arrays, input_size, "cpu", 7, NORM)
    try:
        got = evaluate_batches(model, batches, "coarse", "cpu", None, 1.0)
        again = evaluate_batches(model, batches, "coarse", "cpu", None, 1.0)  # the pipeline is reused
    finally:
        batches.close()
    assert got == again
    assert got["constant"] == want["constant"]  # depth and masks: the same arrays, in the same order
    tol = SAME_SIZE if input_size == (64, 64) else RESIZED
    diff = relative(got["model"], want["model"])
    assert max(diff.values()) < tol, diff
    assert 0 < want["model"]["delta3"] < 1  # the brightness 'network' is neither perfect nor hopeless


@pytest.fixture(scope="module")
def checkpoint(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval_run")
    train(TrainConfig(data=str(stores["zstd"]), out=str(out), height=64, width=64, batch=8, steps=2,
                      val_fraction=0.34, eval_every=1000, device="cpu", loader="torch"))
    return out / "coarse.pt"


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
def test_evaluate_checkpoint_with_either_loader(stores: dict[str, Path], checkpoint: Path, codec: str) -> None:
    dali = evaluate_checkpoint(checkpoint, stores[codec], device="cpu", loader="dali")
    torch_ = evaluate_checkpoint(checkpoint, stores[codec], device="cpu", loader="torch")
    assert dali["loader"] == "dali" and dali["samples"] == torch_["samples"]
    diff = relative(dali["metrics"]["model"], torch_["metrics"]["model"])
    assert max(diff.values()) < SAME_SIZE, diff
    result = runner.invoke(app, ["evaluate", "--data", str(stores[codec]), "--checkpoint", str(checkpoint),
                                 "--device", "cpu", "--loader", "dali", "--batch", "5"])
    assert result.exit_code == 0, result.output


def test_bad_stores_are_one_clear_error(stores: dict[str, Path], checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--stream is for --loader torch"):
        evaluate_checkpoint(checkpoint, stores["zstd"], device="cpu", stream=True)
    result = runner.invoke(app, ["evaluate", "--data", str(stores["zstd"]), "--checkpoint", str(checkpoint),
                                 "--device", "cpu", "--stream"])
    assert result.exit_code == 2 and "--stream is for --loader torch" in result.output
    result = runner.invoke(app, ["evaluate", "--data", str(stores["zstd"]), "--checkpoint", str(checkpoint),
                                 "--device", "cpu", "--stream", "--loader", "torch"])
    assert result.exit_code == 0, result.output
    no_masks = tmp_path / "no_masks.zarr"
    shutil.copytree(stores["zstd"], no_masks)
    shutil.rmtree(no_masks / "masks")
    with pytest.raises(StoreError, match="masks"):
        evaluate_checkpoint(checkpoint, no_masks, device="cpu")
    for codec, array in (("zstd", "images"), ("jpeg", "images_jpeg")):
        damaged = tmp_path / f"damaged_{codec}.zarr"
        shutil.copytree(stores[codec], damaged)
        index, _ = split_indices(damaged, "val", 0.34, 0)
        shard = int(index[0]) // 16
        shard_file = damaged / array / "c" / (f"{shard}/0/0/0" if codec == "zstd" else str(shard))
        raw = bytearray(shard_file.read_bytes())
        raw[:64] = bytes(64) if codec == "zstd" else b"\xff" * 64  # first chunk: zstd magic / vlen count gone
        shard_file.write_bytes(bytes(raw))
        first = shard * 16
        with pytest.raises(StoreError, match=rf"{array} shard {shard} \(samples {first}-{first + 15}\) is damaged") as e:
            evaluate_checkpoint(checkpoint, damaged, device="cpu", loader="dali")
        assert "\n" not in str(e.value)
    result = runner.invoke(app, ["evaluate", "--data", str(damaged), "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert result.exit_code == 2 and "images_jpeg" in result.output


@pytest.mark.gpu
@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
def test_dali_on_the_gpu_matches_the_torch_path(stores: dict[str, Path], codec: str) -> None:
    """On a GPU: JPEG decoded by nvJPEG (``mixed``) and resized by DALI's CUDA kernels,
    against Pillow + torch on the same GPU; the relative differences are printed (``-s``)."""
    index, _ = split_indices(stores[codec], "val", 0.34, 0)
    for size in ((64, 64), (48, 40)):
        arrays = load_split(stores[codec], index, size, (12, 10))
        model = Brightness((12, 10)).cuda()
        want = evaluate_arrays(model, arrays, "coarse", "cuda", None, 1.0, batch=7, norm=NORM)
        batches = DaliEvalBatches(stores[codec], arrays, size, "cuda", 7, NORM)
        try:
            got = evaluate_batches(model, batches, "coarse", "cuda", None, 1.0)
        finally:
            batches.close()
        diff = relative(got["model"], want["model"])
        print(f"{codec} {size}: max relative metric difference DALI (GPU) vs torch {max(diff.values()):.2e}")
        assert max(diff.values()) < (SAME_SIZE if codec == "zstd" and size == (64, 64) else 10 * RESIZED), diff

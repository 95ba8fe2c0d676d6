"""Batches composited when drawn equal the device-resident split's, and train on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.compose.generate import generate
from engine.compose.online import OnlineSamples
from engine.config import GenerateConfig
from engine.errors import ConfigError
from engine.learn.checkpoint import load_checkpoint
from engine.learn.data import load_split, split_indices
from engine.learn.device_cache import DeviceSplit
from engine.learn.online_feed import OnlineBatches
from engine.learn.train import TrainConfig, train

SETTINGS = dict(builtin_backgrounds=3, builtin_foregrounds=2, height=48, width=64, positions=4, shard_size=16)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("online-feed") / "s.zarr"
    generate(GenerateConfig(**SETTINGS), out)
    return out


@pytest.mark.parametrize("input_size, output_size", [((48, 64), (12, 16)), ((64, 64), (16, 16))])
def test_online_batches_equal_the_device_resident_ones(store: Path, input_size, output_size) -> None:
    index, _ = split_indices(store, "train", 0.34, 0)
    mean, std = (0.4, 0.45, 0.5), (0.2, 0.25, 0.3)
    resident = DeviceSplit.from_arrays(load_split(store, index, input_size, output_size), "cpu", 5, 3,
                                       mean=mean, std=std)
    online = OnlineBatches(OnlineSamples(GenerateConfig(**SETTINGS)), index, input_size, output_size, 5, 3, "cpu",
                           mean=mean, std=std)
    assert online.batches_per_epoch == resident.batches_per_epoch
    for epoch, i in [(0, 0), (0, online.batches_per_epoch - 1), (2, 1)]:
        for a, b in zip(online.batch(epoch, i), resident.batch(epoch, i)):
            assert torch.equal(a, b), (epoch, i)


def test_training_on_online_batches_resumes_exactly(store: Path, tmp_path: Path) -> None:
    samples = OnlineSamples(GenerateConfig(**SETTINGS))
    base = dict(data=str(store), height=64, width=64, batch=4, val_fraction=0.34, eval_every=1000,
                checkpoint_every=2, eval_samples=4, device="cpu", source="online")
    train(TrainConfig(out=str(tmp_path / "a"), steps=4, **base), samples=samples)
    train(TrainConfig(out=str(tmp_path / "b"), steps=2, **base), samples=samples)
    train(TrainConfig(out=str(tmp_path / "b"), steps=4, **base), resume=True, samples=samples)
    a, b = load_checkpoint(tmp_path / "a" / "coarse.pt"), load_checkpoint(tmp_path / "b" / "coarse.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert np.isfinite(a["metrics"]["model"]["rmse"])
    with pytest.raises(ConfigError, match="--source online needs a sample source"):
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, **base))
    with pytest.raises(ConfigError, match="without --cache device"):
        TrainConfig(out=str(tmp_path / "d"), cache="device", **base)


def test_cli_trains_online_from_the_stores_settings(store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(store), "--out", str(tmp_path / "r"), "--source", "online",
                                      "--input-size", "64", "--steps", "2", "--batch", "4", "--val-fraction", "0.34",
                                      "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "r" / "coarse.pt")["train_config"]["source"] == "online"


def test_several_objects_per_image_train_online(tmp_path: Path) -> None:
    """A store of --objects-per-image 1 3: online batches equal its resident ones, and the CLI trains on them."""
    from typer.testing import CliRunner

    from cli import app

    settings = {**SETTINGS, "positions": 2, "objects_min": 1, "objects_max": 3, "max_overlap": 0.8}
    store = tmp_path / "objects.zarr"
    generate(GenerateConfig(**settings), store)
    index, _ = split_indices(store, "train", 0.34, 0)
    mean, std = (0.4, 0.45, 0.5), (0.2, 0.25, 0.3)
    resident = DeviceSplit.from_arrays(load_split(store, index, (48, 64), (12, 16)), "cpu", 4, 3, mean=mean, std=std)
    online = OnlineBatches(OnlineSamples(GenerateConfig(**settings)), index, (48, 64), (12, 16), 4, 3, "cpu",
                           mean=mean, std=std)
    for epoch, i in [(0, 0), (1, online.batches_per_epoch - 1)]:
        for a, b in zip(online.batch(epoch, i), resident.batch(epoch, i)):
            assert torch.equal(a, b), (epoch, i)
    result = CliRunner().invoke(app, ["train", "--data", str(store), "--out", str(tmp_path / "r"), "--source", "online",
                                      "--input-size", "64", "--steps", "2", "--batch", "4", "--val-fraction", "0.34",
                                      "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "r" / "coarse.pt")["train_config"]["source"] == "online"

"""Evaluation and prediction with a trained coarse/fine model.

Shared by the training loop (periodic validation) and the ``evaluate`` and
``predict`` commands. Metrics come from :mod:`engine.learn.metrics`; the constant
predictor (the training set's mean log depth everywhere) is always reported
next to the model, so a table says whether the network learned anything.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD, SplitArrays, load_split, make_batch, split_indices
from engine.learn.metrics import DepthMetrics, valid_depth


def pick_device(requested: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA GPU")
    if requested not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {requested!r}")
    return requested


def autocast_dtype(precision: str, device: str):
    """The autocast dtype for ``precision`` (``auto``: bf16 on GPUs with it, else fp16;
    fp32 on the CPU), or ``None`` for plain fp32."""
    import torch

    if precision == "auto":
        if device != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp32":
        return None
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def autocast(device: str, dtype) -> Any:
    import torch

    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device, dtype=dtype)


def loss_mask(depth, masks, which: str):
    """Valid pixels for the loss/metrics: all, or only foreground/background ones."""
    valid = valid_depth(depth)
    if which == "foreground":
        return valid & masks
    if which == "background":
        return valid & ~masks
    if which != "all":
        raise ConfigError(f"--loss-mask must be all, foreground or background, got {which!r}")
    return valid


def evaluate_arrays(model, data: SplitArrays, stage: str, device: str, dtype, constant_log_depth: float | None,
                    which: str = "all", batch: int = 64) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` (and of the constant predictor) on ``data``.

    Returns:
        ``{"model": metrics, "constant": metrics}`` (``constant`` only when
        ``constant_log_depth`` is given).
    """
    import torch

    was_training = model.training
    model.eval()
    ours, const = DepthMetrics(), DepthMetrics()
    rows = np.arange(len(data))
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            x, depth, masks = make_batch(data, rows[start : start + batch], None, device)
            if start + batch < len(rows):
                data.prefetch(rows[start + batch : start + 2 * batch])  # streamed images: read while this runs
            with autocast(device, dtype):
                log_pred = model(x, stage)
            pred = torch.exp(log_pred.float())  # metrics are computed where the batch is
            valid = loss_mask(depth, masks, which)
            ours.update(pred, depth, valid)
            if constant_log_depth is not None:
                const.update(torch.full_like(pred, math.exp(constant_log_depth)), depth, valid)
    model.train(was_training)
    out = {"model": ours.compute()}
    if constant_log_depth is not None:
        out["constant"] = const.compute()
    return out


def load_model(checkpoint: dict[str, Any], device: str):
    """The :class:`~engine.learn.model.EigenDepth` of a loaded checkpoint, in eval mode."""
    import torch

    from engine.learn.model import EigenDepth, ModelConfig

    model = EigenDepth(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).to(memory_format=torch.channels_last).eval()


def evaluate_checkpoint(checkpoint_path: str | Path, data: str | Path, split: str = "val", device: str = "auto",
                        batch: int = 64, stream: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint on a store's split (the split it was trained with);
    ``stream`` reads images batch by batch instead of loading the split.

    Returns:
        ``{"checkpoint", "stage", "split", "samples", "input_size", "output_size",
        "metrics": {"model": …, "constant": …}}``.
    """
    from engine.learn.checkpoint import load_checkpoint
    from engine.learn.model import ModelConfig

    ckpt = load_checkpoint(checkpoint_path)
    device = pick_device(device)
    train_config = ckpt["train_config"]
    mc = ModelConfig(**ckpt["model_config"])
    index, _ = split_indices(data, split, train_config["val_fraction"], train_config["split_seed"])
    arrays = load_split(data, index, (mc.height, mc.width), mc.output_size, stream_images=stream)
    model = load_model(ckpt, device)
    dtype = autocast_dtype(train_config["precision"], device)
    metrics = evaluate_arrays(model, arrays, ckpt["stage"], device, dtype, ckpt["constant_log_depth"], batch=batch)
    other = other_store_warning(train_config["data"], data)
    return {"checkpoint": str(checkpoint_path), "stage": ckpt["stage"], "step": ckpt["step"], "split": split,
            "samples": len(arrays), "input_size": [mc.height, mc.width], "output_size": list(mc.output_size),
            "metrics": metrics, "warnings": [] if other is None else [other]}


def other_store_warning(trained_on: str | Path, data: str | Path) -> str | None:
    """A warning when ``data`` is not the store the checkpoint was trained on
    (another path whose store differs in settings or inputs, or is gone):
    its held-out split is then not held out from anything, or not the same."""
    from engine.config import GenerateConfig
    from engine.errors import StoreError
    from engine.store.zarr_store import read_attrs

    trained, data = Path(trained_on), Path(data)
    if trained.resolve() == data.resolve():
        return None
    try:  # a copy of the same store (same settings and input files) is the same data
        a, b = read_attrs(trained), read_attrs(data)
        same = (GenerateConfig.from_dict(a["config"]).identity() == GenerateConfig.from_dict(b["config"]).identity()
                and a["inputs"] == b["inputs"])
    except (StoreError, KeyError, TypeError):
        same = False
    if same:
        return None
    return (f"the checkpoint was trained on {trained}, not {data}: the split's held-out backgrounds "
            "are chosen again on this store, so 'val' may not be held out")


def predict_images(checkpoint_path: str | Path, paths: list[Path], device: str = "auto") -> list[np.ndarray]:
    """Depth of each image file at the model's output size: ``(h, w) float32`` metres.

    Images are centre-cropped to the model's aspect and resized to its input.
    """
    import torch

    from engine.assets.images import fit_background, read_image
    from engine.learn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint_path)
    device = pick_device(device)
    model = load_model(ckpt, device)
    mc = model.config
    dtype = autocast_dtype(ckpt["train_config"]["precision"], device)
    out = []
    for path in paths:
        if not path.is_file():
            raise InputError(path, "no such image")
        image, _ = read_image(path, 64_000_000)
        rgb = fit_background(image, mc.height, mc.width).astype(np.float32) / 255.0
        x = torch.from_numpy((rgb - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None].to(device)
        with torch.no_grad(), autocast(device, dtype):
            log_pred = model(x.contiguous(memory_format=torch.channels_last), ckpt["stage"])
        out.append(torch.exp(log_pred.float())[0, 0].cpu().numpy())
    return out

"""Evaluation and prediction with a trained coarse/fine model.

Shared by the training loop (periodic validation) and the ``evaluate`` and
``predict`` commands. Metrics come from :mod:`engine.learn.metrics`; the constant
predictor (the training set's mean log depth everywhere) is always reported
next to the model, so a table says whether the network learned anything.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError
from engine.learn.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SplitArrays,
    load_split,
    make_batch,
    normalization,
    split_indices,
)
from engine.learn.metrics import DepthMetrics, valid_depth

log = logging.getLogger(__name__)


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


def autocast(device: str, dtype, cache_enabled: bool = True) -> Any:
    """torch's autocast to ``dtype`` (nothing for ``None``); ``cache_enabled=False``
    inside a CUDA-graph capture, as torch asks (no cast weights kept across it)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype, cache_enabled=cache_enabled)


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
                    which: str = "all", batch: int = 64,
                    norm: tuple[np.ndarray, np.ndarray] = (IMAGENET_MEAN, IMAGENET_STD)) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` (and of the constant predictor) on ``data``, its
    inputs normalised by ``norm`` (``(mean, std)``, 0..1 units, as in training),
    batches assembled by :func:`make_batch` (the torch loader).

    Returns:
        ``{"model": metrics, "constant": metrics}`` (``constant`` only when
        ``constant_log_depth`` is given).
    """
    rows = np.arange(len(data))

    def batches() -> Iterator[tuple]:
        for start in range(0, len(rows), batch):
            out = make_batch(data, rows[start : start + batch], None, device, *norm)
            if start + batch < len(rows):
                data.prefetch(rows[start + batch : start + 2 * batch])  # streamed images: read while this runs
            yield out

    return evaluate_batches(model, batches(), stage, device, dtype, constant_log_depth, which)


def evaluate_batches(model, batches: Iterable[tuple], stage: str, device: str, dtype, constant_log_depth: float | None,
                     which: str = "all") -> dict[str, dict[str, float]]:
    """Metrics of ``model`` (and of the constant predictor) over ``batches``.

    Args:
        batches: ``(x, depth, masks)`` on ``device``: ``x (B, 3, H, W)`` normalised,
            ``depth (B, 1, h, w) float32`` metres, ``masks (B, 1, h, w) bool``
            (:func:`make_batch`'s, or a loader's without augmentation).

    Returns:
        ``{"model": metrics, "constant": metrics}`` (``constant`` only when
        ``constant_log_depth`` is given).
    """
    import torch

    was_training = model.training
    model.eval()
    ours, const = DepthMetrics(), DepthMetrics()
    try:
        with torch.no_grad():
            for x, depth, masks in batches:
                with autocast(device, dtype):
                    log_pred = model(x, stage)
                pred = torch.exp(log_pred.float())  # metrics are computed where the batch is
                valid = loss_mask(depth, masks, which)
                ours.update(pred, depth, valid)
                if constant_log_depth is not None:
                    const.update(torch.full_like(pred, math.exp(constant_log_depth)), depth, valid)
    finally:
        model.train(was_training)
    out = {"model": ours.compute()}
    if constant_log_depth is not None:
        out["constant"] = const.compute()
    return out


class DaliEvalBatches:
    """A split's batches in order, through the training loader's DALI graph
    without augmentation (:class:`~engine.learn.dali_loader.DaliLoader`,
    ``shuffle=False``): images decoded (JPEG: on the GPU when ``device`` is
    one), resized and normalised as in training. Iterate it once per
    evaluation; the pipeline is built once and reused.

    Args:
        path: the store.
        arrays: the split's depth and masks at the output size (``load_split``,
            images not needed).
        input_size: ``(H, W)`` of the network.
        device: ``cpu`` or ``cuda``.
        batch: samples per batch (at most the split's size is used).
        norm: ``(mean, std)``, 0..1 units.

    Raises:
        ConfigError: DALI is not installed.
        StoreError: the store lacks what the loader needs; later, while
            iterating, a damaged shard (naming the array, shard and samples).
    """

    def __init__(self, path: str | Path, arrays: SplitArrays, input_size: tuple[int, int], device: str, batch: int,
                 norm: tuple[np.ndarray, np.ndarray]) -> None:
        from engine.learn.dali_loader import DaliLoader, require_dali

        require_dali("--loader dali", "--loader torch")
        h, w = arrays.depth.shape[1:]
        self.loader = DaliLoader(path, arrays.index, input_size, (h, w), min(batch, len(arrays)), seed=0,
                                 augment=False, shuffle=False, device=device, split=arrays,
                                 mean=tuple(norm[0].tolist()), std=tuple(norm[1].tolist()))

    def __len__(self) -> int:
        return len(self.loader.index)

    def __iter__(self) -> Iterator[tuple]:
        return self.loader.epoch(0)

    def close(self) -> None:
        self.loader.close()


def load_model(checkpoint: dict[str, Any], device: str):
    """The :class:`~engine.learn.model.EigenDepth` of a loaded checkpoint, in eval mode."""
    import torch

    from engine.learn.model import EigenDepth, ModelConfig

    model = EigenDepth(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).to(memory_format=torch.channels_last).eval()


def check_built_on(ckpt: dict[str, Any], checkpoint_path: str | Path) -> str | None:
    """For a fine checkpoint: is the coarse checkpoint it was built on unchanged?

    The coarse checkpoint is the ``--init`` recorded at training if that file
    exists, else ``coarse.pt`` next to ``checkpoint_path``; its coarse weights
    must have the fingerprint the fine checkpoint recorded.

    Returns:
        ``None`` when they match (or for a coarse checkpoint), else a warning
        (also logged) saying why nothing could be checked.

    Raises:
        ConfigError: the coarse checkpoint holds a different coarse network.
    """
    from engine.learn.checkpoint import coarse_fingerprint, load_checkpoint

    if ckpt["stage"] != "fine":
        return None
    recorded = ckpt.get("coarse_sha256")
    warning = None
    if recorded is None:
        warning = f"{checkpoint_path}: records no coarse checkpoint (written by an older fgbg); not checked"
    else:
        candidates = [Path(ckpt["coarse_checkpoint"]), Path(checkpoint_path).parent / "coarse.pt"]
        coarse_path = next((p for p in candidates if p.is_file()), None)
        if coarse_path is None:
            warning = (f"{checkpoint_path}: the coarse checkpoint it was built on ({candidates[0]}) is gone; "
                       "cannot check it")
        elif coarse_fingerprint(load_checkpoint(coarse_path)["model"]) != recorded:
            raise ConfigError(f"{checkpoint_path} was built on a different coarse network than {coarse_path} holds now "
                              "(coarse retrained since?): train the fine stage again with --overwrite")
    if warning:
        log.warning(warning)
    return warning


def evaluate_checkpoint(checkpoint_path: str | Path, data: str | Path, split: str = "val", device: str = "auto",
                        batch: int = 64, stream: bool = False, loader: str = "dali") -> dict[str, Any]:
    """Evaluate a checkpoint on a store's split (the split it was trained with).

    ``loader``: ``dali`` (the training loader's DALI graph without
    augmentation, :class:`DaliEvalBatches`; images read batch by batch) or
    ``torch`` (the split resized into memory, or read batch by batch with
    ``stream``). Normalisation is the checkpoint's either way.

    Returns:
        ``{"checkpoint", "stage", "split", "samples", "input_size", "output_size",
        "metrics": {"model": …, "constant": …}}``.
    """
    from engine.learn.checkpoint import load_checkpoint
    from engine.learn.model import ModelConfig

    ckpt = load_checkpoint(checkpoint_path)
    check_built_on(ckpt, checkpoint_path)
    device = pick_device(device)
    train_config = ckpt["train_config"]
    mc = ModelConfig(**ckpt["model_config"])
    if loader not in ("dali", "torch"):
        raise ConfigError(f"--loader must be dali or torch, got {loader!r}")
    if stream and loader != "torch":
        raise ConfigError("--stream is for --loader torch (the DALI loader always reads batch by batch)")
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    # the split trained with (recorded by train), even if the store has grown since
    index, _ = split_indices(data, split, train_config["val_fraction"], train_config["split_seed"],
                             ckpt.get("val_backgrounds"))
    size = (mc.height, mc.width)
    arrays = load_split(data, index, size, mc.output_size, stream_images=stream, with_images=loader == "torch")
    model = load_model(ckpt, device)
    dtype = autocast_dtype(train_config["precision"], device)
    norm = normalization(ckpt)
    if loader == "torch":
        metrics = evaluate_arrays(model, arrays, ckpt["stage"], device, dtype, ckpt["constant_log_depth"],
                                  batch=batch, norm=norm)
    else:
        batches = DaliEvalBatches(data, arrays, size, device, batch, norm)
        try:
            metrics = evaluate_batches(model, batches, ckpt["stage"], device, dtype, ckpt["constant_log_depth"])
        finally:
            batches.close()
    other = other_store_warning(train_config["data"], data)
    return {"checkpoint": str(checkpoint_path), "stage": ckpt["stage"], "step": ckpt["step"], "split": split,
            "loader": loader,
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


@dataclass(frozen=True)
class DepthPrediction:
    """One image's predicted depth.

    Attributes:
        path: the image file.
        depth: ``(h, w) float32`` metres at the model's output size, covering ``crop``.
        image_size: ``(height, width)`` of the image (EXIF orientation applied).
        crop: ``(top, left, height, width)`` in image pixels: the centred crop of
            the model's aspect that the network saw (the whole image when the
            aspects match).
    """

    path: Path
    depth: np.ndarray
    image_size: tuple[int, int]
    crop: tuple[int, int, int, int]

    def upsampled(self) -> np.ndarray:
        """``depth`` at the image's size: ``(height, width) float32`` metres, bilinear
        inside ``crop``, NaN (unknown) outside it."""
        from PIL import Image

        top, left, ch, cw = self.crop
        out = np.full(self.image_size, np.nan, dtype=np.float32)
        resized = Image.fromarray(self.depth.astype(np.float32)).resize((cw, ch), Image.Resampling.BILINEAR)
        out[top : top + ch, left : left + cw] = np.asarray(resized)
        return out


def centre_crop(image_size: tuple[int, int], aspect: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the centred crop of ``image_size`` (height,
    width) with the aspect of ``aspect`` (height, width), as Pillow's ``ImageOps.fit`` takes it."""
    h, w = image_size
    ah, aw = aspect
    if w * ah > h * aw:  # wider than the model: crop the sides
        ch, cw = h, min(w, round(h * aw / ah))
    else:
        ch, cw = min(h, round(w * ah / aw)), w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def image_files(paths: list[Path]) -> list[Path]:
    """Image files and folders → files: a folder stands for its non-hidden files, sorted.

    Raises:
        InputError: a path that does not exist, an empty folder, or two images
            with the same name stem (their outputs would collide).
    """
    from engine.assets.images import list_images

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(list_images(path, "image"))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(path, "no such image or folder")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen and seen[path.stem] != path:
            raise InputError(path, f"same name as {seen[path.stem]}: their outputs would overwrite each other")
        seen[path.stem] = path
    return files


def predict_images(checkpoint_path: str | Path, paths: list[Path], device: str = "auto") -> list[DepthPrediction]:
    """Depth of each image file (or of every file in a folder), at the model's output size.

    Images are centre-cropped to the model's aspect and resized to its input;
    see :class:`DepthPrediction` for mapping the result back onto the image.
    """
    import torch

    from engine.assets.images import fit_background, read_image
    from engine.learn.checkpoint import load_checkpoint

    files = image_files(paths)
    ckpt = load_checkpoint(checkpoint_path)
    check_built_on(ckpt, checkpoint_path)
    device = pick_device(device)
    model = load_model(ckpt, device)
    mc = model.config
    dtype = autocast_dtype(ckpt["train_config"]["precision"], device)
    mean, std = normalization(ckpt)
    out = []
    for path in files:
        image, _ = read_image(path, 64_000_000)
        rgb = fit_background(image, mc.height, mc.width).astype(np.float32) / 255.0
        x = torch.from_numpy((rgb - mean) / std).permute(2, 0, 1)[None].to(device)
        with torch.no_grad(), autocast(device, dtype):
            log_pred = model(x.contiguous(memory_format=torch.channels_last), ckpt["stage"])
        size = (image.height, image.width)
        out.append(DepthPrediction(path, torch.exp(log_pred.float())[0, 0].cpu().numpy(), size,
                                   centre_crop(size, (mc.height, mc.width))))
    return out

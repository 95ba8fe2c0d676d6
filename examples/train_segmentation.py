"""Train a torchvision segmentation network on a store's masks through ``engine.loader``.

    python examples/train_segmentation.py data/cars.zarr --steps 500 --device cuda   # DALI loader on the GPU
    python examples/train_segmentation.py data/cars.zarr --steps 60 --model small    # torch loader on the CPU

Prints the mean IoU (background, car) on the held-out backgrounds, side by
side with a predictor that says "background" everywhere. No weights are
downloaded: the network starts from scratch.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import lraspp_mobilenet_v3_large
from torchvision.models.segmentation.lraspp import LRASPP

from engine import loader, open_store


def make_model(name: str) -> nn.Module:
    """LR-ASPP (torchvision) on MobileNetV3 ``large`` (torchvision's own builder) or
    ``small`` (the same head on the small backbone, built the same way: 3x faster on a CPU),
    from scratch: no weights are downloaded."""
    if name == "large":
        model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2)
    else:
        backbone = mobilenet_v3_small(weights=None, dilated=True).features
        stages = [0] + [i for i, b in enumerate(backbone) if getattr(b, "_is_cn", False)] + [len(backbone) - 1]
        low, high = stages[-4], stages[-1]  # stride 8 and the last block, as torchvision picks for large
        body = IntermediateLayerGetter(backbone, {str(low): "low", str(high): "high"})
        model = LRASPP(body, backbone[low].out_channels, backbone[high].out_channels, 2)
    for m in model.modules():  # a short run: average every batch's statistics, not an exponential of the last few
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    return model


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean over classes of intersection / union, from a ``(C, C)`` confusion matrix (rows: truth)."""
    inter = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - inter
    return float((inter / union.clamp(min=1)).mean())


def confusion_of(pred: torch.Tensor, truth: torch.Tensor, classes: int = 2) -> torch.Tensor:
    """``(C, C) int64`` counts of (truth, prediction) pairs; ``pred``/``truth`` ``(B, H, W) int64``."""
    return torch.bincount((truth * classes + pred).flatten(), minlength=classes * classes).view(classes, classes).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a store written by cli.py generate")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=16, help="samples per step")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="input size (default: the store's)")
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=("large", "small"), default="large", help="MobileNetV3 backbone of LR-ASPP")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    store = open_store(args.store)
    size = tuple(args.size) if args.size else store.size
    # the DALI loader on a GPU, the torch loader on the CPU (kind="auto")
    train = loader(store, args.batch, "train", device=args.device, input_size=size, seed=args.seed)
    val = loader(store, args.batch, "val", device=args.device, input_size=size)  # in order, no augmentation
    print(f"train {len(train.index)} samples ({train.kind} loader), val {len(val.index)}, input {size[0]}x{size[1]}")

    model = make_model(args.model).to(args.device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    weight = torch.tensor([1.0, 4.0], device=args.device)  # cars are a small part of each picture

    step, t0 = 0, time.perf_counter()
    model.train()
    while step < args.steps:
        for batch in train:  # one epoch; the next `for` continues with the next one
            x = batch["image"]  # (B, 3, H, W) float32, normalised
            target = batch["mask"][:, 0].long()  # (B, H, W) 0 background, 1 car
            logits = model(x)["out"]  # (B, 2, H, W)
            loss = F.cross_entropy(logits, target, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % max(1, args.steps // 5) == 0 or step == args.steps:
                print(f"step {step:5d}  loss {loss.item():.3f}  {step * args.batch / (time.perf_counter() - t0):.1f} images/s")
            if step == args.steps:
                break

    model.eval()
    model_cm = torch.zeros(2, 2, dtype=torch.int64)
    background_cm = torch.zeros(2, 2, dtype=torch.int64)
    with torch.no_grad():
        for batch in val:
            truth = batch["mask"][:, 0].long()  # (B, H, W)
            model_cm += confusion_of(model(batch["image"])["out"].argmax(1), truth)
            background_cm += confusion_of(torch.zeros_like(truth), truth)
    print(f"mean IoU on the held-out split: model {mean_iou(model_cm):.3f} | all-background {mean_iou(background_cm):.3f}")


if __name__ == "__main__":
    main()

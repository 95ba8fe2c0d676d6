"""Train a tiny depth network on built-in composites and save it as a teacher.

    python benchmarks/make_teacher.py --out benchmarks/scratch/teacher.pt [--steps 400]

For exercising and timing the ``teacher-*`` depth sources without downloading
anything: a small encoder-decoder (about 0.1 M parameters) trained for a few
minutes on the CPU to predict log depth from 112x112 inputs, saved as
TorchScript mapping ``(N, 3, 112, 112)`` to ``(N, 1, 112, 112)`` metres. It is
a stand-in for a real monocular network, not a good one.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import ROOT
from engine.compose.compositor import Compositor
from engine.compose.depth import make_depth_source
from engine.compose.generate import load_assets
from engine.compose.plan import plan_for
from engine.config import GenerateConfig

SIZE = 112
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class TinyDepth(nn.Module):
    """Three stride-2 convs down, three upsampling convs back, log depth out."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = width
        self.down = nn.ModuleList([nn.Conv2d(3, w, 3, 2, 1), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.Conv2d(2 * w, 4 * w, 3, 2, 1)])
        self.up = nn.ModuleList([nn.Conv2d(4 * w + 2 * w, 2 * w, 3, 1, 1), nn.Conv2d(2 * w + w, w, 3, 1, 1),
                                 nn.Conv2d(w + 3, w, 3, 1, 1)])
        self.head = nn.Conv2d(w, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for conv in self.down:
            x = F.relu(conv(x))
            skips.append(x)
        skips.pop()
        for conv in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = F.relu(conv(torch.cat([x, skip], dim=1)))
        return torch.exp(self.head(x))  # metres, positive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "scratch" / "teacher.pt")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    config = GenerateConfig(builtin_backgrounds=40, builtin_foregrounds=40, seed=123)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    compositor = Compositor(assets, depth, config)
    model = TinyDepth()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(plan.n_samples)
    every = plan.placements(0, plan.n_samples)
    t0 = time.perf_counter()
    for step in range(args.steps):
        index = np.sort(order[(step * args.batch + np.arange(args.batch)) % plan.n_samples])
        sub = type(every)(**{k: getattr(every, k)[index] for k in ("bg", "fg", "flip", "x", "y", "h", "w", "scale")})
        batch = compositor.composite(sub)
        x = torch.from_numpy(batch.images).permute(0, 3, 1, 2).float() / 255  # (B, 3, 224, 224)
        x = F.interpolate((x - MEAN) / STD, size=(SIZE, SIZE), mode="bilinear", antialias=True)
        target = torch.from_numpy(batch.depth.astype(np.float32))[:, None]
        target = F.interpolate(target, size=(SIZE, SIZE), mode="nearest")
        loss = (torch.log(model(x)) - torch.log(target)).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  L1(log depth) {loss.item():.3f}  {time.perf_counter() - t0:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model.eval()).save(str(args.out))
    print(f"saved {args.out} (use --teacher-size {SIZE}x{SIZE})")


if __name__ == "__main__":
    main()

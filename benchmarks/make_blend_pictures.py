"""The blending-mode picture of docs/generating.md: ``docs/blend-modes.png``.

    python benchmarks/make_blend_pictures.py

Three samples of the built-in scenes (rows) composited with each mode
(columns: alpha, feather, motion, poisson, alpha + harmonize), each cropped
around the object (its box, a margin, 3:4) and scaled to one tile size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from common import ROOT
from engine.compose.compositor import Compositor
from engine.compose.depth import make_depth_source
from engine.compose.generate import load_assets
from engine.compose.plan import plan_for
from engine.config import GenerateConfig
from kernels import placement as P

OUT = ROOT / "docs" / "blend-modes.png"
COLUMNS = {
    "alpha": {},
    "feather (sigma 2)": {"blend": "feather"},
    "motion (9 px, 0 deg)": {"blend": "motion"},
    "poisson": {"blend": "poisson"},
    "alpha + harmonize": {"harmonize": True},
}
SAMPLES = [3, 41, 118]  # indices of the plan below: three scenes, three cars
TILE = (144, 192)  # (height, width) of each tile
MARGIN = 14  # px of background shown around the object's box
LABEL = 14  # px of caption above each column


def crop_box(row: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, left, h, w)``: a 3:4 window around the placement's box and a margin, inside the image."""
    h = max(int(row[P.H]) + 2 * MARGIN, (int(row[P.W]) + 2 * MARGIN) * 3 // 4)
    h = min(h, height, width * 3 // 4)
    w = h * 4 // 3
    cy = int(row[P.Y] + row[P.H] // 2)
    cx = int(row[P.X] + row[P.W] // 2)
    top = min(max(cy - h // 2, 0), height - h)
    left = min(max(cx - w // 2, 0), width - w)
    return top, left, h, w


def main() -> None:
    base = dict(builtin_backgrounds=20, builtin_foregrounds=20, seed=7, height=224, width=224,
                scale_min=0.25, scale_max=0.4)
    config = GenerateConfig(**base)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    plan = plan_for(config, assets, depth)
    placements = plan.placements_at(np.array(SAMPLES))
    th, tw = TILE
    sheet = Image.new("RGB", (tw * len(COLUMNS), LABEL + th * len(SAMPLES)), "white")
    draw = ImageDraw.Draw(sheet)
    for col, (name, overrides) in enumerate(COLUMNS.items()):
        compositor = Compositor(assets, depth, GenerateConfig(**base, **overrides))
        prepared = compositor.prepare(placements)
        images = compositor.composite(prepared).images
        draw.text((col * tw + 4, 1), name, fill="black")
        for r, row in enumerate(prepared.table):
            top, left, h, w = crop_box(row, config.height, config.width)
            tile = Image.fromarray(images[r, top : top + h, left : left + w])
            sheet.paste(tile.resize((tw, th), Image.LANCZOS), (col * tw, LABEL + r * th))
    OUT.parent.mkdir(exist_ok=True)
    sheet.save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

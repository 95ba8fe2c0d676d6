"""The naive per-image baseline: what the original dataset's Colab loop did.

One sample at a time in Python: resize the cut-out with Pillow, paste it with
NumPy straight-alpha maths, encode the composite and the mask as JPEG with
Pillow, and append both to a zip file. No depth (the original ran a network
for that afterwards). Used by ``cli.py bench`` (and ``bench_generate.py``) on the same plan and
assets as the engine, so both do the same placements.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def naive_generate(bg_images: np.ndarray, fg_images: list[np.ndarray], placements, out_zip: Path) -> int:
    """Composite and zip every sample of ``placements`` one by one; returns the count.

    Args:
        bg_images: ``(NB, H, W, 3) uint8`` backgrounds.
        fg_images: canonical ``(h, w, 4) uint8`` RGBA foregrounds.
        placements: an :class:`engine.compose.plan.Placements`.
        out_zip: the zip file to write.
    """
    n = len(placements)
    with zipfile.ZipFile(out_zip, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(n):
            bg = bg_images[placements.bg[i]].astype(np.float32)
            fg = Image.fromarray(fg_images[placements.fg[i]], "RGBA")
            fg = fg.resize((int(placements.w[i]), int(placements.h[i])), Image.Resampling.BILINEAR)
            if placements.flip[i]:
                fg = fg.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            rgba = np.asarray(fg, dtype=np.float32)
            x, y, h, w = int(placements.x[i]), int(placements.y[i]), int(placements.h[i]), int(placements.w[i])
            alpha = rgba[..., 3:4] / 255.0
            region = bg[y : y + h, x : x + w]
            bg[y : y + h, x : x + w] = rgba[..., :3] * alpha + region * (1 - alpha)
            mask = np.zeros(bg.shape[:2], np.uint8)
            mask[y : y + h, x : x + w] = np.where(rgba[..., 3] > 127, 255, 0)
            for name, array in ((f"fgbg/{i}.jpg", bg.round().astype(np.uint8)), (f"mask/{i}.jpg", mask)):
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="JPEG", quality=95)
                archive.writestr(name, buffer.getvalue())
    return n


def _naive_worker(args: tuple) -> int:
    bg_images, fg_images, placements, out_zip = args
    return naive_generate(bg_images, fg_images, placements, out_zip)


def split_placements(placements, parts: int) -> list:
    """``placements`` cut into ``parts`` contiguous ranges (same type, as even as can be)."""
    from dataclasses import fields

    bounds = np.linspace(0, len(placements), parts + 1).astype(int)
    return [type(placements)(**{f.name: getattr(placements, f.name)[a:b] for f in fields(placements)})
            for a, b in zip(bounds[:-1], bounds[1:])]


def naive_generate_pool(bg_images: np.ndarray, fg_images: list[np.ndarray], placements, out_dir: Path, processes: int,
                        pool=None) -> int:
    """The same loop on every core: ``processes`` workers, one zip each, contiguous ranges.

    This is what a user with many cores would run instead of the single loop,
    so the GPU engine is compared against it too. ``pool``: a started
    ``multiprocessing`` pool of ``processes`` workers to reuse (its start-up
    then stays out of the timing), else one is started for this call.
    """
    import multiprocessing as mp

    parts = [(bg_images, fg_images, part, out_dir / f"naive-{k}.zip")
             for k, part in enumerate(split_placements(placements, processes))]
    if pool is not None:
        return sum(pool.map(_naive_worker, parts))
    with mp.get_context("fork").Pool(processes) as pool:
        return sum(pool.map(_naive_worker, parts))

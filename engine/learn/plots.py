"""Small PNG plots drawn with Pillow (no plotting library needed): training
curves and a sheet of predictions next to the ground truth."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from engine.store.preview import depth_range, depth_to_rgb, with_colour_bar

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def line_panel(series: dict[str, tuple[list[float], list[float]]], size: tuple[int, int], title: str,
               log_y: bool = False) -> Image.Image:
    """One panel: each series ``name → (xs, ys)`` as a line, with axes ticks and a legend."""
    w, h = size
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    left, right, top, bottom = 58, 10, 22, 28
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y) and (y > 0 or not log_y)]
    draw.text((left, 4), title, fill="black")
    if not xs_all or not ys_all:
        return im
    fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    x0, x1 = min(xs_all), max(xs_all) or 1
    y0, y1 = fy(min(ys_all)), fy(max(ys_all))
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / max(x1 - x0, 1e-12) * (w - left - right),
                h - bottom - (fy(y) - y0) / (y1 - y0) * (h - top - bottom))

    draw.rectangle([left, top, w - right, h - bottom], outline=(120, 120, 120))
    for k in range(5):
        t = y0 + (y1 - y0) * k / 4
        yy = h - bottom - (t - y0) / (y1 - y0) * (h - top - bottom)
        draw.line([left - 3, yy, left, yy], fill="black")
        draw.text((2, yy - 6), f"{10 ** t if log_y else t:.3g}", fill="black")
    for k in range(5):
        t = x0 + (x1 - x0) * k / 4
        xx = left + (t - x0) / max(x1 - x0, 1e-12) * (w - left - right)
        draw.text((xx - 10, h - bottom + 4), f"{t:.0f}", fill="black")
    for i, (name, (xs, ys)) in enumerate(series.items()):
        pts = [px(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not log_y)]
        colour = _COLOURS[i % len(_COLOURS)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        draw.text((w - right - 150, top + 4 + 12 * i), name, fill=colour)
    return im


def loss_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss and the periodic validation metrics, side by side, as a PNG."""
    steps = [r["step"] for r in history]
    loss = ([steps, [r["loss"] for r in history]])
    evals = [r for r in history if "val_si_log" in r]
    panels = [line_panel({"train loss (scale-invariant)": (loss[0], loss[1])}, (480, 300), f"{title}: loss", log_y=True)]
    if evals:
        e_steps = [r["step"] for r in evals]
        panels.append(line_panel({"val RMSE (log, scale-inv.)": (e_steps, [r["val_si_log"] for r in evals]),
                                  "val abs rel": (e_steps, [r["val_abs_rel"] for r in evals]),
                                  "val RMSE (log)": (e_steps, [r["val_rmse_log"] for r in evals])},
                                 (480, 300), f"{title}: validation"))
    sheet = Image.new("RGB", (480 * len(panels), 300), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, (480 * i, 0))
    sheet.save(path)


def prediction_sheet(model, data, stage: str, device: str, path: Path, n: int = 6, norm: tuple | None = None) -> None:
    """``n`` held-out samples: image | ground-truth depth | predicted depth, under
    labelled columns; one colour scale, the truth's own range (:func:`depth_range`),
    keyed by a colour bar."""
    import torch

    from engine.learn.data import make_batch

    rows = np.linspace(0, len(data) - 1, num=min(n, len(data))).round().astype(np.int64)
    x, depth, _ = make_batch(data, rows, None, "cpu", *(norm or ()))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = torch.exp(model(x.to(device).contiguous(memory_format=torch.channels_last), stage).float()).cpu()
    model.train(was_training)
    h, w = data.images.shape[1:3]
    near, far = depth_range(depth.numpy())
    tiles = [column_labels(["image", "truth", "prediction"], w)]
    for i, r in enumerate(rows):
        gt = np.asarray(Image.fromarray(depth_to_rgb(depth[i, 0].numpy(), near, far)).resize((w, h), Image.Resampling.NEAREST))
        pr = np.asarray(Image.fromarray(depth_to_rgb(pred[i, 0].numpy(), near, far)).resize((w, h), Image.Resampling.BILINEAR))
        tiles.append(np.concatenate([data.images[r], gt, pr], axis=1))
    with_colour_bar(Image.fromarray(np.concatenate(tiles, axis=0)), near, far).save(path)


LABEL_HEIGHT = 14


def column_labels(labels: list[str], width: int) -> np.ndarray:
    """A ``(LABEL_HEIGHT, len(labels) * width, 3) uint8`` strip naming columns ``width`` pixels wide."""
    strip = Image.new("RGB", (len(labels) * width, LABEL_HEIGHT), (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    for k, label in enumerate(labels):
        draw.text((k * width + 3, 1), label, fill=(220, 220, 220))
    return np.asarray(strip)

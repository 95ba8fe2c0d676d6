"""The training loss and the evaluation metrics, shared by train and evaluate.

Everything takes depth in metres or log metres as ``(B, 1, h, w)`` or
``(B, h, w)`` tensors with a boolean ``valid`` mask of the same shape; pixels
with depth ``<= 0`` or not finite are never valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def valid_depth(depth: torch.Tensor) -> torch.Tensor:
    """``depth > 0`` and finite: the pixels that count."""
    return torch.isfinite(depth) & (depth > 0)


def scale_invariant_loss(log_pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """The paper's training loss, averaged over the batch.

    Per image, with ``d = log_pred - log(depth)`` over its ``n`` valid pixels::

        L = (1/n) Σ d²  -  (λ/n²) (Σ d)²

    ``λ = 0.5`` (the paper's choice between the plain L2 and the fully
    scale-invariant error). Images with no valid pixel add 0.

    Args:
        log_pred: ``(B, ...)`` predicted log depth.
        depth: ``(B, ...)`` target depth, metres.
        valid: ``(B, ...)`` bool.
    """
    d = torch.where(valid, log_pred.float() - torch.log(torch.where(valid, depth, torch.ones_like(depth))), 0.0)
    b = d.shape[0]
    d, v = d.reshape(b, -1), valid.reshape(b, -1)
    n = v.sum(dim=1).clamp(min=1).float()
    per_image = (d * d).sum(dim=1) / n - lam * d.sum(dim=1) ** 2 / (n * n)
    return per_image.mean()


METRIC_NAMES = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "si_log")
#: True where larger is better
HIGHER_IS_BETTER = {"delta1": True, "delta2": True, "delta3": True}


@dataclass
class DepthMetrics:
    """Accumulates the paper's error metrics over batches, reduced correctly.

    Pixel-averaged metrics (δ thresholds, abs/sq rel, RMSE, RMSE log) sum over
    all valid pixels of all batches and divide once at the end — not a mean of
    per-batch means, which would weight small batches or sparse images wrong.
    The scale-invariant log RMSE is computed per image (``sqrt`` of
    ``mean d² - (mean d)²``, the paper's λ = 1 error) and averaged over images.
    """

    sums: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in METRIC_NAMES})
    pixels: int = 0
    images: int = 0

    @torch.no_grad()
    def update(self, pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``depth`` in metres (``pred > 0``), ``valid`` bool."""
        p = pred.double().reshape(pred.shape[0], -1)
        g = depth.double().reshape(depth.shape[0], -1)
        v = valid.reshape(valid.shape[0], -1)
        g = torch.where(v, g, torch.ones_like(g))
        p = torch.where(v, p.clamp(min=1e-6), torch.ones_like(p))
        ratio = torch.maximum(p / g, g / p)
        diff = p - g
        log_diff = torch.log(p) - torch.log(g)
        s = self.sums
        for k, t in ((1, 1.25), (2, 1.25**2), (3, 1.25**3)):
            s[f"delta{k}"] += float(((ratio < t) & v).sum())
        s["abs_rel"] += float((diff.abs() / g)[v].sum())
        s["sq_rel"] += float((diff * diff / g)[v].sum())
        s["rmse"] += float((diff * diff)[v].sum())
        s["rmse_log"] += float((log_diff * log_diff)[v].sum())
        n = v.sum(dim=1)
        has = n > 0
        nd = n.clamp(min=1).double()
        ld = torch.where(v, log_diff, torch.zeros_like(log_diff))
        si = (ld * ld).sum(dim=1) / nd - (ld.sum(dim=1) / nd) ** 2
        s["si_log"] += float(si.clamp(min=0).sqrt()[has].sum())
        self.pixels += int(n.sum())
        self.images += int(has.sum())

    def compute(self) -> dict[str, float]:
        """The metrics so far (``nan`` when nothing was valid)."""
        if self.pixels == 0:
            return {k: math.nan for k in METRIC_NAMES}
        px = self.pixels
        s = self.sums
        return {
            "delta1": s["delta1"] / px, "delta2": s["delta2"] / px, "delta3": s["delta3"] / px,
            "abs_rel": s["abs_rel"] / px, "sq_rel": s["sq_rel"] / px,
            "rmse": math.sqrt(s["rmse"] / px), "rmse_log": math.sqrt(s["rmse_log"] / px),
            "si_log": s["si_log"] / max(self.images, 1),
        }


def better(name: str, a: float, b: float) -> bool:
    """Is metric value ``a`` better than ``b``?"""
    return a > b if HIGHER_IS_BETTER.get(name, False) else a < b

"""The scale-invariant loss by hand, and the metrics against NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.learn.metrics import METRIC_NAMES, DepthMetrics, scale_invariant_loss, valid_depth


def test_loss_against_a_hand_computed_value() -> None:
    depth = torch.tensor([[[[1.0, 2.0, 4.0, 8.0, 0.0]]]])  # last pixel: unknown depth
    d = torch.tensor([0.1, -0.2, 0.3, 0.0, 99.0])  # the invalid pixel's error must not count
    log_pred = torch.log(depth.clamp(min=1e-9)) + d.view(1, 1, 1, 5)
    loss = scale_invariant_loss(log_pred, depth, valid_depth(depth), lam=0.5)
    # (0.01 + 0.04 + 0.09 + 0) / 4 - 0.5 * (0.2 / 4)^2 = 0.035 - 0.00125
    assert loss.item() == pytest.approx(0.03375, abs=1e-6)


def test_loss_is_scale_invariant_at_lambda_one_and_averages_images() -> None:
    rng = torch.Generator().manual_seed(0)
    depth = torch.rand(3, 1, 6, 7, generator=rng) * 50 + 1
    pred = torch.log(depth) + torch.randn(3, 1, 6, 7, generator=rng) * 0.3
    valid = torch.ones_like(depth, dtype=torch.bool)
    assert scale_invariant_loss(pred + 2.0, depth, valid, lam=1.0).item() == pytest.approx(
        scale_invariant_loss(pred, depth, valid, lam=1.0).item(), abs=1e-5)
    per_image = [scale_invariant_loss(pred[i : i + 1], depth[i : i + 1], valid[i : i + 1]).item() for i in range(3)]
    assert scale_invariant_loss(pred, depth, valid).item() == pytest.approx(np.mean(per_image), abs=1e-6)


def reference_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """The paper's definitions, over all valid pixels at once (SI per image, averaged)."""
    p, g = pred[valid], gt[valid]
    ratio = np.maximum(p / g, g / p)
    out = {f"delta{k}": float(np.mean(ratio < 1.25**k)) for k in (1, 2, 3)}
    out["abs_rel"] = float(np.mean(np.abs(p - g) / g))
    out["sq_rel"] = float(np.mean((p - g) ** 2 / g))
    out["rmse"] = float(np.sqrt(np.mean((p - g) ** 2)))
    out["rmse_log"] = float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)))
    si = []
    for i in range(len(pred)):
        d = np.log(pred[i][valid[i]]) - np.log(gt[i][valid[i]])
        if d.size:
            si.append(math.sqrt(max(np.mean(d**2) - np.mean(d) ** 2, 0)))
    out["si_log"] = float(np.mean(si))
    return out


def test_metrics_reduce_correctly_across_uneven_batches() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 80, (11, 1, 5, 6))
    pred = gt * np.exp(rng.normal(0, 0.3, gt.shape))
    valid = rng.random(gt.shape) > 0.3
    valid[4] = False  # an image with no valid pixel
    gt[~valid] = 0
    want = reference_metrics(pred, gt, valid)
    metrics = DepthMetrics()
    for a, b in ((0, 2), (2, 3), (3, 9), (9, 11)):
        metrics.update(torch.from_numpy(pred[a:b]), torch.from_numpy(gt[a:b]), torch.from_numpy(valid[a:b]))
    got = metrics.compute()
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-9), name
    # the mean of per-batch RMSEs would be wrong here
    batch_rmse = [reference_metrics(pred[a:b], gt[a:b], valid[a:b])["rmse"] for a, b in ((0, 2), (2, 3), (3, 9), (9, 11))
                  if valid[a:b].any()]
    assert abs(np.mean(batch_rmse) - want["rmse"]) > 1e-3


def test_perfect_and_empty() -> None:
    gt = torch.rand(2, 1, 4, 4) + 1
    m = DepthMetrics()
    m.update(gt, gt, torch.ones_like(gt, dtype=torch.bool))
    r = m.compute()
    assert r["delta1"] == 1 and r["rmse"] == 0 and r["si_log"] == 0
    assert all(math.isnan(v) for v in DepthMetrics().compute().values())

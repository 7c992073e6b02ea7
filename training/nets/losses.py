"""The paper's landmark losses: coordinate MSE (eq. 1) and heatmap MSE (eq. 3). The feature
distillation loss (eq. 6) is in ``training/distill/loss.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _sample_mean(per_sample: torch.Tensor, sample_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B,) losses, weighted by (B,) sample weights when any differs from 1
    (all ones gives exactly the plain mean)."""
    if sample_weight is None or bool((sample_weight == 1).all()):
        return per_sample.mean()
    w = sample_weight.to(per_sample.dtype)
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)


def regression_loss(coords: torch.Tensor, target: torch.Tensor,
                    sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """loss1: MSE between (B, 2K) predicted and target coordinates in [0, 1]."""
    if sample_weight is None:
        return F.mse_loss(coords, target)
    return _sample_mean(((coords - target) ** 2).mean(dim=1), sample_weight)


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                 sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """loss2: MSE between (B, K, H, W) heatmaps; points with weight 0 (off the map) are ignored;
    ``sample_weight`` (B,) weighs whole faces (e.g. pseudo-labelled ones)."""
    se = (pred - target) ** 2
    if weight is not None:
        se = se * weight[:, :, None, None]
    if sample_weight is None:
        return se.mean()
    return _sample_mean(se.flatten(1).mean(dim=1), sample_weight)


def landmark_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], lambda_rh: float,
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """LOSS = lambda_rh * loss1 + loss2 (loss2 only when the model has a heatmap head)."""
    sw = batch.get("weight")
    l1 = regression_loss(out["coords"], batch["coords"], sw)
    total = lambda_rh * l1
    parts = {"loss_reg": float(l1.detach())}
    if "heatmaps" in out:
        l2 = heatmap_loss(out["heatmaps"], batch["heatmaps"], batch.get("hm_weight"), sw)
        total = total + l2
        parts["loss_hm"] = float(l2.detach())
    return total, parts

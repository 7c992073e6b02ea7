"""Crop pixels -> network input, identical for training, export checks and the app."""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(crops_bgr: np.ndarray | list[np.ndarray], mean: tuple[float, ...] = IMAGENET_MEAN,
             std: tuple[float, ...] = IMAGENET_STD) -> np.ndarray:
    """BGR uint8 crops (S, S, 3) or (B, S, S, 3) -> float32 RGB (B, 3, S, S), normalised."""
    x = np.asarray(crops_bgr)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (B, S, S, 3) BGR crops, got shape {x.shape}")
    x = x[..., ::-1].astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

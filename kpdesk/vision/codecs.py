"""Codecs: the one place that maps keypoints to training targets and network outputs back.

Coordinate spaces:
    pts_crop  pixel centres in the S x S network input (0-based).
    pts_norm  [0, 1] across the crop: 0 is the left edge of the first pixel, 1 the right
              edge of the last, i.e. ``pts_norm = (pts_crop + 0.5) / S``.
    pts_hm    pixel centres in the H x W heatmap: ``pts_hm = (pts_crop + 0.5) * H / S - 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

DECODE_MODES = ("regression", "heatmap", "fusion")


@dataclass(frozen=True)
class RegressionCodec:
    """Pixels in the crop <-> coordinates normalised to [0, 1]."""

    input_size: int

    def encode(self, pts_crop: np.ndarray) -> np.ndarray:
        """(..., K, 2) crop pixels -> (..., K, 2) normalised."""
        return (np.asarray(pts_crop, dtype=np.float64) + 0.5) / self.input_size

    def decode(self, pts_norm: np.ndarray) -> np.ndarray:
        """(..., K, 2) or flat (..., 2K) normalised -> (..., K, 2) crop pixels."""
        p = np.asarray(pts_norm, dtype=np.float64)
        if p.shape[-1] != 2:
            p = p.reshape(*p.shape[:-1], -1, 2)
        return p * self.input_size - 0.5


@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints <-> per-point Gaussian heatmaps (peak 1, std ``sigma`` heatmap pixels)."""

    input_size: int
    heatmap_size: int
    sigma: float = 1.5

    @property
    def stride(self) -> float:
        return self.input_size / self.heatmap_size

    def crop_to_hm(self, pts_crop: np.ndarray) -> np.ndarray:
        return (np.asarray(pts_crop, dtype=np.float64) + 0.5) / self.stride - 0.5

    def hm_to_crop(self, pts_hm: np.ndarray) -> np.ndarray:
        return (np.asarray(pts_hm, dtype=np.float64) + 0.5) * self.stride - 0.5

    def encode(self, pts_crop: np.ndarray, visible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(K, 2) crop pixels -> heatmaps (K, H, H) float32 and weights (K,) float32.

        A point outside the heatmap (or not visible) gets an all-zero map and weight 0.
        """
        pts_hm = self.crop_to_hm(pts_crop)
        k = pts_hm.shape[0]
        h = self.heatmap_size
        grid = np.arange(h, dtype=np.float32)
        dx = grid[None, :] - pts_hm[:, 0:1].astype(np.float32)  # (K, W)
        dy = grid[None, :] - pts_hm[:, 1:2].astype(np.float32)  # (K, H)
        inv = np.float32(1.0 / (2.0 * self.sigma**2))
        gx = np.exp(-(dx * dx) * inv)
        gy = np.exp(-(dy * dy) * inv)
        hm = gy[:, :, None] * gx[:, None, :]
        inside = (pts_hm[:, 0] >= -0.5) & (pts_hm[:, 0] <= h - 0.5) & (pts_hm[:, 1] >= -0.5) & (pts_hm[:, 1] <= h - 0.5)
        w = inside.astype(np.float32)
        if visible is not None:
            w *= np.asarray(visible, dtype=np.float32)
        hm *= w[:, None, None]
        assert hm.shape == (k, h, h)
        return hm.astype(np.float32), w

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (..., K, H, W) -> (pts_crop (..., K, 2), confidence (..., K)).

        Argmax, then a sub-pixel Newton step on the log-heatmap (exact for a Gaussian
        peak away from the border), clamped to half a pixel.

        Only the 3 x 3 neighbourhood of each peak is gathered and taken the log of (the
        step needs nothing else), with the same float32 operations in the same order as
        taking the log of the whole map, so the result is the same to the bit.
        """
        hm = np.asarray(heatmaps, dtype=np.float32)
        lead = hm.shape[:-2]
        h, w = hm.shape[-2:]
        flat = hm.reshape(-1, h * w)
        n = flat.shape[0]
        idx = flat.argmax(axis=1)
        py, px = np.divmod(idx, w)
        # The 3 x 3 neighbourhood of each peak, as flat indexes into all n maps. Around a peak
        # on the border some fall outside its map: they are clamped into the array and never
        # used, since no step is taken at the border.
        at = np.arange(n) * (h * w) + idx
        near_idx = np.minimum(np.maximum(at[:, None] + _neighbours(w), 0), n * h * w - 1)
        near = flat.reshape(-1)[near_idx]  # (n, 9); column 3 * (dy + 1) + (dx + 1)
        conf = near[:, 4]
        lg = np.log(np.maximum(near, 1e-10))
        c = lg[:, 4]
        dx = 0.5 * (lg[:, 5] - lg[:, 3])
        dy = 0.5 * (lg[:, 7] - lg[:, 1])
        dxx = lg[:, 5] - 2 * c + lg[:, 3]
        dyy = lg[:, 7] - 2 * c + lg[:, 1]
        dxy = 0.25 * (lg[:, 8] - lg[:, 6] - lg[:, 2] + lg[:, 0])
        det = dxx * dyy - dxy * dxy
        interior = _inside(h, w)[idx] & (det > 1e-8) & (dxx < 0) & (dyy < 0)
        safe = np.where(interior, det, 1.0)
        ox = np.where(interior, -(dyy * dx - dxy * dy) / safe, 0.0)
        oy = np.where(interior, -(dxx * dy - dxy * dx) / safe, 0.0)
        # min / max rather than np.clip: the same values, without clip's per-call overhead.
        pts_hm = np.empty((n, 2), np.float64)
        np.add(px, np.minimum(np.maximum(ox, -0.5), 0.5), out=pts_hm[:, 0])
        np.add(py, np.minimum(np.maximum(oy, -0.5), 0.5), out=pts_hm[:, 1])
        pts_crop = self.hm_to_crop(pts_hm)
        return pts_crop.reshape(*lead, 2), conf.reshape(lead)


@lru_cache(maxsize=8)
def _neighbours(w: int) -> np.ndarray:
    """Flat offsets of a 3 x 3 neighbourhood in rows of width w, row by row."""
    off = np.array([dy * w + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    off.setflags(write=False)
    return off


@lru_cache(maxsize=8)
def _inside(h: int, w: int) -> np.ndarray:
    """(h * w,) bool: the flat positions whose 3 x 3 neighbourhood lies inside the map."""
    m = np.zeros((h, w), bool)
    m[1:-1, 1:-1] = True
    m = m.reshape(-1)
    m.setflags(write=False)
    return m


@dataclass(frozen=True)
class LandmarkDecoder:
    """Network outputs -> crop-pixel keypoints and per-point confidence.

    mode:
        ``regression``: the sigmoid coordinate head alone.
        ``heatmap``: heatmap peak with sub-pixel refinement.
        ``fusion``: per point, heatmap and regression mixed by the heatmap's confidence
        (w = clip((conf - lo) / (hi - lo), 0, 1)); a confident peak wins, a weak one
        (occluded, blurred) falls back to the regression estimate.
    Confidence is the heatmap peak when a heatmap exists, else 1.
    """

    input_size: int
    mode: str = "regression"
    heatmap_size: int | None = None
    sigma: float = 1.5
    fusion_lo: float = 0.2
    fusion_hi: float = 0.6

    def __post_init__(self) -> None:
        if self.mode not in DECODE_MODES:
            raise ValueError(f"decode mode {self.mode!r} not in {DECODE_MODES}")
        if self.mode != "regression" and not self.heatmap_size:
            raise ValueError(f"decode mode {self.mode!r} needs a heatmap_size")

    @cached_property
    def regression(self) -> RegressionCodec:
        return RegressionCodec(self.input_size)

    @cached_property
    def heatmap(self) -> HeatmapCodec:
        if not self.heatmap_size:
            raise ValueError("this decoder has no heatmap")
        return HeatmapCodec(self.input_size, self.heatmap_size, self.sigma)

    def decode(self, coords: np.ndarray | None, heatmaps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """coords (B, 2K) in [0, 1] and/or heatmaps (B, K, H, W) -> (B, K, 2) crop px, (B, K)."""
        reg = self.regression.decode(coords) if coords is not None else None
        if heatmaps is not None and self.heatmap_size:
            hm_pts, conf = self.heatmap.decode(heatmaps)
        else:
            hm_pts, conf = None, None
        if self.mode == "regression" or hm_pts is None:
            if reg is None:
                raise ValueError("regression decoding needs the coordinate output")
            c = conf if conf is not None else np.ones(reg.shape[:-1], dtype=np.float32)
            return reg, c
        if self.mode == "heatmap" or reg is None:
            return hm_pts, conf
        w = np.minimum(np.maximum((conf - self.fusion_lo) / (self.fusion_hi - self.fusion_lo), 0.0), 1.0)[..., None]
        return w * hm_pts + (1.0 - w) * reg, conf

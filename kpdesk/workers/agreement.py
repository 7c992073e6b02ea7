"""How far apart two variants' landmarks are on the same frame (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpdesk.vision.schema import KeypointSchema

# iBUG-68 -> the 5 MTFL points (eye centres, nose tip, mouth corners).
_IBUG68_TO_5 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))


@dataclass(frozen=True)
class Agreement:
    """Mean point-to-point distance between two predictions of the same face.

    Attributes:
        mean_px: in image pixels.
        mean_pct_iod: in percent of the inter-ocular distance, or None when the points
            have no ocular pair.
        num_points: points compared.
    """

    mean_px: float
    mean_pct_iod: float | None
    num_points: int

    def text(self) -> str:
        if self.mean_pct_iod is not None:
            return f"{self.mean_pct_iod:.1f}% IOD ({self.mean_px:.1f} px, {self.num_points} pts)"
        return f"{self.mean_px:.1f} px ({self.num_points} pts)"


def _to_5(pts: np.ndarray) -> np.ndarray:
    return np.stack([pts[list(g)].mean(axis=0) for g in _IBUG68_TO_5])


def _common(pts: np.ndarray, schema: KeypointSchema, other_k: int) -> tuple[np.ndarray, tuple[int, int] | None] | None:
    k = len(pts)
    if k == other_k:
        return pts, schema.ocular
    if k == 68 and other_k == 5:
        return _to_5(pts), (0, 1)
    if k == 5 and other_k == 68:
        return pts, schema.ocular or (0, 1)
    return None


def agreement(pts_a: np.ndarray, schema_a: KeypointSchema, pts_b: np.ndarray,
              schema_b: KeypointSchema) -> Agreement | None:
    """Compare (Ka, 2) and (Kb, 2) landmarks in image pixels; None if they share no points.

    Equal point counts are compared point by point; 68 vs 5 points are compared on the
    5 MTFL points (68-point eyes reduced to their centres). The inter-ocular distance is
    the mean of the two predictions' own.
    """
    a = _common(np.asarray(pts_a, np.float64), schema_a, len(pts_b))
    b = _common(np.asarray(pts_b, np.float64), schema_b, len(pts_a))
    if a is None or b is None:
        return None
    pa, oc_a = a
    pb, oc_b = b
    if len(pa) != len(pb) or len(pa) == 0:
        return None
    d = np.linalg.norm(pa - pb, axis=1)
    mean_px = float(d.mean())
    pct = None
    oc = oc_a or oc_b
    if oc is not None:
        iod = 0.5 * (np.linalg.norm(pa[oc[0]] - pa[oc[1]]) + np.linalg.norm(pb[oc[0]] - pb[oc[1]]))
        if iod > 1e-6:
            pct = 100.0 * mean_px / float(iod)
    return Agreement(mean_px, pct, len(pa))

"""Square face crops as similarity transforms, and their exact inverses.

All coordinates are 0-based pixel centres (x = 0 is the centre of the first column),
which is also what ``cv2.warpAffine`` uses, so a point mapped with the crop matrix
lands on the same pixel the warped image shows it at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropSpec:
    """A square crop of an image: centre and side in image pixels, rotation in degrees.

    A positive ``angle_deg`` rotates the image content counter-clockwise in the crop
    (the crop window itself is turned clockwise by the same angle).
    """

    center_x: float
    center_y: float
    side: float
    angle_deg: float = 0.0

    def matrix(self, out_size: int) -> np.ndarray:
        """The (2, 3) affine map from image pixels to crop pixels of an ``out_size`` crop."""
        if self.side <= 0:
            raise ValueError(f"crop side must be positive, got {self.side}")
        s = out_size / self.side
        a = math.radians(self.angle_deg)
        cos, sin = math.cos(a) * s, math.sin(a) * s
        # Rotate counter-clockwise in image coordinates (y down): [cos, sin; -sin, cos].
        c = (out_size - 1) / 2.0
        m = np.array(
            [
                [cos, sin, c - cos * self.center_x - sin * self.center_y],
                [-sin, cos, c + sin * self.center_x - cos * self.center_y],
            ],
            dtype=np.float64,
        )
        return m

    def inverse_matrix(self, out_size: int) -> np.ndarray:
        """The (2, 3) affine map from crop pixels back to image pixels."""
        return invert_affine(self.matrix(out_size))

    def box_xyxy(self) -> tuple[float, float, float, float]:
        """Axis-aligned box of the (unrotated) crop window in image pixels."""
        h = self.side / 2.0
        return (self.center_x - h, self.center_y - h, self.center_x + h, self.center_y + h)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Exact inverse of a (2, 3) affine matrix (closed form: a general 3 x 3 inverse costs
    several times more per frame and agrees to ~1e-12 px).

    Raises:
        numpy.linalg.LinAlgError: the matrix is singular.
    """
    (a, b, tx), (c, d, ty) = np.asarray(m, dtype=np.float64).tolist()
    det = a * d - b * c
    if det == 0.0:
        raise np.linalg.LinAlgError(f"affine matrix is singular: {[[a, b, tx], [c, d, ty]]}")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def apply_affine(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map points (..., 2) with a (2, 3) affine matrix."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp_crop(image: np.ndarray, spec: CropSpec, out_size: int, border_value: int = 0) -> np.ndarray:
    """Cut the crop out of ``image`` (H, W[, C]) -> (out_size, out_size[, C])."""
    return cv2.warpAffine(
        image,
        spec.matrix(out_size),
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border_value, border_value, border_value),
    )


def crop_params_from_points(
    pts_img: np.ndarray,
    scale: float,
    mask: np.ndarray | None = None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> CropSpec:
    """The canonical crop for a face: centred on its landmark bounding box, side
    ``scale`` times the box's longer side. Training, tracking and evaluation all use this.

    Args:
        pts_img: (K, 2) landmarks in image pixels.
        scale: crop side / longer side of the landmark box.
        mask: optional (K,) bool, which points to use.
        offset: (dx, dy) crop centre minus box centre, in units of the box's longer side
            (kpdesk's own models: (0, 0); an imported model may have been trained on crops
            placed otherwise, e.g. lower on the face).
    """
    p = np.asarray(pts_img, dtype=np.float64)
    if mask is not None:
        p = p[np.asarray(mask, dtype=bool)]
    if len(p) == 0:
        raise ValueError("no points to build a crop from")
    lo, hi = p.min(axis=0), p.max(axis=0)
    box = float(max(hi - lo))
    cx, cy = (lo + hi) / 2.0
    return CropSpec(float(cx + offset[0] * box), float(cy + offset[1] * box), max(box * scale, 1.0), 0.0)


def crop_from_box(box_xyxy: tuple[float, float, float, float] | np.ndarray, scale: float,
                  shift_y: float = 0.0) -> CropSpec:
    """A square crop around a detector box: side ``scale`` times the longer box side,
    centre moved down by ``shift_y`` times that side (detector boxes sit higher on the
    face than the landmark box)."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    side0 = max(x1 - x0, y1 - y0)
    if side0 <= 0:
        raise ValueError(f"degenerate face box {box_xyxy}")
    return CropSpec((x0 + x1) / 2.0, (y0 + y1) / 2.0 + shift_y * side0, side0 * scale, 0.0)


def jitter_crop(spec: CropSpec, rng: np.random.Generator, scale_range: float, shift_range: float,
                max_angle_deg: float) -> CropSpec:
    """Random scale (x in [1 - s, 1 + s]), shift (fraction of the side) and rotation."""
    s = 1.0 + rng.uniform(-scale_range, scale_range)
    dx, dy = rng.uniform(-shift_range, shift_range, size=2) * spec.side
    ang = rng.uniform(-max_angle_deg, max_angle_deg) if max_angle_deg > 0 else 0.0
    return CropSpec(spec.center_x + dx, spec.center_y + dy, spec.side * s, spec.angle_deg + ang)


def eye_angle_deg(pts_img: np.ndarray, left: tuple[int, ...], right: tuple[int, ...]) -> float:
    """Roll of the face: the angle of the line between the eye centroids, in degrees,
    with the sign convention of ``CropSpec.angle_deg`` (the crop that levels the eyes)."""
    l_c = np.asarray(pts_img)[list(left)].mean(axis=0)
    r_c = np.asarray(pts_img)[list(right)].mean(axis=0)
    d = r_c - l_c
    return float(math.degrees(math.atan2(d[1], d[0])))

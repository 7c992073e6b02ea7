"""Synthetic perturbations of a labelled face, for robustness measurements (the app's
robustness lab and ``training bench`` both use these, so their numbers mean the same).

Each perturbation takes the image, the face's landmarks and its canonical crop, and
returns a new image and / or crop; the labels follow through the crop matrix, so the
geometry never needs re-labelling:

    occlusion  a flat rectangle of a seeded colour covering ``severity`` % of the landmark
               box's area (same aspect ratio), at a placement: ``random`` (seeded, inside the
               box), ``eyes``, ``nose``, ``mouth``, ``centre``, ``left`` or ``right`` half.
    rotation   the face turned ``severity`` degrees inside an upright crop of the usual size
               (the sign alternates from face to face), as a roll-unaware detector would crop it.
    blur       Gaussian blur, sigma ``severity`` % of the landmark box's longer side.
    lowlight   darkening: gain ``1 - 0.2 s``, gamma ``1 + 1.2 s`` and Gaussian sensor noise of
               std ``6 s`` grey levels (s = ``severity``; s = 1 is ``training bench``'s low light).

Randomness comes from ``np.random.default_rng((seed, salt, index))``: the same face gets
the same perturbation in every run and for every model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from kpdesk.vision.transforms import CropSpec

KINDS = ("occlusion", "rotation", "blur", "lowlight")
PLACEMENTS = ("random", "eyes", "nose", "mouth", "centre", "left", "right")
# The severities a sweep runs by default, and their unit (for plots and tables).
DEFAULT_SEVERITIES: dict[str, tuple[float, ...]] = {
    "occlusion": (0, 10, 20, 30, 40, 50),
    "rotation": (0, 10, 20, 30, 40, 50, 60),
    "blur": (0, 1, 2, 3, 4, 6, 8),
    "lowlight": (0, 0.5, 1, 1.5, 2, 2.5),
}
UNITS = {"occlusion": "% of face area", "rotation": "degrees", "blur": "sigma, % of face size",
         "lowlight": "darkening level"}
LIMITS = {"occlusion": (0.0, 100.0), "rotation": (-180.0, 180.0), "blur": (0.0, 50.0), "lowlight": (0.0, 4.0)}
_SALT = {"occlusion": 11, "lowlight": 13}

# Landmark groups that anchor the named placements, per point count (iBUG 68, MTFL 5).
_ANCHORS: dict[int, dict[str, tuple[int, ...]]] = {
    68: {"eyes": tuple(range(36, 48)), "nose": tuple(range(27, 36)), "mouth": tuple(range(48, 68))},
    5: {"eyes": (0, 1), "nose": (2,), "mouth": (3, 4)},
}


def face_box(pts_img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) corners of the landmark bounding box, each (2,)."""
    p = np.asarray(pts_img, dtype=np.float64)
    return p.min(axis=0), p.max(axis=0)


def occluder_rect(pts_img: np.ndarray, fraction: float, placement: str = "random",
                  rng: np.random.Generator | None = None) -> tuple[float, float, float, float]:
    """The occluding rectangle (x0, y0, x1, y1) in image pixels: ``fraction`` of the landmark
    box's area, same aspect ratio, inside the box.

    ``random`` draws the top-left corner uniformly (x, then y) from ``rng``; the anatomical
    placements centre it on a landmark group (iBUG 68 or MTFL 5 points; other layouts use
    fixed heights of the box) and shift it back inside the box where it would stick out.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"occlusion fraction must be in [0, 1], got {fraction}")
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; known: {PLACEMENTS}")
    lo, hi = face_box(pts_img)
    w, h = hi - lo
    ow, oh = w * math.sqrt(fraction), h * math.sqrt(fraction)
    if placement == "random":
        rng = rng if rng is not None else np.random.default_rng()
        x0, y0 = lo[0] + rng.uniform(0, w - ow), lo[1] + rng.uniform(0, h - oh)
        return float(x0), float(y0), float(x0 + ow), float(y0 + oh)
    centre = (lo + hi) / 2.0
    if placement == "left":
        cx, cy = lo[0] + ow / 2.0, centre[1]
    elif placement == "right":
        cx, cy = hi[0] - ow / 2.0, centre[1]
    elif placement == "centre":
        cx, cy = centre
    else:
        group = _ANCHORS.get(len(pts_img), {}).get(placement)
        if group is not None:
            cx, cy = np.asarray(pts_img, dtype=np.float64)[list(group)].mean(axis=0)
        else:
            cx, cy = centre[0], lo[1] + h * {"eyes": 0.3, "nose": 0.55, "mouth": 0.8}[placement]
    x0 = float(np.clip(cx - ow / 2.0, lo[0], hi[0] - ow))
    y0 = float(np.clip(cy - oh / 2.0, lo[1], hi[1] - oh))
    return x0, y0, x0 + ow, y0 + oh


def paint_rect(img: np.ndarray, rect: tuple[float, float, float, float], color: tuple[int, ...]) -> np.ndarray:
    """A copy of ``img`` with the rectangle (rounded to whole pixels, clipped) filled with ``color``."""
    out = img.copy()
    xa, ya, xb, yb = (int(round(v)) for v in rect)
    out[max(ya, 0):max(yb, 0), max(xa, 0):max(xb, 0)] = color
    return out


def rotate_crop(spec: CropSpec, angle_deg: float) -> CropSpec:
    """The same crop window turned so that the face appears rotated by ``angle_deg`` in it."""
    return CropSpec(spec.center_x, spec.center_y, spec.side, spec.angle_deg + angle_deg)


def blur_face(img: np.ndarray, pts_img: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Gaussian blur with sigma ``sigma_fraction`` of the landmark box's longer side (at least 0.5 px)."""
    lo, hi = face_box(pts_img)
    sigma = sigma_fraction * float(max(hi - lo))
    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(sigma, 0.5))


def low_light(img: np.ndarray, gain: float, gamma: float, noise_std: float,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """``255 * gain * (img / 255) ** gamma`` plus Gaussian noise of std ``noise_std``, clipped, uint8."""
    x = img.astype(np.float32) / 255.0
    x = 255.0 * gain * x**gamma
    if noise_std > 0:
        rng = rng if rng is not None else np.random.default_rng()
        x = x + rng.normal(0.0, noise_std, size=img.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def low_light_params(level: float) -> tuple[float, float, float]:
    """(gain, gamma, noise std) of a darkening level (0 = unchanged, 1 = ``training bench``'s)."""
    return 1.0 - 0.2 * level, 1.0 + 1.2 * level, 6.0 * level


@dataclass(frozen=True)
class Perturbation:
    """One kind of perturbation at one severity (see the module docstring for the units).

    ``apply`` has the signature of ``training.evaluation.evaluate.Perturb``; severity 0 is the clean face.
    """

    kind: str
    severity: float
    placement: str = "random"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown perturbation {self.kind!r}; known: {KINDS}")
        lo, hi = LIMITS[self.kind]
        if not lo <= self.severity <= hi:
            raise ValueError(f"{self.kind} severity must be in [{lo:g}, {hi:g}] ({UNITS[self.kind]}), "
                             f"got {self.severity:g}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}; known: {PLACEMENTS}")

    @property
    def label(self) -> str:
        extra = f" ({self.placement})" if self.kind == "occlusion" else ""
        return f"{self.kind} {self.severity:g}{extra}"

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, _SALT.get(self.kind, 0), index))

    def apply(self, img: np.ndarray, pts_img: np.ndarray, spec: CropSpec, index: int) -> tuple[np.ndarray, CropSpec]:
        """(image, canonical crop) of face number ``index`` -> (perturbed image, crop to cut)."""
        s = self.severity
        if s == 0:
            return img, spec
        if self.kind == "occlusion":
            rng = self.rng(index)
            rect = occluder_rect(pts_img, s / 100.0, self.placement, rng)
            color = rng.integers(0, 256, size=3)
            return paint_rect(img, rect, color), spec
        if self.kind == "rotation":
            return img, rotate_crop(spec, s if index % 2 == 0 else -s)
        if self.kind == "blur":
            return blur_face(img, pts_img, s / 100.0), spec
        gain, gamma, noise = low_light_params(s)
        return low_light(img, gain, gamma, noise, self.rng(index)), spec


def parse_severities(text: str, kind: str) -> tuple[float, ...]:
    """'0, 10, 20' -> (0.0, 10.0, 20.0), checked against the kind's limits; sorted, unique."""
    try:
        vals = sorted({float(v) for v in text.replace(";", ",").split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"severities must be numbers separated by commas, got {text!r}") from None
    if not vals:
        raise ValueError("no severities given")
    for v in vals:
        Perturbation(kind, v)  # raises with the limits
    return tuple(vals)

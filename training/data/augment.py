"""Training augmentation. All geometry goes through kpdesk.vision transforms, so the crop a
network sees in training is built exactly like the one the app builds at run time."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from kpdesk.vision.schema import KeypointSchema
from kpdesk.vision.transforms import CropSpec, apply_affine, crop_params_from_points, jitter_crop, warp_crop


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges. ``enabled=False`` gives the canonical validation crop."""

    enabled: bool = True
    scale: float = 0.15  # crop side x [1 - s, 1 + s]
    shift: float = 0.08  # centre shift, fraction of the crop side
    rotate_deg: float = 30.0
    rotate_p: float = 0.6
    flip_p: float = 0.5
    color_p: float = 0.8
    blur_p: float = 0.2
    occlusion_p: float = 0.4
    gray_p: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


def _color(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness, saturation and white balance as one 3x4 colour matrix (they are
    all affine before the clip), then an optional gamma curve as a lookup table: the same
    draws as applying them one by one, about 10x cheaper."""
    contrast, bright = rng.uniform(0.6, 1.4), rng.uniform(-30, 30)
    sat = rng.uniform(0.6, 1.4)
    wb = rng.uniform(0.9, 1.1, size=3)
    # z = diag(wb) @ (sat * I + (1 - sat) / 3 * ones) @ (contrast * x + bright)
    mix = sat * np.eye(3) + (1.0 - sat) / 3.0
    lin = wb[:, None] * mix * contrast
    off = wb * mix.sum(axis=1) * bright
    out = cv2.transform(img, np.hstack([lin, off[:, None]]).astype(np.float32))
    if rng.random() < 0.3:  # low light / overexposure via gamma
        g = rng.uniform(0.5, 2.2)
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    return out


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5, 7]))
        return cv2.GaussianBlur(img, (k, k), 0)
    k = int(rng.integers(5, 12))
    kern = np.zeros((k, k), np.float32)
    kern[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kern = cv2.warpAffine(kern, rot, (k, k))
    kern /= max(kern.sum(), 1e-6)
    return cv2.filter2D(img, -1, kern)


def occlude(img: np.ndarray, rng: np.random.Generator, area: tuple[float, float] = (0.05, 0.3)) -> np.ndarray:
    """Paint a random textured patch or bar over part of a crop (in place on a copy)."""
    out = img.copy()
    h, w = out.shape[:2]
    a = rng.uniform(*area) * h * w
    if rng.random() < 0.35:  # a bar across the face
        horizontal = rng.random() < 0.5
        thick = int(np.clip(a / (w if horizontal else h), 4, (h if horizontal else w) * 0.5))
        pos = int(rng.integers(0, (h if horizontal else w) - thick + 1))
        sl = (slice(pos, pos + thick), slice(None)) if horizontal else (slice(None), slice(pos, pos + thick))
    else:
        ar = rng.uniform(0.4, 2.5)
        ph = int(np.clip(np.sqrt(a / ar), 4, h))
        pw = int(np.clip(np.sqrt(a * ar), 4, w))
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        sl = (slice(y, y + ph), slice(x, x + pw))
    region = out[sl]
    kind = rng.random()
    if kind < 0.35:
        region[:] = rng.integers(0, 256, size=3)
    elif kind < 0.7:
        noise = rng.integers(0, 256, size=(max(1, region.shape[0] // 4), max(1, region.shape[1] // 4), 3))
        region[:] = cv2.resize(noise.astype(np.uint8), (region.shape[1], region.shape[0]),
                               interpolation=cv2.INTER_LINEAR)
    else:  # a shuffled piece of the same image (skin-like texture)
        src = cv2.resize(np.ascontiguousarray(img[::-1, ::-1]), (region.shape[1], region.shape[0]))
        region[:] = src
    return out


def flip_with_offset(pts_crop: np.ndarray, schema: KeypointSchema, out_size: int, matrix: np.ndarray,
                     label_offset: tuple[float, float]) -> np.ndarray:
    """Mirror crop points whose labels sit ``label_offset`` image pixels off the mirror-symmetric position.

    A plain mirror turns a label convention of +dx into -dx, so a data set annotated a fraction of a pixel
    to the right (AFW and HELEN are: ``python -m training label-offset``) would teach both. Here the
    offset is taken off, the symmetric points mirrored, and the same offset put back as it reads in the
    mirrored image: the flipped face keeps the convention of its source.
    """
    off = np.asarray(label_offset, dtype=np.float64)
    if not off.any():
        return schema.flip_points(pts_crop, out_size)
    lin = np.asarray(matrix, dtype=np.float64)[:, :2]
    mirror = np.diag([-1.0, 1.0])
    return schema.flip_points(pts_crop - lin @ off, out_size) + mirror @ lin @ mirror @ off


def make_crop(image: np.ndarray, pts_img: np.ndarray, schema: KeypointSchema, out_size: int,
              cfg: AugmentConfig, rng: np.random.Generator,
              label_offset: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, CropSpec]:
    """Image + (K, 2) points -> augmented crop (S, S, 3) uint8, points in crop pixels, the crop used.

    ``label_offset``: (dx, dy) image pixels between this face's labels and the mirror-symmetric
    position (``flip_with_offset``); (0, 0) mirrors plainly."""
    spec = crop_params_from_points(pts_img, schema.crop_scale)
    if cfg.enabled:
        ang = cfg.rotate_deg if rng.random() < cfg.rotate_p else 0.0
        spec = jitter_crop(spec, rng, cfg.scale, cfg.shift, ang)
    crop = warp_crop(image, spec, out_size)
    pts_crop = apply_affine(pts_img, spec.matrix(out_size))
    if not cfg.enabled:
        return crop, pts_crop, spec
    has_flip = list(schema.flip_perm) != list(range(schema.num_points))
    if has_flip and rng.random() < cfg.flip_p:
        crop = np.ascontiguousarray(crop[:, ::-1])
        pts_crop = flip_with_offset(pts_crop, schema, out_size, spec.matrix(out_size), label_offset)
    if rng.random() < cfg.color_p:
        crop = _color(crop, rng)
    if rng.random() < cfg.gray_p:
        crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < cfg.blur_p:
        crop = _blur(crop, rng)
    if rng.random() < cfg.occlusion_p:
        crop = occlude(crop, rng)
    return crop, pts_crop, spec

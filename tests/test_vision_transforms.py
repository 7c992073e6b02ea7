"""Crop transforms: exact inverses, agreement with the warped image, roll convention."""

from __future__ import annotations

import numpy as np
import pytest

from kpdesk.vision.transforms import (
    CropSpec,
    apply_affine,
    crop_from_box,
    crop_params_from_points,
    eye_angle_deg,
    invert_affine,
    warp_crop,
)


@pytest.mark.parametrize("angle", [0.0, 12.5, -35.0, 90.0, 179.0])
@pytest.mark.parametrize("out_size", [64, 128])
def test_crop_then_inverse_returns_points(angle: float, out_size: int) -> None:
    rng = np.random.default_rng(0)
    spec = CropSpec(center_x=311.3, center_y=207.9, side=173.4, angle_deg=angle)
    pts_img = rng.uniform(0, 640, size=(68, 2))
    pts_crop = apply_affine(pts_img, spec.matrix(out_size))
    back = apply_affine(pts_crop, spec.inverse_matrix(out_size))
    assert np.abs(back - pts_img).max() < 1e-3
    assert np.allclose(invert_affine(invert_affine(spec.matrix(out_size))), spec.matrix(out_size))


def test_crop_centre_maps_to_crop_centre_and_side_to_size() -> None:
    spec = CropSpec(100.0, 50.0, 80.0, 30.0)
    m = spec.matrix(64)
    assert np.allclose(apply_affine([100.0, 50.0], m), [31.5, 31.5])
    # A segment as long as the side spans the crop (scale = out / side), rotation aside.
    a, b = apply_affine(np.array([[60.0, 50.0], [140.0, 50.0]]), m)
    assert np.linalg.norm(b - a) == pytest.approx(64.0)


def test_warped_pixel_lands_where_the_matrix_says() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    img[120, 170] = 255  # one bright pixel at x=170, y=120
    spec = CropSpec(160.0, 110.0, 64.0, 20.0)
    crop = warp_crop(img, spec, 64)
    expected = apply_affine([170.0, 120.0], spec.matrix(64))
    gray = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[: gray.shape[0], : gray.shape[1]]
    centroid = np.array([(xs * gray).sum(), (ys * gray).sum()]) / gray.sum()
    assert np.abs(centroid - expected).max() < 0.25


def test_crop_params_from_points_centre_and_side() -> None:
    pts = np.array([[10.0, 20.0], [50.0, 20.0], [30.0, 100.0]])
    spec = crop_params_from_points(pts, 1.5)
    assert (spec.center_x, spec.center_y) == (30.0, 60.0)
    assert spec.side == pytest.approx(120.0)  # 1.5 x the longer side (80)
    masked = crop_params_from_points(pts, 1.0, mask=np.array([True, True, False]))
    assert masked.side == pytest.approx(40.0)


def test_crop_from_box_shifts_down() -> None:
    spec = crop_from_box((0, 0, 100, 80), 1.2, shift_y=0.1)
    assert (spec.center_x, spec.center_y, spec.side) == (50.0, 50.0, pytest.approx(120.0))


def test_eye_angle_levels_the_eyes() -> None:
    """Rotating the crop by eye_angle_deg makes the eye line horizontal in the crop."""
    left, right = np.array([100.0, 100.0]), np.array([160.0, 130.0])  # right eye lower: face rolled
    pts = np.stack([left, right])
    angle = eye_angle_deg(pts, (0,), (1,))
    assert angle == pytest.approx(np.degrees(np.arctan2(30, 60)))
    in_crop = apply_affine(pts, CropSpec(130.0, 115.0, 100.0, angle).matrix(64))
    assert in_crop[0, 1] == pytest.approx(in_crop[1, 1], abs=1e-9)
    assert in_crop[1, 0] > in_crop[0, 0]


def test_degenerate_crops_raise() -> None:
    with pytest.raises(ValueError):
        CropSpec(0, 0, 0).matrix(64)
    with pytest.raises(ValueError):
        crop_from_box((5, 5, 5, 5), 1.5)
    with pytest.raises(ValueError):
        crop_params_from_points(np.zeros((0, 2)), 1.5)

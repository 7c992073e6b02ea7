"""Perturbations for robustness measurements (kpdesk.vision.perturb), shared by the app's
robustness lab and ``training bench``."""

from __future__ import annotations

import numpy as np
import pytest

from kpdesk.vision.perturb import (
    DEFAULT_SEVERITIES,
    KINDS,
    PLACEMENTS,
    Perturbation,
    occluder_rect,
    parse_severities,
)
from kpdesk.vision.transforms import CropSpec, apply_affine, crop_params_from_points


def face_points() -> np.ndarray:
    """68 points in an iBUG-like arrangement: a 100 x 120 px box at (50, 40)."""
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(50, 150, 68), rng.uniform(40, 160, 68)])
    pts[0], pts[1] = (50, 40), (150, 160)  # the box corners
    pts[36:48] = np.column_stack([np.linspace(70, 130, 12), np.full(12, 70.0)])  # eyes at y = 70
    pts[48:68] = np.column_stack([np.linspace(80, 120, 20), np.full(20, 140.0)])  # mouth at y = 140
    return pts


def textured(h: int = 220, w: int = 220) -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.integers(40, 216, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_occluder_covers_the_asked_share_of_the_face_box_inside_it(placement: str, fraction: float) -> None:
    pts = face_points()
    x0, y0, x1, y1 = occluder_rect(pts, fraction, placement, np.random.default_rng(0))
    assert (x1 - x0) * (y1 - y0) == pytest.approx(fraction * 100 * 120, rel=1e-9)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(100 / 120)
    assert 50 - 1e-9 <= x0 and x1 <= 150 + 1e-9 and 40 - 1e-9 <= y0 and y1 <= 160 + 1e-9


def test_placements_go_where_they_say() -> None:
    pts = face_points()
    eyes = occluder_rect(pts, 0.1, "eyes")
    mouth = occluder_rect(pts, 0.1, "mouth")
    left, right = occluder_rect(pts, 0.2, "left"), occluder_rect(pts, 0.2, "right")
    assert (eyes[1] + eyes[3]) / 2 == pytest.approx(70.0)
    assert (mouth[1] + mouth[3]) / 2 == pytest.approx(140.0)
    assert left[0] == pytest.approx(50.0) and right[2] == pytest.approx(150.0)
    r1 = occluder_rect(pts, 0.3, "random", np.random.default_rng((0, 11, 5)))
    r2 = occluder_rect(pts, 0.3, "random", np.random.default_rng((0, 11, 5)))
    r3 = occluder_rect(pts, 0.3, "random", np.random.default_rng((0, 11, 6)))
    assert r1 == r2 and r1 != r3


@pytest.mark.parametrize("severity", [10, 30, 50])
def test_occlusion_paints_only_its_rectangle_and_is_reproducible(severity: float) -> None:
    img, pts = textured(), face_points()
    spec = crop_params_from_points(pts, 1.5)
    p = Perturbation("occlusion", severity, "eyes", seed=4)
    out, spec2 = p.apply(img, pts, spec, 3)
    assert spec2 == spec and out is not img
    changed = np.any(out != img, axis=2)
    area = changed.sum()
    assert area == pytest.approx(severity / 100 * 100 * 120, rel=0.06)
    ys, xs = np.nonzero(changed)
    oh = 120 * np.sqrt(severity / 100)
    assert abs(ys.mean() - max(70.0, 40 + oh / 2)) < 1.0  # centred on the eyes, kept inside the box
    colours = np.unique(out[changed].reshape(-1, 3), axis=0)
    assert len(colours) == 1  # one flat colour
    again, _ = p.apply(img, pts, spec, 3)
    assert np.array_equal(out, again)
    other, _ = p.apply(img, pts, spec, 4)
    assert not np.array_equal(out[changed], other[changed])  # another face, another colour


def test_rotation_turns_the_face_in_the_crop_with_alternating_sign() -> None:
    pts, spec = face_points(), CropSpec(100.0, 100.0, 180.0)
    p = Perturbation("rotation", 30)
    img = textured()
    a, spec_a = p.apply(img, pts, spec, 0)
    b, spec_b = p.apply(img, pts, spec, 1)
    assert a is img and b is img
    assert spec_a.angle_deg == 30 and spec_b.angle_deg == -30 and spec_a.side == spec.side
    # Labels follow through the crop: the eye line is tilted by 30 degrees in the crop.
    eyes = apply_affine(pts[[36, 47]], spec_a.matrix(128))
    d = eyes[1] - eyes[0]
    assert abs(np.degrees(np.arctan2(-d[1], d[0]))) == pytest.approx(30.0, abs=1e-6)


def _detail(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img.astype(np.float64), axis=1)).mean())


def test_blur_and_low_light_grow_with_severity() -> None:
    img, pts, spec = textured(), face_points(), CropSpec(100.0, 100.0, 180.0)
    details = [_detail(Perturbation("blur", s).apply(img, pts, spec, 0)[0]) for s in (0, 1, 3, 8)]
    assert details == sorted(details, reverse=True) and details[-1] < 0.3 * details[0]
    means = [Perturbation("lowlight", s).apply(img, pts, spec, 0)[0].mean() for s in (0, 0.5, 1, 2.5)]
    assert means == sorted(means, reverse=True) and means[-1] < 0.35 * means[0]
    assert Perturbation("lowlight", 0).apply(img, pts, spec, 0)[0] is img


def test_severity_zero_is_the_clean_face_for_every_kind() -> None:
    img, pts, spec = textured(), face_points(), CropSpec(100.0, 100.0, 180.0)
    for kind in KINDS:
        out, s = Perturbation(kind, 0).apply(img, pts, spec, 7)
        assert out is img and s == spec
        assert DEFAULT_SEVERITIES[kind][0] == 0


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown perturbation"):
        Perturbation("fog", 1)
    with pytest.raises(ValueError, match="occlusion severity must be in"):
        Perturbation("occlusion", 150)
    with pytest.raises(ValueError, match="placement"):
        Perturbation("occlusion", 10, "hat")
    assert parse_severities("30, 0,10;20", "occlusion") == (0.0, 10.0, 20.0, 30.0)
    with pytest.raises(ValueError, match="numbers"):
        parse_severities("0, ten", "rotation")
    with pytest.raises(ValueError, match="blur severity"):
        parse_severities("0, 90", "blur")


def test_training_bench_runs_these_perturbations() -> None:
    from training.evaluation.bench import PERTURBATIONS, make_perturbation

    img, pts = textured(), face_points()
    spec = crop_params_from_points(pts, 1.5)
    for name in PERTURBATIONS:
        fn = make_perturbation(name, seed=2)
        assert getattr(fn, "__self__", None).__class__ is Perturbation, name
        out, s = fn(img, pts, spec, 5)
        ref, s_ref = fn.__self__.apply(img, pts, spec, 5)
        assert np.array_equal(out, ref) and s == s_ref

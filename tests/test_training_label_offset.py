"""Label offsets: the offset-aware mirror of training augmentation, the per-source settings,
and the measurement that finds them (``python -m training label-offset``)."""

from __future__ import annotations

import numpy as np
import pytest

from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import CropSpec, apply_affine
from training.config import ConfigError, load_config
from training.data.augment import AugmentConfig, flip_with_offset, make_crop
from training.data.datasets import Sample, with_label_offsets
from training.evaluation.label_offset import crop_to_image_vectors, offsets_by_source
from training.paths import REPO_ROOT

SCHEMA = get_schema("ibug68")
S = 64


def _face(rng: np.random.Generator, w: int = 200) -> np.ndarray:
    return rng.uniform(0.3 * w, 0.7 * w, size=(68, 2))


@pytest.mark.parametrize("angle", [0.0, 17.0, -33.0])
def test_flip_with_offset_keeps_the_source_convention(angle: float) -> None:
    """Mirroring the crop of labels P + o gives the crop of the mirrored image's labels mirror(P) + o."""
    rng = np.random.default_rng(1)
    w = 200
    sym = _face(rng, w)
    off = np.array([0.8, -0.3])
    spec = CropSpec(97.3, 104.1, 120.0, angle)
    got = flip_with_offset(apply_affine(sym + off, spec.matrix(S)), SCHEMA, S, spec.matrix(S), tuple(off))
    mirrored_spec = CropSpec(w - 1 - spec.center_x, spec.center_y, spec.side, -angle)
    want = apply_affine(SCHEMA.flip_points(sym, w) + off, mirrored_spec.matrix(S))
    assert np.abs(got - want).max() < 1e-9
    plain = SCHEMA.flip_points(apply_affine(sym + off, spec.matrix(S)), S)
    assert np.abs(plain - want).max() > 0.5  # a plain mirror turns the convention around


def test_zero_offset_is_the_plain_mirror() -> None:
    pts = _face(np.random.default_rng(2), S)
    m = CropSpec(30, 31, 60, 12.0).matrix(S)
    assert np.array_equal(flip_with_offset(pts, SCHEMA, S, m, (0.0, 0.0)), SCHEMA.flip_points(pts, S))


def test_make_crop_uses_the_offset_only_when_it_mirrors() -> None:
    rng_img = np.random.default_rng(3)
    img = rng_img.integers(0, 255, size=(200, 200, 3), dtype=np.uint8)
    pts = _face(rng_img)
    always = AugmentConfig(flip_p=1.0, color_p=0, blur_p=0, occlusion_p=0, gray_p=0)
    never = AugmentConfig(flip_p=0.0, color_p=0, blur_p=0, occlusion_p=0, gray_p=0)
    for cfg, moved in ((always, True), (never, False)):
        _, a, spec = make_crop(img, pts, SCHEMA, S, cfg, np.random.default_rng(5))
        _, b, _ = make_crop(img, pts, SCHEMA, S, cfg, np.random.default_rng(5), label_offset=(1.0, 0.0))
        lin = spec.matrix(S)[:, :2]
        shift = (b - a).mean(axis=0)
        if moved:  # the mirrored labels move by twice the offset, as the mirrored crop reads it
            assert np.allclose(shift, -2 * np.diag([-1.0, 1.0]) @ lin @ np.array([1.0, 0.0]), atol=1e-9)
            assert np.linalg.norm(shift) > 0.5
        else:
            assert np.array_equal(a, b)


def test_samples_take_their_source_offset() -> None:
    pts = np.zeros((68, 2))
    out = with_label_offsets([Sample("a", pts, "afw"), Sample("b", pts, "extra:net")], {"afw": [0.5, -0.25]})
    assert out[0].label_offset == (0.5, -0.25) and out[1].label_offset == (0.0, 0.0)
    assert with_label_offsets(out, {}) is out


def test_config_checks_label_offsets() -> None:
    cfg = REPO_ROOT / "training/configs/face68_student.json"
    ok = load_config(cfg, ['data.label_offsets={"afw":[0.74,0.19],"helen":[0.47,0]}'])
    assert ok.data.label_offsets["afw"] == [0.74, 0.19]
    for bad in ('data.label_offsets={"afw":[0.7]}', "data.label_offsets=[1,2]", 'data.label_offsets={"afw":[40,0]}',
                'data.label_offsets={"afw":["a",0]}'):
        with pytest.raises(ConfigError, match="data.label_offsets"):
            load_config(cfg, [bad])


def test_offsets_by_source_finds_the_offset_and_cancels_the_model_bias() -> None:
    """Labels at P + o per source; a model answering P + its own bias b on a face and P - b on the
    mirror image (mapped back): the measurement reads o per source, b apart, whatever the crop."""
    rng = np.random.default_rng(4)
    n = 40
    sources = ["afw"] * 20 + ["helen"] * 20
    offs = {"afw": np.array([0.8, 0.2]), "helen": np.array([0.45, 0.0])}
    mats, gts, sym = [], [], []
    for i in range(n):
        spec = CropSpec(rng.uniform(90, 110), rng.uniform(90, 110), rng.uniform(100, 140), rng.uniform(-20, 20))
        m = spec.matrix(S)
        p = _face(rng)
        mats.append(m)
        sym.append(apply_affine(p, m))
        gts.append(apply_affine(p + offs[sources[i]], m))
    mats, gts, sym = np.asarray(mats), np.asarray(gts), np.asarray(sym)
    bias = np.array([0.6, 0.0])
    res = offsets_by_source(sym + bias, sym - bias, gts, mats, sources, SCHEMA)
    for name, o in offs.items():
        assert res[name]["n"] == 20
        assert res[name]["dx"] == pytest.approx(o[0], abs=1e-3) and res[name]["dy"] == pytest.approx(o[1], abs=1e-3)
        assert res[name]["model_bias_x_crop"] == pytest.approx(0.6, abs=1e-9)
        assert res[name]["nme_ion_flip_avg_offset"] < 1e-6 < res[name]["nme_ion_flip_avg"]


def test_crop_to_image_vectors_inverts_the_crop_scale() -> None:
    m = np.asarray([CropSpec(50, 50, 128, 0).matrix(64)])  # 0.5 crop px per image px
    assert np.allclose(crop_to_image_vectors(np.ones((1, 3, 2)), m), 2.0)


def test_label_offset_command_reads_a_model_on_a_pack(tmp_path, tiny_model_path) -> None:
    """The command end to end on the tiny model and a generated pack: one line per source, figures finite."""
    from fixtures import make_face68

    from training.evaluation.label_offset import measure

    root = tmp_path / "face68"
    make_face68(root, n_train=6, n_val=4)
    res = measure(str(tiny_model_path), str(root), "train.txt", threads=1)
    assert res["sources"] and all(np.isfinite([v["dx"], v["dy"]]).all() for v in res["sources"].values())
    assert set(res["label_offsets"]) == set(res["sources"]) - {"all"} == {"afw", "helen"}
    assert res["sources"]["all"]["n"] == sum(v["n"] for k, v in res["sources"].items() if k != "all")


def test_extra_packs_move_into_the_offset_convention(tmp_path) -> None:
    """``data.extra_label_shift``: pack labels move by a fraction of each face's box side, and flips keep the move."""
    from fixtures import make_face68

    from training.data.datasets import DataConfig, load_extra_train

    pack = tmp_path / "pack"
    make_face68(pack, n_train=4, n_val=2)
    plain = load_extra_train(DataConfig(extra_train=(str(pack),)), SCHEMA)
    moved = load_extra_train(DataConfig(extra_train=(str(pack),), extra_label_shift=(0.01, -0.005)), SCHEMA)
    for a, b in zip(plain, moved, strict=True):
        side = float(np.ptp(a.pts, axis=0).max())
        assert np.allclose(b.pts - a.pts, [0.01 * side, -0.005 * side])
        assert b.label_offset == pytest.approx((0.01 * side, -0.005 * side)) and a.label_offset == (0.0, 0.0)
    cfg = REPO_ROOT / "training/configs/face68_student.json"
    with pytest.raises(ConfigError, match="extra_label_shift"):
        load_config(cfg, ["data.extra_label_shift=[0.5,0]"])

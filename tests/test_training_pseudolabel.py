"""Pseudo-labelling: flip averaging, quality scores, the pack it writes, the inputs it
refuses, and training on human + pseudo-labelled faces with a sample weight."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import apply_affine, crop_params_from_points
from training.data import pseudolabel as pl
from training.data.datasets import DataConfig, LabelError, load_extra_train, load_split

SCHEMA = get_schema("ibug68")
W = 200


def symmetric_face(seed: int = 0) -> np.ndarray:
    """A (68, 2) face, mirror-symmetric about the image's centre column, ~100 px wide."""
    rng = np.random.default_rng(seed)
    p = np.stack([rng.uniform(50, 150, 68), rng.uniform(50, 150, 68)], axis=1)
    p[45] = (140, 90)  # a wide inter-ocular distance keeps NME figures simple
    return (p + SCHEMA.flip_points(p, W)) / 2


class BiasedLabeller(pl.Labeller):
    """Answers the true face of the (un)mirrored image, shifted ``bias`` px to the right."""

    name = "biased"

    def __init__(self, face: np.ndarray, bias: float) -> None:
        self.face, self.bias = face, bias
        self.calls = 0

    def predict(self, image_bgr, box):
        self.calls += 1
        mirrored = bool(image_bgr[0, 0, 0] == 1)  # the marker pixel moved to the other corner
        truth = SCHEMA.flip_points(self.face, W) if mirrored else self.face
        return truth + np.array([self.bias, 0.0])


def marker_image() -> np.ndarray:
    img = np.full((W, W, 3), 90, np.uint8)
    img[0, -1] = 1  # shows up at [0, 0] once mirrored
    return img


def test_flip_averaging_cancels_a_sideways_bias_and_scores_it():
    face = symmetric_face()
    lb = BiasedLabeller(face, bias=3.0)
    pts, flip = lb.label(marker_image(), pl.box_of(face))
    np.testing.assert_allclose(pts, face, atol=1e-9)
    # the two answers sit 2 x 3 px apart; ION = |p45 - p36|
    assert flip == pytest.approx(6.0 / np.linalg.norm(face[45] - face[36]) * 100)
    assert lb.calls == 2 * (1 + pl.REFINE_STEPS)


def test_five_points_and_box_from_five_cover_the_face():
    face = symmetric_face(1)
    p5 = pl.five_points(face)
    np.testing.assert_allclose(p5[0], face[36:42].mean(0))
    np.testing.assert_allclose(p5[4], face[54])
    x0, y0, x1, y1 = pl.box_from_five(p5)
    assert x1 > x0 and y1 > y0


def _faces(tmp_path: Path, bias_for_five: float) -> list[pl.Face]:
    face = symmetric_face()
    img = tmp_path / "in" / "a.png"
    img.parent.mkdir(parents=True)
    cv2.imwrite(str(img), marker_image())
    human5 = pl.five_points(face) + np.array([bias_for_five, 0.0])
    return [pl.Face(str(img), "a", pl.box_of(face), human5, "set")]


@pytest.mark.parametrize("five_bias,kept", [(0.0, True), (30.0, False)])
def test_label_faces_writes_a_loadable_pack_and_drops_bad_scores(tmp_path, five_bias, kept):
    face = symmetric_face()
    out = tmp_path / "pack"
    recs = pl.label_faces(_faces(tmp_path, five_bias), pl.Ensemble([BiasedLabeller(face, 1.0)]), out, 8.0)
    assert len(recs) == 1 and recs[0].kept is kept
    iod = np.linalg.norm(face[42:48].mean(0) - face[36:42].mean(0))
    assert recs[0].five_nme == pytest.approx(five_bias / iod * 100, abs=1e-6)
    pl.write_pack(out, recs, {"format": "test"})
    rows = list(csv.DictReader((out / "quality.csv").open()))
    assert rows[0]["kept"] == str(int(kept))
    if not kept:
        assert (out / "train.txt").read_text() == ""
        return
    samples, schema = load_split(DataConfig(format="face68", root=str(out)), "train")
    assert schema.num_points == 68 and len(samples) == 1
    spec = crop_params_from_points(face, pl.PACK_CROP_SCALE)
    np.testing.assert_allclose(samples[0].pts, apply_affine(face, spec.matrix(pl.PACK_SIZE)), atol=1e-3)
    assert cv2.imread(samples[0].path).shape == (pl.PACK_SIZE, pl.PACK_SIZE, 3)


def test_summary_reports_the_score_distribution():
    recs = [pl.Record(f"r{i}", "s", 1.0, 0.0, float(i), float(i), i <= 8) for i in range(20)]
    s = pl.summary(recs)
    assert s["faces"] == 20 and s["kept"] == 9
    assert s["score_percentiles"]["50"] == pytest.approx(9.5)
    assert sum(s["score_histogram"].values()) == 20
    assert s["five_nme_under_8"] == pytest.approx(8 / 20)


def test_inputs_that_are_refused(tmp_path):
    with pytest.raises(pl.PseudoLabelError, match="benchmark"):
        pl.faces_from_face5(tmp_path, "test.txt")
    with pytest.raises(pl.PseudoLabelError, match="outside the repository"):
        pl.check_out_dir(tmp_path / "repo" / "pseudo", tmp_path / "repo")
    pl.check_out_dir(tmp_path / "elsewhere", tmp_path / "repo")
    bad = tmp_path / "boxes.csv"
    bad.write_text("image,x0,y0,x1,y1\na.jpg,1,2,3\n")
    with pytest.raises(pl.PseudoLabelError, match=r"boxes.csv:2"):
        pl.read_boxes(bad)
    with pytest.raises(pl.PseudoLabelError, match="labeller 'nope'"):
        pl.make_labeller("nope")


def test_cli_labels_an_image_folder_with_a_catalog_model(tmp_path, tiny_model_path, astronaut_bgr):
    from training.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "astro.jpg"), astronaut_bgr)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nastro.jpg,170,40,290,180\n")
    out = tmp_path / "pack"
    rc = main(["pseudo-label", "--images", str(folder), "--boxes", str(tmp_path / "boxes.csv"),
               "--labeller", f"model:{tiny_model_path}", "--out", str(out), "--max-score", "1000"])
    assert rc == 0
    meta = json.loads((out / "pack.json").read_text())
    assert meta["faces"] == 1 and meta["kept"] == 1 and meta["labeller"].startswith("model:")
    assert any("non-commercial" in t for t in meta["licence_terms"])
    assert not (tmp_path / "pack.partial").exists()
    samples, _ = load_split(DataConfig(format="face68", root=str(out)), "train")
    assert len(samples) == 1


def test_dlib_labeller_finds_the_astronauts_face(astronaut_bgr):
    pytest.importorskip("dlib")
    try:
        lb = pl.DlibLabeller()
    except pl.PseudoLabelError as exc:
        pytest.skip(str(exc))
    box = (180.0, 60.0, 290.0, 190.0)  # roughly her face
    pts, flip = lb.label(astronaut_bgr, box)
    assert flip < 5.0
    eyes = pl.five_points(pts)[:2]
    assert 170 < eyes[:, 0].min() and eyes[:, 0].max() < 290 and 60 < eyes[:, 1].min() < 150


class BlindLabeller(pl.Labeller):
    """Finds no face (a MediaPipe miss): NaN points."""

    name = "blind"

    def predict(self, image_bgr, box):
        return np.full((68, 2), np.nan)


def test_ensemble_labels_without_a_labeller_that_found_no_face():
    face = symmetric_face()
    both = pl.Ensemble([BiasedLabeller(face, 0.0), BlindLabeller()])
    pts, flip, ens = both.label(marker_image(), pl.box_of(face))
    np.testing.assert_allclose(pts, face, atol=1e-9)  # the blind one is left out of the mean
    assert flip == pytest.approx(0.0) and ens == 0.0
    pts, flip, ens = pl.Ensemble([BlindLabeller()]).label(marker_image(), pl.box_of(face))
    assert np.isnan(pts).all() and np.isnan(flip)  # nobody found it: the face is dropped (score NaN)


def test_mediapipe_labeller_reads_the_astronauts_face_through_the_68_view(astronaut_bgr):
    from kpdesk.inference import reference

    if not reference.available():
        pytest.skip("MediaPipe Face Landmarker bundle not cached")
    lb = pl.make_labeller("mediapipe").labellers[0]
    try:
        box = (180.0, 60.0, 290.0, 190.0)
        pts, flip = lb.label(astronaut_bgr, box)
        assert flip < 5.0
        eyes = pl.five_points(pts)[:2]
        assert 170 < eyes[:, 0].min() and eyes[:, 0].max() < 290 and 60 < eyes[:, 1].min() < 150
        # a box over an empty corner: no face, NaN (not a guess)
        blank = np.full((400, 400, 3), 128, np.uint8)
        assert np.isnan(lb.predict(blank, (10.0, 10.0, 60.0, 60.0))).all()
    finally:
        lb.close()


def test_extra_packs_join_training_with_their_weight(tmp_path):
    face = symmetric_face()
    out = tmp_path / "pack"
    recs = pl.label_faces(_faces(tmp_path, 0.0), pl.Ensemble([BiasedLabeller(face, 0.0)]), out, 8.0)
    pl.write_pack(out, recs, {})
    extra = load_extra_train(DataConfig(extra_train=(str(out),), extra_weight=0.25), SCHEMA)
    assert len(extra) == 1 and extra[0].weight == 0.25 and extra[0].source == "extra:set"
    with pytest.raises(LabelError, match="extra_weight"):
        load_extra_train(DataConfig(extra_train=(str(out),), extra_weight=-1), SCHEMA)


def test_sample_weights_in_the_loss():
    import torch

    from training.nets.losses import landmark_loss

    torch.manual_seed(0)
    out = {"coords": torch.rand(4, 10), "heatmaps": torch.rand(4, 5, 8, 8)}
    batch = {"coords": torch.rand(4, 10), "heatmaps": torch.rand(4, 5, 8, 8), "hm_weight": torch.ones(4, 5)}
    plain, _ = landmark_loss(out, batch, 1.0)
    ones, _ = landmark_loss(out, batch | {"weight": torch.ones(4)}, 1.0)
    assert torch.equal(plain, ones)
    # weight 0 on the last two faces = the loss of the first two alone
    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    zeroed, _ = landmark_loss(out, batch | {"weight": w}, 1.0)
    first2, _ = landmark_loss({k: v[:2] for k, v in out.items()}, {k: v[:2] for k, v in batch.items()}, 1.0)
    assert torch.allclose(zeroed, first2, atol=1e-7)

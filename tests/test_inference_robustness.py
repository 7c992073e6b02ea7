"""Robustness sweeps (kpdesk.inference.robustness) with a real exported ONNX model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_face68_val

from kpdesk.inference.model import LandmarkModel
from kpdesk.inference.robustness import (
    CSV_HEADER,
    SweepCancelled,
    SweepConfig,
    SweepError,
    evaluate_cell,
    nme_percent,
    run_sweep,
    write_csv,
)
from kpdesk.vision.labels import load_labelled_folder
from kpdesk.vision.perturb import Perturbation


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("lab")
    make_face68_val(root, n=10)
    return load_labelled_folder(root).faces


def test_nme_is_mean_point_error_over_the_outer_eye_distance() -> None:
    gt = np.zeros((1, 68, 2))
    gt[0, 36], gt[0, 45] = (0, 0), (20, 0)
    pred = gt + np.array([3.0, 4.0])  # every point 5 px off
    assert nme_percent(pred, gt, (36, 45)) == pytest.approx([25.0])


def test_sweep_cells_progress_worst_faces_and_csv(tiny_model_path: Path, faces, tmp_path: Path) -> None:  # noqa: ANN001
    model = LandmarkModel.load(tiny_model_path, threads=1)
    cfg = SweepConfig("occlusion", (0, 20, 50), placement="eyes", worst_k=3, batch_size=4)
    cells, progress = [], []
    res = run_sweep([("a", model), ("b", model)], faces, cfg, on_cell=cells.append,
                    on_progress=lambda d, t: progress.append((d, t)))
    assert [(c.variant, c.severity) for c in cells] == [("a", 0), ("b", 0), ("a", 20), ("b", 20), ("a", 50), ("b", 50)]
    assert res.cells == cells and res.variants() == ["a", "b"] and res.faces == 10
    assert progress[-1] == (60, 60) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    for c in cells:
        assert c.n == 10 and np.all(np.isfinite(c.nme)) and np.all(c.nme > 0)
        assert len(c.worst) == 3
        assert [w.nme for w in c.worst] == sorted((w.nme for w in c.worst), reverse=True)
        assert c.worst[0].nme == pytest.approx(c.nme.max())
        assert c.worst[0].crop_bgr.shape == (model.input_size, model.input_size, 3)
        assert c.worst[0].gt_crop.shape == c.worst[0].pred_crop.shape == (68, 2)
    # The same model gives the same numbers under both labels; occlusion changes the input.
    assert np.array_equal(cells[0].nme, cells[1].nme)
    assert not np.array_equal(cells[0].nme, cells[4].nme)
    sev, mean = res.series("a")
    assert list(sev) == [0, 20, 50] and mean[0] == pytest.approx(cells[0].mean)
    path = write_csv(res, tmp_path / "sweep.csv")
    rows = list(csv.reader(path.open()))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 7
    assert rows[1][:6] == ["a", "tiny", "occlusion", "eyes", "0", "% of face area"]
    assert float(rows[5][7]) == pytest.approx(cells[4].mean, abs=1e-3)


def test_worst_faces_show_the_perturbed_crop(tiny_model_path: Path, faces) -> None:  # noqa: ANN001
    model = LandmarkModel.load(tiny_model_path, threads=1)
    _, clean = evaluate_cell(model, faces, Perturbation("occlusion", 0), worst_k=1)
    _, occl = evaluate_cell(model, faces, Perturbation("occlusion", 50, "centre"), worst_k=1)
    # The test images are flat grey (100): a 50% occluder paints a flat different colour in.
    assert np.all(clean[0].crop_bgr[20:44, 20:44] == 100)
    assert np.any(occl[0].crop_bgr != 100)


def test_cancel_stops_between_batches(tiny_model_path: Path, faces) -> None:  # noqa: ANN001
    model = LandmarkModel.load(tiny_model_path, threads=1)
    cells, calls = [], []

    def cancel() -> bool:
        calls.append(1)
        return len(cells) >= 1

    with pytest.raises(SweepCancelled):
        run_sweep([("a", model)], faces, SweepConfig("rotation", (0, 30, 60), batch_size=5), on_cell=cells.append,
                  cancel=cancel)
    assert len(cells) == 1 and len(calls) == 3  # 2 batches of the first cell, then the stop


def test_the_models_that_fit_run_and_the_others_are_marked(tiny_model_path: Path, tmp_path: Path,
                                                           faces) -> None:  # noqa: ANN001
    """The lab on 68-point faces with a 5- and a 68-point model: the sweep used to fail as a
    whole ("five predicts 5 points ..."), running neither."""
    from fixtures import export_tiny

    five = LandmarkModel.load(export_tiny(tmp_path, "five", points=5), threads=1)
    full = LandmarkModel.load(tiny_model_path, threads=1)
    res = run_sweep([("five", five), ("full", full)], faces, SweepConfig("blur", (0, 2)))
    assert [(c.variant, c.severity) for c in res.cells] == [("full", 0), ("full", 2)]
    assert res.skipped == [("five", "five predicts 5 points, the labelled faces have 68")]


def test_a_model_with_other_points_is_refused(tmp_path: Path, faces) -> None:  # noqa: ANN001
    from fixtures import export_tiny

    five = LandmarkModel.load(export_tiny(tmp_path, "five", points=5), threads=1)
    with pytest.raises(SweepError, match="no model fits these faces: five: five predicts 5 points, the labelled "
                                         "faces have 68"):
        run_sweep([("five", five)], faces, SweepConfig("blur", (0, 2)))
    with pytest.raises(ValueError, match="severity"):
        SweepConfig("rotation", (0, 400))


@pytest.mark.data
def test_same_numbers_as_training_bench() -> None:
    """The lab's NME equals ``training bench``'s (training.evaluation.evaluate) on the same faces under
    the same named perturbation, for a shipped model."""
    from conftest import REPO_ROOT, data_root

    from training.evaluation.bench import make_perturbation, spread
    from training.evaluation.evaluate import load_runner, load_samples, predict_samples
    from training.metrics import nme_per_image

    onnx = REPO_ROOT / "models" / "student-0.25x.onnx"
    if not onnx.is_file():
        pytest.skip(f"{onnx} not shipped here")
    root = data_root() / "face68"
    samples = spread(load_samples(root, "val.txt")[0], 48)
    runner = load_runner(onnx, threads=1)
    model = LandmarkModel.load(onnx, threads=1)
    faces = load_labelled_folder(root, "val.txt", max_faces=48).faces
    assert [f.path for f in faces] == [s.path for s in samples]
    for name, (kind, sev) in {"occlusion40": ("occlusion", 40), "rotate30": ("rotation", 30)}.items():
        pred = predict_samples(runner, samples, (runner.default_decode,), perturb=make_perturbation(name, 0))
        theirs = 100 * nme_per_image(pred.pred_crop[runner.default_decode], pred.gt_crop, pred.schema, "ion")
        ours, _ = evaluate_cell(model, faces, Perturbation(kind, sev))
        assert np.allclose(ours, theirs, atol=1e-3), name


def test_five_point_models_on_a_face5_list(tmp_path: Path) -> None:
    """MTFL-style lists work too: NME normalised by the eye centres (points 0 and 1)."""
    import json

    import cv2
    from fixtures import export_tiny

    from kpdesk.vision.schema import get_schema

    onnx = export_tiny(tmp_path / "m", "five", points=5)
    card = json.loads(onnx.with_suffix(".json").read_text())
    card["schema"] = get_schema("mtfl5").to_dict()  # as the shipped student-5pt
    onnx.with_suffix(".json").write_text(json.dumps(card))
    five = LandmarkModel.load(onnx, threads=1)
    assert five.schema.ocular == (0, 1)
    (tmp_path / "images").mkdir()
    lines = []
    for i in range(4):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.jpg"), np.full((80, 80, 3), 120, np.uint8))
        lines.append(f"images/{i}.jpg 25 55 40 28 52 30 31 45 60 59 1 2 2 3")
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    faces = load_labelled_folder(tmp_path, "test.txt").faces
    res = run_sweep([("five", five)], faces, SweepConfig("lowlight", (0, 2)))
    assert [c.n for c in res.cells] == [4, 4] and all(np.all(np.isfinite(c.nme)) for c in res.cells)
    custom = LandmarkModel.load(export_tiny(tmp_path / "c", "custom5", points=5), threads=1)
    with pytest.raises(SweepError, match="no eye points"):
        run_sweep([("custom5", custom)], faces, SweepConfig("blur", (0,)))

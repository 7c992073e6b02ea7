"""``python -m training eval`` end to end (in-process ``training.cli.main``, the code path of
``python -m training``) with exact predictors: on a pack where every face has the same
landmarks, a constant ONNX model that outputs those landmarks is perfect, so NME must be
0 in every decode mode, and a known offset gives the analytic NME and 5-point MSE."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import INPUT_SIZE as S
from fixtures import export_constant_model, same_face_pack, same_face_pack5

from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import apply_affine, crop_params_from_points
from training.cli import main as training_main

pytestmark = pytest.mark.usefixtures("no_signal_handlers")




def _eval(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict]:
    rc = training_main(["eval", "--threads", "1", *argv])
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


def test_perfect_predictor_has_zero_nme_in_every_mode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, pts_crop = same_face_pack(tmp_path / "face68")
    model = export_constant_model(tmp_path / "models" / "perfect.onnx", get_schema("ibug68"), pts_crop)
    rc, summary = _eval(capsys, "--model", str(model), "--data", str(root), "--list", "val.txt",
                        "--format", "face68", "--decode", "all", "--out", str(tmp_path / "out"))
    assert rc == 0 and summary["event"] == "done" and summary["command"] == "eval"
    assert summary["n"] == 6 and summary["modes"] == ["regression", "heatmap", "fusion"]
    for mode, r in summary["results"].items():
        assert r["nme_ion"] < 1e-3 and r["nme_ipn"] < 1e-3 and r["nme_box"] < 1e-3, (mode, r["nme_ion"])
        assert r["fr08_ion"] == 0.0 and r["auc10_ion"] > 0.99 and max(r["per_point_nme"]) < 1e-2
        assert set(r["by_source"]) == {"afw", "helen", "afw+helen"}
    for f in ("ced.png", "summary.json", "predictions.npz"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    assert cv2.imread(str(tmp_path / "out" / "ced.png")) is not None
    pred = np.load(tmp_path / "out" / "predictions.npz")
    np.testing.assert_allclose(pred["pred_img_regression"], pred["gt_img"], atol=1e-3)



def test_known_offset_and_five_point_mse(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A 5-point model off by 3.2 px in x (0.05 of the 64 px crop): MSE = 0.05^2 / 2."""
    root, pts = same_face_pack5(tmp_path / "face5")
    schema = get_schema("mtfl5")
    spec = crop_params_from_points(pts, schema.crop_scale)
    pts_crop = apply_affine(pts, spec.matrix(S))
    model = export_constant_model(tmp_path / "m5.onnx", schema, pts_crop + [0.05 * S, 0.0], decode="regression",
                                  with_heatmaps=False)
    rc, summary = _eval(capsys, "--model", str(model), "--data", str(root), "--list", "test.txt")
    assert rc == 0 and summary["format"] == "face5" and summary["schema"] == "mtfl5"
    r = summary["results"]["regression"]
    assert r["mse_norm"] == pytest.approx(0.05**2 / 2, rel=1e-4)
    # NME ION: every point off by 0.05 * S crop px; eye distance 20 image px = 20 * S / side crop px
    iod_crop = 20.0 * S / spec.side
    assert r["nme_ion"] == pytest.approx(100 * 0.05 * S / iod_crop, rel=1e-4)


def test_eval_errors_are_clean(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, pts_crop = same_face_pack(tmp_path / "face68")
    m5 = export_constant_model(tmp_path / "m5.onnx", get_schema("mtfl5"), pts_crop[:5], decode="regression",
                               with_heatmaps=False)
    rc, err = _eval(capsys, "--model", str(m5), "--data", str(root))
    assert rc == 2 and err["event"] == "error" and "model predicts 5 points" in err["message"]
    rc, err = _eval(capsys, "--model", str(m5), "--data", str(root), "--decode", "heatmap")
    assert rc == 2 and "decode 'heatmap' impossible" in err["message"]
    rc, err = _eval(capsys, "--model", str(tmp_path / "nope.onnx"), "--data", str(root))
    assert rc == 2 and "model file not found" in err["message"]
    rc, err = _eval(capsys, "--model", str(root / "val.txt"), "--data", str(root))
    assert rc == 2 and "not a model" in err["message"]
    rc, err = _eval(capsys, "--model", str(m5), "--data", str(tmp_path / "missing"))
    assert rc == 2 and "missing" in err["message"]

"""``python -m training eval`` end to end (in-process ``training.cli.main``, the code path of
``python -m training``) with exact predictors: on a pack where every face has the same
landmarks, a constant ONNX model that outputs those landmarks is perfect, so NME must be
0 in every decode mode, and a known offset gives the analytic NME and 5-point MSE."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_training_datasets import face_image, make_face68

from kpdesk.vision.schema import KeypointSchema, get_schema
from kpdesk.vision.transforms import apply_affine, crop_params_from_points
from training.cli import main as training_main

S, H, SIGMA = 64, 16, 1.0


@pytest.fixture(autouse=True)
def _no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``training.cli.main`` would install SIGINT/SIGTERM handlers in pytest."""
    monkeypatch.setattr("training.cli.CancelFlag.listen", lambda self: None)


def export_constant_model(path: Path, schema: KeypointSchema, pts_crop: np.ndarray, decode: str = "fusion",
                          with_heatmaps: bool = True) -> Path:
    """``NAME.onnx`` + manifest whose outputs are always ``pts_crop`` (K, 2) in a 64 px crop:
    coords = their normalised values, heatmaps = their Gaussian targets (sigma 1)."""
    import torch
    from torch import nn

    from kpdesk.vision.codecs import HeatmapCodec, RegressionCodec
    from kpdesk.vision.manifest import Manifest
    from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD

    coords = torch.from_numpy(RegressionCodec(S).encode(pts_crop).reshape(1, -1).astype(np.float32))
    hm = torch.from_numpy(HeatmapCodec(S, H, SIGMA).encode(pts_crop)[0][None])

    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("coords", coords)
            self.register_buffer("hm", hm)

        def forward(self, x: torch.Tensor):
            z = x.mean(dim=(1, 2, 3)) * 0.0  # depends on the input only through its batch size
            c = self.coords + z[:, None]
            return (c, self.hm + z[:, None, None, None]) if with_heatmaps else c

    outs = ["coords", "heatmaps"] if with_heatmaps else ["coords"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Constant().eval(), (torch.zeros(1, 3, S, S),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=outs,
                          dynamic_axes={n: {0: "batch"} for n in ["input", *outs]})
    Manifest(name=path.stem, schema=schema, input_size=S, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             crop_scale=schema.crop_scale, heatmaps_output="heatmaps" if with_heatmaps else None,
             heatmap_size=H if with_heatmaps else None, sigma=SIGMA, decode=decode if with_heatmaps else "regression",
             arch="constant-test", info={"params": 0, "macs": 0}).save(path.with_suffix(".json"))
    return path


def same_face_pack(root: Path) -> tuple[Path, np.ndarray]:
    """A face68 pack whose faces all have identical landmarks; returns (root, pts_crop)."""
    make_face68(root, n_train=2, n_val=6, size=96, vary=False)
    pts = np.loadtxt((root / (root / "val.txt").read_text().split()[0]).with_suffix(".pts"), skiprows=3,
                     max_rows=68)
    spec = crop_params_from_points(pts, get_schema("ibug68").crop_scale)
    return root, apply_affine(pts, spec.matrix(S))


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


def same_face_pack5(root: Path, n: int = 4) -> tuple[Path, np.ndarray]:
    """An MTFL-style face5 pack (test.txt) whose faces share their 5 landmarks; (root, pts_img)."""
    pts = np.array([[30.0, 35], [50, 35], [40, 45], [32, 55], [48, 55]])
    lines = []
    rng = np.random.default_rng(0)
    for i in range(n):
        rel = f"images/aflw/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        big = np.zeros((68, 2)) + 1e9  # face_image wants 68 points: only the first 5 are drawn
        big[:5] = pts
        cv2.imwrite(str(root / rel), face_image(big, 80, rng))
        lines.append(rel + " " + " ".join(f"{v:g}" for v in [*pts[:, 0], *pts[:, 1]]) + " 1 2 2 3")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    return root, pts


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

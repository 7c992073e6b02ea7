"""LandmarkModel loading / validation / running, and the model catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures import export_tiny

from kpdesk.inference.catalog import default_models_dir, resolve_model, scan_models
from kpdesk.inference.model import LandmarkModel, ModelLoadError


def test_load_and_run_batch(tiny_model_path: Path) -> None:
    model = LandmarkModel.load(tiny_model_path, threads=1)
    assert (model.name, model.input_size, model.schema.num_points) == ("tiny", 64, 68)
    assert model.decode_mode == "fusion" and model.has_heatmaps
    crops = np.random.default_rng(0).integers(0, 255, size=(3, 64, 64, 3), dtype=np.uint8)
    out = model.run(crops)
    assert out.pts_crop.shape == (3, 68, 2) and out.conf.shape == (3, 68)
    assert out.heatmaps.shape == (3, 68, 16, 16) and out.coords.shape == (3, 136)
    assert np.all((out.conf >= 0) & (out.conf <= 1))
    single = model.run(crops[1])
    assert np.allclose(single.pts_crop[0], out.pts_crop[1], atol=1e-4)  # batching changes nothing


def test_decode_mode_switch(tiny_model_path: Path) -> None:
    model = LandmarkModel.load(tiny_model_path)
    crops = np.full((1, 64, 64, 3), 128, np.uint8)
    model.decode_mode = "regression"
    reg = model.run(crops)
    from kpdesk.vision.codecs import RegressionCodec

    assert np.allclose(reg.pts_crop, RegressionCodec(64).decode(reg.coords))
    model.decode_mode = "heatmap"
    hm = model.run(crops)
    assert np.allclose(hm.pts_crop, model.manifest.decoder("heatmap").heatmap.decode(hm.heatmaps)[0])
    model.decode_mode = None
    assert model.decode_mode == "fusion"
    with pytest.raises(ValueError):
        model.decode_mode = "bogus"


def test_wrong_crop_size_raises(tiny_model_path: Path) -> None:
    with pytest.raises(ValueError, match="64x64"):
        LandmarkModel.load(tiny_model_path).run(np.zeros((1, 32, 32, 3), np.uint8))


def test_fixed_batch_graph_runs_several_crops(tmp_path: Path) -> None:
    model = LandmarkModel.load(export_tiny(tmp_path, "fixed", dynamic_batch=False))
    assert model.run(np.zeros((3, 64, 64, 3), np.uint8)).pts_crop.shape == (3, 68, 2)


def test_corrupt_graph_names_the_file(tiny_model_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 definitely not a protobuf graph" * 10)
    shutil.copy(tiny_model_path.with_suffix(".json"), tmp_path / "broken.json")
    with pytest.raises(ModelLoadError, match=r"broken\.onnx: cannot load ONNX graph"):
        LandmarkModel.load(bad)


def test_missing_files(tiny_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        LandmarkModel.load(tmp_path / "nope.onnx")
    lone = tmp_path / "lone.onnx"
    shutil.copy(tiny_model_path, lone)
    with pytest.raises(ModelLoadError, match=r"lone\.json: manifest not found"):
        LandmarkModel.load(lone)


def test_manifest_disagreeing_with_graph(tmp_path: Path) -> None:
    five = export_tiny(tmp_path, "five", points=68, graph_points=5)
    with pytest.raises(ModelLoadError, match=r"five\.onnx: manifest says 68 points, graph outputs 5"):
        LandmarkModel.load(five)
    p = export_tiny(tmp_path, "size", input_size=64)
    d = json.loads(p.with_suffix(".json").read_text())
    d["input_size"] = 128
    p.with_suffix(".json").write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match="manifest says input size 128"):
        LandmarkModel.load(p)
    d["input_size"], d["heatmaps_output"] = 64, "heatmap_typo"
    p.with_suffix(".json").write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match="heatmap_typo"):
        LandmarkModel.load(p)
    d["heatmaps_output"], d["heatmap_size"] = "heatmaps", 32
    p.with_suffix(".json").write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match="heatmap size 32"):
        LandmarkModel.load(p)


def test_catalog_lists_broken_models_with_their_error(tiny_model_path: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_model_path, tmp_path / "good.onnx")
    d = json.loads(tiny_model_path.with_suffix(".json").read_text())
    d["name"] = "good"
    (tmp_path / "good.json").write_text(json.dumps(d))
    (tmp_path / "corrupt.onnx").write_bytes(b"garbage")
    (tmp_path / "corrupt.json").write_text(json.dumps(d))
    shutil.copy(tiny_model_path, tmp_path / "nomanifest.onnx")
    entries = {e.name: e for e in scan_models(tmp_path)}
    assert set(entries) == {"good", "corrupt", "nomanifest"}
    assert entries["good"].ok and entries["good"].manifest.schema.num_points == 68
    assert not entries["corrupt"].ok and "corrupt.onnx" in entries["corrupt"].error
    assert "manifest not found" in entries["nomanifest"].error
    assert scan_models(tmp_path / "absent") == []


def test_resolve_model(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_model_path.parent
    assert resolve_model("tiny", folder) == tiny_model_path
    assert resolve_model(str(tiny_model_path)) == tiny_model_path
    with pytest.raises(ModelLoadError, match="known: tiny"):
        resolve_model("other", folder)
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model(str(folder / "x.onnx"))
    monkeypatch.setenv("KPDESK_MODELS", str(folder))
    assert default_models_dir() == folder
    monkeypatch.delenv("KPDESK_MODELS")
    assert default_models_dir().name == "models"


def test_a_model_without_a_detector_mapping_is_refused_with_one_line(tmp_path: Path) -> None:
    """A 5-point model used to run on crops cut for the 68-point box: right on a large frontal
    face, badly wrong on harder ones, with no warning."""
    from fixtures import export_tiny

    path = export_tiny(tmp_path, "five", points=5, detector_crop=None)
    with pytest.raises(ModelLoadError) as err:
        LandmarkModel.load(path, threads=1)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "no detector_crop" in msg
    assert msg.endswith(f"python benchmarks/calibrate_detectors.py --pack PACK --split train --model {path} --write")


@pytest.mark.parametrize("crop,why", [
    ({"blazeface": {"dx": 0, "dy": 0, "ratio": 40.0}, "haar": {"dx": 0, "dy": 0, "ratio": 1.0}}, "implausible"),
    ({"blazeface": {"dx": 0.9, "dy": 0, "ratio": 1.0}, "haar": {"dx": 0, "dy": 0, "ratio": 1.0}}, "implausible"),
    ({"blazeface": {"dx": 0, "dy": 0, "ratio": 1.0}}, "no 'haar' entry"),
    ({"blazeface": {"dx": 0, "dy": "x", "ratio": 1.0}, "haar": {"dx": 0, "dy": 0, "ratio": 1.0}}, "non-numeric"),
    ({"blazeface": {"dx": 0, "ratio": 1.0}, "haar": {"dx": 0, "dy": 0, "ratio": 1.0}}, "missing 'dy'"),
])
def test_an_implausible_detector_mapping_is_refused(tmp_path: Path, crop: dict, why: str) -> None:
    from fixtures import export_tiny

    path = export_tiny(tmp_path, "five", points=5, detector_crop=crop)
    with pytest.raises(ModelLoadError, match=why) as err:
        LandmarkModel.load(path, threads=1)
    assert "\n" not in str(err.value)


def test_the_model_mapping_cuts_the_crop(tmp_path: Path) -> None:
    """The pipeline maps a detector box with the model's own mapping; an iBUG-68 manifest
    without one gets the measured 68-point mapping."""
    from fixtures import export_tiny

    from kpdesk.inference.detectors import CALIBRATION, Detection, HaarDetector

    crop = {"blazeface": {"dx": 0.0, "dy": 0.05, "ratio": 0.45}, "haar": {"dx": 0.01, "dy": 0.09, "ratio": 0.5}}
    five = LandmarkModel.load(export_tiny(tmp_path, "five", points=5, detector_crop=crop), threads=1)
    full = LandmarkModel.load(export_tiny(tmp_path, "full"), threads=1)
    assert full.box_calibration("haar") == CALIBRATION["haar"]
    cal = five.box_calibration("haar")
    assert (cal.dx, cal.dy, cal.ratio) == (0.01, 0.09, 0.5)
    det = HaarDetector()
    d = Detection((100.0, 100.0, 200.0, 200.0), 1.0)
    spec = det.box_to_crop(d, 2.0, cal)
    assert spec.side == pytest.approx(2.0 * 0.5 * 100) and spec.center_y == pytest.approx(150 + 9)
    assert cal.face_box((140.0, 150.0, 190.0, 190.0)) == pytest.approx((114.0, 111.0, 214.0, 211.0))


def test_the_shipped_five_point_model_carries_its_mapping() -> None:
    path = Path(__file__).resolve().parents[1] / "models" / "student-5pt.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not shipped here")
    m = LandmarkModel.load(path, threads=1, optimize=False)
    for name in ("blazeface", "haar"):
        cal = m.box_calibration(name)
        assert cal is not None and 0.3 < cal.ratio < 0.7  # a 5-point box is about half a face box
    assert m.manifest.info["detector_crop"]["command"].startswith("python benchmarks/calibrate_detectors.py")
    from kpdesk.inference.detectors import LAYOUT_CALIBRATION

    for name, cal in LAYOUT_CALIBRATION["mtfl5"].items():  # what training export writes for a 5-point model
        assert cal == m.box_calibration(name)

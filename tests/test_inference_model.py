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

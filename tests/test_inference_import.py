"""``kpdesk models import``: third-party landmark graphs built here (``thirdparty_models``: a
dozen ONNX operators that measure a red disk and blend it with the crop they "were trained
on", scale 1.7 and centre offset (0.05, 0.12)) are imported, calibrated on synthetic
labelled faces, and must come back with that crop; then they run like any model."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from thirdparty_models import SIZE, synthetic_faces, write_model

from kpdesk.cli import main as kpdesk_main
from kpdesk.inference.calibrate import Alternative, CropFit, alternatives, implausible_message
from kpdesk.inference.catalog import scan_models
from kpdesk.inference.detectors import BoxCalibration, Detection, FaceDetector
from kpdesk.inference.importer import ImportOptions, ModelImportError, build_manifest, calibrate_manifest
from kpdesk.inference.model import LandmarkModel
from kpdesk.inference.pipeline import Pipeline, PipelineConfig
from kpdesk.inference.robustness import evaluate_cell
from kpdesk.inference.tracking import aligned_crop
from kpdesk.vision.labels import load_labelled_folder
from kpdesk.vision.manifest import FORMAT, FORMAT_2, Manifest, ManifestError
from kpdesk.vision.perturb import Perturbation
from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import crop_params_from_points

TRUE_SCALE, TRUE_OFFSET = 1.7, (0.05, 0.12)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("thirdparty")
    return {
        "faces": synthetic_faces(base / "faces", n=16),
        "nchw": write_model(base / "landmarks.onnx"),
        "nhwc_pixels": write_model(base / "landmarks_nhwc.onnx", layout="nhwc", output="pixels"),
        "heatmaps": write_model(base / "landmarks_hm.onnx", output="heatmaps"),
    }


def _import(world: dict[str, Path], models: Path, *extra: str, graph: str = "nchw") -> int:
    return kpdesk_main(["models", "import", str(world[graph]), "--models-dir", str(models), "--threads", "1",
                        *extra])


def test_import_and_calibrate_recovers_the_known_crop(world: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rc = _import(world, tmp_path, "--name", "pfld-like", "--points", "68", "--size", str(SIZE), "--color", "rgb",
                 "--mean", "0", "--std", "255", "--output", "coords01", "--calibrate", str(world["faces"]),
                 "--list", "val.txt", "--calibrate-faces", "12", "--licence", "test licence")
    out = capsys.readouterr().out
    assert rc == 0, out
    print(next(ln for ln in out.splitlines() if ln.startswith("fitted")))  # shown by pytest -rP
    m = Manifest.load(tmp_path / "pfld-like.json")
    assert abs(m.crop_scale - TRUE_SCALE) < 0.015, m.crop_scale
    assert np.allclose(m.crop_offset, TRUE_OFFSET, atol=0.005), m.crop_offset
    cal = m.info["calibration"]
    assert cal["faces"] == 12 and cal["nme_ion"] < 0.5 and cal["list"] == "val.txt"
    assert m.info["source"] == "imported" and m.info["licence"] == "test licence"
    assert m.info["import_command"].startswith("kpdesk models import ")
    assert json.loads((tmp_path / "pfld-like.json").read_text())["format"] == FORMAT_2
    assert "installed pfld-like" in out and "calibrated on 12 faces" in out
    entry = {e.name: e for e in scan_models(tmp_path)}["pfld-like"]
    assert entry.ok and entry.manifest is not None and entry.manifest.arch == "imported"


def _lab_nme(model: LandmarkModel, world: dict[str, Path]) -> float:
    """Mean NME (%) through the robustness lab's code path (canonical crop of the labels)."""
    faces = load_labelled_folder(world["faces"], "val.txt").faces
    nme, _ = evaluate_cell(model, faces, Perturbation("rotation", 0.0))
    return float(nme.mean())


@pytest.mark.parametrize("graph, output", [("nhwc_pixels", "pixels"), ("heatmaps", "heatmaps")])
def test_layouts_and_outputs_are_adapted_for_every_caller(world: dict[str, Path], tmp_path: Path, graph: str,
                                                         output: str) -> None:
    """NHWC input, crop-pixel coordinates and heatmaps: with the known crop given, the lab's
    path gets the points right; with a centred default crop it does not."""
    rc = _import(world, tmp_path, "--name", "given", "--output", output, "--crop-scale", str(TRUE_SCALE),
                 "--crop-offset", f"{TRUE_OFFSET[0]},{TRUE_OFFSET[1]}", graph=graph)
    assert rc == 0
    m = Manifest.load(tmp_path / "given.json")
    assert m.input_layout == ("nhwc" if graph == "nhwc_pixels" else "nchw")
    model = LandmarkModel.load(tmp_path / "given.onnx", threads=1)
    assert _lab_nme(model, world) < 0.6
    assert _import(world, tmp_path, "--name", "centred", "--output", output, graph=graph) == 0
    assert _lab_nme(LandmarkModel.load(tmp_path / "centred.onnx", threads=1), world) > 3.0


def test_a_wrong_colour_order_is_refused_and_named(world: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc = _import(world, tmp_path, "--name", "bgr", "--color", "bgr", "--calibrate", str(world["faces"]),
                 "--calibrate-faces", "8")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "not installed" in err[0] and "likely cause: colour order: with --color rgb" in err[0]
    assert not tmp_path.exists() or not list(tmp_path.glob("*.onnx"))


def test_an_implausible_fit_with_no_single_cause_says_what_to_check() -> None:
    fit = CropFit(2.0, (0.0, 0.1), 40.0, 30, 20, (2.0, 0.0, 0.1, 41.0), 90, 3.0)
    msg = implausible_message(fit, [Alternative("colour order", "--color bgr", 38.0)])
    assert "not installed" in msg and "does not fix it" in msg and "--points" in msg
    assert "likely cause: input range" in implausible_message(
        fit, [Alternative("input range (mean / std)", "--mean 127.5 --std 127.5", 5.0)])


def test_mistakes_in_the_description_are_one_line_each(world: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (("--layout", "nhwc"), "use --layout nchw"),
        (("--size", "112"), "takes 64x64 inputs, not --size 112"),
        (("--points", "5"), "no output is 10 coordinates a face"),
        (("--output", "heatmaps"), "no output is heatmaps"),
        (("--output-name", "nope"), "no output 'nope'"),
        (("--mean", "1,2"), "--mean takes one value or three"),
        (("--std", "0"), "--std values must not be 0"),
        (("--list", "val.txt"), "give --calibrate DATA too"),
        (("--calibrate", str(tmp_path / "missing")), "folder not found"),
        (("--crop-offset", "0.1"), "--crop-offset takes two numbers"),
    ]
    for args, expected in cases:
        rc = _import(world, tmp_path / "models", *args)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and expected in err[0], (args, err)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*.onnx"))


def test_several_candidate_outputs_ask_for_a_name(tmp_path: Path) -> None:
    """A graph with two outputs that could both be 68 points' coordinates."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 136]) for n in ("a", "b")]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Slice", ["flat", "s0", "s1", "ax1"], ["a"]),
             helper.make_node("Identity", ["a"], ["b"])]
    inits = [helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("s1", TensorProto.INT64, [1], [136]),
             helper.make_tensor("ax1", TensorProto.INT64, [1], [1])]
    g = helper.make_graph(nodes, "two", [x], outs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelImportError, match="several outputs could be .* --output-name"):
        build_manifest(path, "two", ImportOptions())
    m = build_manifest(path, "two", ImportOptions(output_name="b"))
    assert m.coords_output == "b" and m.schema.num_points == 68 and m.input_size == 32


def test_mean_and_std_are_given_in_the_models_channel_order(world: dict[str, Path]) -> None:
    m = build_manifest(world["nchw"], "x", ImportOptions(color="bgr", mean=(104.0, 117.0, 123.0), std=(1.0,)))
    assert np.allclose(m.mean, (123 / 255, 117 / 255, 104 / 255)) and np.allclose(m.std, (1 / 255,) * 3)
    options = {option.split(" (")[0] for _, option, _ in alternatives(m)}
    assert {"--color rgb", "--layout nhwc", "--mean 0 --std 255", "--output pixels"} <= options


def test_forward_adapts_layout_colour_and_units(world: dict[str, Path]) -> None:
    """The same crops through the NCHW / [0, 1] graph and the NHWC / pixel graph agree; a
    BGR manifest flips the channels before the graph sees them."""
    a = LandmarkModel.load(world["nchw"], threads=1,
                           manifest=build_manifest(world["nchw"], "a", ImportOptions()))
    b = LandmarkModel.load(world["nhwc_pixels"], threads=1,
                           manifest=build_manifest(world["nhwc_pixels"], "b", ImportOptions(output="pixels")))
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    crops[..., 2] = np.maximum(crops[..., 2], 200)  # red (BGR) enough for the graphs to measure
    ca, _ = a.forward(a.preprocess(crops))
    cb, _ = b.forward(b.preprocess(crops))
    assert ca.shape == cb.shape == (3, 136) and np.allclose(ca, cb, atol=1e-5)
    bgr = LandmarkModel.load(world["nchw"], threads=1,
                             manifest=build_manifest(world["nchw"], "c", ImportOptions(color="bgr")))
    cc, _ = bgr.forward(bgr.preprocess(crops[..., ::-1].copy()))
    assert np.allclose(ca, cc, atol=1e-5)


def test_the_crop_offset_follows_the_face_everywhere() -> None:
    """Canonical crop, tracker crop (turned by the roll) and detector crop all move the
    centre by offset x the landmark box's longer side, in the face's frame."""
    pts = np.array([[0.0, 0.0], [100.0, 0.0], [50.0, 80.0]])
    base, moved = crop_params_from_points(pts, 1.5), crop_params_from_points(pts, 1.5, offset=(0.1, 0.2))
    assert (moved.center_x - base.center_x, moved.center_y - base.center_y) == pytest.approx((10.0, 20.0))
    assert moved.side == base.side
    a = math.radians(30.0)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    rolled = pts @ rot.T
    up, off = aligned_crop(rolled, 1.5, 30.0), aligned_crop(rolled, 1.5, 30.0, (0.0, 0.2))
    shift = np.array([off.center_x - up.center_x, off.center_y - up.center_y])
    assert np.allclose(shift, rot @ np.array([0.0, 20.0]))  # "down" in the face's frame
    cal = BoxCalibration(dx=0.0, dy=0.0, ratio=0.5)
    c0, c1 = cal.crop((0, 0, 200, 200), 1.5), cal.crop((0, 0, 200, 200), 1.5, offset=(0.0, 0.2))
    assert c1.center_y - c0.center_y == pytest.approx(0.2 * 100.0)  # landmark box = 0.5 x 200


def test_manifests_stay_format_1_unless_they_need_the_new_fields() -> None:
    plain = Manifest(name="p", schema=get_schema("ibug68"), input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3,
                     crop_scale=1.5)
    d = plain.to_dict()
    assert d["format"] == FORMAT and "crop_offset" not in d and "input_layout" not in d
    moved = Manifest.from_dict({**d, "format": FORMAT_2, "crop_offset": [0.0, 0.1], "color": "bgr"})
    assert moved.crop_offset == (0.0, 0.1) and moved.color == "bgr" and not moved.plain
    again = Manifest.from_dict(moved.to_dict())
    assert again == moved and moved.to_dict()["format"] == FORMAT_2
    with pytest.raises(ManifestError, match="input_layout"):
        Manifest.from_dict({**d, "format": FORMAT_2, "input_layout": "chw"})
    with pytest.raises(ManifestError, match="format"):
        Manifest.from_dict({**d, "format": "kpdesk-landmark/9"})


def test_an_imported_model_runs_in_kpdesk_detect(world: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _import(world, tmp_path, "--name", "tp", "--crop-scale", "1.7", "--crop-offset", "0.05,0.12") == 0
    capsys.readouterr()
    rc = kpdesk_main(["detect", "demo", "--model", "tp", "--models-dir", str(tmp_path), "--max-frames", "3",
                      "--detector", "haar", "--threads", "1", "--json", str(tmp_path / "out.jsonl")])
    out = capsys.readouterr().out
    assert rc == 0 and "model tp (68 pts, 64 px, regression)" in out
    rows = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(f["pts_img"]) == 68 for r in rows for f in r["faces"])
    capsys.readouterr()
    assert kpdesk_main(["models", "--models-dir", str(tmp_path)]) == 0
    assert "imported (crop 1.70, offset +0.05,+0.12)" in capsys.readouterr().out


class _LandmarkBoxDetector(FaceDetector):
    """Reports each face's landmark box itself (calibration: identity)."""

    name = "landmark-box"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__(BoxCalibration(0.0, 0.0, 1.0), use_roll=False)
        self.boxes = boxes

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        return [Detection(b, 1.0) for b in self.boxes]


def test_the_app_pipeline_cuts_an_imported_models_crop(world: dict[str, Path], tmp_path: Path) -> None:
    """Detector crop, refinement and tracking (``Pipeline``, as Live and Compare run it) all
    place the crop with the manifest's offset: the points land on the face; without the
    offset they do not."""
    import cv2

    face = load_labelled_folder(world["faces"], "val.txt").faces[0]
    frame = cv2.imread(face.path)
    lo, hi = face.pts_img.min(0), face.pts_img.max(0)
    base = build_manifest(world["nchw"], "tp", ImportOptions(crop_scale=TRUE_SCALE, crop_offset=TRUE_OFFSET))
    errors = {}
    for label, m in (("offset", base), ("none", replace(base, crop_offset=(0.0, 0.0)))):
        model = LandmarkModel.load(world["nchw"], threads=1, manifest=m)
        pipe = Pipeline(model, _LandmarkBoxDetector([(*lo, *hi)]), PipelineConfig(smoothing=False))
        for i in range(3):  # detect (+ refine), then two tracked frames
            res = pipe.process(frame, i)
        assert len(res.faces) == 1 and res.faces[0].tracked
        iod = np.linalg.norm(face.pts_img[36] - face.pts_img[45])
        errors[label] = float(np.linalg.norm(res.faces[0].pts_img - face.pts_img, axis=1).mean() / iod * 100)
    assert errors["offset"] < 0.6 and errors["none"] > 3 * errors["offset"] + 1.0, errors


def test_installing_a_bare_graph_points_to_the_import(world: dict[str, Path], tmp_path: Path) -> None:
    from kpdesk.inference.install import ModelInstallError, install_model

    with pytest.raises(ModelInstallError, match=r"manifest not found .*kpdesk models import "):
        install_model(world["nchw"], None, tmp_path / "models")


def test_a_five_point_model_calibrates_on_five_point_labels(tmp_path: Path) -> None:
    """5 points: the layout's crop scale (2.2) sets where the search looks."""
    faces = synthetic_faces(tmp_path / "faces5", n=8, points=5)
    graph = write_model(tmp_path / "five.onnx", scale=2.6, offset=(0.0, 0.15), points=5)
    m = build_manifest(graph, "five", ImportOptions(points=5))
    assert m.schema.name == "mtfl5"
    fitted, fit = calibrate_manifest(graph, m, faces, "val.txt", threads=1)
    assert abs(fit.scale - 2.6) < 0.03 and np.allclose(fit.offset, (0.0, 0.15), atol=0.008), fit
    assert fitted.crop_scale == fit.scale and fit.nme < 0.5


def test_the_crop_offset_composes_with_the_models_detector_mapping() -> None:
    """A detector box goes to the landmark box by the model's own mapping (manifest
    ``detector_crop``), then the crop is centred offset x that landmark box from it."""

    class _Box(FaceDetector):
        name = "box"

        def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
            return []

    det, d = _Box(BoxCalibration(0.3, 0.3, 1.5), use_roll=False), Detection((0, 0, 200, 200), 1.0)
    mapping = BoxCalibration(dx=0.0, dy=0.1, ratio=0.5)  # landmark box: centre (100, 120), side 100
    plain = det.box_to_crop(d, 2.0, mapping)
    moved = det.box_to_crop(d, 2.0, mapping, (0.05, 0.12))
    assert (plain.center_x, plain.center_y, plain.side) == pytest.approx((100.0, 120.0, 200.0))
    assert (moved.center_x, moved.center_y, moved.side) == pytest.approx((105.0, 132.0, 200.0))
    own = det.box_to_crop(d, 2.0, None, (0.05, 0.12))  # no model mapping: the detector's own
    assert (own.center_x, own.center_y) == pytest.approx((100 + 60 + 0.05 * 300, 100 + 60 + 0.12 * 300))


def test_import_writes_the_layouts_detector_mapping_and_refuses_an_unmeasured_layout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector box -> landmark box mapping depends on the point layout only, so import
    writes the measured one (68 and 5 points) and the model loads; a layout with none is
    refused at import in one line, not installed to be refused by the app at load."""
    from kpdesk.inference.detectors import LAYOUT_CALIBRATION
    from kpdesk.inference.model import ModelLoadError

    graph5 = write_model(tmp_path / "five.onnx", points=5)
    m = build_manifest(graph5, "five", ImportOptions(points=5, crop_offset=(0.0, 0.15)))
    assert m.detector_crop == {n: c.as_dict() for n, c in LAYOUT_CALIBRATION["mtfl5"].items()}
    again = Manifest.from_dict(m.to_dict())
    assert again == m and m.to_dict()["format"] == FORMAT_2
    model = LandmarkModel.load(graph5, threads=1, manifest=again)
    assert model.box_calibration("haar") == LAYOUT_CALIBRATION["mtfl5"]["haar"]
    with pytest.raises(ModelLoadError, match="no detector_crop"):
        LandmarkModel.load(graph5, threads=1, manifest=replace(m, detector_crop=None))
    graph68 = write_model(tmp_path / "sixty-eight.onnx")
    import kpdesk.inference.importer as importer

    monkeypatch.setattr(importer, "LAYOUT_CALIBRATION", {"mtfl5": LAYOUT_CALIBRATION["mtfl5"]})  # 68 unmeasured
    with pytest.raises(ModelImportError, match=r"no face-detector mapping is measured for a 68-point layout"):
        build_manifest(graph68, "sixty-eight", ImportOptions())

"""``training bench``: accuracy on crops from the app's detectors (training.evaluation.bench_detect).
Scripted detectors give exact expectations (a perfect model scores 0 on a perfect box, the
analytic NME on a shifted box, misses and wrong faces count as failures); the real Haar
cascade and BlazeFace find a real face in a face68-style image."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import export_constant_model, face_shape68, run_bench, same_face_pack

from kpdesk.assets import is_available
from kpdesk.inference.detectors import CALIBRATION, BoxCalibration, Detection, FaceDetector
from kpdesk.vision.schema import get_schema
from training.evaluation.bench_detect import display_groups, match, summary_with_misses

pytestmark = pytest.mark.usefixtures("no_signal_handlers")


def test_summary_counts_misses_as_failures() -> None:
    err = np.array([0.01, 0.05, np.inf, 0.12, 0.03])
    src = ["afw", "helen", "ytf", "ytf", "ytf"]
    assert display_groups(src) == ["all", "afw+helen", "ytf"]
    s = summary_with_misses(err, src)
    a = s["all"]
    assert (a["n"], a["detected"]) == (5, 4) and a["detection_rate"] == pytest.approx(80.0)
    assert a["nme"] == pytest.approx(100 * (0.01 + 0.05 + 0.12 + 0.03) / 4)
    assert a["fr10"] == pytest.approx(40.0) and a["fr08"] == pytest.approx(40.0)  # the miss + the 12% face
    assert s["afw+helen"]["detection_rate"] == 100.0 and s["afw+helen"]["fr10"] == 0.0
    y = s["ytf"]
    assert y["detected"] == 2 and y["nme"] == pytest.approx(7.5) and y["fr10"] == pytest.approx(100 / 1.5)
    # a miss is an infinite error: the CED never reaches it
    assert a["auc10"] < summary_with_misses(np.where(np.isfinite(err), err, 0.0), src)["all"]["auc10"]
    assert display_groups(["afw", "afw"]) == ["all", "afw"]


def test_match_takes_the_detection_holding_the_face_centre() -> None:
    pts = np.array([[40.0, 40.0], [60.0, 70.0]])  # box centre (50, 55)
    far = Detection((100, 100, 150, 150), 0.99)
    big = Detection((0, 0, 140, 140), 0.5)  # holds the centre, its own centre (70, 70)
    tight = Detection((35, 35, 66, 76), 0.6)  # centre (50.5, 55.5)
    assert match([far, big, tight], pts) is tight and match([far, big], pts) is big
    assert match([far], pts) is None and match([], pts) is None


class Scripted(FaceDetector):
    """Returns, call by call, a box relative to the (fixed) landmark box: 'exact', a shift
    in x (a number, px), 'none' (no face) or 'elsewhere' (a face that is not this one)."""

    def __init__(self, name: str, script: list, box: tuple[float, float, float, float]) -> None:
        super().__init__(BoxCalibration(), use_roll=False)  # identity: box -> the label crop
        self.name, self.script, self.box, self.calls = name, script, box, 0

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        step = self.script[self.calls % len(self.script)]
        self.calls += 1
        x0, y0, x1, y1 = self.box
        if step == "none":
            return []
        if step == "elsewhere":
            return [Detection((x0 + 200, y0, x1 + 200, y1), 0.9)]
        dx = 0.0 if step == "exact" else float(step)
        return [Detection((x0 + dx, y0, x1 + dx, y1), 0.9)]


@pytest.fixture
def scripted_dirs(tmp_path: Path, tiny_model_path: Path):
    root, pts_crop = same_face_pack(tmp_path / "data" / "face68")
    pts = np.loadtxt((root / (root / "val.txt").read_text().split()[0]).with_suffix(".pts"), skiprows=3, max_rows=68)
    models = tmp_path / "models"
    export_constant_model(models / "perfect.onnx", get_schema("ibug68"), pts_crop)
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), models / f"random{suffix}")
    return tmp_path / "data", models, pts


def test_bench_on_scripted_detector_crops(scripted_dirs, tmp_path: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, models, pts = scripted_dirs
    box = (*pts.min(0), *pts.max(0))
    made: list[str] = []
    scripts = {"blazeface": ["exact"], "haar": ["exact", "none", "elsewhere", 2.0, 2.0, 2.0]}

    def create(name: str) -> FaceDetector:
        made.append(name)
        # The crop is cut with each model's own mapping (68 points: the measured one), so the
        # scripted box is that mapping's inverse of the label box: 'exact' gives the label crop.
        return Scripted(name, scripts[name], CALIBRATION[name].face_box(box))

    monkeypatch.setattr("training.evaluation.bench_detect.create_detector", create)
    res = run_bench(capsys, data, models, tmp_path / "out", "--no-robustness", "--no-jitter")
    assert sorted(made) == ["blazeface", "haar"]  # each detector runs once, shared by both models
    recs = {r["name"]: r for r in res["models"]}
    crops = recs["perfect"]["crops"]
    assert set(crops) == {"labels", "blazeface", "haar"}
    lab, bf, haar = (crops[k]["groups"] for k in ("labels", "blazeface", "haar"))
    assert set(lab) == {"all", "afw+helen"} and lab["all"]["n"] == 6
    assert lab["all"]["nme"] < 1e-3 and bf["all"]["nme"] < 1e-3 and bf["all"]["detection_rate"] == 100.0
    # haar: faces 1 (no box) and 2 (another face) are missed; 3-5 are cut 2 px to the right,
    # so the constant model's points land 2 px off: NME = 2 px / inter-ocular distance
    iod = get_schema("ibug68").interocular(pts[None])[0]
    h = haar["all"]
    assert (h["n"], h["detected"]) == (6, 4)
    assert h["nme"] == pytest.approx(100 * (3 * 2.0 / iod) / 4, rel=1e-3)
    assert h["fr10"] == pytest.approx(100 * 2 / 6) and h["fr08"] == pytest.approx(100 * 2 / 6)
    assert h["auc10"] == pytest.approx(lab["all"]["auc10"] * 4 / 6 - (2.0 / iod) / 0.10 * 3 / 6, abs=2e-3)
    assert crops["haar"]["detected_metrics"]["n"] == 4
    assert recs["random"]["crops"]["haar"]["groups"]["all"]["detected"] == 4
    assert recs["random"]["crops"]["blazeface"]["groups"]["all"]["nme"] > 1.0
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "## Accuracy with the app's detectors: face68/val.txt" in md
    assert "| perfect | haar | 66.7 |" in md and "| perfect | labels | 100.0 | 0.00 | 0.0 |" in md

    # off, and an unavailable detector is reported, not fatal
    off = run_bench(capsys, data, models, tmp_path / "off", "--no-robustness", "--no-jitter", "--crop-detectors")
    assert all("crops" not in r for r in off["models"])

    def broken(name: str) -> FaceDetector:
        raise RuntimeError("no model file")

    monkeypatch.setattr("training.evaluation.bench_detect.create_detector", broken)
    res = run_bench(capsys, data, models, tmp_path / "broken", "--no-robustness", "--no-jitter", "--only", "perfect",
                 "--crop-detectors", "haar")
    assert "no model file" in res["models"][0]["crops"]["haar"]["error"]
    assert "Not available: `haar`: RuntimeError: no model file" in (tmp_path / "broken" / "bench.md").read_text()


def astronaut_pack(root: Path, astronaut_bgr: np.ndarray) -> Path:
    """A face68-style pack from the astronaut photo: 192 x 192, face at ~1/1.8 of the image,
    rough 68 points (a mean shape on her face box) on two copies (afw, helen)."""
    side, centre = 105.0, np.array([224.0, 137.0])
    pts = face_shape68() * side + centre
    half = 1.8 * side / 2
    x0, y0 = int(centre[0] - half), int(centre[1] - half)
    n = int(2 * half)
    img = cv2.resize(astronaut_bgr[y0:y0 + n, x0:x0 + n], (192, 192), interpolation=cv2.INTER_AREA)
    p = (pts - (x0, y0)) * 192 / n
    lines = []
    for src in ("afw", "helen"):
        rel = f"images/{src}/astronaut.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
        body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in p)
        (root / rel).with_suffix(".pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
        lines.append(rel)
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


def test_real_detectors_find_the_face_in_a_pack_image(tmp_path: Path, tiny_model_path: Path,
                                                      astronaut_bgr: np.ndarray, capsys: pytest.CaptureFixture) -> None:
    astronaut_pack(tmp_path / "data" / "face68", astronaut_bgr)
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), models / f"tiny{suffix}")
    dets = ["haar"] + (["blazeface"] if is_available("face_detector.tflite") else [])
    res = run_bench(capsys, tmp_path / "data", models, tmp_path / "out", "--no-robustness", "--no-jitter",
                 "--crop-detectors", *dets)
    crops = res["models"][0]["crops"]
    for d in dets:
        g = crops[d]["groups"]["all"]
        assert g["detected"] == g["n"] == 2, d
        assert math.isfinite(g["nme"]) and crops[d]["detect_seconds"] >= 0
    json.dumps(crops)  # JSON-ready

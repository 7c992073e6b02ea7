"""Face detectors on the astronaut photo, their calibration, and detector selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpdesk.assets import is_available
from kpdesk.inference.detectors import (
    BoxCalibration,
    Detection,
    HaarDetector,
    available_detectors,
    create_detector,
)
from kpdesk.inference.sources import DemoSource

FACE = np.array([224.0, 130.0])  # astronaut face centre

needs_blazeface = pytest.mark.skipif(not is_available("face_detector.tflite"),
                                     reason="BlazeFace model not fetched (python -m kpdesk.assets fetch)")


def _centre(box: tuple[float, float, float, float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def test_haar_finds_the_astronaut(astronaut_bgr: np.ndarray) -> None:
    with HaarDetector() as det:
        faces = det.detect(astronaut_bgr)
    assert faces and np.linalg.norm(_centre(faces[0].box_xyxy) - FACE) < 25
    assert faces[0].keypoints is None and faces[0].roll_deg is None


def test_haar_finds_nothing_in_a_blank_frame() -> None:
    assert HaarDetector().detect(np.full((480, 640, 3), 90, np.uint8)) == []


@needs_blazeface
def test_blazeface_finds_the_astronaut_with_keypoints(astronaut_bgr: np.ndarray) -> None:
    with create_detector("blazeface") as det:
        faces = det.detect(astronaut_bgr)
        crop = det.box_to_crop(faces[0], 1.5)
    f = faces[0]
    assert len(faces) == 1 and f.score > 0.7 and np.linalg.norm(_centre(f.box_xyxy) - FACE) < 15
    assert f.keypoints.shape == (6, 2) and f.keypoints[0, 0] < f.keypoints[1, 0]  # image-left eye first
    assert abs(f.roll_deg) < 15
    assert crop.box_xyxy()[0] < f.box_xyxy[0] and crop.box_xyxy()[2] > f.box_xyxy[2]  # crop holds the box


@needs_blazeface
def test_blazeface_roll_follows_the_demo_roll() -> None:
    """BlazeFace's eye keypoints under-read strong roll (about 20 of 35 degrees), but the
    sign and rough size are right, which is what the first crop needs."""
    demo = DemoSource()
    with create_detector("blazeface") as det:
        for i in (15, 45, 165, 195):  # rolled one way, then the other; no occluder
            _, _, roll, _ = demo.pose(i)
            assert demo.occluder(i) is None and abs(roll) > 10
            faces = det.detect(demo.frame(i))
            assert faces, f"no face at frame {i} (roll {roll:.0f})"
            # cv2's positive rotation turns the face counter-clockwise: the eye line goes up.
            assert np.sign(faces[0].roll_deg) == -np.sign(roll)
            assert abs(faces[0].roll_deg + roll) < 25


def test_calibration_moves_and_scales_in_the_face_frame() -> None:
    cal = BoxCalibration(dx=0.0, dy=0.1, ratio=0.8)
    box = (0.0, 0.0, 100.0, 100.0)
    up = cal.crop(box, 1.5)
    assert (up.center_x, up.center_y, up.side, up.angle_deg) == (50.0, 60.0, pytest.approx(120.0), 0.0)
    rolled = cal.crop(box, 1.5, roll_deg=90.0)  # face turned: its "down" points to image -x
    assert rolled.center_x == pytest.approx(40.0) and rolled.center_y == pytest.approx(50.0)
    assert rolled.angle_deg == 90.0
    with pytest.raises(ValueError):
        cal.crop((0, 0, 0, 0), 1.5)


def test_detection_roll_from_eye_keypoints() -> None:
    kp = np.array([[0.0, 0.0], [10.0, 10.0]])
    assert Detection((0, 0, 1, 1), 1.0, kp).roll_deg == pytest.approx(45.0)
    assert math.isclose(Detection((0, 0, 1, 1), 1.0, kp[::-1] * [1, 0]).roll_deg, 180.0)


def test_create_detector_choices(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert available_detectors()[-1] == "haar"
    assert create_detector("haar").name == "haar"
    with pytest.raises(ValueError, match="unknown detector"):
        create_detector("yolo")
    monkeypatch.setenv("KPDESK_CACHE", str(tmp_path))  # no assets: auto falls back to Haar
    assert available_detectors() == ["haar"]
    assert create_detector("auto").name == "haar"
    from kpdesk.assets import AssetMissingError

    with pytest.raises(AssetMissingError, match="python -m kpdesk.assets fetch"):
        create_detector("blazeface")


@pytest.mark.data
def test_hardcoded_calibration_matches_a_fresh_measurement() -> None:
    """Re-measure on 60 face68 validation faces (benchmarks/calibrate_detectors.py)."""
    import importlib.util
    from pathlib import Path

    import cv2
    from conftest import data_root

    from kpdesk.inference.detectors import CALIBRATION
    from kpdesk.inference.tracking import box_iou
    from kpdesk.vision.labels import read_pts

    spec = importlib.util.spec_from_file_location(
        "calibrate", Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_detectors.py")
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    root = data_root() / "face68"
    dets = [HaarDetector()] + ([create_detector("blazeface")] if is_available("face_detector.tflite") else [])
    rows: dict[str, list] = {d.name: [] for d in dets}
    for rel in (root / "val.txt").read_text().split()[:60]:
        canvas, pts = cal.on_canvas(cv2.imread(str(root / rel)), read_pts((root / rel).with_suffix(".pts")), 2.0)
        lm_box = (*pts.min(axis=0), *pts.max(axis=0))
        for d in dets:
            found = [f for f in d.detect(canvas) if box_iou(f.box_xyxy, lm_box) >= 0.2]
            if found:
                rows[d.name].append(cal.measure(d, found[0], pts))
    for d in dets:
        m = np.mean(rows[d.name], axis=0)
        c = CALIBRATION[d.name]
        assert len(rows[d.name]) > 30
        assert np.allclose(m, [c.dx, c.dy, c.ratio], atol=0.04), (d.name, m)
        d.close()


@pytest.mark.data
def test_the_five_point_mapping_matches_a_fresh_measurement() -> None:
    """Re-measure the mtfl5 mapping on 80 face5 train faces spread over the list
    (benchmarks/calibrate_detectors.py --pack face5): the stored one is within 0.04."""
    import importlib.util
    from pathlib import Path

    import cv2
    from conftest import data_root

    from kpdesk.inference.detectors import LAYOUT_CALIBRATION
    from kpdesk.vision.labels import load_labelled_folder

    spec = importlib.util.spec_from_file_location(
        "calibrate", Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_detectors.py")
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    faces = load_labelled_folder(data_root() / "face5", "train.txt", max_faces=80).faces
    dets = [HaarDetector()] + ([create_detector("blazeface")] if is_available("face_detector.tflite") else [])
    rows: dict[str, list] = {d.name: [] for d in dets}
    for f in faces:
        for view, pts in cal.views("face5", cv2.imread(str(f.path)), np.asarray(f.pts_img, np.float64), []):
            for d in dets:
                best = cal.matched("face5", d.detect(view), pts)
                if best is not None:
                    rows[d.name].append(cal.measure(d, best, pts))
    for d in dets:
        m = np.mean(rows[d.name], axis=0)
        c = LAYOUT_CALIBRATION["mtfl5"][d.name]
        assert len(rows[d.name]) > 40
        assert np.allclose(m, [c.dx, c.dy, c.ratio], atol=0.04), (d.name, m)
        d.close()

"""Head pose where users see it: recordings (JSONL / CSV), ``kpdesk detect --json``, the
drawn axes, and the Live tab's pose plot."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from kpdesk.vision.headpose import default_camera, project, rotation_from_angles
from kpdesk.vision.mean_face import MEAN_FACE_68_MM
from kpdesk.vision.results import FaceResult, FrameResult, StageTimings

FRAME = (640, 480)
REPO = Path(__file__).resolve().parents[1]


def posed_points(yaw: float, pitch: float, roll: float) -> np.ndarray:
    f, c = default_camera(FRAME)
    return project(MEAN_FACE_68_MM, rotation_from_angles(yaw, pitch, roll), np.array([0.0, 0.0, 650.0]), f, c)


def frame_result(pts: np.ndarray, frame_size: tuple[int, int] = FRAME) -> FrameResult:
    face = FaceResult(box_xyxy=(0.0, 0.0, 10.0, 10.0), pts_img=pts, conf=np.ones(len(pts)),
                      crop_matrix=np.eye(2, 3))
    return FrameResult(frame_index=3, model_name="m", faces=(face,), timings=StageTimings(), frame_size=frame_size)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_recordings_carry_yaw_pitch_roll(tmp_path: Path, suffix: str) -> None:
    from kpdesk.workers.recorder import LandmarkRecorder

    path = tmp_path / f"rec{suffix}"
    rec = LandmarkRecorder(path)
    rec.write("live", frame_result(posed_points(25, -10, 5)))
    rec.write("live", frame_result(posed_points(0, 0, 0), frame_size=(0, 0)))  # unknown frame: no pose
    rec.close()
    if suffix == ".jsonl":
        rows = [json.loads(s) for s in path.read_text().splitlines()]
        pose = rows[0]["faces"][0]["pose"]
        assert pose.pop("rough") is False
        assert pose == pytest.approx({"yaw": 25.0, "pitch": -10.0, "roll": 5.0}, abs=0.05)
        assert rows[1]["faces"][0]["pose"] is None
    else:
        rows = list(csv.reader(path.open()))
        h = rows[0]
        got = [float(rows[1][h.index(k)]) for k in ("yaw", "pitch", "roll")]
        assert got == pytest.approx([25.0, -10.0, 5.0], abs=0.05)
        assert [rows[2][h.index(k)] for k in ("yaw", "pitch", "roll")] == ["", "", ""]


def test_pipeline_results_know_their_frame_size(tiny_model_path: Path, astronaut_bgr: np.ndarray) -> None:
    from kpdesk.inference.detectors import create_detector
    from kpdesk.inference.model import LandmarkModel
    from kpdesk.inference.pipeline import Pipeline

    det = create_detector("haar")
    try:
        frame = np.ascontiguousarray(astronaut_bgr[:400, :300])
        r = Pipeline(LandmarkModel.load(tiny_model_path, threads=1), det).process(frame)
    finally:
        det.close()
    assert r.frame_size == (300, 400)


def test_detect_json_has_the_pose_of_the_astronaut(tmp_path: Path, astronaut_bgr: np.ndarray, capsys) -> None:  # noqa: ANN001
    """A shipped model on scikit-image's astronaut: she faces the camera, head slightly tilted."""
    import cv2

    from kpdesk.cli import main

    model = REPO / "models" / "student.onnx"
    if not model.is_file():
        pytest.skip(f"{model} not shipped here")
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), astronaut_bgr)
    out, js = tmp_path / "out.png", tmp_path / "pts.jsonl"
    assert main(["detect", str(img), "--model", str(model), "--detector", "haar", "--json", str(js), "--out",
                 str(out), "--pose", "--threads", "1"]) == 0
    rec = json.loads(js.read_text().splitlines()[0])
    pose = rec["faces"][0]["pose"]
    assert set(pose) == {"yaw", "pitch", "roll", "rough"} and pose["rough"] is False
    assert abs(pose["yaw"]) < 15 and abs(pose["roll"]) < 10 and -35 < pose["pitch"] < 10, pose
    drawn, plain = cv2.imread(str(out)), astronaut_bgr
    assert np.any(np.all(drawn == (255, 160, 40), axis=-1)) or np.any(np.all(drawn == (60, 60, 255), axis=-1))
    assert drawn.shape == plain.shape


def test_axes_are_drawn_where_the_pose_points() -> None:
    from kpdesk.gui.render import OverlayOptions, draw_face

    pts = posed_points(35, 0, 0)
    face = frame_result(pts).faces[0]
    img = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
    draw_face(img, face, None, 0, OverlayOptions(keypoints=False, box=False, head_pose=True))
    blue = np.argwhere(np.all(img == (255, 160, 40), axis=-1))  # the facing axis
    assert len(blue) > 10
    assert blue[:, 1].mean() > pts[30, 0] + 5  # turned to the image's right: it points right
    off = np.zeros_like(img)
    draw_face(off, face, None, 0, OverlayOptions(keypoints=False, box=False, head_pose=False))
    assert not off.any()


@pytest.mark.gui
def test_live_tab_plots_the_pose_over_time(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from kpdesk.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from fixtures import build_tiny_models

    from kpdesk.gui.main_window import MainWindow

    models = next(iter(build_tiny_models(tmp_path / "models").values())).parent
    w = MainWindow(models_dir=models, source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    w.start()
    try:
        assert not w.live_tab.pose_plot.isVisible()
        w.live_tab.cb_pose.setChecked(True)
        assert w.live_tab.pose_plot.isVisible()
        qtbot.waitUntil(lambda: w.live_tab.last_pose is not None, timeout=120_000)
        qtbot.waitUntil(lambda: len(w.live_tab.pose_plot.series["yaw"].arrays()[0]) >= 3, timeout=120_000)
        t, v = w.live_tab.pose_plot.series["yaw"].arrays()
        assert np.all(t <= 0) and np.isfinite(v).any()
        w.live_tab.pose_plot.refresh()
        x, _ = w.live_tab.pose_plot.curves["yaw"].getData()
        assert x is not None and len(x) >= 3
    finally:
        w.shutdown()


def test_recordings_of_the_selfie_view_say_mirrored_and_keep_the_pose_signs(tmp_path: Path) -> None:
    """A head turned to its own left (yaw +25) and tilted (roll +8), seen through the app's
    mirror: the recording says ``mirrored`` and the angles keep their signs."""
    from kpdesk.vision.schema import get_schema
    from kpdesk.workers.inference import InferenceWorker
    from kpdesk.workers.mailbox import LatestMailbox
    from kpdesk.workers.messages import FramePacket, VariantResult, VariantSpec
    from kpdesk.workers.recorder import LandmarkRecorder

    pts = posed_points(25, -10, 8)
    flipped = pts.copy()
    flipped[:, 0] = FRAME[0] - 1 - flipped[:, 0]
    selfie = flipped[list(get_schema("ibug68").flip_perm)]  # what the model finds in the flipped frame
    worker = InferenceWorker(LatestMailbox())
    path = tmp_path / "rec.jsonl"
    worker.set_recorder(LandmarkRecorder(path))
    worker._apply_pending()
    for i, (p, mirrored) in enumerate(((pts, False), (selfie, True))):
        packet = FramePacket(1, i, i / 30, np.zeros((FRAME[1], FRAME[0], 3), np.uint8), mirrored=mirrored)
        worker._record(VariantResult(spec=VariantSpec(label="live", model_path=Path("m.onnx")),
                                     result=frame_result(p), frame=packet))
    worker._close_recorder(worker._recorder)
    rows = [json.loads(s) for s in path.read_text().splitlines()]
    assert [r["mirrored"] for r in rows] == [False, True]
    for r in rows:
        pose = r["faces"][0]["pose"]
        assert pose["yaw"] == pytest.approx(25, abs=1) and pose["roll"] == pytest.approx(8, abs=1), pose
        assert pose["pitch"] == pytest.approx(-10, abs=1)


def test_detect_json_rows_say_mirrored(tmp_path: Path, tiny_model_path: Path, astronaut_bgr: np.ndarray) -> None:
    import cv2

    from kpdesk.cli import main

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), astronaut_bgr)
    for flag, want in (([], False), (["--mirror"], True)):
        js = tmp_path / f"{want}.jsonl"
        assert main(["detect", str(img), "--model", str(tiny_model_path), "--detector", "haar", "--json", str(js),
                     "--threads", "1", *flag]) == 0
        (rec,) = [json.loads(s) for s in js.read_text().splitlines()]
        assert rec["mirrored"] is want


def test_old_record_names_are_still_read(tmp_path: Path) -> None:
    """``detect --json`` used ``points`` / ``box`` / ``timings`` / ``timestamp``; app recordings
    one row per face with ``pts_img`` / ``box_xyxy`` at the top: one reader takes all."""
    from kpdesk.vision.records import read_records

    old_detect = {"frame": 0, "timestamp": 0.5, "model": "m", "detector": "haar",
                  "faces": [{"box": [0, 0, 9, 9], "points": [[1, 2]], "conf": [0.5], "pose": None}],
                  "timings": {"total": 3.0}}
    old_app = [{"frame": 4, "t": 0.1, "variant": "live", "model": "m", "face": i, "box_xyxy": [0, 0, 5, 5],
                "pts_img": [[i, i]], "conf": [1.0], "pose": None, "timings_ms": {"total": 2.0}} for i in range(2)]
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (old_detect, *old_app)) + "\n")
    a, b = read_records(path)
    assert a["t"] == 0.5 and a["faces"][0]["pts_img"] == [[1, 2]] and a["faces"][0]["box_xyxy"] == [0, 0, 9, 9]
    assert a["timings_ms"] == {"total": 3.0} and a["mirrored"] is False
    assert b["frame"] == 4 and [f["pts_img"] for f in b["faces"]] == [[[0, 0]], [[1, 1]]] and "face" not in b
    new = tmp_path / "new.jsonl"
    from kpdesk.workers.recorder import LandmarkRecorder

    rec = LandmarkRecorder(new)
    rec.write("live", frame_result(posed_points(0, 0, 0)), mirrored=True)
    rec.close()
    (c,) = read_records(new)
    assert c["mirrored"] is True and len(c["faces"][0]["pts_img"]) == 68 and c["variant"] == "live"

"""The per-frame pipeline with a real (tiny) ONNX model: detection, batching, tracking,
timings, heatmaps, switching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures import export_tiny

from kpdesk.inference.detectors import Detection, FaceDetector, HaarDetector
from kpdesk.inference.model import LandmarkModel
from kpdesk.inference.pipeline import Pipeline, PipelineConfig
from kpdesk.inference.sources import DemoSource
from kpdesk.vision.transforms import apply_affine, invert_affine, warp_crop


class FixedDetector(FaceDetector):
    """Returns the same boxes every time and counts its calls."""

    name = "fixed"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__()
        self.boxes = boxes
        self.calls = 0

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        self.calls += 1
        return [Detection(b, 0.9) for b in self.boxes]


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> LandmarkModel:
    return LandmarkModel.load(tiny_model_path, threads=1)


def test_astronaut_with_haar(model: LandmarkModel, astronaut_bgr: np.ndarray) -> None:
    pipe = Pipeline(model, HaarDetector(), PipelineConfig(smoothing=False))
    res = pipe.process(astronaut_bgr, frame_index=7, timestamp=1.5)
    assert (res.frame_index, res.model_name, res.detector_name, res.timestamp) == (7, "tiny", "haar", 1.5)
    assert len(res.faces) == 1 and res.extras["detected"]
    face = res.faces[0]
    assert face.pts_img.shape == (68, 2) and face.conf.shape == (68,) and face.heatmap is None
    assert not face.tracked and face.detector_score == pytest.approx(1.0)
    t = res.timings
    assert min(t.detect, t.preprocess, t.inference, t.decode) >= 0
    assert t.total == pytest.approx(t.detect + t.preprocess + t.inference + t.decode, abs=1e-6)
    # The points are the model's crop points mapped back through the crop matrix.
    crop = warp_crop(astronaut_bgr, _spec_of(face.crop_matrix, 64), 64)
    expect = apply_affine(model.run(crop).pts_crop[0], invert_affine(face.crop_matrix))
    assert np.abs(face.pts_img - expect).max() < 1e-3


def _spec_of(m: np.ndarray, size: int):
    """The CropSpec with matrix m (the pipeline's crops are rotation + uniform scale)."""
    from kpdesk.vision.transforms import CropSpec

    inv = invert_affine(m)
    c = apply_affine([(size - 1) / 2, (size - 1) / 2], inv)
    scale = float(np.hypot(*m[0, :2]))
    angle = float(np.degrees(np.arctan2(m[0, 1], m[0, 0])))
    return CropSpec(float(c[0]), float(c[1]), size / scale, angle)


def test_several_faces_in_one_model_call(model: LandmarkModel, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = np.full((300, 600, 3), 100, np.uint8)
    det = FixedDetector([(50, 50, 150, 150), (300, 60, 400, 160), (450, 100, 550, 200)])
    batches = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda x: batches.append(len(x)) or real(x))
    res = Pipeline(model, det, PipelineConfig(max_faces=2)).process(frame)
    # Three candidates for two places in one call, the new faces' second pass on their own
    # crops in one more; the two most confident are kept.
    assert len(res.faces) == 2 and batches == [3, 3]
    assert len(set(res.extras["track_ids"])) == 2
    batches.clear()
    res = Pipeline(model, det, PipelineConfig(max_faces=2, refine_fresh=False)).process(frame)
    assert len(res.faces) == 2 and batches == [3]


def test_tracks_between_detections(model: LandmarkModel) -> None:
    frame = np.full((300, 300, 3), 120, np.uint8)
    det = FixedDetector([(100, 100, 200, 200)])
    # Regression decoding: the untrained heatmaps would scatter the points.
    pipe = Pipeline(model, det, PipelineConfig(redetect_every=3, min_track_conf=0.0, decode_mode="regression"))
    results = [pipe.process(frame, i, i / 30) for i in range(7)]
    assert det.calls == 3  # frames 0, 3, 6
    assert [r.extras["detected"] for r in results] == [True, False, False, True, False, False, True]
    assert not results[0].faces[0].tracked and results[1].faces[0].tracked
    assert {r.extras["track_ids"] for r in results} == {(1,)}  # one face, one id throughout


def test_low_confidence_faces_are_dropped_and_redetected(tmp_path: Path) -> None:
    weak = LandmarkModel.load(export_tiny(tmp_path, "weak", hm_bias=-6.0))
    frame = np.full((300, 300, 3), 120, np.uint8)
    det = FixedDetector([(100, 100, 200, 200)])
    pipe = Pipeline(weak, det, PipelineConfig(redetect_every=30, min_track_conf=0.3))
    results = [pipe.process(frame, i) for i in range(3)]
    assert det.calls == 3  # confidence never reaches 0.3: detect every frame
    assert all(len(r.faces) == 1 and not r.faces[0].tracked for r in results)
    assert results[0].faces[0].mean_conf < 0.05


def test_keep_heatmaps_and_decode_override(model: LandmarkModel) -> None:
    frame = np.full((200, 200, 3), 90, np.uint8)
    det = FixedDetector([(50, 50, 150, 150)])
    pipe = Pipeline(model, det, PipelineConfig(keep_heatmaps=True, decode_mode="heatmap"))
    res = pipe.process(frame)
    assert res.faces[0].heatmap.shape == (68, 16, 16) and model.decode_mode == "heatmap"
    pipe.set_config(PipelineConfig())
    assert model.decode_mode == "fusion" and pipe.process(frame).faces[0].heatmap is None


def test_no_face_gives_an_empty_result(model: LandmarkModel) -> None:
    res = Pipeline(model, FixedDetector([])).process(np.zeros((100, 100, 3), np.uint8))
    assert res.faces == () and res.timings.inference == 0.0
    with pytest.raises(ValueError, match="BGR frame"):
        Pipeline(model, FixedDetector([])).process(np.zeros((100, 100), np.uint8))


def test_switching_model_detector_and_reset(model: LandmarkModel, tmp_path: Path) -> None:
    frame = np.full((300, 300, 3), 120, np.uint8)
    a, b = FixedDetector([(100, 100, 200, 200)]), FixedDetector([(100, 100, 200, 200)])
    pipe = Pipeline(model, a, PipelineConfig(min_track_conf=0.0))
    pipe.process(frame, 0)
    pipe.process(frame, 1)
    pipe.set_detector(b)
    assert pipe.process(frame, 2).detector_name == "fixed" and b.calls == 1
    pipe.reset()
    assert pipe.process(frame, 3).extras["detected"] and b.calls == 2
    other = LandmarkModel.load(export_tiny(tmp_path, "five", points=5))
    pipe.set_model(other)
    res = pipe.process(frame, 4)
    assert res.model_name == "five" and res.faces[0].pts_img.shape == (5, 2) and res.extras["detected"]


def test_demo_frames_with_smoothing(model: LandmarkModel) -> None:
    demo = DemoSource(num_frames=12)
    det = FixedDetector([(270, 140, 370, 240)])
    pipe = Pipeline(model, det, PipelineConfig(min_track_conf=0.0, decode_mode="regression"))
    res = [pipe.process(f, i, t) for i, (f, t) in enumerate(demo)]
    assert [r.extras["detected"] for r in res].count(True) == 1  # steady crops: tracked throughout
    assert all(len(r.faces) == 1 for r in res)
    assert all(np.all(np.isfinite(r.faces[0].pts_img)) for r in res)


@pytest.mark.parametrize("name", ["student-5pt", "student"])
def test_a_tracked_face_keeps_the_face_box_for_every_layout(name: str, astronaut_bgr: np.ndarray) -> None:
    """The Face box of a tracked face used to be the box round its points: for 5 points (eyes
    to mouth corners) a small box inside the face. Now it is the face's box, as detected."""
    from kpdesk.inference.tracking import box_iou, points_box

    path = Path(__file__).resolve().parents[1] / "models" / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not shipped here")
    pipe = Pipeline(LandmarkModel.load(path, threads=1), HaarDetector(), PipelineConfig(smoothing=False))
    first = pipe.process(astronaut_bgr, 0, 0.0).faces[0]
    again = pipe.process(astronaut_bgr, 1, 1 / 30).faces[0]
    assert not first.tracked and again.tracked
    assert box_iou(again.box_xyxy, first.box_xyxy) > 0.6, (again.box_xyxy, first.box_xyxy)
    x0, y0, x1, y1 = points_box(again.pts_img)
    assert (again.box_xyxy[2] - again.box_xyxy[0]) > (x1 - x0) * (1.5 if name == "student-5pt" else 0.9)

"""Unit tests of the Qt-free pieces under kpdesk.workers."""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kpdesk.vision.results import FaceResult, FrameResult, StageTimings
from kpdesk.vision.schema import get_schema
from kpdesk.workers.agreement import agreement
from kpdesk.workers.mailbox import LatestMailbox
from kpdesk.workers.model_install import ModelInstallError, install_model
from kpdesk.workers.occlusion import PRESETS, FaceAnchor, Occluder, paint_occluder, quad_bbox
from kpdesk.workers.recorder import LandmarkRecorder
from kpdesk.workers.stats import PerfHistory, RateMeter, RollingSeries
from kpdesk.workers.training_job import parse_event_line


def test_mailbox_keeps_only_the_latest_and_counts_drops() -> None:
    mb: LatestMailbox[int] = LatestMailbox()
    assert mb.put(1) is True
    assert mb.put(2) is False  # 1 was never taken
    assert mb.put(3) is False
    assert mb.dropped == 2
    assert mb.get(timeout=0) == 3
    assert mb.get(timeout=0.01) is None


def test_mailbox_close_wakes_a_waiting_consumer() -> None:
    mb: LatestMailbox[int] = LatestMailbox()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(mb.get(timeout=5)))
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    mb.close()
    t.join(2)
    assert got == [None] and time.monotonic() - t0 < 1.0


def test_occluder_presets_follow_the_face_and_paint_only_inside() -> None:
    frame = np.full((200, 300, 3), 128, np.uint8)
    face = FaceAnchor.from_box((100.0, 50.0, 200.0, 150.0))
    for name in PRESETS:
        out, quad = paint_occluder(frame, Occluder.preset(name), face)
        box = quad_bbox(quad, frame.shape) if quad is not None else None
        assert box is not None
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200
        changed = np.any(out != frame, axis=2)
        ys, xs = np.nonzero(changed)
        assert changed.any() and xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        assert np.array_equal(frame, np.full_like(frame, 128)), "input frame must not be modified"
    # The sunglasses band sits on the upper half of the face, the hand on the lower half.
    _, band = paint_occluder(frame, Occluder.preset("sunglasses band"), face)
    _, hand = paint_occluder(frame, Occluder.preset("hand over mouth"), face)
    assert band is not None and hand is not None
    assert max(y for _, y in band) < 100 < min(y for _, y in hand)
    moved = FaceAnchor.from_box((150.0, 50.0, 250.0, 150.0))
    _, band2 = paint_occluder(frame, Occluder.preset("sunglasses band"), moved)
    assert band2 is not None and band2[0][0] - band[0][0] == pytest.approx(50.0)


def test_face_occluder_turns_with_the_roll() -> None:
    frame = np.full((300, 300, 3), 128, np.uint8)
    level = FaceAnchor(150.0, 150.0, 120.0, 0.0)
    rolled = FaceAnchor(150.0, 150.0, 120.0, 30.0)
    _, q0 = paint_occluder(frame, Occluder.preset("sunglasses band"), level)
    out, q1 = paint_occluder(frame, Occluder.preset("sunglasses band"), rolled)
    assert q0 is not None and q1 is not None
    (ax, ay), (bx, by) = q1[0], q1[1]  # the band's top edge follows the eye line
    assert np.degrees(np.arctan2(by - ay, bx - ax)) == pytest.approx(30.0, abs=1.0)
    assert q0[0][1] == pytest.approx(q0[1][1])
    assert (out != frame).any()


def test_image_occluder_is_clipped_and_empty_ones_are_ignored() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    out, quad = paint_occluder(frame, Occluder("rect", (80, 80, 150, 150)), None)
    assert quad is not None and quad_bbox(quad, frame.shape) == (80, 80, 100, 100) and out[90, 90].tolist() != [0, 0, 0]
    out, quad = paint_occluder(frame, Occluder("rect", (150, 150, 200, 200)), None)
    assert quad is None and out is frame
    with pytest.raises(ValueError, match="kind"):
        Occluder("blob", (0, 0, 1, 1))


def _frame_result(pts: np.ndarray, conf: np.ndarray) -> FrameResult:
    face = FaceResult(box_xyxy=(0.0, 0.0, 10.0, 10.0), pts_img=pts, conf=conf, crop_matrix=np.eye(2, 3))
    return FrameResult(frame_index=7, model_name="m", faces=(face,), timings=StageTimings(total=3.0), timestamp=0.25)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_recorder_writes_one_row_per_face(tmp_path: Path, suffix: str) -> None:
    pts = np.arange(10, dtype=np.float64).reshape(5, 2)
    conf = np.linspace(0, 1, 5)
    path = tmp_path / f"rec{suffix}"
    rec = LandmarkRecorder(path)
    rec.write("live", _frame_result(pts, conf))
    rec.write("live", _frame_result(pts + 1, conf))
    rec.close()
    if suffix == ".jsonl":
        rows = [json.loads(s) for s in path.read_text().splitlines()]
        assert len(rows) == 2 and rows[0]["frame"] == 7 and rows[1]["faces"][0]["pts_img"][0] == [1.0, 2.0]
        assert rows[0]["faces"][0]["conf"][-1] == 1.0 and rows[0]["variant"] == "live"
    else:
        rows = list(csv.reader(path.open()))
        assert rows[0][:5] == ["frame", "t", "variant", "model", "face"] and len(rows) == 3
        assert rows[1][rows[0].index("x1")] == "2.0" and rows[2][rows[0].index("y0")] == "2.0"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_recorder_rows_carry_the_source_file(tmp_path: Path, suffix: str) -> None:
    pts, conf = np.arange(10, dtype=np.float64).reshape(5, 2), np.linspace(0, 1, 5)
    rec = LandmarkRecorder(tmp_path / f"rec{suffix}")
    rec.write("live", _frame_result(pts, conf), "a.png")
    rec.write("live", _frame_result(pts, conf), "c.png")  # b.png was unreadable: frame numbers shift
    rec.close()
    if suffix == ".jsonl":
        files = [json.loads(s)["file"] for s in (tmp_path / "rec.jsonl").read_text().splitlines()]
    else:
        rows = list(csv.reader((tmp_path / "rec.csv").open()))
        files = [r[rows[0].index("file")] for r in rows[1:]]
    assert files == ["a.png", "c.png"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_recorder_rows_reach_the_file_before_it_is_closed(tmp_path: Path, suffix: str) -> None:
    """A killed app (no close) loses at most the frame being written."""
    pts, conf = np.arange(10, dtype=np.float64).reshape(5, 2), np.linspace(0, 1, 5)
    rec = LandmarkRecorder(tmp_path / f"rec{suffix}")
    for i in range(3):
        rec.write("live", _frame_result(pts + i, conf))
        lines = (tmp_path / f"rec{suffix}").read_text().splitlines()  # another reader, file still open
        assert len(lines) == i + 1 + (suffix == ".csv")  # + the CSV header
    rec.close()


def test_agreement_in_percent_of_interocular_distance() -> None:
    s68 = get_schema("ibug68")
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (68, 2))
    a[36], a[45] = (20.0, 50.0), (80.0, 50.0)  # IOD 60 px
    b = a + np.array([3.0, 0.0])
    ag = agreement(a, s68, b, s68)
    assert ag is not None and ag.mean_px == pytest.approx(3.0) and ag.mean_pct_iod == pytest.approx(5.0)
    s5 = get_schema("mtfl5")
    five = np.array([a[36:42].mean(0), a[42:48].mean(0), a[30], a[48], a[54]])
    ag5 = agreement(a, s68, five, s5)
    assert ag5 is not None and ag5.num_points == 5 and ag5.mean_px == pytest.approx(0.0, abs=1e-9)
    assert agreement(a[:10], s68, a[:7], s68) is None


def test_rolling_series_and_rates() -> None:
    s = RollingSeries(window_s=1.0)
    for i in range(30):
        s.append(i * 0.1, float(i))
    t, v = s.arrays(now=2.9)
    assert t.min() >= -1.0 and v[-1] == 29 and len(s) <= 11
    r = RateMeter(window_s=10)
    for i in range(11):
        r.tick(i * 0.1)
    assert r.rate(now=1.0) == pytest.approx(10.0)
    h = PerfHistory()
    h.add_variant(1.0, "A", {"total": 20.0, "detect": 5.0}, 1)
    assert h.variants["A"].fps.last() == pytest.approx(50.0)


def test_parse_event_line() -> None:
    ev = parse_event_line('{"event": "progress", "epoch": 1, "loss": 0.5}')
    assert ev is not None and ev.kind == "progress" and ev.get("loss") == 0.5
    assert parse_event_line("epoch 1 [####]") is None
    assert parse_event_line('{"no_event": 1}') is None
    assert parse_event_line("{broken") is None


def test_install_model_verifies_then_renames(tmp_path: Path) -> None:
    from fixtures import export_tiny_model

    src = export_tiny_model(tmp_path / "run" / "mine.onnx")
    dest = tmp_path / "models"
    out = install_model(src, src.with_suffix(".json"), dest)
    assert out == dest / "mine.onnx" and out.is_file() and (dest / "mine.json").is_file()
    assert sorted(p.name for p in dest.iterdir()) == ["mine.json", "mine.onnx"]  # no staging left behind
    bad = tmp_path / "run" / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    (tmp_path / "run" / "bad.json").write_text(src.with_suffix(".json").read_text())
    with pytest.raises(ModelInstallError, match="does not load"):
        install_model(bad, None, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["mine.json", "mine.onnx"]


def test_run_watcher_follows_an_events_file(qtbot, tmp_path: Path) -> None:  # noqa: ANN001 - pytest-qt
    from kpdesk.workers.training_job import RunWatcher

    events = tmp_path / "events.jsonl"
    events.write_text('{"event": "start", "epochs": 2}\n{"event": "progress", "epoch": 1, "loss": 0.5}\n{"event": "me')
    w = RunWatcher(tmp_path)
    seen: list = []
    w.event.connect(seen.append)
    assert w.poll() == 2 and [e.kind for e in seen] == ["start", "progress"]
    with events.open("a") as fh:
        fh.write('tric", "epoch": 1, "nme_ion": 5.0}\nnot json\n')
    assert w.poll() == 1 and seen[-1].kind == "metric" and seen[-1].get("nme_ion") == 5.0
    assert w.poll() == 0


def test_clean_frame_detector_shows_the_detector_the_unoccluded_frame() -> None:
    from kpdesk.workers.inference import CleanFrameDetector

    class Inner:
        name = "fake"
        calibration = "cal"

        def __init__(self) -> None:
            self.seen: list[np.ndarray] = []

        def detect(self, frame: np.ndarray) -> list:
            self.seen.append(frame)
            return []

    inner = Inner()
    det = CleanFrameDetector(inner)
    painted, clean = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    det.detect(painted)
    det.clean = clean
    det.detect(painted)
    assert inner.seen[0] is painted and inner.seen[1] is clean
    assert det.name == "fake" and det.calibration == "cal"


def test_pyside_keeps_references_to_none_and_the_booleans(qapp) -> None:
    """PySide6 6.12.0 on CPython 3.11 drops a reference to None on every void call (and to
    True on Signal.emit): a running app aborted with ``none_dealloc`` within a minute.
    pyproject.toml pins a release without that bug; this catches a regression."""
    import sys

    from PySide6.QtCore import QObject, Signal
    from PySide6.QtWidgets import QLabel

    class Emitter(QObject):
        ping = Signal()

    label, em = QLabel(), Emitter()
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2000):
        label.setText("x")
        em.ping.emit()
    after = sys.getrefcount(None), sys.getrefcount(True)
    assert after[0] >= before[0] - 50 and after[1] >= before[1] - 50, (before, after)


def test_rolling_series_bins_into_means() -> None:
    s = RollingSeries(window_s=10.0)
    for i in range(16):
        s.append(i * 0.25, float(i % 2))  # 0, 1, 0, 1 ... (times exact in binary)
    t, v = s.binned(now=3.75, bin_s=1.0)
    assert len(t) == 4 and np.allclose(v, 0.5) and t.max() <= 0


def test_only_stale_tracks_detects_a_track_that_blocks_a_fresh_detection() -> None:
    from kpdesk.workers.inference import only_stale_tracks

    def result(detected: bool, scores: list) -> FrameResult:
        faces = tuple(FaceResult((0.0, 0.0, 1.0, 1.0), np.zeros((5, 2)), np.ones(5), np.eye(2, 3),
                                 detector_score=sc) for sc in scores)
        return FrameResult(0, "m", faces, StageTimings(), extras={"detected": detected})

    assert only_stale_tracks(result(True, [None]), faces_found=1)
    assert not only_stale_tracks(result(True, [0.9]), faces_found=1)  # confirmed by a detection
    assert not only_stale_tracks(result(False, [None]), faces_found=1)  # plain tracking frame
    assert not only_stale_tracks(result(True, [None]), faces_found=0)  # detector found nothing (occluded)


def test_frames_of_a_folder_carry_their_file_name(qtbot, tmp_path: Path) -> None:  # noqa: ANN001 - pytest-qt
    import cv2

    from kpdesk.workers.capture import CaptureWorker

    for name in ("a.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), 128, np.uint8))
    (tmp_path / "b.png").write_bytes(b"unreadable")
    mb: LatestMailbox = LatestMailbox()
    cap = CaptureWorker(str(tmp_path), mb, 1, realtime=False)
    ended: list[str] = []
    cap.ended.connect(ended.append)
    cap.start()
    try:
        qtbot.waitUntil(lambda: bool(ended), timeout=30000)
        packet = mb.get(timeout=5)
        assert packet is not None and packet.source_file == "c.png"  # held: the last file read
    finally:
        cap.stop()
        cap.wait(5000)

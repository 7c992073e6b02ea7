"""The desktop app, offscreen, with real exported ONNX models (pytest-qt)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from fixtures import (  # noqa: E402
    TINY_OVERRIDES,
    make_tiny_dataset,
)
from PySide6.QtCore import QPoint, Qt  # noqa: E402

from kpdesk.gui.main_window import MainWindow  # noqa: E402
from kpdesk.gui.render import OCCLUDED_BGR, confidence_color  # noqa: E402
from kpdesk.inference import sources  # noqa: E402
from kpdesk.inference.reference import available as reference_available  # noqa: E402
from kpdesk.workers.training_job import PROJECT_ROOT  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture()
def models_dir(built_models: Path, tmp_path: Path) -> Path:
    d = tmp_path / "models"
    shutil.copytree(built_models, d)
    return d


def open_window(qtbot, models_dir: Path, tmp_path: Path, source: str = "demo") -> MainWindow:  # noqa: ANN001
    w = MainWindow(models_dir=models_dir, source=source, threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    w.start()
    return w


@pytest.fixture()
def window(qtbot, models_dir: Path, tmp_path: Path) -> MainWindow:  # noqa: ANN001
    w = open_window(qtbot, models_dir, tmp_path)
    yield w
    w.shutdown()


def wait_faces(qtbot, w: MainWindow, model: str | None = None, n_variants: int = 1,  # noqa: ANN001
               timeout: int = 15000) -> None:
    def ok() -> bool:
        r = w.last_result
        if r is None or len(r.variants) != n_variants:
            return False
        if model is not None and r.variants[0].model_name != model:
            return False
        return all(v.result is not None and len(v.result.faces) == 1 for v in r.variants)

    qtbot.waitUntil(ok, timeout=timeout)


def test_window_starts_on_the_demo_and_draws_landmarks(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_faces(qtbot, window)
    # The folder's three models, and the MediaPipe reference when its bundle is cached.
    assert window.live_tab.model_combo.count() == 3 + reference_available()
    assert window.last_result.primary.model_name == "student"  # preferred default
    assert window.live_tab.view.frame is not None
    assert "demo" in window.status_source.text()
    assert window.live_tab.source_combo.currentData() == "demo"


def test_switch_models_mid_stream_and_toggle_overlays(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_faces(qtbot, window)
    source_id = window.last_result.frame.source_id
    combo = window.live_tab.model_combo
    combo.setCurrentIndex(combo.findText("teacher", Qt.MatchFlag.MatchStartsWith))
    wait_faces(qtbot, window, model="teacher")
    assert window.last_result.frame.source_id == source_id  # the stream did not restart

    tab = window.live_tab
    res = window.last_result
    assert res.primary.result.faces[0].heatmap is None
    tab.cb_heatmap.setChecked(True)  # the pipeline now keeps heatmaps
    qtbot.waitUntil(lambda: window.last_result.primary.result is not None and window.last_result.primary.result.faces
                    and window.last_result.primary.result.faces[0].heatmap is not None, timeout=10000)
    res = window.last_result
    renders = {}
    for name, cb in (("heatmap", tab.cb_heatmap), ("indices", tab.cb_indices), ("skeleton", tab.cb_skeleton),
                     ("box", tab.cb_box), ("points", tab.cb_points)):
        for on in (False, True):
            cb.setChecked(on)
            tab.show_result(res)
            renders[(name, on)] = tab.view.frame.copy()
        assert not np.array_equal(renders[(name, False)], renders[(name, True)]), f"toggling {name} changes nothing"
    # One chosen point's heatmap differs from the sum of all.
    tab.heatmap_point.setValue(30)
    tab.show_result(res)
    assert not np.array_equal(tab.view.frame, renders[("points", True)])


def test_keypoints_land_where_the_pipeline_result_says(qtbot, window: MainWindow, tmp_path: Path) -> None:  # noqa: ANN001
    tab = window.live_tab
    for cb in (tab.cb_box, tab.cb_skeleton, tab.cb_heatmap, tab.cb_indices):
        cb.setChecked(False)
    tab.cb_points.setChecked(True)
    wait_faces(qtbot, window)
    res = window.last_result
    tab.show_result(res)
    face = res.primary.result.faces[0]
    img = tab.view.frame
    thr = tab.overlay_options().occluded_below
    hits = 0
    for (x, y), c in zip(face.pts_img, face.conf):
        want = OCCLUDED_BGR if c < thr else confidence_color(float(c))
        hits += img[int(round(y)), int(round(x))].tolist() == list(want)
    assert hits >= 0.9 * len(face.conf), f"only {hits}/{len(face.conf)} keypoints drawn at their position"
    assert (face.conf < thr).any() and (face.conf >= thr).any()  # both kinds of marks are exercised

    # The widget shows them at the same place (through the view's scaling).
    shot = tab.view.grab().toImage()
    dpr = shot.devicePixelRatio()
    close = 0
    for (x, y), c in zip(face.pts_img, face.conf):
        if c < thr:
            continue
        p = tab.view.image_to_widget(float(x), float(y))
        col = shot.pixelColor(int(p.x() * dpr), int(p.y() * dpr))
        b, g, r = confidence_color(float(c))
        close += abs(col.red() - r) + abs(col.green() - g) + abs(col.blue() - b) < 90
    visible = int((face.conf >= thr).sum())
    assert close >= 0.8 * visible, f"only {close}/{visible} keypoints visible at their mapped widget position"

    # The snapshot is exactly the view's image.
    task = window.save_snapshot(tmp_path / "snap.png")
    assert task is not None
    qtbot.waitUntil(lambda: (tmp_path / "snap.png").is_file(), timeout=5000)
    qtbot.wait(200)
    saved = cv2.imread(str(tmp_path / "snap.png"))
    assert saved is not None and saved.shape == img.shape


def test_compare_mode_runs_three_variants_each_at_its_own_rate(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_faces(qtbot, window)
    window.select_tab("compare")
    wait_faces(qtbot, window, n_variants=3)
    res = window.last_result
    assert [v.spec.label for v in res.variants] == ["A", "B", "C"]
    assert [v.model_name for v in res.variants] == ["teacher", "student", "student-0.25x"]
    # Each variant carries the frame it processed; its pane shows that frame and its own rate.
    assert all(v.frame is not None and v.result.frame_index == v.frame.frame_index for v in res.variants)
    assert all(v.frame is not None for v in window.compare_tab.views)
    qtbot.waitUntil(lambda: all(v.fps > 0 for v in window.last_result.variants), timeout=30000)
    window.compare_tab.show_result(window.last_result, force=True)
    for label, view in zip("ABC", window.compare_tab.views):
        assert view.caption.startswith(f"{label}: ") and view.caption.endswith(" fps"), view.caption
    qtbot.waitUntil(lambda: window.compare_tab.last_agreements.get("A–B") is not None, timeout=5000)
    window.compare_tab.refresh()
    ag = window.compare_tab.last_agreements["A–B"]
    assert ag.mean_pct_iod is not None and ag.mean_pct_iod >= 0
    assert "% IOD" in window.compare_tab.summary.text() and "shared frames" in window.compare_tab.summary.text()
    assert "A" in window.history.variants and "C" in window.history.variants
    window.select_tab("performance")
    window.perf_tab.refresh()
    qtbot.waitUntil(lambda: window.last_result is not None and len(window.last_result.variants) == 1, timeout=5000)
    assert window.perf_tab.tiles["fps"].value.text() not in ("", "–")


def test_occlusion_preset_and_dragged_rectangle(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_faces(qtbot, window)
    tab = window.live_tab
    tab.occ_combo.setCurrentIndex(tab.occ_combo.findData("sunglasses band"))
    qtbot.waitUntil(lambda: window.last_result.occluder_box is not None, timeout=5000)
    # Drag a rectangle on the view: it becomes a custom occluder in image pixels.
    view = tab.view
    a, b = view.image_to_widget(100, 100), view.image_to_widget(200, 180)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(int(a.x()), int(a.y())))
    qtbot.mouseMove(view, QPoint(int(b.x()), int(b.y())))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(int(b.x()), int(b.y())))
    assert tab.occ_combo.currentData() == "custom"
    qtbot.waitUntil(lambda: window.last_result.occluder_box is not None
                    and abs(window.last_result.occluder_box[0] - 100) <= 3, timeout=5000)
    x0, y0, x1, y1 = window.last_result.occluder_box
    assert abs(y0 - 100) <= 3 and abs(x1 - 200) <= 3 and abs(y1 - 180) <= 3
    tab.clear_occluder()
    qtbot.waitUntil(lambda: window.last_result.occluder_box is None, timeout=5000)


def test_record_landmarks_to_jsonl(qtbot, window: MainWindow, tmp_path: Path) -> None:  # noqa: ANN001
    wait_faces(qtbot, window)
    path = tmp_path / "session.jsonl"
    assert window.start_recording(path)
    n = window.results_shown
    qtbot.waitUntil(lambda: window.results_shown > n + 5, timeout=10000)
    window.stop_recording()
    qtbot.waitUntil(lambda: path.is_file() and len(path.read_text().splitlines()) >= 3, timeout=5000)
    row = json.loads(path.read_text().splitlines()[0])
    assert len(row["faces"][0]["pts_img"]) == 68 and row["model"] == "student"


class _UnpluggedCamera(sources.FrameSource):
    is_live = True

    def __init__(self) -> None:
        self.left = 10
        self.demo = sources.DemoSource()

    def read(self) -> tuple[np.ndarray, float]:
        if self.left <= 0:
            raise sources.SourceError("camera 0 stopped delivering frames")
        self.left -= 1
        return self.demo.frame(10 - self.left), 0.0


def test_unplugged_camera_and_broken_model_show_messages_and_the_app_keeps_running(
        qtbot, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    (models_dir / "corrupt.onnx").write_bytes(b"\x08\x01 not a graph")
    shutil.copy(models_dir / "student.json", models_dir / "corrupt.json")
    real_open = sources.open_source
    monkeypatch.setattr(sources, "open_source",
                        lambda spec: _UnpluggedCamera() if str(spec) == "0" else real_open(spec))
    w = open_window(qtbot, models_dir, tmp_path, source="0")
    try:
        qtbot.waitUntil(lambda: any("camera 0" in e.text and e.level == "error" for e in w.banner.entries),
                        timeout=15000)
        assert w.banner.isVisible()
        qtbot.waitUntil(lambda: w.live_tab.model_combo.count() == 4 + reference_available(), timeout=10000)
        combo = w.live_tab.model_combo
        i = combo.findText("corrupt", Qt.MatchFlag.MatchStartsWith)
        assert i >= 0 and not combo.model().item(i).isEnabled()
        assert any("corrupt" in text for _, _, text in w.banner.history)
        # The app is still alive: another source plays (a generated video file).
        demo = sources.DemoSource()
        video = tmp_path / "clip.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, demo.size)
        for i in range(30):
            writer.write(demo.frame(i))
        writer.release()
        w.live_tab.source_requested.emit(str(video))
        qtbot.waitUntil(lambda: w.live_tab.source_combo.currentText() == "clip.avi", timeout=10000)
        wait_faces(qtbot, w)
        assert w.last_result.frame.frame_bgr.shape == (480, 640, 3)
    finally:
        w.shutdown()


@pytest.mark.skipif(not (PROJECT_ROOT / "training" / "__main__.py").is_file(), reason="no training package")
def test_training_tab_runs_a_job_and_its_export_appears_in_the_model_picker(
        qtbot, window: MainWindow, tmp_path: Path) -> None:  # noqa: ANN001
    tab = window.training_tab
    tab.data_edit.setText(str(make_tiny_dataset(tmp_path / "data")))
    tab.format_combo.setCurrentText("csv")
    tab.job_combo.setCurrentIndex(1)  # train student
    tab.epochs.setValue(1)
    tab.export_name.setText("mytrained")
    tab.overrides.setText(" ".join(TINY_OVERRIDES) + " data.train_list=train.csv data.val_list=val.csv")
    assert tab.start()
    qtbot.waitUntil(lambda: tab.progress.format() in ("done", "failed", "cancelled"), timeout=240000)
    assert tab.progress.format() == "done", tab.log_view.toPlainText()[-2000:]
    assert tab.val_curve.getData()[1] is not None and len(tab.val_curve.getData()[1]) == 1
    qtbot.waitUntil(lambda: window.live_tab.model_combo.findText("mytrained", Qt.MatchFlag.MatchStartsWith) >= 0,
                    timeout=15000)
    assert (window.models_dir / "mytrained.onnx").is_file() and (window.models_dir / "mytrained.json").is_file()


@pytest.mark.skipif(not (PROJECT_ROOT / "training" / "__main__.py").is_file(), reason="no training package")
def test_training_tab_cancel(qtbot, window: MainWindow, tmp_path: Path) -> None:  # noqa: ANN001
    tab = window.training_tab
    tab.data_edit.setText(str(make_tiny_dataset(tmp_path / "data")))
    tab.format_combo.setCurrentText("csv")
    tab.epochs.setValue(500)
    tab.overrides.setText(" ".join(TINY_OVERRIDES) + " data.train_list=train.csv data.val_list=val.csv")
    assert tab.start()
    assert not tab.start_btn.isEnabled() and tab.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: tab.progress.format().startswith("epoch"), timeout=240000)
    tab.cancel()
    qtbot.waitUntil(lambda: tab.progress.format() in ("done", "failed", "cancelled"), timeout=60000)
    assert tab.progress.format() == "cancelled"
    assert tab.start_btn.isEnabled() and not tab.cancel_btn.isEnabled()
    assert len(tab.loss_curve.getData()[0]) >= 1
    assert tab.run_dir is not None and (tab.run_dir / "checkpoints" / "last.pt").is_file()  # resumable


def test_main_takes_a_screenshot_and_quits(qtbot, models_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from kpdesk.gui.app import main

    shot = tmp_path / "shot.png"
    rc = main(["--source", "demo", "--models-dir", str(models_dir), "--runs-dir", str(tmp_path / "runs"),
               "--screenshot", str(shot), "--quit-after", "3", "--size", "1000x700", "--threads", "1"])
    assert rc == 0 and shot.is_file()
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (700, 1000) and img.std() > 10


def test_compare_models_option_fills_the_slots(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    from kpdesk.gui.app import _prepare_compare

    qtbot.waitUntil(lambda: bool(window.compare_tab.catalog), timeout=10000)
    names = lambda: [c.currentText().split()[0] if c.currentData() else None  # noqa: E731
                     for c in window.compare_tab.model_combos]
    assert names() == ["teacher", "student", "student-0.25x"]
    _prepare_compare(window, "student-0.25x, student")  # catalog already in: applied at once
    assert names() == ["student-0.25x", "student", None]  # two models: slot C emptied
    messages = []
    window.show_message = lambda text, level="info": messages.append(text)  # noqa: ARG005
    _prepare_compare(window, "student,nosuch,teacher")
    assert names() == ["student", "teacher", None] and messages == ["--compare-models: no usable model nosuch"]
    with pytest.raises(SystemExit, match="2 to 3 models"):
        _prepare_compare(window, "student")


def test_compare_models_given_before_the_catalog_arrives(qtbot, models_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from kpdesk.gui.app import _prepare_compare

    w = MainWindow(models_dir=models_dir, source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    _prepare_compare(w, "student-0.25x,student,teacher")  # as main() does: before the models are scanned
    w.show()
    w.start()
    try:
        qtbot.waitUntil(lambda: bool(w.compare_tab.catalog), timeout=10000)
        assert [c.currentText().split()[0] for c in w.compare_tab.model_combos] == ["student-0.25x", "student",
                                                                                   "teacher"]
    finally:
        w.shutdown()

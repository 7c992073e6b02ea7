"""Webcam comforts (issue 11, item 2): mirrored view, capture modes, cameras that come and go.
No real camera: a fake ``cv2.VideoCapture`` (injected through ``CameraSource(open_fn=...)``
or ``sources.open_source``) that accepts a fixed set of modes, like a driver."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from PySide6.QtCore import QObject, Slot  # noqa: E402

from kpdesk.inference import sources  # noqa: E402
from kpdesk.inference.sources import CameraMode, CameraSource, parse_camera_spec  # noqa: E402
from kpdesk.workers.cameras import CameraWatcher  # noqa: E402
from kpdesk.workers.inference import InferenceSettings  # noqa: E402
from kpdesk.workers.messages import InferenceResult, VariantSpec  # noqa: E402
from kpdesk.workers.session import LiveSession  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# What the fake driver supports: (width, height) -> frame rates.
SUPPORTED = {(640, 480): (15.0, 30.0), (1280, 720): (30.0, 60.0), (1920, 1080): (30.0,)}


def _face_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """The demo's astronaut, moved right of centre (so a mirror moves it), at any size."""
    f = np.ascontiguousarray(np.roll(sources.DemoSource().frame(0), 110, axis=1))
    return f if (width, height) == (640, 480) else cv2.resize(f, (width, height))


class FakeCapture:
    """A camera driver: a request for an unsupported size gets the nearest supported one,
    an unsupported rate the nearest rate of that size. Frames show the demo face."""

    opened: list[int] = []

    def __init__(self, index: int) -> None:
        FakeCapture.opened.append(index)
        self.index = index
        self.req = [640.0, 480.0]
        self.size = (640, 480)
        self.fps = 30.0
        self.sets = 0
        self._frames: dict[tuple[int, int], np.ndarray] = {}

    def isOpened(self) -> bool:  # noqa: N802 - cv2 API
        return True

    def release(self) -> None:
        pass

    def set(self, prop: int, value: float) -> bool:
        self.sets += 1
        if prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            self.req[0 if prop == cv2.CAP_PROP_FRAME_WIDTH else 1] = value
            self.size = min(SUPPORTED, key=lambda s: abs(s[0] - self.req[0]) + abs(s[1] - self.req[1]))
            if self.fps not in SUPPORTED[self.size]:
                self.fps = SUPPORTED[self.size][0]
        elif prop == cv2.CAP_PROP_FPS:
            self.fps = min(SUPPORTED[self.size], key=lambda f: abs(f - value))
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: float(self.size[0]), cv2.CAP_PROP_FRAME_HEIGHT: float(self.size[1]),
                cv2.CAP_PROP_FPS: self.fps}.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray]:
        threading.Event().wait(1.0 / self.fps)  # a camera delivers at its frame rate
        if self.size not in self._frames:
            self._frames[self.size] = _face_frame(*self.size)
        return True, self._frames[self.size].copy()


@pytest.fixture()
def fake_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    """Camera specs open a FakeCapture (in any mode); everything else opens as usual."""
    real = sources.open_source

    def open_source(spec):  # noqa: ANN001, ANN202
        cam = parse_camera_spec(str(spec))
        if cam is None:
            return real(spec)
        idx, mode = cam
        if mode is None:
            return CameraSource(idx, open_fn=FakeCapture)
        return CameraSource(idx, mode.width, mode.height, fps=mode.fps or None, open_fn=FakeCapture)

    monkeypatch.setattr(sources, "open_source", open_source)


# ---- sources: specs, modes, probing ----------------------------------------------------
def test_camera_specs() -> None:
    assert parse_camera_spec("0") == (0, None) and parse_camera_spec(3) == (3, None)
    assert parse_camera_spec("cam:1") == (1, None)
    assert parse_camera_spec("cam:1:1280x720@30") == (1, CameraMode(1280, 720, 30.0))
    assert parse_camera_spec("0:640x480") == (0, CameraMode(640, 480, 0.0))
    for not_a_camera in ("demo", "clip.mp4", "12:34.mp4", "cam:x", "/tmp/0"):
        assert parse_camera_spec(not_a_camera) is None
    m = CameraMode(1280, 720, 30.0)
    assert parse_camera_spec(m.spec(2)) == (2, m) and str(m) == "1280 × 720 @ 30 fps"
    assert CameraMode(640, 480).spec(0) == "cam:0:640x480"


def test_camera_opens_in_the_mode_asked_for_and_probes_what_it_accepts() -> None:
    cam = CameraSource(0, 1280, 720, fps=60, open_fn=FakeCapture)
    assert cam.mode == CameraMode(1280, 720, 60.0) and cam.fps == 60.0
    modes = cam.probe_modes()
    assert modes == sorted(CameraMode(w, h, f) for (w, h), rates in SUPPORTED.items() for f in rates)
    assert cam.mode == CameraMode(1280, 720, 60.0) and cam._current_mode() == cam.mode  # restored
    frame, _ = cam.read()
    assert frame.shape == (720, 1280, 3)
    near = CameraSource(0, 1000, 700, fps=50, open_fn=FakeCapture)  # not offered: the nearest mode
    assert near.mode == CameraMode(1280, 720, 60.0)
    cam.close()
    near.close()


def test_list_cameras_counts_a_camera_in_use_without_opening_it(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []

    class Cap(FakeCapture):
        def __init__(self, i: int) -> None:
            opened.append(i)
            super().__init__(i)

    monkeypatch.setattr(sources.cv2, "VideoCapture", Cap)
    monkeypatch.setattr(sources.sys, "platform", "linux")
    monkeypatch.setattr(sources.os.path, "exists", lambda p: p in ("/dev/video0", "/dev/video2"))
    assert sources.list_cameras(4, in_use=[0]) == [0, 2] and opened == [2]


# ---- the capture thread: mirroring -----------------------------------------------------
class Frames(QObject):
    def __init__(self, session: LiveSession) -> None:
        super().__init__()
        self.session = session
        self.results: list[InferenceResult] = []
        session.inference.result_available.connect(self._take)

    @Slot()
    def _take(self) -> None:
        r = self.session.inference.take_result()
        if r is not None:
            self.results.append(r)
            del self.results[:-20]

    @property
    def last(self) -> InferenceResult | None:
        return self.results[-1] if self.results else None


@pytest.fixture()
def session(qtbot) -> LiveSession:  # noqa: ANN001
    s = LiveSession(InferenceSettings(threads=1, smoothing=False))
    s.start()
    yield s
    s.shutdown()


def _wait_mirrored(qtbot, col: Frames, mirrored: bool, with_face: bool = False) -> InferenceResult:  # noqa: ANN001
    def ok() -> bool:
        r = col.last
        if r is None or r.frame.mirrored != mirrored:
            return False
        return not with_face or (r.primary is not None and r.primary.result is not None
                                 and len(r.primary.result.faces) == 1 and r.primary.frame.mirrored == mirrored)
    qtbot.waitUntil(ok, timeout=60000)
    return col.last


def test_mirrored_camera_view_and_landmarks_follow_the_mirror(qtbot, session: LiveSession,  # noqa: ANN001
                                                               fake_cameras: None) -> None:
    model = REPO / "models" / "student-0.25x.onnx"
    if not model.is_file():
        pytest.skip(f"{model} not in this checkout")
    col = Frames(session)
    session.inference.set_variants([VariantSpec("live", model, "haar")])
    assert session.mirror  # a selfie view by default
    session.open_source("0")
    original = _face_frame()
    res = _wait_mirrored(qtbot, col, True, with_face=True)
    assert np.array_equal(res.frame.frame_bgr, cv2.flip(original, 1))  # what is shown (and what the model saw)
    qtbot.wait(300)  # let tracking settle for a few frames
    mirrored_pts = _wait_mirrored(qtbot, col, True, with_face=True).primary.result.faces[0].pts_img
    session.set_mirror(False)
    res = _wait_mirrored(qtbot, col, False, with_face=True)
    assert np.array_equal(res.frame.frame_bgr, original)
    qtbot.wait(300)
    plain = _wait_mirrored(qtbot, col, False, with_face=True).primary
    plain_pts, schema = plain.result.faces[0].pts_img, plain.schema
    iod = float(np.linalg.norm(plain_pts[36] - plain_pts[45]))
    # Landmarks in the mirrored view are the plain ones mirrored (point i <-> its flip partner) ...
    d = np.linalg.norm(schema.flip_points(plain_pts, original.shape[1]) - mirrored_pts, axis=1).mean()
    assert d < 0.08 * iod, f"mirrored landmarks {100 * d / iod:.1f}% IOD from the mirrored plain ones"
    # ... and not where the face was before mirroring.
    assert np.linalg.norm(plain_pts - mirrored_pts, axis=1).mean() > 1.0 * iod


def test_files_are_never_mirrored(qtbot, session: LiveSession, tmp_path: Path) -> None:  # noqa: ANN001
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for _ in range(10):
        writer.write(_face_frame())
    writer.release()
    col = Frames(session)
    session.set_mirror(True)
    session.open_source(str(video))
    qtbot.waitUntil(lambda: len(col.results) >= 3, timeout=30000)
    assert not any(r.frame.mirrored for r in col.results)


def test_reopening_a_camera_in_another_mode(qtbot, session: LiveSession, fake_cameras: None) -> None:  # noqa: ANN001
    col = Frames(session)
    modes: list = []
    session.camera_modes.connect(lambda cam, found: modes.append((cam, found)))
    opened: list[str] = []
    session.source_opened.connect(lambda spec, desc: opened.append(desc))
    session.open_source("0")
    qtbot.waitUntil(lambda: bool(modes) and bool(opened), timeout=30000)
    assert modes[0][0] == 0 and CameraMode(1280, 720, 60.0) in modes[0][1]
    assert opened[-1] == "camera 0 (640 × 480 @ 30 fps)"
    session.open_source(CameraMode(1280, 720, 60.0).spec(0))
    qtbot.waitUntil(lambda: col.last is not None and col.last.frame.frame_bgr.shape == (720, 1280, 3), timeout=30000)
    assert opened[-1] == "camera 0 (1280 × 720 @ 60 fps)"
    assert len(modes) == 1  # a camera is probed once per session


# ---- cameras that come and go ----------------------------------------------------------
def test_camera_watcher_probes_off_the_gui_thread_only_when_devices_change(qtbot) -> None:  # noqa: ANN001
    present = [0]
    calls: list[tuple[int, ...]] = []
    gui = threading.get_ident()
    threads: set[int] = set()

    def list_fn(in_use):  # noqa: ANN001, ANN202
        threads.add(threading.get_ident())
        calls.append(tuple(in_use))
        return list(present)

    w = CameraWatcher(interval_ms=50, in_use=lambda: [0], list_fn=list_fn,
                      signature_fn=lambda: tuple(present))
    seen: list[list[int]] = []
    w.cameras_changed.connect(seen.append)
    w.start()
    try:
        qtbot.waitUntil(lambda: seen == [[0]], timeout=10000)
        qtbot.wait(400)  # many ticks, nothing changed: no probe
        assert w.probes == 1 and calls == [(0,)]
        present.append(2)  # plugged in
        qtbot.waitUntil(lambda: seen[-1] == [0, 2], timeout=10000)
        present.remove(0)  # pulled out
        qtbot.waitUntil(lambda: seen[-1] == [2], timeout=10000)
        assert gui not in threads
    finally:
        w.stop()


# ---- the window ------------------------------------------------------------------------
@pytest.mark.gui
def test_live_tab_mirror_modes_and_camera_list(qtbot, built_models: Path, tmp_path: Path,  # noqa: ANN001
                                               fake_cameras: None) -> None:
    from kpdesk.gui.main_window import MainWindow

    shutil.copytree(built_models, tmp_path / "models")
    present = [0]
    w = MainWindow(models_dir=tmp_path / "models", source="0", threads=1, runs_dir=tmp_path / "runs")
    w.camera_watcher.list_fn = lambda in_use: list(present)
    w.camera_watcher.signature_fn = lambda: tuple(present)
    w.camera_watcher.timer.setInterval(100)
    qtbot.addWidget(w)
    w.show()
    w.start()
    tab = w.live_tab
    try:
        qtbot.waitUntil(lambda: w.last_result is not None and w.last_result.frame.mirrored, timeout=60000)
        assert tab.cb_mirror.isChecked() and tab.source_combo.currentText() == "Camera 0"
        # The modes the camera accepted, the one in use selected.
        qtbot.waitUntil(lambda: tab.mode_combo.count() == 1 + 5, timeout=30000)
        assert tab.mode_combo.isEnabled() and tab.mode_combo.currentText() == "640 × 480 @ 30 fps"
        tab.cb_mirror.setChecked(False)
        qtbot.waitUntil(lambda: not w.last_result.frame.mirrored, timeout=30000)
        i = tab.mode_combo.findText("1920 × 1080 @ 30 fps")
        tab.mode_combo.setCurrentIndex(i)
        tab.mode_combo.activated.emit(i)  # as a user's pick does
        qtbot.waitUntil(lambda: w.last_result.frame.frame_bgr.shape == (1080, 1920, 3), timeout=30000)
        assert tab.source_combo.currentText() == "Camera 0" and tab.mode_combo.currentText() == "1920 × 1080 @ 30 fps"
        assert "1920 × 1080" in w.status_source.text()
        # A camera plugged in appears in the picker; pulled out, it goes again.
        present.append(1)
        qtbot.waitUntil(lambda: tab.source_combo.findText("Camera 1") >= 0, timeout=10000)
        assert any("Camera 1 connected" in e.text for e in w.banner.entries)
        present.remove(1)
        qtbot.waitUntil(lambda: tab.source_combo.findText("Camera 1") < 0, timeout=10000)
        assert tab.source_combo.currentText() == "Camera 0"  # the selection survived the refreshes
    finally:
        w.shutdown()

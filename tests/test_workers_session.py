"""The capture + inference threads with a real exported ONNX model (pytest-qt, no widgets)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from fixtures import build_tiny_models  # noqa: E402
from PySide6.QtCore import QObject, Slot  # noqa: E402

from kpdesk.inference import sources  # noqa: E402
from kpdesk.workers.inference import InferenceSettings  # noqa: E402
from kpdesk.workers.messages import InferenceResult, VariantSpec  # noqa: E402
from kpdesk.workers.occlusion import Occluder  # noqa: E402
from kpdesk.workers.session import LiveSession  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.mktemp("models"))


class Collector(QObject):
    """Takes every result the session offers. A QObject, so its connections die with it
    (PySide tracks bound methods of plain objects by address, which gets reused)."""

    def __init__(self, session: LiveSession) -> None:
        super().__init__()
        self.session = session
        self.results: list[InferenceResult] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        session.inference.result_available.connect(self._take)
        session.inference.error.connect(self._error)
        session.source_failed.connect(self._failed)

    @Slot(str)
    def _error(self, message: str) -> None:
        self.errors.append(message)

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.failed.append(message)

    @Slot()
    def _take(self) -> None:
        r = self.session.inference.take_result()
        if r is not None:
            self.results.append(r)
            del self.results[:-50]

    @property
    def last(self) -> InferenceResult | None:
        return self.results[-1] if self.results else None


@pytest.fixture()
def session(qtbot) -> LiveSession:  # noqa: ANN001 - pytest-qt fixture
    s = LiveSession(InferenceSettings(threads=1, keep_heatmaps=True))
    s.start()
    yield s
    s.shutdown()


def _spec(models: dict[str, Path], name: str, label: str = "live", **kw: object) -> VariantSpec:
    return VariantSpec(label=label, model_path=models[name], detector="auto", **kw)  # type: ignore[arg-type]


def test_demo_stream_through_a_real_model_and_switch_mid_stream(qtbot, session: LiveSession,
                                                                models: dict[str, Path]) -> None:
    col = Collector(session)
    session.inference.set_variants([_spec(models, "student")])
    session.open_source("demo")
    qtbot.waitUntil(lambda: col.last is not None and col.last.primary is not None
                    and col.last.primary.result is not None and len(col.last.primary.result.faces) == 1,
                    timeout=15000)
    res = col.last
    assert res is not None and res.primary is not None and res.primary.result is not None
    face = res.primary.result.faces[0]
    assert face.pts_img.shape == (68, 2) and face.heatmap is not None
    assert res.primary.model_name == "student" and not res.frame.frame_bgr.flags.writeable
    frames_before = session.capture.frames_read if session.capture else 0
    source_id = res.frame.source_id
    # Switching models does not stop or restart the stream.
    session.inference.set_variants([_spec(models, "teacher")])
    qtbot.waitUntil(lambda: col.last is not None and col.last.primary is not None
                    and col.last.primary.model_name == "teacher" and col.last.primary.result is not None,
                    timeout=10000)
    assert col.last.frame.source_id == source_id
    assert session.capture is not None and session.capture.frames_read > frames_before
    assert col.errors == []


def test_broken_model_is_reported_and_the_previous_one_keeps_running(qtbot, session: LiveSession,
                                                                     models: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    col = Collector(session)
    session.inference.set_variants([_spec(models, "student")])
    session.open_source("demo")
    qtbot.waitUntil(lambda: col.last is not None and col.last.primary is not None
                    and col.last.primary.result is not None, timeout=15000)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00garbage")
    bad.with_suffix(".json").write_text(models["student"].with_suffix(".json").read_text())
    session.inference.set_variants([VariantSpec("live", bad)])
    qtbot.waitUntil(lambda: any("broken.onnx" in e for e in col.errors), timeout=10000)
    n = len(col.results)
    qtbot.waitUntil(lambda: len(col.results) > n + 3, timeout=10000)
    assert col.last.primary is not None and col.last.primary.model_name == "student"


def test_three_variants_with_occluder_on_a_generated_video(qtbot, session: LiveSession, models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    demo = sources.DemoSource()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, demo.size)
    for i in range(40):
        writer.write(demo.frame(i))
    writer.release()
    col = Collector(session)
    session.inference.set_variants([_spec(models, n, label) for n, label in
                                    (("teacher", "A"), ("student", "B"), ("student-0.25x", "C"))])
    session.inference.set_occluder(Occluder.preset("hand over mouth"))
    session.open_source(str(video))
    qtbot.waitUntil(lambda: col.last is not None and len(col.last.variants) == 3
                    and all(v.result is not None and v.result.faces for v in col.last.variants), timeout=15000)
    res = col.last
    assert [v.spec.label for v in res.variants] == ["A", "B", "C"]
    assert res.occluder_box is not None
    x0, y0, x1, y1 = res.occluder_box
    painted = res.frame.frame_bgr[y0:y1, x0:x1]
    assert np.any(np.all(painted == (120, 160, 215), axis=-1)), "the hand is painted into the frame the models see"
    assert all(v.result.timings.total > 0 for v in res.variants)


class _FlakyCamera(sources.FrameSource):
    """A camera that delivers a few frames and is then unplugged."""

    is_live = True

    def __init__(self, frames: int = 5) -> None:
        self.left = frames
        self.demo = sources.DemoSource()

    def read(self) -> tuple[np.ndarray, float]:
        if self.left <= 0:
            raise sources.SourceError("camera 0 stopped delivering frames")
        self.left -= 1
        return self.demo.frame(self.left), 0.0


def test_camera_unplugged_mid_stream_is_reported_and_other_sources_still_work(
        qtbot, session: LiveSession, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = sources.open_source
    monkeypatch.setattr(sources, "open_source", lambda spec: _FlakyCamera() if str(spec) == "0" else real_open(spec))
    col = Collector(session)
    session.inference.set_variants([_spec(models, "student")])
    session.open_source("0")
    qtbot.waitUntil(lambda: bool(col.failed), timeout=10000)
    assert "camera 0" in col.failed[0] and "stopped delivering" in col.failed[0]
    assert session.inference.isRunning()
    session.open_source("demo")
    n = len(col.results)
    qtbot.waitUntil(lambda: len(col.results) > n + 3, timeout=10000)


def test_missing_source_is_reported(qtbot, session: LiveSession, tmp_path: Path) -> None:
    col = Collector(session)
    session.open_source(str(tmp_path / "nope.mp4"))
    qtbot.waitUntil(lambda: bool(col.failed), timeout=5000)
    assert "nope.mp4" in col.failed[0]

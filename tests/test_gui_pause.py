"""Live inference pauses while a training job runs, unless the user says otherwise (issue 11,
item 4). The window offscreen with real tiny ONNX models; the job's state is simulated."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()


from kpdesk.gui.main_window import MainWindow  # noqa: E402
from kpdesk.gui.training_tab import TrainingTab  # noqa: E402

pytestmark = pytest.mark.gui


def test_training_job_pauses_live_inference_and_the_toggle_keeps_it_running(
        qtbot, built_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    shutil.copytree(built_models, tmp_path / "models")
    running = {"job": False}
    monkeypatch.setattr(TrainingTab, "job_running", property(lambda self: running["job"]))
    w = MainWindow(models_dir=tmp_path / "models", source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    w.start()
    try:
        qtbot.waitUntil(lambda: w.results_shown > 3, timeout=60000)
        tab = w.training_tab
        assert tab.pause_live.isChecked()  # pausing is the default
        running["job"] = True
        tab.job_running_changed.emit(True)
        assert w.session.inference.paused
        assert any("paused" in e.text for e in w.banner.entries)
        qtbot.wait(500)  # a frame already on its way may still be shown
        n = w.results_shown
        qtbot.waitUntil(lambda: w.session.inference.frames_paused > 5, timeout=30000)
        assert w.results_shown == n
        tab.pause_live.setChecked(False)  # keep the live view running beside the job
        assert not w.session.inference.paused
        qtbot.waitUntil(lambda: w.results_shown > n + 3, timeout=30000)
        tab.pause_live.setChecked(True)
        assert w.session.inference.paused
        running["job"] = False
        tab.job_running_changed.emit(False)  # the job ended
        assert not w.session.inference.paused
        n = w.results_shown
        qtbot.waitUntil(lambda: w.results_shown > n + 3, timeout=30000)
    finally:
        w.shutdown()

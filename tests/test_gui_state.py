"""The GUI never shows a state it is not in: the message banner cannot push the controls
off screen, the pickers show what actually runs after a failure, and a model that failed
to load is not tried again on every tab switch."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget  # noqa: E402

from kpdesk.gui.banner import MAX_LINES, MessageBanner  # noqa: E402

pytestmark = pytest.mark.gui


def test_long_messages_keep_the_banner_to_a_few_lines(qtbot) -> None:  # noqa: ANN001
    host = QWidget()
    lay = QVBoxLayout(host)
    banner = MessageBanner()
    controls = QLabel("controls")
    controls.setMinimumHeight(100)
    lay.addWidget(banner)
    lay.addWidget(controls, 1)
    qtbot.addWidget(host)
    host.resize(900, 700)
    host.show()
    long = "Model teacher cannot be used: " + "the graph disagrees with its manifest, " * 30
    for i in range(5):
        banner.show_message(f"{i}: {long}", "error")
    banner.show_message("line one\nline two\nline three\nline four", "warning")
    qtbot.waitUntil(lambda: banner.isVisible() and banner.height() > 0)
    qtbot.wait(50)
    line = banner.label.fontMetrics().lineSpacing()
    assert banner.height() <= MAX_LINES * line + 24, banner.height()
    assert controls.height() >= 700 - MAX_LINES * line - 60
    assert banner.text.startswith("line one\nline two")  # the full text is kept
    assert all(len(ln) < 200 for ln in banner.label.text().splitlines())
    assert "disagrees" in banner.label.toolTip()


def test_after_a_model_fails_the_picker_shows_what_runs_and_it_is_not_retried(
        qtbot, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from pathlib import Path

    from fixtures import build_tiny_models

    from kpdesk.gui.main_window import MainWindow
    from kpdesk.inference.model import LandmarkModel

    models = build_tiny_models(tmp_path / "models")
    loads: list[str] = []
    real_load = LandmarkModel.load.__func__

    def counting_load(cls, path, *a, **kw):  # noqa: ANN001, ANN202
        loads.append(Path(path).name)
        return real_load(cls, path, *a, **kw)

    monkeypatch.setattr(LandmarkModel, "load", classmethod(counting_load))
    w = MainWindow(models_dir=tmp_path / "models", source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    w.start()
    try:
        combo = w.live_tab.model_combo
        running = str(models["student"])
        qtbot.waitUntil(lambda: w.last_result is not None and w.last_result.primary is not None
                        and w.last_result.primary.model_name == "student", timeout=60000)
        assert combo.currentData() == running
        bad = models["teacher"]
        bad.write_bytes(b"corrupted after the catalog scan")  # e.g. a copy that failed half-way
        combo.setCurrentIndex(combo.findData(str(bad)))
        qtbot.waitUntil(lambda: any("teacher.onnx failed to load" in e.text for e in w.banner.entries), timeout=60000)
        qtbot.waitUntil(lambda: combo.currentData() == running, timeout=10000)  # shows what actually runs
        assert not combo.model().item(combo.findData(str(bad))).isEnabled()
        tries = loads.count("teacher.onnx")
        for tab in ("performance", "live", "compare", "live", "performance", "live"):
            w.select_tab(tab)
            qtbot.wait(300)
        qtbot.wait(1000)
        assert loads.count("teacher.onnx") == tries  # not tried again on every tab switch
        assert w.last_result.primary.model_name == "student"
    finally:
        w.shutdown()


def test_a_job_exporting_over_an_installed_model_installs_under_a_new_name(qtbot, tmp_path) -> None:  # noqa: ANN001
    """The Training tab used to install a job's export over an existing model of that name."""
    from fixtures import export_tiny

    from kpdesk.gui.training_tab import TrainingTab
    from kpdesk.vision.manifest import file_sha256

    models = tmp_path / "models"
    old = export_tiny(models, "student-5pt", points=5, seed=0)
    old_sha = file_sha256(old)
    new = export_tiny(tmp_path / "run" / "export", "student-5pt", points=5, seed=1)
    tab = TrainingTab(models, tmp_path / "runs")
    qtbot.addWidget(tab)
    messages: list[tuple[str, str]] = []
    tab.message.connect(lambda text, level: messages.append((text, level)))
    tab._on_exported(str(new), "")
    qtbot.waitUntil(lambda: len(tab.installed) == 1, timeout=60000)
    assert tab.installed == [str(models / "student-5pt-2.onnx")]
    assert file_sha256(old) == old_sha  # the installed model is untouched
    assert any("student-5pt-2" in text and level == "warning" for text, level in messages)
    tab.replace_existing.setChecked(True)  # explicit: replace, keeping the old one
    tab._on_exported(str(new), "")
    qtbot.waitUntil(lambda: len(tab.installed) == 2, timeout=60000)
    assert tab.installed[1] == str(old) and file_sha256(old) == file_sha256(new)
    (backup,) = (models / ".backup").glob("student-5pt-*.onnx")
    assert file_sha256(backup) == old_sha


def test_after_a_source_fails_the_source_picker_names_none(qtbot, tmp_path) -> None:  # noqa: ANN001
    from fixtures import build_tiny_models

    from kpdesk.gui.main_window import MainWindow

    build_tiny_models(tmp_path / "models")
    w = MainWindow(models_dir=tmp_path / "models", source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    w.start()
    try:
        combo = w.live_tab.source_combo
        qtbot.waitUntil(lambda: combo.currentData() == "demo", timeout=60000)
        missing = str(tmp_path / "gone.mp4")
        w.live_tab.show_source(missing, "gone.mp4")  # the picker as after the user chose a file ...
        w.open_source(missing)  # ... which cannot be opened
        qtbot.waitUntil(lambda: w.status_source.text() == "source: stopped", timeout=60000)
        assert combo.currentIndex() == -1 and combo.currentData() is None
        assert "gone.mp4" in w.live_tab.source_status.text()
    finally:
        w.shutdown()


def test_messages_are_elided_in_the_middle_so_the_fix_stays() -> None:
    from kpdesk.gui.text import elide_middle, wrap_lines

    msg = ("models/student.onnx: the graph does not belong to its manifest student.json (sha256 0123456789ab…, "
           "manifest says fedcba987654…); if you changed the graph on purpose, re-stamp it: "
           "kpdesk models --restamp models/student.onnx")
    short = elide_middle(msg, 80)
    assert len(short) == 80 and short.startswith("models/student.onnx")
    assert short.endswith("--restamp models/student.onnx")
    lines = wrap_lines(msg, 40, 3)
    assert len(lines) <= 3 and all(len(ln) <= 40 for ln in lines)
    assert lines[0].startswith("models/student.onnx") and lines[-1].endswith("models/student.onnx")
    assert wrap_lines("short", 40, 3) == ["short"]


def test_the_banner_keeps_the_end_of_a_long_message(qtbot) -> None:  # noqa: ANN001
    banner = MessageBanner()
    qtbot.addWidget(banner)
    banner.resize(500, 60)
    banner.show()
    msg = "Model student failed to load: " + "the graph disagrees with its manifest, " * 6 + \
        "re-stamp it: kpdesk models --restamp student"
    banner.show_message(msg, "error")
    shown = banner.label.text()
    assert len(shown) < len(msg) and shown.endswith("kpdesk models --restamp student"), shown
    assert shown.startswith("Model student")


def test_a_bad_model_argument_falls_back_to_the_default_with_one_line(qtbot, tmp_path) -> None:  # noqa: ANN001
    """``--model /some/dir/bad.onnx``: the app used to take that folder for its models folder,
    try an unrelated file there and show no landmarks at all."""
    from pathlib import Path

    from fixtures import build_tiny_models, export_tiny

    from kpdesk.gui.main_window import MainWindow

    models = build_tiny_models(tmp_path / "models")
    elsewhere = tmp_path / "some" / "dir"
    export_tiny(elsewhere, "unrelated")  # a usable model beside the bad one
    bad = elsewhere / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    (elsewhere / "bad.json").write_text((elsewhere / "unrelated.json").read_text())
    w = MainWindow(models_dir=tmp_path / "models", source="demo", model=str(bad), threads=1,
                   runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    w.start()
    try:
        combo = w.live_tab.model_combo
        qtbot.waitUntil(lambda: w.last_result is not None and w.last_result.primary is not None
                        and w.last_result.primary.model_name == "student", timeout=60000)
        assert combo.currentData() == str(models["student"])
        assert w.models_dir == tmp_path / "models"
        lines = [e.text for e in w.banner.entries if str(bad) in e.text]
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert lines[0].startswith(f"--model {bad}: using the default model student instead.")
        assert "unrelated" not in {Path(str(combo.itemData(i))).stem for i in range(combo.count())}
    finally:
        w.shutdown()


def test_a_model_argument_that_names_nothing_falls_back_too(qtbot, tmp_path) -> None:  # noqa: ANN001
    from fixtures import build_tiny_models

    from kpdesk.gui.main_window import MainWindow

    models = build_tiny_models(tmp_path / "models")
    w = MainWindow(models_dir=tmp_path / "models", source="demo", model="no-such-model", threads=1,
                   runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    w.start()
    try:
        combo = w.live_tab.model_combo
        qtbot.waitUntil(lambda: combo.currentData() == str(models["student"]), timeout=60000)
        (line,) = [e.text for e in w.banner.entries if "no-such-model" in e.text]
        assert "using the default model student instead" in line and "usable: " in line
    finally:
        w.shutdown()

"""The webcam-demo comforts (issue 15, item 5): keyboard shortcuts (menus and the ``?``
sheet), pause / step at the source, snapshots into a folder chosen once, the layout at
1280 x 720, legends outside the data, an FPS curve without a start-up spike, a Compare
footer that wraps between items, and the mirror box only for cameras. Offscreen, with the
tiny ONNX models."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtGui import QKeySequence, QTextDocument  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFileDialog,
    QScrollArea,
    QSlider,
    QWidget,
)
from test_webcam import fake_cameras  # noqa: E402, F401 - a fixture
from test_workers_tinymodel import build_tiny_models  # noqa: E402

from kpdesk.gui import main_window as main_window_module  # noqa: E402
from kpdesk.gui.compare_tab import FOOTER_SEPARATOR  # noqa: E402
from kpdesk.gui.main_window import MainWindow  # noqa: E402
from kpdesk.gui.performance_tab import PerformanceTab  # noqa: E402
from kpdesk.gui.pose_plot import HeadPosePlot  # noqa: E402
from kpdesk.workers.capture import CaptureWorker  # noqa: E402
from kpdesk.workers.mailbox import LatestMailbox  # noqa: E402
from kpdesk.workers.recorder import json_rows  # noqa: E402
from kpdesk.workers.stats import PerfHistory  # noqa: E402

pytestmark = pytest.mark.gui

# What a user presses (issue 15): pause, step, snapshot, mirror, next model, fullscreen, help, quit.
KEYS = {"act_pause": "Space", "act_step": ".", "act_snapshot": "S", "act_mirror": "M", "act_next_model": "N",
        "act_fullscreen": "F", "act_help": "?", "act_quit": "Ctrl+Q"}


@pytest.fixture(scope="module")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return next(iter(build_tiny_models(tmp_path_factory.mktemp("built")).values())).parent


@pytest.fixture()
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The window's remembered choices go to a file of the test's own."""
    path = tmp_path / "kpdesk.ini"
    monkeypatch.setattr(main_window_module, "app_settings", lambda: QSettings(str(path), QSettings.Format.IniFormat))
    return path


def open_window(qtbot, built_models: Path, tmp_path: Path, source: str = "demo",  # noqa: ANN001
                size: tuple[int, int] = (1280, 720)) -> MainWindow:
    models = tmp_path / "models"
    if not models.exists():
        shutil.copytree(built_models, models)
    w = MainWindow(models_dir=models, source=source, threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    w.start()
    return w


@pytest.fixture()
def window(qtbot, built_models: Path, tmp_path: Path, settings_file: Path) -> MainWindow:  # noqa: ANN001
    w = open_window(qtbot, built_models, tmp_path)
    yield w
    w.shutdown()


def wait_face(qtbot, w: MainWindow, timeout: int = 60000) -> None:  # noqa: ANN001
    def ok() -> bool:
        r = w.last_result
        return (r is not None and r.primary is not None and r.primary.result is not None
                and len(r.primary.result.faces) == 1)

    qtbot.waitUntil(ok, timeout=timeout)


def press(qtbot, w: QWidget, keys: str) -> None:  # noqa: ANN001
    """Type ``keys`` (a QKeySequence string) into the window, as a user would: to the widget
    that has the keyboard focus."""
    combo = QKeySequence(keys)[0]
    focus = QApplication.focusWidget()
    target = focus if focus is not None and focus.window() is w else w
    qtbot.keyClick(target, combo.key(), combo.keyboardModifiers())


def pause_and_settle(qtbot, w: MainWindow) -> None:  # noqa: ANN001
    """Space, then wait until the last frame the source delivered is the one on screen."""
    press(qtbot, w, "Space")
    assert w.user_paused
    cap = w.session.capture
    last = {"n": -1, "since": 0.0}

    def settled() -> bool:
        n, now = cap.frames_read, time.monotonic()
        if n != last["n"]:
            last.update(n=n, since=now)
        return now - last["since"] > 0.4 and w.last_result.frame.frame_index == n - 1

    qtbot.waitUntil(settled, timeout=30000)


# ---- shortcuts --------------------------------------------------------------------------------
def test_every_shortcut_is_in_a_menu_and_on_the_help_sheet(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    menus = {m.title().replace("&", ""): m for m in (a.menu() for a in window.menuBar().actions()) if m}
    assert {"File", "View", "Help"} <= set(menus)
    in_menus = {a for m in menus.values() for a in m.actions()}
    for attr, keys in KEYS.items():
        action = getattr(window, attr)
        assert QKeySequence(keys) in action.shortcuts(), f"{attr}: {action.shortcuts()}"
        assert action in in_menus, f"{attr} is in no menu"
    assert window.act_help in menus["Help"].actions()

    # '?' opens the sheet; it lists every shortcut with what it does.
    assert not window.overlay.isVisible()
    press(qtbot, window, "?")
    assert window.overlay.isVisible()
    listed = dict(window.overlay.rows)
    for keys in KEYS.values():
        shown = QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText)
        assert any(shown in (part.split(" ")[0] for part in k.split(" or ")) for k in listed), \
            f"{keys} not on the sheet: {list(listed)}"
    assert all(what for what in listed.values())
    shot = window.grab()
    assert not shot.isNull()
    # Any key closes the sheet and does nothing else (Space does not pause here).
    press(qtbot, window, "Space")
    assert not window.overlay.isVisible() and not window.user_paused
    press(qtbot, window, "Space")
    assert window.user_paused


def test_space_pauses_at_the_source_and_dot_steps_one_frame(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_face(qtbot, window)
    pause_and_settle(qtbot, window)
    assert window.user_paused and window.session.paused and window.act_pause.isChecked()
    assert window.live_tab.view.badge.startswith("paused") and window.status_paused.isVisibleTo(window)
    cap = window.session.capture
    read, shown = cap.frames_read, window.results_shown
    index = window.last_result.frame.frame_index
    qtbot.wait(1000)
    assert cap.frames_read == read and window.results_shown == shown, "the demo went on while paused"
    # '.' lets exactly the next frame through, then holds it again.
    press(qtbot, window, ".")
    qtbot.waitUntil(lambda: window.last_result.frame.frame_index == index + 1, timeout=30000)
    qtbot.wait(800)
    assert cap.frames_read == read + 1 and window.last_result.frame.frame_index == index + 1
    press(qtbot, window, "Space")
    assert not window.user_paused and window.live_tab.view.badge == ""
    qtbot.waitUntil(lambda: window.last_result.frame.frame_index > index + 3, timeout=30000)
    # '.' while playing pauses on the frame shown.
    press(qtbot, window, ".")
    assert window.user_paused


def test_paused_capture_reads_nothing_from_a_file_and_steps_one_frame() -> None:
    box: LatestMailbox = LatestMailbox()
    cap = CaptureWorker("demo", box, source_id=1, paused=True)
    cap.start()
    try:
        first = box.get(timeout=10)
        assert first is not None and first.frame_index == 0  # a source opened while paused shows a frame
        assert box.get(timeout=0.5) is None and cap.frames_read == 1
        for want in (1, 2):
            cap.step()
            got = box.get(timeout=5)
            assert got is not None and got.frame_index == want
            assert box.get(timeout=0.3) is None
        cap.set_paused(False)
        indices = [p.frame_index for p in (box.get(timeout=5) for _ in range(3)) if p is not None]
        assert len(indices) == 3 and indices[0] >= 3
    finally:
        cap.stop()
        cap.wait(5000)


def test_a_paused_camera_is_still_read_and_a_step_delivers_its_newest_frame(
        fake_cameras: None) -> None:  # noqa: F811
    box: LatestMailbox = LatestMailbox()
    cap = CaptureWorker("0", box, source_id=1)
    cap.start()
    try:
        assert box.get(timeout=10) is not None
        cap.set_paused(True)
        box.get(timeout=0.2)  # one already read may still come
        before = cap.frames_read
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            assert box.get(timeout=0.1) is None
        assert cap.frames_read == before  # delivered frames: none
        cap.step()
        got = box.get(timeout=5)
        assert got is not None and box.get(timeout=0.3) is None
    finally:
        cap.stop()
        cap.wait(5000)


# ---- snapshot ---------------------------------------------------------------------------------
def test_snapshot_writes_the_png_and_the_frames_rows_into_the_folder_chosen_once(
        qtbot, window: MainWindow, tmp_path: Path, settings_file: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    asked: list[str] = []

    def choose(*_a: object, **_k: object) -> str:
        asked.append("dir")
        return str(folder)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", choose)
    wait_face(qtbot, window)
    pause_and_settle(qtbot, window)  # a still frame: the files and the view must match
    press(qtbot, window, "S")
    qtbot.waitUntil(lambda: len(list(folder.glob("*.jsonl"))) == 1, timeout=10000)
    press(qtbot, window, "S")
    qtbot.waitUntil(lambda: len(list(folder.glob("*.jsonl"))) == 2, timeout=10000)
    qtbot.wait(200)
    assert asked == ["dir"], "the folder is asked for once"
    assert QSettings(str(settings_file), QSettings.Format.IniFormat).value(main_window_module.SNAPSHOT_DIR_KEY) \
        == str(folder)
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 2
    img = cv2.imread(str(pngs[0]))
    assert img is not None and np.array_equal(img, window.live_tab.view.frame)  # the annotated view
    res = window.last_result
    rows = [json.loads(line) for line in pngs[0].with_suffix(".jsonl").read_text().splitlines()]
    assert rows == json_rows("live", res.primary.result)  # as a recording writes them
    assert len(rows) == 1 and rows[0]["frame"] == res.frame.frame_index and len(rows[0]["faces"][0]["pts_img"]) == 68
    assert f"frame{res.frame.frame_index}" in pngs[0].name

    # A new window remembers the folder: no question.
    w2 = MainWindow(models_dir=tmp_path / "models", source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w2)
    assert w2.snapshot_dir == folder
    w2.shutdown()


# ---- mirror, next model, fullscreen -------------------------------------------------------------
def test_mirror_box_only_for_a_camera(qtbot, built_models: Path, tmp_path: Path, settings_file: Path,  # noqa: ANN001
                                      fake_cameras: None) -> None:  # noqa: F811
    w = open_window(qtbot, built_models, tmp_path, source="demo")
    try:
        qtbot.waitUntil(lambda: w.last_result is not None, timeout=60000)
        assert not w.live_tab.cb_mirror.isVisibleTo(w)
        press(qtbot, w, "M")
        assert w.live_tab.cb_mirror.isChecked() and "not a camera" in w.banner.entries[-1].text
        w.open_source("0")
        qtbot.waitUntil(lambda: w.live_tab.camera_index == 0, timeout=30000)
        assert w.live_tab.cb_mirror.isVisibleTo(w)
        qtbot.waitUntil(lambda: w.last_result.frame.mirrored, timeout=30000)
        press(qtbot, w, "M")
        assert not w.live_tab.cb_mirror.isChecked()
        qtbot.waitUntil(lambda: not w.last_result.frame.mirrored, timeout=30000)
        w.open_source("demo")
        qtbot.waitUntil(lambda: w.live_tab.camera_index is None, timeout=30000)
        assert not w.live_tab.cb_mirror.isVisibleTo(w)
    finally:
        w.shutdown()


def test_n_runs_the_next_model_and_f_shows_only_the_video(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    from kpdesk.inference.reference import available

    combo = window.live_tab.model_combo
    n = 3 + available()  # the folder's models, and the MediaPipe reference when its bundle is cached
    qtbot.waitUntil(lambda: combo.count() == n and combo.currentIndex() >= 0, timeout=60000)
    seen = [combo.currentIndex()]
    for _ in range(n):
        press(qtbot, window, "N")
        seen.append(combo.currentIndex())
    assert seen[1:] == [(seen[0] + k) % n for k in range(1, n + 1)]  # each in turn, then the first again
    qtbot.waitUntil(lambda: bool(window.session.inference.lanes)
                    and window.session.inference.lanes[0].spec.model_path == Path(combo.currentData()),
                    timeout=10000)

    press(qtbot, window, "F")
    assert window.isFullScreen() and window.act_fullscreen.isChecked()
    for w in (window.menuBar(), window.statusBar(), window.tabs.tabBar(), window.live_tab.side):
        assert not w.isVisibleTo(window)
    assert window.live_tab.view.isVisibleTo(window)
    press(qtbot, window, "Esc")
    assert not window.isFullScreen() and not window.act_fullscreen.isChecked()
    for w in (window.menuBar(), window.statusBar(), window.tabs.tabBar(), window.live_tab.side):
        assert w.isVisibleTo(window)
    # Shortcuts of the video do nothing on the other tabs.
    window.select_tab("training")
    press(qtbot, window, "Space")
    assert not window.user_paused
    press(qtbot, window, "Ctrl+Q")
    assert not window.isVisible()


# ---- layout at 1280 x 720 -----------------------------------------------------------------------
def _controls(root: QWidget) -> list[QWidget]:
    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QSlider)
    return [c for c in root.findChildren(QWidget) if isinstance(c, kinds) and c.isVisibleTo(root.window())
            and not isinstance(c.parentWidget(), QScrollArea)]


def _unreachable(window: MainWindow, tab: QWidget) -> list[str]:
    """Controls of ``tab`` a user cannot get to: outside the window, or outside the width of
    the scroll area they are in (it scrolls vertically only)."""
    bad = []
    win = window.rect()
    for c in _controls(tab):
        if c.objectName().startswith("qt_"):
            continue  # a scroll area's own scroll bars
        top_left = c.mapTo(window, c.rect().topLeft())
        r = c.rect().translated(top_left)
        area = next((p for p in _ancestors(c) if isinstance(p, QScrollArea)), None)
        if area is None:
            ok = win.contains(r)
        else:
            vp = area.viewport()
            x = c.mapTo(vp, c.rect().topLeft()).x()
            ok = x >= 0 and x + c.width() <= vp.width() and vp.height() >= 120 and win.contains(
                vp.rect().translated(vp.mapTo(window, vp.rect().topLeft())))
        if not ok:
            bad.append(f"{type(c).__name__} {getattr(c, 'text', lambda: '')()!r} at {r}")
    return bad


def _ancestors(w: QWidget) -> list[QWidget]:
    out = []
    p = w.parentWidget()
    while p is not None:
        out.append(p)
        p = p.parentWidget()
    return out


def test_at_1280x720_the_video_keeps_half_the_window_and_every_control_is_reachable(
        qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_face(qtbot, window)
    area = window.width() * window.height()
    tab = window.live_tab
    for pose in (False, True):
        tab.cb_pose.setChecked(pose)
        qtbot.wait(300)
        view = tab.view
        assert view.width() * view.height() >= 0.5 * area, f"pose {pose}: video {view.size()}"
        r = view.image_rect()  # the demo is 4:3, the video pane wider than that
        assert r.width() * r.height() >= 0.5 * area, f"pose {pose}: image {r}"
        assert tab.pose_plot.isVisibleTo(window) == pose
        assert _unreachable(window, tab) == []
        # Snapshot and record are in sight, not at the bottom of a scrolled list.
        for b in (tab.snapshot_btn, tab.record_btn):
            assert not b.visibleRegion().isEmpty() and window.rect().contains(
                b.rect().translated(b.mapTo(window, b.rect().topLeft())))
    tab.cb_pose.setChecked(False)

    window.select_tab("compare")
    cmp = window.compare_tab
    qtbot.waitUntil(lambda: all(v.isVisible() for v in cmp.views), timeout=30000)
    qtbot.wait(300)
    panes = sum(v.width() * v.height() for v in cmp.views)
    assert panes >= 0.5 * area, f"compare panes {[v.size() for v in cmp.views]}"
    assert _unreachable(window, cmp) == []
    for name in ("performance", "training", "robustness"):
        window.select_tab(name)
        qtbot.wait(100)
        assert _unreachable(window, window.tabs.currentWidget()) == [], name
    # The window can be this small on any tab (no tab's minimum pushes it off the screen).
    hint = window.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720, hint


# ---- plots --------------------------------------------------------------------------------------
def _legend_clear_of_data(plot) -> None:  # noqa: ANN001
    pi = plot.getPlotItem()
    legend = pi.legend
    assert legend is not None and legend.items, "no legend"
    lr, dr = legend.sceneBoundingRect(), pi.vb.sceneBoundingRect()
    assert not lr.intersects(dr), f"legend {lr} covers the data area {dr}"
    assert plot.sceneRect().contains(lr) or plot.rect().contains(lr.toRect()), f"legend {lr} cut off"


def test_plot_legends_never_cover_the_data(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    history = PerfHistory()
    perf = PerformanceTab(history)
    qtbot.addWidget(perf)
    perf.resize(1200, 500)
    pose = HeadPosePlot()
    qtbot.addWidget(pose)
    pose.resize(330, 200)
    for w in (perf, pose):
        w.show()
    window.robustness_tab.plot.plot([0, 1], [2, 3], name="student")
    window.robustness_tab.plot.plot([0, 1], [3, 4], name="teacher")
    window.select_tab("robustness")
    cmp = window.compare_tab
    cmp.agree_curves["A–B"] = cmp.agree_plot.plot([-2, -1], [3, 4], name="A–B")
    qtbot.wait(200)
    for plot in (perf.fps_plot, perf.stage_plot, pose.plot, cmp.latency_plot, cmp.agree_plot,
                 window.robustness_tab.plot):
        _legend_clear_of_data(plot)


def test_the_fps_curve_leaves_out_the_rate_meters_warm_up() -> None:
    h = PerfHistory(settle_s=1.0)
    # What the meter reports as frames start: 0, then a burst, then the real ~30 fps.
    readings = [0.0, 120.0, 75.0, 48.0] + [30.0] * 90
    for i, fps in enumerate(readings):
        h.add(i / 30.0, fps, 0, 0)
    t, v = h.fps.arrays(now=len(readings) / 30.0)
    assert len(v) > 50 and v.max() == pytest.approx(30.0)
    # After a standstill (a pause, a new source) the same.
    h.restart_rate()
    t0 = 10.0
    for i, fps in enumerate([0.0, 200.0, 31.0, 30.0, 30.0]):
        h.add(t0 + i / 30.0, fps, 0, 0)
    assert h.fps.last() == pytest.approx(30.0) and h.fps.arrays(now=t0 + 1)[1].max() == pytest.approx(30.0)


def test_compare_footer_wraps_between_items_never_inside_one(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    wait_face(qtbot, window)
    window.select_tab("compare")
    cmp = window.compare_tab
    qtbot.waitUntil(lambda: "shared frames" in cmp.summary.text() and cmp.summary.text().count("fps") >= 3,
                    timeout=60000)
    html = cmp.summary.text()
    items = html.split(FOOTER_SEPARATOR)
    assert len(items) >= 4, html
    font = cmp.summary.font()

    def lines(text: str, width: float) -> tuple[str, list[int]]:
        doc = QTextDocument()
        doc.setDefaultFont(font)
        doc.setHtml(text)
        doc.setTextWidth(width)
        doc.size()  # lays it out
        block = doc.firstBlock()
        layout = block.layout()
        return block.text(), [layout.lineAt(i).textStart() for i in range(layout.lineCount())]

    def ideal(text: str) -> float:
        doc = QTextDocument()
        doc.setDefaultFont(font)
        doc.setHtml(text)
        return doc.idealWidth()

    widest = max(ideal(i) for i in items)
    plain, _ = lines(html, 1e6)
    inside = []  # (start, end) of each item in the laid-out text
    pos = 0
    for item in items:
        n = len(lines(item, 1e6)[0])
        inside.append((pos, pos + n))
        pos += n + len(lines("x" + FOOTER_SEPARATOR + "x", 1e6)[0]) - 2
    assert pos - (len(lines("x" + FOOTER_SEPARATOR + "x", 1e6)[0]) - 2) == len(plain)
    for width in (widest + 30, widest * 1.5, widest * 2.2):  # wider than any item (and its margins)
        text, at = lines(html, width)
        assert text == plain
        assert len(at) > 1, "the footer did not wrap at this width"
        mid = [a for a in at if any(s < a < e for s, e in inside)]
        assert not mid, f"width {width:.0f}: a line starts inside an item: " + " | ".join(
            text[a:b] for a, b in zip(at, [*at[1:], len(text)]))


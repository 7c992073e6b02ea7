"""The main window: tabs, banner, status bar, and the wiring between the views and the workers."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QTabWidget, QVBoxLayout, QWidget

from kpdesk.gui.banner import MessageBanner
from kpdesk.gui.compare_tab import SLOT_LABELS, CompareTab
from kpdesk.gui.lab.tab import RobustnessTab
from kpdesk.gui.live_tab import LiveTab, fill_model_combo
from kpdesk.gui.performance_tab import PerformanceTab
from kpdesk.gui.shortcuts import ShortcutOverlay, shortcut_text
from kpdesk.gui.training_tab import TrainingTab
from kpdesk.inference.catalog import CatalogEntry, default_entry, scan_catalog
from kpdesk.inference.reference import is_reference
from kpdesk.vision.files import atomic_write_text, write_image
from kpdesk.workers.cameras import CameraWatcher
from kpdesk.workers.inference import InferenceSettings
from kpdesk.workers.messages import InferenceResult, VariantSpec
from kpdesk.workers.occlusion import Occluder
from kpdesk.workers.recorder import LandmarkRecorder, RecorderError, json_rows
from kpdesk.workers.session import LiveSession
from kpdesk.workers.stats import PerfHistory
from kpdesk.workers.tasks import run_in_background

log = logging.getLogger(__name__)

TAB_NAMES = ("live", "performance", "compare", "training", "robustness")
PREFERRED_LIVE = ("student", "student-0.25x", "teacher")
SNAPSHOT_DIR_KEY = "snapshot/folder"


def app_settings() -> QSettings:
    """Where the window keeps what the user chose once (the snapshot folder)."""
    return QSettings("kpdesk", "kpdesk")


def _is_path(model: str) -> bool:
    """``--model`` names a file (``x.onnx``, ``dir/x``), not a model of the models folder."""
    import os

    return model.endswith(".onnx") or os.sep in model or (os.altsep or os.sep) in model


def _available_detectors() -> list[str]:
    try:
        from kpdesk.inference.detectors import available_detectors

        return list(available_detectors())
    except Exception:  # noqa: BLE001 - the picker still offers "auto"
        log.exception("listing detectors")
        return []


class MainWindow(QMainWindow):
    """kpdesk's window. ``start()`` opens the source and scans the models (both in the background).

    Signals: ``closed()`` after the window was closed and its threads stopped.
    """

    closed = Signal()

    def __init__(self, models_dir: Path, source: str = "auto", model: str | None = None, detector: str = "auto",
                 threads: int = 0, runs_dir: Path | None = None, realtime: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("kpdesk — facial landmarks")
        self.models_dir = Path(models_dir)
        self.initial_source = source
        self.initial_model = model
        self.catalog: list[CatalogEntry] = []
        self.history = PerfHistory(window_s=30.0)
        self.last_result: InferenceResult | None = None
        self.results_shown = 0
        self.recorder: LandmarkRecorder | None = None
        self._drawn: dict[str, object] = {}  # label -> the newest VariantResult put in the history
        self._scan_task = None
        self._tasks: list[object] = []
        detectors = _available_detectors()

        self.session = LiveSession(InferenceSettings(threads=threads), realtime=realtime, parent=self)
        self.session.inference.result_available.connect(self._on_result)
        self.session.inference.error.connect(lambda m: self.show_message(m, "error"))
        self.session.inference.variants_changed.connect(self._on_variants_changed)
        self.session.inference.model_failed.connect(self._on_model_failed)
        self.session.inference.recording_failed.connect(self._on_recording_failed)
        self.session.source_opened.connect(self._on_source_opened)
        self.session.source_failed.connect(self._on_source_failed)
        self.session.source_ended.connect(lambda m: self.show_message(m, "info"))

        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 6)
        self.banner = MessageBanner()
        lay.addWidget(self.banner)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.live_tab = LiveTab(detectors)
        i = self.live_tab.detector_combo.findData(detector)
        if i >= 0:
            self.live_tab.detector_combo.setCurrentIndex(i)
        self.live_tab.threads.setValue(threads)
        self.perf_tab = PerformanceTab(self.history)
        self.compare_tab = CompareTab(self.history, detectors, self.live_tab.overlay_options)
        self.training_tab = TrainingTab(self.models_dir, runs_dir)
        self.robustness_tab = RobustnessTab(threads=1)
        self.tabs.addTab(self.live_tab, "Live")
        self.tabs.addTab(self.perf_tab, "Performance")
        self.tabs.addTab(self.compare_tab, "Compare")
        self.tabs.addTab(self.training_tab, "Training")
        self.tabs.addTab(self.robustness_tab, "Robustness")
        self.tabs.currentChanged.connect(self._on_tab_changed)

        self.live_tab.source_requested.connect(self.open_source)
        self.live_tab.mirror_changed.connect(self.session.set_mirror)
        self.session.camera_modes.connect(self.live_tab.set_camera_modes)
        # Cameras that come and go while the app runs (probed off the GUI thread).
        self.camera_watcher = CameraWatcher(in_use=self._cameras_in_use, parent=self)
        self.camera_watcher.cameras_changed.connect(self._on_cameras_changed)
        self.live_tab.variant_changed.connect(self.apply_variants)
        self.live_tab.settings_changed.connect(self.apply_settings)
        self.live_tab.occlusion_changed.connect(self.apply_occlusion)
        self.live_tab.rescan_btn.clicked.connect(self.rescan_models)
        self.live_tab.snapshot_requested.connect(self.snapshot_to_folder)
        self.live_tab.record_toggled.connect(self._on_record_toggled)
        self.compare_tab.variants_changed.connect(self.apply_variants)
        self.compare_tab.rect_selected.connect(self.live_tab._on_rect)
        self.training_tab.message.connect(self.show_message)
        self.robustness_tab.message.connect(self.show_message)
        self.training_tab.model_installed.connect(lambda _p: self.rescan_models())
        self.training_tab.job_running_changed.connect(lambda _r: self._update_pause())
        self.training_tab.pause_live.toggled.connect(lambda _c: self._update_pause())

        sb = self.statusBar()
        self.status_paused = QLabel("⏸ paused")
        self.status_paused.setStyleSheet("color:#ffb347; font-weight:600;")
        self.status_paused.setVisible(False)
        sb.addPermanentWidget(self.status_paused)
        self.status_source = QLabel("source: —")
        self.status_model = QLabel("model: —")
        self.status_fps = QLabel("— fps")
        for w in (self.status_source, self.status_model, self.status_fps):
            sb.addPermanentWidget(w)

        self.user_paused = False
        self.snapshot_dir: Path | None = None
        stored = app_settings().value(SNAPSHOT_DIR_KEY, "", type=str)
        if stored and Path(stored).is_dir():
            self.snapshot_dir = Path(stored)
        self._video_fullscreen = False
        self._was_maximized = False
        self._build_actions()
        self.overlay = ShortcutOverlay(self)
        self.overlay.set_rows([(shortcut_text(a), what) for a, what in self.shortcut_rows])
        self._update_actions()

        # Plots and numbers refresh on a timer, never per frame.
        self.refresh_timer = QTimer(self, interval=333, timeout=self._refresh)
        self.resize(1500, 920)

    # ---- menus and keyboard shortcuts -----------------------------------------------------
    def _action(self, text: str, keys: tuple[str | QKeySequence.StandardKey, ...], slot: object,
                tip: str = "", checkable: bool = False) -> QAction:
        a = QAction(text, self)
        a.setShortcuts([QKeySequence(k) for k in keys])
        a.setCheckable(checkable)
        a.setStatusTip(tip)
        a.setToolTip(f"{tip or text} ({shortcut_text(a)})" if keys else tip or text)
        a.triggered.connect(slot)
        self.addAction(a)  # the shortcut works while the menu bar is hidden (fullscreen video)
        return a

    def _build_actions(self) -> None:
        self.act_pause = self._action("&Pause", ("Space",), self.set_user_paused, checkable=True,
                                      tip="Pause / resume the video (the models stop with it)")
        self.act_pause.setIconText("Pause")
        self.act_step = self._action("&Step one frame", (".",), self.step_frame,
                                     tip="While paused: the next frame (pauses first when playing)")
        self.act_step.setIconText("Step")
        self.act_snapshot = self._action("&Snapshot", ("S",), self.snapshot_to_folder,
                                         tip="Annotated PNG + the frame's landmarks (JSON lines) into the "
                                             "snapshot folder")
        self.act_snapshot_dir = self._action("Snapshot &folder…", (), self.choose_snapshot_dir,
                                             tip="Where snapshots go (asked for once, then remembered)")
        self.act_mirror = self._action("&Mirror camera", ("M",), self.toggle_mirror,
                                       tip="Mirror the camera image (selfie view)")
        self.act_next_model = self._action("&Next model", ("N",), self.next_model,
                                           tip="Run the next model of the models folder")
        self.act_fullscreen = self._action("&Fullscreen video", ("F",), self.set_video_fullscreen,
                                           checkable=True, tip="Only the video, on the whole screen (F or Esc leaves)")
        self.act_fullscreen.setIconText("Fullscreen")
        self.act_leave_fullscreen = self._action("Leave fullscreen", ("Esc",),
                                                 lambda: self.set_video_fullscreen(False))
        self.act_leave_fullscreen.setEnabled(False)
        self.act_help = self._action("&Keyboard shortcuts", ("?", QKeySequence.StandardKey.HelpContents),
                                     self.show_shortcuts, tip="List the keyboard shortcuts")
        self.act_quit = self._action("&Quit", ("Ctrl+Q",), self.close, tip="Close kpdesk")
        self.shortcut_rows = [
            (self.act_pause, "Pause / resume the video"),
            (self.act_step, "Step one frame while paused"),
            (self.act_snapshot, "Snapshot: annotated PNG + the frame's landmarks (JSON)"),
            (self.act_mirror, "Mirror the camera image"),
            (self.act_next_model, "Next model (Live tab)"),
            (self.act_fullscreen, "Fullscreen video (Esc leaves)"),
            (self.act_help, "This list"),
            (self.act_quit, "Quit"),
        ]
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.act_snapshot, self.act_snapshot_dir):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&View")
        for a in (self.act_pause, self.act_step, None, self.act_mirror, self.act_next_model, self.act_fullscreen):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&Help")
        m.addAction(self.act_help)
        for a in (self.act_pause, self.act_step, self.act_fullscreen):
            self.live_tab.add_play_button(a)

    def show_shortcuts(self) -> None:
        self.overlay.open()

    def set_user_paused(self, on: bool) -> None:
        """Pause (or resume) the video at its source: the models and the plots stop with it."""
        on = bool(on)
        self.act_pause.setChecked(on)
        if on == self.user_paused:
            return
        self.user_paused = on
        self.session.set_paused(on)
        if not on:
            self.history.restart_rate()  # the rate meters start from a standstill
        self.act_pause.setText("Resume" if on else "&Pause")
        self.act_pause.setIconText("Resume" if on else "Pause")
        self.status_paused.setVisible(on)
        badge = "paused · Space resumes · . steps" if on else ""
        for view in (self.live_tab.view, *self.compare_tab.views):
            view.set_badge(badge)

    def step_frame(self) -> None:
        """One more frame while paused; when playing, pause (on this frame)."""
        if not self.user_paused:
            self.set_user_paused(True)
            return
        self.session.step()

    def toggle_mirror(self) -> None:
        cb = self.live_tab.cb_mirror
        if self.live_tab.camera_index is None:
            self.show_message("Mirror applies to a camera image: the source is not a camera.", "info")
            return
        cb.setChecked(not cb.isChecked())
        self.show_message(f"Mirror {'on' if cb.isChecked() else 'off'}.", "info")

    def next_model(self) -> None:
        """The next usable model of the Live tab's picker (after the last: the first)."""
        combo = self.live_tab.model_combo
        n = combo.count()
        for k in range(1, n + 1):
            i = (combo.currentIndex() + k) % n
            item = combo.model().item(i)
            if combo.itemData(i) and (item is None or item.isEnabled()):
                if i != combo.currentIndex():
                    combo.setCurrentIndex(i)
                    self.show_message(f"Model: {combo.itemText(i)}", "info")
                return
        self.show_message("No other usable model in the models folder.", "info")

    def set_video_fullscreen(self, on: bool) -> None:
        """Only the video of the Live or Compare tab, on the whole screen (F / Esc leave)."""
        on = bool(on) and self.tabs.currentWidget() in (self.live_tab, self.compare_tab)
        self.act_fullscreen.setChecked(on)
        if on == self._video_fullscreen:
            return
        self._video_fullscreen = on
        self.act_leave_fullscreen.setEnabled(on)
        for w in (self.menuBar(), self.statusBar(), self.tabs.tabBar()):
            w.setVisible(not on)
        self.live_tab.set_video_only(on)
        self.compare_tab.set_video_only(on)
        if on:
            self._was_maximized = self.isMaximized()
            self.showFullScreen()
        elif self._was_maximized:
            self.showMaximized()
        else:
            self.showNormal()

    # ---- start-up ---------------------------------------------------------------------
    def start(self) -> None:
        self.session.start()
        self.open_source(self.initial_source)
        self.rescan_models()
        self.camera_watcher.start()
        self.apply_settings()
        self.refresh_timer.start()

    def show_message(self, text: str, level: str = "error") -> None:
        log.log(logging.ERROR if level == "error" else logging.INFO, "%s", text)
        self.banner.show_message(text, level)
        sb = self.statusBar()  # one line: elided in the middle, so the end (the fix) stays
        room = max(sb.width() - 30, 200)
        sb.showMessage(sb.fontMetrics().elidedText(" ".join(text.split()), Qt.TextElideMode.ElideMiddle, room), 10000)

    # ---- sources ----------------------------------------------------------------------
    def open_source(self, spec: str) -> None:
        self.live_tab.source_status.setText(f"Opening {spec}…")
        self.session.open_source(spec)

    def _cameras_in_use(self) -> list[int]:
        from kpdesk.inference.sources import parse_camera_spec

        cam = parse_camera_spec(str(self.session.source_spec or ""))
        return [cam[0]] if cam is not None else []

    def _on_cameras_changed(self, cameras: list[int]) -> None:
        before = self.live_tab.camera_list()
        self.live_tab.set_cameras(cameras)
        if self.camera_watcher.probes > 1:  # not the first look at start-up
            for idx in sorted(set(cameras) - set(before)):
                self.show_message(f"Camera {idx} connected: pick it in the Live tab.", "info")
            for idx in sorted(set(before) - set(cameras)):
                self.show_message(f"Camera {idx} disconnected.", "info")

    def _on_source_opened(self, spec: str, description: str) -> None:
        self.history.restart_rate()
        self.live_tab.show_source(spec, description)
        self.status_source.setText(f"source: {description}")
        if self.initial_source == "auto" and spec == "demo":
            self.show_message("No camera found: playing the built-in demo face.", "info")

    def _on_source_failed(self, message: str) -> None:
        self.show_message(f"{message}. Pick another source in the Live tab.", "error")
        self.live_tab.source_status.setText(message)
        combo = self.live_tab.source_combo  # nothing plays now: the picker must not name a source
        combo.setPlaceholderText("— no source —")
        combo.blockSignals(True)
        combo.setCurrentIndex(-1)
        combo.blockSignals(False)
        if self.last_result is None:
            self.live_tab.view.clear(f"{message}\nPick another source on the right.")
        self.status_source.setText("source: stopped")

    # ---- models -----------------------------------------------------------------------
    def rescan_models(self) -> None:
        """Scan the models folder in the background (validating a model opens it); the
        MediaPipe reference joins the list when its bundle is cached."""
        self._scan_task = run_in_background(scan_catalog, self.models_dir, True, self._extra_models(), parent=self,
                                            on_done=self._on_catalog,
                                            on_failed=lambda m: self.show_message(f"Cannot scan models: {m}"))

    def _extra_models(self) -> tuple[Path, ...]:
        """A ``--model`` given as a path to a file outside the models folder: listed too (the
        folder it lies in is not taken for the models folder)."""
        want = self.initial_model
        if want and _is_path(want) and Path(want).expanduser().is_file():
            return (Path(want).expanduser(),)
        return ()

    def _on_catalog(self, entries: list[CatalogEntry]) -> None:
        first = not self.catalog
        self.catalog = list(entries)
        combo = self.live_tab.model_combo
        keep = combo.currentData()
        fill_model_combo(combo, self.catalog, keep=keep)
        if first or keep is None:
            self._select_initial_model()
        extra = set(self._extra_models())  # a broken --model file: _select_initial_model says so, once
        broken = [e for e in self.catalog if not e.ok and e.onnx_path not in extra]
        for e in broken:
            self.show_message(f"Model {e.name} cannot be used: {e.error}", "warning")
        if not any(e.ok and not is_reference(e.onnx_path) for e in self.catalog):
            self.show_message(f"No usable model in {self.models_dir}: showing the video without landmarks. "
                              "Train one in the Training tab or copy NAME.onnx + NAME.json there.", "warning")
        self.compare_tab.set_catalog(self.catalog)
        self.robustness_tab.set_catalog(self.catalog)
        self.apply_variants()

    def _select_initial_model(self) -> None:
        """The ``--model`` asked for, else the default model. A ``--model`` that cannot be used
        costs one line saying which model runs instead and why (the reason's fix last)."""
        combo = self.live_tab.model_combo
        # The reference only when asked for by name: never the fallback.
        fallback = default_entry([e for e in self.catalog if not is_reference(e.onnx_path)])
        want = self.initial_model
        if want:
            entry = self._wanted_entry(want)
            if entry is not None and entry.ok:
                combo.setCurrentIndex(combo.findData(str(entry.onnx_path)))
                return
            if entry is not None:
                why = entry.error or "unusable"
            elif _is_path(want):
                why = f"{Path(want).expanduser()}: model file not found"
            else:
                known = ", ".join(e.name for e in self.catalog if e.ok) or "none"
                why = f"no model {want!r} in {self.models_dir} (usable: {known})"
            instead = (f"using the default model {fallback.name} instead" if fallback
                       else "no usable model to run instead")
            self.show_message(f"--model {want}: {instead}. {why}", "error")
        if fallback is not None:
            combo.setCurrentIndex(combo.findData(str(fallback.onnx_path)))

    def _wanted_entry(self, want: str) -> CatalogEntry | None:
        """The catalog entry ``--model`` names: a path matches only that file, a name the model of that name."""
        if _is_path(want):
            target = Path(want).expanduser().resolve()
            return next((e for e in self.catalog if e.onnx_path.resolve() == target), None)
        return next((e for e in self.catalog if e.name == want), None)

    def current_specs(self) -> list[VariantSpec]:
        if self.tabs.currentWidget() is self.compare_tab:
            return self.compare_tab.variant_specs()
        path = self.live_tab.model_path()
        if not path:
            return []
        return [VariantSpec(label="live", model_path=Path(path),
                            detector=self.live_tab.detector_combo.currentData() or "auto",
                            decode_mode=self.live_tab.decode_combo.currentData())]

    def apply_variants(self) -> None:
        specs = self.current_specs()
        self.session.inference.set_variants(specs)
        self.perf_tab.primary_label = specs[0].label if specs else ""

    def _on_model_failed(self, label: str, path: str, running: str) -> None:
        """A model failed to load for variant ``label``: its picker goes back to the model
        that runs instead (blank when none does), and the failed entry is greyed out with
        the reason until the next rescan, so it is not picked (and tried) again."""
        combos = {"live": self.live_tab.model_combo, **dict(zip(SLOT_LABELS, self.compare_tab.model_combos))}
        combo = combos.get(label)
        if combo is None:
            return
        i = combo.findData(path)
        if i >= 0:
            combo.model().item(i).setEnabled(False)
            combo.setItemData(i, f"failed to load; fix the file and rescan ({Path(path).name})",
                              Qt.ItemDataRole.ToolTipRole)
        if combo.currentData() == path:
            combo.blockSignals(True)
            combo.setCurrentIndex(combo.findData(running) if running else -1)
            combo.blockSignals(False)

    def _on_variants_changed(self, pairs: list) -> None:
        names = [f"{label}: {name}" if label != "live" else name for label, name in pairs if name]
        self.status_model.setText("model: " + (", ".join(names) or "—"))

    def apply_settings(self) -> None:
        smooth, min_cutoff = self.live_tab.smoothing()
        self.session.inference.set_settings(InferenceSettings(
            max_faces=self.live_tab.max_faces.value(), smoothing=smooth, min_cutoff=min_cutoff,
            keep_heatmaps=self.live_tab.heatmap_needed(), threads=self.live_tab.threads.value(),
            occlude_detector=self.live_tab.cb_occlude_detector.isChecked()))
        self.history.ort_threads = self.live_tab.threads.value()

    def apply_occlusion(self) -> None:
        choice = self.live_tab.occlusion_choice()
        occ = None
        if choice == "custom":
            if self.live_tab.custom_rect is not None:
                occ = Occluder("rect", self.live_tab.custom_rect, anchor="image")
        elif choice:
            occ = Occluder.preset(choice)
        self.session.inference.set_occluder(occ)

    def _update_actions(self) -> None:
        """The video shortcuts work in the Live and Compare tabs; next model in Live."""
        current = self.tabs.currentWidget()
        video = current in (self.live_tab, self.compare_tab)
        for a in (self.act_pause, self.act_step, self.act_snapshot, self.act_mirror, self.act_fullscreen):
            a.setEnabled(video)
        self.act_next_model.setEnabled(current is self.live_tab)
        if not video:
            self.set_video_fullscreen(False)

    def _on_tab_changed(self, _index: int) -> None:
        self._update_actions()
        self.apply_variants()
        if self.last_result is not None:
            self._show(self.last_result, force=True)

    def _update_pause(self) -> None:
        """Live inference pauses while a training job started here runs (unless unticked)."""
        pause = self.training_tab.job_running and self.training_tab.pause_live.isChecked()
        if pause == self.session.inference.paused:
            return
        self.session.inference.set_paused(pause)
        if pause:
            self.show_message("Live inference paused while the training job runs (untick the option in the "
                              "Training tab to keep it running).", "info")
        elif self.training_tab.job_running:
            self.show_message("Live inference runs beside the training job.", "info")

    # ---- results ----------------------------------------------------------------------
    def _on_result(self) -> None:
        res = self.session.inference.take_result()
        if res is None:
            return
        self.last_result = res
        self.results_shown += 1
        t = res.processed_at or time.monotonic()
        self.history.add(t, res.fps, res.capture_dropped, res.display_dropped)
        for vr in res.variants:
            # Variants run at their own rates: a result holds the newest of each, new or not.
            if vr.result is not None and self._drawn.get(vr.spec.label) is not vr:
                self._drawn[vr.spec.label] = vr
                self.history.add_variant(t, vr.spec.label, vr.result.timings.as_dict(), len(vr.result.faces))
        self._show(res)

    def _show(self, res: InferenceResult, force: bool = False) -> None:
        current = self.tabs.currentWidget()
        if current is self.compare_tab:
            self.compare_tab.show_result(res, force=force)
        elif current is self.live_tab:
            self.live_tab.show_result(res)

    def _refresh(self) -> None:
        current = self.tabs.currentWidget()
        if current is self.perf_tab:
            self.perf_tab.refresh()
        elif current is self.compare_tab:
            self.compare_tab.refresh()
        fps = self.history.fps.last(0.0)
        self.status_fps.setText(f"{fps:.1f} fps · dropped {self.history.capture_dropped}")

    # ---- snapshot and recording -------------------------------------------------------
    def current_view_image(self) -> np.ndarray | None:
        """The rendered image of the current tab (compare: the views side by side), BGR."""
        if self.tabs.currentWidget() is self.compare_tab:
            frames = [v.frame for v in self.compare_tab.views if v.isVisible() and v.frame is not None]
            if not frames:
                return None
            h = min(f.shape[0] for f in frames)
            return np.hstack([f[:h] for f in frames])
        return self.live_tab.view.frame

    def save_snapshot(self, path: str | Path) -> object | None:
        """Write the current view to ``path`` (PNG) in the background; returns the task signals."""
        img = self.current_view_image()
        if img is None:
            self.show_message("Nothing to snapshot yet.", "warning")
            return None
        target = Path(path)

        def write() -> str:
            return str(write_image(target, img))  # OutputError: one line naming the file and why

        task = run_in_background(write, parent=self, on_done=lambda p: self.show_message(f"Saved {p}", "info"),
                                 on_failed=lambda m: self.show_message(f"Snapshot failed: {m}", "error"))
        self._tasks.append(task)
        return task

    def choose_snapshot_dir(self) -> Path | None:
        """Ask where snapshots go; remembered (also for the next start). None if cancelled."""
        start = str(self.snapshot_dir or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Folder for snapshots", start)
        if not folder:
            return None
        self.snapshot_dir = Path(folder)
        app_settings().setValue(SNAPSHOT_DIR_KEY, folder)
        self.show_message(f"Snapshots go to {folder} (File > Snapshot folder… changes it).", "info")
        return self.snapshot_dir

    def snapshot_rows(self) -> list[dict]:
        """The landmarks of the frame on screen, as the rows a recording writes for it."""
        res = self.last_result
        if res is None:
            return []
        if self.tabs.currentWidget() is self.compare_tab:
            shown = [vr for vr in self.compare_tab.shown.values()]
        else:
            shown = [res.primary] if res.primary is not None else []
        rows: list[dict] = []
        for vr in shown:
            if vr is not None and vr.result is not None:
                frame = vr.frame if vr.frame is not None else res.frame
                rows += json_rows(vr.spec.label, vr.result, getattr(frame, "source_file", None),
                                  mirrored=bool(getattr(frame, "mirrored", False)))
        return rows

    def snapshot_to_folder(self) -> object | None:
        """S: the annotated frame (PNG) and its landmarks (JSON lines, one row per face, as a
        recording writes them) into the snapshot folder, asked for the first time."""
        img = self.current_view_image()
        if img is None:
            self.show_message("Nothing to snapshot yet.", "warning")
            return None
        rows = self.snapshot_rows()
        folder = self.snapshot_dir if self.snapshot_dir is not None and self.snapshot_dir.is_dir() else None
        folder = folder or self.choose_snapshot_dir()
        if folder is None:
            return None
        frame_index = self.last_result.frame.frame_index if self.last_result is not None else 0
        stem = f"kpdesk-{time.strftime('%Y%m%d-%H%M%S')}-frame{frame_index}"
        n = 1
        while (folder / f"{stem}.png").exists() or (folder / f"{stem}.jsonl").exists():
            n += 1
            stem = f"kpdesk-{time.strftime('%Y%m%d-%H%M%S')}-frame{frame_index}-{n}"
        png, jsonl = folder / f"{stem}.png", folder / f"{stem}.jsonl"

        def write() -> str:
            write_image(png, img)  # whole or not at all; OutputError names the file and the reason
            atomic_write_text(jsonl, "".join(json.dumps(r) + "\n" for r in rows))
            return f"{png} and {jsonl.name} ({len(rows)} face row{'s' if len(rows) != 1 else ''})"

        task = run_in_background(write, parent=self, on_done=lambda p: self.show_message(f"Saved {p}", "info"),
                                 on_failed=lambda m: self.show_message(f"Snapshot failed: {m}", "error"))
        self._tasks.append(task)
        return task

    def _on_record_toggled(self, on: bool) -> None:
        if not on:
            self.stop_recording()
            return
        default = str(Path.home() / f"kpdesk-landmarks-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
        path, _ = QFileDialog.getSaveFileName(self, "Record landmarks to", default,
                                              "JSON lines (*.jsonl);;CSV (*.csv)")
        if not path or not self.start_recording(path):
            self.live_tab.record_btn.blockSignals(True)
            self.live_tab.record_btn.setChecked(False)
            self.live_tab.record_btn.blockSignals(False)

    def start_recording(self, path: str | Path) -> bool:
        try:
            rec = LandmarkRecorder(path)
        except RecorderError as exc:
            self.show_message(str(exc), "error")
            return False
        self.recorder = rec
        self.session.inference.set_recorder(rec)
        self.live_tab.record_btn.blockSignals(True)
        self.live_tab.record_btn.setChecked(True)
        self.live_tab.record_btn.setText("Stop recording")
        self.live_tab.record_btn.blockSignals(False)
        self.show_message(f"Recording landmarks to {path}", "info")
        return True

    def _on_recording_failed(self, path: str) -> None:
        """A write failed and the worker stopped the recording (the banner says why): the
        button must not go on saying "Stop recording"."""
        if self.recorder is not None and str(self.recorder.path) == path:
            self.recorder = None
            self.stop_recording()

    def stop_recording(self) -> None:
        if self.recorder is not None:
            self.session.inference.set_recorder(None)  # closed on the inference thread
            self.show_message(f"Landmarks saved to {self.recorder.path}", "info")
            self.recorder = None
        self.live_tab.record_btn.blockSignals(True)
        self.live_tab.record_btn.setChecked(False)
        self.live_tab.record_btn.setText("Record landmarks…")
        self.live_tab.record_btn.blockSignals(False)

    # ---- shutdown ---------------------------------------------------------------------
    def select_tab(self, name: str) -> None:
        self.tabs.setCurrentIndex(TAB_NAMES.index(name))

    def shutdown(self) -> None:
        """Stop timers, a running training job and the threads. Idempotent."""
        self.refresh_timer.stop()
        self.camera_watcher.stop()
        self.training_tab.shutdown()
        self.robustness_tab.shutdown()
        self.session.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()

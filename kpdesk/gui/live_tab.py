"""Live tab: the video with overlays, and the controls of the live session."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kpdesk.gui.panels import SIDE_PANEL_WIDTH, side_panel
from kpdesk.gui.pose_plot import HeadPosePlot
from kpdesk.gui.render import OverlayOptions, render_variant
from kpdesk.gui.text import wrap_lines
from kpdesk.gui.video_view import VideoView
from kpdesk.inference.catalog import CatalogEntry
from kpdesk.inference.sources import CameraMode, parse_camera_spec
from kpdesk.vision.headpose import HeadPose, face_pose
from kpdesk.workers.messages import InferenceResult
from kpdesk.workers.occlusion import PRESETS

DECODE_CHOICES = (("model default", None), ("regression", "regression"), ("heatmap", "heatmap"),
                  ("fusion", "fusion"))
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"
_PICK_VIDEO, _PICK_FOLDER, _PICK_IMAGE = "__video__", "__folder__", "__image__"


def smoothing_min_cutoff(strength: float) -> float:
    """Slider strength in [0, 1] -> One-Euro ``min_cutoff`` in Hz (0: 10 Hz, light; 1: 0.03 Hz, heavy)."""
    return float(10 ** (1.0 - 2.5 * min(max(strength, 0.0), 1.0)))


def fill_model_combo(combo: QComboBox, entries: list[CatalogEntry], keep: str | None = None,
                     allow_none: bool = False) -> None:
    """Catalog -> combo items (data: onnx path); broken models are listed but disabled."""
    current = keep if keep is not None else combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    if allow_none:
        combo.addItem("— none —", None)
    for e in entries:
        if e.ok and e.manifest is not None:
            text = f"{e.name}  ({e.manifest.schema.num_points} pts, {e.manifest.arch or '?'})"
        else:
            text = f"{e.name}  (broken)"
        combo.addItem(text, str(e.onnx_path))
        idx = combo.count() - 1
        if not e.ok:
            item = combo.model().item(idx)
            item.setEnabled(False)
            combo.setItemData(idx, e.error, Qt.ItemDataRole.ToolTipRole)
    if current is not None:
        i = combo.findData(current)
        if i >= 0:
            combo.setCurrentIndex(i)
    combo.blockSignals(False)


class LiveTab(QWidget):
    """Signals:
        source_requested(str spec): open this source (a camera mode: ``cam:N:WxH@FPS``).
        mirror_changed(bool): mirror camera images (selfie view) or not.
        variant_changed(): model, detector or decode mode changed.
        settings_changed(): smoothing / max faces / threads / heatmap need changed.
        occlusion_changed(): occluder preset or rectangle changed.
        snapshot_requested(), record_toggled(bool)
    """

    source_requested = Signal(str)
    mirror_changed = Signal(bool)
    variant_changed = Signal()
    settings_changed = Signal()
    occlusion_changed = Signal()
    snapshot_requested = Signal()
    record_toggled = Signal(bool)

    def __init__(self, detectors: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.custom_rect: tuple[float, float, float, float] | None = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        left = QVBoxLayout()
        self.view = VideoView()
        self.view.rect_selected.connect(self._on_rect)
        left.addWidget(self.view, 1)
        self.info = QLabel("")
        self.info.setStyleSheet("color:#b8c2cc;")
        self.info.setWordWrap(True)
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        left.addWidget(self.info)
        lay.addLayout(left, 1)

        panel = QWidget()
        pl = QVBoxLayout(panel)
        pl.setContentsMargins(2, 2, 2, 2)

        g = QGroupBox("Source")
        f = QFormLayout(g)
        self.source_combo = QComboBox()
        self.source_combo.addItem("Demo face (synthetic)", "demo")
        self.source_combo.insertSeparator(1)
        self.source_combo.addItem("Video file…", _PICK_VIDEO)
        self.source_combo.addItem("Image folder…", _PICK_FOLDER)
        self.source_combo.addItem("Image file…", _PICK_IMAGE)
        self.source_combo.activated.connect(self._on_source_activated)
        f.addRow(self.source_combo)
        self.cb_mirror = QCheckBox("Mirror camera (selfie view)", checked=True)
        self.cb_mirror.setToolTip("Show camera images flipped left-right, like a mirror. The models see the "
                                  "flipped image, so the landmarks match what is shown.")
        self.cb_mirror.toggled.connect(self.mirror_changed)
        self.cb_mirror.setVisible(False)  # only while a camera is the source
        f.addRow(self.cb_mirror)
        self.mode_combo = QComboBox()
        self.mode_combo.setToolTip("Capture resolution and frame rate: the modes this camera accepted when asked")
        self.mode_combo.activated.connect(self._on_mode_activated)
        f.addRow("Camera mode", self.mode_combo)
        self.camera_index: int | None = None  # the camera being shown, if any
        self.camera_modes: dict[int, list[CameraMode]] = {}
        self._mode_text = ""  # the mode the open camera reported, e.g. "1280 × 720 @ 30 fps"
        self._fill_modes()
        self.source_status = QLabel("")
        self.source_status.setWordWrap(True)
        self.source_status.setStyleSheet("color:#9aa4b0;")
        f.addRow(self.source_status)
        pl.addWidget(g)

        g = QGroupBox("Model")
        f = QFormLayout(g)
        self.model_combo = QComboBox()
        self.model_combo.setMinimumContentsLength(18)
        self.model_combo.currentIndexChanged.connect(lambda _i: self.variant_changed.emit())
        f.addRow("Model", self.model_combo)
        self.rescan_btn = QPushButton("Rescan models folder")
        f.addRow(self.rescan_btn)
        self.detector_combo = QComboBox()
        for d in ["auto", *detectors]:
            self.detector_combo.addItem(d, d)
        self.detector_combo.currentIndexChanged.connect(lambda _i: self.variant_changed.emit())
        f.addRow("Detector", self.detector_combo)
        self.decode_combo = QComboBox()
        for text, mode in DECODE_CHOICES:
            self.decode_combo.addItem(text, mode)
        self.decode_combo.currentIndexChanged.connect(lambda _i: self.variant_changed.emit())
        f.addRow("Decode", self.decode_combo)
        self.max_faces = QSpinBox(minimum=1, maximum=8, value=1)
        self.max_faces.valueChanged.connect(lambda _v: self.settings_changed.emit())
        f.addRow("Max faces", self.max_faces)
        self.threads = QSpinBox(minimum=0, maximum=64, value=0, specialValueText="auto")
        self.threads.setToolTip("onnxruntime intra-op threads (auto: onnxruntime decides)")
        self.threads.valueChanged.connect(lambda _v: self.settings_changed.emit())
        f.addRow("ORT threads", self.threads)
        pl.addWidget(g)

        g = QGroupBox("Overlays")
        f = QFormLayout(g)
        self.cb_points = QCheckBox("Keypoints (colour = confidence)", checked=True)
        self.cb_indices = QCheckBox("Point indices")
        self.cb_box = QCheckBox("Face box", checked=True)
        self.cb_skeleton = QCheckBox("Skeleton", checked=True)
        self.cb_heatmap = QCheckBox("Heatmap")
        self.cb_pose = QCheckBox("Head pose (axes + plot)")
        self.cb_pose.setToolTip("Yaw / pitch / roll from the landmarks (solvePnP against a 3D mean face); "
                                "recordings and `kpdesk detect --json` always include them")
        for cb in (self.cb_points, self.cb_indices, self.cb_box, self.cb_skeleton, self.cb_heatmap, self.cb_pose):
            f.addRow(cb)
            cb.toggled.connect(self._on_overlay_toggled)
        self.heatmap_point = QSpinBox(minimum=-1, maximum=255, value=-1, specialValueText="all points (sum)")
        self.heatmap_point.valueChanged.connect(lambda _v: self._rerender())
        f.addRow("Heatmap of", self.heatmap_point)
        self.occ_threshold = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=35)
        self.occ_threshold.valueChanged.connect(lambda _v: self._rerender())
        self.occ_threshold.setToolTip("Points below this confidence are drawn as occluded (ring with a cross)")
        f.addRow("Occluded below", self.occ_threshold)
        pl.addWidget(g)

        g = QGroupBox("Smoothing")
        f = QFormLayout(g)
        self.cb_smoothing = QCheckBox("One-Euro filter", checked=True)
        self.cb_smoothing.toggled.connect(lambda _v: self.settings_changed.emit())
        f.addRow(self.cb_smoothing)
        self.smooth_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=40)  # = pipeline default
        self.smooth_slider.setTracking(False)
        self.smooth_slider.valueChanged.connect(lambda _v: self.settings_changed.emit())
        f.addRow("Strength", self.smooth_slider)
        pl.addWidget(g)

        g = QGroupBox("Occlusion demo")
        f = QFormLayout(g)
        self.occ_combo = QComboBox()
        self.occ_combo.addItem("none", None)
        for name in PRESETS:
            self.occ_combo.addItem(name, name)
        self.occ_combo.addItem("custom rectangle", "custom")
        self.occ_combo.currentIndexChanged.connect(lambda _i: self.occlusion_changed.emit())
        f.addRow("Occluder", self.occ_combo)
        hint = QLabel("Drag on the video to paint a rectangle.")
        hint.setStyleSheet("color:#9aa4b0;")
        f.addRow(hint)
        self.cb_occlude_detector = QCheckBox("Face detector sees it too")
        self.cb_occlude_detector.setToolTip("Off: faces are found on the clean frame and only the landmark "
                                            "models see the occluder")
        self.cb_occlude_detector.toggled.connect(lambda _v: self.settings_changed.emit())
        f.addRow(self.cb_occlude_detector)
        clear = QPushButton("Clear occluder")
        clear.clicked.connect(self.clear_occluder)
        f.addRow(clear)
        pl.addWidget(g)

        pl.addStretch(1)

        # The right-hand column: playback and record buttons and the head-pose plot stay in
        # view above the scrolling settings, and the video keeps the whole left-hand height.
        self.side = QWidget()
        self.side.setFixedWidth(SIDE_PANEL_WIDTH)
        col = QVBoxLayout(self.side)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(4)
        g = QGroupBox("Playback and record")
        grid = QGridLayout(g)
        grid.setContentsMargins(6, 4, 6, 6)
        grid.setSpacing(4)
        self.play_row = QHBoxLayout()  # the window adds its pause / step / fullscreen buttons here
        self.play_row.setSpacing(4)
        grid.addLayout(self.play_row, 0, 0, 1, 2)
        self.snapshot_btn = QPushButton("Snapshot")
        self.snapshot_btn.setToolTip("Save the annotated frame (PNG) and its landmarks (JSON lines) into the "
                                     "snapshot folder, asked for the first time (S)")
        self.snapshot_btn.clicked.connect(self.snapshot_requested)
        self.record_btn = QPushButton("Record landmarks…")
        self.record_btn.setCheckable(True)
        self.record_btn.toggled.connect(self.record_toggled)
        grid.addWidget(self.snapshot_btn, 1, 0)
        grid.addWidget(self.record_btn, 1, 1)
        col.addWidget(g)
        self.pose_plot = HeadPosePlot()
        self.pose_plot.setVisible(False)
        col.addWidget(self.pose_plot)
        col.addWidget(side_panel(panel), 1)
        lay.addWidget(self.side)
        self._last: InferenceResult | None = None
        self.last_pose: HeadPose | None = None

    def add_play_button(self, action: QAction) -> QToolButton:
        """A button in the playback row that triggers (and shows the state of) ``action``."""
        b = QToolButton()
        b.setDefaultAction(action)
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.play_row.addWidget(b)
        return b

    def set_video_only(self, on: bool) -> None:
        """Fullscreen video: only the video, without the controls and the details line."""
        self.side.setVisible(not on)
        self.info.setVisible(not on)

    # ---- state read by the window -----------------------------------------------------
    def overlay_options(self) -> OverlayOptions:
        return OverlayOptions(
            keypoints=self.cb_points.isChecked(),
            indices=self.cb_indices.isChecked(),
            box=self.cb_box.isChecked(),
            skeleton=self.cb_skeleton.isChecked(),
            heatmap=self.cb_heatmap.isChecked(),
            heatmap_point=self.heatmap_point.value(),
            occluded_below=self.occ_threshold.value() / 100.0,
            head_pose=self.cb_pose.isChecked(),
        )

    def smoothing(self) -> tuple[bool, float]:
        return self.cb_smoothing.isChecked(), smoothing_min_cutoff(self.smooth_slider.value() / 100.0)

    def model_path(self) -> str | None:
        return self.model_combo.currentData()

    def occlusion_choice(self) -> str | None:
        return self.occ_combo.currentData()

    # ---- sources ----------------------------------------------------------------------
    def set_cameras(self, cameras: list[int]) -> None:
        """The cameras that work now, at the top of the picker; the selection is kept."""
        combo = self.source_combo
        current = combo.currentData()
        combo.blockSignals(True)
        for i in range(combo.count() - 1, -1, -1):
            if str(combo.itemData(i) or "").isdigit():
                combo.removeItem(i)
        for n, idx in enumerate(cameras):
            combo.insertItem(n, f"Camera {idx}", str(idx))
        i = combo.findData(current) if current is not None else -1
        if i >= 0:
            combo.setCurrentIndex(i)
        combo.blockSignals(False)

    def camera_list(self) -> list[int]:
        return [int(d) for d in (self.source_combo.itemData(i) for i in range(self.source_combo.count()))
                if str(d or "").isdigit()]

    def show_source(self, spec: str, description: str) -> None:
        cam = parse_camera_spec(spec)
        key = str(cam[0]) if cam is not None else spec  # one picker entry per camera, any mode
        i = self.source_combo.findData(key)
        if i < 0:
            label = f"Camera {cam[0]}" if cam is not None else description if spec == "demo" else Path(spec).name
            i = self.source_combo.count() - 3  # before the "…" pickers
            self.source_combo.insertItem(i, label, key)
            self.source_combo.setItemData(i, spec, Qt.ItemDataRole.ToolTipRole)
        self.source_combo.blockSignals(True)
        self.source_combo.setCurrentIndex(i)
        self.source_combo.blockSignals(False)
        self.source_status.setText(f"Playing: {description}")
        self.camera_index = cam[0] if cam is not None else None
        self.cb_mirror.setVisible(cam is not None)
        self._mode_text = description.partition("(")[2].rstrip(")") if cam is not None else ""
        self._fill_modes()

    # ---- camera modes -----------------------------------------------------------------
    def set_camera_modes(self, camera: int, modes: list[CameraMode]) -> None:
        """The modes ``camera`` accepts (probed by the capture thread)."""
        self.camera_modes[camera] = list(modes)
        if camera == self.camera_index:
            self._fill_modes()

    def _fill_modes(self) -> None:
        combo = self.mode_combo
        combo.blockSignals(True)
        combo.clear()
        idx = self.camera_index
        if idx is None:
            combo.addItem("— not a camera —", None)
        else:
            combo.addItem("camera default", None)
            for m in self.camera_modes.get(idx, []):
                combo.addItem(str(m), m)
                if str(m) == self._mode_text:
                    combo.setCurrentIndex(combo.count() - 1)
        combo.setEnabled(combo.count() > 1)
        combo.blockSignals(False)

    def _on_mode_activated(self, index: int) -> None:
        if self.camera_index is None:
            return
        mode = self.mode_combo.itemData(index)
        self.source_requested.emit(mode.spec(self.camera_index) if mode is not None else str(self.camera_index))

    def _on_source_activated(self, index: int) -> None:
        data = self.source_combo.itemData(index)
        spec = None
        if data == _PICK_VIDEO:
            spec, _ = QFileDialog.getOpenFileName(self, "Open video", "", VIDEO_FILTER)
        elif data == _PICK_FOLDER:
            spec = QFileDialog.getExistingDirectory(self, "Open image folder")
        elif data == _PICK_IMAGE:
            spec, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        elif data:
            spec = str(data)
        if spec:
            self.source_requested.emit(spec)

    # ---- occlusion --------------------------------------------------------------------
    def _on_rect(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.custom_rect = (x0, y0, x1, y1)
        i = self.occ_combo.findData("custom")
        if self.occ_combo.currentIndex() == i:
            self.occlusion_changed.emit()
        else:
            self.occ_combo.setCurrentIndex(i)

    def clear_occluder(self) -> None:
        self.custom_rect = None
        self.occ_combo.setCurrentIndex(0)

    # ---- drawing ----------------------------------------------------------------------
    def _on_overlay_toggled(self, _checked: bool) -> None:
        if self.sender() is self.cb_heatmap:
            self.settings_changed.emit()  # the pipeline must keep heatmaps
        if self.sender() is self.cb_pose:
            self.pose_plot.clear()
            self.pose_plot.setVisible(self.cb_pose.isChecked())
        self._rerender()

    def _rerender(self) -> None:
        if self._last is not None:
            self.show_result(self._last)

    def show_result(self, res: InferenceResult) -> None:
        self._last = res
        vr = res.primary
        img = render_variant(res.frame.frame_bgr, vr, self.overlay_options(), res.occluder_quad)
        caption, lines = "", []
        if vr is not None:
            name = vr.model_name or Path(str(vr.spec.model_path)).stem
            if vr.result is not None:
                t = vr.result.timings
                caption = f"{name} · {t.total:.1f} ms · {res.fps:.0f} fps"
                nf = len(vr.result.faces)
                conf = [f.mean_conf for f in vr.result.faces]
                lines = [f"{nf} face{'s' if nf != 1 else ''}" + (f" · conf {conf[0]:.2f}" if conf else "")]
            elif vr.error:
                caption = f"{name}: error"
                lines = wrap_lines(vr.error, 70, 3)  # never cut before its fix
        self.view.set_frame(img, caption, lines)
        if self.cb_pose.isChecked():
            self._add_pose(res)
        if vr is not None and vr.result is not None:
            det = vr.result.detector_name or vr.spec.detector
            pts = vr.schema.num_points if vr.schema else 0
            t = vr.result.timings
            self.info.setText(
                f"frame {res.frame.frame_index} · model {vr.model_name} ({pts} pts, decode "
                f"{vr.spec.decode_mode or 'default'}) · detector {det} · detect {t.detect:.1f} / prep "
                f"{t.preprocess:.1f} / infer {t.inference:.1f} / decode {t.decode:.1f} ms")
        elif vr is None:
            self.info.setText(f"frame {res.frame.frame_index} · no model running")

    def _add_pose(self, res: InferenceResult) -> None:
        """The first face's pose into the plot (a gap when there is none)."""
        vr = res.primary
        faces = vr.result.faces if vr is not None and vr.result is not None else ()
        frame = res.frame.frame_bgr
        mirrored = bool(getattr(res.frame, "mirrored", False))  # the angles mean the head's own motion
        pose = face_pose(faces[0].pts_img, (frame.shape[1], frame.shape[0]), mirrored) if faces else None
        self.pose_plot.add(res.processed_at or time.monotonic(), pose)
        self.last_pose = pose

    def heatmap_needed(self) -> bool:
        return self.cb_heatmap.isChecked()


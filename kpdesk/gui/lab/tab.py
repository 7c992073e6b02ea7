"""Robustness tab: pick a labelled folder and 1-4 models (the MediaPipe reference among them,
drawn dashed), sweep one perturbation over its
severities, watch NME vs. severity grow per model, look at the worst faces, save CSV + PNG."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kpdesk.gui.lab.mosaic import worst_mosaic
from kpdesk.gui.live_tab import fill_model_combo
from kpdesk.gui.panels import side_panel
from kpdesk.gui.plots import REFERENCE_COLOR, VARIANT_COLORS, legend_below
from kpdesk.gui.saving import save_widget_png
from kpdesk.gui.video_view import VideoView
from kpdesk.inference.catalog import CatalogEntry
from kpdesk.inference.reference import is_reference
from kpdesk.inference.robustness import FAILURE_NME, SweepCell, SweepConfig, SweepResult, write_csv
from kpdesk.vision.labels import ALL_PTS, list_files
from kpdesk.vision.perturb import DEFAULT_SEVERITIES, KINDS, PLACEMENTS, UNITS, parse_severities
from kpdesk.workers.robustness import MAX_VARIANTS, LabRequest, RobustnessWorker

log = logging.getLogger(__name__)

KIND_TITLES = {"occlusion": "Occlusion", "rotation": "Rotation", "blur": "Blur", "lowlight": "Low light"}
PREFERRED = ("student", "student-0.25x", "teacher")


def default_lab_folder() -> str:
    """The shared face68 pack if it is there ($KPDESK_DATA or ../shared/data beside the repository)."""
    env = os.environ.get("KPDESK_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return str(root / "face68") if (root / "face68").is_dir() else ""


class RobustnessTab(QWidget):
    """Signals: ``message(str text, str level)``; ``running_changed(bool)``; ``catalog_changed()``
    after the model pickers were refilled."""

    message = Signal(str, str)
    running_changed = Signal(bool)
    catalog_changed = Signal()

    def __init__(self, threads: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.worker: RobustnessWorker | None = None
        self.result: SweepResult | None = None
        self._catalog: list[CatalogEntry] = []
        self._lists_folder: str | None = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)

        right = QSplitter(Qt.Orientation.Vertical)
        self.plot = pg.PlotWidget()
        self.plot.setTitle("NME vs. severity", size="11pt")
        self.plot.setLabel("left", "NME (% of inter-ocular distance)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        legend_below(self.plot)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        # Faces above this line count as failures (FR@10).
        self.fail_line = pg.InfiniteLine(pos=FAILURE_NME, angle=0,
                                         pen=pg.mkPen((200, 90, 90), style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.fail_line, ignoreBounds=True)
        self.curves: dict[str, pg.PlotDataItem] = {}
        right.addWidget(self.plot)
        worst_box = QWidget()
        wl = QVBoxLayout(worst_box)
        wl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Worst faces of"))
        self.worst_variant = QComboBox()
        self.worst_variant.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.worst_variant.currentIndexChanged.connect(lambda _i: self._show_worst())
        row.addWidget(self.worst_variant)
        row.addWidget(QLabel("at"))
        self.worst_severity = QComboBox()
        self.worst_severity.currentIndexChanged.connect(lambda _i: self._show_worst())
        row.addWidget(self.worst_severity)
        self.worst_caption = QLabel("")
        self.worst_caption.setStyleSheet("color:#9aa4b0;")
        row.addWidget(self.worst_caption, 1)
        wl.addLayout(row)
        self.worst_view = VideoView(placeholder="The worst faces appear here (labels left, prediction right).")
        self.worst_view.selection_enabled = False
        self.worst_view.setCursor(Qt.CursorShape.ArrowCursor)
        self.worst_view.setMinimumSize(200, 150)
        wl.addWidget(self.worst_view, 1)
        right.addWidget(worst_box)
        right.setSizes([480, 340])
        lay.addWidget(right, 1)

        panel = QWidget()
        pl = QVBoxLayout(panel)
        pl.setContentsMargins(2, 2, 2, 2)
        g = QGroupBox("Labelled faces")
        f = QFormLayout(g)
        self.folder_edit = QLineEdit(default_lab_folder())
        self.folder_edit.setPlaceholderText("folder with a list file + .pts, or a 300W folder")
        self.folder_edit.editingFinished.connect(self._refresh_lists)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        frow = QHBoxLayout()
        frow.addWidget(self.folder_edit, 1)
        frow.addWidget(browse)
        f.addRow(frow)
        self.list_combo = QComboBox()
        self.list_combo.setToolTip("A list file of image paths (face68 / face5 packs), or every image with a .pts "
                                   "beside it (300W folders)")
        f.addRow("List", self.list_combo)
        self.base_combo = QComboBox()
        self.base_combo.addItem("auto (300W folder: 1-based)", None)
        self.base_combo.addItem("0-based", 0)
        self.base_combo.addItem("1-based (original 300W .pts)", 1)
        f.addRow("Coordinates", self.base_combo)
        self.max_faces = QSpinBox(minimum=0, maximum=100000, value=200, specialValueText="all")
        self.max_faces.setToolTip("Faces spread evenly over the list (0 = all)")
        f.addRow("Faces", self.max_faces)
        pl.addWidget(g)

        g = QGroupBox("Variants")
        f = QFormLayout(g)
        self.variant_combos = [QComboBox() for _ in range(MAX_VARIANTS)]
        for i, combo in enumerate(self.variant_combos):
            combo.setMinimumContentsLength(16)
            f.addRow(f"Model {i + 1}", combo)
        pl.addWidget(g)

        g = QGroupBox("Sweep")
        f = QFormLayout(g)
        self.kind_combo = QComboBox()
        for k in KINDS:
            self.kind_combo.addItem(KIND_TITLES[k], k)
        self.kind_combo.currentIndexChanged.connect(self._on_kind)
        f.addRow("Perturbation", self.kind_combo)
        self.placement_combo = QComboBox()
        for p in PLACEMENTS:
            self.placement_combo.addItem(p, p)
        f.addRow("Placement", self.placement_combo)
        self.severities_edit = QLineEdit()
        f.addRow("Severities", self.severities_edit)
        self.unit_label = QLabel("")
        self.unit_label.setStyleSheet("color:#9aa4b0;")
        f.addRow(self.unit_label)
        self.threads = QSpinBox(minimum=0, maximum=64, value=threads, specialValueText="auto")
        self.threads.setToolTip("onnxruntime threads per model for the sweep")
        f.addRow("ORT threads", self.threads)
        pl.addWidget(g)

        self.run_btn = QPushButton("Run sweep")
        self.run_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        brow = QHBoxLayout()
        brow.addWidget(self.run_btn)
        brow.addWidget(self.cancel_btn)
        pl.addLayout(brow)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        pl.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color:#9aa4b0;")
        pl.addWidget(self.status)
        g = QGroupBox("Save")
        f = QFormLayout(g)
        self.save_csv_btn = QPushButton("Table (CSV)…")
        self.save_csv_btn.clicked.connect(self._ask_csv)
        self.save_png_btn = QPushButton("Plot (PNG)…")
        self.save_png_btn.clicked.connect(self._ask_png)
        for b in (self.save_csv_btn, self.save_png_btn):
            b.setEnabled(False)
            f.addRow(b)
        pl.addWidget(g)
        pl.addStretch(1)
        lay.addWidget(side_panel(panel))
        self._on_kind()
        self._refresh_lists()

    # ---- inputs -----------------------------------------------------------------------
    def set_catalog(self, entries: list[CatalogEntry]) -> None:
        """Fill the model pickers; keep the choices, else preselect the preferred models."""
        first = not self._catalog
        self._catalog = list(entries)
        for i, combo in enumerate(self.variant_combos):
            fill_model_combo(combo, self._catalog, allow_none=i > 0)
        if first:
            self.set_variants([n for n in PREFERRED[:2] if any(e.name == n and e.ok for e in entries)]
                              or [e.name for e in entries if e.ok and not is_reference(e.onnx_path)][:1])
        self.catalog_changed.emit()

    @property
    def catalog(self) -> list[CatalogEntry]:
        return list(self._catalog)

    def set_variants(self, names: list[str]) -> None:
        """Select models by name in the pickers (the rest: none)."""
        by_name = {e.name: str(e.onnx_path) for e in self._catalog if e.ok}
        for i, combo in enumerate(self.variant_combos):
            want = by_name.get(names[i]) if i < len(names) else None
            idx = combo.findData(want) if want else (0 if i > 0 else combo.currentIndex())
            if idx >= 0:
                combo.setCurrentIndex(idx)

    def set_folder(self, folder: str) -> None:
        self.folder_edit.setText(folder)
        self._refresh_lists()

    def set_kind(self, kind: str) -> None:
        i = self.kind_combo.findData(kind)
        if i < 0:
            raise ValueError(f"unknown perturbation {kind!r}; known: {KINDS}")
        self.kind_combo.setCurrentIndex(i)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Labelled face folder", self.folder_edit.text())
        if d:
            self.set_folder(d)

    def _refresh_lists(self) -> None:
        """List files of the folder (val / test first), then the 300W choice; the choice is kept
        only while the folder stays the same."""
        folder = self.folder_edit.text().strip()
        keep = self.list_combo.currentData() if folder == self._lists_folder else None
        self._lists_folder = folder
        self.list_combo.clear()
        for name in list_files(folder):
            self.list_combo.addItem(name, name)
        self.list_combo.addItem("every image with a .pts (300W)", ALL_PTS)
        i = self.list_combo.findData(keep) if keep is not None else -1
        self.list_combo.setCurrentIndex(i if i >= 0 else 0)

    def _on_kind(self) -> None:
        kind = self.kind_combo.currentData()
        self.severities_edit.setText(", ".join(f"{v:g}" for v in DEFAULT_SEVERITIES[kind]))
        self.unit_label.setText(f"unit: {UNITS[kind]}")
        self.placement_combo.setEnabled(kind == "occlusion")

    def variants(self) -> list[tuple[str, Path]]:
        """(label, model path) of the chosen models; a model chosen twice counts once. The label
        is the catalog's name (``mediapipe`` for the reference's ``.task`` bundle)."""
        names = {str(e.onnx_path): e.name for e in self._catalog}
        out: list[tuple[str, Path]] = []
        for combo in self.variant_combos:
            path = combo.currentData()
            if path and all(str(p) != path for _, p in out):
                out.append((names.get(path, Path(path).stem), Path(path)))
        return out

    def request(self) -> LabRequest:
        """The sweep the controls describe. Raises ValueError naming what is wrong."""
        folder = self.folder_edit.text().strip()
        if not folder or not Path(folder).expanduser().is_dir():
            raise ValueError(f"labelled folder {folder!r} does not exist")
        variants = self.variants()
        if not variants:
            raise ValueError("pick at least one model")
        kind = self.kind_combo.currentData()
        config = SweepConfig(kind, parse_severities(self.severities_edit.text(), kind),
                             placement=self.placement_combo.currentData())
        return LabRequest(Path(folder).expanduser(), tuple(variants), config, list_name=self.list_combo.currentData(),
                          points_base=self.base_combo.currentData(), max_faces=self.max_faces.value(),
                          threads=self.threads.value())

    # ---- running ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self) -> bool:
        """Start a sweep with the current settings; False (and a message) if it cannot."""
        if self.worker is not None:
            self.message.emit("A robustness sweep is already running.", "warning")
            return False
        try:
            req = self.request()
        except ValueError as exc:
            self.message.emit(f"Robustness lab: {exc}", "error")
            return False
        self._reset_plot(req)
        self.result = SweepResult(req.config, str(req.folder))
        worker = RobustnessWorker(req, self)
        worker.status.connect(self.status.setText)
        worker.cell_done.connect(self._on_cell)
        worker.progress.connect(self._on_progress)
        worker.finished_sweep.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_thread_finished)
        self.worker = worker
        self._set_running(True)
        worker.start()
        return True

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling after the current batch…")

    def _set_running(self, on: bool) -> None:
        self.run_btn.setEnabled(not on)
        self.cancel_btn.setEnabled(on)
        has = self.result is not None and bool(self.result.cells)
        self.save_csv_btn.setEnabled(not on and has)
        self.save_png_btn.setEnabled(not on and has)
        self.running_changed.emit(on)

    def _reset_plot(self, req: LabRequest) -> None:
        for c in self.curves.values():
            self.plot.removeItem(c)
        self.curves.clear()
        legend = self.plot.getPlotItem().legend
        if legend is not None:
            legend.clear()
        kind = req.config.kind
        extra = f", {req.config.placement}" if kind == "occlusion" else ""
        self.plot.setTitle(f"NME vs. {KIND_TITLES[kind].lower()}{extra}", size="11pt")
        self.plot.setLabel("bottom", f"{KIND_TITLES[kind]} ({UNITS[kind]})")
        for i, (label, path) in enumerate(req.variants):
            color = VARIANT_COLORS[i % len(VARIANT_COLORS)]
            ref = is_reference(path)  # the reference: dashed, squares, its own colour
            if ref:
                color = REFERENCE_COLOR
            pen = pg.mkPen(color, width=2, style=Qt.PenStyle.DashLine if ref else Qt.PenStyle.SolidLine)
            self.curves[label] = self.plot.plot([], [], name=label, pen=pen, symbol="s" if ref else "o",
                                                symbolSize=7, symbolBrush=color, symbolPen=None)
        sev = req.config.severities
        self.plot.setXRange(min(sev), max(sev), padding=0.04)
        self.worst_variant.blockSignals(True)
        self.worst_variant.clear()
        for label, _ in req.variants:
            self.worst_variant.addItem(label, label)
        self.worst_variant.blockSignals(False)
        self.worst_severity.blockSignals(True)
        self.worst_severity.clear()
        self.worst_severity.blockSignals(False)
        self.worst_view.clear("The worst faces appear here (labels left, prediction right).")
        self.worst_caption.setText("")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)

    def _on_cell(self, cell: SweepCell) -> None:
        assert self.result is not None
        self.result.cells.append(cell)
        sev, mean = self.result.series(cell.variant)
        if cell.variant in self.curves:
            self.curves[cell.variant].setData(sev, mean)
        if self.worst_severity.findData(cell.severity) < 0:
            self.worst_severity.addItem(f"{cell.severity:g}", cell.severity)
        # Follow the sweep: show the newest severity unless the user picked another one.
        last = self.worst_severity.count() - 1
        if self.worst_severity.currentIndex() in (-1, last - 1):
            self.worst_severity.setCurrentIndex(last)
        else:
            self._show_worst()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_finished(self, result: SweepResult) -> None:
        assert self.result is not None
        self.result.faces = result.faces or self.result.faces
        self.result.cancelled = result.cancelled
        self.result.skipped = list(result.skipped)
        for label, why in result.skipped:  # marked in the legend and said once
            curve = self.curves.get(label)
            if curve is not None:
                curve.opts["name"] = f"{label}: not run"
            self.message.emit(f"Robustness lab: {label} not run: {why}", "warning")
        legend = self.plot.getPlotItem().legend
        if legend is not None and result.skipped:
            legend.clear()
            for curve in self.curves.values():
                legend.addItem(curve, curve.opts["name"])
        n = len(self.result.cells)
        if result.cancelled:
            self.status.setText(f"Cancelled after {n} of the sweep's cells.")
            self.message.emit("Robustness sweep cancelled.", "info")
        else:
            self.status.setText(f"Done: {n} cells on {self.result.faces} faces. Save the table or the plot below.")

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        self.message.emit(f"Robustness sweep failed: {message}", "error")

    def _on_thread_finished(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.deleteLater()
        self._set_running(False)

    def _show_worst(self) -> None:
        if self.result is None:
            return
        variant, sev = self.worst_variant.currentData(), self.worst_severity.currentData()
        cell = next((c for c in self.result.cells if c.variant == variant and c.severity == sev), None)
        if cell is None:
            return
        img = worst_mosaic(cell.worst)
        if img is not None:
            self.worst_view.set_frame(img)
        missed = f" ({cell.missed} not found by its own detector: failures, not in the mean)" if cell.missed else ""
        self.worst_caption.setText(f"mean NME {cell.mean:.2f}%, {cell.failure_rate:.0f}% of {cell.n} faces "
                                   f"above {FAILURE_NME:g}%{missed}")

    # ---- saving -----------------------------------------------------------------------
    def save_csv(self, path: str | Path) -> Path:
        if self.result is None or not self.result.cells:
            raise ValueError("no sweep results to save yet")
        return write_csv(self.result, path)

    def save_png(self, path: str | Path) -> Path:
        if self.result is None or not self.result.cells:
            raise ValueError("no sweep results to save yet")
        return save_widget_png(self.plot, path)

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save sweep table", str(Path.home() / "robustness.csv"),
                                              "CSV (*.csv)")
        if path:
            self._save(self.save_csv, path)

    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save sweep plot", str(Path.home() / "robustness.png"),
                                              "PNG images (*.png)")
        if path:
            self._save(self.save_png, path)

    def _save(self, fn, path: str) -> None:  # noqa: ANN001
        try:
            out = fn(path)
        except (OSError, ValueError) as exc:
            self.message.emit(f"Cannot save: {exc}", "error")
            return
        self.message.emit(f"Saved {out}", "info")

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel a running sweep and wait for its thread."""
        w = self.worker
        if w is not None:
            w.cancel()
            if not w.wait(timeout_ms):
                log.warning("robustness sweep did not stop within %d ms", timeout_ms)

"""Training tab: configure a job, run ``python -m training`` as a child process, watch it.

The tab writes the job's config into a new run folder and hands it to a ``TrainingJob``
(QProcess): the GUI and the command line run exactly the same code. When the job exports
a model it is installed into the models folder atomically (in the background) and the
window rescans its catalog.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kpdesk.gui.plots import VARIANT_COLORS
from kpdesk.workers.model_install import install_model_report
from kpdesk.workers.tasks import run_in_background
from kpdesk.workers.training_job import PROJECT_ROOT, JobEvent, JobSpec, RunWatcher, TrainingJob

log = logging.getLogger(__name__)

# label -> (command, base config stem for 68 points, base config stem for 5 points, architecture)
JOB_TYPES: dict[str, tuple[str, str, str, str]] = {
    "Train teacher (ResNet-50)": ("train", "face68_teacher", "face5_teacher", "resnet50"),
    "Train student (MobileNetV2)": ("train", "face68_student", "face5_student", "mobilenetv2"),
    "Distill student from teacher": ("distill", "face68_distill", "face5_distill", "mobilenetv2"),
    "Prune student (with distillation)": ("prune", "face68_prune", "face5_prune", "mobilenetv2"),
}
DATA_FORMATS = ("face68", "face5", "300w", "wflw", "celeba", "csv")
METRIC_KEYS = ("nme_ion", "nme_ipn", "nme_box", "nme", "mse")


def guess_data_format(folder: Path) -> str | None:
    """A best guess of the pack format of ``folder`` from the files it holds."""
    if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
        return "face5"
    if (folder / "train.txt").is_file():
        return "face68"
    if any(folder.glob("*.csv")):
        return "csv"
    return None


def fmt_eta(seconds: float | None) -> str:
    if seconds is None or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"


def base_config(job_label: str, data_format: str, configs_dir: Path | None = None) -> dict[str, Any]:
    """The job's starting config from ``training/configs`` ({} when there is none)."""
    _, base68, base5, _ = JOB_TYPES[job_label]
    configs_dir = configs_dir or PROJECT_ROOT / "training" / "configs"
    base_file = configs_dir / f"{base5 if data_format == 'face5' else base68}.json"
    if not base_file.is_file():
        return {}
    try:
        cfg = json.loads(base_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring base config %s: %s", base_file, exc)
        return {}
    return cfg if isinstance(cfg, dict) else {}


def build_job_config(job_label: str, data_dir: Path, data_format: str, *, epochs: int, lambda_rh: float,
                     lambda_dp: float, alpha: float, device: str, max_steps: int, teacher_ckpt: str,
                     student_ckpt: str, export_name: str,
                     configs_dir: Path | None = None) -> tuple[str, dict[str, Any]]:
    """(command, config dict) for one job; base values come from ``training/configs`` when present."""
    command, _, _, arch = JOB_TYPES[job_label]
    cfg = base_config(job_label, data_format, configs_dir)
    cfg.setdefault("model", {}).setdefault("arch", arch)
    if data_format == "face5":
        cfg["model"].setdefault("num_points", 5)
    data = cfg.setdefault("data", {})
    data["root"] = str(data_dir)
    data["format"] = data_format
    if data_format in ("face68", "face5") and "train_list" not in data:
        data["train_list"] = "train.txt"
        data["val_list"] = "test.txt" if data_format == "face5" else "val.txt"
    train = cfg.setdefault("train", {})
    train.update(epochs=int(epochs), lambda_rh=float(lambda_rh), device=device,
                 max_steps_per_epoch=int(max_steps))
    if export_name:
        train["export_name"] = export_name
    if command in ("distill", "prune"):
        cfg.setdefault("distill", {}).update(lambda_dp=float(lambda_dp))
        if teacher_ckpt:
            cfg["distill"]["teacher"] = teacher_ckpt
    if command == "prune":
        cfg.setdefault("prune", {}).update(alpha=float(alpha))
        if student_ckpt:
            cfg["prune"]["student"] = student_ckpt
    return command, cfg


def _path_row(edit: QLineEdit, pick: Any) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    b = QPushButton("…")
    b.setFixedWidth(32)
    b.clicked.connect(pick)
    lay.addWidget(b)
    return w


class TrainingTab(QWidget):
    """Signals: ``model_installed(str path)`` after an export was installed; ``message(str, str level)``;
    ``job_running_changed(bool)`` when a job started here starts or ends."""

    model_installed = Signal(str)
    message = Signal(str, str)
    job_running_changed = Signal(bool)

    def __init__(self, models_dir: Path, runs_dir: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg

        self.models_dir = Path(models_dir)
        self.runs_dir = Path(runs_dir) if runs_dir else PROJECT_ROOT / "runs"
        self.job: TrainingJob | None = None
        self.watcher: RunWatcher | None = None
        self._status_prefix = ""
        self.run_dir: Path | None = None
        self.python: str | None = None  # override the interpreter (tests)
        self._steps_x: list[float] = []
        self._loss_y: list[float] = []
        self._val_x: list[float] = []
        self._val_y: list[float] = []
        self._metric_key = ""
        self._pending_installs: list[Any] = []
        self.installed: list[str] = []
        self._was_running = False

        root = QHBoxLayout(self)
        left = QVBoxLayout()
        root.addLayout(left, 0)
        form_box = QGroupBox("Job")
        form = QFormLayout(form_box)
        self.data_edit = QLineEdit()
        default_data = PROJECT_ROOT.parent / "shared" / "data" / "face68"
        if default_data.is_dir():
            self.data_edit.setText(str(default_data))
        self.data_edit.editingFinished.connect(self._on_data_changed)
        form.addRow("Data folder", _path_row(self.data_edit, self._pick_data))
        self.format_combo = QComboBox()
        self.format_combo.addItems(DATA_FORMATS)
        self.format_combo.currentTextChanged.connect(lambda _t: self._load_defaults())
        form.addRow("Data format", self.format_combo)
        self.job_combo = QComboBox()
        self.job_combo.addItems(list(JOB_TYPES))
        self.job_combo.setCurrentIndex(1)
        self.job_combo.currentIndexChanged.connect(self._load_defaults)
        form.addRow("Job", self.job_combo)
        self.teacher_edit = QLineEdit()
        self.teacher_edit.setPlaceholderText("teacher checkpoint (.pt)")
        form.addRow("Teacher", _path_row(self.teacher_edit, lambda: self._pick_file(self.teacher_edit)))
        self.student_edit = QLineEdit()
        self.student_edit.setPlaceholderText("student checkpoint to prune (.pt)")
        form.addRow("Student", _path_row(self.student_edit, lambda: self._pick_file(self.student_edit)))
        self.epochs = QSpinBox(minimum=1, maximum=500, value=30)
        form.addRow("Epochs", self.epochs)
        self.lambda_rh = QDoubleSpinBox(minimum=0.0, maximum=100.0, value=1.0, singleStep=0.1, decimals=2)
        form.addRow("λ_rh (regression weight)", self.lambda_rh)
        self.lambda_dp = QDoubleSpinBox(minimum=0.0, maximum=100.0, value=1.0, singleStep=0.1, decimals=2)
        form.addRow("λ_dp (distillation weight)", self.lambda_dp)
        self.alpha = QDoubleSpinBox(minimum=0.0, maximum=0.95, value=0.75, singleStep=0.05, decimals=2)
        form.addRow("α (pruning ratio)", self.alpha)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device", self.device)
        self.max_steps = QSpinBox(minimum=0, maximum=100000, value=0, specialValueText="all")
        form.addRow("Steps per epoch", self.max_steps)
        self.export_name = QLineEdit()
        self.export_name.setPlaceholderText("name of the exported model (default from config)")
        form.addRow("Export as", self.export_name)
        self.replace_existing = QCheckBox("Replace a model of that name")
        self.replace_existing.setToolTip("Off: a taken name installs as NAME-2, NAME-3, ... On: the new model "
                                         "replaces it and the old one is kept in the models folder's .backup/")
        form.addRow("", self.replace_existing)
        self.overrides = QLineEdit()
        self.overrides.setPlaceholderText("extra overrides: section.key=value …")
        form.addRow("Overrides", self.overrides)
        left.addWidget(form_box)
        buttons = QHBoxLayout()
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.cancel_btn)
        left.addLayout(buttons)
        self.pause_live = QCheckBox("Pause live inference while a job runs", checked=True)
        self.pause_live.setToolTip("Gives the job the CPU; untick to keep the Live and Compare views running")
        left.addWidget(self.pause_live)
        self.watch_btn = QPushButton("Watch a run folder…")
        self.watch_btn.setToolTip("Follow the events of a job started from the command line (RUN_DIR/events.jsonl)")
        self.watch_btn.clicked.connect(self._pick_watch)
        left.addWidget(self.watch_btn)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        left.addWidget(self.progress)
        self.status = QLabel("No job running.")
        self.status.setWordWrap(True)
        left.addWidget(self.status)
        left.addStretch(1)

        right = QSplitter(Qt.Orientation.Vertical)
        plots = QWidget()
        pl = QHBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        self.loss_plot = pg.PlotWidget(title="Training loss")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.25)
        self.loss_plot.setLogMode(y=True)
        self.loss_curve = self.loss_plot.plot(pen={"color": VARIANT_COLORS[0], "width": 1.5})
        self.val_plot = pg.PlotWidget(title="Validation NME")
        self.val_plot.setLabel("bottom", "epoch")
        self.val_plot.showGrid(x=True, y=True, alpha=0.25)
        self.val_curve = self.val_plot.plot(pen={"color": VARIANT_COLORS[1], "width": 2}, symbol="o", symbolSize=6,
                                            symbolBrush=VARIANT_COLORS[1])
        pl.addWidget(self.loss_plot)
        pl.addWidget(self.val_plot)
        right.addWidget(plots)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(3000)
        self.log_view.setFont(QFont("monospace", 9))
        right.addWidget(self.log_view)
        right.setSizes([420, 260])
        root.addWidget(right, 1)
        self._on_data_changed()
        self._load_defaults()

    # ---- form -------------------------------------------------------------------------
    def _pick_data(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Data folder", self.data_edit.text())
        if d:
            self.data_edit.setText(d)
            self._on_data_changed()

    def _pick_file(self, edit: QLineEdit) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Checkpoint", str(self.runs_dir), "Checkpoints (*.pt);;All (*)")
        if f:
            edit.setText(f)

    def _on_data_changed(self) -> None:
        fmt = guess_data_format(Path(self.data_edit.text())) if self.data_edit.text() else None
        if fmt:
            self.format_combo.setCurrentText(fmt)

    def _load_defaults(self) -> None:
        """Show the job's base-config values (epochs, weights, checkpoints) in the form."""
        cfg = base_config(self.job_combo.currentText(), self.format_combo.currentText())
        train, distill, prune = cfg.get("train", {}), cfg.get("distill", {}), cfg.get("prune", {})
        for spin, value in ((self.epochs, train.get("epochs")), (self.lambda_rh, train.get("lambda_rh")),
                            (self.lambda_dp, distill.get("lambda_dp")), (self.alpha, prune.get("alpha"))):
            if isinstance(value, int | float):
                spin.setValue(value)
        self.teacher_edit.setPlaceholderText(f"default: {distill.get('teacher') or 'teacher checkpoint (.pt)'}")
        self.student_edit.setPlaceholderText(f"default: {prune.get('student') or 'student checkpoint (.pt)'}")
        self.export_name.setPlaceholderText(f"default: {train.get('export_name') or 'from the config'}")
        self._update_enabled()

    def _update_enabled(self) -> None:
        command = JOB_TYPES[self.job_combo.currentText()][0]
        running = self.job is not None and self.job.running
        self.teacher_edit.setEnabled(command in ("distill", "prune"))
        self.student_edit.setEnabled(command == "prune")
        self.lambda_dp.setEnabled(command in ("distill", "prune"))
        self.alpha.setEnabled(command == "prune")
        self.start_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)
        if running != self._was_running:
            self._was_running = running
            self.job_running_changed.emit(running)

    @property
    def job_running(self) -> bool:
        return self.job is not None and self.job.running

    # ---- watching a run started elsewhere ----------------------------------------------
    def _pick_watch(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Run folder (with events.jsonl)", str(self.runs_dir))
        if d:
            self.watch_run(Path(d))

    def watch_run(self, run_dir: Path) -> bool:
        """Show the curves and progress of ``run_dir``'s job, following it as it goes."""
        run_dir = Path(run_dir)
        if not (run_dir / "events.jsonl").is_file():
            self.message.emit(f"{run_dir} has no events.jsonl: not a training run folder.", "error")
            return False
        self.stop_watching()
        self._reset_curves()
        self.run_dir = run_dir
        self.log_view.appendPlainText(f"[gui] watching {run_dir / 'events.jsonl'}")
        self.status.setText(f"Watching {run_dir} (a job started elsewhere; cancel it where it runs)")
        self._status_prefix = f"watching {run_dir.name} · "
        w = RunWatcher(run_dir, parent=self)
        w.event.connect(self._on_watched_event)
        self.watcher = w
        w.start()
        return True

    def stop_watching(self) -> None:
        self._status_prefix = ""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.deleteLater()
            self.watcher = None

    def _on_watched_event(self, ev: JobEvent) -> None:
        self._on_event(ev)
        if ev.kind == "progress":
            self._on_progress(ev)
        elif ev.kind == "metric":
            self._on_metric(ev)
        elif ev.kind in ("done", "cancelled", "error"):
            self.progress.setFormat(ev.kind if ev.kind != "error" else "failed")
            if ev.kind == "done":
                self.progress.setValue(1000)

    # ---- job --------------------------------------------------------------------------
    def start(self) -> bool:
        """Write the config into a new run folder and start the job. False if it cannot start."""
        if self.job is not None and self.job.running:
            self.message.emit("A training job is already running.", "warning")
            return False
        data_dir = Path(self.data_edit.text()).expanduser()
        if not self.data_edit.text() or not data_dir.is_dir():
            self.message.emit(f"Training: data folder {str(data_dir)!r} does not exist.", "error")
            return False
        label = self.job_combo.currentText()
        command, cfg = build_job_config(
            label, data_dir, self.format_combo.currentText(), epochs=self.epochs.value(),
            lambda_rh=self.lambda_rh.value(), lambda_dp=self.lambda_dp.value(), alpha=self.alpha.value(),
            device=self.device.currentText(), max_steps=self.max_steps.value(),
            teacher_ckpt=self.teacher_edit.text().strip(), student_ckpt=self.student_edit.text().strip(),
            export_name=self.export_name.text().strip())
        if command == "distill" and not cfg.get("distill", {}).get("teacher"):
            self.message.emit("Distillation needs a teacher checkpoint.", "error")
            return False
        if command == "prune" and not cfg.get("prune", {}).get("student"):
            self.message.emit("Pruning needs a student checkpoint.", "error")
            return False
        try:
            overrides = shlex.split(self.overrides.text())
        except ValueError as exc:
            self.message.emit(f"Training overrides: {exc}", "error")
            return False
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = self.runs_dir / f"{stamp}-{command}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = self.runs_dir / f"{stamp}-{command}-{n}"
        try:
            run_dir.mkdir(parents=True)
            config_path = run_dir / "gui_config.json"
            config_path.write_text(json.dumps(cfg, indent=2) + "\n")
        except OSError as exc:
            self.message.emit(f"Cannot create run folder {run_dir}: {exc}", "error")
            return False
        extra: list[str] = []
        for ov in overrides:
            extra += ["--set", ov]
        spec = JobSpec(command=command, config_path=config_path, run_dir=run_dir, extra_args=tuple(extra),
                       **({"python": self.python} if self.python else {}))
        self.stop_watching()
        self._reset_curves()
        self.log_view.appendPlainText(f"$ python {' '.join(shlex.quote(a) for a in spec.argv())}")
        job = TrainingJob(spec, parent=self)
        job.progress.connect(self._on_progress)
        job.metric.connect(self._on_metric)
        job.checkpoint.connect(lambda p: self.log_view.appendPlainText(f"checkpoint: {p}"))
        job.exported.connect(self._on_exported)
        job.log_line.connect(self.log_view.appendPlainText)
        job.event.connect(self._on_event)
        job.failed.connect(lambda m: self.message.emit(m, "error"))
        job.finished.connect(self._on_finished)
        self.job = job
        self.run_dir = run_dir
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.status.setText(f"Running {label} in {run_dir}")
        job.start()
        self._update_enabled()
        return True

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.status.setText("Cancelling: the job saves a checkpoint and stops…")
            self.job.cancel()

    def _reset_curves(self) -> None:
        self._steps_x, self._loss_y, self._val_x, self._val_y = [], [], [], []
        self._metric_key = ""
        self.loss_curve.setData([], [])
        self.val_curve.setData([], [])
        self.val_plot.setTitle("Validation NME")

    def _on_event(self, ev: JobEvent) -> None:
        if ev.kind in ("log", "start"):
            msg = ev.get("message") or ", ".join(f"{k}={v}" for k, v in ev.data.items() if k != "time")
            self.log_view.appendPlainText(f"[{ev.kind}] {msg}")
        elif ev.kind in ("done", "cancelled", "error"):
            self.log_view.appendPlainText(f"[{ev.kind}] " + json.dumps(dict(ev.data))[:500])

    def _on_progress(self, ev: JobEvent) -> None:
        e, ee = int(ev.get("epoch", 1) or 1), int(ev.get("epochs", 1) or 1)
        s, ss = int(ev.get("step", 0) or 0), int(ev.get("steps", 1) or 1)
        frac = ((e - 1) + s / max(ss, 1)) / max(ee, 1)
        self.progress.setValue(int(1000 * min(max(frac, 0.0), 1.0)))
        loss = ev.get("loss")
        self.progress.setFormat(f"epoch {e}/{ee} · step {s}/{ss} · ETA {fmt_eta(ev.get('eta_s'))}")
        if isinstance(loss, int | float) and math.isfinite(loss) and loss > 0:
            self._steps_x.append((e - 1) + s / max(ss, 1))
            self._loss_y.append(float(loss))
            del self._steps_x[:-5000], self._loss_y[:-5000]
            self.loss_curve.setData(self._steps_x, self._loss_y)
            self.status.setText(f"{self._status_prefix}loss {loss:.5f}   lr {ev.get('lr', float('nan')):.2e}")

    def _on_metric(self, ev: JobEvent) -> None:
        key = self._metric_key or next((k for k in METRIC_KEYS if isinstance(ev.get(k), int | float)), "")
        if not key:
            return
        self._metric_key = key
        v = ev.get(key)
        if not isinstance(v, int | float):
            return
        # The job reports NME in percent already (METHOD.md section 5).
        unit = " (%)" if key.startswith("nme") else ""
        self._val_x.append(float(ev.get("epoch", len(self._val_x) + 1)))
        self._val_y.append(float(v))
        self.val_plot.setTitle(f"Validation {key}{unit} · decode {ev.get('decode', '?')}")
        self.val_curve.setData(self._val_x, self._val_y)
        self.log_view.appendPlainText(f"val epoch {ev.get('epoch')}: {key} = {v:.3f}{unit}")

    def _on_exported(self, onnx: str, manifest: str) -> None:
        self.log_view.appendPlainText(f"exported {onnx}; installing into {self.models_dir}…")
        # Never over an installed model silently: a taken name gets NAME-2 unless replacing
        # was asked for (the old one is then kept in .backup/).
        task = run_in_background(install_model_report, onnx, manifest or None, self.models_dir,
                                 self.replace_existing.isChecked(), parent=self,
                                 on_done=self._on_installed, on_failed=self._on_install_failed)
        self._pending_installs.append(task)

    def _on_installed(self, res: Any) -> None:
        path = res.path
        self.installed.append(str(path))
        self.log_view.appendPlainText(f"{res.describe()} ({path})")
        if res.renamed:
            self.message.emit(f"New model {res.name} is in the model picker: {res.describe()}.", "warning")
        else:
            self.message.emit(f"New model {res.name} is in the model picker"
                              + (f"; the one it replaced is in {res.backup.parent}" if res.backup else "") + ".",
                              "info")
        self.model_installed.emit(str(path))

    def _on_install_failed(self, message: str) -> None:
        self.log_view.appendPlainText(f"install failed: {message}")
        self.message.emit(f"Exported model not installed: {message}", "error")

    def _on_finished(self, outcome: str, exit_code: int) -> None:
        self.log_view.appendPlainText(f"[gui] job {outcome} (exit code {exit_code})")
        if outcome == "done":
            self.progress.setValue(1000)
            self.progress.setFormat("done")
            self.status.setText(f"Finished. Run folder: {self.run_dir}")
        elif outcome == "cancelled":
            self.progress.setFormat("cancelled")
            self.status.setText(f"Cancelled; resumable checkpoint in {self.run_dir}")
        else:
            self.progress.setFormat("failed")
            self.status.setText(f"Failed (exit code {exit_code}); see the log. Run folder: {self.run_dir}")
        self._update_enabled()

    def shutdown(self) -> None:
        """Application exit: cancel a running job and give it a moment to save."""
        job = self.job
        if job is not None and job.running:
            job.cancel()
            if not job.proc.waitForFinished(5000):
                job.proc.kill()
                job.proc.waitForFinished(2000)

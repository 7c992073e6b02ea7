"""The robustness lab's worker: reads a labelled folder, loads 1-4 models and runs a sweep
(``kpdesk.inference.robustness``) on its own thread, reporting each finished cell.

Everything slow (decoding images, loading models, inference) happens on this thread; the
GUI only receives immutable results through queued signals. ``cancel()`` is honoured
between batches of faces.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from kpdesk.inference.model import LandmarkModel, ModelLoadError
from kpdesk.inference.reference import ReferenceLandmarker, ReferenceUnavailable, is_reference
from kpdesk.inference.robustness import (
    SweepCancelled,
    SweepConfig,
    SweepError,
    SweepResult,
    fitting_variants,
    run_sweep,
)
from kpdesk.vision.labels import LabelError, load_labelled_folder
from kpdesk.vision.mesh68 import Mesh68Error

log = logging.getLogger(__name__)

MAX_VARIANTS = 4  # kpdesk's three shipped 68-point models and the MediaPipe reference on one plot


@dataclass(frozen=True)
class LabRequest:
    """One sweep to run.

    Attributes:
        folder: labelled folder; ``list_name`` a list file in it, None for the first one,
            ``kpdesk.vision.labels.ALL_PTS`` for every image with a ``.pts`` (300W).
        points_base: subtracted from ``.pts`` coordinates (None: 1 for 300W folders, else 0).
        max_faces: faces spread evenly over the list (0 = all).
        variants: (label, model .onnx path, or the MediaPipe reference's ``.task``), 1 to ``MAX_VARIANTS``.
        threads: onnxruntime intra-op threads per model (0 = onnxruntime's choice).
    """

    folder: Path
    variants: tuple[tuple[str, Path], ...]
    config: SweepConfig
    list_name: str | None = None
    points_base: int | None = None
    max_faces: int = 200
    threads: int = 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.variants) <= MAX_VARIANTS:
            raise ValueError(f"a sweep takes 1 to {MAX_VARIANTS} variants, got {len(self.variants)}")


class RobustnessWorker(QThread):
    """Signals:
        status(str): what it is doing (loading faces, models).
        cell_done(object): a finished ``SweepCell``.
        progress(int done, int total): faces evaluated over all cells.
        finished_sweep(object): the ``SweepResult`` (``cancelled`` set if it was stopped).
        failed(str): why it could not run (bad folder, model, image); nothing else follows.
    """

    status = Signal(str)
    cell_done = Signal(object)
    progress = Signal(int, int)
    finished_sweep = Signal(object)
    failed = Signal(str)

    def __init__(self, request: LabRequest, parent: object | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self._cancel = threading.Event()
        self._last_progress = 0.0

    def cancel(self) -> None:
        """Ask the sweep to stop after the current batch (any thread)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        req = self.request
        models: list = []
        try:
            self.status.emit(f"Reading labels in {req.folder}…")
            labelled = load_labelled_folder(req.folder, req.list_name, points_base=req.points_base,
                                            max_faces=req.max_faces)
            for label, path in req.variants:
                if self._cancel.is_set():
                    raise SweepCancelled()
                self.status.emit(f"Loading {label}…")
                if is_reference(path):  # MediaPipe: its own detector on each face, 68-point view
                    models.append((label, ReferenceLandmarker(path)))
                else:
                    models.append((label, LandmarkModel.load(path, threads=req.threads)))
            skipped = f", {len(labelled.skipped)} skipped" if labelled.skipped else ""
            _fit, not_run = fitting_variants(models, labelled.faces)
            not_run_text = "; not run: " + "; ".join(f"{la} ({why})" for la, why in not_run) if not_run else ""
            self.status.emit(f"{len(labelled.faces)} faces ({labelled.fmt}{skipped}); sweeping "
                             f"{req.config.kind} over {len(req.config.severities)} severities{not_run_text}…")
            partial = SweepResult(req.config, str(req.folder), len(labelled.faces), skipped=list(not_run))

            def on_cell(cell: object) -> None:
                partial.cells.append(cell)  # type: ignore[arg-type]
                self.cell_done.emit(cell)

            try:
                result = run_sweep(models, labelled.faces, req.config, on_cell=on_cell, on_progress=self._progress,
                                   cancel=self._cancel.is_set, folder=str(req.folder))
            except SweepCancelled:
                partial.cancelled = True
                result = partial
            self.finished_sweep.emit(result)
        except SweepCancelled:
            self.finished_sweep.emit(SweepResult(req.config, str(req.folder), 0, [], cancelled=True))
        except (LabelError, ModelLoadError, SweepError, ReferenceUnavailable, Mesh68Error, ValueError,
                OSError) as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker never raises out of its thread
            log.exception("robustness sweep crashed")
            self.failed.emit(f"sweep crashed: {exc!r}")
        finally:
            for _label, model in models:
                if hasattr(model, "close"):  # the reference's task holds native threads
                    model.close()

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last_progress > 0.1:  # at most ~10 signals a second
            self._last_progress = now
            self.progress.emit(done, total)

"""Inference thread: newest frame -> every running variant's pipeline -> one result.

The GUI never touches onnxruntime: it asks for changes (``set_variants``,
``set_config``, ``set_occluder``, ``set_recorder``) which this thread applies between
frames, so model sessions are created and used on this thread only. Results go back
through a one-slot mailbox: ``result_available`` is emitted only when the slot was
empty, so at most one notification is ever queued towards the GUI and a slow GUI
skips results instead of piling them up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal

from kpdesk.workers.mailbox import LatestMailbox
from kpdesk.workers.messages import FramePacket, InferenceResult, VariantResult, VariantSpec, frozen_array
from kpdesk.workers.occlusion import FaceAnchor, Occluder, paint_occluder
from kpdesk.workers.recorder import LandmarkRecorder, RecorderError
from kpdesk.workers.stats import RateMeter

log = logging.getLogger(__name__)

_MODEL_CACHE_SIZE = 6
_ERROR_REPEAT_S = 5.0


@dataclass(frozen=True)
class InferenceSettings:
    """Pipeline settings shared by all variants (decode mode is per variant).

    ``max_track_gap_s``: when this much source time passed since a variant's previous
    frame (it fell behind and frames were dropped, or stills are unrelated), its tracks
    are dropped and the face is detected afresh: tracking assumes small motion.
    ``occlude_detector``: whether the face detector sees the painted occluder too. Off by
    default: the occlusion demo is about the landmark models, and a detector that loses
    the face under sunglasses would leave them nothing to show.
    """

    max_faces: int = 1
    smoothing: bool = True
    min_cutoff: float = 1.0
    beta: float = 0.05
    keep_heatmaps: bool = False
    threads: int = 0
    max_track_gap_s: float = 0.25
    occlude_detector: bool = False
    extra: tuple[tuple[str, Any], ...] = ()


class CleanFrameDetector:
    """Wraps a face detector so it can be shown the frame *before* an occluder was painted
    (set ``clean``), while the landmark model gets the painted one. Everything else is
    passed through to the wrapped detector."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.clean: Any = None
        self.last_found = 0  # faces found by the latest detect() call

    @property
    def name(self) -> str:
        return str(getattr(self.inner, "name", "detector"))

    def detect(self, frame_bgr: Any) -> Any:
        found = self.inner.detect(self.clean if self.clean is not None else frame_bgr)
        self.last_found = len(found)
        return found

    def box_to_crop(self, det: Any, crop_scale: float) -> Any:
        return self.inner.box_to_crop(det, crop_scale)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)


def only_stale_tracks(result: Any, faces_found: int) -> bool:
    """True when the detector ran and found faces, yet every face in ``result`` is an old
    track that no detection confirmed. With ``max_faces`` tracks already open, the tracker
    keeps such tracks ahead of new detections, so a track that drifted onto something
    that is not a face (e.g. after an occluder) would block the real face for good."""
    if not result.extras.get("detected") or faces_found == 0 or not result.faces:
        return False
    return all(f.detector_score is None for f in result.faces)


class _Slot:
    """A running variant: its model and pipeline (owned by the inference thread)."""

    def __init__(self, spec: VariantSpec, model: Any = None, detector: Any = None, pipeline: Any = None,
                 error: str | None = None) -> None:
        self.spec = spec
        self.model = model
        self.detector = detector
        self.pipeline = pipeline
        self.error = error
        self.last_ts: float | None = None


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", "") or getattr(getattr(model, "manifest", None), "name", ""))


class InferenceWorker(QThread):
    """Runs 0..3 variants on the newest captured frame.

    Signals:
        result_available(): call ``take_result()`` to get the newest ``InferenceResult``.
        error(str): a model failed to load, a pipeline failed, a recording failed...
        variants_changed(list): labels and model names now in use, after a switch.
    """

    result_available = Signal()
    error = Signal(str)
    variants_changed = Signal(list)

    def __init__(self, mailbox: LatestMailbox[FramePacket], settings: InferenceSettings | None = None,
                 parent: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName("inference")
        self.mailbox = mailbox
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._want_variants: tuple[VariantSpec, ...] | None = None
        self._want_settings: InferenceSettings | None = settings or InferenceSettings()
        self._want_reset = False
        self._occluder: Occluder | None = None
        self._recorder_change: tuple[bool, LandmarkRecorder | None] = (False, None)
        self._out: InferenceResult | None = None
        self._display_dropped = 0
        # Owned by the worker thread only:
        self._slots: list[_Slot] = []
        self._settings = InferenceSettings()
        self._models: dict[str, tuple[float, Any]] = {}
        self._recorder: LandmarkRecorder | None = None
        self._anchor: FaceAnchor | None = None
        self._anchor_detector: Any = None
        self._last_source = -1
        self._rate = RateMeter(window_s=2.0)
        self._last_errors: dict[str, float] = {}
        self.frames_processed = 0

    # ---- called from the GUI thread (never block) -------------------------------------
    def set_variants(self, specs: list[VariantSpec] | tuple[VariantSpec, ...]) -> None:
        with self._lock:
            self._want_variants = tuple(specs)

    def set_settings(self, settings: InferenceSettings) -> None:
        with self._lock:
            self._want_settings = settings

    def set_occluder(self, occluder: Occluder | None) -> None:
        with self._lock:
            self._occluder = occluder

    def set_recorder(self, recorder: LandmarkRecorder | None) -> None:
        """Start (or with None, stop) recording; the old recorder is closed on this thread."""
        with self._lock:
            self._recorder_change = (True, recorder)

    def reset_tracking(self) -> None:
        with self._lock:
            self._want_reset = True

    def take_result(self) -> InferenceResult | None:
        with self._lock:
            out, self._out = self._out, None
            return out

    def stop(self) -> None:
        self._stop.set()

    # ---- worker thread ----------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self._apply_pending()
                packet = self.mailbox.get(timeout=0.1)
                if packet is None:
                    continue
                if self._stop.is_set():
                    break
                self._process(packet)
        except Exception as exc:  # noqa: BLE001 - never raise into Qt
            log.exception("inference thread crashed")
            self.error.emit(f"Inference thread stopped: {exc!r}")
        finally:
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None
            self._close_slots(self._slots)
            self._slots = []
            self._close_anchor_detector()

    def _report(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_errors.get(message, -1e9) >= _ERROR_REPEAT_S:
            self._last_errors[message] = now
            log.warning("%s", message)
            self.error.emit(message)

    def _apply_pending(self) -> None:
        with self._lock:
            specs, self._want_variants = self._want_variants, None
            settings, self._want_settings = self._want_settings, None
            reset, self._want_reset = self._want_reset, False
            rec_change, self._recorder_change = self._recorder_change, (False, None)
        if rec_change[0]:
            if self._recorder is not None:
                self._recorder.close()
            self._recorder = rec_change[1]
        if settings is not None and settings != self._settings:
            threads_changed = settings.threads != self._settings.threads
            self._settings = settings
            if threads_changed:
                self._models.clear()
                specs = specs if specs is not None else tuple(s.spec for s in self._slots)
                self._close_slots(self._slots)
                self._slots = []
            else:
                for slot in self._slots:
                    if slot.pipeline is not None:
                        slot.pipeline.set_config(self._config_for(slot.spec))
        if specs is not None:
            self._switch_variants(specs)
        if reset:
            self._reset_pipelines()

    def _reset_pipelines(self) -> None:
        self._anchor = None
        for slot in self._slots:
            if slot.pipeline is not None:
                slot.pipeline.reset()

    def _config_for(self, spec: VariantSpec) -> Any:
        from kpdesk.inference.pipeline import PipelineConfig

        s = self._settings
        wanted: dict[str, Any] = {
            "max_faces": s.max_faces,
            "smoothing": s.smoothing,
            "min_cutoff": s.min_cutoff,
            "beta": s.beta,
            "keep_heatmaps": s.keep_heatmaps,
            "decode_mode": spec.decode_mode,
            **dict(s.extra),
        }
        names = {f.name for f in dataclasses.fields(PipelineConfig)}
        return PipelineConfig(**{k: v for k, v in wanted.items() if k in names})

    def _load_model(self, path: Path, decode_mode: str | None) -> Any:
        """Load (or reuse) a model. Variants never share an instance: the decode mode is
        state on the model object, so the key includes it."""
        from kpdesk.inference.model import LandmarkModel

        key = f"{path}|{decode_mode}"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        hit = self._models.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        model = LandmarkModel.load(path, threads=self._settings.threads)
        self._models[key] = (mtime, model)
        while len(self._models) > _MODEL_CACHE_SIZE:
            self._models.pop(next(iter(self._models)))
        return model

    def _switch_variants(self, specs: tuple[VariantSpec, ...]) -> None:
        from kpdesk.inference.detectors import create_detector
        from kpdesk.inference.pipeline import Pipeline

        old = list(self._slots)
        used: set[int] = set()
        new: list[_Slot] = []
        for i, spec in enumerate(specs):
            # Same model + detector as a running slot: keep it (and its tracking state).
            match = next((j for j, s in enumerate(old) if j not in used and s.pipeline is not None
                          and s.spec.key == spec.key), None)
            if match is not None:
                used.add(match)
                slot = old[match]
                slot.spec = spec  # at most the label differs: the key covers everything else
                new.append(slot)
                continue
            try:
                model = self._load_model(Path(spec.model_path), spec.decode_mode)
            except Exception as exc:  # noqa: BLE001 - any load failure is reported, not raised
                msg = f"Model {Path(spec.model_path).name} failed to load: {exc}"
                self._report(msg)
                fallback = old[i] if i < len(old) and i not in used and old[i].pipeline is not None else None
                if fallback is not None:
                    used.add(i)
                    new.append(fallback)
                else:
                    new.append(_Slot(spec, error=msg))
                continue
            try:
                detector = CleanFrameDetector(create_detector(spec.detector))
                pipeline = Pipeline(model, detector, self._config_for(spec))
            except Exception as exc:  # noqa: BLE001
                msg = f"Cannot start variant {spec.label} ({spec.detector} detector): {exc}"
                self._report(msg)
                new.append(_Slot(spec, error=msg))
                continue
            new.append(_Slot(spec, model, detector, pipeline))
        self._close_slots([s for j, s in enumerate(old) if j not in used])
        self._slots = new
        self.variants_changed.emit([(s.spec.label, _model_name(s.model) if s.model else "") for s in new])

    @staticmethod
    def _close_slots(slots: list[_Slot]) -> None:
        for slot in slots:
            det = slot.detector
            if det is not None and hasattr(det, "close"):
                try:
                    det.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing detector")

    def _process(self, packet: FramePacket) -> None:
        if packet.source_id != self._last_source:
            self._last_source = packet.source_id
            self._reset_pipelines()
            self._rate.reset()
        with self._lock:
            occluder = self._occluder
        occ_quad = None
        clean = packet.frame_bgr
        if occluder is not None:
            anchor = self._update_anchor(packet.frame_bgr) if occluder.anchor == "face" else None
            painted, occ_quad = paint_occluder(packet.frame_bgr, occluder, anchor)
            if occ_quad is not None:
                packet = dataclasses.replace(packet, frame_bgr=frozen_array(painted))
        elif self._anchor_detector is not None:
            self._close_anchor_detector()
        results: list[VariantResult] = []
        hide_occluder = occ_quad is not None and not self._settings.occlude_detector
        for slot in self._slots:
            if isinstance(slot.detector, CleanFrameDetector):
                slot.detector.clean = clean if hide_occluder else None
            results.append(self._run_slot(slot, packet))
        self._rate.tick()
        self.frames_processed += 1
        if self._recorder is not None:
            try:
                for vr in results:
                    if vr.result is not None:
                        self._recorder.write(vr.spec.label, vr.result)
            except RecorderError as exc:
                self._recorder = None
                self._report(f"Recording stopped: {exc}")
        out = InferenceResult(
            frame=packet,
            variants=tuple(results),
            fps=self._rate.rate(),
            capture_dropped=self.mailbox.dropped,
            display_dropped=self._display_dropped,
            occluder_quad=occ_quad,
            processed_at=time.monotonic(),
        )
        with self._lock:
            notify = self._out is None
            if not notify:
                self._display_dropped += 1
            self._out = out
        if notify:
            self.result_available.emit()

    def _run_slot(self, slot: _Slot, packet: FramePacket) -> VariantResult:
        if slot.pipeline is None:
            return VariantResult(spec=slot.spec, result=None, error=slot.error)
        model = slot.model
        manifest = getattr(model, "manifest", None)
        schema = getattr(model, "schema", None) or getattr(manifest, "schema", None)
        input_size = int(getattr(model, "input_size", 0) or getattr(manifest, "input_size", 0) or 0)
        t0 = time.perf_counter()
        gap = None if slot.last_ts is None else packet.timestamp - slot.last_ts
        if gap is not None and (gap < 0 or gap > self._settings.max_track_gap_s):
            slot.pipeline.reset()
        slot.last_ts = packet.timestamp
        try:
            res = slot.pipeline.process(packet.frame_bgr, packet.frame_index, packet.timestamp)
            err = None
            det = slot.detector
            if isinstance(det, CleanFrameDetector) and only_stale_tracks(res, det.last_found):
                slot.pipeline.reset()  # start again from the detections next frame
        except Exception as exc:  # noqa: BLE001 - a failing frame must not kill the stream
            res, err = None, f"{slot.spec.label}: inference failed: {exc}"
            self._report(err)
        return VariantResult(
            spec=slot.spec,
            result=res,
            error=err,
            model_name=_model_name(model),
            schema=schema,
            input_size=input_size,
            ort_threads=self._settings.threads,
            wall_ms=(time.perf_counter() - t0) * 1000.0,
        )

    def _update_anchor(self, frame_bgr: Any) -> FaceAnchor | None:
        """Where a face-anchored occluder goes: a detector of its own runs on the *clean*
        frame, so the occluder follows the real face and never the models' (occluded)
        predictions, which would feed back into its own position."""
        try:
            if self._anchor_detector is None:
                from kpdesk.inference.detectors import create_detector

                self._anchor_detector = create_detector("auto")
            det = self._anchor_detector
            found = det.detect(frame_bgr)
        except Exception as exc:  # noqa: BLE001 - the occluder then stays where it was
            self._report(f"Occluder placement: face detection failed: {exc}")
            return self._anchor
        if found:
            crop = det.box_to_crop(found[0], 1.0)  # crop scale 1: the calibrated landmark box
            new = FaceAnchor(crop.center_x, crop.center_y, crop.side, crop.angle_deg)
            # Light smoothing only: at a few frames a second a heavier filter visibly lags.
            self._anchor = new if self._anchor is None else self._anchor.blend(new, 0.8)
        return self._anchor

    def _close_anchor_detector(self) -> None:
        det, self._anchor_detector = self._anchor_detector, None
        if det is not None:
            try:
                det.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the occluder's face detector")

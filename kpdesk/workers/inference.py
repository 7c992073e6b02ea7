"""Inference threads: the newest frame -> every running variant, each on its own thread.

The dispatcher (``InferenceWorker``, a QThread) takes the newest captured frame, paints the
occluder into it and hands it to each variant's lane through the lane's own one-slot
mailbox. Each lane (``VariantLane``, a thread) runs its variant's pipeline on the newest
frame it has, so a fast variant keeps the source's frame rate while a slow one (the
teacher) runs at its own and skips frames, instead of holding the others back. In Compare,
two variants' landmarks are compared only on frames both processed.

The GUI never touches onnxruntime: it asks for changes (``set_variants``,
``set_settings``, ``set_occluder``, ``set_recorder``, ``set_paused``) which the threads
apply between frames; a lane creates, uses and closes its models, detector and pipeline
on its own thread. Results go back through a one-slot mailbox holding the newest result
of every lane: ``result_available`` is emitted only when the slot was empty, so at most
one notification is ever queued towards the GUI and a slow GUI skips results instead of
piling them up.
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

from kpdesk.workers.agreement import FrameMatcher, PairAgreement
from kpdesk.workers.mailbox import LatestMailbox
from kpdesk.workers.memory import release_freed_memory
from kpdesk.workers.messages import FramePacket, InferenceResult, VariantResult, VariantSpec, frozen_array
from kpdesk.workers.occlusion import FaceAnchor, Occluder, paint_occluder
from kpdesk.workers.recorder import LandmarkRecorder, RecorderError
from kpdesk.workers.stats import RateMeter

log = logging.getLogger(__name__)

_MODEL_CACHE_SIZE = 3  # per lane
_ERROR_REPEAT_S = 5.0
_LANE_STOP_S = 10.0


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

    def box_to_crop(self, det: Any, crop_scale: float, calibration: Any = None,
                    offset: tuple[float, float] = (0.0, 0.0)) -> Any:
        return self.inner.box_to_crop(det, crop_scale, calibration, offset)

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


def config_for(settings: InferenceSettings, spec: VariantSpec) -> Any:
    """The ``PipelineConfig`` of one variant under the shared settings."""
    from kpdesk.inference.pipeline import PipelineConfig

    s = settings
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


@dataclass(frozen=True, eq=False)
class LaneInput:
    """A frame on its way to a lane: as the models see it, and as the detector may."""

    packet: FramePacket
    occluder_quad: tuple[tuple[float, float], ...] | None = None
    clean: Any = None  # the unpainted frame, for the detector (None: it sees ``packet``'s)


class _Slot:
    """A variant's model and pipeline (owned by its lane's thread)."""

    def __init__(self, spec: VariantSpec, model: Any = None, detector: Any = None, pipeline: Any = None,
                 error: str | None = None) -> None:
        self.spec = spec
        self.model = model
        self.detector = detector
        self.pipeline = pipeline
        self.error = error
        self.last_ts: float | None = None

    def close(self) -> None:
        for what, obj in (("detector", self.detector), ("pipeline", self.pipeline)):
            if obj is not None and hasattr(obj, "close"):  # the MediaPipe reference's pipeline owns a task
                try:
                    obj.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing %s", what)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", "") or getattr(getattr(model, "manifest", None), "name", ""))


class VariantLane:
    """One variant on a thread of its own: newest frame in, ``VariantResult`` out.

    The owner (the dispatcher) puts frames into ``mailbox``; requests (``set_spec``,
    ``set_settings``, ``reset_tracking``) are applied by the lane between frames. A new spec
    loads its model on the lane's thread; if that fails, the error is reported and the
    previous model keeps running.
    """

    def __init__(self, owner: InferenceWorker, spec: VariantSpec, settings: InferenceSettings) -> None:
        self.owner = owner
        self.mailbox: LatestMailbox[LaneInput] = LatestMailbox()
        self.spec = spec  # what was asked for last (the GUI's view)
        self.model_name = ""  # of the model in use, once loaded
        self._lock = threading.Lock()
        self._want_spec: VariantSpec | None = spec
        self._want_settings: InferenceSettings | None = None
        self._want_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"variant-{spec.label}", daemon=True)
        # Owned by the lane's thread:
        self._slot: _Slot | None = None
        self._settings = settings
        self._models: dict[str, tuple[float, Any]] = {}
        self._rate = RateMeter(window_s=2.0)
        self._last_source = -1
        self._last_mirrored = False
        self._seq = 0
        self.frames_processed = 0

    # ---- any thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def set_spec(self, spec: VariantSpec) -> None:
        with self._lock:
            self.spec = spec
            self._want_spec = spec

    def set_settings(self, settings: InferenceSettings) -> None:
        with self._lock:
            self._want_settings = settings

    def reset_tracking(self) -> None:
        with self._lock:
            self._want_reset = True

    def stop(self) -> None:
        self._stop.set()
        self.mailbox.close()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True if it did (or never started)."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    # ---- the lane's thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self.mailbox.get(timeout=0.1)
                self._apply_pending()  # after the wait: a change asked for meanwhile applies to this frame
                if item is None or self._stop.is_set():
                    continue
                self._process(item)
        except Exception as exc:  # noqa: BLE001 - never raise out of the thread
            log.exception("variant %s thread crashed", self.spec.label)
            self.owner.report(f"Variant {self.spec.label} stopped: {exc!r}")
        finally:
            if self._slot is not None:
                self._slot.close()
                self._slot = None
            self._models.clear()  # a retired lane may live on a while; its cached models need not

    def _apply_pending(self) -> None:
        with self._lock:
            spec, self._want_spec = self._want_spec, None
            settings, self._want_settings = self._want_settings, None
            reset, self._want_reset = self._want_reset, False
        slot = self._slot
        if settings is not None and settings != self._settings:
            threads_changed = settings.threads != self._settings.threads
            self._settings = settings
            if threads_changed and slot is not None:
                self._models.clear()
                spec = spec or slot.spec
                slot.close()
                self._slot = slot = None
            elif slot is not None and slot.pipeline is not None:
                slot.pipeline.set_config(config_for(settings, slot.spec))
        if spec is not None:
            self._switch(spec)
        if reset and self._slot is not None and self._slot.pipeline is not None:
            self._slot.pipeline.reset()

    def _load_model(self, path: Path, decode_mode: str | None) -> Any:
        """Load (or reuse) a model. The decode mode is state on the model object, so the
        cache key includes it."""
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

    def _switch(self, spec: VariantSpec) -> None:
        from kpdesk.inference.detectors import create_detector
        from kpdesk.inference.pipeline import Pipeline
        from kpdesk.inference.reference import is_reference

        old = self._slot
        if old is not None and old.pipeline is not None and old.spec.key == spec.key:
            old.spec = spec  # at most the label differs: keep the model and the tracks
            self.owner.lane_switched()
            return
        path = Path(spec.model_path)
        failed = self.owner.known_failure(path)
        if failed is not None:
            self._keep_old(old, spec, failed, quiet=True)  # not tried again until the file changes
            return
        if is_reference(path):
            self._switch_reference(old, spec, path)
            return
        try:
            model = self._load_model(path, spec.decode_mode)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, not raised
            msg = f"Model {path.name} failed to load: {exc}"
            self.owner.remember_failure(path, msg)
            self._keep_old(old, spec, msg)
            return
        try:
            detector = CleanFrameDetector(create_detector(spec.detector))
            pipeline = Pipeline(model, detector, config_for(self._settings, spec))
        except Exception as exc:  # noqa: BLE001
            msg = f"Cannot start variant {spec.label} ({spec.detector} detector): {exc}"
            self._keep_old(old, spec, msg)
            return
        if old is not None:
            old.close()
        self._slot = _Slot(spec, model, detector, pipeline)
        del old
        release_freed_memory()  # the old model's memory (unless cached) back to the OS
        self.model_name = _model_name(model)
        self._rate.reset()
        self.owner.lane_switched()

    def _switch_reference(self, old: _Slot | None, spec: VariantSpec, path: Path) -> None:
        """MediaPipe Face Landmarker in this lane: its own detector, mesh and tracking (VIDEO
        mode); the variant's detector and decode mode do not apply to it."""
        from kpdesk.inference.reference import ReferenceModel, ReferencePipeline

        try:
            model = ReferenceModel.load(path)
            pipeline = ReferencePipeline(model, config_for(self._settings, dataclasses.replace(spec, decode_mode=None)))
        except Exception as exc:  # noqa: BLE001 - reported, the previous model keeps running
            msg = f"MediaPipe reference unavailable: {exc}"
            self.owner.remember_failure(path, msg)
            self._keep_old(old, spec, msg)
            return
        if old is not None:
            old.close()
        self._slot = _Slot(spec, model, None, pipeline)
        del old
        release_freed_memory()
        self.model_name = model.name
        self._rate.reset()
        self.owner.lane_switched()

    def _keep_old(self, old: _Slot | None, spec: VariantSpec, msg: str, quiet: bool = False) -> None:
        """A switch to ``spec`` failed: the previous model keeps running, under the new label.
        The owner says which model runs instead (``model_failed``), so pickers can show it;
        ``quiet``: a failure already reported (the same file asked for again)."""
        if not quiet:
            self.owner.report(msg)
        if old is None or old.pipeline is None:
            if old is not None:
                old.close()
            self._slot = _Slot(spec, error=msg)
            running = ""
        else:
            old.spec = dataclasses.replace(old.spec, label=spec.label)
            running = str(old.spec.model_path)
        self.owner.model_failed.emit(spec.label, str(spec.model_path), running)
        self.owner.lane_switched()

    def _process(self, item: LaneInput) -> None:
        slot = self._slot
        if slot is None:
            return
        packet = item.packet
        if packet.source_id != self._last_source or packet.mirrored != self._last_mirrored:
            # A new source, or the view was mirrored / unmirrored: the face is elsewhere.
            self._last_source, self._last_mirrored = packet.source_id, packet.mirrored
            if slot.pipeline is not None:
                slot.pipeline.reset()
            slot.last_ts = None
            self._rate.reset()
        if isinstance(slot.detector, CleanFrameDetector):
            slot.detector.clean = item.clean
        vr = self._run_slot(slot, packet)
        self._rate.tick()
        self._seq += 1
        self.frames_processed += 1
        vr = dataclasses.replace(vr, frame=packet, occluder_quad=item.occluder_quad, fps=self._rate.rate(),
                                 seq=self._seq, dropped=self.mailbox.dropped)
        self.owner.lane_result(self, vr)

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
            self.owner.report(err)
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


class InferenceWorker(QThread):
    """Dispatches the newest captured frame to 0..3 variant lanes and gathers their results.

    Signals:
        result_available(): call ``take_result()`` to get the newest ``InferenceResult``.
        error(str): a model failed to load, a pipeline failed, a recording failed...
        recording_failed(str): the recording to this path stopped (a write failed; ``error``
            says why, the rows before are in the file).
        variants_changed(list): labels and model names now in use, after a switch.
        model_failed(str label, str path, str running): the model at ``path`` could not be
            loaded for variant ``label``; ``running`` is the model path that runs instead
            ("" for none). The same file is not tried again until it changes.
    """

    result_available = Signal()
    error = Signal(str)
    recording_failed = Signal(str)  # path of a recording stopped by a write failure (error says why)
    variants_changed = Signal(list)
    model_failed = Signal(str, str, str)

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
        self._paused = False
        self._recorder_change: tuple[bool, LandmarkRecorder | None] = (False, None)
        # Shared with the lanes (under _lock):
        self._lanes: list[VariantLane] = []
        self._latest: dict[VariantLane, VariantResult] = {}
        self._matcher = FrameMatcher()
        self._agreements: list[PairAgreement] = []
        self._out: InferenceResult | None = None
        self._display_dropped = 0
        self._recorder: LandmarkRecorder | None = None
        self._rec_lock = threading.Lock()
        self._last_errors: dict[str, float] = {}
        self._failed_loads: dict[str, tuple[float, str]] = {}  # model path -> (mtime, why); all lanes
        # Owned by the dispatcher thread:
        self._settings = InferenceSettings()
        self._retired: list[VariantLane] = []
        self._anchor: FaceAnchor | None = None
        self._anchor_detector: Any = None
        self._last_source = -1
        self._last_mirrored = False
        self._rate = RateMeter(window_s=2.0)
        self.frames_dispatched = 0
        self.frames_paused = 0

    # ---- called from the GUI thread (never block) -------------------------------------
    def known_failure(self, path: Path) -> str | None:
        """Why ``path`` failed to load, if it did and has not changed since (any thread)."""
        with self._lock:
            hit = self._failed_loads.get(str(path))
        return hit[1] if hit is not None and hit[0] == _mtime(path) else None

    def remember_failure(self, path: Path, message: str) -> None:
        with self._lock:
            self._failed_loads[str(path)] = (_mtime(path), message)

    def set_variants(self, specs: list[VariantSpec] | tuple[VariantSpec, ...]) -> None:
        with self._lock:
            self._want_variants = tuple(specs)

    def set_settings(self, settings: InferenceSettings) -> None:
        with self._lock:
            self._want_settings = settings

    def set_occluder(self, occluder: Occluder | None) -> None:
        with self._lock:
            self._occluder = occluder

    def set_paused(self, paused: bool) -> None:
        """Stop (or resume) running the models; captured frames are dropped meanwhile, so
        e.g. a training job gets the CPU."""
        with self._lock:
            self._paused = bool(paused)

    @property
    def paused(self) -> bool:
        return self._paused

    def set_recorder(self, recorder: LandmarkRecorder | None) -> None:
        """Start (or with None, stop) recording; the old recorder is closed on a worker thread."""
        with self._lock:
            self._recorder_change = (True, recorder)

    def reset_tracking(self) -> None:
        with self._lock:
            self._want_reset = True

    def take_result(self) -> InferenceResult | None:
        """The newest result, with every pair agreement matched since the previous call."""
        with self._lock:
            out, self._out = self._out, None
            agreements, self._agreements = self._agreements, []
        if out is not None and agreements:
            out = dataclasses.replace(out, agreements=tuple(agreements))
        return out

    def stop(self) -> None:
        self._stop.set()

    @property
    def lanes(self) -> list[VariantLane]:
        with self._lock:
            return list(self._lanes)

    # ---- called from the lanes ----------------------------------------------------------
    def report(self, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_errors.get(message, -1e9) < _ERROR_REPEAT_S:
                return
            self._last_errors[message] = now
        log.warning("%s", message)
        self.error.emit(message)

    def lane_switched(self) -> None:
        with self._lock:
            pairs = [(lane.spec.label, lane.model_name) for lane in self._lanes]
        self.variants_changed.emit(pairs)

    def lane_result(self, lane: VariantLane, vr: VariantResult) -> None:
        self._record(vr)
        now = time.monotonic()
        with self._lock:
            if lane not in self._lanes or vr.spec.label != lane.spec.label:
                return  # retired, or relabelled, while it worked
            self._latest[lane] = vr
            if len(self._lanes) > 1 and vr.frame is not None:
                faces = vr.result.faces if vr.result is not None else ()
                key = (vr.frame.source_id, vr.frame.frame_index)
                self._agreements.extend(self._matcher.add(vr.spec.label, key, faces[0].pts_img if faces else None,
                                                          vr.schema, now))
                del self._agreements[:-300]
            variants = tuple(self._latest[la] for la in self._lanes if la in self._latest)
            primary = self._latest.get(self._lanes[0])
            dropped = self.mailbox.dropped + (primary.dropped if primary is not None else 0)
            out = InferenceResult(frame=vr.frame, variants=variants, fps=primary.fps if primary is not None else 0.0,
                                  capture_dropped=dropped, display_dropped=self._display_dropped,
                                  occluder_quad=vr.occluder_quad, processed_at=now)
            notify = self._publish(out)
        if notify:
            self.result_available.emit()

    def _publish(self, out: InferenceResult) -> bool:
        """Put ``out`` in the result slot (caller holds the lock); True if the GUI must be told."""
        notify = self._out is None
        if not notify:
            self._display_dropped += 1
        self._out = out
        return notify

    def _record(self, vr: VariantResult) -> None:
        if vr.result is None:
            return
        with self._rec_lock:
            rec = self._recorder
            if rec is None:
                return
            try:
                rec.write(vr.spec.label, vr.result, getattr(vr.frame, "source_file", None),
                          mirrored=bool(getattr(vr.frame, "mirrored", False)))
            except RecorderError as exc:
                self._recorder = None
                self.report(f"Recording stopped: {exc}")
                self.recording_failed.emit(str(rec.path))

    @staticmethod
    def _close_recorder(rec: LandmarkRecorder | None) -> None:
        if rec is not None:
            rec.close()

    # ---- the dispatcher thread ----------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                packet = self.mailbox.get(timeout=0.1)
                self._apply_pending()  # after the wait: a change asked for meanwhile applies to this frame
                if packet is None:
                    continue
                if self._stop.is_set():
                    break
                self._dispatch(packet)
        except Exception as exc:  # noqa: BLE001 - never raise into Qt
            log.exception("inference thread crashed")
            self.error.emit(f"Inference thread stopped: {exc!r}")
        finally:
            with self._lock:
                lanes, self._lanes = self._lanes, []
                self._latest.clear()
            for lane in lanes + self._retired:
                lane.stop()
            for lane in lanes + self._retired:
                if not lane.join(_LANE_STOP_S):
                    log.warning("variant thread %s did not stop in time; leaving it", lane.spec.label)
            self._retired = []
            with self._rec_lock:
                rec, self._recorder = self._recorder, None
                self._close_recorder(rec)
            self._close_anchor_detector()

    def _apply_pending(self) -> None:
        with self._lock:
            specs, self._want_variants = self._want_variants, None
            settings, self._want_settings = self._want_settings, None
            reset, self._want_reset = self._want_reset, False
            rec_change, self._recorder_change = self._recorder_change, (False, None)
        if rec_change[0]:
            with self._rec_lock:
                self._close_recorder(self._recorder)
                self._recorder = rec_change[1]
        if settings is not None and settings != self._settings:
            self._settings = settings
            for lane in self.lanes:
                lane.set_settings(settings)
        if specs is not None:
            self._switch_variants(specs)
        if reset:
            self._anchor = None
            for lane in self.lanes:
                lane.reset_tracking()
        still = [lane for lane in self._retired if not lane.finished]
        if len(still) != len(self._retired):
            self._retired = still
            release_freed_memory()  # the ended lanes' models and detectors

    def _switch_variants(self, specs: tuple[VariantSpec, ...]) -> None:
        """Give each spec a lane: the one already running its model, detector and decode
        mode (it keeps its tracks; at most the label changes), else a free lane (it loads
        the new model while it keeps running the old one), else a new lane."""
        old = self.lanes
        chosen: list[VariantLane | None] = [None] * len(specs)
        free = list(old)
        for i, spec in enumerate(specs):
            match = next((lane for lane in free if lane.spec.key == spec.key), None)
            if match is not None:
                chosen[i] = match
                free.remove(match)
        for i, spec in enumerate(specs):
            if chosen[i] is None and free:
                same_label = next((lane for lane in free if lane.spec.label == spec.label), free[0])
                chosen[i] = same_label
                free.remove(same_label)
        new: list[VariantLane] = []
        for i, spec in enumerate(specs):
            lane = chosen[i]
            if lane is None:
                lane = VariantLane(self, spec, self._settings)
                lane.start()
            else:
                lane.set_spec(spec)
            new.append(lane)
        with self._lock:
            self._lanes = new
            self._latest = {lane: vr for lane, vr in self._latest.items()
                            if lane in new and vr.spec.label == lane.spec.label}
            self._matcher.set_labels([s.label for s in specs])
        for lane in free:
            lane.stop()
            self._retired.append(lane)
        self.lane_switched()

    def _dispatch(self, packet: FramePacket) -> None:
        with self._lock:
            occluder, paused = self._occluder, self._paused
            lanes = list(self._lanes)
        if paused:
            self.frames_paused += 1
            return
        if packet.source_id != self._last_source or packet.mirrored != self._last_mirrored:
            if packet.source_id != self._last_source:
                self._rate.reset()
            self._last_source, self._last_mirrored = packet.source_id, packet.mirrored
            self._anchor = None
        occ_quad = None
        clean = packet.frame_bgr
        if occluder is not None:
            anchor = self._update_anchor(packet.frame_bgr) if occluder.anchor == "face" else None
            painted, occ_quad = paint_occluder(packet.frame_bgr, occluder, anchor)
            if occ_quad is not None:
                packet = dataclasses.replace(packet, frame_bgr=frozen_array(painted))
        elif self._anchor_detector is not None:
            self._close_anchor_detector()
        self._rate.tick()
        self.frames_dispatched += 1
        if not lanes:  # no model: the video alone
            out = InferenceResult(frame=packet, variants=(), fps=self._rate.rate(),
                                  capture_dropped=self.mailbox.dropped, display_dropped=self._display_dropped,
                                  occluder_quad=occ_quad, processed_at=time.monotonic())
            with self._lock:
                notify = self._publish(out)
            if notify:
                self.result_available.emit()
            return
        hide_occluder = occ_quad is not None and not self._settings.occlude_detector
        item = LaneInput(packet, occ_quad, clean if hide_occluder else None)
        for lane in lanes:
            lane.mailbox.put(item)

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
            self.report(f"Occluder placement: face detection failed: {exc}")
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

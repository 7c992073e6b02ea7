"""One frame in, one ``FrameResult`` out: detect-or-track -> crop -> model -> decode ->
inverse transform -> smoothing, with per-stage timings.

Thread-safety: a ``Pipeline`` (with its model, detector and tracker state) belongs to
one thread; build it, switch models and run frames all from that thread.

Occlusion: the pipeline does not paint occlusions. A caller that wants them (the GUI's
occlusion tool) paints the frame first and passes the painted frame to ``process``, so
the frame it shows is exactly the one the model saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kpdesk.inference.detectors import FaceDetector
from kpdesk.inference.model import LandmarkModel, ModelOutput
from kpdesk.inference.tracking import FaceTracker, points_box
from kpdesk.vision.preprocess import InputPacker
from kpdesk.vision.results import FaceResult, FrameResult, StageTimings
from kpdesk.vision.transforms import apply_affine, invert_affine


@dataclass(frozen=True)
class PipelineConfig:
    """Per-frame behaviour.

    Attributes:
        max_faces: faces processed per frame (one batched model call).
        redetect_every: run the detector at least every N frames even while tracking.
        min_track_conf: a tracked face whose mean point confidence falls below this is
            dropped from the result and triggers detection on the next frame.
        smoothing, min_cutoff, beta, d_cutoff: One-Euro filter on the output points.
        keep_heatmaps: put each face's (K, H, H) heatmaps into its FaceResult.
        decode_mode: override the manifest's decode mode (None = manifest default).
        refine_fresh: a face (re)started from a detector box is run a second time, on the
            crop its first points imply (costs one more model call on those frames only).
        iou_match: IoU of crop boxes needed to match a detection with a track.
        max_jump: a tracked crop that grows or shrinks by more than this factor in one
            frame means the face was lost (re-detect).
        fps_hint: frame rate assumed when ``process`` gets no timestamp.
    """

    max_faces: int = 4
    redetect_every: int = 30
    min_track_conf: float = 0.3
    smoothing: bool = True
    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    keep_heatmaps: bool = False
    decode_mode: str | None = None
    iou_match: float = 0.3
    max_jump: float = 1.5
    fps_hint: float = 30.0
    refine_fresh: bool = True

    def __post_init__(self) -> None:
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.redetect_every < 1:
            raise ValueError(f"redetect_every must be >= 1, got {self.redetect_every}")


class Pipeline:
    """Runs a landmark model on the faces of successive frames. One thread only.

    The pipeline does not own the model or the detector: ``set_detector`` does not close
    the previous detector.
    """

    def __init__(self, model: LandmarkModel, detector: FaceDetector, config: PipelineConfig | None = None) -> None:
        self._model = model
        self._detector = detector
        self._config = config or PipelineConfig()
        self._tracker = self._make_tracker()
        self._packer = self._make_packer()
        self._apply_decode_mode()

    # -- configuration ----------------------------------------------------------------
    @property
    def model(self) -> LandmarkModel:
        return self._model

    @property
    def detector(self) -> FaceDetector:
        return self._detector

    @property
    def config(self) -> PipelineConfig:
        return self._config

    def _make_tracker(self) -> FaceTracker:
        c, schema = self._config, self._model.schema
        return FaceTracker(
            crop_scale=self._model.manifest.crop_scale,
            crop_offset=self._model.manifest.crop_offset,
            eye_groups=schema.pupils,
            max_faces=c.max_faces,
            redetect_every=c.redetect_every,
            min_track_conf=c.min_track_conf,
            iou_match=c.iou_match,
            max_jump=c.max_jump,
            smoothing=c.smoothing,
            min_cutoff=c.min_cutoff,
            beta=c.beta,
            d_cutoff=c.d_cutoff,
        )

    def _make_packer(self) -> InputPacker:
        m = self._model.manifest
        return InputPacker(self._model.input_size, m.mean, m.std)

    def _apply_decode_mode(self) -> None:
        self._model.decode_mode = self._config.decode_mode  # None -> the manifest's default

    def set_model(self, model: LandmarkModel) -> None:
        """Switch models; tracks restart (crop scale and point count may differ)."""
        self._model = model
        self._apply_decode_mode()
        self._tracker = self._make_tracker()
        self._packer = self._make_packer()

    def set_detector(self, detector: FaceDetector) -> None:
        """Switch detectors; the next frame runs the new one."""
        self._detector = detector
        self._tracker.force_detection()

    def set_config(self, config: PipelineConfig) -> None:
        """Change the configuration; tracks restart."""
        self._config = config
        self._apply_decode_mode()
        self._tracker = self._make_tracker()

    def reset(self) -> None:
        """Forget all tracks (e.g. after a seek or a source change)."""
        self._tracker.reset()

    # -- running ----------------------------------------------------------------------
    def _refine(self, frame_bgr: np.ndarray, work: list, fresh: list[int], out: ModelOutput,
                mats: list[np.ndarray]) -> tuple[ModelOutput, list[np.ndarray]]:
        """Second model pass for the faces started from a detector crop (``fresh`` indexes
        into ``work``), on the crops their first points imply; returns the merged output."""
        model, size = self._model, self._model.input_size
        crops = []
        for i in fresh:
            pts = apply_affine(out.pts_crop[i], invert_affine(mats[i]))
            crops.append(self._tracker.refine_crop(work[i].track, pts))
        new_mats = [c.matrix(size) for c in crops]
        coords, heatmaps = model.forward(self._packer.pack(frame_bgr, new_mats))
        again = model.decode(coords, heatmaps)
        pts, conf = out.pts_crop.copy(), out.conf.copy()
        hm = None if out.heatmaps is None else out.heatmaps.copy()
        mats = list(mats)
        for j, i in enumerate(fresh):
            pts[i], conf[i], mats[i] = again.pts_crop[j], again.conf[j], new_mats[j]
            if hm is not None and again.heatmaps is not None:
                hm[i] = again.heatmaps[j]
        return ModelOutput(pts_crop=pts, conf=conf, heatmaps=hm, coords=None), mats

    def process(self, frame_bgr: np.ndarray, frame_index: int = 0, timestamp: float | None = None) -> FrameResult:
        """Find the landmarks of up to ``max_faces`` faces in one BGR frame (H, W, 3) uint8."""
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected a (H, W, 3) BGR frame, got {getattr(frame_bgr, 'shape', None)}")
        model, cfg, tracker = self._model, self._config, self._tracker
        t_sec = timestamp if timestamp is not None else frame_index / cfg.fps_hint
        size = model.input_size
        crop_scale, crop_offset = model.manifest.crop_scale, model.manifest.crop_offset

        t0 = time.perf_counter()
        detected = tracker.needs_detection(frame_index)
        dets = None
        # The model's own detector mapping: detector box -> crop, and back (a tracked face's box).
        cal = model.box_calibration(self._detector.name) or model.box_calibration("blazeface")
        if detected:
            found = self._detector.detect(frame_bgr)[: 2 * cfg.max_faces]
            dets = [(d, self._detector.box_to_crop(d, crop_scale, cal, crop_offset)) for d in found]
        work = tracker.plan(frame_index, dets)
        t1 = time.perf_counter()

        faces: list[FaceResult] = []
        ids: list[int] = []
        t2 = t3 = t1
        if work:
            mats = [w.crop.matrix(size) for w in work]
            # Warp + normalise into reused buffers; equal to model.preprocess(warp_crop(...)).
            x = self._packer.pack(frame_bgr, mats)
            t2 = time.perf_counter()
            coords, heatmaps = model.forward(x)
            out = model.decode(coords, heatmaps)
            fresh = [i for i, w in enumerate(work) if not w.tracked] if cfg.refine_fresh else []
            if fresh:
                out, mats = self._refine(frame_bgr, work, fresh, out, mats)
            if len(work) > cfg.max_faces:  # candidates beyond max_faces: the most confident win
                keep = tracker.select(work, out.conf.mean(axis=1))
                work, mats = [work[i] for i in keep], [mats[i] for i in keep]
                out = ModelOutput(pts_crop=out.pts_crop[keep], conf=out.conf[keep], coords=None,
                                  heatmaps=None if out.heatmaps is None else out.heatmaps[keep])
            t3 = time.perf_counter()
            for i, w in enumerate(work):
                pts_img = apply_affine(out.pts_crop[i], invert_affine(mats[i]))
                conf = out.conf[i]
                pts_out = tracker.update(w.track, pts_img, conf, t_sec)
                if w.tracked and w.track.lost and w.detection is None:
                    continue  # lost between detections: not shown; detection runs next frame
                det = w.detection
                if det is not None:
                    box = det.box_xyxy
                else:  # the face's box for every layout, not the small box round 5 points
                    box = cal.face_box(points_box(pts_out)) if cal is not None else points_box(pts_out)
                faces.append(FaceResult(
                    box_xyxy=box,
                    pts_img=pts_out,
                    conf=conf,
                    crop_matrix=mats[i],
                    heatmap=out.heatmaps[i] if cfg.keep_heatmaps and out.heatmaps is not None else None,
                    tracked=w.tracked,
                    detector_score=det.score if det is not None else None,
                ))
                ids.append(w.track.track_id)
            dropped = {t.track_id for t in tracker.drop_duplicates()}
            if dropped:
                keep = [i for i, tid in enumerate(ids) if tid not in dropped]
                faces, ids = [faces[i] for i in keep], [ids[i] for i in keep]
        t4 = time.perf_counter()
        ms = 1000.0
        timings = StageTimings(detect=(t1 - t0) * ms, preprocess=(t2 - t1) * ms, inference=(t3 - t2) * ms,
                               decode=(t4 - t3) * ms, total=(t4 - t0) * ms)
        return FrameResult(
            frame_index=frame_index,
            model_name=model.name,
            faces=tuple(faces),
            timings=timings,
            detector_name=self._detector.name,
            timestamp=t_sec,
            extras={"track_ids": tuple(ids), "detected": detected},
            frame_size=(int(frame_bgr.shape[1]), int(frame_bgr.shape[0])),
        )

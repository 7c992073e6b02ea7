"""Frame-to-frame face tracking from landmarks, and One-Euro smoothing of the points.

Between detections a face's next crop comes from its previous landmarks (levelled by
the eye roll), which is both cheaper and more accurate than a detector box. The
detector runs again every ``redetect_every`` frames, or as soon as a face's mean
confidence drops below ``min_track_conf``; detections are matched to tracks by IoU.

A track can also drift slowly off the face (e.g. under an occluder the points shrink
onto the forehead, and each step is small). So a track becomes *doubtful* when its
confidence falls well below its own peak, or its crop grew / shrank a lot since the
detector last agreed with it; a doubtful track asks for the detector on the next frame
and, when the detector finds the face, restarts from the detector's crop. A detection
that matches a confident track but sits off its centre restarts it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kpdesk.inference.detectors import Detection
from kpdesk.vision.transforms import CropSpec, crop_params_from_points, eye_angle_deg


class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) over K 2-D points at once.

    The cutoff of each point's low-pass rises with its speed: strong smoothing when
    still (jitter), little lag when moving. ``beta`` is in 1 / (pixels per second).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0:
            raise ValueError("cutoff frequencies must be positive")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter points x (K, 2) observed at time t (seconds) -> (K, 2)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape or t <= self._t:
            # First sample, a new shape, or time going backwards (seek): restart.
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(dt, self.d_cutoff) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)  # per point, shared by x and y
        a = self._alpha(dt, self.min_cutoff + self.beta * speed)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


def aligned_crop(pts_img: np.ndarray, scale: float, angle_deg: float = 0.0,
                 offset: tuple[float, float] = (0.0, 0.0)) -> CropSpec:
    """``crop_params_from_points`` measured in the face's own frame (turned by the roll),
    so a rolled face gets the same crop size as when upright; ``offset`` moves the centre
    in that frame (an imported model's crop offset). pts (K, 2) -> CropSpec."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    p = np.asarray(pts_img, dtype=np.float64)
    uv = np.stack([p[:, 0] * c + p[:, 1] * s, -p[:, 0] * s + p[:, 1] * c], axis=-1)
    spec = crop_params_from_points(uv, scale, offset=offset)
    u, v = spec.center_x, spec.center_y
    return CropSpec(u * c - v * s, u * s + v * c, spec.side, angle_deg)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def points_box(pts: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = np.min(pts, axis=0), np.max(pts, axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


@dataclass(eq=False)
class Track:
    """One face followed across frames (mutable; owned by a FaceTracker)."""

    track_id: int
    crop: CropSpec  # the crop to use on the next frame
    smoother: OneEuroFilter | None = None
    mean_conf: float = 1.0
    lost: bool = False
    doubtful: bool = False  # detector check wanted on the next frame (still shown)
    doubt_frames: int = 0  # consecutive frames doubtful without the detector's help
    peak_conf: float = 0.0  # highest mean confidence since the track (re)started
    low_conf: float = 0.0  # the 10th percentile of this frame's point confidences
    peak_low_conf: float = 0.0  # its highest value since the track (re)started
    ref_side: float | None = None  # crop side when the model was last fully confident on the face
    ref_det_ratio: float | None = None  # own crop side / detector crop side when they last agreed
    fresh: bool = True  # (re)started from a detector crop, not yet run on its own crop
    ref_det_side: float | None = None  # side of the last detector crop trusted for this face
    ref_det_center: tuple[float, float] | None = None  # ... its centre
    ref_det_frame: int = 0  # ... and the frame it came from


@dataclass(frozen=True, eq=False)
class Work:
    """One face to run through the model this frame."""

    track: Track
    crop: CropSpec
    tracked: bool
    detection: Detection | None = None
    matched: bool = False  # an existing track the detector confirmed this frame


@dataclass
class FaceTracker:
    """Decides, per frame, which crops to run; keeps the tracks. One thread only."""

    crop_scale: float
    eye_groups: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    crop_offset: tuple[float, float] = (0.0, 0.0)  # the model's (Manifest.crop_offset)
    max_faces: int = 4
    redetect_every: int = 30
    min_track_conf: float = 0.3
    iou_match: float = 0.3
    max_jump: float = 1.5
    doubt_conf_ratio: float = 0.6
    doubt_low_ratio: float = 0.7
    doubt_scale: float = 1.25
    max_drift: float = 1.4
    settle_conf: float = 0.92
    max_doubt_frames: int = 15
    max_det_offset: float = 0.25
    max_det_scale: float = 1.4
    max_det_change: float = 1.2
    det_memory: int = 60
    smoothing: bool = True
    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    tracks: list[Track] = field(default_factory=list)
    _last_detect: int | None = None
    _next_id: int = 0

    def reset(self) -> None:
        self.tracks.clear()
        self._last_detect = None

    def force_detection(self) -> None:
        self._last_detect = None

    def needs_detection(self, frame_index: int) -> bool:
        if not self.tracks or self._last_detect is None or any(t.lost or t.doubtful for t in self.tracks):
            return True
        since = frame_index - self._last_detect
        return since < 0 or since >= self.redetect_every

    def _new_track(self, crop: CropSpec, frame_index: int = 0) -> Track:
        sm = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff) if self.smoothing else None
        self._next_id += 1
        return Track(self._next_id, crop, sm, ref_det_side=crop.side, ref_det_center=(crop.center_x, crop.center_y),
                     ref_det_frame=frame_index)

    def plan(self, frame_index: int, detections: list[tuple[Detection, CropSpec]] | None) -> list[Work]:
        """The faces to run this frame. ``detections`` (each with its calibrated crop)
        when the detector ran, else None (tracking only)."""
        if detections is None:
            return [Work(t, t.crop, True) for t in self.tracks if not t.lost]
        self._last_detect = frame_index
        pairs = sorted(
            ((box_iou(d_crop.box_xyxy(), t.crop.box_xyxy()), di, ti)
             for di, (_, d_crop) in enumerate(detections) for ti, t in enumerate(self.tracks)),
            reverse=True,
        )
        det_of: dict[int, int] = {}
        used: set[int] = set()
        for iou, di, ti in pairs:
            if iou < self.iou_match:
                break
            if di not in used and ti not in det_of:
                det_of[ti] = di
                used.add(di)
        matched: list[Work] = []
        missed: list[Work] = []
        dormant: list[Track] = []  # lost, waiting (not shown) for a box that can be trusted
        for ti, t in enumerate(self.tracks):
            recent = 0 <= frame_index - t.ref_det_frame <= self.det_memory
            if ti in det_of:
                det, d_crop = detections[det_of[ti]]
                # A confident track's own crop beats the detector box; a weak, doubtful or
                # off-centre one restarts from the detector's crop, if that can be trusted.
                trusted = self._trusted(t, d_crop, frame_index)
                off = self._off_detection(t, d_crop)
                if (t.lost or t.doubtful or off) and trusted:
                    self._restart(t, d_crop, frame_index)
                    matched.append(Work(t, d_crop, False, det, matched=True))
                    continue
                if t.lost:
                    dormant.append(t)
                    continue
                if trusted and not off:  # the detector agrees: new references
                    t.ref_det_side, t.ref_det_frame = d_crop.side, frame_index
                    t.ref_det_center = (d_crop.center_x, d_crop.center_y)
                    t.ref_det_ratio = t.crop.side / d_crop.side
                matched.append(Work(t, t.crop, True, det, matched=True))
            elif not t.lost:
                missed.append(Work(t, t.crop, True))  # missed by the detector (e.g. occluded): keep
            elif recent:
                dormant.append(t)
        fresh = [Work(self._new_track(d_crop, frame_index), d_crop, False, det)
                 for di, (det, d_crop) in enumerate(detections)
                 if di not in used and not self._misled(d_crop, dormant, frame_index)]
        # Confirmed tracks first. Beyond max_faces, new detections and tracks the detector
        # did not see (occluded, rolled, or drifted off the face) are *candidates*: the caller
        # runs the model on them all and keeps the most confident (``select``), since a
        # detector's false alarm and a drifted track both get low landmark confidence.
        work = (matched + missed + fresh)[: 2 * self.max_faces]
        self.tracks = [w.track for w in work] + dormant
        return work

    def _misled(self, d_crop: CropSpec, dormant: list[Track], frame_index: int) -> bool:
        """A new box where a face was just lost, sized unlike the detector's recent view of
        that face (e.g. stretched by the occluder that made the track drift): wait for a
        better one rather than restart the face from it."""
        for t in dormant:
            if t.ref_det_center is None or t.ref_det_side is None:
                continue
            dist = math.hypot(d_crop.center_x - t.ref_det_center[0], d_crop.center_y - t.ref_det_center[1])
            if dist < t.ref_det_side and not self._trusted(t, d_crop, frame_index):
                return True
        return False

    def select(self, work: list[Work], mean_conf: np.ndarray) -> list[int]:
        """Indexes of the ``work`` items to keep (at most ``max_faces``, in ``work`` order):
        the detector-confirmed tracks, then the others by mean landmark confidence
        ``mean_conf`` (len(work),). The tracks of the others are dropped."""
        if len(work) <= self.max_faces:
            return list(range(len(work)))
        confirmed = [i for i, w in enumerate(work) if w.matched]
        others = sorted((i for i, w in enumerate(work) if not w.matched), key=lambda i: -float(mean_conf[i]))
        keep = sorted((confirmed + others)[: self.max_faces])
        dropped = {id(work[i].track) for i in range(len(work)) if i not in keep}
        self.tracks = [t for t in self.tracks if id(t) not in dropped]
        return keep

    def _off_detection(self, track: Track, d_crop: CropSpec) -> bool:
        """The points drifted off the face, by the detector: the track's crop centre is more
        than ``max_det_offset`` face sizes (the detector's landmark box side) from the
        detector's, or its size relative to the detector's box changed by more than
        ``max_det_scale`` since they last agreed (the ratio itself depends on the point layout,
        e.g. 5 points give a smaller crop; detector boxes vary ~+-12% frame to frame)."""
        crop = track.crop
        face = d_crop.side / self.crop_scale
        off = math.hypot(crop.center_x - d_crop.center_x, crop.center_y - d_crop.center_y)
        if off > self.max_det_offset * face:
            return True
        if track.ref_det_ratio is None:
            return False
        change = crop.side / d_crop.side / track.ref_det_ratio
        return not 1.0 / self.max_det_scale <= change <= self.max_det_scale

    def _trusted(self, track: Track, d_crop: CropSpec, frame_index: int) -> bool:
        """Whether a detection may restart a doubtful track: its size agrees (within
        ``max_det_change``) with the detector's view of this face a moment ago. A box that
        grew or shrank more was misled, e.g. by something covering part of the face."""
        ref = track.ref_det_side
        if ref is None or not 0 <= frame_index - track.ref_det_frame <= self.det_memory:
            return True
        return 1.0 / self.max_det_change <= d_crop.side / ref <= self.max_det_change

    @staticmethod
    def _restart(track: Track, crop: CropSpec, frame_index: int = 0) -> None:
        track.crop = crop
        track.ref_det_side, track.ref_det_frame = crop.side, frame_index
        track.ref_det_center = (crop.center_x, crop.center_y)
        track.lost = track.doubtful = False
        track.doubt_frames = 0
        track.peak_conf, track.peak_low_conf, track.ref_side, track.fresh = 0.0, 0.0, None, True
        track.ref_det_ratio = None
        if track.smoother is not None:
            track.smoother.reset()  # no smoothing from the drifted points back to the face

    def refine_crop(self, track: Track, pts_img: np.ndarray) -> CropSpec:
        """A (re)started track's own crop from the points found on the detector's crop: the
        caller runs the model once more on it (a detector crop is placed and sized unlike
        the crops the model was trained on, so its points are rougher, and a box fooled by
        an occluder would otherwise be followed)."""
        roll = eye_angle_deg(pts_img, *self.eye_groups) if self.eye_groups else 0.0
        track.crop = aligned_crop(pts_img, self.crop_scale, roll, self.crop_offset)
        track.fresh = False
        return track.crop

    def update(self, track: Track, pts_img: np.ndarray, conf: np.ndarray, t: float) -> np.ndarray:
        """Record a face's landmarks; set its next crop; return the (smoothed) points.

        The track counts as lost (re-detect next frame) when the mean confidence is below
        ``min_track_conf``, or when the landmarks imply a crop that grew / shrank by more
        than ``max_jump`` or moved by more than half its side in one frame: a face does not
        do that between frames, a model that lost it does (e.g. points scattered by an
        occluder), and following such a crop would run away from the face.
        """
        track.mean_conf = float(np.mean(conf)) if np.size(conf) else 0.0
        track.low_conf = float(np.percentile(conf, 10)) if np.size(conf) else 0.0
        roll = eye_angle_deg(pts_img, *self.eye_groups) if self.eye_groups else 0.0
        new, old = aligned_crop(pts_img, self.crop_scale, roll, self.crop_offset), track.crop
        ratio = new.side / old.side
        moved = math.hypot(new.center_x - old.center_x, new.center_y - old.center_y) / old.side
        # Off a detector crop the points may legitimately imply another crop (the detector
        # box is placed differently, and sized for 68 points): no jump test then.
        jumped = not track.fresh and (not (1.0 / self.max_jump <= ratio <= self.max_jump) or moved > 0.5)
        track.lost = track.mean_conf < self.min_track_conf or jumped
        # Slow drift: confidence far below this track's own peak (models differ in their
        # confidence levels, so the reference is the track's), or a crop that grew / shrank
        # a lot since the detector last agreed with it. The references are taken on the
        # track's own crops: a detector crop is placed differently (and, for a schema
        # unlike the detector's calibration, sized differently).
        if track.fresh:
            track.fresh, track.doubtful = False, False
        else:
            track.peak_conf = max(track.peak_conf, track.mean_conf)
            track.peak_low_conf = max(track.peak_low_conf, track.low_conf)
            if track.ref_side is None:
                track.ref_side = old.side
            size = new.side / track.ref_side
            # The size reference follows the face while the model is as confident as it gets
            # on it (a face that comes closer; a crop that settles after a restart) and stays
            # put once confidence sags, which is when the points start to drift.
            if (track.mean_conf >= self.settle_conf * track.peak_conf
                    and track.low_conf >= self.settle_conf * track.peak_low_conf):
                track.ref_side, size = new.side, 1.0
            # The least confident points drop first when something covers part of the face.
            track.doubtful = (track.mean_conf < self.doubt_conf_ratio * track.peak_conf
                              or track.low_conf < self.doubt_low_ratio * track.peak_low_conf
                              or not 1.0 / self.doubt_scale <= size <= self.doubt_scale)
            track.doubt_frames = track.doubt_frames + 1 if track.doubtful else 0
            # Past doubt: a crop that kept shrinking (points collapsing onto part of the face)
            # or a doubt the detector could not settle for half a second. Not shown; the
            # detector restarts the face as soon as it sees it.
            if not 1.0 / self.max_drift <= size <= self.max_drift or track.doubt_frames > self.max_doubt_frames:
                track.lost = True
        track.crop = new
        return track.smoother(pts_img, t) if track.smoother is not None else np.asarray(pts_img, np.float64)

    def drop_duplicates(self, overlap: float = 0.5) -> list[Track]:
        """Remove tracks that converged on the same face (keep the more confident one);
        returns the removed ones."""
        keep: list[Track] = []
        dropped: list[Track] = []
        for t in sorted(self.tracks, key=lambda t: (t.lost, -t.mean_conf)):  # a lost track never wins
            if any(box_iou(t.crop.box_xyxy(), k.crop.box_xyxy()) > overlap for k in keep):
                dropped.append(t)
            else:
                keep.append(t)
        self.tracks = [t for t in self.tracks if t not in dropped]
        return dropped

"""Frame-to-frame face tracking from landmarks, and One-Euro smoothing of the points.

Between detections a face's next crop comes from its previous landmarks (levelled by
the eye roll), which is both cheaper and more accurate than a detector box. The
detector runs again every ``redetect_every`` frames, or as soon as a face's mean
confidence drops below ``min_track_conf``; detections are matched to tracks by IoU.
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


def aligned_crop(pts_img: np.ndarray, scale: float, angle_deg: float = 0.0) -> CropSpec:
    """``crop_params_from_points`` measured in the face's own frame (turned by the roll),
    so a rolled face gets the same crop size as when upright. pts (K, 2) -> CropSpec."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    p = np.asarray(pts_img, dtype=np.float64)
    uv = np.stack([p[:, 0] * c + p[:, 1] * s, -p[:, 0] * s + p[:, 1] * c], axis=-1)
    spec = crop_params_from_points(uv, scale)
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


@dataclass(frozen=True, eq=False)
class Work:
    """One face to run through the model this frame."""

    track: Track
    crop: CropSpec
    tracked: bool
    detection: Detection | None = None


@dataclass
class FaceTracker:
    """Decides, per frame, which crops to run; keeps the tracks. One thread only."""

    crop_scale: float
    eye_groups: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    max_faces: int = 4
    redetect_every: int = 30
    min_track_conf: float = 0.3
    iou_match: float = 0.3
    max_jump: float = 1.5
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
        if not self.tracks or self._last_detect is None or any(t.lost for t in self.tracks):
            return True
        since = frame_index - self._last_detect
        return since < 0 or since >= self.redetect_every

    def _new_track(self, crop: CropSpec) -> Track:
        sm = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff) if self.smoothing else None
        self._next_id += 1
        return Track(self._next_id, crop, sm)

    def plan(self, frame_index: int, detections: list[tuple[Detection, CropSpec]] | None) -> list[Work]:
        """The faces to run this frame. ``detections`` (each with its calibrated crop)
        when the detector ran, else None (tracking only)."""
        if detections is None:
            return [Work(t, t.crop, True) for t in self.tracks]
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
        for ti, t in enumerate(self.tracks):
            if ti in det_of:
                det, d_crop = detections[det_of[ti]]
                # A confident track's own crop beats the detector box; a weak one restarts.
                matched.append(Work(t, t.crop, True, det) if not t.lost else Work(t, d_crop, False, det))
            elif not t.lost:
                missed.append(Work(t, t.crop, True))  # missed by the detector (e.g. occluded): keep
        fresh = [Work(self._new_track(d_crop), d_crop, False, det)
                 for di, (det, d_crop) in enumerate(detections) if di not in used]
        # Confirmed tracks, then faces the detector just found, then tracks it did not see:
        # with max_faces reached, a track that drifted off the face must not crowd out the face.
        work = (matched + fresh + missed)[: self.max_faces]
        self.tracks = [w.track for w in work]
        return work

    def update(self, track: Track, pts_img: np.ndarray, conf: np.ndarray, t: float) -> np.ndarray:
        """Record a face's landmarks; set its next crop; return the (smoothed) points.

        The track counts as lost (re-detect next frame) when the mean confidence is below
        ``min_track_conf``, or when the landmarks imply a crop that grew / shrank by more
        than ``max_jump`` or moved by more than half its side in one frame: a face does not
        do that between frames, a model that lost it does (e.g. points scattered by an
        occluder), and following such a crop would run away from the face.
        """
        track.mean_conf = float(np.mean(conf)) if np.size(conf) else 0.0
        roll = eye_angle_deg(pts_img, *self.eye_groups) if self.eye_groups else 0.0
        new, old = aligned_crop(pts_img, self.crop_scale, roll), track.crop
        ratio = new.side / old.side
        moved = math.hypot(new.center_x - old.center_x, new.center_y - old.center_y) / old.side
        jumped = not (1.0 / self.max_jump <= ratio <= self.max_jump) or moved > 0.5
        track.lost = track.mean_conf < self.min_track_conf or jumped
        track.crop = new
        return track.smoother(pts_img, t) if track.smoother is not None else np.asarray(pts_img, np.float64)

    def drop_duplicates(self, overlap: float = 0.5) -> list[Track]:
        """Remove tracks that converged on the same face (keep the more confident one);
        returns the removed ones."""
        keep: list[Track] = []
        dropped: list[Track] = []
        for t in sorted(self.tracks, key=lambda t: -t.mean_conf):
            if any(box_iou(t.crop.box_xyxy(), k.crop.box_xyxy()) > overlap for k in keep):
                dropped.append(t)
            else:
                keep.append(t)
        self.tracks = [t for t in self.tracks if t not in dropped]
        return dropped

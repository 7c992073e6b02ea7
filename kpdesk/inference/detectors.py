"""Face detectors and the calibration from their boxes to the landmark models' crops.

Landmark models are trained on crops centred on the landmark bounding box, side
``crop_scale`` x its longer side (``crop_params_from_points``). A detector's box is
placed and sized differently, so each detector carries a ``BoxCalibration`` measured on
faces with ground-truth landmarks by ``benchmarks/calibrate_detectors.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import sys
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from kpdesk.vision.transforms import CropSpec

log = logging.getLogger(__name__)

DETECTOR_NAMES = ("blazeface", "haar")


@dataclass(frozen=True, eq=False)
class Detection:
    """One detected face.

    Attributes:
        box_xyxy: axis-aligned box in image pixels.
        score: detector confidence in [0, 1] (Haar has none: 1.0).
        keypoints: (N, 2) image pixels, or None. BlazeFace: image-left eye, image-right
            eye, nose tip, mouth centre, image-left ear, image-right ear.
    """

    box_xyxy: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None

    @property
    def roll_deg(self) -> float | None:
        """Angle of the eye line (``CropSpec.angle_deg`` convention), from the keypoints."""
        if self.keypoints is None or len(self.keypoints) < 2:
            return None
        d = self.keypoints[1] - self.keypoints[0]
        return float(math.degrees(math.atan2(d[1], d[0])))


@dataclass(frozen=True)
class BoxCalibration:
    """Detector box -> landmark box, in units of the detector box's longer side D.

    landmark-box centre = detector-box centre + (dx, dy) * D (in the face's own frame,
    i.e. turned by the roll when it is known); landmark-box longer side = ratio * D.
    """

    dx: float = 0.0
    dy: float = 0.0
    ratio: float = 1.0

    def crop(self, box_xyxy: tuple[float, float, float, float], crop_scale: float,
             roll_deg: float | None = None, offset: tuple[float, float] = (0.0, 0.0)) -> CropSpec:
        """The crop for a detector box: ``crop_scale`` x the landmark box it implies,
        centred ``offset`` x that box's side from its centre (see ``crop_params_from_points``)."""
        x0, y0, x1, y1 = box_xyxy
        d = max(x1 - x0, y1 - y0)
        if d <= 0:
            raise ValueError(f"degenerate face box {box_xyxy}")
        a = math.radians(roll_deg or 0.0)
        ox, oy = (self.dx + offset[0] * self.ratio) * d, (self.dy + offset[1] * self.ratio) * d
        # The face's right is (cos a, sin a) and its down is (-sin a, cos a) in the image.
        cx = (x0 + x1) / 2 + ox * math.cos(a) - oy * math.sin(a)
        cy = (y0 + y1) / 2 + ox * math.sin(a) + oy * math.cos(a)
        return CropSpec(cx, cy, crop_scale * self.ratio * d, roll_deg or 0.0)


    def face_box(self, pts_box_xyxy: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """The inverse: the detector's (square, upright) face box for a landmark box. A
        5-point box (eyes to mouth corners) becomes the face's box, as for 68 points."""
        x0, y0, x1, y1 = pts_box_xyxy
        d = max(x1 - x0, y1 - y0) / self.ratio
        cx, cy = (x0 + x1) / 2 - self.dx * d, (y0 + y1) / 2 - self.dy * d
        return (cx - d / 2, cy - d / 2, cx + d / 2, cy + d / 2)

    # Outside these bounds a mapping is a mistake (a swapped field, a box in pixels), not
    # a detector: a landmark box is never more than half a detector box off its centre,
    # nor under a fifth / over twice its size.
    MAX_SHIFT = 0.5
    RATIO_RANGE = (0.2, 2.0)

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> BoxCalibration:
        """From ``{"dx": .., "dy": .., "ratio": ..}``; ValueError (one line naming ``where``)
        for a missing, non-numeric or implausible field."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected {{dx, dy, ratio}}, got {d!r}")
        try:
            dx, dy, ratio = (float(d[k]) for k in ("dx", "dy", "ratio"))
        except KeyError as exc:
            raise ValueError(f"{where}: missing {exc.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ValueError(f"{where}: non-numeric value in {d!r}") from None
        lo, hi = cls.RATIO_RANGE
        if not all(map(math.isfinite, (dx, dy, ratio))) or max(abs(dx), abs(dy)) > cls.MAX_SHIFT \
                or not lo <= ratio <= hi:
            raise ValueError(f"{where}: implausible mapping dx={dx:g} dy={dy:g} ratio={ratio:g} (expected "
                             f"|dx|, |dy| <= {cls.MAX_SHIFT} and ratio in {lo}-{hi})")
        return cls(dx, dy, ratio)

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        return {"dx": round(self.dx, digits), "dy": round(self.dy, digits), "ratio": round(self.ratio, digits)}


# Measured by benchmarks/calibrate_detectors.py on face68/val (913 faces x 2 scales):
#   blazeface 1826/1826 found; dx -0.003 (std 0.033), dy +0.047 (0.042), ratio 1.008 (0.074)
#   haar      1523/1826 found; dx +0.010 (std 0.092), dy +0.159 (0.039), ratio 0.881 (0.088)
# Haar boxes sit high on the face (brows to upper lip) and are smaller than the landmark box.
CALIBRATION = {
    "blazeface": BoxCalibration(dx=-0.003, dy=0.047, ratio=1.008),
    "haar": BoxCalibration(dx=0.010, dy=0.159, ratio=0.881),
}
# The mapping above is for the 68-point landmark box. A manifest states its model's own
# mapping (``detector_crop``, written by ``benchmarks/calibrate_detectors.py --write``);
# manifests of iBUG-68 models from before that field get this one.
CALIBRATED_LAYOUT = "ibug68"

# Per point layout, the mapping measured for its landmark box, which ``training export``
# writes into a new model's manifest (a custom layout gets none: calibrate it).
#   mtfl5: benchmarks/calibrate_detectors.py --pack face5 --split train --limit 400
#   (400 faces; blazeface 400 found, dx std 0.080, dy 0.034, ratio 0.036; haar 355 found).
LAYOUT_CALIBRATION = {
    "ibug68": CALIBRATION,
    "mtfl5": {
        "blazeface": BoxCalibration(dx=0.0064, dy=-0.0078, ratio=0.4573),
        "haar": BoxCalibration(dx=0.0088, dy=0.0886, ratio=0.4957),
    },
}


def match_face(dets: list[Detection], pts: np.ndarray) -> Detection | None:
    """The detection whose box holds the centre of the points' box (nearest centre first),
    or None. (An IoU rule would depend on the point layout: a 5-point box is about a
    quarter of a face box's area.)"""
    lo, hi = np.min(pts, axis=0), np.max(pts, axis=0)
    cx, cy = (lo + hi) / 2
    inside = [d for d in dets if d.box_xyxy[0] <= cx <= d.box_xyxy[2] and d.box_xyxy[1] <= cy <= d.box_xyxy[3]]
    return min(inside, default=None, key=lambda d: ((d.box_xyxy[0] + d.box_xyxy[2]) / 2 - cx) ** 2
               + ((d.box_xyxy[1] + d.box_xyxy[3]) / 2 - cy) ** 2)


class FaceDetector(ABC):
    """Finds faces in a BGR frame. Use one instance per thread; ``close`` releases it."""

    name: str = "detector"

    def __init__(self, calibration: BoxCalibration | None = None, use_roll: bool = True) -> None:
        self.calibration = calibration or CALIBRATION.get(self.name, BoxCalibration())
        self.use_roll = use_roll

    @abstractmethod
    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in ``frame_bgr`` (H, W, 3) uint8, highest score first."""

    def box_to_crop(self, det: Detection, crop_scale: float, calibration: BoxCalibration | None = None,
                    offset: tuple[float, float] = (0.0, 0.0)) -> CropSpec:
        """The landmark model's crop for a detection, levelled by the eye roll: mapped by
        ``calibration`` (the model's own, from its manifest) or else by the detector's, then
        centred ``offset`` x the landmark box from it (the model's ``Manifest.crop_offset``)."""
        roll = det.roll_deg if self.use_roll else None
        return (calibration or self.calibration).crop(det.box_xyxy, crop_scale, roll, offset)

    def close(self) -> None:  # noqa: B027 - optional hook, most detectors hold nothing
        """Release native resources. Idempotent."""

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade: always available, upright faces only.

    Frames are shrunk so the longer side is at most ``max_side`` before detection
    (cost grows with area; faces below ~40 px at that scale are missed).
    """

    name = "haar"

    def __init__(self, max_side: int = 480, min_size: int = 32, calibration: BoxCalibration | None = None) -> None:
        super().__init__(calibration, use_roll=False)
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")
        self.max_side = max_side
        self.min_size = min_size

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
        s = min(1.0, self.max_side / max(gray.shape[:2]))
        if s < 1.0:
            gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        boxes = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                               minSize=(self.min_size, self.min_size))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / s
        dets = [Detection((x, y, x + w, y + h), 1.0) for x, y, w, h in boxes]
        # No score: the larger face first.
        return sorted(dets, key=lambda d: -(d.box_xyxy[2] - d.box_xyxy[0]))


def _close_ref(ref: weakref.ref) -> None:
    obj = ref()
    if obj is not None:
        obj.close()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe / LiteRT print INFO and alignment warnings straight to file descriptor 2
    when a detector is created, first run and closed; no environment variable turns them
    off. Point fd 2 at /dev/null for those calls (``KPDESK_NATIVE_LOGS=1`` keeps them).
    Process-wide while it lasts: other threads' stderr is lost for those milliseconds.

    Several threads may create detectors at once (one per Compare variant): the first one
    in saves fd 2 and the last one out restores it, so none restores another's /dev/null."""
    if os.environ.get("KPDESK_NATIVE_LOGS"):
        yield
        return
    global _SILENCED_DEPTH, _SAVED_STDERR_FD
    with _SILENCE_LOCK:
        if _SILENCED_DEPTH == 0:
            sys.stderr.flush()
            _SAVED_STDERR_FD = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _SILENCED_DEPTH += 1
    try:
        yield
    finally:
        with _SILENCE_LOCK:
            _SILENCED_DEPTH -= 1
            if _SILENCED_DEPTH == 0 and _SAVED_STDERR_FD is not None:
                os.dup2(_SAVED_STDERR_FD, 2)
                os.close(_SAVED_STDERR_FD)
                _SAVED_STDERR_FD = None


_SILENCE_LOCK = threading.Lock()
_SILENCED_DEPTH = 0
_SAVED_STDERR_FD: int | None = None


def _register_early_exit(fn: Callable[[], None]) -> None:
    """Run ``fn`` at interpreter exit *before* thread pools shut down.

    MediaPipe tasks run every native call on a ThreadPoolExecutor; closing a detector
    from a plain ``atexit`` hook is too late (the pool is already shut down, and both our
    close and its destructor raise "cannot schedule new futures after shutdown").
    ``threading._register_atexit`` hooks run earlier, newest first, hence before the
    pool's own hook. Falls back to ``atexit`` if that private hook is gone.
    """
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(fn)
            return
    except RuntimeError:  # interpreter already shutting down
        return
    atexit.register(fn)


class BlazeFaceDetector(FaceDetector):
    """MediaPipe tasks ``FaceDetector`` running the BlazeFace short-range model that ships
    inside the Face Landmarker bundle (asset ``face_detector.tflite``). Gives 6 keypoints,
    so crops are levelled by the eye roll."""

    name = "blazeface"

    def __init__(self, model_path: str | os.PathLike | None = None, min_score: float = 0.5,
                 calibration: BoxCalibration | None = None, use_roll: bool = True) -> None:
        super().__init__(calibration, use_roll=use_roll)
        import mediapipe as mp
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision as mp_vision

        from kpdesk.assets import asset_path

        path = str(model_path or asset_path("face_detector.tflite"))
        opts = mp_vision.FaceDetectorOptions(base_options=mp_tasks.BaseOptions(model_asset_path=path),
                                             min_detection_confidence=min_score)
        self._mp = mp
        with _native_stderr_silenced():
            self._det = mp_vision.FaceDetector.create_from_options(opts)
        self._warm = False
        _register_early_exit(functools.partial(_close_ref, weakref.ref(self)))

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        if self._det is None:
            raise RuntimeError("BlazeFaceDetector is closed")
        h, w = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        if self._warm:
            res = self._det.detect(image)
        else:
            with _native_stderr_silenced():  # first run: delegate set-up chatter
                res = self._det.detect(image)
            self._warm = True
        out = []
        for d in res.detections:
            b = d.bounding_box
            kp = np.array([[k.x * w, k.y * h] for k in d.keypoints], dtype=np.float64) if d.keypoints else None
            score = float(d.categories[0].score) if d.categories else 1.0
            box = (float(b.origin_x), float(b.origin_y), float(b.origin_x + b.width), float(b.origin_y + b.height))
            out.append(Detection(box, score, kp))
        return sorted(out, key=lambda d: -d.score)

    def close(self) -> None:
        det, self._det = getattr(self, "_det", None), None
        if det is not None:
            with _native_stderr_silenced():
                det.close()


def available_detectors() -> list[str]:
    """Detector names usable now, best first."""
    from kpdesk.assets import is_available

    names = []
    if is_available("face_detector.tflite"):
        try:
            import mediapipe  # noqa: F401
        except ImportError:
            pass
        else:
            names.append("blazeface")
    names.append("haar")
    return names


def create_detector(kind: str = "auto") -> FaceDetector:
    """``auto`` (the best available), ``blazeface`` or ``haar``.

    Raises:
        ValueError: unknown kind.
        kpdesk.assets.AssetMissingError: ``blazeface`` asked for but its model is not fetched.
    """
    if kind not in ("auto", *DETECTOR_NAMES):
        raise ValueError(f"unknown detector {kind!r}; choose from auto, {', '.join(DETECTOR_NAMES)}")
    if kind == "haar":
        return HaarDetector()
    if kind == "blazeface":
        return BlazeFaceDetector()
    if "blazeface" in available_detectors():
        try:
            det: FaceDetector = BlazeFaceDetector()
        except (RuntimeError, OSError, ValueError) as exc:
            log.warning("BlazeFace unavailable (%s); using the Haar cascade", exc)
            det = HaarDetector()
    else:
        log.warning("BlazeFace model not fetched (run `python -m kpdesk.assets fetch`); using the Haar cascade")
        det = HaarDetector()
    log.info("face detector: %s", det.name)
    return det

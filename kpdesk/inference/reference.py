"""MediaPipe Face Landmarker as a reference model beside kpdesk's own.

It runs the whole of MediaPipe's system, as people know it: its own BlazeFace detector and
its 478-point face mesh, from the ``face_landmarker.task`` bundle in the asset cache
(``kpdesk.assets``; nothing is downloaded here). kpdesk's detectors, crops, decoders and
One-Euro smoothing are not involved; MediaPipe tracks the face itself in VIDEO mode.

Three faces of it:

- ``ReferenceModel``: what the model pickers, lanes and the CLI see in place of a
  ``LandmarkModel`` (a name, the mesh schema, a manifest-like card). Its "path" is the
  ``.task`` file, so it travels in a ``VariantSpec`` like any model file.
- ``ReferencePipeline``: ``process(frame) -> FrameResult`` like ``Pipeline``; the faces
  carry the 478 mesh points in image pixels, drawn as the mesh (its tessellation).
- ``ReferenceLandmarker``: its 68-point view (``kpdesk.vision.mesh68``) for NME and
  agreement with iBUG-68 models; a face MediaPipe does not find is reported as ``None``.

Tasks hold native threads: every object here has ``close()``, which closes its task
explicitly (and at interpreter exit, before the task's thread pool is gone).
"""

from __future__ import annotations

import functools
import logging
import math
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kpdesk.inference.detectors import _native_stderr_silenced, _register_early_exit
from kpdesk.vision.manifest import Manifest
from kpdesk.vision.mesh68 import MESH_SCHEMA_NAME, Mesh68View, default_view
from kpdesk.vision.results import FaceResult, FrameResult, StageTimings
from kpdesk.vision.schema import KeypointSchema, get_schema
from kpdesk.vision.transforms import CropSpec

log = logging.getLogger(__name__)

REFERENCE_NAME = "mediapipe"
TASK_ASSET = "face_landmarker.task"
MESH_POINTS = 478
MESH_INPUT = 256  # the mesh network's input side (face_landmarks_detector.tflite)
# Mesh vertices of the outer eye corners (image-left eye first, as iBUG 36 / 45) and irises.
MESH_OCULAR = (33, 263)
MESH_IRISES = (tuple(range(468, 473)), tuple(range(473, 478)))


class ReferenceUnavailable(RuntimeError):
    """MediaPipe or its Face Landmarker bundle is not there; the message says how to get it."""


def is_reference(path: str | Path | None) -> bool:
    """True for the reference's model "file" (the ``.task`` bundle) or its name."""
    if path is None:
        return False
    p = Path(str(path))
    return p.suffix == ".task" or str(path) == REFERENCE_NAME


def task_path() -> Path:
    """The cached Face Landmarker bundle. Raises ReferenceUnavailable (with the fix)."""
    from kpdesk.assets import AssetMissingError, asset_path

    try:
        import mediapipe  # noqa: F401
    except ImportError as exc:
        raise ReferenceUnavailable(f"MediaPipe reference needs the mediapipe package: {exc}") from None
    try:
        return asset_path(TASK_ASSET)
    except AssetMissingError as exc:
        raise ReferenceUnavailable(str(exc)) from None


def available() -> bool:
    try:
        task_path()
    except ReferenceUnavailable:
        return False
    return True


@functools.lru_cache(maxsize=1)
def mesh_schema() -> KeypointSchema:
    """The 478-point mesh: edges are MediaPipe's own tessellation (from the installed
    package), the ocular pair its outer eye corners, the pupils its iris rings.
    ``flip_perm`` is the identity: kpdesk never mirrors mesh predictions (no training or
    flip averaging on them; a mirrored camera is flipped before any model sees it)."""
    try:
        from mediapipe.tasks.python.vision import FaceLandmarksConnections

        edges = tuple((int(c.start), int(c.end)) for c in FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION)
    except ImportError:
        edges = ()
    return KeypointSchema(
        name=MESH_SCHEMA_NAME,
        num_points=MESH_POINTS,
        point_names=tuple(f"mesh_{i}" for i in range(MESH_POINTS)),
        flip_perm=tuple(range(MESH_POINTS)),
        edges=edges,
        ocular=MESH_OCULAR,
        pupils=MESH_IRISES,
        crop_scale=1.5,
    )


def reference_manifest(path: Path) -> Manifest:
    """A card for the reference, so pickers and the CLI can describe it like a model."""
    return Manifest(
        name=REFERENCE_NAME,
        schema=mesh_schema(),
        input_size=MESH_INPUT,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        crop_scale=1.5,
        coords_output="landmarks",
        heatmaps_output=None,
        decode="regression",
        arch="MediaPipe Face Landmarker",
        info={"kind": "reference", "bundle": str(path),
              "detector": "BlazeFace short-range (inside the bundle)",
              "note": "runs its own detector and tracking; 68-point view: kpdesk/vision/mesh68.json"},
    )


@dataclass(frozen=True, eq=False)
class ReferenceModel:
    """The reference as the app's pickers and lanes see a model."""

    path: Path
    manifest: Manifest
    decode_mode: str = "mesh"

    @classmethod
    def load(cls, path: str | Path | None = None) -> ReferenceModel:
        p = task_path() if path is None or str(path) == REFERENCE_NAME else Path(path)
        if not p.is_file():
            raise ReferenceUnavailable(f"{p}: Face Landmarker bundle not found; run `python -m kpdesk.assets fetch`")
        return cls(p, reference_manifest(p))

    @property
    def name(self) -> str:
        return REFERENCE_NAME

    @property
    def schema(self) -> KeypointSchema:
        return self.manifest.schema

    @property
    def input_size(self) -> int:
        return MESH_INPUT

    @property
    def has_heatmaps(self) -> bool:
        return False


def _close_ref(ref: weakref.ref) -> None:
    obj = ref()
    if obj is not None:
        obj.close()


def to_pixels(landmarks: Any, width: int, height: int) -> np.ndarray:
    """MediaPipe's normalised landmarks -> (N, 2) float64 pixel centres (kpdesk's pixel ``i``
    is centred on ``i``). ``x * width`` already is that: between a frame and the same frame
    upsampled 2x by OpenCV (which maps ``x`` to ``2 x + 0.5``), the meshes read as
    ``x * width`` differ from ``2 x + 0.5`` by +0.02 / -0.02 px in x / y, read as
    ``x * width - 0.5`` by +0.52 / +0.48 px (mean over 200 face68 train faces)."""
    return np.array([[lm.x * width, lm.y * height] for lm in landmarks], np.float64)


class FaceLandmarkerTask:
    """One MediaPipe ``FaceLandmarker`` task: BGR frame -> the 478 mesh points (pixels) of each face.

    ``video``: VIDEO running mode (MediaPipe tracks between calls; timestamps must grow),
    else IMAGE mode (its detector on every call). Use from one thread; ``close()`` it.
    """

    def __init__(self, path: str | Path | None = None, video: bool = False, num_faces: int = 1,
                 min_score: float = 0.5) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python import vision as mp_vision

        p = str(path or task_path())
        mode = mp_vision.RunningMode.VIDEO if video else mp_vision.RunningMode.IMAGE
        opts = mp_vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=p), running_mode=mode,
                                               num_faces=num_faces, min_face_detection_confidence=min_score,
                                               min_face_presence_confidence=min_score)
        self._mp = mp
        self.video = video
        self.num_faces = num_faces
        self._last_ms = -1
        with _native_stderr_silenced():
            self._task = mp_vision.FaceLandmarker.create_from_options(opts)
        self._warm = False
        _register_early_exit(functools.partial(_close_ref, weakref.ref(self)))

    def image(self, frame_bgr: np.ndarray) -> Any:
        """A BGR frame as the ``mp.Image`` (RGB) the task takes."""
        mp = self._mp
        return mp.Image(image_format=mp.ImageFormat.SRGB,
                        data=np.ascontiguousarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)))

    def run_image(self, image: Any, timestamp_s: float | None = None) -> list[Any]:
        """An ``mp.Image`` -> MediaPipe's landmark lists (normalised x, y), one per face."""
        if self._task is None:
            raise RuntimeError("FaceLandmarkerTask is closed")
        if self.video:
            ms = int(round((timestamp_s or 0.0) * 1000.0))
            ms = max(ms, self._last_ms + 1)  # VIDEO mode refuses a timestamp that does not grow
            self._last_ms = ms

            def call() -> Any:
                return self._task.detect_for_video(image, ms)
        else:
            def call() -> Any:
                return self._task.detect(image)
        if self._warm:
            res = call()
        else:
            with _native_stderr_silenced():  # first run: delegate set-up chatter
                res = call()
            self._warm = True
        return list(res.face_landmarks)

    def find(self, frame_bgr: np.ndarray, timestamp_s: float | None = None) -> list[np.ndarray]:
        """(H, W, 3) uint8 BGR -> [(478, 2) float64 image pixels] per face found."""
        h, w = frame_bgr.shape[:2]
        return [to_pixels(face, w, h) for face in self.run_image(self.image(frame_bgr), timestamp_s)]

    def close(self) -> None:
        task, self._task = getattr(self, "_task", None), None
        if task is not None:
            with _native_stderr_silenced():
                task.close()

    def __enter__(self) -> FaceLandmarkerTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mesh_crop(pts: np.ndarray) -> CropSpec:
    """An upright-by-the-eyes square around a mesh (its own ROI, roughly), for the result's
    crop matrix."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    d = pts[MESH_OCULAR[1]] - pts[MESH_OCULAR[0]]
    angle = math.degrees(math.atan2(d[1], d[0]))
    return CropSpec(float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2),
                    1.5 * float((hi - lo).max()) + 1e-6, angle)


class _OwnDetector:
    """Stands where a kpdesk pipeline has its detector: the name shown in the app, nothing to run."""

    name = "mediapipe (own)"

    def close(self) -> None:  # the detector lives inside the task
        pass


class ReferencePipeline:
    """MediaPipe Face Landmarker in place of a ``Pipeline``: one frame -> ``FrameResult``
    with the mesh of up to ``max_faces`` faces. One thread only; ``close()`` it.

    ``video``: track between frames (MediaPipe's VIDEO mode; ``reset`` starts a new track
    history), else detect on every frame (IMAGE mode, for unrelated stills).
    Stage timings: ``preprocess`` is the BGR -> RGB conversion and ``mp.Image``,
    ``inference`` the task call (its detector and mesh together: MediaPipe does not time
    them apart), ``decode`` the landmarks into pixel arrays; ``detect`` stays 0.
    """

    def __init__(self, model: ReferenceModel | None = None, config: Any = None, video: bool = True) -> None:
        from kpdesk.inference.pipeline import PipelineConfig

        self._model = model or ReferenceModel.load()
        self._config = config or PipelineConfig()
        self.video = video
        self._task: FaceLandmarkerTask | None = None
        self._detector = _OwnDetector()

    @property
    def model(self) -> ReferenceModel:
        return self._model

    @property
    def detector(self) -> _OwnDetector:
        return self._detector

    @property
    def config(self) -> Any:
        return self._config

    def set_config(self, config: Any) -> None:
        if config.max_faces != self._config.max_faces:
            self.reset()
        self._config = config

    def set_detector(self, detector: Any) -> None:
        """MediaPipe uses its own detector: another one is ignored."""

    def reset(self) -> None:
        """Forget the tracks: the next frame starts a fresh task (VIDEO mode)."""
        if self.video and self._task is not None:
            self._task.close()
            self._task = None

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None

    def _ensure_task(self) -> FaceLandmarkerTask:
        if self._task is None:
            self._task = FaceLandmarkerTask(self._model.path, video=self.video, num_faces=self._config.max_faces)
        return self._task

    def process(self, frame_bgr: np.ndarray, frame_index: int = 0, timestamp: float | None = None) -> FrameResult:
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected a (H, W, 3) BGR frame, got {getattr(frame_bgr, 'shape', None)}")
        t_sec = timestamp if timestamp is not None else frame_index / self._config.fps_hint
        task = self._ensure_task()
        t0 = time.perf_counter()
        image = task.image(frame_bgr)
        t1 = time.perf_counter()
        raw = task.run_image(image, t_sec)
        t2 = time.perf_counter()
        h, w = frame_bgr.shape[:2]
        faces = []
        for lms in raw[: self._config.max_faces]:
            pts = to_pixels(lms, w, h)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            faces.append(FaceResult(
                box_xyxy=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                pts_img=pts,
                conf=np.ones(len(pts), np.float32),  # MediaPipe gives no per-point confidence
                crop_matrix=_mesh_crop(pts).matrix(MESH_INPUT),
                tracked=False,
                detector_score=None,
            ))
        t3 = time.perf_counter()
        ms = 1000.0
        timings = StageTimings(detect=0.0, preprocess=(t1 - t0) * ms, inference=(t2 - t1) * ms,
                               decode=(t3 - t2) * ms, total=(t3 - t0) * ms)
        return FrameResult(frame_index=frame_index, model_name=REFERENCE_NAME, faces=tuple(faces), timings=timings,
                           detector_name=self._detector.name, timestamp=t_sec,
                           extras={"track_ids": tuple(range(len(faces))), "detected": not self.video},
                           frame_size=(int(w), int(h)))


class ReferenceLandmarker:
    """The reference's 68-point view on single images (IMAGE mode: its own detector on each),
    for sweeps and evaluations that score iBUG-68 points. ``close()`` it."""

    def __init__(self, path: str | Path | None = None, view: Mesh68View | None = None, num_faces: int = 2) -> None:
        self._view = view  # None: the shipped view, read when first needed
        self.schema = get_schema("ibug68")
        self._task = FaceLandmarkerTask(path, video=False, num_faces=num_faces)

    @property
    def view(self) -> Mesh68View:
        if self._view is None:
            self._view = default_view()
        return self._view

    @view.setter
    def view(self, view: Mesh68View) -> None:
        self._view = view

    @property
    def name(self) -> str:
        return REFERENCE_NAME

    def mesh_near(self, image_bgr: np.ndarray, centre_xy: tuple[float, float]) -> np.ndarray | None:
        """The mesh (478, 2) of the face whose point box holds ``centre_xy`` (nearest box
        centre first), or None when MediaPipe finds no such face."""
        cx, cy = centre_xy
        best, best_d = None, math.inf
        for pts in self._task.find(image_bgr):
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            if lo[0] <= cx <= hi[0] and lo[1] <= cy <= hi[1]:
                d = float(np.hypot((lo[0] + hi[0]) / 2 - cx, (lo[1] + hi[1]) / 2 - cy))
                if d < best_d:
                    best, best_d = pts, d
        return best

    def predict68(self, image_bgr: np.ndarray, centre_xy: tuple[float, float]) -> np.ndarray | None:
        """The 68-point view (68, 2) of the face at ``centre_xy``, or None when missed."""
        mesh = self.mesh_near(image_bgr, centre_xy)
        return None if mesh is None else self.view.apply(mesh)

    def close(self) -> None:
        self._task.close()

    def __enter__(self) -> ReferenceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reference_entry() -> Any:
    """The catalog entry of the reference (``kpdesk.inference.catalog.CatalogEntry``), or
    None when MediaPipe or its bundle is not there (the pickers then simply lack it)."""
    from kpdesk.inference.catalog import CatalogEntry

    try:
        model = ReferenceModel.load()
    except ReferenceUnavailable as exc:
        log.info("MediaPipe reference not offered: %s", exc)
        return None
    return CatalogEntry(REFERENCE_NAME, model.path, model.manifest)

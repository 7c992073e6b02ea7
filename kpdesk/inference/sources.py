"""Frame sources without Qt: cameras, video files, images, folders of images, and a
built-in synthetic demo. Each yields ``(frame_bgr, timestamp_seconds)``.

Sources never sleep: a consumer that wants real-time pacing of a file or the demo uses
``fps``. One thread per source.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

# FFmpeg (inside OpenCV) prints its own lines ("moov atom not found", ...) on stderr; the
# failure is reported as one SourceError line instead. OpenCV reads this once, when its
# FFmpeg backend is first used; a value set by the user wins (e.g. 32 to see them).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class SourceError(Exception):
    """A source cannot be opened or stopped delivering frames; the message names it."""


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (e.g. V4L2 "can't open camera by index") while
    opening: failures are reported through SourceError instead."""
    lg = cv2.utils.logging
    old = lg.getLogLevel()
    lg.setLogLevel(lg.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        lg.setLogLevel(old)


@contextlib.contextmanager
def _quiet_native_open() -> Iterator[None]:
    """Opening a video: OpenCV's own container parsers print straight to file descriptor 2
    ("Unexpected element. Expected: LIST ..."), past any log level. fd 2 points at /dev/null
    for the open, through the detectors' helper (one owner of fd 2 across threads;
    ``KPDESK_NATIVE_LOGS=1`` keeps the lines)."""
    from kpdesk.inference.detectors import _native_stderr_silenced

    with _quiet_opencv(), _native_stderr_silenced():
        yield


def read_image(path: str | Path) -> np.ndarray:
    """Any image file -> BGR uint8 (H, W, 3). Raises SourceError if it cannot be decoded."""
    p = Path(path)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise SourceError(f"{p}: cannot read image: {exc.strerror or exc}") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise SourceError(f"{p}: cannot read image (not a supported or intact image file)")
    return img


class FrameSource(ABC):
    """Base class: ``read()`` returns the next ``(frame_bgr, timestamp)`` or None at the end."""

    name: str = "source"
    fps: float | None = None
    is_live: bool = False

    @property
    def frame_count(self) -> int | None:
        """Number of frames, or None when unknown / unbounded."""
        return None

    @property
    def frame_name(self) -> str | None:
        """The file the last frame came from (image and folder sources), else None."""
        return None

    @property
    def shortfall(self) -> str | None:
        """After the end: why fewer frames came than the source promised, else None."""
        return None

    @abstractmethod
    def read(self) -> tuple[np.ndarray, float] | None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source. Idempotent."""

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while (item := self.read()) is not None:
            yield item

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# Capture modes worth offering; a camera is asked for each and reports what it accepts.
COMMON_RESOLUTIONS = ((320, 240), (640, 360), (640, 480), (800, 600), (960, 540), (1024, 768), (1280, 720),
                      (1280, 960), (1600, 1200), (1920, 1080), (2560, 1440), (3840, 2160))
COMMON_FPS = (15.0, 24.0, 30.0, 60.0)


@dataclass(frozen=True, order=True)
class CameraMode:
    """A capture resolution and frame rate (``fps`` 0: whatever the camera picks)."""

    width: int
    height: int
    fps: float = 0.0

    def spec(self, index: int) -> str:
        """The source spec that opens camera ``index`` in this mode, e.g. ``cam:0:1280x720@30``."""
        return f"cam:{index}:{self.width}x{self.height}" + (f"@{self.fps:g}" if self.fps > 0 else "")

    def __str__(self) -> str:
        return f"{self.width} × {self.height}" + (f" @ {self.fps:g} fps" if self.fps > 0 else "")


def parse_camera_spec(spec: str | int) -> tuple[int, CameraMode | None] | None:
    """``0``, ``cam:0``, ``cam:0:1280x720`` or ``cam:0:1280x720@30`` -> (index, mode or None);
    None when ``spec`` is not a camera (e.g. a file name)."""
    if isinstance(spec, int):
        return spec, None
    m = _CAMERA_SPEC.fullmatch(str(spec).strip().lower())
    if m is None:
        return None
    index, w, h, fps = m.groups()
    if w is None:
        return int(index), None
    return int(index), CameraMode(int(w), int(h), float(fps) if fps else 0.0)


_CAMERA_SPEC = re.compile(r"(?:cam:)?(\d+)(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?")


class CameraSource(FrameSource):
    """A camera by index, optionally in a chosen mode. Timestamps are seconds since it was
    opened (monotonic). ``open_fn`` (default ``cv2.VideoCapture``) opens the device: tests
    pass a fake camera."""

    is_live = True

    def __init__(self, index: int, width: int | None = None, height: int | None = None, retries: int = 5,
                 fps: float | None = None, open_fn: Callable[[int], Any] | None = None) -> None:
        self.index = index
        self.name = f"camera {index}"
        self.retries = retries
        with _quiet_opencv():
            self._cap = (open_fn or cv2.VideoCapture)(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"camera {index} cannot be opened")
        self._set_mode(width, height, fps)
        self.mode = self._current_mode()
        self.fps = self.mode.fps or None
        self._t0 = time.monotonic()

    def _set_mode(self, width: float | None, height: float | None, fps: float | None) -> None:
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)

    def _current_mode(self) -> CameraMode:
        w, h = self._cap.get(cv2.CAP_PROP_FRAME_WIDTH), self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        return CameraMode(int(round(w or 0)), int(round(h or 0)), round(float(fps), 2) if fps and fps > 0 else 0.0)

    def probe_modes(self, resolutions: Iterable[tuple[int, int]] = COMMON_RESOLUTIONS,
                    fps_values: Iterable[float] = COMMON_FPS) -> list[CameraMode]:
        """Ask the camera for each resolution and frame rate and keep what it reports back
        (drivers answer an unsupported request with the nearest mode they have, or not at
        all). Call before reading frames: changing modes while streaming is slow or refused
        by some drivers. The mode in use beforehand is restored. Sorted, no duplicates."""
        if self._cap is None:
            raise SourceError(f"camera {self.index} is closed")
        before = self._current_mode()
        fps_values = tuple(fps_values)
        found: set[CameraMode] = set()
        try:
            with _quiet_opencv():
                for w, h in resolutions:
                    self._set_mode(w, h, None)
                    got = self._current_mode()
                    if got.width <= 0 or got.height <= 0 or (got.width, got.height) != (w, h):
                        continue  # not this size: the nearest one is listed when asked for itself
                    rates = set()
                    for f in fps_values:
                        self._set_mode(None, None, f)
                        rates.add(self._current_mode().fps)
                    found.update(CameraMode(w, h, r) for r in (rates or {0.0}))
        finally:
            self._set_mode(before.width, before.height, before.fps)
        return sorted(found)

    def read(self) -> tuple[np.ndarray, float]:
        if self._cap is None:
            raise SourceError(f"camera {self.index} is closed")
        for attempt in range(self.retries):
            ok, frame = self._cap.read()
            if ok and frame is not None:
                return frame, time.monotonic() - self._t0
            time.sleep(0.02 * (attempt + 1))
        raise SourceError(f"camera {self.index} stopped delivering frames")

    def close(self) -> None:
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            cap.release()


class VideoSource(FrameSource):
    """A video file. Timestamps are frame index / fps (stable, unlike decoder clocks)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        with _quiet_native_open():
            self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"{self.path}: cannot open video (not a supported video file)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._count = n if n > 0 else None
        self._index = 0
        self._ended = False

    @property
    def frame_count(self) -> int | None:
        return self._count

    @property
    def shortfall(self) -> str | None:
        """A file whose header promises more frames than could be decoded (cut short, e.g. a
        copy or a recording that stopped). A frame or two of slack: some containers only
        estimate their frame count."""
        n = self._count
        if not self._ended or n is None or n - self._index <= max(2, n // 100):
            return None
        return f"{self.path}: the header promises {n} frames, only {self._index} could be decoded (truncated file?)"

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._cap is None:
            return None
        with _quiet_opencv():
            ok, frame = self._cap.read()
        if not ok or frame is None:
            if self._index == 0:
                raise SourceError(f"{self.path}: no frame could be decoded")
            self._ended = True
            return None
        t = self._index / self.fps
        self._index += 1
        return frame, t

    def close(self) -> None:
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            cap.release()


class ImageSource(FrameSource):
    """One image file, delivered once, at time 0."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self._frame: np.ndarray | None = read_image(self.path)

    @property
    def frame_count(self) -> int:
        return 1

    @property
    def frame_name(self) -> str:
        return self.path.name

    def read(self) -> tuple[np.ndarray, float] | None:
        frame, self._frame = self._frame, None
        return None if frame is None else (frame, 0.0)


class FolderSource(FrameSource):
    """The images of a folder in name order; unreadable ones are skipped with a warning.
    Timestamps are index / ``fps`` (default 1 frame per second: unrelated stills)."""

    def __init__(self, path: str | Path, fps: float = 1.0) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.fps = fps
        self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise SourceError(f"{self.path}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._pos = 0
        self._delivered = 0
        self._current: Path | None = None
        self.skipped: list[Path] = []

    @property
    def frame_count(self) -> int:
        return len(self._files)

    @property
    def frame_name(self) -> str | None:
        """The file of the last frame: frame numbers shift past a skipped file, names do not."""
        return None if self._current is None else self._current.name

    def read(self) -> tuple[np.ndarray, float] | None:
        while self._pos < len(self._files):
            p = self._files[self._pos]
            self._pos += 1
            try:
                frame = read_image(p)
            except SourceError as exc:
                log.warning("skipping %s", exc)
                self.skipped.append(p)
                continue
            t = self._delivered / self.fps
            self._delivered += 1
            self._current = p
            return frame, t
        if self._delivered == 0:
            raise SourceError(f"{self.path}: none of its {len(self._files)} images could be read")
        return None


class DemoSource(FrameSource):
    """A synthetic camera: scikit-image's astronaut photo on a 640 x 480 canvas, drifting,
    zooming, rolling up to +-35 degrees, and partly covered by a moving bar some of the
    time. Frame ``i`` depends only on ``i`` (``frame(i)``), so tests are reproducible."""

    FACE_CENTER = (224.0, 132.0)  # face centre in the astronaut photo (x, y)
    FACE_BOX = (162.0, 72.0, 288.0, 192.0)  # the face in the photo: hairline to chin, ear to ear
    MAX_ROLL_DEG = 35.0

    def __init__(self, num_frames: int | None = None, fps: float = 30.0, size: tuple[int, int] = (640, 480)) -> None:
        import skimage.data  # lazy: only the demo needs scikit-image

        self.name = "demo"
        self.fps = fps
        self.size = size
        self.num_frames = num_frames
        self._photo = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])  # RGB -> BGR
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        bg = np.stack([60 + 50 * yy / h, 70 + 30 * xx / w, 90 + 40 * (1 - yy / h)], axis=-1)
        self._background = np.clip(bg, 0, 255).astype(np.uint8)
        self._index = 0

    @property
    def frame_count(self) -> int | None:
        return self.num_frames

    def pose(self, i: int) -> tuple[float, float, float, float]:
        """(face centre x, y on the canvas, roll in degrees, scale) of frame i."""
        t = i / self.fps
        w, h = self.size
        cx = w / 2 + 0.18 * w * math.sin(2 * math.pi * t / 7.0)
        cy = h * 0.42 + 0.08 * h * math.sin(2 * math.pi * t / 5.0)
        roll = self.MAX_ROLL_DEG * math.sin(2 * math.pi * t / 8.0)
        scale = 0.95 + 0.2 * math.sin(2 * math.pi * t / 11.0)
        return cx, cy, roll, scale

    def photo_to_frame(self, i: int) -> np.ndarray:
        """(2, 3) affine from astronaut-photo pixels to frame ``i``'s pixels."""
        cx, cy, roll, scale = self.pose(i)
        m = cv2.getRotationMatrix2D(self.FACE_CENTER, roll, scale)
        m[:, 2] += (cx - self.FACE_CENTER[0], cy - self.FACE_CENTER[1])
        return m

    def face_quad(self, i: int) -> np.ndarray:
        """The true face box (``FACE_BOX``) in frame ``i``: (4, 2) corners, turned with the face."""
        x0, y0, x1, y1 = self.FACE_BOX
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        m = self.photo_to_frame(i)
        return corners @ m[:, :2].T + m[:, 2]

    def in_face(self, i: int, pts: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which of the points (N, 2), in frame ``i``'s pixels, lie inside the true face box,
        grown by ``margin`` x its longer side on every edge -> (N,) bool."""
        m = cv2.invertAffineTransform(self.photo_to_frame(i))
        q = np.asarray(pts, dtype=np.float64) @ m[:, :2].T + m[:, 2]
        x0, y0, x1, y1 = self.FACE_BOX
        g = margin * max(x1 - x0, y1 - y0)
        return (q[:, 0] >= x0 - g) & (q[:, 0] <= x1 + g) & (q[:, 1] >= y0 - g) & (q[:, 1] <= y1 + g)

    def occluder(self, i: int) -> tuple[int, int, int, int] | None:
        """The occluding bar (x0, y0, x1, y1) of frame i, or None (covered 2 s out of 6)."""
        t = i / self.fps
        phase = (t % 6.0) - 3.5
        if not 0.0 <= phase < 2.0:
            return None
        cx, cy, _, scale = self.pose(i)
        half_w, half_h = int(28 * scale), int(120 * scale)
        x = int(cx - 110 * scale + 220 * scale * phase / 2.0)
        return (x - half_w, int(cy) - half_h, x + half_w, int(cy) + half_h)

    def frame(self, i: int) -> np.ndarray:
        m = self.photo_to_frame(i)
        out = self._background.copy()
        cv2.warpAffine(self._photo, m, self.size, dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        bar = self.occluder(i)
        if bar is not None:
            cv2.rectangle(out, bar[:2], bar[2:], (40, 40, 40), thickness=-1)
        return out

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.num_frames is not None and self._index >= self.num_frames:
            return None
        i = self._index
        self._index += 1
        return self.frame(i), i / self.fps


def open_source(spec: str | int | os.PathLike) -> FrameSource:
    """``0`` / ``"cam:0"`` camera (``"cam:0:1280x720@30"`` in a chosen mode), ``"demo"``, an
    image, a video file, or a folder of images.

    Raises:
        SourceError: the file is missing or unreadable, the camera cannot be opened.
    """
    if not isinstance(spec, os.PathLike):
        if str(spec).strip().lower() == "demo":
            return DemoSource()
        cam = parse_camera_spec(spec)
        if cam is not None:
            idx, mode = cam
            if mode is None:
                return CameraSource(idx)
            return CameraSource(idx, mode.width, mode.height, fps=mode.fps or None)
    p = Path(spec).expanduser()
    if p.is_dir():
        return FolderSource(p)
    if not p.exists():
        raise SourceError(f"{p}: no such file or directory")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(p)
    return VideoSource(p)


def list_cameras(max_index: int = 5, in_use: Iterable[int] = ()) -> list[int]:
    """Indexes 0..max_index-1 that open as cameras. On Linux only existing /dev/videoN
    are probed (probing absent devices is slow and noisy). Cameras in ``in_use`` (open in
    this app) count as present without being opened again, which a busy device may refuse."""
    found = []
    busy = set(in_use)
    for i in range(max_index):
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{i}"):
            continue
        if i in busy:
            found.append(i)
            continue
        with _quiet_opencv():
            cap = cv2.VideoCapture(i)
            ok = cap.isOpened()
            cap.release()
        if ok:
            found.append(i)
    return found


def camera_signature() -> tuple[str, ...] | None:
    """A cheap fingerprint of the attached video devices (their /dev/video* nodes, on
    Linux), to tell when cameras come and go without opening any; None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return tuple(sorted(n for n in os.listdir("/dev") if n.startswith("video")))
    except OSError:
        return None

"""Capture thread: reads a frame source into a latest-wins mailbox.

The source is opened inside the thread (opening a camera or a video can take a while),
frames are paced by their timestamps so files and the demo play in real time, and any
failure is reported through ``failed`` before the thread ends on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cv2
from PySide6.QtCore import QThread, Signal

from kpdesk.workers.mailbox import LatestMailbox
from kpdesk.workers.messages import FramePacket, frozen_array

log = logging.getLogger(__name__)

AUTO_SOURCE = "auto"


def describe_source(spec: str | int) -> str:
    from kpdesk.inference.sources import parse_camera_spec

    s = str(spec)
    cam = parse_camera_spec(s)
    if cam is not None:
        return f"camera {cam[0]}" + (f" ({cam[1]})" if cam[1] is not None else "")
    if s == "demo":
        return "demo face"
    return s


def _open(spec: str | int) -> tuple[Any, str | int]:
    """Open ``spec``; ``"auto"`` means the first camera that opens, else the demo source."""
    from kpdesk.inference import sources

    if str(spec) == AUTO_SOURCE:
        try:
            cams = list(sources.list_cameras())
        except Exception:  # noqa: BLE001 - probing is best effort; fall back to the demo
            log.exception("camera probe failed")
            cams = []
        for cam in cams:
            idx = _camera_index(cam)
            try:
                return sources.open_source(idx), idx
            except Exception as exc:  # noqa: BLE001
                log.warning("camera %s listed but failed to open: %s", idx, exc)
        return sources.open_source("demo"), "demo"
    return sources.open_source(spec), spec


def _camera_index(cam: Any) -> int:
    if isinstance(cam, int):
        return cam
    for attr in ("index", "id"):
        if hasattr(cam, attr):
            return int(getattr(cam, attr))
    if isinstance(cam, tuple | list):
        return int(cam[0])
    return int(cam)


class CaptureWorker(QThread):
    """Reads ``spec`` until stopped or the source fails.

    Files and the demo are paced by their timestamps (sources never sleep); a live
    camera is read as fast as it delivers. At the end of a video it starts again
    (``loop``); after the last still image (an image, or a folder) that image is
    re-sent a few times a second so model, overlay and occlusion changes still show.

    A live camera's frames are mirrored (flipped left-right, a selfie view) while
    ``mirror`` is set; the flag can change at any time and each ``FramePacket`` says
    whether it was applied. Everything downstream (models, overlays, occluders) works on the
    frame as shown, so landmarks are right in both views. A camera whose index is not in
    ``probe_modes`` (the cameras already probed) is asked which capture modes it accepts
    before it starts streaming. With ``wait_for`` (the previous capture thread) the device
    is opened only once that thread ended (up to 2 s): a camera reopened in another mode
    is still held by it for a moment.

    ``set_paused(True)`` stops delivering frames: a file, a folder or the demo is not read on
    (it resumes where it stopped), a live camera is still read (so its buffer never goes
    stale) and its frames are dropped. ``step()`` while paused delivers exactly one more
    frame: the next one of a file, the newest of a camera. A worker made with
    ``paused=True`` (a source opened while paused) delivers its first frame, then waits.

    Signals:
        opened(str spec, str description): the source is open; ``spec`` is the resolved one.
        failed(str message): the source could not be opened or stopped delivering.
        ended(str message): a finite source reached its end (it loops or holds its last frame).
        modes_found(int camera, list modes): the ``CameraMode`` list a probed camera accepts.
    """

    opened = Signal(str, str)
    failed = Signal(str)
    ended = Signal(str)
    modes_found = Signal(int, list)

    HOLD_FPS = 5.0

    def __init__(self, spec: str | int, mailbox: LatestMailbox[FramePacket], source_id: int,
                 realtime: bool = True, loop: bool = True, parent: Any = None, mirror: bool = False,
                 probe_modes: frozenset[int] | None = None, wait_for: CaptureWorker | None = None,
                 paused: bool = False) -> None:
        super().__init__(parent)
        self.spec = spec
        self.mailbox = mailbox
        self.source_id = source_id
        self.realtime = realtime
        self.loop = loop
        self.mirror = mirror  # read by the thread for every frame
        self.known_modes = probe_modes  # None: never probe
        self.wait_for = wait_for
        self.done = threading.Event()  # set when run() has returned (the source is closed)
        self.frames_read = 0
        self._live = False
        self._stop = threading.Event()
        self._gate = threading.Condition()
        self._paused = bool(paused)
        self._steps = 1 if paused else 0  # frames still to deliver while paused
        self.setObjectName(f"capture-{source_id}")

    def stop(self) -> None:
        """Ask the thread to end after the current read; never blocks."""
        self._stop.set()
        with self._gate:
            self._gate.notify_all()

    def set_paused(self, paused: bool) -> None:
        """Stop (or resume) delivering frames; never blocks."""
        with self._gate:
            self._paused = bool(paused)
            self._steps = 0
            self._gate.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def step(self) -> None:
        """While paused: deliver one more frame. Does nothing while playing."""
        with self._gate:
            if self._paused:
                self._steps += 1
                self._gate.notify_all()

    def _turn(self, wait: bool) -> tuple[bool, bool]:
        """May the next frame be delivered? With ``wait``, a pause blocks here until a step,
        a resume or ``stop()``. Returns (deliver, paced): ``paced`` is False when the frame
        comes after a pause (or is a step), so real-time pacing starts again from it."""
        with self._gate:
            if not self._paused:
                return True, True
            while wait and self._paused and self._steps == 0 and not self._stop.is_set():
                self._gate.wait(0.2)
            if self._paused and self._steps == 0:
                return False, False
            if self._paused:
                self._steps -= 1
            return True, False

    def run(self) -> None:
        try:
            if self.wait_for is not None:
                self.wait_for.done.wait(2.0)
                self.wait_for = None
            if not self._stop.is_set():
                self._run()
        finally:
            self.done.set()

    def _run(self) -> None:
        name = describe_source(self.spec)
        try:
            source, resolved = _open(self.spec)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, thread ends cleanly
            log.warning("cannot open source %s: %s", self.spec, exc)
            detail = str(exc)  # source errors usually name the source already
            self.failed.emit(f"Cannot open source: {detail}" if str(self.spec) in detail
                             else f"Cannot open {name}: {detail}")
            return
        name = describe_source(resolved)
        mode = getattr(source, "mode", None)
        if hasattr(source, "index") and mode is not None and getattr(mode, "width", 0) > 0:
            name = f"camera {source.index} ({mode})"  # the mode the camera actually gave
        index = getattr(source, "index", None)
        if self.known_modes is not None and index not in self.known_modes and hasattr(source, "probe_modes"):
            try:
                self.modes_found.emit(int(source.index), list(source.probe_modes()))
            except Exception as exc:  # noqa: BLE001 - the camera still streams in its current mode
                log.warning("probing the modes of %s failed: %s", name, exc)
        self.opened.emit(str(resolved), name)
        try:
            self._loop(source, resolved, name)
        except Exception as exc:  # noqa: BLE001 - never raise into Qt
            from kpdesk.inference.sources import SourceError

            if isinstance(exc, SourceError):
                self.failed.emit(f"{name} stopped delivering frames: {exc}")
            else:
                log.exception("capture thread crashed")
                self.failed.emit(f"{name}: capture failed: {exc!r}")
        finally:
            self._close(source, name)

    def _loop(self, source: Any, resolved: str | int, name: str) -> None:
        live = self._live = bool(getattr(source, "is_live", False))
        t_wall0: float | None = None
        t_src0 = 0.0
        ts_offset = 0.0  # keeps timestamps increasing across video loops (smoothing needs it)
        last: tuple[Any, float] | None = None
        while not self._stop.is_set():
            deliver, paced = self._turn(wait=not live)  # a paused camera is still read, and its frames dropped
            if self._stop.is_set():
                return
            if not paced:
                t_wall0 = None
            item = source.read()
            if item is None:
                if last is None:
                    self.failed.emit(f"{name}: delivered no frames")
                    return
                short = getattr(source, "shortfall", None)  # a truncated file says so
                if self.loop and _is_video(source):
                    if deliver and not paced:
                        self.step()  # a step that met the end of the file goes to the first frame
                    self.ended.emit(f"{short}; playing again" if short else f"{name}: end of video, playing again")
                    self._close(source, name)
                    source, _ = _open(resolved)
                    ts_offset = last[1] + 1.0 / float(getattr(source, "fps", None) or 30.0)
                    t_wall0 = None
                    continue
                self.ended.emit(f"{name}: last frame reached, holding it")
                self._hold(last[0], last[1], getattr(source, "frame_name", None))
                return
            frame, ts = item
            ts = float(ts) + ts_offset
            if live and not deliver:
                deliver, _ = self._turn(wait=False)  # a step asked for while this frame was read
                if not deliver:
                    last = (frame, ts)
                    continue
            if self.realtime and not live:
                now = time.monotonic()
                if t_wall0 is None or ts < t_src0 or (ts - t_src0) - (now - t_wall0) > 2.0:
                    t_wall0, t_src0 = now, ts
                ahead = (ts - t_src0) - (now - t_wall0)
                if ahead > 0 and self._stop.wait(ahead):
                    return
            last = (frame, ts)
            self._put(frame, ts, getattr(source, "frame_name", None))

    def _hold(self, frame: Any, ts: float, source_file: str | None = None) -> None:
        dt = 1.0 / self.HOLD_FPS
        while not self._stop.wait(dt):
            ts += dt
            if self._turn(wait=False)[0]:
                self._put(frame, ts, source_file)

    def _put(self, frame: Any, ts: float, source_file: str | None = None) -> None:
        mirrored = self._live and self.mirror
        if mirrored:
            frame = cv2.flip(frame, 1)
        self.mailbox.put(FramePacket(self.source_id, self.frames_read, ts, frozen_array(frame), mirrored,
                                     source_file))
        self.frames_read += 1

    @staticmethod
    def _close(source: Any, name: str) -> None:
        try:
            source.close()
        except Exception:  # noqa: BLE001
            log.exception("closing source %s", name)


def _is_video(source: Any) -> bool:
    from kpdesk.inference.sources import VideoSource

    return isinstance(source, VideoSource)

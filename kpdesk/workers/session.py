"""The live session: one capture thread and one inference thread joined by a mailbox.

Switching sources starts a new capture thread with a new source id and asks the old one
to stop; the mailbox ignores frames from anything but the active source, so the GUI
never waits for a camera read to return.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from kpdesk.workers.capture import CaptureWorker, describe_source
from kpdesk.workers.inference import InferenceSettings, InferenceWorker
from kpdesk.workers.mailbox import LatestMailbox
from kpdesk.workers.messages import FramePacket

log = logging.getLogger(__name__)

# Threads that did not stop when asked (a camera read or a model load that never
# returns). Kept referenced so Qt never destroys a running QThread, which aborts.
_STUCK: list[Any] = []


class _SourceGate(LatestMailbox[FramePacket]):
    """A mailbox that only accepts frames from the active source."""

    def __init__(self) -> None:
        super().__init__()
        self.active_source = -1

    def put(self, item: FramePacket) -> bool:
        if item.source_id != self.active_source:
            return True
        return super().put(item)


class LiveSession(QObject):
    """Owns the capture and inference threads.

    Signals:
        source_opened(str spec, str description)
        source_failed(str message): could not open, or stopped delivering (thread ended).
        source_ended(str message): a finite source reached its end.
        camera_modes(int camera, list modes): the capture modes a camera accepts (probed
            the first time it is opened in this session; ``camera_modes_cache`` keeps them).
    The inference worker's own signals (``result_available``, ``error``) are on ``.inference``.

    ``mirror`` (``set_mirror``) flips live camera frames left-right (a selfie view).
    ``paused`` (``set_paused``, ``step``) holds the frames at the source (see ``CaptureWorker``);
    a source opened while paused shows its first frame.
    """

    source_opened = Signal(str, str)
    source_failed = Signal(str)
    source_ended = Signal(str)
    camera_modes = Signal(int, list)

    def __init__(self, settings: InferenceSettings | None = None, realtime: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.mailbox = _SourceGate()
        self.inference = InferenceWorker(self.mailbox, settings)
        self.realtime = realtime
        self.capture: CaptureWorker | None = None
        self.source_spec: str | int | None = None
        self.mirror = True
        self.paused = False
        self.camera_modes_cache: dict[int, list] = {}
        self._next_id = 0
        self._retired: list[CaptureWorker] = []

    def start(self) -> None:
        if not self.inference.isRunning():
            self.inference.start()

    def open_source(self, spec: str | int) -> None:
        """Switch to ``spec`` (camera index or ``cam:N:WxH@FPS``, file, folder, ``"demo"`` or
        ``"auto"``); never blocks."""
        from kpdesk.inference.sources import parse_camera_spec

        previous = self.capture
        self._retire_capture()
        self._next_id += 1
        sid = self._next_id
        self.mailbox.active_source = sid
        self.source_spec = spec
        camera = str(spec) == "auto" or parse_camera_spec(str(spec)) is not None
        cap = CaptureWorker(spec, self.mailbox, sid, realtime=self.realtime, mirror=self.mirror,
                            probe_modes=frozenset(self.camera_modes_cache),
                            # The same camera in another mode: let the old thread release it first.
                            wait_for=previous if camera else None, paused=self.paused)
        cap.opened.connect(self._on_opened)
        cap.failed.connect(self._on_failed)
        cap.ended.connect(self._on_ended)
        cap.modes_found.connect(self._on_modes)
        self.capture = cap
        log.info("opening source %s (id %d)", describe_source(spec), sid)
        cap.start()

    def stop_source(self) -> None:
        self._retire_capture()
        self.mailbox.active_source = -1
        self.source_spec = None

    def _retire_capture(self) -> None:
        cap = self.capture
        self.capture = None
        if cap is None:
            return
        for sig in (cap.opened, cap.failed, cap.ended, cap.modes_found):
            try:
                sig.disconnect()
            except (RuntimeError, TypeError):
                pass
        cap.stop()
        self._retired.append(cap)
        cap.finished.connect(self._reap)
        self._reap()

    def _reap(self) -> None:
        alive = []
        for cap in self._retired:
            if cap.isFinished():
                cap.deleteLater()
            else:
                alive.append(cap)
        self._retired = alive

    def set_mirror(self, on: bool) -> None:
        """Mirror live camera frames (or not), from the next frame on; never blocks."""
        self.mirror = bool(on)
        if self.capture is not None:
            self.capture.mirror = self.mirror

    def set_paused(self, on: bool) -> None:
        """Pause (or resume) the frames at the source; never blocks."""
        self.paused = bool(on)
        if self.capture is not None:
            self.capture.set_paused(self.paused)

    def step(self) -> None:
        """While paused: let one more frame through (the next of a file, the newest of a camera)."""
        if self.paused and self.capture is not None:
            self.capture.step()

    def _on_modes(self, camera: int, modes: list) -> None:
        self.camera_modes_cache[camera] = list(modes)
        self.camera_modes.emit(camera, list(modes))

    def _on_opened(self, spec: str, description: str) -> None:
        if self.capture is not None and self.sender() is self.capture:
            self.source_spec = spec  # "auto" resolved to a camera (or the demo)
        self.source_opened.emit(spec, description)

    def _on_failed(self, message: str) -> None:
        self.source_failed.emit(message)

    def _on_ended(self, message: str) -> None:
        self.source_ended.emit(message)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Stop everything; the only place that waits for threads (application exit).

        Idempotent. A thread still busy after ``timeout_ms`` (e.g. loading a big model on a
        loaded machine) is left to finish on its own rather than destroyed while running.
        """
        caps: list[Any] = [c for c in [self.capture, *self._retired] if c is not None]
        for c in caps:
            c.stop()
        self.inference.stop()
        self.mailbox.close()
        for c in caps:
            if not c.wait(timeout_ms):
                log.warning("capture thread %s did not stop in time; leaving it", c.objectName())
                _STUCK.append(c)
        if not self.inference.wait(timeout_ms):
            log.warning("inference thread did not stop in time; leaving it")
            _STUCK.append(self.inference)
        self.capture = None
        self._retired = []

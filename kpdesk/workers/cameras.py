"""Keeps the list of cameras current while the app runs: cameras plugged in or pulled out
appear in / vanish from the source picker. Probing runs on the thread pool, never on the
GUI thread.

Every ``interval_ms`` a cheap fingerprint of the video devices is taken (on Linux the
/dev/video* nodes, no device opened); only when it changed, or where there is none (other
systems, then every ``slow_every``-th tick), are the cameras opened to see which work.
The camera the app is streaming from is passed as in use and counted without being
opened again (a busy device may refuse a second open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from kpdesk.workers.tasks import run_in_background

log = logging.getLogger(__name__)


def _default_list(in_use: Iterable[int]) -> list[int]:
    from kpdesk.inference.sources import list_cameras

    return list(list_cameras(in_use=in_use))


def _default_signature() -> Any:
    from kpdesk.inference.sources import camera_signature

    return camera_signature()


class CameraWatcher(QObject):
    """Signals: ``cameras_changed(list[int])`` with the working camera indexes, the first
    time and whenever they change."""

    cameras_changed = Signal(list)

    def __init__(self, interval_ms: int = 2000, in_use: Callable[[], Iterable[int]] = lambda: (),
                 list_fn: Callable[[Iterable[int]], list[int]] | None = None,
                 signature_fn: Callable[[], Any] | None = None, slow_every: int = 5,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.in_use = in_use
        self.list_fn = list_fn or _default_list
        self.signature_fn = signature_fn or _default_signature
        self.slow_every = max(1, slow_every)
        self.cameras: list[int] | None = None
        self.probes = 0  # full probes run (for tests and logs)
        self._signature: Any = None
        self._busy = False
        self._tick = 0
        self._rechecks = 0  # a device that just appeared may open only a moment later
        self._tasks: list[Any] = []
        self.timer = QTimer(self, interval=interval_ms, timeout=self.poll)

    def start(self) -> None:
        self.poll()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def poll(self) -> None:
        """Take the fingerprint (and probe if needed) in the background; one at a time."""
        if self._busy:
            return
        self._busy = True
        self._tick += 1
        in_use = tuple(self.in_use())
        force = self.cameras is None or self._rechecks > 0
        self._rechecks = max(0, self._rechecks - 1)
        slow_due = self._tick % self.slow_every == 0
        task = run_in_background(self._check, in_use, force, slow_due, self._signature, parent=self,
                                 on_done=self._on_done, on_failed=self._on_failed)
        self._tasks = [task]  # keep the signals object alive until it reports

    def _check(self, in_use: tuple[int, ...], force: bool, slow_due: bool, last_sig: Any) -> tuple[Any, Any]:
        """On a pool thread: (fingerprint, camera list or None when nothing changed)."""
        sig = self.signature_fn()
        if not force and ((sig is not None and sig == last_sig) or (sig is None and not slow_due)):
            return sig, None
        return sig, list(self.list_fn(in_use))

    def _on_done(self, result: tuple[Any, Any]) -> None:
        self._busy = False
        sig, cams = result
        if cams is None:
            return
        if self.cameras is not None and sig != self._signature:
            self._rechecks = 2
        self._signature = sig
        self.probes += 1
        cams = sorted(cams)
        if cams != self.cameras:
            log.info("cameras: %s", cams or "none")
            self.cameras = cams
            self.cameras_changed.emit(cams)

    def _on_failed(self, message: str) -> None:
        self._busy = False
        log.warning("camera probe failed: %s", message)

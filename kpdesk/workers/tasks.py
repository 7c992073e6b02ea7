"""One-off background calls (model install, snapshot writing, camera probing) off the GUI thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class TaskSignals(QObject):
    """``done(result)`` or ``failed(message)``, delivered on the thread that owns this object."""

    done = Signal(object)
    failed = Signal(str)


class _Runnable(QRunnable):
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], signals: TaskSignals) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.signals = signals

    def run(self) -> None:
        try:
            result = self.fn(*self.args)
        except Exception as exc:  # noqa: BLE001 - reported through the signal
            log.warning("background task %s failed: %s", getattr(self.fn, "__name__", self.fn), exc)
            self.signals.failed.emit(str(exc))
            return
        self.signals.done.emit(result)


def run_in_background(fn: Callable[..., Any], *args: Any, parent: QObject | None = None,
                      on_done: Callable[[Any], None] | None = None,
                      on_failed: Callable[[str], None] | None = None) -> TaskSignals:
    """Run ``fn(*args)`` on the global thread pool; callbacks run on ``parent``'s thread."""
    signals = TaskSignals(parent)
    if on_done is not None:
        signals.done.connect(on_done)
    if on_failed is not None:
        signals.failed.connect(on_failed)
    QThreadPool.globalInstance().start(_Runnable(fn, args, signals))
    return signals

"""Head pose over time: yaw, pitch and roll of the main face over the last 30 s."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from kpdesk.gui.plots import set_curve, time_plot
from kpdesk.vision.headpose import HeadPose
from kpdesk.workers.stats import RollingSeries

POSE_COLORS = {"yaw": (80, 200, 255), "pitch": (255, 150, 60), "roll": (170, 230, 120)}


class HeadPosePlot(QWidget):
    """``add(t, pose)`` per shown frame (cheap); the curves redraw on a timer while visible."""

    def __init__(self, window_s: float = 30.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.window_s = window_s
        self.rough = False  # the newest pose came from 5 points: the title says so
        self.plot = time_plot(self._title(), "degrees", window_s)
        self.plot.getPlotItem().enableAutoRange(axis="y", enable=False)
        self.plot.setYRange(-70, 70, padding=0)
        self.plot.setMinimumHeight(150)
        self.setMaximumHeight(240)  # the video keeps most of the height
        lay.addWidget(self.plot)
        self.series = {k: RollingSeries(window_s) for k in POSE_COLORS}
        self.curves = {k: self.plot.plot(name=k, pen={"color": c, "width": 2}) for k, c in POSE_COLORS.items()}
        self.timer = QTimer(self, interval=333, timeout=self.refresh)
        self.timer.start()

    def add(self, t: float, pose: HeadPose | None) -> None:
        """One sample at monotonic time ``t``; None (no face, no pose) leaves a gap."""
        nan = float("nan")
        for k, s in self.series.items():
            s.append(t, getattr(pose, k) if pose is not None else nan)
        rough = bool(pose is not None and pose.rough)
        if pose is not None and rough != self.rough:
            self.rough = rough
            self.plot.setTitle(self._title())

    def _title(self) -> str:
        extra = " · rough: from 5 points" if self.rough else ""
        return f"Head pose (last {self.window_s:.0f} s){extra}"

    def clear(self) -> None:
        for s in self.series.values():
            s.clear()
        self.refresh()

    def refresh(self) -> None:
        if not self.isVisible():
            return
        now = time.monotonic()
        for k, s in self.series.items():
            t, v = s.arrays(now)
            set_curve(self.curves[k], t, v)

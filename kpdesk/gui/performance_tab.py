"""Performance view: FPS and per-stage latency over the last 30 s, drops, threads."""

from __future__ import annotations

import os
import time

from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from kpdesk.gui.plots import (
    STAGE_COLORS,
    VARIANT_COLORS,
    StatTile,
    fmt_ms,
    recent_mean,
    robust_y_range,
    set_curve,
    time_plot,
)
from kpdesk.workers.stats import STAGE_NAMES, PerfHistory


class PerformanceTab(QWidget):
    """Reads a ``PerfHistory``; ``refresh()`` is called by a timer, never per frame."""

    def __init__(self, history: PerfHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.primary_label = ""
        lay = QVBoxLayout(self)
        tiles = QHBoxLayout()
        self.tiles = {
            "fps": StatTile("frames / s"),
            "total": StatTile("latency", unit="ms"),
            "detect": StatTile("detect", unit="ms"),
            "preprocess": StatTile("preprocess", unit="ms"),
            "inference": StatTile("inference", unit="ms"),
            "decode": StatTile("decode", unit="ms"),
            "dropped": StatTile("frames dropped"),
            "threads": StatTile("onnxruntime threads"),
        }
        for t in self.tiles.values():
            tiles.addWidget(t)
        lay.addLayout(tiles)
        self.subtitle = QLabel("")
        self.subtitle.setStyleSheet("color:#9aa4b0;")
        lay.addWidget(self.subtitle)
        grid = QGridLayout()
        self.fps_plot = time_plot("Frame rate (last 30 s)", "frames / s", history.window_s)
        self.stage_plot = time_plot("Per-stage latency (last 30 s)", "ms", history.window_s)
        self.fps_plot.getPlotItem().enableAutoRange(axis="y", enable=False)
        self.stage_plot.getPlotItem().enableAutoRange(axis="y", enable=False)
        grid.addWidget(self.fps_plot, 0, 0)
        grid.addWidget(self.stage_plot, 0, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        lay.addLayout(grid, 1)
        self.fps_curve = self.fps_plot.plot(name="processed", pen={"color": VARIANT_COLORS[0], "width": 2})
        self.stage_curves = {
            name: self.stage_plot.plot(name=name,
                                       pen={"color": STAGE_COLORS[name], "width": 2 if name == "total" else 1.5})
            for name in STAGE_NAMES
        }

    def refresh(self) -> None:
        h = self.history
        now = time.monotonic()
        t, v = h.fps.arrays(now)
        set_curve(self.fps_curve, t, v)
        robust_y_range(self.fps_plot, [v], floor=5.0)
        fps = h.fps.last(0.0)
        self.tiles["fps"].set_value(f"{fps:.1f}", "#7fdcff")
        label = self.primary_label if self.primary_label in h.variants else next(iter(h.variants), "")
        vh = h.variants.get(label)
        totals = []
        for name in STAGE_NAMES:
            if vh is None:
                set_curve(self.stage_curves[name], t[:0], v[:0])
                self.tiles[name].set_value("–")
                continue
            st, sv = vh.stages[name].arrays(now)
            # Curves of 0.5 s means: 30 s at 30 fps is more samples than the plot has pixels.
            bt, bv = vh.stages[name].binned(now, 0.5)
            set_curve(self.stage_curves[name], bt, bv)
            if name == "total":
                totals.append(bv)
            # The big numbers are means over the last 2 s: readable, and not one frame's luck.
            self.tiles[name].set_value(fmt_ms(recent_mean(st, sv)))
        robust_y_range(self.stage_plot, totals, floor=2.0)
        dropped = h.capture_dropped
        self.tiles["dropped"].set_value(str(dropped), "#ffb347" if dropped else None)
        threads = h.ort_threads
        self.tiles["threads"].set_value(str(threads) if threads > 0 else f"auto ({os.cpu_count()})")
        self.subtitle.setText(
            f"Stages of: {label or '—'}   ·   frames drawn: {h.frames}   ·   results skipped by the display: "
            f"{h.display_dropped}   ·   capture frames dropped: {h.capture_dropped}")

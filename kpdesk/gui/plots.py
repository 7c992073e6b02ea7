"""pyqtgraph helpers: dark time-series plots over the last N seconds, and big-number tiles."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

STAGE_COLORS = {
    "detect": (255, 170, 60),
    "preprocess": (120, 200, 255),
    "inference": (240, 90, 120),
    "decode": (150, 230, 120),
    "total": (235, 235, 235),
}
VARIANT_COLORS = [(80, 200, 255), (255, 150, 60), (170, 120, 255), (240, 110, 160)]
REFERENCE_COLOR = (120, 220, 120)  # the MediaPipe reference wherever it is plotted beside kpdesk's models

# No antialiasing: these plots repaint several times a second on the GUI thread.
pg.setConfigOptions(antialias=False, background=(22, 24, 28), foreground=(200, 200, 200))


def time_plot(title: str, y_label: str, window_s: float = 30.0) -> pg.PlotWidget:
    """A plot whose x axis is 'seconds ago' from -window_s to 0."""
    w = pg.PlotWidget()
    w.setTitle(title, size="11pt")
    w.setLabel("left", y_label)
    w.setLabel("bottom", "seconds")
    for axis in ("left", "bottom"):
        # Major grid lines only: the minor ones cost most of a plot's paint time.
        w.getAxis(axis).setStyle(maxTickLevel=0)
    w.showGrid(x=True, y=True, alpha=0.25)
    w.setXRange(-window_s, 0, padding=0.01)
    w.setMouseEnabled(x=False, y=False)
    w.hideButtons()
    w.getPlotItem().enableAutoRange(axis="y", enable=True)
    legend_below(w)
    return w


def legend_below(plot: pg.PlotWidget) -> pg.LegendItem:
    """The plot's legend on one line in a strip under the x axis, outside the data area, so
    it never covers a curve. Curves made with ``plot.plot(name=...)`` appear in it, as with
    pyqtgraph's own ``addLegend`` (which puts the legend inside the data area). The strip is
    as tall as the legend (none while it is empty)."""
    pi = plot.getPlotItem()
    legend = pg.LegendItem(offset=None, labelTextSize="9pt", colCount=12, frame=False, horSpacing=4)
    legend.layout.setContentsMargins(0, 0, 0, 0)
    legend.setParentItem(pi)
    left, top, right, bottom = pi.layout.getContentsMargins()

    def reserve() -> None:
        pi.layout.setContentsMargins(left, top, right, bottom + (legend.height() if legend.items else 0))

    legend.geometryChanged.connect(reserve)
    legend.anchor(itemPos=(1, 1), parentPos=(1, 1), offset=(-6, 0))
    pi.legend = legend
    return legend


def robust_y_range(plot: pg.PlotWidget, values: list[np.ndarray], floor: float = 1.0) -> None:
    """Y from 0 to a little above the 95th percentile, so one warm-up spike does not
    flatten every other sample against the axis."""
    v = np.concatenate([x[np.isfinite(x)] for x in values if len(x)]) if any(len(x) for x in values) else np.zeros(0)
    top = max(float(np.percentile(v, 95)) * 1.25, floor) if len(v) else floor
    plot.setYRange(0.0, top, padding=0)


def recent_mean(t: np.ndarray, v: np.ndarray, seconds: float = 2.0) -> float:
    """Mean of the samples of the last ``seconds`` (t is 'seconds ago', <= 0); NaN if none."""
    m = t >= -seconds
    return float(np.mean(v[m])) if m.any() else float("nan")


def set_curve(curve: pg.PlotDataItem, t: np.ndarray, v: np.ndarray) -> None:
    if len(t):
        curve.setData(t, v)
    else:
        curve.setData([], [])


class StatTile(QFrame):
    """A big number with a caption under it."""

    def __init__(self, caption: str, parent: QWidget | None = None, unit: str = "") -> None:
        super().__init__(parent)
        self.setObjectName("tile")
        self.setStyleSheet("QFrame#tile { background:#1d2127; border:1px solid #333a44; border-radius:6px; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.setSpacing(0)
        self.value = QLabel("–")
        self.value.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.value.setStyleSheet("font-size: 26pt; font-weight: 600; color:#f2f2f2; border:none;")
        self.caption = QLabel(caption + (f" ({unit})" if unit else ""))
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setStyleSheet("font-size: 9pt; color:#9aa4b0; border:none;")
        for label in (self.value, self.caption):
            # Tiles may shrink below their text on narrow windows rather than force the window wide.
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(40)
            lay.addWidget(label)

    def set_value(self, text: str, color: str | None = None) -> None:
        self.value.setText(text)
        if color:
            self.value.setStyleSheet(f"font-size: 26pt; font-weight: 600; color:{color}; border:none;")


def fmt_ms(v: float) -> str:
    if v != v:  # NaN
        return "–"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"

"""Compare mode: 2 or 3 variants on the same video, side by side, with their latency and
how far apart their landmarks are.

Each variant runs on its own thread at its own rate (see ``kpdesk.workers.inference``), so
each pane shows the newest frame its variant processed and its own frame rate; the
distance between two variants is measured on frames both of them processed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kpdesk.gui.live_tab import DECODE_CHOICES, fill_model_combo
from kpdesk.gui.plots import VARIANT_COLORS, fmt_ms, robust_y_range, set_curve, time_plot
from kpdesk.gui.render import OverlayOptions, render_variant
from kpdesk.gui.text import wrap_lines
from kpdesk.gui.video_view import VideoView
from kpdesk.inference.catalog import CatalogEntry
from kpdesk.inference.reference import is_reference
from kpdesk.workers.agreement import Agreement
from kpdesk.workers.messages import InferenceResult, VariantResult, VariantSpec
from kpdesk.workers.stats import PerfHistory, RollingSeries

SLOT_LABELS = ("A", "B", "C")
FOOTER_SEPARATOR = " • "  # between items (a line may break on either side); "·" is inside them


def unbreakable(html: str) -> str:
    """``html`` (one footer item) as a span a line does not break inside: no wrapping at its
    spaces, and a word joiner after the characters a line may otherwise break after."""
    for ch in ("–", "-", "/"):
        html = html.replace(ch, ch + "\u2060")
    return f"<span style='white-space:nowrap'>{html}</span>"

PREFERRED = (("teacher",), ("student",), ("student-0.25x", "student_0.25x", "student-025x"))


class CompareTab(QWidget):
    """Signals: ``variants_changed()`` when a slot's model / detector / decode changes;
    ``rect_selected(x0, y0, x1, y1)`` when the user drags an occluder on any view."""

    variants_changed = Signal()
    rect_selected = Signal(float, float, float, float)

    def __init__(self, history: PerfHistory, detectors: list[str], overlay: Callable[[], OverlayOptions],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.overlay = overlay
        self.model_combos: list[QComboBox] = []
        self.detector_combos: list[QComboBox] = []
        self.decode_combos: list[QComboBox] = []
        self.views: list[VideoView] = []
        self.agreements: dict[str, RollingSeries] = {}
        self.last_agreements: dict[str, Agreement | None] = {}
        self.matched_frames: dict[str, int] = {}  # pair -> frames both variants processed
        self.shown: dict[str, VariantResult] = {}  # label -> the result its pane shows
        self.catalog: list[CatalogEntry] = []  # the models the slots offer, once every slot is filled
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.controls = QWidget()
        controls = QHBoxLayout(self.controls)
        controls.setContentsMargins(0, 0, 0, 0)
        for label in SLOT_LABELS:
            box = QWidget()  # no frame, no title: the slot's letter leads its one row
            box.setToolTip(f"Variant {label}")
            bl = QGridLayout(box)
            mc = QComboBox()
            mc.setMinimumContentsLength(8)
            mc.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            dc = QComboBox()
            for c in (dc, xc := QComboBox()):  # they may shrink: a narrow window still fits three slots
                c.setMinimumContentsLength(3)
                c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            for d in ["auto", *detectors]:
                dc.addItem(d, d)
            for text, mode in DECODE_CHOICES:
                xc.addItem(text, mode)
            for c in (mc, dc, xc):
                c.currentIndexChanged.connect(lambda _i: self.variants_changed.emit())
            mc.setToolTip(f"Variant {label}: model")
            dc.setToolTip(f"Variant {label}: face detector")
            xc.setToolTip(f"Variant {label}: decode mode")
            # One row per variant: the video panes keep the height.
            bl.setContentsMargins(4, 2, 12, 2)
            bl.addWidget(QLabel(f"<b>{label}</b>"), 0, 0)
            bl.addWidget(mc, 0, 1)
            bl.addWidget(dc, 0, 2)
            bl.addWidget(xc, 0, 3)
            bl.setColumnStretch(1, 5)
            bl.setColumnStretch(2, 2)
            bl.setColumnStretch(3, 3)
            controls.addWidget(box)
            self.model_combos.append(mc)
            self.detector_combos.append(dc)
            self.decode_combos.append(xc)
        lay.addWidget(self.controls)
        split = QSplitter(Qt.Orientation.Vertical)
        views = QWidget()
        self.view_row = QHBoxLayout(views)
        self.view_row.setContentsMargins(0, 0, 0, 0)
        for _ in SLOT_LABELS:
            v = VideoView(placeholder="—")
            v.setMinimumSize(160, 120)
            v.rect_selected.connect(self.rect_selected)
            self.view_row.addWidget(v)
            self.views.append(v)
        split.addWidget(views)
        lay.addWidget(split, 1)
        self.plots = plots = QWidget()
        bottom = QGridLayout(plots)
        bottom.setContentsMargins(0, 0, 0, 0)
        self.latency_plot = time_plot("Latency per variant (last 30 s)", "ms / frame", history.window_s)
        self.agree_plot = time_plot("Mean distance between variants (last 30 s)", "% of inter-ocular distance",
                                    history.window_s)
        bottom.addWidget(self.latency_plot, 0, 0)
        bottom.addWidget(self.agree_plot, 0, 1)
        self.summary = QLabel("")
        self.summary.setStyleSheet("font-size: 12pt; color:#e8e8e8;")
        self.summary.setWordWrap(True)
        bottom.addWidget(self.summary, 1, 0, 1, 2)
        split.addWidget(plots)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 1)
        plots.setMinimumHeight(190)  # two readable plots and the footer, the panes take the rest
        self.latency_plot.getPlotItem().enableAutoRange(axis="y", enable=False)
        self.agree_plot.getPlotItem().enableAutoRange(axis="y", enable=False)
        self.latency_curves = {lab: self.latency_plot.plot(name=lab, pen={"color": VARIANT_COLORS[i], "width": 2})
                               for i, lab in enumerate(SLOT_LABELS)}
        self.agree_curves: dict[str, object] = {}

    def set_video_only(self, on: bool) -> None:
        """Fullscreen video: only the panes, without the pickers, the plots and the footer."""
        self.controls.setVisible(not on)
        self.plots.setVisible(not on)

    # ---- configuration ----------------------------------------------------------------
    def set_catalog(self, entries: list[CatalogEntry]) -> None:
        ok = [e for e in entries if e.ok and not is_reference(e.onnx_path)]  # the reference: only when picked
        for i, combo in enumerate(self.model_combos):
            first = combo.count() == 0
            fill_model_combo(combo, entries, allow_none=(i == 2))
            if first:
                self._preselect(combo, ok, i)
        self.catalog = list(entries)  # set once every slot is filled: set_models may run from variants_changed
        self.variants_changed.emit()

    def set_models(self, names: list[str]) -> list[str]:
        """Put the usable catalog models ``names`` (``mediapipe``: the reference) into slots A, B, C in that
        order; with two, slot C is emptied. Returns the names that are not usable here."""
        paths = {e.name: str(e.onnx_path) for e in self.catalog if e.ok}
        missing = [n for n in names if n not in paths]
        chosen = [paths[n] for n in names if n in paths][: len(SLOT_LABELS)]
        for i, combo in enumerate(self.model_combos):
            want = chosen[i] if i < len(chosen) else None
            if want is None and i < 2:
                continue  # slots A and B always hold a model
            combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(want), 0))
            combo.blockSignals(False)
        self.variants_changed.emit()
        return missing

    @staticmethod
    def _preselect(combo: QComboBox, ok: list[CatalogEntry], i: int) -> None:
        names = {e.name: str(e.onnx_path) for e in ok}
        for want in PREFERRED[i]:
            if want in names:
                combo.setCurrentIndex(combo.findData(names[want]))
                return
        if i < 2 and ok:
            combo.setCurrentIndex(combo.findData(str(ok[min(i, len(ok) - 1)].onnx_path)))

    def variant_specs(self) -> list[VariantSpec]:
        specs = []
        for label, mc, dc, xc in zip(SLOT_LABELS, self.model_combos, self.detector_combos, self.decode_combos):
            path = mc.currentData()
            if path:
                specs.append(VariantSpec(label=label, model_path=Path(path), detector=dc.currentData() or "auto",
                                         decode_mode=xc.currentData()))
        return specs

    # ---- results ----------------------------------------------------------------------
    def show_result(self, res: InferenceResult, force: bool = False) -> None:
        """Draw each variant's newest result in its pane (only the panes whose variant has a
        new one, unless ``force``) and take in the pair agreements that came with it."""
        by_label = {vr.spec.label: vr for vr in res.variants}
        wanted = {spec.label for spec in self.variant_specs()}
        opts = self.overlay()
        for label, view in zip(SLOT_LABELS, self.views):
            vr = by_label.get(label)
            if vr is None:
                view.setVisible(label != "C" or label in wanted)
                self.shown.pop(label, None)
                if label in wanted:
                    if view.frame is None:
                        view.clear("starting…")
                else:
                    view.clear("no model")
                continue
            view.setVisible(True)
            if not force and self.shown.get(label) is vr:
                continue  # this variant has nothing new yet (it runs at its own rate)
            self.shown[label] = vr
            frame = vr.frame if vr.frame is not None else res.frame
            img = render_variant(frame.frame_bgr, vr, opts, vr.occluder_quad if vr.frame is not None
                                 else res.occluder_quad)
            caption = f"{label}: {vr.model_name or Path(str(vr.spec.model_path)).stem} · {vr.fps:.0f} fps"
            if vr.result is not None:
                lines = [f"{vr.result.timings.total:.1f} ms · {vr.spec.decode_mode or 'default'} · "
                         f"{vr.result.detector_name}"]
            else:
                lines = wrap_lines(vr.error or "no result", 60, 3)  # never cut before its fix
            view.set_frame(img, caption, lines)
        self._take_agreements(res)

    def _take_agreements(self, res: InferenceResult) -> None:
        for pa in res.agreements:
            self.last_agreements[pa.pair] = pa.agreement
            self.matched_frames[pa.pair] = self.matched_frames.get(pa.pair, 0) + 1
            ag = pa.agreement
            if ag is not None:
                series = self.agreements.setdefault(pa.pair, RollingSeries(self.history.window_s))
                series.append(pa.t, ag.mean_pct_iod if ag.mean_pct_iod is not None else np.nan)

    def refresh(self) -> None:
        """Timer tick: redraw the curves and the summary line."""
        now = time.monotonic()
        parts = []
        shown = []
        for lab, curve in self.latency_curves.items():
            vh = self.history.variants.get(lab)
            if vh is None:
                set_curve(curve, np.zeros(0), np.zeros(0))
                continue
            t, v = vh.stages["total"].arrays(now)
            bt, bv = vh.stages["total"].binned(now, 0.5)
            set_curve(curve, bt, bv)
            shown.append(bv)
            vr = self.shown.get(lab)
            if len(v) and vr is not None:
                # Each variant runs on its own thread: its frame rate is its own.
                ms = float(np.mean(v[-30:]))
                parts.append(unbreakable(f"<b>{lab}</b> {fmt_ms(ms)} ms · {vr.fps:.0f} fps"))
        robust_y_range(self.latency_plot, shown, floor=2.0)
        colors = [(255, 255, 255), (120, 255, 200), (255, 200, 120)]
        agree_values = []
        for i, (key, series) in enumerate(self.agreements.items()):
            if key not in self.agree_curves:
                self.agree_curves[key] = self.agree_plot.plot(name=key, pen={"color": colors[i % 3], "width": 2})
            t, v = series.arrays(now)
            set_curve(self.agree_curves[key], t, v)  # type: ignore[arg-type]
            agree_values.append(v)
        # Typical disagreement is a few %; a variant that loses the face spikes far above and
        # runs off the top rather than flattening everything else.
        robust_y_range(self.agree_plot, agree_values, floor=5.0)
        wanted = {spec.label for spec in self.variant_specs()}
        for key, ag in self.last_agreements.items():
            if set(key.split("–")) <= wanted:
                text = ag.text() if ag is not None else "no common face"
                parts.append(unbreakable(f"<b>{key}</b> {text} · {self.matched_frames.get(key, 0)} shared frames"))
        # A narrow window wraps the footer between items, never inside one.
        self.summary.setText(FOOTER_SEPARATOR.join(parts))

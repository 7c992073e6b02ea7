"""A widget that shows a BGR frame, scaled to fit, and lets the user drag a rectangle on it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def bgr_to_qimage(frame_bgr: np.ndarray) -> QImage:
    """(H, W, 3) uint8 BGR -> a QImage that owns a copy of the pixels."""
    a = np.ascontiguousarray(frame_bgr)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, a.strides[0], QImage.Format.Format_BGR888).copy()


class VideoView(QWidget):
    """Draws the latest rendered frame with an optional caption.

    Signals:
        rect_selected(float x0, float y0, float x1, float y1): a drag, in image pixels.
    """

    rect_selected = Signal(float, float, float, float)

    def __init__(self, parent: QWidget | None = None, placeholder: str = "Waiting for frames…") -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 180)
        self.setMouseTracking(False)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._image: QImage | None = None
        self._frame: np.ndarray | None = None
        self.caption = ""
        self.caption_lines: list[str] = []
        self.badge = ""  # a state drawn at the top right, e.g. "paused"
        self.placeholder = placeholder
        self.selection_enabled = True
        self._drag_start: QPointF | None = None
        self._drag_now: QPointF | None = None

    # ---- content ----------------------------------------------------------------------
    def set_frame(self, frame_bgr: np.ndarray, caption: str = "", lines: list[str] | None = None) -> None:
        """Show ``frame_bgr`` (H, W, 3) uint8; the array is kept (read-only use) for snapshots."""
        self._frame = frame_bgr
        self._image = bgr_to_qimage(frame_bgr)
        self.caption = caption
        self.caption_lines = lines or []
        self.update()

    def set_badge(self, text: str) -> None:
        if text != self.badge:
            self.badge = text
            self.update()

    def clear(self, placeholder: str | None = None) -> None:
        self._frame = None
        self._image = None
        if placeholder is not None:
            self.placeholder = placeholder
        self.update()

    @property
    def frame(self) -> np.ndarray | None:
        """The last rendered frame (with overlays), BGR."""
        return self._frame

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(800, 600)

    # ---- geometry ---------------------------------------------------------------------
    def image_rect(self) -> QRectF:
        """Where the image is drawn in widget coordinates (aspect ratio kept, centred)."""
        if self._image is None:
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        s = min(self.width() / iw, self.height() / ih)
        w, h = iw * s, ih * s
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Image pixel-centre coordinates -> widget coordinates."""
        r = self.image_rect()
        if self._image is None:
            return QPointF(x, y)
        s = r.width() / self._image.width()
        return QPointF(r.left() + (x + 0.5) * s, r.top() + (y + 0.5) * s)

    def widget_to_image(self, p: QPointF) -> tuple[float, float]:
        r = self.image_rect()
        if self._image is None or r.width() <= 0:
            return (p.x(), p.y())
        s = r.width() / self._image.width()
        return ((p.x() - r.left()) / s - 0.5, (p.y() - r.top()) / s - 0.5)

    # ---- painting ---------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 26, 30))
        if self._image is None:
            p.setPen(QColor(160, 160, 160))
            p.drawText(self.rect().adjusted(20, 20, -20, -20),
                       int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.placeholder)
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(self.image_rect(), self._image)
        if self._drag_start is not None and self._drag_now is not None:
            p.setPen(QPen(QColor(255, 220, 0), 2, Qt.PenStyle.DashLine))
            p.setBrush(QColor(255, 220, 0, 50))
            p.drawRect(QRectF(self._drag_start, self._drag_now).normalized())
        if self.caption or self.caption_lines:
            self._paint_caption(p)
        if self.badge:
            self._paint_badge(p)
        p.end()

    def _paint_badge(self, p: QPainter) -> None:
        f = QFont(self.font())
        f.setPointSizeF(max(9.0, f.pointSizeF() * 1.05))
        f.setBold(True)
        p.setFont(f)
        fm = p.fontMetrics()
        r = self.image_rect()
        w, h = fm.horizontalAdvance(self.badge) + 16, fm.height() + 8
        box = QRectF(r.right() - 6 - w, r.top() + 6, w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(200, 120, 0, 200))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor(255, 255, 255))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.badge)

    def _paint_caption(self, p: QPainter) -> None:
        lines = ([self.caption] if self.caption else []) + self.caption_lines
        f = QFont(self.font())
        f.setPointSizeF(max(9.0, f.pointSizeF() * 1.05))
        f.setBold(True)
        p.setFont(f)
        fm = p.fontMetrics()
        room = max(int(self.image_rect().width()) - 26, 60)
        lines = [fm.elidedText(s, Qt.TextElideMode.ElideMiddle, room) for s in lines]  # the end is the fix
        w = max(fm.horizontalAdvance(s) for s in lines) + 14
        h = fm.height() * len(lines) + 8
        r = self.image_rect()
        box = QRectF(r.left() + 6, r.top() + 6, w, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor(240, 240, 240))
        for i, s in enumerate(lines):
            p.drawText(QPointF(box.left() + 7, box.top() + 4 + fm.ascent() + i * fm.height()), s)

    # ---- rectangle selection ----------------------------------------------------------
    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self.selection_enabled and self._image is not None and e.button() == Qt.MouseButton.LeftButton:
            self._drag_start = e.position()
            self._drag_now = e.position()
            self.update()
        super().mousePressEvent(e)

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._drag_start is not None:
            self._drag_now = e.position()
            self.update()
        super().mouseMoveEvent(e)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._drag_start is not None and e.button() == Qt.MouseButton.LeftButton:
            a, b = self._drag_start, e.position()
            self._drag_start = self._drag_now = None
            self.update()
            if abs(a.x() - b.x()) >= 4 and abs(a.y() - b.y()) >= 4:
                x0, y0 = self.widget_to_image(a)
                x1, y1 = self.widget_to_image(b)
                self.rect_selected.emit(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        super().mouseReleaseEvent(e)

"""The keyboard shortcuts' overlay: a translucent sheet over the window that lists them
(opened with ``?`` or F1, closed with any key or click)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRectF, Qt
from PySide6.QtGui import QAction, QColor, QFont, QKeySequence, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

SPOKEN = {".": ". (full stop)"}  # keys too small to see on their own


def shortcut_text(action: QAction) -> str:
    """The action's shortcuts as shown to a user, e.g. ``"Space"``, ``"? or F1"``."""
    keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
    return " or ".join(SPOKEN.get(k, k) for k in keys if k)


class ShortcutOverlay(QWidget):
    """Covers its parent and lists ``(keys, what)`` rows; hides on any key press or click.

    It follows its parent's size. While shown it takes the keyboard focus and keeps the
    shortcuts from firing, so the key that closes it does nothing else.
    """

    def __init__(self, parent: QWidget, title: str = "Keyboard shortcuts") -> None:
        super().__init__(parent)
        self.title = title
        self.rows: list[tuple[str, str]] = []
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground, True)
        parent.installEventFilter(self)
        self.hide()

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        self.rows = list(rows)
        self.update()

    def open(self) -> None:
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()
        self.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize and self.isVisible():
            self.setGeometry(self.parentWidget().rect())
        return False

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ShortcutOverride and self.isVisible():
            e.accept()  # the key comes to keyPressEvent (and closes the sheet) instead of a shortcut
            return True
        return super().event(e)

    def keyPressEvent(self, e: object) -> None:  # noqa: N802 - Qt API
        self.hide()

    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self.hide()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(10, 12, 15, 215))
        big = QFont(self.font())
        big.setPointSizeF(max(11.0, big.pointSizeF() * 1.5))
        big.setBold(True)
        body = QFont(self.font())
        body.setPointSizeF(max(10.0, body.pointSizeF() * 1.15))
        keys_font = QFont(body)
        keys_font.setBold(True)
        p.setFont(body)
        fm = p.fontMetrics()
        line = int(fm.height() * 1.6)
        key_w = max([fm.horizontalAdvance(k) for k, _ in self.rows] + [60]) + 40
        what_w = max([fm.horizontalAdvance(w) for _, w in self.rows] + [200])
        w = min(key_w + what_w + 60, self.width() - 20)
        h = line * (len(self.rows) + 3)
        box = QRectF((self.width() - w) / 2, max(10.0, (self.height() - h) / 2), w, h)
        p.setPen(QColor(70, 80, 92))
        p.setBrush(QColor(30, 33, 38, 240))
        p.drawRoundedRect(box, 8, 8)
        p.setFont(big)
        p.setPen(QColor(240, 240, 240))
        p.drawText(QRectF(box.left(), box.top() + 10, box.width(), line), Qt.AlignmentFlag.AlignCenter, self.title)
        y = box.top() + 10 + line * 1.4
        for keys, what in self.rows:
            p.setFont(keys_font)
            p.setPen(QColor(127, 220, 255))
            p.drawText(QRectF(box.left() + 30, y, key_w - 10, line), Qt.AlignmentFlag.AlignVCenter, keys)
            p.setFont(body)
            p.setPen(QColor(225, 228, 232))
            p.drawText(QRectF(box.left() + 30 + key_w, y, what_w + 10, line), Qt.AlignmentFlag.AlignVCenter, what)
            y += line
        p.setFont(body)
        p.setPen(QColor(150, 156, 164))
        p.drawText(QRectF(box.left(), y + line * 0.3, box.width(), line), Qt.AlignmentFlag.AlignCenter,
                   "Any key or click closes this.")
        p.end()

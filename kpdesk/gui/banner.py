"""A non-modal message strip at the top of the window (errors and notices)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

_STYLES = {
    "error": "background:#5c1a1a; color:#ffdede; border:1px solid #a33;",
    "warning": "background:#5a4a12; color:#fff2c8; border:1px solid #a88a2a;",
    "info": "background:#16384f; color:#dff0ff; border:1px solid #2d6f99;",
}


class MessageBanner(QFrame):
    """Shows the latest message; repeats of the same text bump a counter instead of stacking.

    Info messages hide themselves after a few seconds; errors stay until dismissed.
    """

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self._text = ""
        self._count = 0
        self.level = ""
        self.history: list[tuple[float, str, str]] = []
        self._hide_timer = QTimer(self, singleShot=True, timeout=self.dismiss)
        self.hide()

    @property
    def text(self) -> str:
        return self._text

    def show_message(self, text: str, level: str = "error", timeout_ms: int | None = None) -> None:
        self.history.append((time.time(), level, text))
        del self.history[:-200]
        if text == self._text and not self.isHidden():
            self._count += 1
        else:
            self._count = 1
        self._text = text
        self.level = level
        shown = text if self._count == 1 else f"{text}  (×{self._count})"
        self.label.setText(shown)
        style = _STYLES.get(level, _STYLES["info"])
        self.setStyleSheet(f"QFrame#banner {{{style} border-radius:4px;}}")
        self.label.setStyleSheet(style.split(";")[1] + "; border:none; background:transparent;")
        self.show()
        if timeout_ms is None:
            timeout_ms = 6000 if level == "info" else 0
        if timeout_ms:
            self._hide_timer.start(timeout_ms)
        else:
            self._hide_timer.stop()

    def dismiss(self) -> None:
        self._hide_timer.stop()
        self._text = ""
        self._count = 0
        self.hide()
        self.dismissed.emit()

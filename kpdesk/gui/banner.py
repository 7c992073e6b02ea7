"""A non-modal message strip at the top of the window (errors, warnings, notices)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

_STYLES = {
    "error": ("#5c1a1a", "#ffdede", "#a33"),
    "warning": ("#5a4a12", "#fff2c8", "#a88a2a"),
    "info": ("#16384f", "#dff0ff", "#2d6f99"),
}
_SEVERITY = {"info": 0, "warning": 1, "error": 2}
INFO_TIMEOUT_S = 6.0
MAX_LINES = 3


@dataclass
class _Entry:
    level: str
    text: str
    count: int
    since: float


class MessageBanner(QFrame):
    """Shows the last few distinct messages, newest first; a repeated message bumps its
    counter instead of stacking. Notices expire after a few seconds; warnings and errors
    stay until dismissed. The strip takes the colour of its most severe message.

    Each message takes one line, elided *in the middle* to the strip's width (what failed
    and, at the end, what to do both stay; the full text is the tooltip and ``text``), so
    however long the messages, the strip stays at most ``MAX_LINES`` lines high and never
    pushes the window's controls off screen."""

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(False)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        lay.addWidget(self.label, 1)
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._close = close
        self._lines: list[str] = []
        self.entries: list[_Entry] = []
        self.history: list[tuple[float, str, str]] = []
        self._expiry = QTimer(self, interval=1000, timeout=self._expire)
        self.hide()

    @property
    def text(self) -> str:
        """The newest message (empty when hidden)."""
        return self.entries[0].text if self.entries else ""

    @property
    def level(self) -> str:
        """The most severe level shown ('' when hidden)."""
        return max((e.level for e in self.entries), key=lambda lv: _SEVERITY.get(lv, 0), default="")

    def show_message(self, text: str, level: str = "error") -> None:
        now = time.monotonic()
        self.history.append((time.time(), level, text))
        del self.history[:-200]
        for e in self.entries:
            if e.text == text:
                self.entries.remove(e)
                e.count += 1
                e.since, e.level = now, level
                self.entries.insert(0, e)
                break
        else:
            self.entries.insert(0, _Entry(level, text, 1, now))
        del self.entries[MAX_LINES:]
        self._refresh()

    def _expire(self) -> None:
        now = time.monotonic()
        keep = [e for e in self.entries if e.level != "info" or now - e.since < INFO_TIMEOUT_S]
        if len(keep) != len(self.entries):
            self.entries = keep
            self._refresh()

    def _refresh(self) -> None:
        if not self.entries:
            self._expiry.stop()
            self.hide()
            return
        bg, fg, border = _STYLES.get(self.level, _STYLES["info"])
        self.setStyleSheet(f"QFrame#banner {{ background:{bg}; border:1px solid {border}; border-radius:4px; }}")
        self.label.setStyleSheet(f"color:{fg}; border:none; background:transparent;")
        lines = [e.text if e.count == 1 else f"{e.text}  (×{e.count})" for e in self.entries]
        self._lines = [" ".join(ln.split()) for ln in lines]  # one line each: newlines folded
        self.label.setToolTip("\n\n".join(lines))
        self._fit()
        self.show()
        if any(e.level == "info" for e in self.entries):
            self._expiry.start()
        else:
            self._expiry.stop()

    def _fit(self) -> None:
        """Elide each line to the label's width (in the middle: a message ends with its fix)."""
        fm = self.label.fontMetrics()
        m = self.layout().contentsMargins()
        # From the strip's own width: the label's may not be laid out yet.
        width = self.width() - m.left() - m.right() - self._close.sizeHint().width() - 2 * self.layout().spacing() - 4
        width = max(width, 80)
        self.label.setText("\n".join(fm.elidedText(ln, Qt.TextElideMode.ElideMiddle, width) for ln in self._lines))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit()

    def dismiss(self) -> None:
        self.entries = []
        self._refresh()
        self.dismissed.emit()

"""Layout pieces shared by the tabs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea, QWidget

SIDE_PANEL_WIDTH = 330


def side_panel(panel: QWidget) -> QScrollArea:
    """A tab's control column: ``panel`` in a fixed-width, vertically scrolling area, so a
    small window scrolls the controls instead of squeezing or hiding them."""
    scroll = QScrollArea()
    scroll.setWidget(panel)
    scroll.setWidgetResizable(True)
    scroll.setFixedWidth(SIDE_PANEL_WIDTH)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return scroll

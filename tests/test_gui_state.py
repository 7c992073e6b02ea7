"""The GUI never shows a state it is not in: the message banner cannot push the controls
off screen, the pickers show what actually runs after a failure, and a model that failed
to load is not tried again on every tab switch."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget  # noqa: E402

from kpdesk.gui.banner import MAX_LINES, MessageBanner  # noqa: E402

pytestmark = pytest.mark.gui


def test_long_messages_keep_the_banner_to_a_few_lines(qtbot) -> None:  # noqa: ANN001
    host = QWidget()
    lay = QVBoxLayout(host)
    banner = MessageBanner()
    controls = QLabel("controls")
    controls.setMinimumHeight(100)
    lay.addWidget(banner)
    lay.addWidget(controls, 1)
    qtbot.addWidget(host)
    host.resize(900, 700)
    host.show()
    long = "Model teacher cannot be used: " + "the graph disagrees with its manifest, " * 30
    for i in range(5):
        banner.show_message(f"{i}: {long}", "error")
    banner.show_message("line one\nline two\nline three\nline four", "warning")
    qtbot.waitUntil(lambda: banner.isVisible() and banner.height() > 0)
    qtbot.wait(50)
    line = banner.label.fontMetrics().lineSpacing()
    assert banner.height() <= MAX_LINES * line + 24, banner.height()
    assert controls.height() >= 700 - MAX_LINES * line - 60
    assert banner.text.startswith("line one\nline two")  # the full text is kept
    assert all(len(ln) < 200 for ln in banner.label.text().splitlines())
    assert "disagrees" in banner.label.toolTip()

"""Qt start-up details that must happen before the QApplication exists."""

from __future__ import annotations

import os


def prepare_qt_environment() -> None:
    """Undo what importing cv2 does to the environment; guard against PySide6's None leak.

    opencv-python points ``QT_QPA_PLATFORM_PLUGIN_PATH`` and ``QT_QPA_FONTDIR`` at its
    own bundled Qt; PySide6 would then load incompatible platform plugins. Import cv2
    first (so it cannot set them again later) and drop both variables.
    """
    import cv2  # noqa: F401 - imported for its side effect on os.environ

    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        os.environ.pop(var, None)

"""Saving what a widget shows: encoded in memory, then written whole or not at all
(``kpdesk.vision.files``), so a full disk or a read-only folder costs one line."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtWidgets import QWidget

from kpdesk.vision.files import OutputError, atomic_write_bytes, check_writable_target


def save_widget_png(widget: QWidget, path: str | Path) -> Path:
    """Write ``widget``'s current look to ``path`` as PNG. Raises OutputError (one line)."""
    p = check_writable_target(path)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = widget.grab().save(buf, "PNG")
    buf.close()
    if not ok:
        raise OutputError(f"{p}: cannot write: the window could not be encoded as PNG", p)
    return atomic_write_bytes(p, bytes(data.data()))

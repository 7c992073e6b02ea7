"""Work around a reference-counting bug of PySide6 6.12 on CPython 3.11.

Every wrapped C++ method that returns ``void`` (``QLabel.setText``, ``QWidget.update``,
``QPainter.fillRect``, ``QObject.setObjectName``, ...) hands back ``None`` without taking
a reference to it, so each call leaves ``None`` with one reference fewer. A GUI makes
hundreds of such calls per frame; after a minute or so ``None``'s count reaches zero and
the interpreter aborts with "Fatal Python error: none_dealloc". From CPython 3.12 on
``None`` is immortal and the bug is harmless.

The guard measures the leak once (a hundred calls of a void method) and, when it is
there, adds 2**40 to ``None``'s reference count: at ten thousand leaked references a
second that lasts over three years. ``None`` is never freed before interpreter exit in
any case, so an overcount changes nothing else.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_TOP_UP = 1 << 40
_installed = False


def none_refs_lost_per_void_call() -> float:
    """How many references to ``None`` one void PySide6 call loses (0 when fixed)."""
    from PySide6.QtCore import QObject

    probe = QObject()
    n = 200
    before = sys.getrefcount(None)
    for _ in range(n):
        probe.setObjectName("probe")
    return (before - sys.getrefcount(None)) / n


def install_none_refcount_guard() -> bool:
    """Protect ``None`` against the leak if this PySide6 has it. Idempotent; returns
    whether the guard is active."""
    global _installed
    if _installed:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    lost = none_refs_lost_per_void_call()
    if lost < 0.5:
        return False
    refcnt = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt: the first field of every object
    refcnt.value += _TOP_UP
    _installed = True
    import PySide6

    log.info("PySide6 %s loses %.0f reference(s) to None per void call: guard installed", PySide6.__version__,
             lost)
    return True

"""Work around reference-counting bugs of PySide6 6.12 on CPython 3.11.

Two kinds of calls hand back a singleton without taking a reference to it:
every wrapped C++ method that returns ``void`` (``QLabel.setText``, ``QWidget.update``,
``QPainter.fillRect``, ...) returns ``None``, and ``SignalInstance.emit()`` returns
``True``. Each call leaves that singleton with one reference fewer. A GUI makes hundreds
of such calls per frame (pyqtgraph emits signals constantly), and within a minute or two
the interpreter aborts with "Fatal Python error: none_dealloc" or "bool_dealloc". From
CPython 3.12 on these singletons are immortal and the bugs are harmless.

The guard measures the leaks once and, when there are any, adds 2**40 to the reference
counts of ``None``, ``True`` and ``False``: at ten thousand leaked references a second
that lasts over three years. The singletons are never freed before interpreter exit
anyway, so an overcount changes nothing else.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_TOP_UP = 1 << 40
_installed = False


def _add_refs(obj: object, n: int) -> None:
    ctypes.c_ssize_t.from_address(id(obj)).value += n  # ob_refcnt: the first field of every object


def singleton_refs_lost() -> dict[str, float]:
    """References lost per call: ``{"void call -> None": x, "emit -> True": y}`` (0 when fixed)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    n = 50
    if sys.version_info < (3, 12):
        # The probe itself may leak up to n references each: lend them first, so probing
        # can never be what frees a singleton; measured leaks are paid back below.
        for singleton in (None, True):
            _add_refs(singleton, n)
    before = sys.getrefcount(None)
    for _ in range(n):
        probe.setObjectName("probe")
    lost_none = (before - sys.getrefcount(None)) / n
    before = sys.getrefcount(True)
    for _ in range(n):
        probe.ping.emit()
    lost_true = (before - sys.getrefcount(True)) / n
    if sys.version_info < (3, 12):
        # Take back what was lent and not lost.
        _add_refs(None, -n + round(lost_none * n))
        _add_refs(True, -n + round(lost_true * n))
    return {"void call -> None": lost_none, "emit -> True": lost_true}


def install_none_refcount_guard() -> bool:
    """Protect ``None``, ``True`` and ``False`` if this PySide6 leaks references to them.
    Idempotent; returns whether the guard is active."""
    global _installed
    if _installed:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    lost = singleton_refs_lost()
    if max(lost.values()) < 0.5:
        return False
    for singleton in (None, True, False):
        _add_refs(singleton, _TOP_UP)
    _installed = True
    import PySide6

    log.info("PySide6 %s leaks references to singletons (%s): guard installed", PySide6.__version__,
             ", ".join(f"{k}: {v:.0f}/call" for k, v in lost.items()))
    return True

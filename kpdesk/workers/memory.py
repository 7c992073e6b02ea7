"""Handing freed C-heap memory back to the operating system (Qt-free).

A model switch frees hundreds of MB inside onnxruntime (weights, arenas). glibc keeps
such freed pages in its heaps for reuse, and with several threads (one per Compare
variant) each with its own heap, a long session that switches models and turns Compare
on and off grew by ~250 MB in 20 minutes (``benchmarks/soak.py``); with ``malloc_trim``
after the switches the resident size stays flat. Elsewhere (other C libraries, macOS,
Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_trim = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _trim = getattr(_libc, "malloc_trim", None)
    except OSError:  # not glibc
        _trim = None


def release_freed_memory() -> None:
    """``malloc_trim(0)`` where glibc has it: free heap pages go back to the OS. Costs a few
    milliseconds; call it after big frees (a model or a variant closed), not per frame."""
    if _trim is not None:
        try:
            _trim(0)
        except Exception:  # noqa: BLE001 - best effort
            log.debug("malloc_trim failed", exc_info=True)

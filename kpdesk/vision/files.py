"""Writing output files so that a failure costs one line and nothing else.

Every writer here turns ``OSError`` into ``OutputError``, whose message is one line naming
the file and the reason (``/mnt/x/a.png: cannot write: No space left on device``), never
leaves a half-written file under the final name (whole files are written beside it under a
temporary name, then renamed over it; a log is cut back to its complete lines), and never
loses what was written before (an old file stays until the new one is complete; a log
keeps the lines written before the failure).

Special files (``/dev/null``, ``/dev/full``, a FIFO) are written directly: a rename would
replace the device itself.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np


class OutputError(OSError):
    """An output file cannot be written; ``str()`` is one line naming the file and why."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:
        return self.message


def reason(exc: BaseException) -> str:
    """The human part of an OS error (``No space left on device``), one line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def output_error(path: str | Path, exc: BaseException, what: str = "cannot write") -> OutputError:
    return OutputError(f"{path}: {what}: {reason(exc)}", path)


def _special(p: Path) -> bool:
    try:
        return p.exists() and not p.is_file() and not p.is_dir()
    except OSError:  # e.g. a name too long: the write itself will say so
        return False


def check_writable_target(path: str | Path) -> Path:
    """``path`` as a Path; OutputError when its folder is missing or it is a folder."""
    p = Path(path)
    try:
        if p.is_dir():
            raise OutputError(f"{p}: cannot write: it is a folder", p)
        parent = p.parent
        if not parent.is_dir():
            why = "does not exist" if not parent.exists() else "is not a folder"
            raise OutputError(f"{p}: cannot write: folder {parent} {why}", p)
    except OutputError:
        raise
    except OSError as exc:  # the name itself is refused (too long, ...)
        raise output_error(p, exc) from None
    return p


def _temp_beside(p: Path, suffix: str = "") -> Path:
    return p.with_name(f".{p.stem}.{os.getpid()}.part{suffix or p.suffix}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (temporary file, fsync, rename)."""
    p = check_writable_target(path)
    if _special(p):
        try:
            fd = os.open(p, os.O_WRONLY)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise output_error(p, exc) from None
        return p
    tmp = _temp_beside(p)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        raise output_error(p, exc) from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def encode_image(path: str | Path, img: np.ndarray, params: list[int] | None = None) -> bytes:
    """``img`` encoded in the format ``path``'s suffix names (``params``: OpenCV's, e.g. JPEG
    quality); OutputError if OpenCV cannot."""
    p = Path(path)
    suffix = p.suffix.lower() or ".png"
    try:
        ok, buf = cv2.imencode(suffix, img, params or [])
    except cv2.error as exc:
        raise OutputError(f"{p}: cannot write image: {reason(exc)}", p) from None
    if not ok:
        raise OutputError(f"{p}: cannot write image: OpenCV cannot encode {suffix} files", p)
    return buf.tobytes()


def write_image(path: str | Path, img: np.ndarray, params: list[int] | None = None) -> Path:
    """Save a BGR image atomically (format from the suffix)."""
    return atomic_write_bytes(path, encode_image(path, img, params))


class LineLog:
    """A text file written line by line that always holds complete lines only.

    Every ``write`` goes straight to the file (no buffer: another reader sees it at once,
    and a killed process loses at most the line being written). A failed write cuts off
    its partial bytes, closes the log (the lines written before stay) and raises
    ``OutputError``.
    """

    def __init__(self, path: str | Path) -> None:
        p = check_writable_target(path)
        self.path = p
        self._direct = _special(p)
        flags = os.O_WRONLY | (0 if self._direct else os.O_CREAT | os.O_TRUNC)
        try:
            self._fd: int | None = os.open(p, flags, 0o666)
        except OSError as exc:
            raise output_error(p, exc) from None
        self._good = 0  # bytes of complete lines

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, text: str) -> None:
        """Append ``text`` (whole lines) to the file, all of it or none."""
        if self._fd is None:
            raise OutputError(f"{self.path}: cannot write: already closed", self.path)
        data = text.encode("utf-8")
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            if not self._direct:
                try:
                    os.ftruncate(self._fd, self._good)  # drop the partial line
                except OSError:
                    pass
            err = output_error(self.path, exc)
            self.close()
            raise err from None
        self._good += len(data)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def save_figure(fig: object, path: str | Path, **kw: object) -> Path:
    """``fig.savefig`` (matplotlib, not imported here) rendered in memory, then written whole
    (format from the suffix, PNG without one)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", **kw)  # type: ignore[attr-defined]
    return atomic_write_bytes(path, buf.getvalue())


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` written whole."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())

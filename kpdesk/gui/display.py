"""Can the desktop app open a window here? Checked before Qt is imported, because Qt aborts
the whole process (with a message about 'platform plugins' that names neither the real
cause nor the fix) when it has no display or its platform plugin cannot load.

Standard library only: no Qt, no cv2.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Shared libraries Qt's xcb platform plugin links against that minimal Linux installs
# (containers, servers, WSL) often lack, and the Debian / Ubuntu package shipping each.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
# Platforms that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay", "minimalegl")


def display_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                    connect: Callable[[str], str | None] | None = None) -> str | None:
    """Why no window can open here ("no display: ..."), or None when one may.

    Only Linux and the BSDs need a display server; an explicit headless
    ``QT_QPA_PLATFORM`` (offscreen, vnc, ...) counts as fine.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if qpa in HEADLESS_PLATFORMS:
        return None
    display, wayland = env.get("DISPLAY", "").strip(), env.get("WAYLAND_DISPLAY", "").strip()
    if wayland and qpa != "xcb":
        return None
    if not display:
        return "no display: DISPLAY and WAYLAND_DISPLAY are not set"
    why = (connect or x_display_unreachable)(display)
    return f"no display: cannot reach the X server at DISPLAY={display} ({why})" if why else None


def uses_xcb(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """True when Qt will open its window through X11 (the xcb plugin)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return False
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if qpa:
        return qpa == "xcb"
    return not env.get("WAYLAND_DISPLAY", "").strip()


def x_display_unreachable(display: str, timeout: float = 1.0) -> str | None:
    """None if an X server answers at ``display`` (``[host]:N[.S]``), else why not."""
    m = re.fullmatch(r"(?:(?P<proto>unix|tcp)/)?(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if m is None:
        return "not a valid display name"
    host, num = m.group("host"), int(m.group("num"))
    try:
        if host in ("", "unix") and m.group("proto") != "tcp":
            path = f"/tmp/.X11-unix/X{num}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(path)
        else:
            with socket.create_connection((host or "localhost", 6000 + num), timeout=timeout):
                pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def xcb_plugin_path() -> Path | None:
    """PySide6's ``libqxcb.so`` (found without importing PySide6), or None."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if p.is_file():
            return p
    return None


def run_ldd(path: Path) -> str | None:
    """``ldd path`` output, or None when ldd is unavailable or fails."""
    exe = shutil.which("ldd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as ``not found`` (each once, in order)."""
    found = re.findall(r"^\s*(\S+)\s*=>\s*not found", ldd_output, flags=re.MULTILINE)
    return list(dict.fromkeys(found))


def package_for(soname: str) -> str:
    """The Debian / Ubuntu package that ships ``soname`` (a guess by the usual naming rule
    when it is not in the table: libfoo-bar.so.N -> libfoo-barN)."""
    if soname in XCB_PACKAGES:
        return XCB_PACKAGES[soname]
    m = re.fullmatch(r"(lib[\w.+-]+?)\.so\.(\d+)", soname)
    if m is None:
        return soname
    name, ver = m.group(1).lower(), m.group(2)
    return f"{name}-{ver}" if name[-1].isdigit() else f"{name}{ver}"


def qt_library_problem(plugin: Path | None = None,
                       ldd: Callable[[Path], str | None] | None = None) -> tuple[list[str], list[str]]:
    """(missing sonames, packages to install) for Qt's xcb plugin; empty when nothing is
    missing or it cannot be checked (no PySide6 plugin, no ldd)."""
    plugin = plugin if plugin is not None else xcb_plugin_path()
    if plugin is None:
        return [], []
    out = (ldd or run_ldd)(plugin)
    if out is None:
        return [], []
    libs = missing_libraries(out)
    return libs, list(dict.fromkeys(package_for(s) for s in libs))


def qt_library_message(libs: list[str], packages: list[str]) -> str:
    return (f"the desktop app cannot open a window: Qt's xcb platform plugin needs {', '.join(libs)}, "
            f"which this system lacks; install with: sudo apt-get install -y {' '.join(packages)}")

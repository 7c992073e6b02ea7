"""``make run`` (``python -m kpdesk``) everywhere: without a display it says so in one line
and runs the headless demo; with a display but a missing Qt system library it names the
package; never a Qt abort."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import kpdesk.__main__ as entry
from kpdesk.gui import display

REPO = Path(__file__).resolve().parents[1]

LDD_MISSING_CURSOR = """\
\tlinux-vdso.so.1 (0x00007ffd3b1f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f2a1c000000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => /lib/x86_64-linux-gnu/libxcb-icccm.so.4 (0x00007f2a1bf00000)
\tlibxkbcommon-x11.so.0 => not found
\tlibxcb-cursor.so.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a1bc00000)
"""


def test_no_display_runs_the_headless_demo(tmp_path: Path) -> None:
    from fixtures import build_tiny_models

    models = next(iter(build_tiny_models(tmp_path / "models").values())).parent
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(KPDESK_MODELS=str(models), KPDESK_DEMO_FRAMES="4", TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "kpdesk"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("kpdesk: no display: DISPLAY and WAYLAND_DISPLAY are not set: running the headless demo")
    assert lines[1].startswith("kpdesk detect: 4 frames from demo; model student (")  # the default model
    assert any(s.startswith("stage") and "median ms" in s for s in lines)
    out = tmp_path / "kpdesk-demo.mp4"
    assert f"annotated output: {out}" in lines
    assert out.is_file() and out.stat().st_size > 1000
    assert "Aborted" not in p.stderr and "qt.qpa" not in p.stderr


def test_display_checks() -> None:
    linux = "linux"
    assert display.display_problem({}, linux) == "no display: DISPLAY and WAYLAND_DISPLAY are not set"
    assert display.display_problem({}, "darwin") is None
    assert display.display_problem({"QT_QPA_PLATFORM": "offscreen"}, linux) is None
    assert display.display_problem({"WAYLAND_DISPLAY": "wayland-0"}, linux) is None
    assert display.display_problem({"DISPLAY": ":5"}, linux, connect=lambda d: None) is None
    msg = display.display_problem({"DISPLAY": ":987"}, linux)  # no X server has that socket
    assert msg is not None and msg.startswith("no display: cannot reach the X server at DISPLAY=:987 (")
    assert display.uses_xcb({"DISPLAY": ":0"}, linux) and not display.uses_xcb({"WAYLAND_DISPLAY": "w"}, linux)
    assert not display.uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, linux)


def test_a_listening_x_server_counts_as_reachable() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        if port < 6000:
            pytest.skip(f"ephemeral port {port} is below X11's range")
        assert display.x_display_unreachable(f"127.0.0.1:{port - 6000}") is None
    assert display.x_display_unreachable("nonsense") == "not a valid display name"


def test_missing_qt_libraries_are_named_with_their_packages() -> None:
    assert display.missing_libraries(LDD_MISSING_CURSOR) == ["libxcb-cursor.so.0", "libxkbcommon-x11.so.0"]
    libs, pkgs = display.qt_library_problem(Path("libqxcb.so"), ldd=lambda p: LDD_MISSING_CURSOR)
    assert pkgs == ["libxcb-cursor0", "libxkbcommon-x11-0"]
    assert display.qt_library_problem(Path("libqxcb.so"), ldd=lambda p: None) == ([], [])  # no ldd: no claim
    assert display.package_for("libxcb-foo.so.3") == "libxcb-foo3"
    assert display.package_for("libfoo2.so.1") == "libfoo2-1"
    msg = display.qt_library_message(libs, pkgs)
    assert "libxcb-cursor.so.0" in msg and msg.endswith("sudo apt-get install -y libxcb-cursor0 libxkbcommon-x11-0")


def test_main_names_the_package_and_never_starts_qt(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(display, "display_problem", lambda: None)
    monkeypatch.setattr(display, "uses_xcb", lambda: True)
    monkeypatch.setattr(display, "xcb_plugin_path", lambda: Path("libqxcb.so"))
    monkeypatch.setattr(display, "run_ldd", lambda p: LDD_MISSING_CURSOR)
    monkeypatch.setattr(entry, "headless_demo", lambda: calls.append("demo") or 0)
    import kpdesk.gui.app

    monkeypatch.setattr(kpdesk.gui.app, "main", lambda argv=None: pytest.fail("Qt must not start"))
    assert entry.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert calls == ["demo"]
    assert "libxcb-cursor.so.0" in out[0] and "sudo apt-get install -y libxcb-cursor0 libxkbcommon-x11-0" in out[0]
    assert out[-1] == "kpdesk: to open the window, install: sudo apt-get install -y libxcb-cursor0 libxkbcommon-x11-0"


def test_real_xcb_plugin_is_found_and_checked() -> None:
    """On this machine: the plugin exists and ldd's verdict parses (whatever is installed)."""
    plugin = display.xcb_plugin_path()
    assert plugin is not None and plugin.name == "libqxcb.so"
    libs, pkgs = display.qt_library_problem(plugin)
    assert len(libs) == len(pkgs) or len(pkgs) < len(libs)
    assert all(p for p in pkgs)
